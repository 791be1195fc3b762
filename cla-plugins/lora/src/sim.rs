//! A simulated radio channel behind real pseudo-terminals, for tests and
//! demos without radios: each node's plugin opens the slave side of a pty
//! as if it were a KISS modem; the channel owns the master sides.
//!
//! Every KISS data frame a node writes is one radio packet. The channel
//! puts it on air after the node's previous packet (a radio sends one at a
//! time), keeps it there for its airtime (Semtech's formula, see
//! [`crate::airtime`]), and then writes it to every other node — dropping
//! it for each receiver independently with probability `loss`, from a
//! seeded RNG. Frames longer than a LoRa packet are refused, as a modem
//! would refuse them. `time_scale` divides every airtime so that tests run
//! fast; the plugins must run their clocks with the same `time_scale`.
//!
//! Each node's device is a symlink `<dir>/radio<i>` to its pty, so that a
//! test can unplug a modem (the pty closes, the symlink goes) and plug it
//! back (a new pty behind the same name), like a USB serial adapter under a
//! udev name.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_cla_kiss::{Decoder, Event};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{fcntl_getfl, fcntl_setfl, open, Mode, OFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};

use crate::airtime::RadioParams;
use crate::frame::MAX_PACKET;

/// How the channel behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    /// Number of nodes (ptys).
    pub nodes: usize,
    /// Radio parameters: the airtime each packet is delayed by.
    pub radio: RadioParams,
    /// Probability that one receiver misses one packet.
    pub loss: f64,
    /// Seed of the loss RNG.
    pub seed: u64,
    /// Airtime is divided by this (1 = real time).
    pub time_scale: u32,
}

/// What the channel did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Packets nodes put on air.
    pub packets: u64,
    /// Copies delivered to receivers.
    pub delivered: u64,
    /// Copies dropped by the loss model.
    pub lost: u64,
    /// Frames refused: longer than a LoRa packet, or not KISS data frames.
    pub refused: u64,
    /// Copies dropped because a receiver's pty was full or unplugged.
    pub overflowed: u64,
}

struct Port {
    master: Option<OwnedFd>,
    /// The channel's own slave fd: keeps the master readable while no
    /// plugin has the device open.
    _slave: Option<OwnedFd>,
    decoder: Decoder,
    busy_until: Instant,
    link: PathBuf,
}

struct Inner {
    ports: Vec<Port>,
    rng: fastrand::Rng,
    /// (delivery time, order, receiver, packet)
    queue: BinaryHeap<InFlight>,
    order: u64,
    stats: ChannelStats,
    log: Vec<String>,
}

/// A packet on its way: (arrival, order, receiver, bytes), earliest first.
type InFlight = Reverse<(Instant, u64, usize, Vec<u8>)>;

/// A running simulated channel. Dropping it stops it and closes every pty.
pub struct SimChannel {
    cfg: ChannelConfig,
    inner: Arc<Mutex<Inner>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new pty pair: (master, slave, slave path). The master is non-blocking;
/// the slave's line discipline is raw (no echo, no line editing).
fn new_pty() -> io::Result<(OwnedFd, OwnedFd, PathBuf)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    let slave = open(&path, OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    let mut t = tcgetattr(&slave)?;
    t.make_raw();
    tcsetattr(&slave, OptionalActions::Now, &t)?;
    fcntl_setfl(&master, fcntl_getfl(&master)? | OFlags::NONBLOCK)?;
    Ok((master, slave, path))
}

fn plug(link: &Path) -> io::Result<Port> {
    let (master, slave, path) = new_pty()?;
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&path, link)?;
    Ok(Port {
        master: Some(master),
        _slave: Some(slave),
        decoder: Decoder::new(1 + MAX_PACKET),
        busy_until: Instant::now(),
        link: link.to_owned(),
    })
}

impl SimChannel {
    /// Creates the ptys (symlinked as `<dir>/radio<i>`) and starts the channel.
    pub fn start(cfg: ChannelConfig, dir: &Path) -> io::Result<SimChannel> {
        let ports = (0..cfg.nodes).map(|i| plug(&dir.join(format!("radio{i}")))).collect::<io::Result<Vec<_>>>()?;
        let inner = Arc::new(Mutex::new(Inner {
            ports,
            rng: fastrand::Rng::with_seed(cfg.seed),
            queue: BinaryHeap::new(),
            order: 0,
            stats: ChannelStats::default(),
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (i2, s2, c2) = (inner.clone(), stop.clone(), cfg.clone());
        let thread = std::thread::Builder::new().name("lora-sim-channel".into()).spawn(move || run(&c2, &i2, &s2))?;
        Ok(SimChannel { cfg, inner, stop, thread: Some(thread) })
    }

    /// The device path of node `i` (a symlink to its pty).
    pub fn device(&self, i: usize) -> PathBuf {
        lock(&self.inner).ports[i].link.clone()
    }

    /// What the channel did so far.
    pub fn stats(&self) -> ChannelStats {
        lock(&self.inner).stats
    }

    /// The channel's log lines (refused frames, unplugged ports) so far.
    pub fn log(&self) -> Vec<String> {
        lock(&self.inner).log.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ChannelConfig {
        &self.cfg
    }

    /// Writes raw bytes to node `i` as if its modem had received them.
    pub fn inject(&self, i: usize, bytes: &[u8]) -> io::Result<()> {
        let g = lock(&self.inner);
        let master = g.ports[i].master.as_ref().ok_or_else(|| io::Error::other("unplugged"))?;
        rustix::io::write(master, bytes)?;
        Ok(())
    }

    /// Pulls node `i`'s modem out: its pty closes and its device name goes.
    pub fn unplug(&self, i: usize) {
        let mut g = lock(&self.inner);
        let p = &mut g.ports[i];
        p.master = None;
        p._slave = None;
        let _ = std::fs::remove_file(&p.link);
        let msg = format!("radio{i} unplugged");
        g.log.push(msg);
    }

    /// Plugs node `i`'s modem back in: a new pty under the same name.
    pub fn replug(&self, i: usize) -> io::Result<()> {
        let mut g = lock(&self.inner);
        let link = g.ports[i].link.clone();
        g.ports[i] = plug(&link)?;
        g.log.push(format!("radio{i} plugged in"));
        Ok(())
    }
}

impl Drop for SimChannel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for p in &lock(&self.inner).ports {
            let _ = std::fs::remove_file(&p.link);
        }
    }
}

fn run(cfg: &ChannelConfig, inner: &Mutex<Inner>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 4096];
    let scale = u64::from(cfg.time_scale.max(1));
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let mut g = lock(inner);
        // Deliver what has finished its airtime.
        while g.queue.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Some(Reverse((_, _, to, packet))) = g.queue.pop() else { break };
            let wire = ferry_cla_kiss::encode_to_vec(ferry_cla_kiss::CMD_DATA, &packet);
            let ok =
                g.ports[to].master.as_ref().is_some_and(|m| rustix::io::write(m, &wire).is_ok_and(|n| n == wire.len()));
            if ok {
                g.stats.delivered += 1;
            } else {
                g.stats.overflowed += 1;
            }
        }
        let wait =
            g.queue.peek().map_or(Duration::from_millis(20), |Reverse((at, ..))| at.saturating_duration_since(now));
        let wait = wait.min(Duration::from_millis(20));
        // Poll every plugged master for bytes from its node.
        let ready: Vec<usize> = {
            let plugged: Vec<(usize, &OwnedFd)> =
                g.ports.iter().enumerate().filter_map(|(i, p)| p.master.as_ref().map(|m| (i, m))).collect();
            let mut fds: Vec<PollFd<'_>> = plugged.iter().map(|(_, m)| PollFd::new(*m, PollFlags::IN)).collect();
            let ts = Timespec { tv_sec: 0, tv_nsec: 0 };
            let _ = poll(&mut fds, Some(&ts));
            plugged
                .iter()
                .zip(&fds)
                .filter(|(_, f)| f.revents().contains(PollFlags::IN))
                .map(|((i, _), _)| *i)
                .collect()
        };
        if ready.is_empty() {
            drop(g);
            // Sleep outside the lock (tests call in to inject and unplug).
            std::thread::sleep(wait.min(Duration::from_millis(2)));
            continue;
        }
        for i in ready {
            let n = match g.ports[i].master.as_ref().map(|m| rustix::io::read(m, &mut buf)) {
                Some(Ok(n)) => n,
                _ => continue,
            };
            let mut packets = Vec::new();
            let mut refused = 0u64;
            g.ports[i].decoder.feed(&buf[..n], |ev| match ev {
                Event::Frame { command, data } if command == ferry_cla_kiss::CMD_DATA && !data.is_empty() => {
                    packets.push(data.to_vec())
                }
                Event::Frame { .. } | Event::Dropped(_) => refused += 1,
            });
            if refused > 0 {
                g.stats.refused += refused;
                g.log.push(format!(
                    "radio{i}: refused {refused} frame(s): not a KISS data frame of 1..={MAX_PACKET} bytes"
                ));
            }
            for packet in packets {
                let air = Duration::from_micros(cfg.radio.airtime_us(packet.len()) / scale);
                let start = g.ports[i].busy_until.max(Instant::now());
                let end = start + air;
                g.ports[i].busy_until = end;
                g.stats.packets += 1;
                for j in 0..g.ports.len() {
                    if j == i {
                        continue;
                    }
                    if g.rng.f64() < cfg.loss {
                        g.stats.lost += 1;
                        continue;
                    }
                    g.order += 1;
                    let order = g.order;
                    g.queue.push(Reverse((end, order, j, packet.clone())));
                }
            }
        }
    }
}
