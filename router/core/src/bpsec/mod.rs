//! Bundle Protocol Security (RFC 9172): Block Integrity Blocks (type 11) and
//! Block Confidentiality Blocks (type 12), with the default security contexts
//! of RFC 9173 and an Ed25519 signature context of Ferry's own.
//!
//! Like the rest of ferry-core this does no I/O and reads no clock or random
//! source: keys, initialization vectors and content keys come in as
//! arguments; bundle bytes come in and go out.
//!
//! # Layout
//! - [`asb`]: the Abstract Security Block (§3.6), the data of every BIB and BCB.
//! - [`rfc9173`]: BIB-HMAC-SHA2 (context 1) and BCB-AES-GCM (context 2), with
//!   AES key wrap of the content key.
//! - `scope`: the IPPT and AAD those contexts (and Ed25519) cover.
//! - this module: the operations on a bundle and the processing rules.
//!
//! # Operations
//! Every operation takes the bundle's bytes and what
//! [`decode`](crate::codec::decode) (or [`decode_with`](crate::codec::decode_with))
//! made of them, and works on block numbers (0 is the primary block):
//! - [`sign`] adds a BIB over the targets, with [`Integrity::HmacSha2`] or
//!   [`Integrity::Ed25519`];
//! - [`encrypt`] adds a BCB with BCB-AES-GCM and replaces each target's data
//!   by its ciphertext (same length; the tag is a security result);
//! - [`verify`] checks every BIB operation it has a key for;
//! - [`decrypt`] undoes every BCB it has a key for and removes it;
//! - [`process`] applies the rules below for a forwarding node or the
//!   bundle's destination.
//!
//! The new security block goes where [`NewBlock`] says: a number (default
//! one above the highest in use), flags, CRC type and [`Placement`] (default
//! right after the primary block).
//!
//! # The Ed25519 context (private, ID −25519)
//! End-to-end source authentication without a shared secret: the source
//! signs with its node key and anyone holding its public key verifies.
//! RFC 9172 §11.3 leaves negative security context IDs to private and
//! experimental use; Ferry uses [`ED25519_CONTEXT_ID`] = −25519 (after
//! Curve25519). It is a BIB context:
//! - parameters: `[1, integrity scope flags]` (uint; the flags of RFC 9173
//!   §3.3.3: bit 0 primary block, bit 1 target header, bit 2 security header;
//!   always sent; 7 if absent);
//! - results, per target: `[1, signature]`, the 64-byte Ed25519 signature
//!   (RFC 8032, pure Ed25519) of the target's IPPT;
//! - the IPPT is exactly BIB-HMAC-SHA2's (RFC 9173 §3.7): the scope flags,
//!   then as the flags say the primary block, the target's type, number and
//!   flags, and the BIB's type, number and flags, then the target's data as
//!   a CBOR byte string;
//! - the verifier looks the public key up by the security source EID
//!   ([`KeyLookup::ed25519_key`]); nothing in the block names a key.
//!   Verification is `verify_strict` (no small-order keys, canonical `S`).
//!
//! # Processing rules (RFC 9172 §5)
//! - A node that holds no key for a security block, or is not where it is
//!   to be processed, leaves it alone: the block and its targets are copied
//!   byte for byte on forwarding ([`rewrite_for_forward`] re-encodes only the
//!   previous node, bundle age, hop count and copy count blocks, which a BIB
//!   should not target, RFC 9172 §3.9).
//! - A security block whose context this node does not know is a block it
//!   "cannot process": its block processing control flags decide
//!   ([`if_unprocessable`]), as for any unknown block (RFC 9171 §4.2.4).
//! - At the destination, BCBs are decrypted and removed (security acceptor,
//!   §5.1.1); a BCB the destination has no key for cannot be processed and
//!   its flags decide.
//! - BIBs are verified wherever keys are at hand. A failed check (altered
//!   target, wrong key, wrong signer) is an error: RFC 9172 §5.1.2 has the
//!   bundle deleted (status report reason 15, "failed security operation").
//!   Whether an unsigned or unverifiable bundle is acceptable is policy, and
//!   not decided here: [`Outcome`]s say what was checked.
//!
//! [`rewrite_for_forward`]: crate::codec::rewrite_for_forward

pub mod asb;
pub mod rfc9173;
mod scope;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

pub use asb::{Asb, AsbError, SecurityItem};
pub use rfc9173::{AesVariant, ShaVariant, BCB_AES_GCM, BIB_HMAC_SHA2};
pub use scope::scope_flags;

use crate::bundle::{block_flags, block_types, Bundle, CanonicalBlock, CrcType};
use crate::cbor;
use crate::codec::{self, encode_canonical_block, DecodeError, DecodeOptions};
use crate::eid::Eid;
use scope::BlockHeader;

/// Ferry's private security context for Ed25519 signatures in a BIB.
pub const ED25519_CONTEXT_ID: i64 = -25519;
/// The Ed25519 context's parameter ID of the integrity scope flags.
pub const ED25519_SCOPE_PARAM: u64 = 1;
/// The Ed25519 context's result ID of the signature.
pub const ED25519_SIGNATURE_RESULT: u64 = 1;

/// Why a security operation could not be carried out, or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BpsecError {
    /// A security block's data is not an abstract security block.
    #[error("security block {block}: {error}")]
    Asb { block: u64, error: AsbError },
    /// A block number that the bundle does not have (0 is the primary block).
    #[error("block {number} is not in the bundle")]
    NoSuchBlock { number: u64 },
    /// A security block names a target the bundle does not have.
    #[error("security block {block} targets block {target}, which the bundle does not have")]
    MissingTarget { block: u64, target: u64 },
    /// The number asked for a new block is taken, or is 0 or 1.
    #[error("block number {number} cannot be used for a new block")]
    BlockNumberUnavailable { number: u64 },
    /// An operation without targets.
    #[error("a security operation needs at least one target")]
    NoTargets,
    /// A target given twice.
    #[error("target {target} is given twice")]
    DuplicateTarget { target: u64 },
    /// A target that is itself a BIB or BCB where that is not allowed
    /// (RFC 9172 §3.9: a BIB targets no security block, a BCB no BCB).
    #[error("block {target} is a security block and cannot be this operation's target")]
    TargetIsSecurityBlock { target: u64 },
    /// RFC 9172 §3.8: a BCB never targets the primary block.
    #[error("the primary block cannot be encrypted")]
    PrimaryNotEncryptable,
    /// The target already has an integrity operation (RFC 9172 §3.2: one per
    /// service and target).
    #[error("block {target} is already signed by BIB {bib}")]
    AlreadySigned { target: u64, bib: u64 },
    /// The target is already encrypted (by BCB `bcb`).
    #[error("block {target} is already encrypted by BCB {bcb}")]
    AlreadyEncrypted { target: u64, bcb: u64 },
    /// RFC 9172 §3.9: a BCB over a signed block must also encrypt the BIB,
    /// or the signature would leak what the ciphertext hides.
    #[error("block {target} is signed by BIB {bib}, which must be encrypted with it")]
    BibNotEncrypted { target: u64, bib: u64 },
    /// A key (or key-encryption key) of the wrong length.
    #[error("key of {len} bytes has the wrong length")]
    KeyLength { len: usize },
    /// An initialization vector other than 12 bytes.
    #[error("IV of {len} bytes (BCB-AES-GCM uses 12)")]
    IvLength { len: usize },
    /// A target too large for AES-GCM.
    #[error("target too large for AES-GCM")]
    TooLarge,
    /// A parameter with a value the context does not define.
    #[error("security block {block}: parameter {id} has an unsupported value")]
    Parameter { block: u64, id: u64 },
    /// A parameter the context requires is absent.
    #[error("security block {block}: parameter {id} is missing")]
    MissingParameter { block: u64, id: u64 },
    /// The result for a target is absent or not a byte string.
    #[error("security block {block}: no valid result for target {target}")]
    MissingResult { block: u64, target: u64 },
    /// The wrapped key did not unwrap (RFC 3394 integrity check): a wrong
    /// key-encryption key, or a damaged key.
    #[error("security block {block}: the wrapped key does not unwrap with this key")]
    KeyUnwrap { block: u64 },
    /// A BIB's check failed: the target (or what the scope covers) differs
    /// from what the source signed, or the key is not the source's.
    #[error("integrity check of block {target} by BIB {bib} from {security_source} failed")]
    IntegrityCheckFailed { bib: u64, target: u64, security_source: Eid },
    /// A BCB's target did not authenticate: altered ciphertext, AAD or tag,
    /// or the wrong key.
    #[error("decryption of block {target} by BCB {bcb} from {security_source} failed")]
    DecryptionFailed { bcb: u64, target: u64, security_source: Eid },
    /// The bundle produced by decryption does not decode.
    #[error("decrypted bundle: {0}")]
    Decode(#[from] DecodeError),
}

impl BpsecError {
    /// The status report reason code for a bundle deleted for this error:
    /// RFC 9172 §11.2 adds 12–16 to RFC 9171's table (15 "failed security
    /// operation", 16 "conflicting security operation"); a malformed
    /// security block is 8, "block unintelligible".
    pub fn reason_code(&self) -> u64 {
        match self {
            BpsecError::Asb { .. } | BpsecError::Decode(_) => 8,
            BpsecError::AlreadySigned { .. }
            | BpsecError::AlreadyEncrypted { .. }
            | BpsecError::BibNotEncrypted { .. }
            | BpsecError::DuplicateTarget { .. }
            | BpsecError::TargetIsSecurityBlock { .. } => 16,
            _ => 15,
        }
    }
}

/// Key material for a keyed operation. With `Wrapped`, the operation uses
/// `cek` and carries it wrapped under `kek` with AES-KW (RFC 3394; `kek` of
/// 16, 24 or 32 bytes), so receivers need only the long-term `kek`
/// (RFC 9173 §3.3.2, §4.3.3). The caller draws `cek` from a CSPRNG for every
/// operation.
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Direct(&'a [u8]),
    Wrapped { kek: &'a [u8], cek: &'a [u8] },
}

impl std::fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Key::Direct(_) => "Key::Direct(..)",
            Key::Wrapped { .. } => "Key::Wrapped(..)",
        })
    }
}

/// The context of a new BIB.
#[derive(Debug, Clone, Copy)]
pub enum Integrity<'a> {
    /// BIB-HMAC-SHA2 (RFC 9173 §3).
    HmacSha2 { variant: ShaVariant, scope: u64, key: Key<'a> },
    /// Ferry's Ed25519 context ([`ED25519_CONTEXT_ID`]).
    Ed25519 { scope: u64, key: &'a SigningKey },
}

/// The context of a new BCB: BCB-AES-GCM (RFC 9173 §4).
#[derive(Debug, Clone, Copy)]
pub struct Confidentiality<'a> {
    pub variant: AesVariant,
    pub scope: u64,
    /// 12 bytes, never used twice with the same key (RFC 9173 §4.3.1). With
    /// several targets, one IV serves them all, as RFC 9173 defines (and its
    /// example A.4 does); prefer one BCB per target with a key of its own.
    pub iv: &'a [u8],
    pub key: Key<'a>,
}

/// Where a new security block goes among the canonical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Right after the primary block.
    #[default]
    AfterPrimary,
    /// Right before the block with this number.
    Before(u64),
}

/// The new security block's number, flags, CRC type and place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewBlock {
    /// `None`: one above the highest block number in use.
    pub number: Option<u64>,
    /// Block processing control flags. A BCB over the payload always gets
    /// "replicate in every fragment" (RFC 9172 §3.8).
    pub flags: u64,
    pub crc_type: CrcType,
    pub placement: Placement,
}

impl Default for NewBlock {
    /// Next free number, no flags, CRC-32C (as every block Ferry builds),
    /// right after the primary block.
    fn default() -> Self {
        NewBlock { number: None, flags: 0, crc_type: CrcType::Crc32c, placement: Placement::AfterPrimary }
    }
}

/// Keys a node holds, looked up by security source EID (an exact match).
/// Every method defaults to "no key".
pub trait KeyLookup {
    /// The BIB-HMAC-SHA2 key shared with `source`: the HMAC key, or the
    /// key-encryption key when the BIB carries a wrapped key.
    fn hmac_key(&self, _source: &Eid) -> Option<&[u8]> {
        None
    }
    /// The BCB-AES-GCM key shared with `source`: the content key, or the
    /// key-encryption key when the BCB carries a wrapped key.
    fn aes_key(&self, _source: &Eid) -> Option<&[u8]> {
        None
    }
    /// The Ed25519 public key of `source`.
    fn ed25519_key(&self, _source: &Eid) -> Option<VerifyingKey> {
        None
    }
}

/// A simple [`KeyLookup`]: lists of keys by source EID.
#[derive(Clone, Default)]
pub struct Keys {
    hmac: Vec<(Eid, Zeroizing<Vec<u8>>)>,
    aes: Vec<(Eid, Zeroizing<Vec<u8>>)>,
    ed25519: Vec<(Eid, VerifyingKey)>,
}

impl Keys {
    pub fn new() -> Keys {
        Keys::default()
    }

    pub fn with_hmac(mut self, source: Eid, key: &[u8]) -> Keys {
        self.hmac.push((source, Zeroizing::new(key.to_vec())));
        self
    }

    pub fn with_aes(mut self, source: Eid, key: &[u8]) -> Keys {
        self.aes.push((source, Zeroizing::new(key.to_vec())));
        self
    }

    pub fn with_ed25519(mut self, source: Eid, key: VerifyingKey) -> Keys {
        self.ed25519.push((source, key));
        self
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[(Eid, Zeroizing<Vec<u8>>)]| v.iter().map(|(e, _)| e.to_string()).collect::<Vec<_>>();
        f.debug_struct("Keys")
            .field("hmac", &names(&self.hmac))
            .field("aes", &names(&self.aes))
            .field("ed25519", &self.ed25519.iter().map(|(e, _)| e.to_string()).collect::<Vec<_>>())
            .finish()
    }
}

impl KeyLookup for Keys {
    fn hmac_key(&self, source: &Eid) -> Option<&[u8]> {
        self.hmac.iter().find(|(e, _)| e == source).map(|(_, k)| k.as_slice())
    }
    fn aes_key(&self, source: &Eid) -> Option<&[u8]> {
        self.aes.iter().find(|(e, _)| e == source).map(|(_, k)| k.as_slice())
    }
    fn ed25519_key(&self, source: &Eid) -> Option<VerifyingKey> {
        self.ed25519.iter().find(|(e, _)| e == source).map(|(_, k)| *k)
    }
}

/// What became of one security operation (one target of one security block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The security block's number.
    pub block: u64,
    /// The target's block number; `None` when the security block is itself
    /// encrypted, so its targets cannot be read.
    pub target: Option<u64>,
    /// The security source; `None` when the block is encrypted.
    pub source: Option<Eid>,
    pub context_id: Option<i64>,
    pub status: Status,
}

/// See [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The BIB's check passed.
    Verified,
    /// The BCB's target was decrypted.
    Decrypted,
    /// This node holds no key for the source.
    NoKey,
    /// The security context is not one this node knows.
    UnknownContext,
    /// The target (or the BIB itself) is encrypted: it can be verified only
    /// after decryption.
    Encrypted,
}

/// What to do with a block this node cannot process, from its block
/// processing control flags (RFC 9171 §4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unprocessable {
    /// Forward it unchanged.
    Keep,
    /// Remove the block, keep the bundle.
    DiscardBlock,
    /// Delete the bundle (reason 11, "block unsupported").
    DeleteBundle,
}

/// The block processing control flags' verdict on a block that cannot be
/// processed; "delete bundle" wins over "discard block". (Whether to send a
/// status report is the flag [`block_flags::REPORT_IF_UNPROCESSABLE`].)
pub fn if_unprocessable(flags: u64) -> Unprocessable {
    if flags & block_flags::DELETE_BUNDLE_IF_UNPROCESSABLE != 0 {
        Unprocessable::DeleteBundle
    } else if flags & block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE != 0 {
        Unprocessable::DiscardBlock
    } else {
        Unprocessable::Keep
    }
}

/// A security block of the bundle, its ASB decoded unless it is encrypted.
struct SecurityBlock<'b> {
    block: &'b CanonicalBlock,
    asb: Option<Asb>,
}

/// Every BIB and BCB. BCBs first decide which blocks are encrypted; a BIB
/// that is a BCB target is left undecoded (its data is ciphertext).
fn security_blocks<'b>(bytes: &[u8], bundle: &'b Bundle) -> Result<Vec<SecurityBlock<'b>>, BpsecError> {
    let mut out = Vec::new();
    let mut encrypted = Vec::new();
    for b in bundle.blocks.iter().filter(|b| b.block_type == block_types::BCB) {
        let asb = Asb::parse(data_of(bytes, b)).map_err(|error| BpsecError::Asb { block: b.number, error })?;
        encrypted.extend_from_slice(&asb.targets);
        out.push(SecurityBlock { block: b, asb: Some(asb) });
    }
    for b in bundle.blocks.iter().filter(|b| b.block_type == block_types::BIB) {
        let asb = if encrypted.contains(&b.number) {
            None
        } else {
            Some(Asb::parse(data_of(bytes, b)).map_err(|error| BpsecError::Asb { block: b.number, error })?)
        };
        out.push(SecurityBlock { block: b, asb });
    }
    Ok(out)
}

/// A block's data. The ranges come from `decode` over these bytes; a
/// mismatched pair gives empty data rather than a panic.
fn data_of<'a>(bytes: &'a [u8], b: &CanonicalBlock) -> &'a [u8] {
    bytes.get(b.data.clone()).unwrap_or_default()
}

fn primary_of<'a>(bytes: &'a [u8], bundle: &Bundle) -> &'a [u8] {
    bytes.get(bundle.primary.range.clone()).unwrap_or_default()
}

fn header(b: &CanonicalBlock) -> BlockHeader {
    BlockHeader { block_type: b.block_type, number: b.number, flags: b.flags }
}

/// The security operations already on `target`: (BIB, BCB) numbers.
fn existing_ops(blocks: &[SecurityBlock<'_>], target: u64) -> (Option<u64>, Option<u64>) {
    let by = |t: u64| {
        blocks
            .iter()
            .filter(|s| s.block.block_type == t && s.asb.as_ref().is_some_and(|a| a.targets.contains(&target)))
            .map(|s| s.block.number)
            .next()
    };
    (by(block_types::BIB), by(block_types::BCB))
}

fn new_block_number(bundle: &Bundle, requested: Option<u64>) -> Result<u64, BpsecError> {
    match requested {
        Some(n) if n < 2 || bundle.block(n).is_some() => Err(BpsecError::BlockNumberUnavailable { number: n }),
        Some(n) => Ok(n),
        None => {
            let max = bundle.blocks.iter().map(|b| b.number).max().unwrap_or(1).max(1);
            max.checked_add(1).ok_or(BpsecError::BlockNumberUnavailable { number: max })
        }
    }
}

/// The IPPT of `target` (RFC 9173 §3.7) in two pieces: prefix and data.
fn ippt<'a>(
    bytes: &'a [u8],
    bundle: &Bundle,
    target: u64,
    scope: u64,
    bib: BlockHeader,
) -> Option<(Vec<u8>, &'a [u8])> {
    let primary = primary_of(bytes, bundle);
    if target == 0 {
        return Some((scope::ippt_prefix(scope, primary, None, bib, primary.len()), primary));
    }
    let b = bundle.block(target)?;
    let data = data_of(bytes, b);
    Some((scope::ippt_prefix(scope, primary, Some(header(b)), bib, data.len()), data))
}

/// Adds a BIB over `targets` (block numbers; 0 is the primary block) from
/// security source `source`, and returns the new bundle's bytes.
///
/// Refused (RFC 9172 §3.9): a target that is a security block, already
/// signed, or encrypted.
pub fn sign(
    bytes: &[u8],
    bundle: &Bundle,
    targets: &[u64],
    source: &Eid,
    context: &Integrity<'_>,
    new: &NewBlock,
) -> Result<Vec<u8>, BpsecError> {
    let existing = security_blocks(bytes, bundle)?;
    check_targets(bundle, targets)?;
    for &t in targets {
        if let Some(b) = bundle.block(t) {
            if matches!(b.block_type, block_types::BIB | block_types::BCB) {
                return Err(BpsecError::TargetIsSecurityBlock { target: t });
            }
        }
        match existing_ops(&existing, t) {
            (_, Some(bcb)) => return Err(BpsecError::AlreadyEncrypted { target: t, bcb }),
            (Some(bib), _) => return Err(BpsecError::AlreadySigned { target: t, bib }),
            _ => {}
        }
    }
    let number = new_block_number(bundle, new.number)?;
    check_placement(bundle, new.placement)?;
    let bib = BlockHeader { block_type: block_types::BIB, number, flags: new.flags };

    let mut results = Vec::with_capacity(targets.len());
    let (context_id, parameters) = match context {
        Integrity::HmacSha2 { variant, scope, key } => {
            let (key, wrapped) = content_key(key)?;
            for &t in targets {
                let (prefix, data) =
                    ippt(bytes, bundle, t, *scope, bib).ok_or(BpsecError::NoSuchBlock { number: t })?;
                let mac = rfc9173::hmac(*variant, key, &[&prefix, data]);
                results.push(vec![SecurityItem::bytes(rfc9173::HMAC_RESULT, &mac)]);
            }
            let mut p = vec![SecurityItem::uint(rfc9173::hmac_param::SHA_VARIANT, variant.code())];
            if let Some(w) = wrapped {
                p.push(SecurityItem::bytes(rfc9173::hmac_param::WRAPPED_KEY, &w));
            }
            p.push(SecurityItem::uint(rfc9173::hmac_param::SCOPE_FLAGS, *scope));
            (BIB_HMAC_SHA2, p)
        }
        Integrity::Ed25519 { scope, key } => {
            for &t in targets {
                let (mut msg, data) =
                    ippt(bytes, bundle, t, *scope, bib).ok_or(BpsecError::NoSuchBlock { number: t })?;
                msg.extend_from_slice(data);
                let sig: Signature = key.sign(&msg);
                results.push(vec![SecurityItem::bytes(ED25519_SIGNATURE_RESULT, &sig.to_bytes())]);
            }
            (ED25519_CONTEXT_ID, vec![SecurityItem::uint(ED25519_SCOPE_PARAM, *scope)])
        }
    };
    let asb = Asb { targets: targets.to_vec(), context_id, flags: 0, source: source.clone(), parameters, results };
    let mut block = Vec::new();
    encode_canonical_block(&mut block, block_types::BIB, number, new.flags, new.crc_type, &asb.to_bytes());
    Ok(rebuild(bytes, bundle, Some((new.placement, &block)), &[], &[]))
}

/// Adds a BCB over `targets` from security source `source` and replaces each
/// target's data by its ciphertext; returns the new bundle's bytes.
///
/// Refused (RFC 9172 §3.8, §3.9): the primary block, a BCB, an encrypted
/// target, and a signed target whose BIB is not among the targets.
pub fn encrypt(
    bytes: &[u8],
    bundle: &Bundle,
    targets: &[u64],
    source: &Eid,
    context: &Confidentiality<'_>,
    new: &NewBlock,
) -> Result<Vec<u8>, BpsecError> {
    let existing = security_blocks(bytes, bundle)?;
    check_targets(bundle, targets)?;
    for &t in targets {
        if t == 0 {
            return Err(BpsecError::PrimaryNotEncryptable);
        }
        if bundle.block(t).is_some_and(|b| b.block_type == block_types::BCB) {
            return Err(BpsecError::TargetIsSecurityBlock { target: t });
        }
        let (bib, bcb) = existing_ops(&existing, t);
        if let Some(bcb) = bcb {
            return Err(BpsecError::AlreadyEncrypted { target: t, bcb });
        }
        if let Some(bib) = bib.filter(|b| !targets.contains(b)) {
            return Err(BpsecError::BibNotEncrypted { target: t, bib });
        }
    }
    let number = new_block_number(bundle, new.number)?;
    check_placement(bundle, new.placement)?;
    let mut flags = new.flags;
    if targets.contains(&1) {
        flags |= block_flags::REPLICATE_IN_FRAGMENTS;
    }
    let bcb = BlockHeader { block_type: block_types::BCB, number, flags };
    let (key, wrapped) = content_key(&context.key)?;
    if key.len() != context.variant.key_len() {
        return Err(BpsecError::KeyLength { len: key.len() });
    }
    if context.iv.len() != rfc9173::IV_LEN {
        return Err(BpsecError::IvLength { len: context.iv.len() });
    }

    let primary = primary_of(bytes, bundle);
    let mut replace = Vec::with_capacity(targets.len());
    let mut results = Vec::with_capacity(targets.len());
    for &t in targets {
        let b = bundle.block(t).ok_or(BpsecError::NoSuchBlock { number: t })?;
        let aad = scope::aad(context.scope, primary, header(b), bcb);
        let mut data = data_of(bytes, b).to_vec();
        let tag = rfc9173::gcm_encrypt(context.variant, key, context.iv, &aad, &mut data)?;
        replace.push((t, data));
        results.push(vec![SecurityItem::bytes(rfc9173::TAG_RESULT, &tag)]);
    }
    let mut parameters = vec![
        SecurityItem::bytes(rfc9173::gcm_param::IV, context.iv),
        SecurityItem::uint(rfc9173::gcm_param::AES_VARIANT, context.variant.code()),
    ];
    if let Some(w) = wrapped {
        parameters.push(SecurityItem::bytes(rfc9173::gcm_param::WRAPPED_KEY, &w));
    }
    parameters.push(SecurityItem::uint(rfc9173::gcm_param::SCOPE_FLAGS, context.scope));
    let asb = Asb {
        targets: targets.to_vec(),
        context_id: BCB_AES_GCM,
        flags: 0,
        source: source.clone(),
        parameters,
        results,
    };
    let mut block = Vec::new();
    encode_canonical_block(&mut block, block_types::BCB, number, flags, new.crc_type, &asb.to_bytes());
    Ok(rebuild(bytes, bundle, Some((new.placement, &block)), &replace, &[]))
}

/// Checks every BIB operation whose context this node knows and whose key it
/// holds; an encrypted target waits for [`decrypt`]. Any failed check is an
/// error; otherwise one [`Outcome`] per operation says what was done.
pub fn verify(bytes: &[u8], bundle: &Bundle, keys: &dyn KeyLookup) -> Result<Vec<Outcome>, BpsecError> {
    let blocks = security_blocks(bytes, bundle)?;
    let mut out = Vec::new();
    for s in blocks.iter().filter(|s| s.block.block_type == block_types::BIB) {
        let number = s.block.number;
        let Some(asb) = &s.asb else {
            out.push(Outcome {
                block: number,
                target: None,
                source: None,
                context_id: None,
                status: Status::Encrypted,
            });
            continue;
        };
        let outcome = |target: u64, status| Outcome {
            block: number,
            target: Some(target),
            source: Some(asb.source.clone()),
            context_id: Some(asb.context_id),
            status,
        };
        let bib = header(s.block);
        let scope = scope_param(asb, number, scope_param_id(asb.context_id))?;
        let checker = match asb.context_id {
            BIB_HMAC_SHA2 => {
                let variant = match asb.parameter(rfc9173::hmac_param::SHA_VARIANT) {
                    None => ShaVariant::default(),
                    Some(p) => p
                        .as_uint()
                        .and_then(ShaVariant::from_code)
                        .ok_or(BpsecError::Parameter { block: number, id: rfc9173::hmac_param::SHA_VARIANT })?,
                };
                let Some(key) = keys.hmac_key(&asb.source) else {
                    out.extend(asb.targets.iter().map(|&t| outcome(t, Status::NoKey)));
                    continue;
                };
                Checker::Hmac(variant, unwrap_if_wrapped(asb, number, rfc9173::hmac_param::WRAPPED_KEY, key)?)
            }
            ED25519_CONTEXT_ID => {
                let Some(key) = keys.ed25519_key(&asb.source) else {
                    out.extend(asb.targets.iter().map(|&t| outcome(t, Status::NoKey)));
                    continue;
                };
                Checker::Ed25519(key)
            }
            _ => {
                out.extend(asb.targets.iter().map(|&t| outcome(t, Status::UnknownContext)));
                continue;
            }
        };
        let result_id = checker.result_id();
        for (i, &t) in asb.targets.iter().enumerate() {
            if t != 0 && existing_ops(&blocks, t).1.is_some() {
                out.push(outcome(t, Status::Encrypted));
                continue;
            }
            let expected = asb
                .result(i, result_id)
                .and_then(SecurityItem::as_bytes)
                .ok_or(BpsecError::MissingResult { block: number, target: t })?;
            let (prefix, data) =
                ippt(bytes, bundle, t, scope, bib).ok_or(BpsecError::MissingTarget { block: number, target: t })?;
            if !checker.check(&prefix, data, expected) {
                return Err(BpsecError::IntegrityCheckFailed {
                    bib: number,
                    target: t,
                    security_source: asb.source.clone(),
                });
            }
            out.push(outcome(t, Status::Verified));
        }
    }
    Ok(out)
}

/// How [`verify`] checks the targets of one BIB.
enum Checker {
    Hmac(ShaVariant, Zeroizing<Vec<u8>>),
    Ed25519(VerifyingKey),
}

impl Checker {
    fn result_id(&self) -> u64 {
        match self {
            Checker::Hmac(..) => rfc9173::HMAC_RESULT,
            Checker::Ed25519(_) => ED25519_SIGNATURE_RESULT,
        }
    }

    /// True when `expected` is the result for the IPPT `prefix ++ data`.
    fn check(&self, prefix: &[u8], data: &[u8], expected: &[u8]) -> bool {
        match self {
            Checker::Hmac(variant, key) => rfc9173::hmac_verify(*variant, key, &[prefix, data], expected),
            Checker::Ed25519(key) => {
                let Ok(sig) = Signature::from_slice(expected) else { return false };
                let mut msg = Vec::with_capacity(prefix.len() + data.len());
                msg.extend_from_slice(prefix);
                msg.extend_from_slice(data);
                key.verify_strict(&msg, &sig).is_ok()
            }
        }
    }
}

/// What [`decrypt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The bundle with the decrypted targets' plaintext and without the BCBs
    /// that were undone; `None` when nothing was decrypted.
    pub bytes: Option<Vec<u8>>,
    pub outcomes: Vec<Outcome>,
}

/// Decrypts every BCB this node holds a key for (a security acceptor,
/// RFC 9172 §5.1.1): each target gets its plaintext back and the BCB is
/// removed. A target that does not authenticate is an error.
pub fn decrypt(bytes: &[u8], bundle: &Bundle, keys: &dyn KeyLookup) -> Result<Decrypted, BpsecError> {
    let blocks = security_blocks(bytes, bundle)?;
    let primary = primary_of(bytes, bundle);
    let (mut replace, mut remove, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
    for s in blocks.iter().filter(|s| s.block.block_type == block_types::BCB) {
        let number = s.block.number;
        let Some(asb) = &s.asb else { continue };
        let outcome = |target: u64, status| Outcome {
            block: number,
            target: Some(target),
            source: Some(asb.source.clone()),
            context_id: Some(asb.context_id),
            status,
        };
        if asb.context_id != BCB_AES_GCM {
            outcomes.extend(asb.targets.iter().map(|&t| outcome(t, Status::UnknownContext)));
            continue;
        }
        let iv = asb
            .parameter(rfc9173::gcm_param::IV)
            .ok_or(BpsecError::MissingParameter { block: number, id: rfc9173::gcm_param::IV })?
            .as_bytes()
            .ok_or(BpsecError::Parameter { block: number, id: rfc9173::gcm_param::IV })?;
        let variant = match asb.parameter(rfc9173::gcm_param::AES_VARIANT) {
            None => AesVariant::default(),
            Some(p) => p
                .as_uint()
                .and_then(AesVariant::from_code)
                .ok_or(BpsecError::Parameter { block: number, id: rfc9173::gcm_param::AES_VARIANT })?,
        };
        let scope = scope_param(asb, number, rfc9173::gcm_param::SCOPE_FLAGS)?;
        let Some(key) = keys.aes_key(&asb.source) else {
            outcomes.extend(asb.targets.iter().map(|&t| outcome(t, Status::NoKey)));
            continue;
        };
        let key = unwrap_if_wrapped(asb, number, rfc9173::gcm_param::WRAPPED_KEY, key)?;
        let bcb = header(s.block);
        for (i, &t) in asb.targets.iter().enumerate() {
            let b = bundle.block(t).ok_or(BpsecError::MissingTarget { block: number, target: t })?;
            let tag = asb
                .result(i, rfc9173::TAG_RESULT)
                .and_then(SecurityItem::as_bytes)
                .ok_or(BpsecError::MissingResult { block: number, target: t })?;
            let aad = scope::aad(scope, primary, header(b), bcb);
            let mut data = data_of(bytes, b).to_vec();
            if !rfc9173::gcm_decrypt(variant, &key, iv, &aad, &mut data, tag) {
                return Err(BpsecError::DecryptionFailed {
                    bcb: number,
                    target: t,
                    security_source: asb.source.clone(),
                });
            }
            replace.push((t, data));
            outcomes.push(outcome(t, Status::Decrypted));
        }
        remove.push(number);
    }
    let bytes = (!remove.is_empty()).then(|| rebuild(bytes, bundle, None, &replace, &remove));
    Ok(Decrypted { bytes, outcomes })
}

/// Where [`process`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A node on the way: verifies what it can, decrypts nothing.
    Forwarder,
    /// The bundle's destination: decrypts, then verifies.
    Destination,
}

/// What [`process`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The decrypted bundle and its decoding, when a BCB was undone.
    pub decrypted: Option<(Vec<u8>, Bundle)>,
    pub outcomes: Vec<Outcome>,
    /// Security blocks that cannot be processed here and whose flags say
    /// "discard block" (to leave out when forwarding).
    pub discard_blocks: Vec<u64>,
    /// A security block that cannot be processed here says "delete bundle".
    pub delete_bundle: bool,
}

/// The RFC 9172 §5 processing of a received bundle's security blocks at a
/// forwarder or at the destination (see the module docs). `options` decode
/// the decrypted bundle as the caller decoded the received one.
///
/// Errors (a failed check, a malformed security block) mean the bundle is
/// to be deleted with [`BpsecError::reason_code`]. Whether a bundle without
/// the signatures it should carry is acceptable is the caller's policy,
/// read from [`Processed::outcomes`].
pub fn process(
    bytes: &[u8],
    bundle: &Bundle,
    role: Role,
    keys: &dyn KeyLookup,
    options: &DecodeOptions,
) -> Result<Processed, BpsecError> {
    let mut outcomes = Vec::new();
    let mut decrypted = None;
    if role == Role::Destination {
        let d = decrypt(bytes, bundle, keys)?;
        outcomes = d.outcomes;
        if let Some(plain) = d.bytes {
            let b = codec::decode_with(&plain, options)?;
            decrypted = Some((plain, b));
        }
    }
    let (bytes, bundle) = match &decrypted {
        Some((p, b)) => (p.as_slice(), b),
        None => (bytes, bundle),
    };
    outcomes.extend(verify(bytes, bundle, keys)?);

    let mut discard_blocks = Vec::new();
    let mut delete_bundle = false;
    for o in &outcomes {
        let Some(b) = bundle.block(o.block) else { continue };
        // An unknown context cannot be processed anywhere here; a BCB the
        // destination cannot decrypt cannot be processed where it must be.
        let unprocessable = o.status == Status::UnknownContext
            || (role == Role::Destination && o.status == Status::NoKey && b.block_type == block_types::BCB);
        if !unprocessable {
            continue;
        }
        match if_unprocessable(b.flags) {
            Unprocessable::Keep => {}
            Unprocessable::DiscardBlock => {
                if !discard_blocks.contains(&o.block) {
                    discard_blocks.push(o.block);
                }
            }
            Unprocessable::DeleteBundle => delete_bundle = true,
        }
    }
    Ok(Processed { decrypted, outcomes, discard_blocks, delete_bundle })
}

fn check_targets(bundle: &Bundle, targets: &[u64]) -> Result<(), BpsecError> {
    if targets.is_empty() {
        return Err(BpsecError::NoTargets);
    }
    for (i, &t) in targets.iter().enumerate() {
        if targets[..i].contains(&t) {
            return Err(BpsecError::DuplicateTarget { target: t });
        }
        if t != 0 && bundle.block(t).is_none() {
            return Err(BpsecError::NoSuchBlock { number: t });
        }
    }
    Ok(())
}

fn check_placement(bundle: &Bundle, placement: Placement) -> Result<(), BpsecError> {
    match placement {
        Placement::Before(n) if bundle.block(n).is_none() => Err(BpsecError::NoSuchBlock { number: n }),
        _ => Ok(()),
    }
}

/// The key an operation uses, and its wrapped form to carry.
fn content_key<'a>(key: &Key<'a>) -> Result<(&'a [u8], Option<Vec<u8>>), BpsecError> {
    match *key {
        Key::Direct(k) => Ok((k, None)),
        Key::Wrapped { kek, cek } => Ok((cek, Some(rfc9173::wrap_key(kek, cek)?))),
    }
}

/// `key` itself, or the content key unwrapped with it when the block
/// carries one under parameter `id`.
fn unwrap_if_wrapped(asb: &Asb, block: u64, id: u64, key: &[u8]) -> Result<Zeroizing<Vec<u8>>, BpsecError> {
    match asb.parameter(id) {
        None => Ok(Zeroizing::new(key.to_vec())),
        Some(p) => {
            let wrapped = p.as_bytes().ok_or(BpsecError::Parameter { block, id })?;
            rfc9173::unwrap_key(key, wrapped).ok_or(BpsecError::KeyUnwrap { block })
        }
    }
}

fn scope_param_id(context_id: i64) -> u64 {
    if context_id == ED25519_CONTEXT_ID {
        ED25519_SCOPE_PARAM
    } else {
        rfc9173::hmac_param::SCOPE_FLAGS
    }
}

/// The scope flags parameter, 7 when absent (RFC 9173 §3.3.3, §4.3.4).
fn scope_param(asb: &Asb, block: u64, id: u64) -> Result<u64, BpsecError> {
    match asb.parameter(id) {
        None => Ok(scope_flags::ALL),
        Some(p) => p.as_uint().ok_or(BpsecError::Parameter { block, id }),
    }
}

/// The bundle's bytes with `new` inserted, the data of the blocks in
/// `replace` swapped (type, number, flags and CRC type kept; CRC recomputed)
/// and the blocks in `remove` left out. Everything else, the primary block
/// first, is copied byte for byte.
fn rebuild(
    bytes: &[u8],
    bundle: &Bundle,
    new: Option<(Placement, &[u8])>,
    replace: &[(u64, Vec<u8>)],
    remove: &[u64],
) -> Vec<u8> {
    let extra = new.map_or(0, |(_, b)| b.len()) + replace.iter().map(|(_, d)| d.len() + 16).sum::<usize>();
    let mut out = Vec::with_capacity(bytes.len() + extra);
    out.push(cbor::INDEFINITE_ARRAY);
    out.extend_from_slice(primary_of(bytes, bundle));
    if let Some((Placement::AfterPrimary, block)) = new {
        out.extend_from_slice(block);
    }
    for b in &bundle.blocks {
        if let Some((Placement::Before(n), block)) = new {
            if n == b.number {
                out.extend_from_slice(block);
            }
        }
        if remove.contains(&b.number) {
            continue;
        }
        match replace.iter().find(|(n, _)| *n == b.number) {
            Some((_, data)) => encode_canonical_block(&mut out, b.block_type, b.number, b.flags, b.crc_type, data),
            None => out.extend_from_slice(bytes.get(b.range.clone()).unwrap_or_default()),
        }
    }
    out.push(cbor::BREAK);
    out
}

#[cfg(test)]
mod tests;
