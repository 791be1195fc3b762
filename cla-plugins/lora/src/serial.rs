//! The modem's serial port: opened raw at the configured baud rate,
//! non-blocking, read and written with `poll` so that no call blocks past
//! its deadline.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{open, Mode, OFlags};
use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};

/// An open serial device.
pub struct Tty {
    fd: OwnedFd,
}

/// What waiting on the device found.
pub enum Ready {
    /// Bytes to read.
    Readable,
    /// The other fd in the set (the wake-up) fired, or the time passed.
    Other,
    /// The device hung up or failed: it is gone.
    Gone,
}

fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

impl Tty {
    /// Opens `path` raw (no echo, no line editing, 8N1) at `baud`.
    pub fn open(path: &Path, baud: u32) -> io::Result<Tty> {
        let fd = open(path, OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
        let mut t = tcgetattr(&fd)?;
        t.make_raw();
        t.set_speed(baud)?;
        tcsetattr(&fd, OptionalActions::Now, &t)?;
        Ok(Tty { fd })
    }

    /// Waits until the device is readable, `other` is readable, or `timeout`.
    pub fn wait(&self, other: &impl AsFd, timeout: Duration) -> io::Result<Ready> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN), PollFd::new(other, PollFlags::IN)];
        match poll(&mut fds, Some(&timespec(timeout))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let dev = fds[0].revents();
        if dev.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) && !dev.contains(PollFlags::IN) {
            return Ok(Ready::Gone);
        }
        Ok(if dev.contains(PollFlags::IN) { Ready::Readable } else { Ready::Other })
    }

    /// Reads what is there. `Ok(0)` means nothing right now; a hang-up is an error.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match rustix::io::read(&self.fd, buf) {
            Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the device hung up")),
            Ok(n) => Ok(n),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes all of `data` or fails once `timeout` has passed (a modem that
    /// stopped reading must not hang the plugin).
    pub fn write_all(&self, mut data: &[u8], timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while !data.is_empty() {
            match rustix::io::write(&self.fd, data) {
                Ok(n) => data = &data[n..],
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the device does not take more bytes"));
                    }
                    let mut fds = [PollFd::new(&self.fd, PollFlags::OUT)];
                    match poll(&mut fds, Some(&timespec(left.min(Duration::from_millis(100))))) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                    if fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR) {
                        return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the device hung up"));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Sleeps until `fd` is readable or `timeout` passes.
pub fn wait_fd(fd: &impl AsFd, timeout: Duration) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    match poll(&mut fds, Some(&timespec(timeout))) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
