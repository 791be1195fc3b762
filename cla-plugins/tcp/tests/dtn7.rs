//! Interop with dtn7-rs 0.21 (dtnd) over TCPCLv4 and MTCP, on loopback.
//!
//! Needs the binaries from scripts/install-dtn7 (or `FERRY_DTN7_BIN` naming
//! their folder); without them the test says so and passes. dtnd runs with
//! neighbour discovery off, its CLAs bound to 127.0.0.1 and its HTTP API on
//! [::1] only (`-6`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferry_cla_abi::Outcome;

fn dtn7_bin() -> Option<PathBuf> {
    let dir = match std::env::var_os("FERRY_DTN7_BIN") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/ferry-tools/dtn7-0.21.0/bin"),
    };
    dir.join("dtnd").exists().then_some(dir)
}

/// Kills and reaps dtnd however the test ends.
struct Dtnd(Child);

impl Drop for Dtnd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bundle as dtn7-rs's own tools build it (bp7), to `dst`.
fn bp7_bundle(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let src: bp7::EndpointID = src.try_into().unwrap();
    let dst: bp7::EndpointID = dst.try_into().unwrap();
    let mut b = bp7::bundle::new_std_payload_bundle(src, dst, payload.to_vec());
    b.set_crc(bp7::crc::CRC_32);
    b.to_cbor()
}

/// Polls `dtnrecv -e incoming` until a bundle arrives; its payload.
fn dtnrecv(bin: &Path, web: u16) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = Command::new(bin.join("dtnrecv"))
            .args(["-6", "-p", &web.to_string(), "-e", "incoming"])
            .output()
            .expect("dtnrecv");
        if out.status.success() && !out.stdout.is_empty() {
            return out.stdout;
        }
        assert!(Instant::now() < deadline, "dtnd delivered nothing to incoming");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exchanges_bundles_with_dtn7_rs_over_tcpcl_and_mtcp() {
    let Some(bin) = dtn7_bin() else {
        // scripts/test installs dtn7 and sets FERRY_REQUIRE_DTN7, so CI never skips.
        assert!(
            std::env::var_os("FERRY_REQUIRE_DTN7").is_none(),
            "FERRY_REQUIRE_DTN7 is set but dtn7-rs is not installed (run scripts/install-dtn7)"
        );
        eprintln!("dtn7-rs not installed (scripts/install-dtn7); skipping the interop test");
        return;
    };
    let (ferry_port, tcp_port, mtcp_port, web_port) =
        (free_tcp_port(), free_tcp_port(), free_tcp_port(), free_tcp_port());
    let a = Node::start(
        &dlopened(),
        "dtn://a/",
        &format!("listen = [\"127.0.0.1:{ferry_port}\"]\nrespect_peer_transfer_mru = false\n"),
    );
    let workdir = std::env::temp_dir().join(format!("ferry-dtn7-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();
    let _dtnd = Dtnd(
        Command::new(bin.join("dtnd"))
            .args(["-n", "node2", "-W"])
            .arg(&workdir)
            .args(["-w", &web_port.to_string(), "-6", "-i", "0", "--disable_nd", "-r", "epidemic", "-D", "mem"])
            .args(["-C", &format!("tcp:port={tcp_port}:bind=127.0.0.1")])
            .args(["-C", &format!("mtcp:port={mtcp_port}:bind=127.0.0.1")])
            .args(["-e", "incoming", "-s", &format!("tcp://127.0.0.1:{ferry_port}/a")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dtnd"),
    );

    // Ferry dials dtnd's TCPCL port (dtnd may need a moment to listen).
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", tcp_port)).is_err() {
        assert!(Instant::now() < deadline, "dtnd never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.inst().connect(&format!("tcpcl://127.0.0.1:{tcp_port}")).unwrap();
    let peer = a.wait_peer("dtn://node2/");

    // Ferry -> dtnd over TCPCL, larger than the 64000 octets dtnd advertises.
    let payload = bundle(100_000, 7);
    a.transmit(peer, 1, &bp7_bundle("dtn://a/app", "dtn://node2/incoming", &payload));
    assert_eq!(a.wait_done(1), Outcome::Sent);
    assert!(dtnrecv(&bin, web_port) == payload, "payload differs");

    // Ferry -> dtnd over MTCP.
    a.inst().connect(&format!("mtcp://127.0.0.1:{mtcp_port}/dtn://node2/")).unwrap();
    let mtcp_peer = a.host.wait("the mtcp link", |evs| {
        evs.iter().find_map(|e| match e {
            Ev::Up { peer, address, .. } if address.starts_with("mtcp://") => Some(*peer),
            _ => None,
        })
    });
    a.transmit(mtcp_peer, 2, &bp7_bundle("dtn://a/app", "dtn://node2/incoming", b"over mtcp"));
    assert_eq!(a.wait_done(2), Outcome::Sent);
    assert_eq!(dtnrecv(&bin, web_port), b"over mtcp");

    // dtnd -> Ferry: dtnd forwards to its static peer dtn://a/ (our listener);
    // Ferry acknowledges once the host's verdict says the bundle is stored.
    let mut send = Command::new(bin.join("dtnsend"))
        .args(["-6", "-p", &web_port.to_string(), "-r", "dtn://a/inbox"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("dtnsend");
    send.stdin.take().unwrap().write_all(b"hello ferry, from dtn7-rs").unwrap();
    assert!(send.wait().unwrap().success());
    let got = a.host.wait("a bundle from dtnd", |evs| {
        evs.iter().find_map(|e| match e {
            Ev::Received { bundle, .. } => Some(bundle.clone()),
            _ => None,
        })
    });
    let decoded = bp7::Bundle::try_from(got).expect("a bundle");
    assert_eq!(decoded.primary.destination.to_string(), "dtn://a/inbox");
    assert_eq!(decoded.payload().map(|p| p.as_slice()), Some(&b"hello ferry, from dtn7-rs"[..]));
    // dtnd took every acknowledgement: no session ended in a protocol error.
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.host.warnings().is_empty(), "{:?}", a.host.warnings());
    std::fs::remove_dir_all(&workdir).ok();
}
