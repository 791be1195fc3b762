//! The plugin: [`SerialCla`] implements [`ferry_cla_abi::Cla`] around one
//! [`Link`] and one device.
//!
//! # Threads and ownership
//! `create` parses the settings and starts nothing. `start` spawns one
//! thread, the driver, which owns the device, the [`Link`] and every host
//! callback the link causes. ABI calls never touch either: `transmit` and
//! `verdict` are messages on a channel, followed by a write to an eventfd
//! that wakes the driver from `poll`. The driver sleeps in `poll` on the
//! eventfd and the tty (readable; writable while it has bytes to write) until
//! the link's next deadline, so a tty that stops draining (nobody reading
//! the other end) never blocks it.
//!
//! When the device fails or vanishes (read or write error, hang-up), the
//! link is told it closed — the peer goes down and every transmission in
//! flight is reported `Failed` — and the driver tries to open it again after
//! `reopen_min_ms`, doubling up to `reopen_max_secs`.
//!
//! `stop` sends a stop message and joins the driver, which closes the link
//! (reporting the peer down and `Failed` for what was in flight) and answers
//! `Failed` for transmissions still in the channel: after `stop` returns no
//! callback comes.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_cla_abi::{Cla, FerryClaDescriptor, Host, Outcome, PeerUp, Verdict};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

use crate::link::{Event, Link};
use crate::settings::Settings;
use crate::tty::Tty;

/// The descriptor of this plugin, for [`ferry_cla_abi::host::Plugin::in_process`].
pub static DESCRIPTOR: FerryClaDescriptor = ferry_cla_abi::plugin::descriptor::<SerialCla>();

/// The same descriptor as [`DESCRIPTOR`], as a function.
pub fn descriptor() -> &'static FerryClaDescriptor {
    &DESCRIPTOR
}

/// Bytes read from the tty per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Frames gathered into one `write`.
const WRITE_BATCH: usize = 16 * 1024;

/// The serial convergence-layer plugin. See the [crate documentation](crate).
pub struct SerialCla {
    host: Host,
    settings: Settings,
    state: Mutex<State>,
}

enum State {
    Created,
    Running(Running),
    Stopped,
}

struct Running {
    commands: mpsc::Sender<Command>,
    wake: Arc<OwnedFd>,
    /// The peer handle of the session that is up; 0 when none.
    current_peer: Arc<AtomicU64>,
    driver: JoinHandle<()>,
}

enum Command {
    Transmit { peer: u64, id: u64, bundle: Arc<[u8]> },
    Verdict { token: u64, verdict: Verdict },
    Stop,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one assignment: a panic leaves no half state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cla for SerialCla {
    const NAME: &'static CStr = c"serial";
    const VERSION: &'static CStr = c"0.1.0";

    fn create(config: &str, host: Host) -> Result<Self, String> {
        let settings = Settings::parse(config).map_err(|e| e.to_string())?;
        if host.node_id().len() > crate::wire::MAX_NODE_ID_LEN {
            return Err(format!("node ID longer than {} bytes", crate::wire::MAX_NODE_ID_LEN));
        }
        Ok(SerialCla { host, settings, state: Mutex::new(State::Created) })
    }

    fn start(&self) -> Result<(), String> {
        let mut state = lock(&self.state);
        match *state {
            State::Created => {}
            State::Running(_) => return Err("already started".into()),
            State::Stopped => return Err("stopped".into()),
        }
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| format!("cannot create an eventfd: {e}"))?;
        let wake = Arc::new(wake);
        let (commands, rx) = mpsc::channel();
        let current_peer = Arc::new(AtomicU64::new(0));
        let driver = Driver::new(self.host, self.settings.clone(), rx, wake.clone(), current_peer.clone())?;
        let driver = std::thread::Builder::new()
            .name("ferry-cla-serial".into())
            .spawn(move || driver.run())
            .map_err(|e| format!("cannot start the driver thread: {e}"))?;
        *state = State::Running(Running { commands, wake, current_peer, driver });
        Ok(())
    }

    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        let state = lock(&self.state);
        let State::Running(r) = &*state else { return Err("not running".into()) };
        if peer == 0 || r.current_peer.load(Ordering::Acquire) != peer {
            return Err(format!("no peer {peer}"));
        }
        // The bytes are borrowed for this call: one copy, shared by the segments.
        r.send(Command::Transmit { peer, id: transmit, bundle: Arc::from(bundle) })
            .map_err(|_| format!("peer {peer} went down"))
    }

    fn verdict(&self, token: u64, verdict: Verdict) {
        if let State::Running(r) = &*lock(&self.state) {
            let _ = r.send(Command::Verdict { token, verdict });
        }
    }

    fn stop(&self) {
        let running = match std::mem::replace(&mut *lock(&self.state), State::Stopped) {
            State::Running(r) => r,
            _ => return,
        };
        let _ = running.send(Command::Stop);
        if running.driver.join().is_err() {
            self.host.error("serial: the driver thread panicked");
        }
    }
}

impl Drop for SerialCla {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Running {
    /// Queues a command and wakes the driver. `Err` once the driver is gone:
    /// the command was not taken.
    fn send(&self, cmd: Command) -> Result<(), ()> {
        self.commands.send(cmd).map_err(|_| ())?;
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        Ok(())
    }
}

/// The driver thread's state.
struct Driver {
    host: Host,
    settings: Settings,
    address: String,
    commands: mpsc::Receiver<Command>,
    wake: Arc<OwnedFd>,
    current_peer: Arc<AtomicU64>,
    next_peer: u64,
    link: Link,
    tty: Option<Tty>,
    origin: Instant,
    /// When to try opening the device next, and the delay after that.
    reopen_at: u64,
    backoff_ms: u64,
    /// The last open error logged (repeats go to debug).
    last_open_error: Option<String>,
    out: Vec<u8>,
    written: usize,
}

impl Driver {
    fn new(
        host: Host,
        settings: Settings,
        commands: mpsc::Receiver<Command>,
        wake: Arc<OwnedFd>,
        current_peer: Arc<AtomicU64>,
    ) -> Result<Driver, String> {
        let seed = random_seed();
        let link = Link::new(settings.link_config(host.node_id(), seed)).map_err(|e| e.to_string())?;
        Ok(Driver {
            address: format!("serial:{}", settings.device.display()),
            backoff_ms: settings.reopen_min_ms,
            host,
            settings,
            commands,
            wake,
            current_peer,
            next_peer: 1,
            link,
            tty: None,
            origin: Instant::now(),
            reopen_at: 0,
            last_open_error: None,
            out: Vec::new(),
            written: 0,
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run(mut self) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let now = self.now();
            if self.tty.is_none() && now >= self.reopen_at {
                self.open(now);
            }
            if self.link.poll_timeout().is_some_and(|t| t <= now) {
                self.link.handle_timeout(now);
            }
            self.fill_output(now);
            self.flush_output(now);
            self.deliver_events();
            let deadline = match (self.tty.is_some(), self.link.poll_timeout()) {
                (false, _) => Some(self.reopen_at),
                (true, t) => t,
            };
            let wait = deadline.map(|t| Duration::from_millis(t.saturating_sub(self.now())));
            let (woken, readable, writable, hangup) = self.wait(wait);
            if woken && self.drain_commands() {
                break;
            }
            if readable || hangup {
                self.read(&mut buf);
            }
            if writable {
                self.flush_output(self.now());
            }
            if hangup && self.tty.is_some() {
                // POLLHUP without an error from read: the other end is gone.
                self.lost(self.now(), "hang-up".into());
            }
            self.deliver_events();
        }
        self.shut_down();
    }

    fn open(&mut self, now: u64) {
        let device = self.settings.device.clone();
        match Tty::open(&device, self.settings.baud) {
            Ok(tty) => {
                self.host.info(&format!("serial: opened {} at {} baud", device.display(), self.settings.baud));
                self.tty = Some(tty);
                self.backoff_ms = self.settings.reopen_min_ms;
                self.last_open_error = None;
                self.out.clear();
                self.written = 0;
                self.link.handle_open(now);
            }
            Err(e) => {
                let msg = e.to_string();
                let retry = format!("{msg}; retrying in {} ms", self.backoff_ms);
                if self.last_open_error.as_deref() == Some(msg.as_str()) {
                    self.host.debug(&format!("serial: {retry}"));
                } else {
                    self.host.warn(&format!("serial: {retry}"));
                    self.last_open_error = Some(msg);
                }
                self.reopen_at = now + self.backoff_ms;
                self.backoff_ms = (self.backoff_ms * 2).min(self.settings.reopen_max_secs.saturating_mul(1000));
            }
        }
    }

    /// The device failed: close it, end the session, schedule a reopen.
    fn lost(&mut self, now: u64, why: String) {
        if self.tty.take().is_some() {
            self.host.warn(&format!(
                "serial: {} lost ({why}); reopening in {} ms",
                self.settings.device.display(),
                self.backoff_ms
            ));
        }
        self.out.clear();
        self.written = 0;
        self.link.handle_closed(now);
        self.reopen_at = now + self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(self.settings.reopen_max_secs.saturating_mul(1000));
    }

    /// Sleeps in poll: (eventfd readable, tty readable, tty writable, tty hung up).
    fn wait(&self, timeout: Option<Duration>) -> (bool, bool, bool, bool) {
        let ts = timeout.map(|d| Timespec::try_from(d).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 }));
        let mut tty_events = PollFlags::IN;
        if self.written < self.out.len() {
            tty_events |= PollFlags::OUT;
        }
        let result = match &self.tty {
            Some(tty) => {
                let mut fds = [PollFd::new(&*self.wake, PollFlags::IN), PollFd::new(tty, tty_events)];
                rustix::event::poll(&mut fds, ts.as_ref()).map(|_| (fds[0].revents(), fds[1].revents()))
            }
            None => {
                let mut fds = [PollFd::new(&*self.wake, PollFlags::IN)];
                rustix::event::poll(&mut fds, ts.as_ref()).map(|_| (fds[0].revents(), PollFlags::empty()))
            }
        };
        match result {
            Ok((wake, tty)) => (
                wake.contains(PollFlags::IN),
                tty.contains(PollFlags::IN),
                tty.contains(PollFlags::OUT),
                tty.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
            ),
            // EINTR: go round again.
            Err(_) => (false, false, false, false),
        }
    }

    /// Handles queued commands; true when told to stop.
    fn drain_commands(&mut self) -> bool {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&*self.wake, &mut counter);
        loop {
            let now = self.now();
            match self.commands.try_recv() {
                Ok(Command::Transmit { peer, id, bundle }) => {
                    if self.current_peer.load(Ordering::Acquire) == peer {
                        self.link.handle_transmit(now, id, bundle);
                    } else {
                        // The session it was meant for ended while it was queued.
                        self.host.transmit_done(id, Outcome::Failed);
                    }
                }
                Ok(Command::Verdict { token, verdict }) => self.link.handle_verdict(now, token, verdict),
                Ok(Command::Stop) => return true,
                Err(_) => return false,
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) {
        // Bounded: a line that never pauses still lets the loop write and time out.
        for _ in 0..16 {
            let Some(tty) = &self.tty else { return };
            match tty.read(buf) {
                Ok(0) => return,
                Ok(n) => {
                    let now = self.now();
                    self.link.handle_bytes(now, &buf[..n]);
                }
                Err(e) => return self.lost(self.now(), format!("read: {e}")),
            }
        }
    }

    /// Gathers frames from the link while the output buffer is empty: a
    /// frame's timer starts when the link hands it out, so it is asked for
    /// only once the line is ready for it.
    fn fill_output(&mut self, now: u64) {
        if self.tty.is_none() || self.written < self.out.len() {
            return;
        }
        self.out.clear();
        self.written = 0;
        while self.out.len() < WRITE_BATCH {
            let Some(frame) = self.link.poll_transmit(now) else { break };
            self.out.extend_from_slice(&frame);
        }
    }

    fn flush_output(&mut self, now: u64) {
        loop {
            if self.written >= self.out.len() {
                self.fill_output(now);
                if self.out.is_empty() {
                    return;
                }
            }
            let Some(tty) = &self.tty else { return };
            match tty.write(&self.out[self.written..]) {
                Ok(0) => return,
                Ok(n) => self.written += n,
                Err(e) => return self.lost(now, format!("write: {e}")),
            }
        }
    }

    /// Carries the link's events to the host.
    fn deliver_events(&mut self) {
        while let Some(event) = self.link.poll_event() {
            match event {
                Event::Up(peer) => {
                    let handle = self.next_peer;
                    self.next_peer += 1;
                    self.current_peer.store(handle, Ordering::Release);
                    let info = PeerUp {
                        node_id: &peer.node_id,
                        address: &self.address,
                        mtu: Some(peer.max_bundle),
                        rate_bps: Some(self.settings.rate_bytes_per_sec()),
                    };
                    self.host.peer_up(handle, &info);
                }
                Event::Down(_) => {
                    let handle = self.current_peer.swap(0, Ordering::AcqRel);
                    if handle != 0 {
                        self.host.peer_down(handle);
                    }
                }
                Event::Received { token, bundle } => {
                    let peer = self.current_peer.load(Ordering::Acquire);
                    self.host.bundle_received(peer, &bundle, token);
                }
                Event::Done { transmit, outcome } => self.host.transmit_done(transmit, outcome),
                Event::Log { level, msg } => self.host.log(level, &format!("serial: {msg}")),
            }
        }
    }

    fn shut_down(mut self) {
        let now = self.now();
        self.tty = None;
        self.link.handle_closed(now);
        self.deliver_events();
        while let Ok(cmd) = self.commands.try_recv() {
            if let Command::Transmit { id, .. } = cmd {
                self.host.transmit_done(id, Outcome::Failed);
            }
        }
    }
}

/// A seed for the session nonces that differs between runs and processes.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}
