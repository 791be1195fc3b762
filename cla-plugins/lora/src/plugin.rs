//! The plugin: [`LoraCla`] implements [`ferry_cla_abi::Cla`] around one
//! [`Link`] and one serial device.
//!
//! # Threads and ownership
//! `create` parses the settings and starts nothing. `start` spawns one
//! thread, the radio thread, which owns the device: it opens it (and reopens
//! it with back-off when it vanishes), decodes KISS from it, feeds packets
//! and timeouts to the link, writes the packets the link hands out, and
//! makes every host callback. The link sits behind a mutex so that
//! `transmit` can answer synchronously (queued or why not) and `verdict` can
//! take effect at once; the mutex is never held across a host callback or a
//! device call. An eventfd wakes the radio thread after either.
//!
//! `stop` tells the thread to finish and joins it. On its way out the thread
//! closes the link, which reports `Failed` for every transmission still
//! queued and `peer_down` for every neighbour, so each accepted `transmit`
//! has exactly one outcome and no callback comes after `stop` returns.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_cla_abi::{Cla, FerryClaDescriptor, Host, PeerUp, Verdict};
use ferry_cla_kiss::{Decoder, Event as KissEvent};
use rustix::event::{eventfd, EventfdFlags};

use crate::frame::MAX_PACKET;
use crate::link::{Event, Level, Link};
use crate::serial::{Ready, Tty};
use crate::settings::Settings;

/// The descriptor of this plugin, for [`ferry_cla_abi::host::Plugin::in_process`].
pub static DESCRIPTOR: FerryClaDescriptor = ferry_cla_abi::plugin::descriptor::<LoraCla>();

/// The same descriptor as [`DESCRIPTOR`], as a function.
pub fn descriptor() -> &'static FerryClaDescriptor {
    &DESCRIPTOR
}

/// How long a write to the modem may take before the device counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the radio thread sleeps without looking at its stop flag.
const MAX_SLEEP: Duration = Duration::from_millis(200);

/// The LoRa convergence-layer plugin. See the [crate documentation](crate).
pub struct LoraCla {
    host: Host,
    settings: Settings,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    link: Mutex<Guarded>,
    clock: Clock,
    wake: OwnedFd,
    stopping: AtomicBool,
}

/// The link, and whether the radio thread still runs it: `transmit` checks
/// under the same lock, so nothing is queued after the final `close`.
struct Guarded {
    link: Link,
    running: bool,
}

/// The link's clock: microseconds since start, times `time_scale`.
#[derive(Clone, Copy)]
struct Clock {
    origin: Instant,
    scale: u32,
}

impl Clock {
    fn now(&self) -> u64 {
        let us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        us.saturating_mul(u64::from(self.scale))
    }

    /// Real time until the link time `at`.
    fn until(&self, at: u64) -> Duration {
        Duration::from_micros(at.saturating_sub(self.now()) / u64::from(self.scale))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The link's methods do not panic on any input; if one did, its state
    // is still consistent enough to report outcomes and close.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

impl Cla for LoraCla {
    const NAME: &'static CStr = c"lora";
    const VERSION: &'static CStr = c"0.1.0";

    fn create(config: &str, host: Host) -> Result<Self, String> {
        let settings = Settings::parse(config).map_err(|e| e.to_string())?;
        let node_id = host.node_id().to_owned();
        if node_id.len() > crate::frame::MAX_NODE_ID {
            return Err(format!(
                "lora: node ID {node_id} is longer than a HELLO carries ({} bytes)",
                crate::frame::MAX_NODE_ID
            ));
        }
        let clock = Clock { origin: Instant::now(), scale: settings.time_scale };
        let link = Link::new(settings.link.clone(), &node_id, clock.now(), fastrand::u64(..));
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| format!("lora: cannot create an eventfd: {e}"))?;
        let shared = Arc::new(Shared {
            link: Mutex::new(Guarded { link, running: false }),
            clock,
            wake,
            stopping: AtomicBool::new(false),
        });
        Ok(LoraCla { host, settings, shared, thread: Mutex::new(None) })
    }

    fn start(&self) -> Result<(), String> {
        let mut thread = lock(&self.thread);
        if thread.is_some() || self.shared.stopping.load(Ordering::Acquire) {
            return Err("already started".into());
        }
        if self.settings.time_scale != 1 {
            self.host.warn(&format!(
                "lora: time_scale = {}: the radio clock runs {0}× fast (simulations only; real radios would exceed the duty cycle)",
                self.settings.time_scale
            ));
        }
        let radio = Radio {
            host: self.host,
            settings: self.settings.clone(),
            shared: self.shared.clone(),
            decoder: Decoder::new(1 + MAX_PACKET),
        };
        lock(&self.shared.link).running = true;
        let handle = std::thread::Builder::new()
            .name("ferry-cla-lora".into())
            .spawn(move || radio.run())
            .map_err(|e| format!("lora: cannot start the radio thread: {e}"))?;
        *thread = Some(handle);
        Ok(())
    }

    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        let mut g = lock(&self.shared.link);
        if !g.running {
            return Err("not running".into());
        }
        g.link.handle_transmit(peer, transmit, bundle).map_err(|e| e.to_string())?;
        drop(g);
        self.shared.wake();
        Ok(())
    }

    fn verdict(&self, token: u64, verdict: Verdict) {
        let now = self.shared.clock.now();
        lock(&self.shared.link).link.handle_verdict(now, token, verdict);
        self.shared.wake();
    }

    fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake();
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                self.host.error("lora: the radio thread panicked");
            }
        }
    }
}

impl Drop for LoraCla {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The radio thread's state.
struct Radio {
    host: Host,
    settings: Settings,
    shared: Arc<Shared>,
    decoder: Decoder,
}

impl Radio {
    fn run(mut self) {
        let device = self.settings.device.display().to_string();
        let mut tty: Option<Tty> = None;
        let mut backoff = Duration::from_secs(1);
        let mut reopen_at = Instant::now();
        let mut failures = 0u32;
        let mut buf = vec![0u8; 4096];
        while !self.shared.stopping.load(Ordering::Acquire) {
            if tty.is_none() && Instant::now() >= reopen_at {
                match Tty::open(&self.settings.device, self.settings.baud) {
                    Ok(t) => {
                        self.host.info(&format!("lora: modem {device} open at {} baud", self.settings.baud));
                        tty = Some(t);
                        backoff = Duration::from_secs(1);
                        failures = 0;
                    }
                    Err(e) => {
                        // Warn the first time, then quietly keep trying.
                        let msg = format!("lora: cannot open modem {device}: {e}; retrying in {} s", backoff.as_secs());
                        if failures == 0 {
                            self.host.warn(&msg)
                        } else {
                            self.host.debug(&msg)
                        }
                        failures += 1;
                        reopen_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(self.settings.reopen_max_secs));
                    }
                }
            }
            let (packets, events, next) = self.step(tty.is_some());
            // Events first: a write that fails below must not lose them.
            self.report(events);
            if let Some(t) = &tty {
                let mut wire = Vec::new();
                for p in &packets {
                    ferry_cla_kiss::encode(ferry_cla_kiss::CMD_DATA, p, &mut wire);
                }
                if let Err(e) = t.write_all(&wire, WRITE_TIMEOUT) {
                    self.lost(&mut tty, &device, &e.to_string());
                    reopen_at = Instant::now() + backoff;
                    continue;
                }
            }
            let mut sleep = next.map_or(MAX_SLEEP, |at| self.shared.clock.until(at)).min(MAX_SLEEP);
            if tty.is_none() {
                sleep = sleep.min(reopen_at.saturating_duration_since(Instant::now()));
            }
            let ready = match &tty {
                Some(t) => t.wait(&self.shared.wake, sleep),
                None => crate::serial::wait_fd(&self.shared.wake, sleep).map(|_| Ready::Other),
            };
            self.drain_wake();
            match ready {
                Ok(Ready::Readable) => {
                    let Some(t) = &tty else { continue };
                    match t.read(&mut buf) {
                        Ok(n) => self.feed(&buf[..n]),
                        Err(e) => {
                            self.lost(&mut tty, &device, &e.to_string());
                            reopen_at = Instant::now() + backoff;
                        }
                    }
                }
                Ok(Ready::Other) => {}
                Ok(Ready::Gone) => {
                    self.lost(&mut tty, &device, "hung up");
                    reopen_at = Instant::now() + backoff;
                }
                Err(e) => {
                    self.lost(&mut tty, &device, &e.to_string());
                    reopen_at = Instant::now() + backoff;
                }
            }
        }
        // Stopping: every queued transmission fails, every neighbour goes down.
        let events = {
            let mut g = lock(&self.shared.link);
            g.running = false;
            self.close(&mut g.link)
        };
        self.report(events);
    }

    /// Closes the link (neighbours down, transmissions failed) and takes its events.
    fn close(&self, link: &mut Link) -> Vec<Event> {
        link.close(self.shared.clock.now());
        std::iter::from_fn(|| link.poll_event()).collect()
    }

    /// Timeouts, then the packets and events the link has now.
    fn step(&mut self, radio_up: bool) -> (Vec<Vec<u8>>, Vec<Event>, Option<u64>) {
        let now = self.shared.clock.now();
        let mut g = lock(&self.shared.link);
        let link = &mut g.link;
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle_timeout(now);
        }
        let mut packets = Vec::new();
        if radio_up {
            while let Some(p) = link.poll_transmit(now) {
                packets.push(p);
            }
        }
        let events = std::iter::from_fn(|| link.poll_event()).collect();
        (packets, events, link.poll_timeout())
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.shared.clock.now();
        let mut notes = Vec::new();
        {
            let mut g = lock(&self.shared.link);
            self.decoder.feed(bytes, |ev| match ev {
                KissEvent::Frame { command, data } if command & 0x0f == ferry_cla_kiss::CMD_DATA => {
                    g.link.handle_packet(now, data)
                }
                // Modem status and configuration replies (RNode sends some):
                // nothing the link needs.
                KissEvent::Frame { command, data } => notes.push((
                    Level::Debug,
                    format!("ignored KISS command {command:#04x} ({} bytes) from the modem", data.len()),
                )),
                KissEvent::Dropped(reason) => {
                    notes.push((Level::Warn, format!("dropped a KISS frame from the modem: {reason}")))
                }
            });
        }
        self.report(notes.into_iter().map(|(level, message)| Event::Log { level, message }).collect());
    }

    fn lost(&mut self, tty: &mut Option<Tty>, device: &str, why: &str) {
        *tty = None;
        self.decoder = Decoder::new(1 + MAX_PACKET);
        self.host.warn(&format!("lora: modem {device} lost ({why}); reopening"));
        let events = self.close(&mut lock(&self.shared.link).link);
        self.report(events);
    }

    fn drain_wake(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.shared.wake, &mut b);
    }

    fn report(&self, events: Vec<Event>) {
        let address = format!("lora://{}", self.settings.device.display());
        for ev in events {
            match ev {
                Event::PeerUp { peer, node_id, rate_bps, mtu } => self.host.peer_up(
                    peer,
                    &PeerUp {
                        node_id: &node_id,
                        address: &format!("{address}#{:08x}", peer as u32),
                        mtu: Some(mtu),
                        rate_bps: Some(rate_bps),
                    },
                ),
                Event::PeerDown { peer } => self.host.peer_down(peer),
                Event::BundleReceived { peer, token, bundle } => self.host.bundle_received(peer, &bundle, token),
                Event::TransmitDone { transmit, outcome } => self.host.transmit_done(transmit, outcome),
                Event::Log { level, message } => {
                    let message = format!("lora: {message}");
                    match level {
                        Level::Warn => self.host.warn(&message),
                        Level::Info => self.host.info(&message),
                        Level::Debug => self.host.debug(&message),
                    }
                }
            }
        }
    }
}
