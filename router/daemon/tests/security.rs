//! Security end to end, with real ferryd processes over the TCP plugin on
//! loopback: signed bundles A → B → C where B holds no keys; altered, forged,
//! unsigned and untrusted bundles refused at C; a payload encrypted for C
//! that B stores and forwards as ciphertext; a carrier plugin that flips a
//! payload bit on the way (`examples/tamper_plugin.rs`); the API token; key
//! file checks; SHA-256 pinning of plugins.
//!
//! The TCP plugin and the tamper plugin must be built next to ferryd
//! (`cargo build --workspace --all-targets`).

mod api_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use api_support::{bundle, free_port, run_to_exit, tcp_plugin, Ferryd};
use ed25519_dalek::SigningKey;
use ferry_core::bpsec::{self, Integrity, NewBlock};
use ferry_core::bundle::block_types;
use ferry_core::codec;
use ferry_daemon::security::{encode_public_key, KEY_FILE};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(20);

fn tcp_cla(listen: u16, peers: &[u16]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).collect();
    format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\npeers = [{}]\n",
        tcp_plugin().display(),
        peers.join(", ")
    )
}

/// A ferryd named `name` (dtn://name/) with `config` after its node ID.
fn node(dir: &Path, name: &str, config: &str) -> Ferryd {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("node_id = \"dtn://{name}/\"\n{config}")).unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

/// Puts a known node key into `name`'s data folder before its first start,
/// so that peers' configs can trust it; returns the key pair.
fn preset_key(dir: &Path, name: &str, seed: u8) -> SigningKey {
    use base64::Engine as _;
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let path = data.join(KEY_FILE);
    std::fs::write(&path, format!("{}\n", base64::engine::general_purpose::STANDARD.encode([seed; 32]))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    SigningKey::from_bytes(&[seed; 32])
}

fn public_key_of(f: &Ferryd) -> String {
    f.get("/ferry/id").json()["public_key"].as_str().expect("public key").to_owned()
}

/// The bundle with its first payload byte flipped and the payload block's
/// CRC recomputed, so that only the signature can tell.
fn flip_payload_byte(bytes: &[u8]) -> Vec<u8> {
    let b = codec::decode(bytes).unwrap();
    let p = b.payload();
    let mut data = bytes[p.data.clone()].to_vec();
    data[0] ^= 1;
    let mut block = Vec::new();
    codec::encode_canonical_block(&mut block, p.block_type, p.number, p.flags, p.crc_type, &data);
    let mut out = bytes[..p.range.start].to_vec();
    out.extend_from_slice(&block);
    out.extend_from_slice(&bytes[p.range.end..]);
    assert!(codec::decode(&out).is_ok(), "the altered bundle is still a valid bundle");
    out
}

/// A bundle from `src` to `dst` signed (Ed25519 context, as ferryd signs)
/// with `key` under security source `signer`.
fn signed(src: &str, dst: &str, seq: u64, signer: &str, key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let plain = bundle(src, dst, seq, 3_600_000, payload);
    let b = codec::decode(&plain).unwrap();
    let ctx = Integrity::Ed25519 { scope: 7, key };
    bpsec::sign(&plain, &b, &[1], &signer.parse().unwrap(), &ctx, &NewBlock::default()).unwrap()
}

fn has_block(bytes: &[u8], block_type: u64) -> usize {
    codec::decode(bytes).unwrap().blocks.iter().filter(|b| b.block_type == block_type).count()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn signed_path_a_to_c_through_a_keyless_b_and_what_c_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // A alone first: what it sends waits in its store, signed.
    let a = node(dir.path(), "a", &format!("[security]\nsign_originated = true\n{}", tcp_cla(pa, &[pb])));
    let sent = a.post("/send?dst=dtn://c/secure&lifetime=1h", b"from a, signed".to_vec());
    assert_eq!(sent.status, 200, "{}", sent.text());
    let bid = a.bundle_ids().pop().expect("the bundle waits at a");
    let original = a.get(&format!("/download?{bid}")).body;
    assert_eq!(has_block(&original, block_types::BIB), 1, "a signs what it creates");

    let c = node(dir.path(), "c", &format!("[security]\nrequire_signature = [\"secure\"]\n{}", tcp_cla(pc, &[pb])));
    c.get_ok("/register?secure");
    // C trusts A's key, as an operator would: `ferry trust add dtn://a/ KEY`.
    let added =
        c.post(&format!("/ferry/trust/add?node=dtn://a/&key={}", public_key_of(&a).replace('+', "%2B")), vec![]);
    assert_eq!(added.status, 200, "{}", added.text());

    // Tampering on the way: one payload byte flipped (CRC fixed up) → refused.
    let altered = flip_payload_byte(&original);
    let r = c.post("/push", altered);
    assert_eq!(r.status, 422, "altered bundle: {}", r.text());
    assert!(r.text().contains("integrity check"), "{}", r.text());
    // Unsigned, from a node C does not know.
    let r = c.post("/push", bundle("dtn://d/", "dtn://c/secure", 1, 3_600_000, b"unsigned"));
    assert_eq!(r.status, 422, "unsigned bundle: {}", r.text());
    assert!(r.text().contains("not signed"), "{}", r.text());
    // Signed by a key C does not trust.
    let d_key = SigningKey::from_bytes(&[0xd; 32]);
    let r = c.post("/push", signed("dtn://d/", "dtn://c/secure", 2, "dtn://d/", &d_key, b"untrusted"));
    assert_eq!(r.status, 422, "untrusted signer: {}", r.text());
    assert!(r.text().contains("dtn://d/"), "{}", r.text());
    // Claiming to be A, signed with another key: a forgery.
    let r = c.post("/push", signed("dtn://a/", "dtn://c/secure", 3, "dtn://a/", &d_key, b"forged"));
    assert_eq!(r.status, 422, "forged bundle: {}", r.text());
    assert!(c.bundle_ids().is_empty(), "nothing refused was stored");
    let log = c.log_text();
    assert!(log.contains("reason=15") && log.contains("reason=12"), "refusals logged with their reasons:\n{log}");
    assert_eq!(c.get("/endpoint?secure").text(), "Nothing to receive");

    // Now B, with no keys and no policy, joins: A's bundle travels A → B → C.
    let b = node(dir.path(), "b", &tcp_cla(pb, &[]));
    // Dial now rather than at the plugins' next reconnect (their back-off grows).
    for n in [&a, &c] {
        assert_eq!(n.get(&format!("/peers/add?p=tcp://127.0.0.1:{pb}/b")).status, 200);
    }
    assert_eq!(c.receive("secure", WAIT), b"from a, signed");
    // B forwarded the signature untouched: C verified it (C requires one).
    let peers = b.get("/status/peers").json();
    assert_eq!(peers["dtn://c/"]["connected"], true, "{peers}");
    assert!(b.get("/ferry/trust").json().as_array().unwrap().len() == 1, "b trusts only itself");

    // A second bundle, sent while the path is up, arrives too.
    assert_eq!(a.post("/send?dst=dtn://c/secure", b"second".to_vec()).status, 200);
    assert_eq!(c.receive("secure", WAIT), b"second");
}

#[test]
fn a_payload_encrypted_for_c_is_ciphertext_at_b_and_plaintext_at_c() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let ka = preset_key(dir.path(), "a", 0xa);
    let kc = preset_key(dir.path(), "c", 0xc);
    let trust = |name: &str, k: &SigningKey| {
        format!("[[trust]]\nnode = \"dtn://{name}/\"\nkey = \"{}\"\n", encode_public_key(&k.verifying_key()))
    };
    let a = node(
        dir.path(),
        "a",
        &format!(
            "[security]\nsign_originated = true\nencrypt_for = [\"dtn://c/\"]\n{}{}",
            trust("c", &kc),
            tcp_cla(pa, &[pb])
        ),
    );
    assert_eq!(public_key_of(&a), encode_public_key(&ka.verifying_key()), "the preset key is a's identity");
    // B trusts both A and C, and still cannot read what A sends C.
    let b = node(dir.path(), "b", &format!("{}{}{}", trust("a", &ka), trust("c", &kc), tcp_cla(pb, &[])));
    assert_eq!(a.get(&format!("/peers/add?p=tcp://127.0.0.1:{pb}/b")).status, 200);
    let secret = b"the key is under the third stone";
    assert_eq!(a.post("/send?dst=dtn://c/inbox&lifetime=1h", secret.to_vec()).status, 200);
    let at_a = a.get(&format!("/download?{}", a.bundle_ids().pop().expect("stored at a"))).body;
    assert!(!contains(&at_a, secret), "a stores only the ciphertext");
    b.eventually("the bundle to reach b", WAIT, || !b.bundle_ids().is_empty());
    let bid = b.bundle_ids().pop().unwrap();
    let at_b = b.get(&format!("/download?{bid}")).body;
    assert!(!contains(&at_b, secret), "b holds ciphertext");
    assert_eq!(has_block(&at_b, block_types::BCB), 2, "payload and signature encrypted, one BCB each");

    let c = node(
        dir.path(),
        "c",
        &format!("[security]\nrequire_signature = [\"inbox\"]\n{}{}", trust("a", &ka), tcp_cla(pc, &[pb])),
    );
    c.get_ok("/register?inbox");
    assert_eq!(c.receive("inbox", WAIT), secret, "c decrypts and verifies");
}

#[test]
fn without_the_token_a_request_gets_401_and_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-0123456789";
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let n = node(dir.path(), "n", &format!("[api]\ntoken_file = \"{}\"\n", token_file.display()));
    let http = reqwest::blocking::Client::new();
    let r = http.post(n.url("/send?dst=dtn://x/in")).body("should not be stored").send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    let r = http.post(n.url("/send?dst=dtn://x/in")).bearer_auth("wrong-token-0123456789").body("no").send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(n.get("/status/nodeid").status, 401, "every route, reads too");
    let list = |t: &str| http.get(n.url("/status/bundles")).bearer_auth(t).send().unwrap().text().unwrap();
    assert_eq!(list(token).trim(), "[]", "nothing was stored");
    let r = http.post(n.url("/send?dst=dtn://x/in")).bearer_auth(token).body("stored").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(list(token).contains("dtn://n/"));

    // The CLI sends the token it is given, and says what to do without it.
    let ferry = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["--api", &n.url(""), "id"]).env_remove("FERRY_TOKEN").env_remove("FERRY_TOKEN_FILE");
        cmd.env("FERRY_DATA_DIR", dir.path().join("nowhere"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = ferry(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FERRY_TOKEN"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ferry(&[("FERRY_TOKEN", token)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ferry trust add dtn://n/ "));
    let out = ferry(&[("FERRY_TOKEN_FILE", token_file.to_str().unwrap())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!n.log_text().contains(token), "the token is never logged");
}

#[test]
fn ferryd_refuses_an_exposed_or_corrupt_node_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = preset_key(dir.path(), "data", 7);
    let path = data.join(KEY_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = ["--data-dir", data.to_str().unwrap(), "--api", "127.0.0.1:0", "--no-default-cla"];
    let (status, err) = run_to_exit(&args);
    assert!(!status.success());
    assert!(err.contains("node key file") && err.contains("chmod 600"), "{err}");
    let secret = std::fs::read_to_string(&path).unwrap();
    assert!(!err.contains(secret.trim()), "the key is not shown");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, "garbage\n").unwrap();
    let (status, err) = run_to_exit(&args);
    assert!(!status.success());
    assert!(err.contains("corrupt"), "{err}");
    let _ = key;
}

#[test]
fn a_plugin_whose_sha256_differs_is_not_loaded_and_the_right_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let digest: String =
        sha2::Sha256::digest(std::fs::read(tcp_plugin()).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    let (p1, p2) = (free_port(), free_port());
    let wrong = "0".repeat(64);
    let pinned = |port: u16, sha: &str| {
        format!(
            "[[cla]]\npath = \"{}\"\nsha256 = \"{sha}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{port}\"]\n",
            tcp_plugin().display()
        )
    };
    let clas = format!("{}{}", pinned(p1, &wrong), pinned(p2, &digest));
    let n = node(dir.path(), "n", &clas);
    let log = n.log_text();
    assert!(log.contains(&format!("not the pinned {wrong}")), "{log}");
    assert!(log.contains(&digest), "the error names the file's digest: {log}");
    assert_eq!(log.matches("convergence-layer plugin loaded").count(), 1, "the pinned one loads: {log}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", p2)).is_ok(), "and listens");
    assert!(std::net::TcpStream::connect(("127.0.0.1", p1)).is_err(), "the mismatched one does not");
    assert_eq!(n.get("/status/nodeid").status, 200, "the node runs on");
}

#[test]
fn ferry_id_and_ferry_trust_manage_the_keys_of_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let configured = encode_public_key(&SigningKey::from_bytes(&[5; 32]).verifying_key());
    let n = node(dir.path(), "n", &format!("[[trust]]\nnode = \"dtn://cfg/\"\nkey = \"{configured}\"\n"));
    let ferry = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["--api", &n.url("")])
            .args(args)
            .env_remove("FERRY_TOKEN")
            .env_remove("FERRY_TOKEN_FILE")
            .env("FERRY_DATA_DIR", dir.path().join("nowhere"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, id, _) = ferry(&["id"]);
    assert!(ok && id.contains("dtn://n/") && id.contains(&public_key_of(&n)), "{id}");
    // A key with '+' and '/' in its base64 travels intact.
    let peer = (0u8..=255)
        .map(|s| encode_public_key(&SigningKey::from_bytes(&[s; 32]).verifying_key()))
        .find(|k| k.contains('+') && k.contains('/'))
        .expect("some key has both");
    let (ok, out, err) = ferry(&["trust", "add", "dtn://peer/", &peer]);
    assert!(ok && out.contains("Trusting dtn://peer/"), "{out}{err}");
    let (_, list, _) = ferry(&["trust", "list"]);
    assert!(list.contains("dtn://peer/") && list.contains(&peer) && list.contains("(added)"), "{list}");
    assert!(list.contains("dtn://cfg/") && list.contains("(config)") && list.contains("(self)"), "{list}");
    let kept = std::fs::read_to_string(dir.path().join("n").join("trust.toml")).unwrap();
    assert!(kept.contains(&peer), "kept in the data folder: {kept}");

    let (ok, _, err) = ferry(&["trust", "add", "dtn://peer/", "not-a-key"]);
    assert!(!ok && err.contains("not an Ed25519 public key"), "{err}");
    let (ok, _, err) = ferry(&["trust", "remove", "dtn://cfg/"]);
    assert!(!ok && err.contains("config file"), "{err}");
    let (ok, out, _) = ferry(&["trust", "remove", "dtn://peer/"]);
    assert!(ok && out.contains("No longer trusting"), "{out}");
    let (ok, _, _) = ferry(&["trust", "remove", "dtn://peer/"]);
    assert!(!ok, "nothing left to remove");
    assert!(!ferry(&["trust", "list"]).1.contains(&peer));
}

/// A → B → C where the B → C hop is an untrusted carrier: the tamper plugin
/// (`examples/tamper_plugin.rs`), which flips a payload bit and fixes the
/// block's CRC. C requires A's signature: the altered bundle is deleted with
/// its reason and never reaches C's app; the same carrier without the flip
/// delivers, so it is the flip that C caught.
#[test]
fn a_byte_flipped_by_a_carrier_on_the_way_is_caught_at_the_destination() {
    let tamper = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().unwrap().join("examples/libtamper_plugin.so");
    assert!(tamper.exists(), "{} is not built: run `cargo build --workspace --all-targets`", tamper.display());
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, stcp_c) = (free_port(), free_port(), free_port());
    let a = node(dir.path(), "a", &format!("[security]\nsign_originated = true\n{}", tcp_cla(pa, &[pb])));
    let c = node(
        dir.path(),
        "c",
        &format!(
            "[security]\nrequire_signature = [\"secure\"]\n\n[[cla]]\npath = \"{}\"\n[cla.settings]\nstcp_listen = [\"127.0.0.1:{stcp_c}\"]\n",
            tcp_plugin().display()
        ),
    );
    c.get_ok("/register?secure");
    let added =
        c.post(&format!("/ferry/trust/add?node=dtn://a/&key={}", public_key_of(&a).replace('+', "%2B")), vec![]);
    assert_eq!(added.status, 200, "{}", added.text());
    let carrier = |flip: bool| {
        format!(
            "{}\n[[cla]]\npath = \"{}\"\n[cla.settings]\npeer = \"dtn://c/\"\nforward = \"127.0.0.1:{stcp_c}\"\nflip = {flip}\n",
            tcp_cla(pb, &[]),
            tamper.display()
        )
    };

    // An honest carrier first: A's signed bundle arrives and verifies.
    let b = node(dir.path(), "b", &carrier(false));
    // Dial now rather than at the plugin's next reconnect (its back-off grows).
    assert_eq!(a.get(&format!("/peers/add?p=tcp://127.0.0.1:{pb}/b")).status, 200);
    assert_eq!(a.post("/send?dst=dtn://c/secure", b"carried honestly".to_vec()).status, 200);
    assert_eq!(c.receive("secure", WAIT), b"carried honestly");
    assert_eq!(b.terminate().code(), Some(0));

    // The same carrier flipping a bit: C deletes the bundle and says why.
    let b = node(dir.path(), "b2", &carrier(true));
    assert_eq!(a.get(&format!("/peers/add?p=tcp://127.0.0.1:{pb}/b2")).status, 200);
    assert_eq!(a.post("/send?dst=dtn://c/secure", b"altered on the way".to_vec()).status, 200);
    b.eventually("the carrier to flip and carry the bundle", WAIT, || b.log_text().contains("flipped: true"));
    c.eventually("C to refuse the altered bundle", WAIT, || c.log_text().contains("integrity check"));
    let log = c.log_text();
    let line = log.lines().find(|l| l.contains("integrity check")).unwrap();
    assert!(line.contains("dtn://a/") && line.contains("reason="), "{line}");
    assert_eq!(c.get("/endpoint?secure").text(), "Nothing to receive", "the altered payload never reaches the app");
    assert!(c.bundle_ids().is_empty(), "the altered bundle is not kept");
}
