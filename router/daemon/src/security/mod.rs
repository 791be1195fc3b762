//! The node's identity, the keys it trusts, and its BPSec policy.
//!
//! - **Identity**: an Ed25519 key pair, generated on first start into
//!   `<data_dir>/node.key` (the 32-byte secret seed, base64, one line, file
//!   mode 0600). ferryd refuses to start when that file is readable or
//!   writable by group or others, or does not hold a key. The public key is
//!   shown in base64 (standard alphabet, 44 characters) by `ferry id`.
//! - **Trust**: node ID → Ed25519 public key, from `[[trust]]` in the config
//!   and from `ferry trust add` (kept in `<data_dir>/trust.toml`). A node
//!   always trusts its own key.
//! - **Policy** ([`Policy`]), carried out through ferry-core's
//!   [`SecurityPolicy`] hook, so that every bundle this node builds (API and
//!   app sends, status reports, routing information) passes `originate`,
//!   and every bundle for one of its endpoints passes `accept_local`
//!   before it is stored:
//!   - `sign_originated`: a BIB in Ferry's Ed25519 context (−25519) over the
//!     payload, with integrity scope 7 (primary block, payload block header,
//!     BIB header), security source the node ID;
//!   - `encrypt_for`: for a destination node whose key is trusted, the
//!     payload (and the BIB over it, RFC 9172 §3.9) is encrypted with
//!     BCB-AES-GCM (A256GCM, scope 7), one BCB per target, each with a
//!     fresh random content key and IV, wrapped (AES-KW) under a key-
//!     encryption key that only the two nodes can compute (see [`kek`]);
//!   - `require_signature`: a bundle for such an endpoint must carry a BIB
//!     over its payload by its source node that verifies with a trusted key;
//!     otherwise it is deleted (reason 12, "missing security operation");
//!   - at every local endpoint, whatever the policy: a BIB that fails to
//!     verify, or a BCB that does not decrypt, deletes the bundle (reason 15),
//!     and BCBs this node holds the key for are decrypted before storing.
//!
//! # Key agreement
//! Ed25519 keys are converted to X25519 (the secret scalar from the
//! signing key's expanded seed, RFC 8032 §5.1.5; the public point through
//! the birational map to Montgomery form), and the key-encryption key from
//! sender S to receiver R is
//! `SHA-256("ferry-bcb-kek-v1" ‖ X25519(s, R) ‖ pub_S ‖ pub_R)`. It is
//! static-static: a BCB that decrypts came from S (or R), and a third node —
//! a forwarder that trusts S — cannot compute it. No forward secrecy: a
//! stolen node key opens the bundles sent to or from that node.

pub mod api;
pub mod pin;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use ferry_core::bpsec::{self, AesVariant, Confidentiality, Integrity, Key, Keys, NewBlock, Role, Status};
use ferry_core::bundle::{block_types, Bundle};
use ferry_core::codec::DecodeOptions;
use ferry_core::eid::Eid;
use ferry_core::node::{OriginateError, Refusal, SecurityPolicy};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The node key file in the data folder.
pub const KEY_FILE: &str = "node.key";
/// Trusted keys added with `ferry trust add`, in the data folder.
pub const TRUST_FILE: &str = "trust.toml";
/// The integrity scope of Ferry's signatures and encryptions: primary
/// block, target header, security block header (RFC 9173 §3.3.3).
const SCOPE: u64 = 7;
/// Domain separation of the key-encryption key derivation.
const KEK_LABEL: &[u8] = b"ferry-bcb-kek-v1";

/// Why the node's keys or trust list cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The key file could not be read, created or checked.
    #[error("node key file {path}: {source}")]
    KeyIo { path: PathBuf, source: std::io::Error },
    /// The key file may be read by others: the identity may be stolen.
    #[error(
        "node key file {path} has mode {mode:o}: group or others may access it. Run `chmod 600 {path}` if nobody \
         else read it; otherwise move it away so that a new identity is generated (peers that trust the old key \
         must then trust the new one)"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// The key file does not hold a key.
    #[error(
        "node key file {path} is corrupt: {why}. Restore it from a backup, or move it away so that a new identity \
         is generated (peers that trust the old key must then trust the new one)"
    )]
    KeyCorrupt { path: PathBuf, why: &'static str },
    /// The trust file could not be read or written.
    #[error("trust file {path}: {source}")]
    TrustIo { path: PathBuf, source: std::io::Error },
    /// The trust file does not parse.
    #[error("trust file {path}: {why}")]
    TrustCorrupt { path: PathBuf, why: String },
    /// A public key that is not one.
    #[error("`{text}` is not an Ed25519 public key: {why}")]
    BadPublicKey { text: String, why: &'static str },
    /// `ferry trust remove` of a key that comes from the config file.
    #[error("the key of {0} is configured in the config file ([[trust]]); remove it there")]
    Configured(Eid),
}

/// This node's Ed25519 key pair.
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", encode_public_key(&self.key.verifying_key()))
    }
}

impl Identity {
    /// Loads `<data_dir>/node.key`, or creates it (mode 0600) when there is
    /// none. Refuses a file that group or others may access, or that holds no key.
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, SecurityError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| SecurityError::KeyIo { path: path.clone(), source };
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecurityError::KeyPermissions { path, mode });
                }
                let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(io)?);
                let corrupt = |why| SecurityError::KeyCorrupt { path: path.clone(), why };
                let seed = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|_| corrupt("it is not base64"))?,
                );
                let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| corrupt("it does not hold 32 bytes"))?;
                Ok(Identity { key: SigningKey::from_bytes(seed) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(seed.as_mut());
                let text = Zeroizing::new(format!("{}\n", base64::engine::general_purpose::STANDARD.encode(*seed)));
                let mut f =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
                f.write_all(text.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), public_key = %encode_public_key(&SigningKey::from_bytes(&seed).verifying_key()), "generated the node's Ed25519 identity");
                Ok(Identity { key: SigningKey::from_bytes(&seed) })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// An identity from a seed (tests).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity { key: SigningKey::from_bytes(seed) }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key as PKCS#8 v1 DER (RFC 8410): what TLS libraries load, e.g.
    /// for the node's TLS certificate (`ferry tls gen`).
    pub fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
        // OCTET STRING (the 32-byte seed) } }
        const PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let mut der = Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&PREFIX);
        der.extend_from_slice(self.key.as_bytes());
        der
    }
}

/// A public key as `ferry id` shows it and `ferry trust add` takes it.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// Parses a public key: base64 (44 characters, as `ferry id` prints) or hex
/// (64 digits).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, SecurityError> {
    let t = text.trim();
    let bad = |why| SecurityError::BadPublicKey { text: t.to_owned(), why };
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad("bad hex"))?
    } else {
        base64::engine::general_purpose::STANDARD.decode(t).map_err(|_| bad("neither base64 nor 64 hex digits"))?
    };
    let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad("not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a point on the curve"))?;
    if key.is_weak() {
        return Err(bad("a weak (small-order) key"));
    }
    Ok(key)
}

/// The key-encryption key for BCBs from `sender` to `receiver`, computed by
/// either side (see the module docs): `own` is the caller's key pair and
/// `peer` the other node's public key.
pub fn kek(own: &SigningKey, peer: &VerifyingKey, own_is_sender: bool) -> Zeroizing<[u8; 32]> {
    let shared = Zeroizing::new(peer.to_montgomery().mul_clamped(own.to_scalar_bytes()).to_bytes());
    let own_pub = own.verifying_key();
    let (s, r) = if own_is_sender { (own_pub, *peer) } else { (*peer, own_pub) };
    let mut h = Sha256::new();
    h.update(KEK_LABEL);
    h.update(shared.as_slice());
    h.update(s.as_bytes());
    h.update(r.as_bytes());
    Zeroizing::new(h.finalize().into())
}

/// An endpoint `require_signature` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointRule {
    /// Every endpoint of this node (`"*"`).
    All,
    /// A service on this node (`"secure"` → `dtn://<node>/secure`).
    Service(String),
    /// A full endpoint ID.
    Eid(Eid),
}

impl EndpointRule {
    pub fn parse(text: &str) -> Result<EndpointRule, String> {
        let t = text.trim();
        if t == "*" {
            Ok(EndpointRule::All)
        } else if t.contains(':') {
            t.parse().map(EndpointRule::Eid).map_err(|e| format!("`{t}` is not an endpoint ID: {e}"))
        } else if !t.is_empty() {
            Ok(EndpointRule::Service(t.to_owned()))
        } else {
            Err("an empty endpoint".to_owned())
        }
    }

    fn matches(&self, node: &Eid, endpoint: &Eid) -> bool {
        match self {
            EndpointRule::All => endpoint.is_on_node(node),
            EndpointRule::Service(s) => node.with_service(s).is_ok_and(|e| &e == endpoint),
            EndpointRule::Eid(e) => e == endpoint,
        }
    }
}

/// What the config says (`[security]` and `[[trust]]`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub sign_originated: bool,
    pub require_signature: Vec<EndpointRule>,
    /// Destination node IDs whose payloads are encrypted.
    pub encrypt_for: Vec<Eid>,
    /// `[[trust]]` entries.
    pub trust: Vec<(Eid, VerifyingKey)>,
}

/// One trusted key, as `ferry trust list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustEntry {
    pub node: String,
    pub key: String,
    /// `config`, `added` (ferry trust add) or `self`.
    #[serde(default)]
    pub from: String,
}

/// The trust file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    #[serde(default)]
    trust: Vec<TrustFileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFileEntry {
    node: String,
    key: String,
}

/// Trusted keys and what is derived from them.
struct Trust {
    configured: BTreeMap<Eid, VerifyingKey>,
    added: BTreeMap<Eid, VerifyingKey>,
    /// For `bpsec::process`: every trusted node's Ed25519 key and the KEK of
    /// BCBs it sends here.
    keys: Keys,
}

/// The node's security state, shared by the node's policy hook and the API.
pub struct Security {
    node_id: Eid,
    identity: Identity,
    policy: Policy,
    decode: DecodeOptions,
    trust_file: PathBuf,
    trust: RwLock<Trust>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").field("node_id", &self.node_id).field("identity", &self.identity).finish()
    }
}

impl Security {
    /// The security state of node `node_id` with `identity`; trusted keys
    /// from the config and from `<data_dir>/trust.toml`. `decode` are the
    /// options the node decodes received bundles with.
    pub fn new(
        node_id: Eid,
        identity: Identity,
        policy: Policy,
        data_dir: &Path,
        decode: DecodeOptions,
    ) -> Result<Security, SecurityError> {
        let trust_file = data_dir.join(TRUST_FILE);
        let added = read_trust_file(&trust_file)?;
        let configured: BTreeMap<Eid, VerifyingKey> = policy.trust.iter().cloned().collect();
        let s = Security {
            node_id,
            identity,
            policy,
            decode,
            trust_file,
            trust: RwLock::new(Trust { configured, added, keys: Keys::new() }),
        };
        s.rebuild_keys();
        for dest in &s.policy.encrypt_for {
            if s.key_of(dest).is_none() {
                tracing::warn!(node = %dest, "encrypt_for names a node whose key is not trusted: bundles for it cannot be sent until `ferry trust add` gives its key");
            }
        }
        Ok(s)
    }

    pub fn node_id(&self) -> &Eid {
        &self.node_id
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.identity.public_key()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Trust> {
        self.trust.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Trust> {
        self.trust.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The trusted key of `node` (its own for this node).
    pub fn key_of(&self, node: &Eid) -> Option<VerifyingKey> {
        if node == &self.node_id {
            return Some(self.public_key());
        }
        let t = self.read();
        t.configured.get(node).or_else(|| t.added.get(node)).copied()
    }

    fn rebuild_keys(&self) {
        let mut t = self.write();
        let own = &self.identity.key;
        let mut keys = Keys::new().with_ed25519(self.node_id.clone(), own.verifying_key());
        let mut seen = std::collections::HashSet::new();
        // Config entries win over added ones for the same node.
        for (node, key) in t.configured.iter().chain(t.added.iter()) {
            if node == &self.node_id || !seen.insert(node.clone()) {
                continue;
            }
            keys = keys.with_ed25519(node.clone(), *key).with_aes(node.clone(), kek(own, key, false).as_slice());
        }
        t.keys = keys;
    }

    /// Every trusted key.
    pub fn trust_list(&self) -> Vec<TrustEntry> {
        let t = self.read();
        let mut out = vec![TrustEntry {
            node: self.node_id.to_string(),
            key: encode_public_key(&self.public_key()),
            from: "self".into(),
        }];
        for (node, key) in &t.configured {
            out.push(TrustEntry { node: node.to_string(), key: encode_public_key(key), from: "config".into() });
        }
        for (node, key) in &t.added {
            if !t.configured.contains_key(node) {
                out.push(TrustEntry { node: node.to_string(), key: encode_public_key(key), from: "added".into() });
            }
        }
        out
    }

    /// Trusts `key` for `node` (replacing an added key), kept in the trust
    /// file before this returns. True if the node had no added key.
    pub fn trust_add(&self, node: Eid, key: VerifyingKey) -> Result<bool, SecurityError> {
        let new = {
            let mut t = self.write();
            let mut added = t.added.clone();
            let new = added.insert(node.clone(), key).is_none();
            write_trust_file(&self.trust_file, &added)?;
            t.added = added;
            new
        };
        self.rebuild_keys();
        tracing::info!(%node, key = %encode_public_key(&key), "trusting a node's key");
        Ok(new)
    }

    /// Stops trusting the added key of `node`. False if there was none.
    pub fn trust_remove(&self, node: &Eid) -> Result<bool, SecurityError> {
        let was = {
            let mut t = self.write();
            if !t.added.contains_key(node) {
                if t.configured.contains_key(node) {
                    return Err(SecurityError::Configured(node.clone()));
                }
                return Ok(false);
            }
            let mut added = t.added.clone();
            added.remove(node);
            write_trust_file(&self.trust_file, &added)?;
            t.added = added;
            true
        };
        self.rebuild_keys();
        tracing::info!(%node, "no longer trusting a node's key");
        Ok(was)
    }

    fn requires_signature(&self, endpoint: &Eid) -> bool {
        self.policy.require_signature.iter().any(|r| r.matches(&self.node_id, endpoint))
    }

    fn originate(&self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, OriginateError> {
        let dest = bundle.primary.destination.node_id();
        let encrypt = self.policy.encrypt_for.contains(&dest) && dest != self.node_id;
        if !self.policy.sign_originated && !encrypt {
            return Ok(None);
        }
        let decode = |b: &[u8]| ferry_core::node::decode_stored(b).map_err(bpsec::BpsecError::from);
        let mut cur = bytes.to_vec();
        let mut parsed = bundle.clone();
        let mut bib = None;
        if self.policy.sign_originated {
            let ctx = Integrity::Ed25519 { scope: SCOPE, key: &self.identity.key };
            cur = bpsec::sign(&cur, &parsed, &[1], &self.node_id, &ctx, &NewBlock::default())?;
            parsed = decode(&cur)?;
            bib = parsed.blocks.iter().filter(|b| b.block_type == block_types::BIB).map(|b| b.number).max();
        }
        if encrypt {
            let peer = self.key_of(&dest).ok_or_else(|| OriginateError::NoKeyFor(dest.clone()))?;
            let kek = kek(&self.identity.key, &peer, true);
            // RFC 9172 §3.9: the BIB over an encrypted target is encrypted
            // too. One BCB per target, each with its own content key and IV:
            // one IV over two targets under one key would reuse the GCM
            // keystream.
            for target in bib.into_iter().chain([1]) {
                let mut cek = Zeroizing::new([0u8; 32]);
                let mut iv = [0u8; 12];
                rand::rngs::OsRng.fill_bytes(cek.as_mut());
                rand::rngs::OsRng.fill_bytes(&mut iv);
                let ctx = Confidentiality {
                    variant: AesVariant::A256Gcm,
                    scope: SCOPE,
                    iv: &iv,
                    key: Key::Wrapped { kek: kek.as_slice(), cek: cek.as_slice() },
                };
                cur = bpsec::encrypt(&cur, &parsed, &[target], &self.node_id, &ctx, &NewBlock::default())?;
                parsed = decode(&cur)?;
            }
        }
        Ok(Some(cur))
    }

    fn accept_local(&self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, Refusal> {
        let id = bundle.id();
        let endpoint = &bundle.primary.destination;
        let refuse = |r: Refusal| {
            tracing::warn!(bundle = %id, %endpoint, reason = r.reason().code(), "deleting bundle: {r}");
            r
        };
        let secured = bundle.blocks.iter().any(|b| matches!(b.block_type, block_types::BIB | block_types::BCB));
        let required = self.requires_signature(endpoint);
        if !secured && !required {
            return Ok(None);
        }
        let processed = {
            let t = self.read();
            bpsec::process(bytes, bundle, Role::Destination, &t.keys, &self.decode)
        }
        .map_err(|e| refuse(Refusal::Failed(e)))?;
        if processed.delete_bundle {
            return Err(refuse(Refusal::Unprocessable));
        }
        if required {
            let source_node = bundle.primary.source.node_id();
            let signed = processed.outcomes.iter().any(|o| {
                o.status == Status::Verified
                    && o.target == Some(1)
                    && o.context_id == Some(bpsec::ED25519_CONTEXT_ID)
                    && o.source.as_ref().map(Eid::node_id).as_ref() == Some(&source_node)
            });
            if !signed {
                let signer = processed.outcomes.iter().filter(|o| o.target == Some(1)).find_map(|o| o.source.clone());
                return Err(refuse(Refusal::MissingSignature { endpoint: endpoint.clone(), source_node, signer }));
            }
        }
        if processed.decrypted.is_some() {
            tracing::debug!(bundle = %id, "decrypted for this node");
        }
        Ok(processed.decrypted.map(|(b, _)| b))
    }

    /// The hook to put in `NodeConfig::security`.
    pub fn node_policy(self: &Arc<Self>) -> Box<dyn SecurityPolicy> {
        Box::new(NodePolicy(Arc::clone(self)))
    }
}

/// [`Security`] as the node's [`SecurityPolicy`].
struct NodePolicy(Arc<Security>);

impl SecurityPolicy for NodePolicy {
    fn originate(&mut self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, OriginateError> {
        self.0.originate(bytes, bundle)
    }

    fn accept_local(&mut self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, Refusal> {
        self.0.accept_local(bytes, bundle)
    }
}

fn read_trust_file(path: &Path) -> Result<BTreeMap<Eid, VerifyingKey>, SecurityError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(SecurityError::TrustIo { path: path.to_owned(), source }),
    };
    let corrupt = |why: String| SecurityError::TrustCorrupt { path: path.to_owned(), why };
    let file: TrustFile = toml::from_str(&text).map_err(|e| corrupt(e.message().to_owned()))?;
    let mut out = BTreeMap::new();
    for e in file.trust {
        let node = parse_trusted_node(&e.node).map_err(corrupt)?;
        let key = parse_public_key(&e.key).map_err(|e| corrupt(e.to_string()))?;
        out.insert(node, key);
    }
    Ok(out)
}

/// Writes the trust file whole: a temporary file, synced, renamed over it.
fn write_trust_file(path: &Path, added: &BTreeMap<Eid, VerifyingKey>) -> Result<(), SecurityError> {
    let io = |source| SecurityError::TrustIo { path: path.to_owned(), source };
    let file = TrustFile {
        trust: added.iter().map(|(n, k)| TrustFileEntry { node: n.to_string(), key: encode_public_key(k) }).collect(),
    };
    let text = toml::to_string(&file)
        .map_err(|e| SecurityError::TrustCorrupt { path: path.to_owned(), why: e.to_string() })?;
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(b"# Keys trusted with `ferry trust add`; see also [[trust]] in the config.\n").map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// A trusted node: a node ID (`dtn://name/`, `ipn:N.0`).
pub fn parse_trusted_node(text: &str) -> Result<Eid, String> {
    let eid: Eid = text.trim().parse().map_err(|e| format!("`{text}` is not a node ID: {e}"))?;
    if !eid.is_node_id() {
        return Err(format!("`{text}` is not a node ID (dtn://name/ or ipn:N.0)"));
    }
    Ok(eid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::bundle::CreationTimestamp;
    use ferry_core::codec::{self, BundleBuilder};

    fn eid(s: &str) -> Eid {
        s.parse().unwrap()
    }

    fn node(dir: &Path, name: &str, seed: u8, policy: Policy) -> Security {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        Security::new(
            eid(&format!("dtn://{name}/")),
            Identity::from_seed(&[seed; 32]),
            policy,
            &d,
            DecodeOptions::strict(),
        )
        .unwrap()
    }

    fn bundle(src: &str, dst: &str, payload: &[u8]) -> (Vec<u8>, Bundle) {
        let bytes = BundleBuilder::new(eid(src), eid(dst), CreationTimestamp { time: 800_000_000_000, seq: 0 }, 60_000)
            .build(payload);
        let b = codec::decode(&bytes).unwrap();
        (bytes, b)
    }

    #[test]
    fn the_key_file_is_created_private_and_refused_when_exposed_or_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key(), again.public_key(), "the same identity after a restart");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(!e.contains(secret.trim()), "the error never shows the key");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        let e = Identity::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("32 bytes"), "{e}");
        std::fs::write(&path, "not base64!\n").unwrap();
        assert!(Identity::load_or_create(dir.path()).unwrap_err().to_string().contains("not base64"));
    }

    #[test]
    fn public_keys_parse_as_base64_or_hex_and_junk_is_refused() {
        let k = Identity::from_seed(&[9; 32]).public_key();
        let b64 = encode_public_key(&k);
        assert_eq!(b64.len(), 44);
        assert_eq!(parse_public_key(&b64).unwrap(), k);
        let hex: String = k.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_public_key(&hex).unwrap(), k);
        for bad in ["", "abc", "AAAA", &b64[..40]] {
            assert!(parse_public_key(bad).is_err(), "{bad}");
        }
        // The identity point (a small-order key) is refused.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert!(parse_public_key(&base64::engine::general_purpose::STANDARD.encode(weak)).is_err());
    }

    #[test]
    fn both_ends_derive_the_same_kek_and_a_third_node_cannot() {
        let (a, c, b) = ([1u8; 32], [3u8; 32], [2u8; 32]);
        let (ka, kc, kb) = (SigningKey::from_bytes(&a), SigningKey::from_bytes(&c), SigningKey::from_bytes(&b));
        let at_a = kek(&ka, &kc.verifying_key(), true);
        let at_c = kek(&kc, &ka.verifying_key(), false);
        assert_eq!(*at_a, *at_c);
        assert_ne!(*at_a, *kek(&kc, &ka.verifying_key(), true), "each direction has its own key");
        assert_ne!(*at_a, *kek(&kb, &ka.verifying_key(), false), "b, who knows a's public key, gets another");
    }

    #[test]
    fn trust_add_persists_and_remove_refuses_configured_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ka = Identity::from_seed(&[1; 32]).public_key();
        let kb = Identity::from_seed(&[2; 32]).public_key();
        let policy = Policy { trust: vec![(eid("dtn://b/"), kb)], ..Policy::default() };
        let c = node(dir.path(), "c", 3, policy.clone());
        assert!(c.trust_add(eid("dtn://a/"), ka).unwrap());
        assert_eq!(c.key_of(&eid("dtn://a/")), Some(ka));
        assert!(matches!(c.trust_remove(&eid("dtn://b/")), Err(SecurityError::Configured(_))));
        drop(c);
        let c = node(dir.path(), "c", 3, policy);
        assert_eq!(c.key_of(&eid("dtn://a/")), Some(ka), "kept across a restart");
        let list = c.trust_list();
        assert_eq!(list.iter().map(|e| e.from.as_str()).collect::<Vec<_>>(), ["self", "config", "added"]);
        assert!(c.trust_remove(&eid("dtn://a/")).unwrap());
        assert!(!c.trust_remove(&eid("dtn://a/")).unwrap());
        assert_eq!(c.key_of(&eid("dtn://a/")), None);
    }

    #[test]
    fn signed_and_encrypted_for_c_is_read_by_c_only() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb, pc) = (
            Identity::from_seed(&[1; 32]).public_key(),
            Identity::from_seed(&[2; 32]).public_key(),
            Identity::from_seed(&[3; 32]).public_key(),
        );
        let a = node(
            dir.path(),
            "a",
            1,
            Policy {
                sign_originated: true,
                encrypt_for: vec![eid("dtn://c/")],
                trust: vec![(eid("dtn://c/"), pc)],
                ..Policy::default()
            },
        );
        let require = vec![EndpointRule::Service("in".into())];
        let c = node(
            dir.path(),
            "c",
            3,
            Policy { require_signature: require.clone(), trust: vec![(eid("dtn://a/"), pa)], ..Policy::default() },
        );
        // b trusts a, and c, and still cannot read what a sent c.
        let b = node(
            dir.path(),
            "b",
            2,
            Policy { trust: vec![(eid("dtn://a/"), pa), (eid("dtn://c/"), pc)], ..Policy::default() },
        );
        let _ = pb;
        let secret = b"meet at the north gate";
        let (plain, parsed) = bundle("dtn://a/", "dtn://c/in", secret);
        let sent = a.originate(&plain, &parsed).unwrap().unwrap();
        assert!(!sent.windows(secret.len()).any(|w| w == secret), "ciphertext on the way");
        let on_the_way = codec::decode(&sent).unwrap();
        let bcbs = on_the_way.blocks.iter().filter(|b| b.block_type == block_types::BCB).count();
        assert_eq!(bcbs, 2, "one BCB for the payload, one for its BIB");

        let got = c.accept_local(&sent, &on_the_way).unwrap().expect("decrypted at c");
        let got_b = codec::decode(&got).unwrap();
        assert_eq!(&got[got_b.payload().data.clone()], secret);

        // b, which trusts a and holds the key for what a sends b, cannot
        // unwrap what a sent c (were b to judge it as its destination).
        let at_b = b.accept_local(&sent, &on_the_way);
        assert!(matches!(at_b, Err(Refusal::Failed(bpsec::BpsecError::KeyUnwrap { .. }))), "{at_b:?}");

        // The plaintext bundle, unsigned, is refused at c's `in` (reason 12).
        let e = c.accept_local(&plain, &parsed).unwrap_err();
        assert_eq!(e.reason(), ferry_core::admin::ReasonCode::MissingSecurityOperation);
        // A node with no trust in a: signed but untrusted, also reason 12.
        let c2 = node(dir.path(), "c2", 3, Policy { require_signature: require, ..Policy::default() });
        let signed_only = node(dir.path(), "a2", 1, Policy { sign_originated: true, ..Policy::default() });
        let (plain, parsed) = bundle("dtn://a2/", "dtn://c2/in", b"x");
        let s = signed_only.originate(&plain, &parsed).unwrap().unwrap();
        let e = c2.accept_local(&s, &codec::decode(&s).unwrap()).unwrap_err();
        assert!(matches!(e, Refusal::MissingSignature { signer: Some(_), .. }), "{e}");
    }

    #[test]
    fn encrypting_for_an_untrusted_node_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let a = node(dir.path(), "a", 1, Policy { encrypt_for: vec![eid("dtn://c/")], ..Policy::default() });
        let (plain, parsed) = bundle("dtn://a/", "dtn://c/in", b"x");
        assert!(matches!(a.originate(&plain, &parsed), Err(OriginateError::NoKeyFor(_))));
        // Other destinations are left alone.
        let (plain, parsed) = bundle("dtn://a/", "dtn://d/in", b"x");
        assert_eq!(a.originate(&plain, &parsed).unwrap(), None);
    }
}
