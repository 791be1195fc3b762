//! The plugin: [`UsbDir`] implements [`ferry_cla_abi::Cla`] over folders.
//!
//! # Threads and ownership
//! `create` parses the settings and touches no file. `start` opens the
//! taken-bundle record and starts one worker thread, which owns everything
//! about the folders (their presence, mailboxes, the [`Inbox`] of each, the
//! tokens handed to the host) and does all reading, syncing and renaming.
//! The host's threads share only `Shared::queue` with it (one mutex, never
//! held across a host callback or a file operation):
//!
//! - `transmit` writes the bundle to a `.part` file in the calling thread
//!   (the bytes go straight from the host's buffer to the page cache; no copy
//!   is kept) and queues it; the worker makes every queued file durable
//!   (one `syncfs` for a big batch, else their syncs side by side; see
//!   [`crate::durable`]), renames them, syncs their folders, and only then reports
//!   `Sent`. A file that could not be written, synced or renamed is reported
//!   `Failed`, so the node sends it again later; nothing is lost when a stick
//!   is pulled mid-write.
//! - `verdict` queues the host's verdict; the worker records taken bundles
//!   (synced) and only then removes their files.
//! - `connect` queues a folder (and, for `ferry usb sync`, a progress
//!   request) and wakes the worker.
//!
//! Every accepted `transmit` ends in exactly one `transmit_done`: at `stop`
//! the queued ones are reported `Failed`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_cla_abi::{Cla, FerryClaDescriptor, Host, Outcome, PeerUp, Verdict};
use ferry_core::bundle::BundleId;

use crate::durable::{self, in_parallel, Method};
use crate::inbox::{verify, Entry, FileSig, Inbox, Room, Unusable};
use crate::name::{self, FileKind};
use crate::settings::{Announce, Settings};
use crate::sync::{SyncStatus, SYNC_STATUS_FILE};
use crate::taken::Taken;

/// The descriptor of this plugin, for [`ferry_cla_abi::host::Plugin::in_process`].
pub static DESCRIPTOR: FerryClaDescriptor = ferry_cla_abi::plugin::descriptor::<UsbDir>();

/// Most files handed to the host and waiting for a verdict, per folder.
const ROOM_FILES: usize = 1024;
/// Most bytes handed to the host and waiting for a verdict, per folder (one
/// file larger than this still goes, alone).
const ROOM_BYTES: u64 = 128 << 20;
/// Polls without any movement before a sync request counts as done.
const QUIET_POLLS: u32 = 2;
/// How often a folder is looked at while a sync request runs.
const SYNC_POLL: Duration = Duration::from_millis(250);

/// The USB-folder convergence-layer plugin. See the [crate documentation](crate).
pub struct UsbDir {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    host: Host,
    settings: Settings,
    /// This node's ID and its folder name.
    me: String,
    me_dir: String,
    state_file: PathBuf,
    queue: Mutex<Queue>,
    wake: Condvar,
    next_part: AtomicU64,
    /// See [`durable::syncfs_reports_errors`].
    syncfs_reports_errors: bool,
}

/// What the host's threads and the worker share.
#[derive(Default)]
struct Queue {
    stopping: bool,
    /// Files written by `transmit`, waiting to be made durable.
    writes: Vec<Write>,
    /// Host verdicts by token.
    verdicts: Vec<(u64, Verdict)>,
    /// Folders asked for by `connect`, with a sync request's nonce.
    requests: Vec<(PathBuf, Option<String>)>,
    /// Announced peers: handle -> (folder, mailbox folder name).
    peers: HashMap<u64, (PathBuf, String)>,
    /// Bundles this run wrote and renamed: (folder, mailbox, bundle ID).
    written: HashSet<(PathBuf, String, String)>,
    /// Writes being made durable right now, per folder.
    flushing: HashMap<PathBuf, usize>,
    /// Transmissions the host has decided on but not handed over yet (it is
    /// reading them from its store), per peer handle.
    coming: HashMap<u64, i64>,
}

/// A bundle written to a `.part` file, to be synced and renamed.
struct Write {
    transmit: u64,
    root: PathBuf,
    part: PathBuf,
    dest: PathBuf,
    mailbox: String,
    id: String,
}

/// A file handed to the host, waiting for its verdict.
struct Handed {
    root: PathBuf,
    entry: Entry,
    id: BundleId,
    expires_unix_ms: u64,
}

/// One watched folder, as the worker sees it.
struct Root {
    path: PathBuf,
    /// From the settings (kept when it disappears) or from `connect`
    /// (dropped when it disappears).
    configured: bool,
    present: bool,
    /// Announced mailboxes: folder name -> peer handle.
    mailboxes: HashMap<String, u64>,
    inbox: Inbox,
    /// Problems already logged (logged again only once they went away and came back).
    troubles: BTreeSet<String>,
    sync: Option<SyncProgress>,
    /// Files the last scan left for want of room.
    waiting: usize,
}

struct SyncProgress {
    nonce: String,
    status: SyncStatus,
    quiet: u32,
    /// Bundles written or taken since the last poll.
    moved: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The default record of taken bundles: `$XDG_DATA_HOME/ferry/usbdir/<node>.taken`.
fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("ferry/usbdir");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib"));
    home.join(".local/share/ferry/usbdir")
}

/// Parses a `connect` address: `usbdir:PATH`, or `usbdir-sync:NONCE:PATH`
/// for a sync request whose progress goes to the folder's status file. The
/// daemon's peer-URL form of the latter, `usbdir-sync://NONCE:PATH/<me>`
/// (`me` is this node's ID), is taken too.
pub fn parse_address(address: &str, me: &str) -> Result<(PathBuf, Option<String>), String> {
    let url_form = address.strip_prefix("usbdir-sync://").and_then(|r| r.strip_suffix(me)?.strip_suffix('/'));
    let normalized = url_form.map(|r| format!("usbdir-sync:{r}"));
    let address = normalized.as_deref().unwrap_or(address);
    let (path, nonce) = if let Some(rest) = address.strip_prefix("usbdir-sync:") {
        let (nonce, path) =
            rest.split_once(':').ok_or_else(|| format!("`{address}`: expected usbdir-sync:NONCE:PATH"))?;
        if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("`{address}`: the sync nonce must be letters and digits"));
        }
        (path, Some(nonce.to_owned()))
    } else if let Some(path) = address.strip_prefix("usbdir:") {
        (path, None)
    } else {
        return Err(format!("the usbdir plugin takes usbdir:/PATH addresses, not `{address}`"));
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!("`{address}`: the folder must be an absolute path"));
    }
    Ok((path, nonce))
}

impl Cla for UsbDir {
    const NAME: &'static CStr = c"usbdir";
    const VERSION: &'static CStr = c"0.1.0";

    fn create(config: &str, host: Host) -> Result<Self, String> {
        let settings = Settings::parse(config).map_err(|e| e.to_string())?;
        let me = host.node_id().to_owned();
        let me_dir = name::encode_node(&me).map_err(|e| format!("usbdir plugin: {e}"))?;
        let state_file = settings.state_dir.clone().unwrap_or_else(default_state_dir).join(format!("{me_dir}.taken"));
        Ok(UsbDir {
            shared: Arc::new(Shared {
                host,
                settings,
                me,
                me_dir,
                state_file,
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                next_part: AtomicU64::new(1),
                syncfs_reports_errors: durable::syncfs_reports_errors(),
            }),
            worker: Mutex::new(None),
        })
    }

    fn start(&self) -> Result<(), String> {
        let taken = Taken::open(&self.shared.state_file, now_unix_ms()).map_err(|e| {
            format!("usbdir plugin: cannot open the record of taken bundles {}: {e}", self.shared.state_file.display())
        })?;
        let shared = Arc::clone(&self.shared);
        let worker = std::thread::Builder::new()
            .name("ferry-usbdir".into())
            .spawn(move || Worker::new(shared, taken).run())
            .map_err(|e| format!("usbdir plugin: cannot start its thread: {e}"))?;
        *lock(&self.worker) = Some(worker);
        Ok(())
    }

    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        self.shared.write_part(peer, transmit, bundle)
    }

    fn verdict(&self, token: u64, verdict: Verdict) {
        lock(&self.shared.queue).verdicts.push((token, verdict));
        self.shared.wake.notify_one();
    }

    fn preparing(&self, peer: u64, delta: i64) {
        let mut q = lock(&self.shared.queue);
        let n = q.coming.entry(peer).or_default();
        *n = n.saturating_add(delta);
        if *n <= 0 {
            q.coming.remove(&peer);
        }
    }

    fn connect(&self, address: &str) -> Result<(), String> {
        let (path, nonce) = parse_address(address, &self.shared.me)?;
        let mut q = lock(&self.shared.queue);
        if q.stopping {
            return Err("the usbdir plugin is stopping".into());
        }
        q.requests.push((path, nonce));
        self.shared.wake.notify_one();
        Ok(())
    }

    fn stop(&self) {
        lock(&self.shared.queue).stopping = true;
        self.shared.wake.notify_one();
        if let Some(w) = lock(&self.worker).take() {
            let _ = w.join();
        }
        // Writes queued after the worker's last look.
        let left = std::mem::take(&mut lock(&self.shared.queue).writes);
        for w in left {
            let _ = std::fs::remove_file(&w.part);
            self.shared.host.transmit_done(w.transmit, Outcome::Failed);
        }
    }
}

impl Shared {
    /// `transmit`: the bundle goes to `<folder>/<to>/<me>/<sha256>.<n>.part`
    /// now; the worker syncs and renames it.
    fn write_part(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        let (root, mailbox) = {
            let q = lock(&self.queue);
            if q.stopping {
                return Err("the usbdir plugin is stopping".into());
            }
            q.peers.get(&peer).cloned().ok_or_else(|| format!("no folder is up for peer {peer}"))?
        };
        let id = ferry_core::node::decode_stored(bundle)
            .map_err(|e| format!("not a bundle, not written: {e}"))?
            .id()
            .to_string();
        let key = (root.clone(), mailbox.clone(), id.clone());
        let hash = name::content_hash(bundle);
        let dir = root.join(&mailbox).join(&self.me_dir);
        let dest = dir.join(name::bundle_file(&hash));
        let already = lock(&self.queue).written.contains(&key)
            || std::fs::metadata(&dest).is_ok_and(|m| m.len() == bundle.len() as u64);
        if already {
            // The same bundle is on the stick already: never written twice.
            self.host.transmit_done(transmit, Outcome::Sent);
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let part = dir.join(name::part_file(&hash, self.next_part.fetch_add(1, Ordering::Relaxed)));
        let written = File::create(&part).and_then(|mut f| f.write_all(bundle));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&part);
            return Err(format!("cannot write {}: {e}", part.display()));
        }
        let mut q = lock(&self.queue);
        if q.stopping {
            drop(q);
            let _ = std::fs::remove_file(&part);
            return Err("the usbdir plugin is stopping".into());
        }
        q.writes.push(Write { transmit, root, part, dest, mailbox, id });
        self.wake.notify_one();
        Ok(())
    }
}

/// The worker thread's state.
struct Worker {
    shared: Arc<Shared>,
    taken: Taken,
    roots: Vec<Root>,
    tokens: HashMap<u64, Handed>,
    next_token: u64,
    next_peer: u64,
    /// The filesystem of the taken-bundle record: the node's own disk.
    state_device: Option<u64>,
}

impl Worker {
    fn new(shared: Arc<Shared>, taken: Taken) -> Worker {
        let configured = Root::new(shared.settings.path.clone(), true);
        let state_device = durable::device_of(taken.path());
        Worker {
            shared,
            taken,
            roots: vec![configured],
            tokens: HashMap::new(),
            next_token: 1,
            next_peer: 1,
            state_device,
        }
    }

    fn host(&self) -> &Host {
        &self.shared.host
    }

    fn run(mut self) {
        self.host().info(&format!(
            "{}: watching {} every {:?}; its mailbox there is {}/, taken bundles are recorded in {}",
            self.shared.me,
            self.shared.settings.path.display(),
            self.shared.settings.poll_interval,
            self.shared.me_dir,
            self.taken.path().display()
        ));
        let interval = self.shared.settings.poll_interval;
        let mut next_poll = Instant::now();
        loop {
            let (writes, verdicts, requests, poll) = {
                let mut q = lock(&self.shared.queue);
                loop {
                    let due = Instant::now() >= next_poll;
                    if q.stopping || due || !q.writes.is_empty() || !q.verdicts.is_empty() || !q.requests.is_empty() {
                        break;
                    }
                    let wait = next_poll.saturating_duration_since(Instant::now());
                    q = self.shared.wake.wait_timeout(q, wait).unwrap_or_else(|e| e.into_inner()).0;
                }
                if q.stopping {
                    break;
                }
                let writes = std::mem::take(&mut q.writes);
                for w in &writes {
                    *q.flushing.entry(w.root.clone()).or_default() += 1;
                }
                let requests = std::mem::take(&mut q.requests);
                let poll = Instant::now() >= next_poll || !requests.is_empty();
                (writes, std::mem::take(&mut q.verdicts), requests, poll)
            };
            if !writes.is_empty() {
                self.flush(writes);
            }
            let mut again = false;
            if !verdicts.is_empty() {
                again = self.settle(verdicts);
            }
            for (path, nonce) in requests {
                self.request(path, nonce);
            }
            if poll || again {
                self.poll();
                // A sync request is followed closely, whatever the interval.
                let syncing = self.roots.iter().any(|r| r.sync.is_some());
                next_poll = Instant::now() + if syncing { interval.min(SYNC_POLL) } else { interval };
            }
        }
        // Stopping: peers go down with the plugin; queued writes fail in `stop`.
        for root in &mut self.roots {
            root.mailboxes.clear();
        }
    }

    /// Makes a batch of written `.part` files durable, renames them, makes
    /// the renames durable, then reports each transmission.
    fn flush(&mut self, writes: Vec<Write>) {
        let mut by_root: HashMap<PathBuf, Vec<Write>> = HashMap::new();
        for w in writes {
            by_root.entry(w.root.clone()).or_default().push(w);
        }
        for (root, batch) in by_root {
            let n = batch.len();
            let outcome = self.flush_root(&root, batch);
            let mut q = lock(&self.shared.queue);
            if let Some(f) = q.flushing.get_mut(&root) {
                *f = f.saturating_sub(n);
            }
            let mut sent = vec![];
            for (w, ok) in outcome {
                if ok {
                    q.written.insert((w.root.clone(), w.mailbox.clone(), w.id.clone()));
                }
                sent.push((w.transmit, ok));
            }
            drop(q);
            let written = sent.iter().filter(|(_, ok)| *ok).count() as u64;
            self.host().debug(&format!("{written} of {n} bundle files durable on {}", root.display()));
            if let Some(r) = self.roots.iter_mut().find(|r| r.path == root) {
                if let Some(s) = &mut r.sync {
                    s.status.written += written;
                    s.moved = true;
                }
            }
            for (t, ok) in sent {
                self.host().transmit_done(t, if ok { Outcome::Sent } else { Outcome::Failed });
            }
        }
    }

    fn flush_root(&mut self, root: &Path, batch: Vec<Write>) -> Vec<(Write, bool)> {
        let parts: Vec<PathBuf> = batch.iter().map(|w| w.part.clone()).collect();
        let own_disk = self.state_device.is_none() || durable::device_of(root) == self.state_device;
        let method = Method::for_batch(parts.len(), own_disk, self.shared.syncfs_reports_errors);
        if let Err(e) = durable::sync_parts(&parts, method) {
            self.host().warn(&format!(
                "syncing {} new bundle files failed ({e}); the node sends them again later",
                batch.len()
            ));
            for w in &batch {
                let _ = std::fs::remove_file(&w.part);
            }
            return batch.into_iter().map(|w| (w, false)).collect();
        }
        let mut out = Vec::with_capacity(batch.len());
        for w in batch {
            match std::fs::rename(&w.part, &w.dest) {
                Ok(()) => out.push((w, true)),
                Err(e) => {
                    self.host().warn(&format!("{}: rename failed ({e}); sent again later", w.part.display()));
                    let _ = std::fs::remove_file(&w.part);
                    out.push((w, false));
                }
            }
        }
        // The renames, and folders made for them, are durable once the
        // folders holding them are synced.
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for (w, _) in out.iter().filter(|(_, ok)| *ok) {
            let mut d = w.dest.parent();
            while let Some(dir) = d.filter(|d| d.starts_with(root)) {
                dirs.insert(dir.to_owned());
                d = dir.parent();
            }
        }
        let dirs: Vec<PathBuf> = dirs.into_iter().collect();
        if let Err(e) = durable::sync_folders(&dirs) {
            self.host().warn(&format!("syncing renamed bundle files failed ({e}); sent again later"));
            for (_, ok) in &mut out {
                *ok = false;
            }
        }
        out
    }

    /// Host verdicts: taken bundles are recorded (synced), then their files
    /// removed. Returns whether files wait for room (poll again now).
    fn settle(&mut self, verdicts: Vec<(u64, Verdict)>) -> bool {
        let mut taken = vec![];
        for (token, verdict) in verdicts {
            let Some(h) = self.tokens.remove(&token) else { continue };
            let Some(root) = self.roots.iter_mut().find(|r| r.path == h.root) else { continue };
            root.inbox.settled(&h.entry.path);
            match verdict {
                Verdict::Accepted | Verdict::Duplicate => taken.push(h),
                Verdict::Invalid => {
                    if root.inbox.unusable(&h.entry) {
                        let msg = format!("{}: {}", h.entry.path.display(), Unusable::Refused);
                        self.shared.host.warn(&msg);
                    }
                    if let Some(s) = &mut root.sync {
                        s.status.bad += 1;
                    }
                }
                // Tried again at the next poll.
                Verdict::NoResources => {}
            }
        }
        if taken.is_empty() {
            return false;
        }
        let ids: Vec<(String, u64)> = taken.iter().map(|h| (h.id.to_string(), h.expires_unix_ms)).collect();
        if let Err(e) = self.taken.record(&ids) {
            self.host().error(&format!(
                "cannot record taken bundles in {} ({e}); their files stay on the folder",
                self.taken.path().display()
            ));
            return false;
        }
        let n = taken.len();
        let mut by_root: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for h in taken {
            by_root.entry(h.root).or_default().push(h.entry.path);
        }
        for (root, paths) in by_root {
            self.remove_taken(&root, &paths);
        }
        self.host().debug(&format!("{n} bundles durable at the node; their files removed"));
        self.roots.iter().any(|r| r.waiting > 0)
    }

    /// Removes the files of taken bundles. An unlink of a file whose blocks
    /// are on disk can wait for the device (discard), so they are removed
    /// several at once.
    fn remove_taken(&mut self, root: &Path, paths: &[PathBuf]) {
        let failures = in_parallel(paths, |p| match std::fs::remove_file(p) {
            // The stick was pulled: the file stays, and is recognised next time.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Some(format!("{}: taken, but cannot be removed: {e}", p.display()))
            }
            _ => None,
        });
        for f in failures {
            self.host().warn(&f);
        }
        if let Some(r) = self.roots.iter_mut().find(|r| r.path == root) {
            if let Some(s) = &mut r.sync {
                s.status.taken += paths.len() as u64;
                s.moved = true;
            }
        }
    }

    /// `connect`: watch a folder (a sync request also gets a status file).
    fn request(&mut self, path: PathBuf, nonce: Option<String>) {
        // The same folder by another spelling (a symlink) is the same root.
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let wanted = canonical(&path);
        let i = match self.roots.iter().position(|r| r.path == path || canonical(&r.path) == wanted) {
            Some(i) => i,
            None => {
                self.host().info(&format!("watching {} as asked", path.display()));
                self.roots.push(Root::new(path, false));
                self.roots.len() - 1
            }
        };
        if let Some(nonce) = nonce {
            let status = SyncStatus { nonce: nonce.clone(), ..SyncStatus::default() };
            self.roots[i].sync = Some(SyncProgress { nonce, status, quiet: 0, moved: true });
        }
    }

    /// Looks at every folder: appeared, gone, new mailboxes, new files.
    fn poll(&mut self) {
        let mut i = 0;
        while i < self.roots.len() {
            let keep = self.poll_root(i);
            if keep {
                i += 1;
            } else {
                let r = self.roots.remove(i);
                self.host().info(&format!("{} is gone; no longer watched", r.path.display()));
            }
        }
    }

    /// Returns false when an asked-for folder is gone for good.
    fn poll_root(&mut self, i: usize) -> bool {
        let path = self.roots[i].path.clone();
        let is_dir = std::fs::metadata(&path).map(|m| m.is_dir());
        let present = matches!(is_dir, Ok(true));
        if !present {
            if self.roots[i].present {
                self.host().info(&format!("{} disappeared: its peers are down", path.display()));
                self.folder_gone(i);
            }
            if let Ok(false) = is_dir {
                self.trouble(i, format!("{} is not a folder; nothing is read or written there", path.display()));
            }
            if let Some(s) = &mut self.roots[i].sync {
                s.status.error = Some(format!("{} is not there", path.display()));
                s.status.done = true;
            }
            return self.roots[i].configured;
        }
        if !self.roots[i].present {
            self.roots[i].present = true;
            self.roots[i].troubles.clear();
            self.host().info(&format!("{} appeared", path.display()));
            self.remove_stale_parts(&path);
        }
        self.announce(i);
        let scanned = self.scan(i);
        self.report_sync(i, scanned);
        true
    }

    /// Removes the `.part` files in this node's own mailboxes on `root` that
    /// no queued write owns: writes of an earlier run (or of a stick pulled
    /// mid-write) that never reached their rename. Only this node writes
    /// there, and such a bundle was never counted as sent, so it is written
    /// again; left alone, they would pile up on the stick.
    fn remove_stale_parts(&self, root: &Path) {
        let pending: HashSet<PathBuf> = lock(&self.shared.queue).writes.iter().map(|w| w.part.clone()).collect();
        let mut removed = 0;
        for mailbox in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let outbox = mailbox.path().join(&self.shared.me_dir);
            for file in std::fs::read_dir(&outbox).into_iter().flatten().flatten() {
                let is_part = file.file_name().to_str().is_some_and(|n| name::classify(n) == FileKind::Part);
                if is_part && !pending.contains(&file.path()) && std::fs::remove_file(file.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            self.host().info(&format!(
                "{}: removed {removed} unfinished .part file(s) this node left (their bundles are written again)",
                root.display()
            ));
        }
    }

    /// Logs a problem with a folder once (until it goes away).
    fn trouble(&mut self, i: usize, msg: String) {
        if self.roots[i].troubles.insert(msg.clone()) {
            self.shared.host.warn(&msg);
        }
    }

    fn folder_gone(&mut self, i: usize) {
        let root = &mut self.roots[i];
        root.present = false;
        root.troubles.clear();
        let handles: Vec<u64> = root.mailboxes.drain().map(|(_, h)| h).collect();
        {
            let mut q = lock(&self.shared.queue);
            for h in &handles {
                q.peers.remove(h);
            }
            q.written.retain(|(r, _, _)| r != &root.path);
        }
        for h in handles {
            self.shared.host.peer_down(h);
        }
    }

    /// Announces each mailbox on the folder (and each listed node) as a
    /// peer; mailboxes that vanished go down.
    fn announce(&mut self, i: usize) {
        let path = self.roots[i].path.clone();
        let me = self.shared.me_dir.clone();
        if let Err(e) = std::fs::create_dir_all(path.join(&me)) {
            self.trouble(i, format!("{}: cannot create this node's mailbox {me}/: {e}", path.display()));
        }
        let mut want: HashMap<String, String> = HashMap::new();
        for n in &self.shared.settings.nodes {
            if let Ok(d) = name::encode_node(n) {
                want.insert(d, n.clone());
            }
        }
        match std::fs::read_dir(&path) {
            Ok(entries) => {
                if self.shared.settings.announce == Announce::All {
                    for e in entries.flatten() {
                        let Ok(dir) = e.file_name().into_string() else { continue };
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            if let Some(node) = name::decode_node(&dir) {
                                want.insert(dir, node);
                            }
                        }
                    }
                }
            }
            Err(e) => {
                self.trouble(
                    i,
                    format!("cannot read folder {}: {e}; nothing is read or written there", path.display()),
                );
                return;
            }
        }
        want.remove(&me);
        let gone: Vec<(String, u64)> = self.roots[i]
            .mailboxes
            .iter()
            .filter(|(d, _)| !want.contains_key(*d))
            .map(|(d, h)| (d.clone(), *h))
            .collect();
        for (d, h) in gone {
            self.roots[i].mailboxes.remove(&d);
            lock(&self.shared.queue).peers.remove(&h);
            self.shared.host.peer_down(h);
        }
        let mut new: Vec<(String, String)> =
            want.into_iter().filter(|(d, _)| !self.roots[i].mailboxes.contains_key(d)).collect();
        new.sort();
        for (dir, node) in new {
            let h = self.next_peer;
            self.next_peer += 1;
            self.roots[i].mailboxes.insert(dir.clone(), h);
            lock(&self.shared.queue).peers.insert(h, (path.clone(), dir.clone()));
            let address = format!("usbdir://{}", path.join(&dir).display());
            self.shared.host.peer_up(h, &PeerUp { node_id: &node, address: &address, mtu: None, rate_bps: None });
        }
    }

    /// Lists this node's mailbox on folder `i`, reads what the inbox plans,
    /// and hands verified bundles to the host. Returns how many files still
    /// wait (not yet read, or with the host), or `None` if the mailbox could
    /// not be read.
    fn scan(&mut self, i: usize) -> Option<usize> {
        let path = self.roots[i].path.clone();
        let mailbox = path.join(&self.shared.me_dir);
        let listing = match list_mailbox(&mailbox) {
            Ok((listing, errors)) => {
                for e in errors {
                    self.trouble(i, e);
                }
                listing
            }
            Err(e) => {
                self.trouble(
                    i,
                    format!("cannot read this node's mailbox {}: {e}; nothing is taken from it", mailbox.display()),
                );
                return None;
            }
        };
        let room = Room { files: ROOM_FILES, bytes: ROOM_BYTES };
        let max = self.shared.settings.max_bundle_size;
        let plan = self.roots[i].inbox.plan(listing, max, room);
        self.roots[i].waiting = plan.waiting;
        for (e, why) in &plan.report {
            self.shared.host.warn(&format!("{}: {why}", e.path.display()));
            if let Some(s) = &mut self.roots[i].sync {
                s.status.bad += 1;
            }
        }
        let now = now_unix_ms();
        let mut handed = 0;
        for e in plan.read {
            let FileKind::Bundle { hash } = name::classify(&e.name) else { continue };
            let checked = match std::fs::read(&e.path) {
                Ok(bytes) => verify(&hash, &bytes, now).map(|v| (v, bytes)),
                // Gone between listing and reading (another reader, a pulled stick).
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => Err(Unusable::Unreadable(err.to_string())),
            };
            let (v, bytes) = match checked {
                Ok(ok) => ok,
                Err(why) => {
                    if self.roots[i].inbox.unusable(&e) {
                        self.shared.host.warn(&format!("{}: {why}", e.path.display()));
                        if let Some(s) = &mut self.roots[i].sync {
                            s.status.bad += 1;
                        }
                    }
                    continue;
                }
            };
            if self.taken.contains(&v.id.to_string()) {
                // A copy of a bundle taken before: removed, not delivered twice.
                self.shared.host.debug(&format!(
                    "{}: bundle {} was taken before; removing the copy",
                    e.path.display(),
                    v.id
                ));
                self.remove_taken(&path, std::slice::from_ref(&e.path));
                continue;
            }
            if self.roots[i].inbox.is_pending(&v.id) {
                // Another file of the same bundle is with the host; this one
                // is settled at a later poll.
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            let from = self.roots[i].mailboxes.get(&e.from).copied().unwrap_or(0);
            self.roots[i].inbox.handed_over(&e, v.id.clone());
            self.tokens
                .insert(token, Handed { root: path.clone(), entry: e, id: v.id, expires_unix_ms: v.expires_unix_ms });
            self.shared.host.bundle_received(from, &bytes, token);
            handed += 1;
        }
        if handed > 0 {
            self.shared.host.debug(&format!("{handed} bundles from {} handed to the node", mailbox.display()));
        }
        Some(plan.waiting + self.roots[i].inbox.pending())
    }

    /// Updates a sync request's status file on the folder.
    fn report_sync(&mut self, i: usize, waiting: Option<usize>) {
        let (flushing, coming) = {
            let q = lock(&self.shared.queue);
            let root = &self.roots[i].path;
            let coming: i64 = q
                .coming
                .iter()
                .filter(|(peer, _)| q.peers.get(peer).is_some_and(|(r, _)| r == root))
                .map(|(_, n)| *n)
                .sum();
            (q.flushing.get(root).copied().unwrap_or(0), coming)
        };
        let root = &mut self.roots[i];
        let Some(s) = &mut root.sync else { return };
        match waiting {
            None => {
                s.status.error = Some("this node's mailbox cannot be read (see ferryd's log)".into());
                s.status.done = true;
            }
            Some(w) => {
                s.status.waiting = w as u64;
                // Still busy: something moved, files wait to be read, writes
                // are being synced, or the host is reading bundles for it.
                if s.moved || w > 0 || flushing > 0 || coming > 0 {
                    s.quiet = 0;
                } else {
                    s.quiet += 1;
                }
                s.moved = false;
                s.status.done = s.quiet >= QUIET_POLLS;
            }
        }
        let file = root.path.join(&self.shared.me_dir).join(SYNC_STATUS_FILE);
        let done = s.status.done;
        if let Err(e) = s.status.write(&file) {
            let msg = format!("cannot write sync progress {}: {e}", file.display());
            self.shared.host.warn(&msg);
        }
        if done {
            let n = &s.nonce;
            self.shared.host.info(&format!("sync {n} of {} done: {:?}", root.path.display(), s.status));
            root.sync = None;
        }
    }
}

impl Root {
    fn new(path: PathBuf, configured: bool) -> Root {
        Root {
            path,
            configured,
            present: false,
            mailboxes: HashMap::new(),
            inbox: Inbox::new(),
            troubles: BTreeSet::new(),
            sync: None,
            waiting: 0,
        }
    }
}

/// Lists `<mailbox>/<from>/<file>`: every file with its size and time. Sub-
/// folders that cannot be read are reported as messages, not errors.
fn list_mailbox(mailbox: &Path) -> std::io::Result<(Vec<Entry>, Vec<String>)> {
    let mut listing = vec![];
    let mut errors = vec![];
    let mut senders: Vec<(String, PathBuf)> = vec![];
    for e in std::fs::read_dir(mailbox)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            senders.push((name, e.path()));
        } else {
            errors.push(format!("{}: not a sender's folder; left alone", e.path().display()));
        }
    }
    senders.sort();
    for (from, dir) in senders {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                errors.push(format!("cannot read {}: {err}; nothing is taken from it", dir.display()));
                continue;
            }
        };
        let mut files = vec![];
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let sig = FileSig { len: meta.len(), modified: meta.modified().ok() };
            files.push(Entry {
                path: e.path(),
                from: from.clone(),
                name: e.file_name().to_string_lossy().into_owned(),
                sig,
            });
        }
        // Oldest first, so bundles arrive roughly in the order they were written.
        files.sort_by(|a, b| a.sig.modified.cmp(&b.sig.modified).then_with(|| a.name.cmp(&b.name)));
        listing.extend(files);
    }
    Ok((listing, errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::bundle::CreationTimestamp;
    use ferry_core::codec::BundleBuilder;

    /// What a crash between the syncs and the renames leaves behind — and
    /// what the same batch looks like once it ran to the end — as the
    /// receiving node reads the folder, for both ways of syncing.
    #[test]
    fn a_batch_stopped_before_its_renames_leaves_part_files_that_are_never_read() {
        for (method, n) in [(Method::Filesystem, durable::SYNCFS_MIN_FILES + 4), (Method::EachFile, 3)] {
            let stick = tempfile::tempdir().unwrap();
            let dir = stick.path().join("dtn-me/dtn-a");
            std::fs::create_dir_all(&dir).unwrap();
            let mut written = vec![];
            for seq in 0..n as u64 {
                let bytes = BundleBuilder::new(
                    "dtn://a/".parse().unwrap(),
                    "dtn://me/in".parse().unwrap(),
                    CreationTimestamp { time: 1_000, seq },
                    60_000,
                )
                .build(b"payload");
                let hash = name::content_hash(&bytes);
                let part = dir.join(name::part_file(&hash, seq));
                std::fs::write(&part, &bytes).unwrap();
                written.push((part, dir.join(name::bundle_file(&hash)), hash));
            }
            let parts: Vec<PathBuf> = written.iter().map(|(p, _, _)| p.clone()).collect();
            assert_eq!(Method::for_batch(parts.len(), true, true), method);
            durable::sync_parts(&parts, method).unwrap();

            // Stopped here: only part files, reported as unfinished, none read.
            let mut inbox = Inbox::new();
            let room = Room { files: 1000, bytes: 1 << 30 };
            let (listing, errors) = list_mailbox(&stick.path().join("dtn-me")).unwrap();
            assert!(errors.is_empty(), "{errors:?}");
            let plan = inbox.plan(listing, 1 << 20, room);
            assert!(plan.read.is_empty(), "{method:?}: a part file was read");
            assert_eq!(plan.report.len(), n);
            assert!(plan.report.iter().all(|(_, why)| *why == Unusable::Unfinished));

            // Run to the end: renamed, folders synced, every file verifies.
            for (part, dest, _) in &written {
                std::fs::rename(part, dest).unwrap();
            }
            durable::sync_folders(&[dir.clone(), stick.path().join("dtn-me")]).unwrap();
            let (listing, _) = list_mailbox(&stick.path().join("dtn-me")).unwrap();
            let plan = inbox.plan(listing, 1 << 20, room);
            assert_eq!(plan.read.len(), n, "{method:?}");
            for e in &plan.read {
                let FileKind::Bundle { hash } = name::classify(&e.name) else { panic!("{}", e.name) };
                verify(&hash, &std::fs::read(&e.path).unwrap(), 0).unwrap();
            }
        }
    }

    /// Records what the plugin tells its host.
    #[derive(Default)]
    struct Host {
        peers: Mutex<HashMap<u64, String>>,
        done: Mutex<Vec<(u64, Outcome)>>,
    }

    impl ferry_cla_abi::host::HostCallbacks for Host {
        fn bundle_received(&self, _peer: u64, _bundle: &[u8], _token: u64) {}
        fn peer_up(&self, peer: u64, info: PeerUp<'_>) {
            lock(&self.peers).insert(peer, info.node_id.to_owned());
        }
        fn peer_down(&self, peer: u64) {
            lock(&self.peers).remove(&peer);
        }
        fn transmit_done(&self, transmit: u64, outcome: Outcome) {
            lock(&self.done).push((transmit, outcome));
        }
        fn log(&self, _level: i32, _msg: &str) {}
    }

    fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = f() {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A sync request is not done while the host says bundles for the
    /// folder's peers are still being read from its store (a big bundle
    /// takes a while): it ends only after they were written.
    #[test]
    fn a_sync_waits_for_the_bundles_the_host_is_still_preparing() {
        let stick = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(stick.path().join(name::encode_node("dtn://b/").unwrap())).unwrap();
        let plugin = ferry_cla_abi::host::Plugin::in_process(&DESCRIPTOR).unwrap();
        let host = Arc::new(Host::default());
        let config = format!("path = \"{}\"\nstate_dir = \"{}\"\n", stick.path().display(), state.path().display());
        let inst = plugin.instantiate("dtn://me/", &config, host.clone()).unwrap();
        inst.start().unwrap();
        let peer = wait_for("the stick's peer dtn://b/", || {
            lock(&host.peers).iter().find(|(_, n)| n.as_str() == "dtn://b/").map(|(p, _)| *p)
        });
        // The host decides to send one bundle and starts reading it.
        inst.preparing(peer, 1);
        inst.connect(&format!("usbdir-sync:n1:{}", stick.path().display())).unwrap();
        let status_file = stick.path().join(name::encode_node("dtn://me/").unwrap()).join(SYNC_STATUS_FILE);
        // Six polls (QUIET_POLLS is 2): without the hint it would be done.
        std::thread::sleep(SYNC_POLL * 6);
        let status = SyncStatus::read(&status_file).expect("a progress report");
        assert!(!status.done, "done while a bundle was still coming: {status:?}");

        let bytes = BundleBuilder::new(
            "dtn://me/".parse().unwrap(),
            "dtn://b/in".parse().unwrap(),
            CreationTimestamp { time: 1_000, seq: 1 },
            60_000,
        )
        .build(b"read at last");
        inst.transmit(peer, 77, &bytes).unwrap();
        inst.preparing(peer, -1);
        let status = wait_for("the sync to end", || SyncStatus::read(&status_file).filter(|s| s.done));
        assert_eq!((status.written, &status.error), (1, &None), "{status:?}");
        assert_eq!(*lock(&host.done), [(77, Outcome::Sent)]);
        inst.stop();
    }

    /// A node killed mid-write leaves `.part` files in its own outboxes;
    /// when it starts again they are removed (the bundles are written
    /// anew). Another node's `.part` files and complete files stay.
    #[test]
    fn a_restarted_node_removes_the_part_files_it_left_and_only_those() {
        let stick = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let me = name::encode_node("dtn://me/").unwrap();
        let b = name::encode_node("dtn://b/").unwrap();
        let mine = stick.path().join(&b).join(&me);
        let theirs = stick.path().join(&me).join(&b);
        for d in [&mine, &theirs] {
            std::fs::create_dir_all(d).unwrap();
        }
        let h = "ab".repeat(32);
        let stale = [mine.join(name::part_file(&h, 0)), mine.join(name::part_file(&h, 9))];
        for p in &stale {
            std::fs::write(p, b"half a bundle").unwrap();
        }
        let kept = [theirs.join(name::part_file(&h, 0)), mine.join(name::bundle_file(&h)), mine.join("notes.txt")];
        for p in &kept {
            std::fs::write(p, b"not mine to remove").unwrap();
        }
        let plugin = ferry_cla_abi::host::Plugin::in_process(&DESCRIPTOR).unwrap();
        let host = Arc::new(Host::default());
        let config = format!("path = \"{}\"\nstate_dir = \"{}\"\n", stick.path().display(), state.path().display());
        let inst = plugin.instantiate("dtn://me/", &config, host.clone()).unwrap();
        inst.start().unwrap();
        wait_for("the stale .part files to go", || stale.iter().all(|p| !p.exists()).then_some(()));
        for p in &kept {
            assert!(p.exists(), "{} was removed", p.display());
        }
        inst.stop();
    }

    #[test]
    fn connect_addresses() {
        let me = "dtn://me/";
        assert_eq!(parse_address("usbdir:/media/s", me).unwrap(), (PathBuf::from("/media/s"), None));
        let sync = (PathBuf::from("/media/s:x"), Some("ab12".to_owned()));
        assert_eq!(parse_address("usbdir-sync:ab12:/media/s:x", me).unwrap(), sync);
        assert_eq!(parse_address("usbdir-sync://ab12:/media/s:x/dtn://me/", me).unwrap(), sync);
        for bad in [
            "/media/s",
            "usbdir:rel",
            "usbdir-sync:/media/s",
            "usbdir-sync:a-b:/m",
            "tcpcl://h:1",
            "usbdir-sync://ab12:/media/s/dtn://other/",
        ] {
            assert!(parse_address(bad, me).is_err(), "{bad}");
        }
    }
}
