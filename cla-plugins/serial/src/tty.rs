//! Opening and configuring the serial device (raw 8N1, no flow control,
//! non-blocking), through rustix's termios: no `unsafe`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::termios::{self, ControlModes, OptionalActions, QueueSelector};

/// Why a device could not be opened or configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtyError {
    /// `open` failed (missing, unplugged, no permission).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The device path.
        path: PathBuf,
        /// The OS error.
        source: Errno,
    },
    /// It is not a terminal.
    #[error("{} is not a serial device (terminal): {source}", path.display())]
    NotATty {
        /// The device path.
        path: PathBuf,
        /// The OS error.
        source: Errno,
    },
    /// Another process has it in exclusive mode.
    #[error("{} is in use by another program (exclusive mode)", path.display())]
    Busy {
        /// The device path.
        path: PathBuf,
    },
    /// The speed or mode was refused.
    #[error("cannot set {} to {baud} baud, raw 8N1: {source}", path.display())]
    Configure {
        /// The device path.
        path: PathBuf,
        /// The speed asked for.
        baud: u32,
        /// The OS error.
        source: Errno,
    },
}

/// An open, configured tty. Closing releases exclusive mode.
pub struct Tty {
    fd: OwnedFd,
}

impl Tty {
    /// Opens `path` non-blocking, takes it exclusively (TIOCEXCL: a second
    /// ferryd on the same port would garble both), sets raw 8N1 at `baud`
    /// with no flow control, and discards whatever was buffered before.
    pub fn open(path: &Path, baud: u32) -> Result<Tty, TtyError> {
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|source| match source {
            Errno::BUSY => TtyError::Busy { path: path.to_owned() },
            source => TtyError::Open { path: path.to_owned(), source },
        })?;
        let mut t = termios::tcgetattr(&fd).map_err(|source| TtyError::NotATty { path: path.to_owned(), source })?;
        t.make_raw();
        t.control_modes |= ControlModes::CLOCAL | ControlModes::CREAD;
        t.control_modes -= ControlModes::CRTSCTS | ControlModes::HUPCL;
        let configure = |source| TtyError::Configure { path: path.to_owned(), baud, source };
        t.set_speed(baud).map_err(configure)?;
        termios::tcsetattr(&fd, OptionalActions::Now, &t).map_err(configure)?;
        // Best effort: pseudo-terminals and some adapters ignore these.
        let _ = termios::ioctl_tiocexcl(&fd);
        let _ = termios::tcflush(&fd, QueueSelector::IFlush);
        Ok(Tty { fd })
    }

    /// Reads what is available; `Ok(0)` when nothing is. An error or end of
    /// file means the device is gone.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        match rustix::io::read(&self.fd, buf) {
            Ok(0) => Err(Errno::IO),
            Ok(n) => Ok(n),
            Err(Errno::AGAIN | Errno::INTR) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes what the device takes now; `Ok(0)` when its buffer is full.
    pub fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        match rustix::io::write(&self.fd, buf) {
            Ok(n) => Ok(n),
            Err(Errno::AGAIN | Errno::INTR) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Tty {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = termios::ioctl_tiocnxcl(&self.fd);
    }
}
