//! The TLS pieces without sockets: certificate names as another encoder
//! (OpenSSL) writes them, and two [`TlsLayer`]s handshaking back to back in
//! memory, with trusted and untrusted certificates.
//!
//! The node certificates here are made with OpenSSL at test time (Ed25519,
//! an id-on-bundleEID subjectAltName), as an operator with their own CA
//! tooling would; `ferry tls gen` is tested in router/daemon/tests/tls.rs.

use std::path::Path;
use std::process::Command;

use ferry_cla_tcp::tls::{eid, TlsContext, TlsLayer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn names_as_openssl_writes_them_are_read() {
    // openssl req -x509 -newkey ed25519 ... -addext "subjectAltName=
    //   otherName:1.3.6.1.5.5.7.8.11;IA5STRING:dtn://camp/,DNS:camp.example,
    //   otherName:1.3.6.1.5.5.7.8.11;IA5STRING:ipn:977.0"
    assert_eq!(eid::bundle_eids(&fixture("openssl-bundle-eid.der")).unwrap(), ["dtn://camp/", "ipn:977.0"]);
}

#[test]
fn names_as_ferry_tls_gen_writes_them_are_read() {
    // `ferry tls gen --node-id dtn://camp/`; `openssl x509 -text` shows
    // "othername: 1.3.6.1.5.5.7.8.11::dtn://camp/" for it.
    assert_eq!(eid::bundle_eids(&fixture("ferry-tls-gen.der")).unwrap(), ["dtn://camp/"]);
}

/// An Ed25519 certificate naming `node_id`, made by OpenSSL in `dir`;
/// `signer` (cert, key) makes it CA-signed instead of self-signed.
fn openssl_cert(dir: &Path, name: &str, node_id: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .arg("-addext")
        .arg(format!("subjectAltName=otherName:1.3.6.1.5.5.7.8.11;IA5STRING:{node_id}"))
        .args(["-addext", "extendedKeyUsage=serverAuth,clientAuth", "-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (CertificateDer::from_pem_file(&cert).unwrap(), PrivateKeyDer::from_pem_file(&key).unwrap())
}

fn context(own: &(CertificateDer<'static>, PrivateKeyDer<'static>), trust: &[&CertificateDer<'static>]) -> TlsContext {
    let mut roots = RootCertStore::empty();
    for t in trust {
        roots.add((*t).clone()).unwrap();
    }
    TlsContext::new(vec![own.0.clone()], own.1.clone_key(), roots).unwrap()
}

/// Runs the handshake (and then a message each way) between `client` and
/// `server` in memory, at most 20 flights; the certified names each side
/// saw, or the first error.
fn handshake(client: &mut TlsLayer, server: &mut TlsLayer) -> Result<(Vec<String>, Vec<String>), String> {
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    client.take_output(&mut to_server);
    let (mut names_c, mut names_s) = (None, None);
    let (mut plain_c, mut plain_s) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let input = std::mem::take(&mut to_server);
        server.read_from_peer(&input, &mut plain_s).map_err(|e| format!("server: {e}"))?;
        server.take_output(&mut to_client);
        if let Some(n) = server.take_established() {
            names_s = Some(n.map_err(|e| e.to_string())?);
            server.write_to_peer(b"SESS_INIT from the server", &mut to_client);
        }
        let input = std::mem::take(&mut to_client);
        client.read_from_peer(&input, &mut plain_c).map_err(|e| format!("client: {e}"))?;
        client.take_output(&mut to_server);
        if let Some(n) = client.take_established() {
            names_c = Some(n.map_err(|e| e.to_string())?);
            client.write_to_peer(b"SESS_INIT from the client", &mut to_server);
        }
        if plain_c == b"SESS_INIT from the server" && plain_s == b"SESS_INIT from the client" {
            return Ok((names_c.unwrap_or_default(), names_s.unwrap_or_default()));
        }
    }
    Err("no progress".into())
}

#[test]
fn mutually_trusted_nodes_handshake_and_learn_each_others_node_ids() {
    let dir = tempfile::tempdir().unwrap();
    let a = openssl_cert(dir.path(), "a", "dtn://a/");
    let b = openssl_cert(dir.path(), "b", "ipn:2.0");
    let (ctx_a, ctx_b) = (context(&a, &[&b.0]), context(&b, &[&a.0]));
    let peer = "127.0.0.1".parse().unwrap();
    let mut client = TlsLayer::new(&ctx_a, true, peer).unwrap();
    let mut server = TlsLayer::new(&ctx_b, false, peer).unwrap();
    assert!(client.is_handshaking());
    let (seen_by_client, seen_by_server) = handshake(&mut client, &mut server).unwrap();
    assert_eq!(seen_by_client, ["ipn:2.0"]);
    assert_eq!(seen_by_server, ["dtn://a/"]);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    assert!(client.take_established().is_none(), "reported once");
}

#[test]
fn an_untrusted_certificate_fails_the_handshake_on_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let a = openssl_cert(dir.path(), "a", "dtn://a/");
    let b = openssl_cert(dir.path(), "b", "dtn://b/");
    let stranger = openssl_cert(dir.path(), "s", "dtn://b/");
    let peer = "127.0.0.1".parse().unwrap();
    // The server presents a certificate the client does not trust.
    let mut client = TlsLayer::new(&context(&a, &[&b.0]), true, peer).unwrap();
    let mut server = TlsLayer::new(&context(&stranger, &[&a.0]), false, peer).unwrap();
    let e = handshake(&mut client, &mut server).unwrap_err();
    assert!(e.starts_with("client: ") && e.contains("invalid peer certificate"), "{e}");
    // The client presents one the server does not trust.
    let mut client = TlsLayer::new(&context(&stranger, &[&b.0]), true, peer).unwrap();
    let mut server = TlsLayer::new(&context(&b, &[&a.0]), false, peer).unwrap();
    let e = handshake(&mut client, &mut server).unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
}

#[test]
fn garbage_instead_of_a_client_hello_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let b = openssl_cert(dir.path(), "b", "dtn://b/");
    let mut server = TlsLayer::new(&context(&b, &[&b.0]), false, "127.0.0.1".parse().unwrap()).unwrap();
    let mut plain = Vec::new();
    assert!(server.read_from_peer(b"\x64\x74\x6e\x21 this is not TLS at all", &mut plain).is_err());
    assert!(plain.is_empty());
}
