//! A full disk, and a read-only one at start. ferryd's data folder is on a
//! small tmpfs, mounted in a mount namespace of ferryd's own (`unshare -m`,
//! as root), so nothing outside the test sees it. Sending fills it; ferryd then refuses new bundles with
//! 507 and keeps every bundle it has; once bundles are delivered (and so
//! deleted) it takes new ones again, without a restart.

mod api_support;

use std::process::Command;

use api_support::{payload_of, Ferryd};

const MIB: usize = 1 << 20;

/// Whether this machine lets the test mount a tmpfs in a namespace of its own.
fn can_mount() -> bool {
    Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_refuses_new_bundles_keeps_the_rest_and_recovers() {
    // The CI machine runs tests as root, where this works; elsewhere there is
    // no way to fill a disk safely, so say so rather than pretend.
    if !can_mount() {
        eprintln!("SKIPPED: cannot mount a tmpfs in a private mount namespace here (needs root and unshare)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("fs");
    std::fs::create_dir_all(&mount).unwrap();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, "node_id = \"dtn://full/\"\n[store]\nmin_free_mib = 16\n").unwrap();
    let script = format!("mount -t tmpfs -o size=96m tmpfs '{}' && exec \"$@\"", mount.display());
    let f = Ferryd::start_wrapped(
        &mount.join("data"),
        &["unshare", "-m", "sh", "-c", &script, "sh"],
        &["--config", config.to_str().unwrap()],
    );
    f.get_ok("/register?sink");

    // 1 MiB bundles until the store says no; then a few more, all refused.
    let payload = |i: usize| -> Vec<u8> { (0..MIB).map(|j| (i * 31 + j) as u8).collect() };
    let mut stored = 0;
    let mut refused = None;
    for i in 0..96 {
        let r = f.post("/send?dst=dtn://full/sink&lifetime=1h", payload(i));
        match r.status {
            200 => stored += 1,
            507 => {
                refused = Some(r.text());
                break;
            }
            other => panic!("send {i}: {other} {}", r.text()),
        }
    }
    let why = refused.expect("a 96 MiB disk fills up before 96 bundles of 1 MiB are stored");
    assert!(why.contains("storage full") && why.contains("MiB free"), "{why}");
    assert!(stored >= 20, "only {stored} bundles fit: the store wasted the disk");
    for i in 0..3 {
        assert_eq!(f.post("/send?dst=dtn://full/sink", payload(1000 + i)).status, 507);
    }
    assert_eq!(f.bundle_ids().len(), stored, "nothing stored was lost, nothing refused was kept");

    // Deliver half: the space comes back and new bundles are taken again.
    for i in 0..stored / 2 {
        assert_eq!(f.receive("sink", std::time::Duration::from_secs(10)), payload(i), "bundle {i} intact");
    }
    let r = f.post("/send?dst=dtn://full/sink", payload(2000));
    assert_eq!(r.status, 200, "after deliveries freed space: {}", r.text());
    // Everything else is still there and intact.
    for i in stored / 2..stored {
        let got = f.get("/endpoint?sink");
        assert_eq!(payload_of(&got.body), payload(i), "bundle {i} intact");
    }
    assert_eq!(payload_of(&f.get("/endpoint?sink").body), payload(2000));
}

/// A data folder on a read-only filesystem: ferryd says so and exits
/// non-zero instead of running without a store.
#[test]
fn a_read_only_data_folder_is_a_clear_error_at_start() {
    if !can_mount() {
        eprintln!("SKIPPED: cannot mount a tmpfs in a private mount namespace here (needs root and unshare)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("fs");
    std::fs::create_dir_all(&mount).unwrap();
    let m = mount.display();
    // An existing data folder, then the filesystem made read-only.
    let script = format!(
        "mount -t tmpfs -o size=8m tmpfs '{m}' && mkdir '{m}/data' && mount -o remount,ro '{m}' && exec \"$@\""
    );
    let out = Command::new("timeout")
        .args(["60", "unshare", "-m", "sh", "-c", &script, "sh", env!("CARGO_BIN_EXE_ferryd")])
        .args(["--data-dir", &format!("{m}/data"), "--api", "127.0.0.1:0", "--no-default-cla"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(stderr.contains("cannot open the store") && stderr.contains("Read-only file system"), "{stderr}");
}
