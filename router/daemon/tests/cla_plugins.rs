//! ferryd with convergence-layer plugins loaded through the C ABI: two real
//! ferryd processes exchanging bundles over the TCP plugin on loopback, and
//! broken or panicking plugins that must not take a node down.
//!
//! The plugins are the workspace's own shared libraries, next to ferryd in
//! the target folder (`scripts/test` builds them with
//! `cargo build --workspace --all-targets` before testing).

mod api_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use api_support::{binary_payload, Ferryd};

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target/<profile>").to_path_buf()
}

fn plugin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", p.display());
    p
}

fn tcp_plugin() -> PathBuf {
    plugin("libferry_cla_tcp.so")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A ferryd with a config file: node ID, and `[[cla]]` blocks as given.
fn node(dir: &Path, name: &str, clas: &str) -> Ferryd {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("node_id = \"dtn://{name}/\"\n{clas}")).unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

fn tcp_cla(listen: u16, peers: &[u16]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).collect();
    format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\npeers = [{}]\n",
        tcp_plugin().display(),
        peers.join(", ")
    )
}

#[test]
fn two_nodes_exchange_bundles_over_tcpcl_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let b = node(dir.path(), "beta", &tcp_cla(pb, &[]));
    let a = node(dir.path(), "alpha", &tcp_cla(pa, &[pb]));
    a.get_ok("/register?incoming");
    b.get_ok("/register?incoming");
    a.eventually("the session to come up", Duration::from_secs(20), || {
        a.get("/status/peers").json()["dtn://beta/"]["connected"] == true
    });
    for len in [0usize, 1, 100_000, 10 << 20] {
        let payload = binary_payload(len);
        let sent = a.post("/send?dst=dtn://beta/incoming&lifetime=1h", payload.clone());
        assert_eq!(sent.status, 200, "{}", sent.text());
        assert_eq!(b.receive("incoming", Duration::from_secs(30)), payload, "{len} B alpha -> beta");
        let back = b.post("/send?dst=dtn://alpha/incoming&lifetime=1h", payload.clone());
        assert_eq!(back.status, 200, "{}", back.text());
        assert_eq!(a.receive("incoming", Duration::from_secs(30)), payload, "{len} B beta -> alpha");
    }
    // Forwarded bundles leave the sender's store (the destination node has them).
    a.eventually("alpha's store to empty", Duration::from_secs(10), || a.bundle_ids().is_empty());
}

#[test]
fn a_bundle_waits_for_its_peer_and_goes_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = node(dir.path(), "alpha", &tcp_cla(pa, &[]));
    let sent = a.post("/send?dst=dtn://beta/inbox&lifetime=1h", b"store, carry, forward".to_vec());
    assert_eq!(sent.status, 200);
    assert_eq!(a.bundle_ids().len(), 1, "no peer yet: kept");
    let b = node(dir.path(), "beta", &tcp_cla(pb, &[]));
    b.get_ok("/register?inbox");
    // /peers/add in dtn7's form makes the TCP plugin dial.
    let added = a.get(&format!("/peers/add?p=tcp://127.0.0.1:{pb}/beta&p_t=STATIC"));
    assert_eq!(added.status, 200, "{}", added.text());
    assert!(added.text().contains("connecting through the tcp convergence layer"), "{}", added.text());
    assert_eq!(b.receive("inbox", Duration::from_secs(30)), b"store, carry, forward");
    let peers = a.get("/status/peers").json();
    assert_eq!(peers["dtn://beta/"]["connected"], true, "{peers}");
}

#[test]
fn plugins_that_cannot_load_are_reported_and_the_node_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libm");
    let (pa, pb) = (free_port(), free_port());
    let clas = format!(
        "[[cla]]\npath = \"/nonexistent/libnothing.so\"\n\n[[cla]]\npath = \"{libm}\"\n\n\
         [[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{pa}\"]\nno_such_setting = 1\n\n{}",
        tcp_plugin().display(),
        tcp_cla(pa, &[pb])
    );
    let a = node(dir.path(), "alpha", &clas);
    let b = node(dir.path(), "beta", &tcp_cla(pb, &[]));
    b.get_ok("/register?in");
    let log = a.log_text();
    assert!(log.contains("/nonexistent/libnothing.so"), "{log}");
    assert!(log.contains("is not a Ferry plugin"), "{log}");
    assert!(log.contains("no_such_setting"), "the bad settings table is named: {log}");
    // The one good plugin works.
    assert_eq!(a.post("/send?dst=dtn://beta/in", b"still here".to_vec()).status, 200);
    assert_eq!(b.receive("in", Duration::from_secs(30)), b"still here");
}

#[test]
fn a_panicking_plugin_loses_no_bundle_and_the_daemon_survives() {
    let dir = tempfile::tempdir().unwrap();
    // The ABI crate's test plugin: it brings up a peer dtn://echo/ and panics
    // in every transmit when told to.
    let loopback = target_dir().join("examples").join("libloopback_plugin.so");
    assert!(loopback.exists(), "{} not built: run `cargo build --workspace --all-targets`", loopback.display());
    let clas = format!("[[cla]]\npath = \"{}\"\n[cla.settings]\npanic_in = \"transmit\"\n", loopback.display());
    let a = node(dir.path(), "alpha", &clas);
    let sent = a.post("/send?dst=dtn://echo/x&lifetime=1h", b"in flight".to_vec());
    assert_eq!(sent.status, 200);
    a.eventually("the plugin to panic", Duration::from_secs(10), || a.log_text().contains("panicked in transmit"));
    // Still stored, still served.
    assert_eq!(a.bundle_ids().len(), 1);
    assert_eq!(a.get("/status/nodeid").text(), "dtn://alpha/");
    let status = a.get("/status/info");
    assert_eq!(status.status, 200);
}

/// PRoPHET between daemons: each node hands a new peer its delivery
/// predictabilities (a short-lived bundle between the nodes' `~routing`
/// endpoints), so a bundle for a node that only the peer has met goes to
/// that peer. Without the exchange alpha, which never met gamma, would keep
/// the bundle.
#[test]
fn prophet_predictabilities_travel_between_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let prophet = "router = \"prophet\"\n";
    let c = node(dir.path(), "gamma", &format!("{prophet}{}", tcp_cla(pc, &[])));
    let b = node(dir.path(), "beta", &format!("{prophet}{}", tcp_cla(pb, &[pc])));
    let connected = |f: &Ferryd, peer: &str| f.get("/status/peers").json()[peer]["connected"] == true;
    b.eventually("beta to meet gamma", Duration::from_secs(20), || connected(&b, "dtn://gamma/"));
    drop(c);
    b.eventually("gamma to leave", Duration::from_secs(20), || !connected(&b, "dtn://gamma/"));

    let a = node(dir.path(), "alpha", &format!("{prophet}{}", tcp_cla(pa, &[pb])));
    a.eventually("alpha to meet beta", Duration::from_secs(20), || connected(&a, "dtn://beta/"));
    let sent = a.post("/send?dst=dtn://gamma/in&lifetime=1h", b"for gamma".to_vec());
    assert_eq!(sent.status, 200, "{}", sent.text());
    // Bundle IDs are `<source>-<time>-<seq>`: alpha's own, not its `~routing` endpoint's.
    b.eventually("alpha's bundle for gamma to reach beta", Duration::from_secs(30), || {
        b.bundle_ids().iter().any(|id| id.starts_with("dtn://alpha/-"))
    });
}
