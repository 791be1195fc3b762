//! The WebAssembly app host in a real ferryd: apps that trap, loop forever or
//! exceed their memory cap leave the node serving and their bundles set aside
//! with a deletion status report; a bundle in flight to an app that crashes is
//! offered again, not lost; `ferry apps` starts, stops and shows them.

mod api_support;
mod apps_support;

use std::time::Duration;

use api_support::payload_of;
use apps_support::{app_block, counter, ferry, ferry_ok, node};

const WAIT: Duration = Duration::from_secs(60);
/// RFC 9171 §4.2.3: request reporting of bundle deletion.
const REPORT_DELETION: u64 = 0x4_0000;

#[test]
fn misbehaving_apps_leave_the_node_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = [
        app_block("noop", "noop", &["noop"], ""),
        app_block("trap", "misbehave", &["trap"], "max_attempts = 3\n[app.config]\nmode = \"trap\""),
        app_block(
            "spin",
            "misbehave",
            &["spin"],
            "max_attempts = 2\ntime_budget = \"300ms\"\n[app.config]\nmode = \"loop\"",
        ),
        app_block("hog", "misbehave", &["hog"], "max_attempts = 2\nmemory = \"8MiB\"\n[app.config]\nmode = \"hog\""),
    ]
    .concat();
    let a = node(dir.path(), "a", &config);
    a.get_ok("/register?reports");
    for app in ["trap", "spin", "hog"] {
        let sent = a.post(
            &format!("/send?dst=dtn://a/{app}&lifetime=1h&flags={REPORT_DELETION}&report_to=dtn://a/reports"),
            format!("for {app}").into_bytes(),
        );
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    // Meanwhile the well-behaved app and the API go on.
    for i in 0..20 {
        let sent = a.post("/send?dst=dtn://a/noop&lifetime=1h", format!("n{i}").into_bytes());
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    a.eventually("noop to take its 20 bundles", WAIT, || counter(&a, "noop", "delivered") == 20);
    for app in ["trap", "spin", "hog"] {
        a.eventually(&format!("{app}'s bundle to be set aside"), WAIT, || counter(&a, app, "set_aside") == 1);
    }
    assert_eq!(counter(&a, "trap", "traps"), 3, "{}", a.get("/ferry/apps").text());
    assert_eq!(counter(&a, "spin", "traps"), 2);
    assert_eq!(counter(&a, "hog", "traps"), 2);
    let spin = apps_support::app_status(&a, "spin");
    assert!(spin["last_error"].as_str().unwrap_or("").contains("time budget"), "{spin}");

    // Each set-aside bundle was kept in the set-aside folder and deleted with a
    // deletion status report to its report-to endpoint.
    for app in ["trap", "spin", "hog"] {
        let kept = dir.path().join("a/apps").join(app).join("set-aside");
        let files: Vec<_> = std::fs::read_dir(&kept).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "{}", kept.display());
        assert_eq!(payload_of(&std::fs::read(files[0].path()).unwrap()), format!("for {app}").as_bytes());
    }
    let mut reports = 0;
    a.eventually("three deletion reports", WAIT, || {
        let got = a.get("/endpoint?reports");
        if got.status == 200 && got.body != b"Nothing to receive" {
            let b = ferry_core::node::decode_stored(&got.body).unwrap();
            assert!(b.is_admin_record());
            reports += 1;
        }
        reports == 3
    });
    assert!(a.bundle_ids().is_empty(), "{:?}", a.bundle_ids());

    // The trapped apps were restarted and serve again once their bundle is gone.
    let sent = a.post("/send?dst=dtn://a/noop&lifetime=1h", b"after".to_vec());
    assert_eq!(sent.status, 200);
    a.eventually("noop to take one more", WAIT, || counter(&a, "noop", "delivered") == 21);
    let listed = ferry_ok(&a, &["apps", "list"], b"");
    for app in ["noop", "trap", "spin", "hog"] {
        assert!(listed.contains(app), "{listed}");
    }
    let logs = ferry_ok(&a, &["apps", "logs", "hog"], b"");
    assert!(logs.contains("set aside"), "{logs}");
}

#[test]
fn a_bundle_in_flight_to_a_crashing_app_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = app_block(
        "flaky",
        "misbehave",
        &["flaky"],
        &format!(
            "[app.dirs]\n\"/state\" = \"{}\"\n[app.config]\nmode = \"trap-once\"\ndir = \"/state\"",
            state.display()
        ),
    );
    let a = node(dir.path(), "a", &config);
    let payloads: Vec<Vec<u8>> = (0..3).map(|i| api_support::binary_payload(1000 + i)).collect();
    for p in &payloads {
        assert_eq!(a.post("/send?dst=dtn://a/flaky&lifetime=1h", p.clone()).status, 200);
    }
    a.eventually("every bundle kept on its second try", WAIT, || counter(&a, "flaky", "delivered") == 3);
    assert_eq!(counter(&a, "flaky", "traps"), 3);
    assert!(counter(&a, "flaky", "restarts") >= 3);
    assert_eq!(counter(&a, "flaky", "set_aside"), 0);
    let mut kept: Vec<Vec<u8>> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".payload"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    kept.sort_by_key(|p| p.len());
    assert_eq!(kept, payloads);
    assert!(a.bundle_ids().is_empty());
}

#[test]
fn stopped_apps_keep_their_bundles_until_started() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "a", &app_block("noop", "noop", &["noop"], "autostart = false"));
    assert_eq!(apps_support::app_status(&a, "noop")["state"], "stopped");
    assert_eq!(a.post("/send?dst=dtn://a/noop&lifetime=1h", b"wait".to_vec()).status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.bundle_ids().len(), 1, "a stopped app takes nothing");
    ferry_ok(&a, &["apps", "start", "noop"], b"");
    a.eventually("the bundle to be delivered", WAIT, || a.bundle_ids().is_empty());
    assert_eq!(counter(&a, "noop", "delivered"), 1);
    ferry_ok(&a, &["apps", "stop", "noop"], b"");
    a.eventually("the app to stop", WAIT, || apps_support::app_status(&a, "noop")["state"] == "stopped");
    let unknown = ferry(&a, &["apps", "start", "nosuch"], b"");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no app named `nosuch`"));
}

#[test]
fn bad_app_configs_are_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    for (text, key) in [
        ("[[app]]\nname = \"Bad Name\"\ncomponent = \"x.wasm\"\n", "`name`"),
        ("[[app]]\nname = \"a\"\ncomponent = \"x.wasm\"\nmemory = \"lots\"\n", "`memory`"),
        ("[[app]]\nname = \"a\"\ncomponent = \"x.wasm\"\nfuel = 3\n", "fuel"),
        ("[[app]]\nname = \"a\"\ncomponent = \"x.wasm\"\n[[app]]\nname = \"a\"\ncomponent = \"y.wasm\"\n", "two apps"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let (status, stderr) = api_support::run_to_exit(&[
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ]);
        assert_eq!(status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains("bad.toml:") && stderr.contains(key), "{text}: {stderr}");
    }
}

#[test]
fn broken_components_and_failing_starts_are_reported_and_the_node_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    let config = format!(
        "[[app]]\nname = \"junk\"\ncomponent = \"{}\"\nendpoints = [\"junk\"]\n\n{}",
        junk.display(),
        app_block("confused", "misbehave", &["confused"], "[app.config]\nmode = \"dance\"")
    );
    let a = node(dir.path(), "a", &config);
    a.eventually("the junk component to be refused", WAIT, || {
        let s = apps_support::app_status(&a, "junk");
        s["state"] == "backoff" && s["last_error"].as_str().unwrap_or("").contains("junk.wasm")
    });
    a.eventually("the failing start to stop the app", WAIT, || {
        apps_support::app_status(&a, "confused")["state"] == "failed"
    });
    let s = apps_support::app_status(&a, "confused");
    assert!(s["last_error"].as_str().unwrap_or("").contains("unknown mode"), "{s}");
    // Bundles for them wait in the store; the node serves.
    assert_eq!(a.post("/send?dst=dtn://a/junk&lifetime=1h", b"kept".to_vec()).status, 200);
    assert_eq!(a.bundle_ids().len(), 1);
    assert_eq!(a.get("/status/info").status, 200);
}

#[test]
fn an_app_whose_sha256_differs_is_not_run_and_the_pinned_one_is() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let digest: String = sha2::Sha256::digest(std::fs::read(apps_support::component("noop")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let wrong = "0".repeat(64);
    let config = format!(
        "{}{}",
        app_block("pinned", "noop", &["pinned"], &format!("sha256 = \"{digest}\"")),
        app_block("swapped", "noop", &["swapped"], &format!("sha256 = \"{wrong}\""))
    );
    let a = node(dir.path(), "a", &config);
    a.eventually("the mismatched component to be refused", WAIT, || {
        let s = apps_support::app_status(&a, "swapped");
        s["last_error"].as_str().unwrap_or("").contains(&format!("not the pinned {wrong}"))
    });
    let s = apps_support::app_status(&a, "swapped");
    assert!(s["last_error"].as_str().unwrap_or("").contains(&digest), "names the file's digest: {s}");
    assert_ne!(s["state"], "running", "{s}");
    // The pinned one runs and takes its bundles; the refused one's wait.
    assert_eq!(a.post("/send?dst=dtn://a/pinned&lifetime=1h", b"ok".to_vec()).status, 200);
    assert_eq!(a.post("/send?dst=dtn://a/swapped&lifetime=1h", b"waits".to_vec()).status, 200);
    a.eventually("the pinned app to take its bundle", WAIT, || counter(&a, "pinned", "delivered") == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.bundle_ids().len(), 1, "the bundle for the refused app waits");
    assert_eq!(counter(&a, "swapped", "delivered"), 0);
}
