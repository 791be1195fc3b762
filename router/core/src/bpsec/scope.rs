//! What a security operation covers besides its target's data: the
//! Integrity-Protected Plaintext of BIB-HMAC-SHA2 (RFC 9173 §3.7) and the
//! Additional Authenticated Data of BCB-AES-GCM (RFC 9173 §4.7.2), both
//! chosen by the same three scope flags. The Ed25519 context signs the same
//! IPPT as BIB-HMAC-SHA2.

use crate::cbor;

/// Integrity scope flags (RFC 9173 §3.3.3) and AAD scope flags (§4.3.4).
pub mod scope_flags {
    /// Bit 0: include the primary block.
    pub const PRIMARY_BLOCK: u64 = 0x01;
    /// Bit 1: include the target block's type code, number and flags.
    pub const TARGET_HEADER: u64 = 0x02;
    /// Bit 2: include the security block's type code, number and flags.
    pub const SECURITY_HEADER: u64 = 0x04;
    /// Every flag: the RFC 9173 default.
    pub const ALL: u64 = 0x07;
}

/// Type code, number and processing control flags of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub block_type: u64,
    pub number: u64,
    pub flags: u64,
}

impl BlockHeader {
    fn emit(&self, out: &mut Vec<u8>) {
        cbor::write_uint(out, self.block_type);
        cbor::write_uint(out, self.number);
        cbor::write_uint(out, self.flags);
    }
}

/// The IPPT up to the target's data, which follows it (RFC 9173 §3.7):
/// the scope flags (unassigned bits zeroed); the primary block if bit 0; the
/// target's header if bit 1; the security block's header if bit 2; then the
/// target's canonical form as a CBOR byte string, so this prefix ends with
/// that byte string's head. For a canonical block the form is its data; for
/// the primary block as a target it is the whole block, and the
/// primary-block and target-header flags add nothing more for it (the block
/// is already all there). RFC 9173 A.3 checks that byte string: its BIB over
/// the primary block verifies only with the head included.
///
/// `target` is `None` for the primary block. `primary` is the primary block's
/// encoding as received: the immutable block the source signed.
pub(crate) fn ippt_prefix(
    scope: u64,
    primary: &[u8],
    target: Option<BlockHeader>,
    security: BlockHeader,
    target_data_len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(primary.len() + 32);
    cbor::write_uint(&mut out, scope & scope_flags::ALL);
    if let Some(t) = target {
        if scope & scope_flags::PRIMARY_BLOCK != 0 {
            out.extend_from_slice(primary);
        }
        if scope & scope_flags::TARGET_HEADER != 0 {
            t.emit(&mut out);
        }
    }
    if scope & scope_flags::SECURITY_HEADER != 0 {
        security.emit(&mut out);
    }
    cbor::write_head(&mut out, cbor::major::BYTES, target_data_len as u64);
    out
}

/// The AAD of BCB-AES-GCM (RFC 9173 §4.7.2): the scope flags (unassigned
/// bits zeroed), the primary block if bit 0, the target's header if bit 1,
/// the BCB's header if bit 2.
pub(crate) fn aad(scope: u64, primary: &[u8], target: BlockHeader, security: BlockHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(primary.len() + 32);
    cbor::write_uint(&mut out, scope & scope_flags::ALL);
    if scope & scope_flags::PRIMARY_BLOCK != 0 {
        out.extend_from_slice(primary);
    }
    if scope & scope_flags::TARGET_HEADER != 0 {
        target.emit(&mut out);
    }
    if scope & scope_flags::SECURITY_HEADER != 0 {
        security.emit(&mut out);
    }
    out
}
