//! TCPCLv4 over TLS (RFC 9174 §4.4) between real ferryd processes on
//! loopback, with certificates made by `ferry tls gen`: a bundle crosses
//! encrypted (a relay in the middle records the bytes and never sees the
//! payload), a peer whose certificate is not trusted gets no session, a
//! peer without TLS is refused where TLS is required and served where it is
//! not.
//!
//! The TCP plugin must be built next to ferryd (`cargo build --workspace`).

mod api_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::{free_port, tcp_plugin, Ferryd};

const WAIT: Duration = Duration::from_secs(20);

/// `ferry tls gen` for `name` (dtn://name/) in `dir/name`; returns the
/// certificate's path.
fn tls_gen(dir: &Path, name: &str) -> PathBuf {
    let data = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tls", "gen", "--node-id", &format!("dtn://{name}/"), "--data-dir"])
        .arg(&data)
        .output()
        .expect("run ferry");
    assert!(out.status.success(), "ferry tls gen: {}", String::from_utf8_lossy(&out.stderr));
    let cert = data.join("tls/cert.pem");
    assert!(cert.exists() && data.join("tls/key.pem").exists());
    cert
}

/// The TCP plugin's config: listening on `listen`, dialing `peers`, with a
/// `[tls]` table when `tls` is given.
fn tcp_cla(listen: u16, peers: &[u16], tls: Option<&str>) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).collect();
    let mut s = format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\npeers = [{}]\n",
        tcp_plugin().display(),
        peers.join(", ")
    );
    if let Some(t) = tls {
        s.push_str("[cla.settings.tls]\n");
        s.push_str(t);
    }
    s
}

fn tls_table(dir: &Path, name: &str, trust: &[&Path], extra: &str) -> String {
    let trust: Vec<String> = trust.iter().map(|p| format!("\"{}\"", p.display())).collect();
    format!(
        "cert = \"{}\"\nkey = \"{}\"\ntrust = [{}]\n{extra}",
        dir.join(name).join("tls/cert.pem").display(),
        dir.join(name).join("tls/key.pem").display(),
        trust.join(", ")
    )
}

fn node(dir: &Path, name: &str, config: &str) -> Ferryd {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("node_id = \"dtn://{name}/\"\n{config}")).unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

/// A TCP relay on loopback that forwards every connection to `target` and
/// records the bytes going each way. Runs until the test ends (its threads
/// end when their sockets close, or after `WAIT` × 3 at most).
struct Relay {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

fn relay(target: u16) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT * 3;
        while Instant::now() < deadline {
            let Ok((inbound, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            inbound.set_nonblocking(false).unwrap();
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else { continue };
            for (mut from, mut to) in
                [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)]
            {
                let rec = rec.clone();
                from.set_read_timeout(Some(WAIT * 3)).unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    Relay { port, seen }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_bundle_crosses_tls_encrypted_and_the_node_ids_are_certified() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, cert_b) = (tls_gen(dir.path(), "a"), tls_gen(dir.path(), "b"));
    let pb = free_port();
    let b = node(dir.path(), "b", &tcp_cla(pb, &[], Some(&tls_table(dir.path(), "b", &[&cert_a], "require = true\n"))));
    b.get_ok("/register?inbox");
    let wire = relay(pb);
    let a = node(
        dir.path(),
        "a",
        &tcp_cla(free_port(), &[wire.port], Some(&tls_table(dir.path(), "a", &[&cert_b], "require = true\n"))),
    );
    let secret = b"the quartermaster's list: 40 l water, 12 blankets";
    let sent = a.post("/send?dst=dtn://b/inbox&lifetime=1h", secret.to_vec());
    assert_eq!(sent.status, 200, "{}", sent.text());
    assert_eq!(b.receive("inbox", WAIT), secret);

    // Both ends logged a TLS session with the other's certified node ID.
    assert!(a.log_text().contains("session with dtn://b/ established (active, TLS"), "{}", a.log_text());
    assert!(b.log_text().contains("session with dtn://a/ established (passive, TLS"), "{}", b.log_text());
    // On the wire: the contact headers in plain with CAN_TLS, then nothing
    // readable: neither the payload nor the node IDs of SESS_INIT.
    let seen = wire.seen.lock().unwrap().clone();
    assert!(seen.starts_with(b"dtn!\x04\x01"), "{:?}", &seen[..seen.len().min(16)]);
    assert!(seen.len() > secret.len(), "the relay saw the session");
    assert!(!contains(&seen, secret), "the payload crossed in the clear");
    assert!(!contains(&seen, b"dtn://a/") && !contains(&seen, b"dtn://b/"), "SESS_INIT crossed in the clear");
}

#[test]
fn a_peer_whose_certificate_is_not_trusted_gets_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, cert_b) = (tls_gen(dir.path(), "a"), tls_gen(dir.path(), "b"));
    // M has a certificate of its own that names dtn://a/, made with its own
    // key: B trusts A's certificate, not this one.
    let m_data = dir.path().join("m");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tls", "gen", "--node-id", "dtn://a/", "--data-dir"])
        .arg(&m_data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let pb = free_port();
    let b = node(dir.path(), "b", &tcp_cla(pb, &[], Some(&tls_table(dir.path(), "b", &[&cert_a], ""))));
    b.get_ok("/register?inbox");
    let m_cfg = dir.path().join("m.toml");
    std::fs::write(
        &m_cfg,
        format!(
            "node_id = \"dtn://a/\"\n{}",
            tcp_cla(free_port(), &[pb], Some(&tls_table(dir.path(), "m", &[&cert_b], "")))
        ),
    )
    .unwrap();
    let m = Ferryd::start_with(&m_data, &["--config", m_cfg.to_str().unwrap()]);
    let sent = m.post("/send?dst=dtn://b/inbox&lifetime=1h", b"from an impostor".to_vec());
    assert_eq!(sent.status, 200, "{}", sent.text());
    // B refuses the handshake and says why (the certificate has A's name but
    // is not signed by A's key); nothing arrives.
    b.eventually("B to refuse M's certificate", WAIT, || b.log_text().contains("invalid peer certificate"));
    assert!(!b.log_text().contains("established"), "{}", b.log_text());
    assert_eq!(b.get("/endpoint?inbox").body, b"Nothing to receive");
    assert_eq!(m.bundle_ids().len(), 1, "the bundle stays with its sender");
}

#[test]
fn a_peer_without_tls_is_refused_where_required_and_served_where_not() {
    let dir = tempfile::tempdir().unwrap();
    let cert_a = tls_gen(dir.path(), "a");
    tls_gen(dir.path(), "b");
    tls_gen(dir.path(), "c");
    // B requires TLS of everyone; C only of dtn://a/.
    let (pb, pc) = (free_port(), free_port());
    let b = node(dir.path(), "b", &tcp_cla(pb, &[], Some(&tls_table(dir.path(), "b", &[&cert_a], "require = true\n"))));
    let c = node(
        dir.path(),
        "c",
        &tcp_cla(pc, &[], Some(&tls_table(dir.path(), "c", &[&cert_a], "require_for = [\"dtn://a/\"]\n"))),
    );
    b.get_ok("/register?inbox");
    c.get_ok("/register?inbox");
    // D speaks plain TCPCL (like dtn7-rs): refused by B, served by C.
    let d = node(dir.path(), "d", &tcp_cla(free_port(), &[pb, pc], None));
    for dst in ["dtn://b/inbox", "dtn://c/inbox"] {
        let sent = d.post(&format!("/send?dst={dst}&lifetime=1h"), format!("plain to {dst}").into_bytes());
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    assert_eq!(c.receive("inbox", WAIT), b"plain to dtn://c/inbox");
    assert!(c.log_text().contains("session with dtn://d/ established (passive,"), "{}", c.log_text());
    b.eventually("B to refuse D", WAIT, || b.log_text().contains("TLS is required"));
    assert_eq!(b.get("/endpoint?inbox").body, b"Nothing to receive");
    // A plain peer claiming to be dtn://a/ is refused by C.
    let fake_a_data = dir.path().join("fake-a");
    let cfg = dir.path().join("fake-a.toml");
    std::fs::write(&cfg, format!("node_id = \"dtn://a/\"\n{}", tcp_cla(free_port(), &[pc], None))).unwrap();
    let fake_a = Ferryd::start_with(&fake_a_data, &["--config", cfg.to_str().unwrap()]);
    let sent = fake_a.post("/send?dst=dtn://c/inbox&lifetime=1h", b"plain, claiming a".to_vec());
    assert_eq!(sent.status, 200);
    c.eventually("C to refuse a plain dtn://a/", WAIT, || c.log_text().contains("dtn://a/ must use TLS"));
    assert_eq!(c.get("/endpoint?inbox").body, b"Nothing to receive");
}

#[test]
fn tls_settings_that_cannot_work_keep_the_plugin_from_starting_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert_a = tls_gen(dir.path(), "a");
    // B's config points at A's certificate: it does not name dtn://b/.
    let table = format!(
        "cert = \"{}\"\nkey = \"{}\"\ntrust = [\"{}\"]\n",
        cert_a.display(),
        dir.path().join("a/tls/key.pem").display(),
        cert_a.display()
    );
    let b = node(dir.path(), "b", &tcp_cla(free_port(), &[], Some(&table)));
    b.eventually("the plugin error", WAIT, || b.log_text().contains("names [\"dtn://a/\"] but this node is dtn://b/"));
    // A missing trust file.
    let table = tls_table(dir.path(), "a", &[Path::new("/nonexistent/peer.pem")], "");
    let a = node(dir.path(), "a", &tcp_cla(free_port(), &[], Some(&table)));
    a.eventually("the plugin error", WAIT, || a.log_text().contains("trust anchor /nonexistent/peer.pem"));
    // `ferry tls gen` refuses to overwrite, and without a node ID says what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tls", "gen", "--node-id", "dtn://a/", "--data-dir"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --force"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tls", "gen", "--data-dir"])
        .arg(dir.path().join("z"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id"), "{}", String::from_utf8_lossy(&out.stderr));
}
