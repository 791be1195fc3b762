//! The usbdir plugin between real ferryd processes: a "stick" (a temporary
//! folder) plugged into one node, pulled, plugged into the other; junk,
//! truncated and corrupt files; re-copied files; unreadable folders.
//!
//! The plugin is the workspace's shared library next to ferryd in the target
//! folder (`scripts/test` builds it with `cargo build --workspace
//! --all-targets` first). Every wait is bounded; the end of a sync is known
//! from the plugin's own progress file (`ferry usb sync` reads the same),
//! never from a sleep.

mod api_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use api_support::{binary_payload, bundle, Ferryd};
use ferry_cla_usbdir::name::{bundle_file, content_hash, encode_node};
use ferry_cla_usbdir::sync::{SyncStatus, SYNC_STATUS_FILE};

const WAIT: Duration = Duration::from_secs(60);

fn plugin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target/<profile>").to_path_buf();
    let p = dir.join("libferry_cla_usbdir.so");
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", p.display());
    p
}

fn usbdir_cla(folder: &Path, state: &Path, nodes: &[&str]) -> String {
    let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\npath = \"{}\"\nstate_dir = \"{}\"\nnodes = [{}]\npoll_interval_ms = 200\n",
        plugin().display(),
        folder.display(),
        state.display(),
        nodes.join(", ")
    )
}

/// ferryd `dtn://<name>/` on `dir/<name>` with `clas` as its `[[cla]]` blocks.
fn node(dir: &Path, name: &str, clas: &str) -> Ferryd {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("node_id = \"dtn://{name}/\"\n{clas}")).unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

/// `<folder>/<to>/<from>/`
fn mailbox(folder: &Path, to: &str, from: &str) -> PathBuf {
    folder.join(encode_node(to).unwrap()).join(encode_node(from).unwrap())
}

/// Puts `bytes` into `dir` under its content name; returns the path.
fn drop_bundle(dir: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(bundle_file(&content_hash(bytes)));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(e) => e.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// Asks `f` to sync `folder` now (as `ferry usb sync` does) and waits for
/// the plugin to report it done: at least two looks at the folder with
/// nothing moving. Returns the final report.
fn sync(f: &Ferryd, folder: &Path, nonce: &str) -> SyncStatus {
    let path = folder.to_str().unwrap();
    f.get_ok(&format!("/ferry/usb/sync?path={path}&nonce={nonce}"));
    let me = encode_node(&f.node_id().to_string()).unwrap();
    let file = folder.join(me).join(SYNC_STATUS_FILE);
    let mut last = None;
    f.eventually(&format!("sync {nonce} of {path} to finish"), WAIT, || {
        last = SyncStatus::read(&file).filter(|s| s.nonce == nonce && s.done);
        last.is_some()
    });
    last.expect("a final report")
}

fn nothing_on(f: &Ferryd, svc: &str) -> bool {
    f.get(&format!("/endpoint?{svc}")).body == b"Nothing to receive"
}

fn occurrences(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn bundles_travel_on_a_stick_plugged_into_one_node_then_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (at_a, at_b, stick) = (dir.path().join("at-a"), dir.path().join("at-b"), dir.path().join("stick"));
    let a = node(dir.path(), "alpha", &usbdir_cla(&at_a, &dir.path().join("a-state"), &["dtn://beta/"]));
    let b = node(dir.path(), "beta", &usbdir_cla(&at_b, &dir.path().join("b-state"), &[]));
    b.get_ok("/register?incoming");
    let sizes = [0usize, 1, 100_000, 3 << 20];
    for len in sizes {
        let sent = a.post("/send?dst=dtn://beta/incoming&lifetime=1h", binary_payload(len));
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    // A bundle for a node further on: B will carry it (a data mule).
    assert_eq!(a.post("/send?dst=dtn://far/x&lifetime=1h", b"for far".to_vec()).status, 200);
    assert!(a.get("/status/peers").json().get("dtn://beta/").is_none(), "no stick, no peer");

    // Plugged into A: beta's mailbox is a peer, A writes every bundle onto the stick.
    std::fs::create_dir(&stick).unwrap();
    std::fs::rename(&stick, &at_a).unwrap();
    a.eventually("the stick to be a peer", WAIT, || a.get("/status/peers").json()["dtn://beta/"]["connected"] == true);
    let outbox = mailbox(&at_a, "dtn://beta/", "dtn://alpha/");
    a.eventually("A to write its bundles", WAIT, || files_in(&outbox).len() == sizes.len() + 1);
    let report = sync(&a, &at_a, "a1");
    assert_eq!(files_in(&outbox).len(), sizes.len() + 1, "{report:?}");
    assert!(files_in(&outbox).iter().all(|f| f.ends_with(".bundle")), "no .part file left: {:?}", files_in(&outbox));

    // Pulled out and plugged in again: peer down, then up; nothing is written twice.
    std::fs::rename(&at_a, &stick).unwrap();
    a.eventually("the peer to go down", WAIT, || a.get("/status/peers").json()["dtn://beta/"]["connected"] != true);
    std::fs::rename(&stick, &at_a).unwrap();
    sync(&a, &at_a, "a2");
    assert_eq!(files_in(&outbox).len(), sizes.len() + 1, "the bundle for far is not written again");

    // Moved to B: B takes its own bundles and the one it carries for far.
    std::fs::rename(&at_a, &at_b).unwrap();
    let inbox = mailbox(&at_b, "dtn://beta/", "dtn://alpha/");
    let mut got: Vec<Vec<u8>> = sizes.iter().map(|_| b.receive("incoming", WAIT)).collect();
    got.sort_by_key(|p| p.len());
    for (len, payload) in sizes.iter().zip(&got) {
        assert_eq!(payload, &binary_payload(*len), "payload of {len} bytes is byte-identical");
    }
    b.eventually("B to take every file", WAIT, || files_in(&inbox).is_empty());
    b.eventually("B to hold the bundle for far", WAIT, || b.get("/ferry/bundles").text().contains("dtn://far/x"));
    assert!(a.log_text().contains("disappeared"), "A logged the stick going away");
}

#[test]
fn junk_truncated_and_corrupt_files_stay_are_reported_once_and_a_complete_copy_wins() {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick");
    let inbox = mailbox(&stick, "dtn://beta/", "dtn://alpha/");
    std::fs::create_dir_all(&inbox).unwrap();
    let good = bundle("dtn://alpha/", "dtn://beta/in", 1, 3_600_000, b"good one");
    let whole = bundle("dtn://alpha/", "dtn://beta/in", 2, 3_600_000, &binary_payload(50_000));
    let truncated = inbox.join(bundle_file(&content_hash(&whole)));
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let garbage = drop_bundle(&inbox, b"hashes right, but no bundle");
    let expired = {
        let b = ferry_core::codec::BundleBuilder::new(
            "dtn://alpha/".parse().unwrap(),
            "dtn://beta/in".parse().unwrap(),
            ferry_core::CreationTimestamp { time: 1_000, seq: 3 },
            1_000,
        )
        .build(b"too old");
        drop_bundle(&inbox, &b)
    };
    let junk = inbox.join("notes.txt");
    std::fs::write(&junk, "not a bundle").unwrap();
    let part = inbox.join(format!("{}.7.part", content_hash(b"x")));
    std::fs::write(&part, "half").unwrap();
    let good_path = drop_bundle(&inbox, &good);

    let b = node(dir.path(), "beta", &usbdir_cla(&stick, &dir.path().join("b-state"), &[]));
    b.get_ok("/register?in");
    assert_eq!(b.receive("in", WAIT), b"good one");
    b.eventually("the good file to be removed", WAIT, || !good_path.exists());
    // Two full syncs (each at least two looks at the folder) later ...
    sync(&b, &stick, "s1");
    let report = sync(&b, &stick, "s2");
    assert_eq!(report.taken, 0);
    let log = b.log_text();
    for p in [&truncated, &garbage, &expired, &junk, &part] {
        assert!(p.exists(), "{} left in place", p.display());
        assert_eq!(occurrences(&log, &p.display().to_string()), 1, "{} reported once; log:\n{log}", p.display());
    }
    assert!(log.contains("does not match its SHA-256 name"), "{log}");
    assert!(log.contains("not a valid bundle"), "{log}");
    assert!(log.contains("the node refused the bundle"), "{log}");
    assert!(nothing_on(&b, "in"), "nothing bad was delivered");

    // A later, complete copy under the same name wins.
    std::fs::write(&truncated, &whole).unwrap();
    assert_eq!(b.receive("in", WAIT), binary_payload(50_000));
    b.eventually("the complete file to be removed", WAIT, || !truncated.exists());
}

#[test]
fn a_recopied_file_is_removed_without_being_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick");
    let inbox = mailbox(&stick, "dtn://beta/", "dtn://alpha/");
    let b = node(dir.path(), "beta", &usbdir_cla(&stick, &dir.path().join("b-state"), &[]));
    b.get_ok("/register?in");
    let bytes = bundle("dtn://alpha/", "dtn://beta/in", 1, 3_600_000, b"only once");
    let saved = dir.path().join("saved.bundle");
    std::fs::write(&saved, &bytes).unwrap();
    let path = drop_bundle(&inbox, &bytes);
    assert_eq!(b.receive("in", WAIT), b"only once");
    b.eventually("the file to be removed", WAIT, || !path.exists());
    // Delivered and gone from the node: the plugin's record still knows it.
    std::fs::copy(&saved, &path).unwrap();
    // The same bundle ID in other bytes (another copy of it) too.
    let other_copy = {
        let b = ferry_core::codec::decode(&bytes).unwrap();
        ferry_core::codec::BundleBuilder::new(
            "dtn://alpha/".parse().unwrap(),
            "dtn://beta/in".parse().unwrap(),
            b.primary.creation,
            b.primary.lifetime_ms,
        )
        .build(b"only once, again")
    };
    let other = drop_bundle(&inbox, &other_copy);
    b.eventually("both copies to be removed", WAIT, || !path.exists() && !other.exists());
    sync(&b, &stick, "r1");
    assert!(nothing_on(&b, "in"), "not delivered twice");
}

#[test]
fn a_file_is_removed_only_once_its_bundle_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick");
    let inbox = mailbox(&stick, "dtn://beta/", "dtn://alpha/");
    let clas = usbdir_cla(&stick, &dir.path().join("b-state"), &[]);
    let payload = binary_payload(200_000);
    let path = drop_bundle(&inbox, &bundle("dtn://alpha/", "dtn://beta/in", 1, 3_600_000, &payload));
    let b = node(dir.path(), "beta", &clas);
    b.eventually("the file to be taken", WAIT, || !path.exists());
    // kill -9 the moment the file is gone: the bundle must be on disk.
    drop(b);
    let b = node(dir.path(), "beta", &clas);
    b.get_ok("/register?in");
    assert_eq!(b.receive("in", WAIT), payload);
}

#[test]
fn an_unreadable_folder_is_logged_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // One folder's own mailbox is a file; another "folder" is a file; a third is fine.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join(encode_node("dtn://beta/").unwrap()), "in the way").unwrap();
    let not_a_folder = dir.path().join("not-a-folder");
    std::fs::write(&not_a_folder, "a file").unwrap();
    let good = dir.path().join("good");
    let state = dir.path().join("b-state");
    let clas = [
        usbdir_cla(&broken, &state.join("1"), &[]),
        usbdir_cla(&not_a_folder, &state.join("2"), &[]),
        usbdir_cla(&good, &state.join("3"), &[]),
    ]
    .concat();
    let b = node(dir.path(), "beta", &clas);
    b.get_ok("/register?in");
    b.eventually("both problems to be logged", WAIT, || {
        let log = b.log_text();
        log.contains("cannot read this node's mailbox") && log.contains("is not a folder")
    });
    // The good folder keeps working, look after look (each bundle takes at
    // least one), and the problems are not logged again meanwhile.
    let inbox = mailbox(&good, "dtn://beta/", "dtn://alpha/");
    for seq in 1..=3 {
        let path = drop_bundle(&inbox, &bundle("dtn://alpha/", "dtn://beta/in", seq, 3_600_000, b"still here"));
        assert_eq!(b.receive("in", WAIT), b"still here");
        b.eventually("the good file to be removed", WAIT, || !path.exists());
    }
    let log = b.log_text();
    assert_eq!(occurrences(&log, "cannot read this node's mailbox"), 1, "{log}");
    assert_eq!(occurrences(&log, "is not a folder"), 1, "{log}");
    assert_eq!(b.get_ok("/status/nodeid").trim(), "dtn://beta/");
}

#[test]
fn ferry_usb_sync_deals_with_a_stick_now_and_reports_what_moved() {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick");
    // Looked at once an hour: only `ferry usb sync` makes it look sooner.
    let clas = usbdir_cla(&stick, &dir.path().join("b-state"), &[])
        .replace("poll_interval_ms = 200", "poll_interval_ms = 3600000");
    let b = node(dir.path(), "beta", &clas);
    b.get_ok("/register?in");
    b.eventually("the plugin's first look at the folder", WAIT, || b.log_text().contains("watching"));
    let path = drop_bundle(
        &mailbox(&stick, "dtn://beta/", "dtn://alpha/"),
        &bundle("dtn://alpha/", "dtn://beta/in", 1, 3_600_000, b"now"),
    );
    std::fs::write(path.with_file_name("junk.txt"), "junk").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--api", &format!("http://{}", b.addr), "usb", "sync", "--timeout", "60s"])
        .arg(&stick)
        .output()
        .expect("run ferry");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 bundles taken, 0 written, 1 unusable files left in place"), "{stdout}");
    assert!(!path.exists());
    assert_eq!(b.receive("in", WAIT), b"now");
    // A folder that is not there is a clear error, not a hang.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--api", &format!("http://{}", b.addr), "usb", "sync", "--timeout", "60s"])
        .arg(dir.path().join("no-stick"))
        .output()
        .expect("run ferry");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
