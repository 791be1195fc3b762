//! The `ferry` CLI against a real ferryd: send and receive a file, inspect and
//! delete stored bundles, status, error messages, and offline `bundle decode`.

mod cli_support;

use std::path::Path;

use cli_support::{ferry, ferry_with_stdin, http, node_id, Ferryd};
use ferry_core::bundle::CrcType;
use ferry_core::codec::BundleBuilder;
use ferry_core::{CreationTimestamp, Eid};
use serde_json::Value;

fn start(dir: &Path) -> Ferryd {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    Ferryd::start(&data, &dir.join("ferryd.log"))
}

/// Bytes that are not text and not all alike, so a truncation or a text
/// conversion anywhere would show.
fn sample_payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The `/ferry/bundles` entries whose destination is `dst`, via `ferry --json bundles list`.
fn listed_to(api: &str, dst: &str) -> Vec<Value> {
    let list = ferry(&["--api", api, "--json", "bundles", "list"]).ok().json();
    let all = list.as_array().expect("bundles list --json is an array").clone();
    all.into_iter().filter(|b| b["dst"] == dst).collect()
}

#[test]
fn send_then_recv_delivers_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let api = d.api.as_str();
    let node: Eid = node_id(api).parse().expect("node id is an EID");
    let dst = node.with_service("incoming").unwrap().to_string();

    let payload = sample_payload(100_000);
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, &payload).unwrap();
    let sent = ferry(&["--api", api, "send", "--to", &dst, "--lifetime", "1h", file.to_str().unwrap()]).ok();
    assert!(!sent.stdout_text().trim().is_empty(), "send prints ferryd's answer");

    let got = ferry(&["--api", api, "recv", "incoming", "--timeout", "20s"]).ok();
    assert_eq!(got.stdout.len(), payload.len());
    assert!(got.stdout == payload, "received payload differs from the file sent");

    // Standard input works too, and --out writes one file per bundle.
    ferry_with_stdin(&["--api", api, "send", "--to", &dst], Some(b"from stdin")).ok();
    let out = dir.path().join("inbox");
    let got = ferry(&["--api", api, "recv", "incoming", "--out", out.to_str().unwrap(), "--timeout", "20s"]).ok();
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one file per bundle: {files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"from stdin");
    assert!(got.stdout_text().contains(&*files[0].file_name().unwrap().to_string_lossy()));
}

#[test]
fn recv_times_out_with_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let run = ferry(&["--api", &d.api, "recv", "nobody-sends-here", "--timeout", "1s"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("timed out"), "stderr: {}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn bundles_list_show_delete() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let api = d.api.as_str();
    let node: Eid = node_id(api).parse().unwrap();
    // Nobody is registered on `parked`, so the bundle stays in the store.
    let dst = node.with_service("parked").unwrap().to_string();
    ferry_with_stdin(&["--api", api, "send", "--to", &dst, "--lifetime", "2h"], Some(b"keep me")).ok();

    let listed = listed_to(api, &dst);
    assert_eq!(listed.len(), 1, "exactly the bundle sent: {listed:?}");
    let bid = listed[0]["bid"].as_str().expect("bid is a string").to_owned();
    assert_eq!(listed[0]["payload_len"], 7);

    let table = ferry(&["--api", api, "bundles", "list"]).ok().stdout_text();
    let row = table.lines().find(|l| l.contains(&bid)).unwrap_or_else(|| panic!("{bid} not in:\n{table}"));
    assert!(row.contains(&dst), "row names the destination: {row}");
    assert!(row.contains("1h 59m") || row.contains("2h"), "row says when it expires: {row}");

    let shown = ferry(&["--api", api, "bundles", "show", &bid]).ok().stdout_text();
    assert!(shown.contains(&bid) && shown.contains(&dst), "show:\n{shown}");
    let shown = ferry(&["--api", api, "--json", "bundles", "show", &bid]).ok().json();
    assert_eq!(shown["bid"], bid.as_str());
    assert_eq!(shown["lifetime_ms"], 2 * 3600 * 1000);
    let payload = ferry(&["--api", api, "bundles", "show", &bid, "--payload"]).ok();
    assert_eq!(payload.stdout, b"keep me");

    ferry(&["--api", api, "bundles", "delete", &bid]).ok();
    assert!(listed_to(api, &dst).is_empty(), "deleted bundle still listed");
    let gone = ferry(&["--api", api, "bundles", "show", &bid]);
    assert!(!gone.status.success());
    assert!(gone.stderr.contains("no bundle"), "stderr: {}", gone.stderr);
}

#[test]
fn status_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let node = node_id(&d.api);
    let json = ferry(&["--api", &d.api, "--json", "status"]).ok().json();
    assert!(json.is_object(), "status --json is an object: {json}");
    let text = ferry(&["--api", &d.api, "status"]).ok().stdout_text();
    assert!(text.contains(&node), "status names the node {node}:\n{text}");
}

#[test]
fn unreachable_daemon_is_a_clear_error() {
    // Nothing listens on port 1 of the loopback address.
    let run = ferry(&["--api", "http://127.0.0.1:1", "status"]);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("cannot reach ferryd at http://127.0.0.1:1") && run.stderr.contains("is ferryd running?"),
        "stderr: {}",
        run.stderr
    );
    let run = ferry(&["--api", "not a url", "status"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--api"), "stderr: {}", run.stderr);
}

fn bundle_bytes(payload: &[u8]) -> Vec<u8> {
    BundleBuilder::new(
        "dtn://src/app".parse().unwrap(),
        "dtn://dst/inbox".parse().unwrap(),
        CreationTimestamp { time: 770_000_000_000, seq: 3 },
        3_600_000,
    )
    .crc_type(CrcType::Crc32c)
    .hop_limit(16)
    .build(payload)
}

/// Hex the way people paste it: a comment, line breaks, spaces.
fn as_hex_file(bytes: &[u8]) -> String {
    let mut text = String::from("# a bundle, hex\n");
    for line in bytes.chunks(16) {
        let words: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    text
}

#[test]
fn bundle_decode_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = bundle_bytes(b"hello, ferry");

    let valid = dir.path().join("valid.hex");
    std::fs::write(&valid, as_hex_file(&bytes)).unwrap();
    let run = ferry(&["bundle", "decode", "--hex", valid.to_str().unwrap()]).ok();
    let v = run.json();
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["bundle_id"], "dtn://src/app-770000000000-3");
    assert_eq!(v["primary"]["destination"], "dtn://dst/inbox");
    assert_eq!(v["primary"]["crc_type"], "crc32c");
    assert_eq!(v["extensions"]["hop_count"]["limit"], 16);
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.last().unwrap()["type"], 1, "payload block last");
    assert_eq!(blocks.last().unwrap()["data_len"], 12);

    // The same bytes, raw, from standard input.
    let run = ferry_with_stdin(&["bundle", "decode", "-"], Some(&bytes)).ok();
    assert_eq!(run.json()["verdict"], "valid");

    // One payload byte changed: the CRC-32C no longer matches.
    let mut bad = bytes.clone();
    let at = bad.windows(5).position(|w| w == b"hello").unwrap();
    bad[at] = b'j';
    let invalid = dir.path().join("invalid.hex");
    std::fs::write(&invalid, as_hex_file(&bad)).unwrap();
    let run = ferry(&["bundle", "decode", "--hex", invalid.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("CRC mismatch"), "reason printed: {}", run.stderr);
    assert_eq!(run.json()["verdict"], "invalid");

    // Input that cannot be read is trouble (2), not a verdict.
    let run = ferry(&["bundle", "decode", "--hex", dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    let run = ferry_with_stdin(&["bundle", "decode", "--hex", "-"], Some(b"9f 8"));
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("odd number of hex digits"), "stderr: {}", run.stderr);
}

#[test]
fn stored_bundle_decodes_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let node: Eid = node_id(&d.api).parse().unwrap();
    let dst = node.with_service("parked").unwrap().to_string();
    ferry_with_stdin(&["--api", &d.api, "send", "--to", &dst], Some(b"x")).ok();
    let bid = listed_to(&d.api, &dst)[0]["bid"].as_str().unwrap().to_owned();
    let resp = http().get(format!("{}/ferry/bundle.cbor", d.api)).query(&[("bid", &bid)]).send().unwrap();
    assert!(resp.status().is_success());
    let file = dir.path().join("stored.cbor");
    std::fs::write(&file, resp.bytes().unwrap()).unwrap();
    let v = ferry(&["bundle", "decode", file.to_str().unwrap()]).ok().json();
    assert_eq!(v["bundle_id"], bid.as_str());
    assert_eq!(v["primary"]["destination"], dst.as_str());
}

/// dtn7-rs's `dtnsend` leaves the primary block without a CRC; ferryd takes
/// such a bundle (unless `strict_primary_crc`), so `ferry recv` and `ferry
/// bundles show --payload` must read it too (found by the user guide).
#[test]
fn a_bundle_without_primary_crc_that_ferryd_took_is_received() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let api = d.api.as_str();
    let node: Eid = node_id(api).parse().unwrap();
    let bytes = BundleBuilder::new(
        "dtn://node7/".parse().unwrap(),
        node.with_service("incoming").unwrap(),
        CreationTimestamp { time: 0, seq: 1 },
        3_600_000,
    )
    .crc_type(CrcType::None)
    .build(b"no crc on my primary block");
    assert!(ferry_core::codec::decode(&bytes).is_err(), "strictly, the bundle is invalid");
    let pushed = http().post(format!("{api}/push")).body(bytes).send().unwrap();
    assert!(pushed.status().is_success(), "ferryd takes it: {}", pushed.text().unwrap_or_default());
    let bid = ferry(&["--api", api, "--json", "bundles", "list"]).ok().stdout_text();
    let bid: Value = serde_json::from_str(&bid).unwrap();
    let bid = bid[0]["bid"].as_str().expect("a bundle ID").to_owned();
    let shown = ferry(&["--api", api, "bundles", "show", &bid, "--payload"]).ok();
    assert_eq!(shown.stdout, b"no crc on my primary block");
    let got = ferry(&["--api", api, "recv", "incoming", "--timeout", "20s"]).ok();
    assert_eq!(got.stdout, b"no crc on my primary block");
}

/// `ferry bundles export` writes the store's bundles to files, `import`
/// pushes them into another node: the same bundle IDs, byte for byte; a
/// second import finds them there; a file that is no bundle fails alone.
#[test]
fn bundles_export_then_import_into_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (start(&dir.path().join("one")), start(&dir.path().join("two")));
    let (api1, api2) = (one.api.as_str(), two.api.as_str());
    for (i, len) in [10usize, 3 << 20, 1000].into_iter().enumerate() {
        let file = dir.path().join(format!("p{i}"));
        std::fs::write(&file, sample_payload(len)).unwrap();
        ferry(&["--api", api1, "send", "--to", "dtn://elsewhere/x", "--lifetime", "1h", file.to_str().unwrap()]).ok();
    }
    let out = dir.path().join("export");
    let exported = ferry(&["--api", api1, "--json", "bundles", "export", out.to_str().unwrap()]).ok();
    let report: Value = serde_json::from_str(&exported.stdout_text()).unwrap();
    assert_eq!(report["exported"], 3, "{report}");
    let ids = |api: &str| -> Vec<String> {
        let list: Value =
            serde_json::from_str(&ferry(&["--api", api, "--json", "bundles", "list"]).ok().stdout_text()).unwrap();
        let mut ids: Vec<String> =
            list.as_array().unwrap().iter().map(|b| b["bid"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let imported = ferry(&["--api", api2, "--json", "bundles", "import", out.to_str().unwrap()]).ok();
    let report: Value = serde_json::from_str(&imported.stdout_text()).unwrap();
    assert_eq!((report["imported"].as_u64(), report["already_there"].as_u64()), (Some(3), Some(0)), "{report}");
    assert_eq!(ids(api1), ids(api2));
    for bid in ids(api1) {
        let a = ferry(&["--api", api1, "bundles", "show", &bid, "--payload"]).ok().stdout;
        let b = ferry(&["--api", api2, "bundles", "show", &bid, "--payload"]).ok().stdout;
        assert!(a == b, "payload of {bid} differs after the move");
    }
    // Again: already there. And a file that is not a bundle fails by itself.
    let junk = dir.path().join("junk.bundle");
    std::fs::write(&junk, b"not a bundle").unwrap();
    let again = ferry(&["--api", api2, "--json", "bundles", "import", out.to_str().unwrap(), junk.to_str().unwrap()]);
    let report: Value = serde_json::from_str(&again.stdout_text()).unwrap();
    assert_eq!(report["already_there"], 3, "{report}");
    assert_eq!(report["failed"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(again.status.code(), Some(1), "{}", again.stderr);
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), a large
/// send and receive show progress bars on standard error; piped, they do
/// not (the other tests' output would be full of them otherwise).
#[test]
fn large_transfers_show_progress_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let api = d.api.as_str();
    let node: Eid = node_id(api).parse().unwrap();
    let dst = node.with_service("incoming").unwrap().to_string();
    let file = dir.path().join("big");
    std::fs::write(&file, sample_payload(4 << 20)).unwrap();
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let on_tty = |cmd: String| -> String {
        let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script(1)");
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sent = on_tty(format!("{ferry_bin} --api {api} send --to {dst} {}", file.display()));
    assert!(sent.contains("sending [") && sent.contains("4.00 MiB"), "{sent}");
    let got = on_tty(format!(
        "{ferry_bin} --api {api} recv incoming --timeout 20s --out {}",
        dir.path().join("in").display()
    ));
    assert!(got.contains("receiving ["), "{got}");
    // Piped: no bar.
    let piped = ferry(&["--api", api, "send", "--to", &dst, file.to_str().unwrap()]).ok();
    assert!(!piped.stderr.contains("sending ["), "{}", piped.stderr);
}
