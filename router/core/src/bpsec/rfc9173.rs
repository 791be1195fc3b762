//! The default security contexts of RFC 9173: BIB-HMAC-SHA2 (§3) and
//! BCB-AES-GCM (§4), with optional AES key wrap (RFC 3394) of the content key.
//!
//! These functions are the cryptography only; which bytes go in (the IPPT,
//! the AAD) is built by the `scope` module.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::BpsecError;

/// Security context ID of BIB-HMAC-SHA2 (RFC 9173 §3.1).
pub const BIB_HMAC_SHA2: i64 = 1;
/// Security context ID of BCB-AES-GCM (RFC 9173 §4.1).
pub const BCB_AES_GCM: i64 = 2;

/// BIB-HMAC-SHA2 parameter IDs (RFC 9173 §3.3).
pub mod hmac_param {
    /// SHA variant (uint): 5, 6 or 7; default 6.
    pub const SHA_VARIANT: u64 = 1;
    /// The HMAC key wrapped with AES-KW (bstr).
    pub const WRAPPED_KEY: u64 = 2;
    /// Integrity scope flags (uint); default 7.
    pub const SCOPE_FLAGS: u64 = 3;
}

/// BIB-HMAC-SHA2 result ID: the expected HMAC (bstr) (RFC 9173 §3.4).
pub const HMAC_RESULT: u64 = 1;

/// BCB-AES-GCM parameter IDs (RFC 9173 §4.3).
pub mod gcm_param {
    /// Initialization vector (bstr).
    pub const IV: u64 = 1;
    /// AES variant (uint): 1 (A128GCM) or 3 (A256GCM); default 3.
    pub const AES_VARIANT: u64 = 2;
    /// The content key wrapped with AES-KW (bstr).
    pub const WRAPPED_KEY: u64 = 3;
    /// AAD scope flags (uint); default 7.
    pub const SCOPE_FLAGS: u64 = 4;
}

/// BCB-AES-GCM result ID: the authentication tag (bstr) (RFC 9173 §4.4).
pub const TAG_RESULT: u64 = 1;

/// The IV length BCB-AES-GCM uses (RFC 9173 §4.3.1: 12 bytes recommended;
/// the only length accepted here).
pub const IV_LEN: usize = 12;
/// The authentication tag length (RFC 9173 §4.4.1: 128 bits).
pub const TAG_LEN: usize = 16;

/// The SHA variant of BIB-HMAC-SHA2 (RFC 9173 §3.3.1, Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ShaVariant {
    /// HMAC 256/256.
    Sha256,
    /// HMAC 384/384, the default.
    #[default]
    Sha384,
    /// HMAC 512/512.
    Sha512,
}

impl ShaVariant {
    pub fn code(self) -> u64 {
        match self {
            ShaVariant::Sha256 => 5,
            ShaVariant::Sha384 => 6,
            ShaVariant::Sha512 => 7,
        }
    }

    pub fn from_code(code: u64) -> Option<ShaVariant> {
        match code {
            5 => Some(ShaVariant::Sha256),
            6 => Some(ShaVariant::Sha384),
            7 => Some(ShaVariant::Sha512),
            _ => None,
        }
    }
}

/// The AES variant of BCB-AES-GCM (RFC 9173 §4.3.2, Table 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AesVariant {
    /// AES-GCM with a 128-bit key.
    A128Gcm,
    /// AES-GCM with a 256-bit key, the default.
    #[default]
    A256Gcm,
}

impl AesVariant {
    pub fn code(self) -> u64 {
        match self {
            AesVariant::A128Gcm => 1,
            AesVariant::A256Gcm => 3,
        }
    }

    pub fn from_code(code: u64) -> Option<AesVariant> {
        match code {
            1 => Some(AesVariant::A128Gcm),
            3 => Some(AesVariant::A256Gcm),
            _ => None,
        }
    }

    /// The key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            AesVariant::A128Gcm => 16,
            AesVariant::A256Gcm => 32,
        }
    }
}

/// HMAC over `parts` (the IPPT, in pieces).
pub(crate) fn hmac(variant: ShaVariant, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            // HMAC takes keys of any length (RFC 2104 §3): this cannot fail.
            let Ok(mut m) = <Hmac<$d> as Mac>::new_from_slice(key) else { return Vec::new() };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match variant {
        ShaVariant::Sha256 => run!(Sha256),
        ShaVariant::Sha384 => run!(Sha384),
        ShaVariant::Sha512 => run!(Sha512),
    }
}

/// Checks `expected` against the HMAC over `parts` in constant time.
pub(crate) fn hmac_verify(variant: ShaVariant, key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    macro_rules! run {
        ($d:ty) => {{
            let Ok(mut m) = <Hmac<$d> as Mac>::new_from_slice(key) else { return false };
            for p in parts {
                m.update(p);
            }
            m.verify_slice(expected).is_ok()
        }};
    }
    match variant {
        ShaVariant::Sha256 => run!(Sha256),
        ShaVariant::Sha384 => run!(Sha384),
        ShaVariant::Sha512 => run!(Sha512),
    }
}

/// Encrypts `data` in place; returns the tag.
pub(crate) fn gcm_encrypt(
    variant: AesVariant,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; TAG_LEN], BpsecError> {
    if key.len() != variant.key_len() {
        return Err(BpsecError::KeyLength { len: key.len() });
    }
    if iv.len() != IV_LEN {
        return Err(BpsecError::IvLength { len: iv.len() });
    }
    let nonce = Nonce::from_slice(iv);
    let tag = match variant {
        AesVariant::A128Gcm => Aes128Gcm::new_from_slice(key)
            .map_err(|_| BpsecError::KeyLength { len: key.len() })?
            .encrypt_in_place_detached(nonce, aad, data),
        AesVariant::A256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| BpsecError::KeyLength { len: key.len() })?
            .encrypt_in_place_detached(nonce, aad, data),
    }
    // Only a plaintext beyond GCM's 64 GiB limit fails.
    .map_err(|_| BpsecError::TooLarge)?;
    Ok(tag.into())
}

/// Decrypts `data` in place if `tag` authenticates it; `false` otherwise
/// (`data` is then unspecified).
pub(crate) fn gcm_decrypt(variant: AesVariant, key: &[u8], iv: &[u8], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
    if key.len() != variant.key_len() || iv.len() != IV_LEN || tag.len() != TAG_LEN {
        return false;
    }
    let (nonce, tag) = (Nonce::from_slice(iv), Tag::from_slice(tag));
    match variant {
        AesVariant::A128Gcm => Aes128Gcm::new_from_slice(key)
            .map(|c| c.decrypt_in_place_detached(nonce, aad, data, tag).is_ok())
            .unwrap_or(false),
        AesVariant::A256Gcm => Aes256Gcm::new_from_slice(key)
            .map(|c| c.decrypt_in_place_detached(nonce, aad, data, tag).is_ok())
            .unwrap_or(false),
    }
}

/// AES key wrap (RFC 3394) of `cek` under `kek` (16, 24 or 32 bytes).
pub(crate) fn wrap_key(kek: &[u8], cek: &[u8]) -> Result<Vec<u8>, BpsecError> {
    let wrapped = match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).and_then(|k| k.wrap_vec(cek)),
        24 => aes_kw::KekAes192::try_from(kek).and_then(|k| k.wrap_vec(cek)),
        32 => aes_kw::KekAes256::try_from(kek).and_then(|k| k.wrap_vec(cek)),
        len => return Err(BpsecError::KeyLength { len }),
    };
    // RFC 3394 wraps keys of at least 16 bytes in 8-byte steps.
    wrapped.map_err(|_| BpsecError::KeyLength { len: cek.len() })
}

/// Unwraps a key; `None` when the KEK has the wrong length or the RFC 3394
/// integrity check fails (the wrong KEK, or a damaged wrapped key).
pub(crate) fn unwrap_key(kek: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let key = match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).and_then(|k| k.unwrap_vec(wrapped)),
        24 => aes_kw::KekAes192::try_from(kek).and_then(|k| k.unwrap_vec(wrapped)),
        32 => aes_kw::KekAes256::try_from(kek).and_then(|k| k.unwrap_vec(wrapped)),
        _ => return None,
    };
    key.ok().map(Zeroizing::new)
}
