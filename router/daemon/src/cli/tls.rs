//! `ferry tls gen`: a TLS certificate for TCPCLv4 over TLS (RFC 9174 §4.4).
//!
//! The certificate is self-signed with the node's own Ed25519 key
//! (`<data_dir>/node.key`, created here if the node never ran) and names the
//! node ID as a subjectAltName otherName id-on-bundleEID (an IA5String, as
//! RFC 9174 §4.4.1 asks; the TCP plugin encodes it). It is valid for
//! serverAuth and clientAuth, since a node is the TLS client on the
//! connections it opens and the server on those it accepts, and it is not a
//! CA. A peer trusts it by listing the PEM file in its `[cla.settings.tls]
//! trust`; regenerated over the same node key it stays trusted, because a
//! self-signed anchor is reduced to its subject and key.
//!
//! Nothing here talks to ferryd: the node ID comes from `--node-id` or the
//! config's `node_id`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_cla_tcp::tls::eid;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::config::{Overrides, Settings};
use crate::security::Identity;

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create the node's TLS certificate (self-signed with the node key,
    /// naming the node ID) and its key file, for `[cla.settings.tls]`.
    Gen(GenArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// ferryd's config file: its `node_id` and `data_dir` are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's data folder (holds node.key); overrides the config's.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node ID the certificate names; overrides the config's.
    #[arg(long, value_name = "EID")]
    pub node_id: Option<String>,
    /// Where cert.pem and key.pem go (default: <data_dir>/tls).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Days the certificate is valid (it is valid from a day before now, for
    /// clocks that lag).
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(command: &TlsCommand, json: bool) -> Result<ExitCode> {
    match command {
        TlsCommand::Gen(args) => gen(args, json),
    }
}

fn gen(args: &GenArgs, json: bool) -> Result<ExitCode> {
    let flags = Overrides { data_dir: args.data_dir.clone(), node_id: args.node_id.clone(), ..Overrides::default() };
    let settings = Settings::load(args.config.as_deref(), &flags)?;
    let Some(node_id) = settings.node_id.as_ref().map(|e| e.to_string()) else {
        bail!(
            "which node is this certificate for? Pass --node-id, or --config with a config that sets node_id \
             (`ferry id` on the running node prints its ID)"
        );
    };
    let out = args.out.clone().unwrap_or_else(|| settings.data_dir.join("tls"));
    let cert_path = out.join("cert.pem");
    let key_path = out.join("key.pem");
    if !args.force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                bail!("{} exists; pass --force to replace it", p.display());
            }
        }
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data folder {}", settings.data_dir.display()))?;
    let identity = Identity::load_or_create(&settings.data_dir)?;
    let (cert_pem, key_pem) = node_certificate(&identity, &node_id, args.days)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    if json {
        let v = serde_json::json!({
            "node_id": node_id,
            "cert": cert_path,
            "key": key_path,
            "days": args.days,
        });
        println!("{v}");
    } else {
        println!("certificate  {} (names {node_id}, valid {} days)", cert_path.display(), args.days);
        println!("key          {} (the node key, mode 0600)", key_path.display());
        println!("\nIn ferryd's config, under the TCP plugin's [[cla]]:");
        println!("  [cla.settings.tls]");
        println!("  cert = \"{}\"", cert_path.display());
        println!("  key = \"{}\"", key_path.display());
        println!("  trust = [\"/path/to/peer-cert.pem\"]   # each peer's cert.pem, or their CA's");
        println!("Give {} to the peers: it goes into their `trust`.", cert_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The node's certificate and key, both PEM.
pub fn node_certificate(identity: &Identity, node_id: &str, days: u32) -> Result<(String, String)> {
    let pkcs8 = identity.pkcs8_der();
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8.as_slice()), &PKCS_ED25519)
        .context("the node key cannot sign a certificate")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let san = eid::subject_alt_name(&[node_id]).map_err(|e| anyhow::anyhow!("node ID {node_id}: {e}"))?;
    // id-ce-subjectAltName, 2.5.29.17 (rcgen writes otherNames as
    // UTF8String only, RFC 9174 wants IA5String, so it is built here).
    params.custom_extensions.push(CustomExtension::from_oid_content(&[2, 5, 29, 17], san));
    let cert = params.self_signed(&key_pair).context("cannot sign the certificate")?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_node_and_its_key_is_the_node_key() {
        use rustls_pki_types::pem::PemObject as _;
        let identity = Identity::from_seed(&[7; 32]);
        let (cert_pem, key_pem) = node_certificate(&identity, "dtn://camp/", 30).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        assert_eq!(eid::bundle_eids(&der).unwrap(), ["dtn://camp/"]);
        // The public key in the certificate is the node's.
        let public = identity.public_key();
        assert!(der.windows(32).any(|w| w == public.as_bytes()));
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        assert_eq!(key.secret_der(), identity.pkcs8_der().as_slice());
        // A node ID that is not ASCII cannot be an IA5String.
        assert!(node_certificate(&identity, "dtn://caf\u{e9}/", 30).is_err());
    }
}
