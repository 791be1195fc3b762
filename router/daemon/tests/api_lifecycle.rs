//! ferryd's life: configs, restarts, SIGTERM, and what survives them.

mod api_support;

use api_support::{payload_of, run_to_exit, Ferryd};

#[test]
fn restart_keeps_the_node_id_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = Ferryd::start(&data);
    let id = f.node_id();
    let name = id.to_string();
    let hex = name.strip_prefix("dtn://").and_then(|s| s.strip_suffix('/')).unwrap();
    assert!(hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    let status = f.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    let f = Ferryd::start(&data);
    assert_eq!(f.node_id(), id);
}

#[test]
fn a_bundle_waits_for_its_application_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = Ferryd::start(&data);
    let node = f.node_id();
    let a = f.post(&format!("/send?dst={node}later"), b"kept for later".to_vec());
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(f.get("/status/store").json().as_object().unwrap().values().next().unwrap(), "waiting_for_application");
    assert!(f.terminate().success());

    let f = Ferryd::start(&data);
    assert_eq!(f.bundle_ids().len(), 1, "the bundle survived the restart");
    f.get_ok("/register?later");
    let got = f.get("/endpoint?later");
    assert_eq!(got.status, 200);
    assert_eq!(payload_of(&got.body), b"kept for later");
    assert!(f.bundle_ids().is_empty());
}

#[test]
fn registrations_and_queued_bundles_survive_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = Ferryd::start(&data);
    let node = f.node_id();
    f.get_ok("/register?inbox");
    for i in 0..5u8 {
        let a = f.post(&format!("/send?dst={node}inbox"), vec![i; 10]);
        assert_eq!(a.status, 200, "{}", a.text());
    }
    f.get_ok("/peers/add?p=tcp://192.0.2.1:4556/gw&p_t=STATIC");
    assert!(f.terminate().success());

    let f = Ferryd::start(&data);
    let eids: Vec<String> = serde_json::from_value(f.get("/status/eids").json()).unwrap();
    assert_eq!(eids, vec![format!("{node}inbox")]);
    assert!(f.get("/status/peers").json()["dtn://gw/"].is_object());
    let mut got = vec![];
    loop {
        let a = f.get("/endpoint?inbox");
        assert_eq!(a.status, 200);
        if a.body == b"Nothing to receive" {
            break;
        }
        got.push(payload_of(&a.body));
    }
    got.sort();
    assert_eq!(got, (0..5u8).map(|i| vec![i; 10]).collect::<Vec<_>>(), "each bundle delivered once");

    // Delivered bundles stay delivered after another restart.
    assert!(f.terminate().success());
    let f = Ferryd::start(&data);
    assert!(f.bundle_ids().is_empty());
    assert_eq!(f.get_ok("/endpoint?inbox"), "Nothing to receive");
}

#[test]
fn a_config_file_sets_the_node_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        "node_id = \"dtn://camp/\"\nrouter = \"static\"\ndefault_lifetime = \"2h\"\nhop_limit = 9\n\
         [api]\nlisten = \"127.0.0.1:1\"\n\n[[routes]]\npattern = \"dtn://town/*\"\nvia = \"dtn://truck/\"\n",
    )
    .unwrap();
    // --api 127.0.0.1:0 (from the harness) overrides listen = 127.0.0.1:1.
    let f = Ferryd::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(f.node_id().to_string(), "dtn://camp/");
    let info = f.get("/status/info").json();
    assert_eq!(info["router"], "static");
    let a = f.post("/send?dst=dtn://town/post", b"x".to_vec());
    assert_eq!(a.status, 200, "{}", a.text());
    let b = &f.get("/ferry/bundles").json()[0];
    assert_eq!(b["lifetime_ms"], 7_200_000);
    assert_eq!(b["hop_count"]["limit"], 9);
}

#[test]
fn config_errors_name_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, "# a node\nrouter = \"epidemic\"\nnode_idd = \"dtn://x/\"\n").unwrap();
    let (status, err) = run_to_exit(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!status.success());
    assert!(err.contains(&format!("{}:3:", cfg.display())), "{err}");
    assert!(err.contains("node_idd"), "{err}");

    let cfg = dir.path().join("type.toml");
    std::fs::write(&cfg, "\n\nhop_limit = \"lots\"\n").unwrap();
    let (status, err) = run_to_exit(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!status.success());
    assert!(err.contains(&format!("{}:3:", cfg.display())) && err.contains("hop_limit"), "{err}");

    let cfg = dir.path().join("value.toml");
    std::fs::write(&cfg, "[api]\nlisten = \"127.0.0.1:0\"\n[[routes]]\npattern = \"*\"\nvia = \"not an eid\"\n")
        .unwrap();
    let (status, err) = run_to_exit(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!status.success());
    assert!(err.contains(&format!("{}:5: `via`", cfg.display())), "{err}");

    let (status, err) = run_to_exit(&["--config", "/nonexistent/ferry.toml", "--data-dir", data]);
    assert!(!status.success());
    assert!(err.contains("/nonexistent/ferry.toml"), "{err}");
}

#[test]
fn a_remote_api_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (status, err) = run_to_exit(&["--data-dir", data.to_str().unwrap(), "--api", "0.0.0.0:0"]);
    assert!(!status.success());
    assert!(err.contains("not a loopback address") && err.contains("allow_remote"), "{err}");
}
