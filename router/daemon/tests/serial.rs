//! Two real ferryd processes joined by a serial line: each loads the serial
//! plugin on one end of a pseudo-terminal pair, and a relay in this test
//! carries the bytes between the two masters (and injects line noise).
//!
//! The plugin is the workspace's own shared library next to ferryd in the
//! target folder (`cargo build --workspace --all-targets` builds it).

mod api_support;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use api_support::{binary_payload, Ferryd};

fn serial_plugin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target/<profile>").to_path_buf();
    let p = dir.join("libferry_cla_serial.so");
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", p.display());
    p
}

/// One pseudo-terminal: the master (the relay's end) and the slave's path
/// (ferryd's device). The test keeps the slave open too, raw from the start.
struct Pty {
    master: File,
    _slave: File,
    path: PathBuf,
}

fn check(rc: libc::c_int, what: &str) {
    assert!(rc == 0, "{what}: {}", std::io::Error::last_os_error());
}

impl Pty {
    fn open() -> Pty {
        let master = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open("/dev/ptmx")
            .expect("open /dev/ptmx");
        let fd = master.as_raw_fd();
        let mut unlock: libc::c_int = 0;
        let mut n: libc::c_uint = 0;
        // SAFETY: ioctls on a pty master we own, with pointers to live locals
        // of the types TIOCSPTLCK and TIOCGPTN take.
        unsafe {
            check(libc::ioctl(fd, libc::TIOCSPTLCK, &mut unlock), "unlock the pty");
            check(libc::ioctl(fd, libc::TIOCGPTN, &mut n), "pty number");
        }
        let path = PathBuf::from(format!("/dev/pts/{n}"));
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .expect("open the pty slave");
        // SAFETY: termios calls on a terminal we own, with a zeroed struct
        // tcgetattr fills before it is read.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            check(libc::tcgetattr(slave.as_raw_fd(), &mut t), "tcgetattr");
            libc::cfmakeraw(&mut t);
            check(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), "tcsetattr");
        }
        Pty { master, _slave: slave, path }
    }
}

/// Carries bytes between two pty masters, one thread per direction, and
/// writes injected bytes into either side.
struct Relay {
    ptys: [Arc<Pty>; 2],
    inject: Arc<[Mutex<Vec<u8>>; 2]>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn new() -> Relay {
        let ptys = [Arc::new(Pty::open()), Arc::new(Pty::open())];
        let inject = Arc::new([Mutex::new(Vec::new()), Mutex::new(Vec::new())]);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|i| {
                let (from, to) = (ptys[i].clone(), ptys[1 - i].clone());
                let (inject, stop) = (inject.clone(), stop.clone());
                std::thread::spawn(move || carry(&from, &to, &inject[1 - i], &stop))
            })
            .collect();
        Relay { ptys, inject, stop, threads }
    }

    fn device(&self, i: usize) -> &Path {
        &self.ptys[i].path
    }

    /// Bytes written into side `i`'s line as if its peer had sent them.
    fn inject(&self, i: usize, bytes: &[u8]) {
        self.inject[i].lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Waits up to 10 ms for `fd` to be readable.
fn readable(fd: &impl AsRawFd) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, 10) > 0 }
}

fn write_all(to: &File, mut bytes: &[u8], stop: &AtomicBool) {
    while !bytes.is_empty() && !stop.load(Ordering::Acquire) {
        match (&*to).write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

fn carry(from: &Pty, to: &Pty, inject: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) {
        let injected = std::mem::take(&mut *inject.lock().unwrap_or_else(|e| e.into_inner()));
        write_all(&to.master, &injected, stop);
        if !readable(&from.master) {
            continue;
        }
        match (&from.master).read(&mut buf) {
            Ok(n) if n > 0 => write_all(&to.master, &buf[..n], stop),
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A ferryd whose only convergence layer is the serial plugin on `device`.
fn node(dir: &Path, name: &str, device: &Path) -> Ferryd {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join(format!("{name}.toml"));
    let text = format!(
        "node_id = \"dtn://{name}/\"\n[[cla]]\npath = \"{}\"\n[cla.settings]\ndevice = \"{}\"\nbaud = 115200\n",
        serial_plugin().display(),
        device.display()
    );
    std::fs::write(&cfg, text).unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

#[test]
fn two_ferryd_exchange_bundles_over_a_serial_line_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::new();
    let a = node(dir.path(), "alpha", relay.device(0));
    let b = node(dir.path(), "beta", relay.device(1));
    a.get_ok("/register?incoming");
    b.get_ok("/register?incoming");
    a.eventually("the serial link to come up", Duration::from_secs(30), || {
        a.get("/status/peers").json()["dtn://beta/"]["connected"] == true
    });
    for len in [0usize, 1, 100_000, 1 << 20] {
        let payload = binary_payload(len);
        let sent = a.post("/send?dst=dtn://beta/incoming&lifetime=1h", payload.clone());
        assert_eq!(sent.status, 200, "{}", sent.text());
        assert!(b.receive("incoming", Duration::from_secs(60)) == payload, "{len} B alpha -> beta differs");
        let back = b.post("/send?dst=dtn://alpha/incoming&lifetime=1h", payload.clone());
        assert_eq!(back.status, 200, "{}", back.text());
        assert!(a.receive("incoming", Duration::from_secs(60)) == payload, "{len} B beta -> alpha differs");
    }
    // Line noise into beta's line: logged there, and the link keeps serving.
    relay.inject(1, b"\xc0\x00static on the line\xc0 more noise without delimiters");
    b.eventually("the noise to be logged", Duration::from_secs(30), || b.log_text().contains("dropped a frame"));
    let after = binary_payload(5000);
    assert_eq!(a.post("/send?dst=dtn://beta/incoming&lifetime=1h", after.clone()).status, 200);
    assert!(b.receive("incoming", Duration::from_secs(60)) == after, "after the noise");
    // Forwarded bundles leave the sender's store: the other node has them.
    a.eventually("alpha's store to empty", Duration::from_secs(30), || a.bundle_ids().is_empty());
    b.eventually("beta's store to empty", Duration::from_secs(30), || b.bundle_ids().is_empty());
    let log = a.log_text();
    assert!(log.contains("opened") && log.contains("115200 baud"), "{log}");
}
