//! Interop with dtn7-rs 0.21 (dtnd and its tools), real processes on loopback:
//!
//! - ferryd ↔ dtnd over TCPCLv4 and over MTCP, both ways, payloads of 0 B,
//!   1 B, 64 KiB, 1 MiB and 10 MiB, compared byte for byte;
//! - 1,000 small bundles ferryd → dtnd over TCPCLv4, in bounded time;
//! - a chain ferryd A → dtnd → ferryd B (dtnd routes epidemically);
//! - dtn7's own clients (`dtnsend`, `dtnrecv`, `dtnquery`) against ferryd's API.
//!
//! Needs dtn7-rs from scripts/install-dtn7 (or `FERRY_DTN7_BIN` naming the
//! folder with its binaries); without it every test says so and passes,
//! unless `FERRY_REQUIRE_DTN7` is set (scripts/test sets it), which makes a
//! missing dtn7-rs a failure. The TCP plugin is the workspace's own shared
//! library next to ferryd (`cargo build --workspace --all-targets`).
//!
//! Who dials whom matters with dtnd: it sends only over TCPCL sessions it
//! opened itself, and opens them only when it has a bundle for a static peer.
//! The tests make ferryd dial where ferryd sends first, and give dtnd a
//! static peer where dtnd must send; they avoid two sessions between the
//! same pair of nodes (see `a_bundle_goes_to_dtnd_once_when_both_sides_dialed`).

mod api_support;
mod dtn7_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use api_support::{binary_payload, payload_of};
use dtn7_support::*;

/// Payload sizes every link carries both ways.
const SIZES: [usize; 5] = [0, 1, 64 << 10, 1 << 20, 10 << 20];

/// Asserts that two payloads are byte-identical without printing megabytes.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: payload differs: got {} B, want {} B, first difference at byte {first}", got.len(), want.len());
    }
}

/// A payload of `len` bytes that differs between directions and sizes.
fn payload(len: usize, salt: u8) -> Vec<u8> {
    let mut p = binary_payload(len);
    if let Some(first) = p.first_mut() {
        *first ^= salt;
    }
    p
}

fn logs(f: &api_support::Ferryd, d: &Dtnd) -> String {
    format!("ferryd log:\n{}\n{}", f.log_text(), d.log_text())
}

/// ferryd `alpha` and dtnd `node2`, every size both ways: dtnd first (over
/// the link it dials to its static peer alpha), then ferryd back.
///
/// TCPCL: one session, opened by dtnd; ferryd answers over it. MTCP (no
/// acknowledgements, one direction per connection): dtnd dials ferryd's
/// MTCP listener to send, ferryd dials dtnd's to send.
fn exchange_over_tcpcl_or_mtcp(mtcp: bool) {
    let link = if mtcp { "MTCP" } else { "TCPCL" };
    let Some(bin) = dtn7(&format!("the {link} exchange with dtnd")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ports = FerryPorts::new();
    let to_ferry = if mtcp { ports.dtn7_mtcp("alpha") } else { ports.dtn7_tcp("alpha") };
    let dtnd = Dtnd::start(&bin, "node2", &[to_ferry]);
    let ferry_peers = if mtcp { vec![dtnd.mtcp_url()] } else { vec![] };
    let a = ferryd(dir.path(), "alpha", &ports, &ferry_peers);
    a.get_ok("/register?incoming");
    for (i, len) in SIZES.into_iter().enumerate() {
        let started = Instant::now();
        let salt = u8::try_from(i).unwrap();
        let from_dtnd = payload(len, 0x10 + salt);
        dtnd.send("dtn://alpha/incoming", from_dtnd.clone());
        let got = ferry_receive(&a, "incoming", WAIT, &dtnd);
        assert_same(&got, &from_dtnd, &format!("{link} dtnd -> ferryd, {len} B"));
        if i == 0 {
            eventually("ferryd's link to dtnd", WAIT, || ferry_connected(&a, "dtn://node2/"), || logs(&a, &dtnd));
        }
        let from_ferry = payload(len, 0x20 + salt);
        ferry_send(&a, "dtn://node2/incoming", from_ferry.clone());
        assert_same(&dtnd.receive(WAIT), &from_ferry, &format!("{link} ferryd -> dtnd, {len} B"));
        eprintln!("{link}: {len} B both ways in {:?}", started.elapsed());
    }
    // Everything was delivered once: nothing more at either end, and the
    // forwarded bundles left ferryd's store.
    eventually("ferryd's store to empty", WAIT, || a.bundle_ids().is_empty(), || a.log_text());
    assert!(dtnd.take().is_none(), "dtnd delivered a bundle twice");
    assert!(ferry_take(&a, "incoming").is_none(), "ferryd delivered a bundle twice");
    // dtnd counts the bundles it created too: one each way per size.
    assert_eq!(dtnd.copies_received(), (2 * SIZES.len() as u64, 0), "bundles at dtnd (new, duplicates)");
}

#[test]
fn ferryd_and_dtnd_exchange_every_size_over_tcpcl_both_ways() {
    exchange_over_tcpcl_or_mtcp(false);
}

#[test]
fn ferryd_and_dtnd_exchange_every_size_over_mtcp_both_ways() {
    exchange_over_tcpcl_or_mtcp(true);
}

/// ferryd dials dtnd, which has ferryd as a static peer too, so once dtnd
/// has sent something there are two TCPCL sessions between them. A bundle
/// for dtnd must still cross once.
#[test]
fn a_bundle_goes_to_dtnd_once_when_both_sides_dialed() {
    let Some(bin) = dtn7("the two-session test") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ports = FerryPorts::new();
    let dtnd = Dtnd::start(&bin, "node2", &[ports.dtn7_tcp("alpha")]);
    let a = ferryd(dir.path(), "alpha", &ports, &[dtnd.tcpcl_url()]);
    a.get_ok("/register?incoming");
    eventually("ferryd's session to dtnd", WAIT, || ferry_connected(&a, "dtn://node2/"), || logs(&a, &dtnd));
    // dtnd opens its own session to send.
    dtnd.send("dtn://alpha/incoming", b"open your own session".to_vec());
    assert_eq!(ferry_receive(&a, "incoming", WAIT, &dtnd), b"open your own session");
    eventually("the second session", WAIT, || a.log_text().matches("peer up").count() >= 2, || logs(&a, &dtnd));
    let before = dtnd.copies_received();
    let big = payload(1 << 20, 0x33);
    ferry_send(&a, "dtn://node2/incoming", big.clone());
    assert_same(&dtnd.receive(WAIT), &big, "ferryd -> dtnd over two sessions");
    eventually("ferryd's store to empty", WAIT, || a.bundle_ids().is_empty(), || a.log_text());
    let (new, dups) = dtnd.copies_received();
    // Two copies show up as (1 new, 1 duplicate), or as 2 new when they
    // race through dtnd's duplicate check (then it delivers twice).
    assert_eq!(new + dups - before.0 - before.1, 1, "copies of the bundle dtnd received");
    assert!(dtnd.take().is_none(), "dtnd delivered the bundle twice");
}

/// A ferryd with TLS configured (not required) offers CAN_TLS; dtnd does
/// not, so the session is plain TCPCL and bundles cross both ways (RFC 9174
/// §4.3: TLS only when both sides offer it).
#[test]
fn a_ferryd_offering_tls_talks_plain_tcpcl_with_dtnd() {
    let Some(bin) = dtn7("the TLS fallback test") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alpha");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tls", "gen", "--node-id", "dtn://alpha/", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tls = format!(
        "[cla.settings.tls]\ncert = \"{0}/tls/cert.pem\"\nkey = \"{0}/tls/key.pem\"\ntrust = [\"{0}/tls/cert.pem\"]\n",
        data.display()
    );
    let ports = FerryPorts::new();
    let dtnd = Dtnd::start(&bin, "node2", &[ports.dtn7_tcp("alpha")]);
    let a = ferryd_with(dir.path(), "alpha", &ports, &[dtnd.tcpcl_url()], &tls);
    a.get_ok("/register?incoming");
    ferry_send(&a, "dtn://node2/incoming", b"to dtnd, offered TLS".to_vec());
    assert_eq!(dtnd.receive(WAIT), b"to dtnd, offered TLS");
    dtnd.send("dtn://alpha/incoming", b"from dtnd, in plain".to_vec());
    assert_eq!(ferry_receive(&a, "incoming", WAIT, &dtnd), b"from dtnd, in plain");
    assert!(!a.log_text().contains(", TLS,"), "no TLS session with dtnd: {}", a.log_text());
}

/// 1,000 bundles of 16 to 64 bytes, ferryd → dtnd over TCPCL: every payload
/// arrives once, within a minute.
#[test]
fn a_thousand_small_bundles_from_ferryd_reach_dtnd() {
    const COUNT: usize = 1000;
    const SENDERS: usize = 8;
    const LIMIT: Duration = Duration::from_secs(60);
    let Some(bin) = dtn7("the 1,000-bundle test") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ports = FerryPorts::new();
    let dtnd = Dtnd::start(&bin, "node2", &[]);
    let a = ferryd(dir.path(), "alpha", &ports, &[dtnd.tcpcl_url()]);
    eventually("ferryd's session to dtnd", WAIT, || ferry_connected(&a, "dtn://node2/"), || logs(&a, &dtnd));

    let msg = |i: usize| format!("bundle {i:04} {}", "x".repeat(i % 49)).into_bytes();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..SENDERS {
            let a = &a;
            s.spawn(move || {
                for i in (t..COUNT).step_by(SENDERS) {
                    ferry_send(a, "dtn://node2/incoming", msg(i));
                }
            });
        }
    });
    let sent = started.elapsed();
    let mut got = BTreeSet::new();
    let deadline = started + LIMIT;
    while got.len() < COUNT {
        assert!(Instant::now() < deadline, "{} of {COUNT} bundles reached dtnd within {LIMIT:?}", got.len());
        match dtnd.take() {
            Some(b) => assert!(got.insert(payload_of(&b)), "a bundle reached dtnd twice"),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let all = started.elapsed();
    let want: BTreeSet<Vec<u8>> = (0..COUNT).map(msg).collect();
    assert!(got == want, "the payloads dtnd delivered differ from those sent");
    eprintln!("{COUNT} bundles: stored by ferryd in {sent:?}, all delivered by dtnd after {all:?}");
    eventually("ferryd's store to empty", WAIT, || a.bundle_ids().is_empty(), || a.log_text());
    assert!(dtnd.take().is_none(), "dtnd delivered more than was sent");
    assert_eq!(dtnd.copies_received(), (COUNT as u64, 0), "dtnd got copies of a bundle (new, duplicates)");
}

/// ferryd A → dtnd → ferryd B: A dials dtnd and hands it a bundle for
/// dtn://beta/; dtnd, routing epidemically, dials its static peer B.
#[test]
fn a_bundle_crosses_dtnd_from_one_ferryd_to_another() {
    let Some(bin) = dtn7("the ferryd -> dtnd -> ferryd chain") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (FerryPorts::new(), FerryPorts::new());
    let dtnd = Dtnd::start(&bin, "relay", &[pb.dtn7_tcp("beta")]);
    let b = ferryd(dir.path(), "beta", &pb, &[]);
    b.get_ok("/register?incoming");
    let a = ferryd(dir.path(), "alpha", &pa, &[dtnd.tcpcl_url()]);
    eventually("alpha's session to dtnd", WAIT, || ferry_connected(&a, "dtn://relay/"), || logs(&a, &dtnd));
    for (i, len) in [1usize, 1 << 20].into_iter().enumerate() {
        let p = payload(len, 0x40 + u8::try_from(i).unwrap());
        ferry_send(&a, "dtn://beta/incoming", p.clone());
        let bytes = ferry_receive_bundle(&b, "incoming", WAIT, &dtnd);
        assert_same(&payload_of(&bytes), &p, &format!("alpha -> relay -> beta, {len} B"));
        // It came through dtnd: two hops, and dtnd named itself the previous node.
        let got = ferry_core::node::decode_stored(&bytes).expect("a bundle");
        assert_eq!(got.id().source.to_string(), "dtn://alpha/");
        assert_eq!(got.hop_count.map(|h| h.count), Some(2), "hop count after alpha and relay");
        assert_eq!(got.previous_node.map(|e| e.to_string()).as_deref(), Some("dtn://relay/"));
    }
    assert!(ferry_take(&b, "incoming").is_none(), "beta got a bundle twice");
    // Epidemic: relay is not the destination, so alpha keeps its copies
    // (until they expire or it meets beta).
    assert_eq!(a.bundle_ids().len(), 2);
}

/// dtnsend, dtnrecv and dtnquery pointed at ferryd's API port (they talk to
/// 127.0.0.1:<port>), and dtnsend's bundle going on from ferryd to dtnd.
#[test]
fn dtn7_tools_work_against_ferryds_api() {
    let Some(bin) = dtn7("dtn7's tools against ferryd") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ports = FerryPorts::new();
    let dtnd = Dtnd::start(&bin, "node2", &[]);
    let a = ferryd(dir.path(), "alpha", &ports, &[dtnd.tcpcl_url()]);
    let port = a.addr.rsplit(':').next().expect("API port").to_owned();
    let tool = |name: &str, args: &[&str], stdin: &[u8]| {
        let mut all = vec!["-p", port.as_str()];
        all.extend_from_slice(args);
        let out = run_tool(&bin, name, &all, stdin);
        assert!(out.status.success(), "{name} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8 output");

    // dtnquery nodeid / eids.
    assert!(text(tool("dtnquery", &["nodeid"], b"")).contains("dtn://alpha/"));
    a.get_ok("/register?incoming");
    assert!(text(tool("dtnquery", &["eids"], b"")).contains("\"dtn://alpha/incoming\""));

    // dtnsend (stdin) -> dtnrecv -e: byte-identical, also above dtnd's own 2 MiB limit.
    for (i, len) in [1usize, 64 << 10, 10 << 20].into_iter().enumerate() {
        let p = payload(len, 0x50 + u8::try_from(i).unwrap());
        let out = text(tool("dtnsend", &["-r", "dtn://alpha/incoming"], &p));
        // "Result: Sent <n> bytes", n being the size of the whole bundle.
        let sent = out.lines().find_map(|l| l.strip_prefix("Result: Sent ")?.strip_suffix(" bytes")?.parse().ok());
        assert!(sent.is_some_and(|n: usize| n > len), "{out}");
        let got = tool("dtnrecv", &["-e", "incoming"], b"");
        assert_same(&got, &p, &format!("dtnsend -> dtnrecv, {len} B"));
    }
    // Nothing left: dtnrecv prints nothing.
    assert!(tool("dtnrecv", &["-e", "incoming"], b"").is_empty());

    // dtnsend from a file with a sender and lifetime; dtnrecv -x (hex of the
    // whole bundle) and -r -o (raw bundle into a file).
    let file = dir.path().join("in.bin");
    std::fs::write(&file, payload(5000, 0x60)).unwrap();
    let file = file.to_str().unwrap();
    tool("dtnsend", &["-s", "dtn://alpha/app", "-l", "60", "-r", "dtn://alpha/incoming", file], b"");
    let hex = text(tool("dtnrecv", &["-e", "incoming", "-x"], b""));
    let bytes: Vec<u8> =
        (0..hex.trim().len()).step_by(2).map(|i| u8::from_str_radix(&hex.trim()[i..i + 2], 16).expect("hex")).collect();
    assert_same(&payload_of(&bytes), &payload(5000, 0x60), "dtnrecv -x");
    let decoded = ferry_core::node::decode_stored(&bytes).expect("a bundle");
    assert_eq!(decoded.id().source.to_string(), "dtn://alpha/app");
    tool("dtnsend", &["-r", "dtn://alpha/incoming", file], b"");
    let out = dir.path().join("out.bundle");
    tool("dtnrecv", &["-e", "incoming", "-r", "-o", out.to_str().unwrap()], b"");
    assert_same(&payload_of(&std::fs::read(&out).unwrap()), &payload(5000, 0x60), "dtnrecv -r -o");

    // A bundle for an endpoint nobody registered stays: dtnquery bundles
    // lists it, dtnrecv -b downloads it, dtnrecv -d deletes it.
    let out = text(tool("dtnsend", &["-r", "dtn://alpha/later"], b"kept for later"));
    let bid = out.lines().find_map(|l| l.strip_prefix("Bundle-Id: ")).expect("dtnsend prints the bundle ID").trim();
    assert!(text(tool("dtnquery", &["bundles"], b"")).contains(bid));
    assert!(text(tool("dtnquery", &["bundles", "-a", "later"], b"")).contains(bid));
    assert!(!text(tool("dtnquery", &["bundles", "-a", "nowhere"], b"")).contains(bid));
    let verbose = text(tool("dtnquery", &["bundles", "-v"], b""));
    assert!(verbose.contains("dtn://alpha/later"), "{verbose}");
    let digest = text(tool("dtnquery", &["bundles", "-d"], b""));
    assert_eq!(digest.lines().nth(1).map(|l| l.trim().len()), Some(40), "a SHA-1 digest: {digest}");
    let filtered = text(tool("dtnquery", &["bundles", "-a", "later", "-d"], b""));
    assert_eq!(filtered.lines().nth(1).map(|l| l.trim().len()), Some(40), "a SHA-1 digest: {filtered}");
    assert!(text(tool("dtnquery", &["store"], b"")).contains(bid));
    assert!(text(tool("dtnquery", &["info"], b"")).contains("\"node_id\": \"dtn://alpha/\""));
    assert_eq!(tool("dtnrecv", &["-b", bid], b""), b"kept for later");
    assert!(text(tool("dtnrecv", &["-d", bid], b"")).contains(&format!("Deleted bundle {bid}")));
    assert!(!text(tool("dtnquery", &["bundles"], b"")).contains(bid));

    // dtnsend at ferryd for dtnd: ferryd forwards it; dtnquery peers shows the link.
    eventually("ferryd's session to dtnd", WAIT, || ferry_connected(&a, "dtn://node2/"), || logs(&a, &dtnd));
    let peers = text(tool("dtnquery", &["peers"], b""));
    assert!(peers.contains("dtn://node2/"), "{peers}");
    tool("dtnsend", &["-r", "dtn://node2/incoming"], b"from dtnsend, through ferryd");
    assert_eq!(dtnd.receive(WAIT), b"from dtnsend, through ferryd");
}

/// `ferry bench link` end to end, tiny: both pairs come up, every phase
/// completes, the JSON has the figures the report promises, and no child is
/// left behind.
#[test]
fn ferry_bench_link_measures_ferryd_and_dtnd_pairs() {
    let Some(bin) = dtn7("ferry bench link") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["bench", "link", "--small", "200", "--medium", "20", "--large-mib", "4", "--pings", "3"])
        .args(["--dd-mib", "8", "--max-time", "30s", "--tls", "--chain", "--dir"])
        .arg(dir.path())
        .arg("--dtn7-bin")
        .arg(&bin)
        .output()
        .expect("run ferry bench link");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(r["disk"]["mb_per_s"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    assert!(r["ceiling_mb_per_s"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    for system in ["ferry", "ferry_tls", "ferry_chain", "dtn7"] {
        let s = &r[system];
        let phases = s["throughput"].as_array().unwrap_or_else(|| panic!("{system}: no throughput: {r}"));
        assert_eq!(phases.len(), 3, "{system}: {r}");
        for p in phases {
            assert_eq!(p["complete"], true, "{system}: {p}");
            assert_eq!(p["delivered"], p["bundles"], "{system}: {p}");
            assert!(p["bundles_per_s"].as_f64().is_some_and(|v| v > 0.0), "{system}: {p}");
        }
        assert_eq!(s["ping"]["count"], 3, "{system}: {r}");
        assert!(s["ping"]["rtt_ms"]["median"].as_f64().is_some_and(|v| v > 0.0), "{system}: {r}");
    }
    assert!(r["ferry_over_dtn7"]["mb_per_s_1mib"].as_f64().is_some(), "{r}");
    assert!(r["ferry_tls_over_plain"]["bundles_per_s_100b"].as_f64().is_some(), "{r}");
    assert!(r["ferry_chain"]["throughput"][0]["cpu_s"]["relay"].as_f64().is_some(), "the relay is measured: {r}");
    // The bench's folder is gone, and with it every daemon it started.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
