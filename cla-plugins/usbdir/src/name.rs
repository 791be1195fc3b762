//! Names on the folder: node IDs as directory names, bundles as file names.
//!
//! Node IDs go through [`encode_node`], a reversible encoding that any
//! filesystem a stick may carry takes (FAT32, exFAT, NTFS, ext4, APFS): only
//! lowercase ASCII letters, digits, `-` and an inner `.` pass through;
//! everything else, uppercase letters included (FAT and exFAT fold case), is
//! `_` and two lowercase hex digits per byte. A scheme prefix keeps the
//! common forms short and readable: `dtn://camp/` is `dtn-camp`, `ipn:12.0`
//! is `ipn-12`, anything else is `eid-` and the escaped text.
//!
//! A bundle file is `<sha256 of its bytes, 64 lowercase hex>.bundle`; while it
//! is being written it is `<sha256>.<n>.part` in the same directory, renamed
//! once its bytes are durable.

use sha2::{Digest, Sha256};

/// The suffix of a complete bundle file.
pub const BUNDLE_SUFFIX: &str = ".bundle";
/// The suffix of a file being written.
pub const PART_SUFFIX: &str = ".part";
/// Longest encoded node ID accepted (FAT's long names stop at 255 UTF-16 units).
pub const MAX_ENCODED_LEN: usize = 200;

/// Why a directory or file name is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The node ID encodes to a name too long for FAT's long file names.
    #[error("node ID `{0}` is too long to be a folder name on a FAT/exFAT stick")]
    TooLong(String),
    /// Not `dtn-…`, `ipn-…` or `eid-…`, or a malformed escape.
    #[error("`{0}` is not a node folder name")]
    NotANode(String),
}

/// Encodes a node ID as a folder name (see the module docs).
pub fn encode_node(node_id: &str) -> Result<String, NameError> {
    let (prefix, rest) = if let Some(name) = node_id.strip_prefix("dtn://").and_then(|r| r.strip_suffix('/')) {
        ("dtn-", name)
    } else if let Some(num) = node_id.strip_prefix("ipn:").and_then(|r| r.strip_suffix(".0")).filter(|n| is_decimal(n))
    {
        ("ipn-", num)
    } else {
        ("eid-", node_id)
    };
    let mut out = String::with_capacity(prefix.len() + rest.len());
    out.push_str(prefix);
    let last = rest.len().saturating_sub(1);
    for (i, b) in rest.bytes().enumerate() {
        // A leading dot hides the folder and FAT drops a trailing one.
        let plain = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (b == b'.' && i != 0 && i != last);
        if plain {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
    if out.len() > MAX_ENCODED_LEN {
        return Err(NameError::TooLong(node_id.to_owned()));
    }
    Ok(out)
}

/// Decodes a folder name made by [`encode_node`]; `None` for names that are
/// not (junk on the stick, `System Volume Information`, ...).
pub fn decode_node(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_at_checked(4)?;
    let mut bytes = Vec::with_capacity(rest.len());
    let mut it = rest.bytes();
    while let Some(b) = it.next() {
        match b {
            b'_' => {
                let hi = hex_digit(it.next()?)?;
                let lo = hex_digit(it.next()?)?;
                bytes.push(hi << 4 | lo);
            }
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => bytes.push(b),
            _ => return None,
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    let node = match prefix {
        "dtn-" if !text.is_empty() => format!("dtn://{text}/"),
        "ipn-" if is_decimal(&text) => format!("ipn:{text}.0"),
        "eid-" if !text.is_empty() => text,
        _ => return None,
    };
    // Only the canonical spelling counts, so one node has one folder.
    (encode_node(&node).ok()? == name).then_some(node)
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file name of a complete bundle whose bytes hash to `hash`.
pub fn bundle_file(hash: &str) -> String {
    format!("{hash}{BUNDLE_SUFFIX}")
}

/// The name a bundle is written under before it is complete; `n` keeps two
/// writers of the same bytes apart.
pub fn part_file(hash: &str, n: u64) -> String {
    format!("{hash}.{n}{PART_SUFFIX}")
}

/// What a file found in a mailbox is, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `<hash>.bundle`: a bundle, to be verified against the hash.
    Bundle { hash: String },
    /// `….part`: a write that has not finished (or never will).
    Part,
    /// A dot file: ours (status) or the system's; not looked at.
    Hidden,
    /// Anything else.
    Junk,
}

/// Classifies a file name found in `<to>/<from>/`.
pub fn classify(name: &str) -> FileKind {
    if name.starts_with('.') {
        return FileKind::Hidden;
    }
    if name.ends_with(PART_SUFFIX) {
        return FileKind::Part;
    }
    match name.strip_suffix(BUNDLE_SUFFIX) {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            FileKind::Bundle { hash: h.to_owned() }
        }
        _ => FileKind::Junk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_node_ids_read_well() {
        assert_eq!(encode_node("dtn://camp/").unwrap(), "dtn-camp");
        assert_eq!(encode_node("dtn://camp.example-1/").unwrap(), "dtn-camp.example-1");
        assert_eq!(encode_node("ipn:12.0").unwrap(), "ipn-12");
    }

    #[test]
    fn unsafe_bytes_are_escaped_and_everything_round_trips() {
        let cases = [
            ("dtn://Camp/", "dtn-_43amp"),
            ("dtn://a:b\\c*?\"<>|/", "dtn-a_3ab_5cc_2a_3f_22_3c_3e_7c"),
            ("dtn://.hidden./", "dtn-_2ehidden_2e"),
            ("dtn://a_b/", "dtn-a_5fb"),
            ("dtn://caf\u{e9}/", "dtn-caf_c3_a9"),
            ("ipn:12.3", "eid-ipn_3a12.3"),
            ("dtn://x/y", "eid-dtn_3a_2f_2fx_2fy"),
            ("dtn:none", "eid-dtn_3anone"),
        ];
        for (node, dir) in cases {
            let enc = encode_node(node).unwrap();
            assert_eq!(enc, dir, "{node}");
            assert!(enc.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
            assert_eq!(decode_node(&enc).as_deref(), Some(node), "{enc}");
        }
    }

    #[test]
    fn names_that_are_not_ours_do_not_decode() {
        for junk in [
            "",
            "dtn-",
            "ipn-",
            "ipn-x",
            "System Volume Information",
            "dtn-Camp",
            "dtn-_4",
            "dtn-_zz",
            "dtn-_63amp", // `c` escaped: not the canonical spelling
            "xyz-camp",
            "dtn-_ff",
        ] {
            assert_eq!(decode_node(junk), None, "{junk}");
        }
    }

    #[test]
    fn too_long_node_ids_are_refused() {
        let long = format!("dtn://{}/", "A".repeat(100));
        assert!(matches!(encode_node(&long), Err(NameError::TooLong(_))));
    }

    #[test]
    fn file_names() {
        let h = content_hash(b"abc");
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(classify(&bundle_file(&h)), FileKind::Bundle { hash: h.clone() });
        assert_eq!(classify(&part_file(&h, 7)), FileKind::Part);
        assert_eq!(classify(".ferry-sync.json"), FileKind::Hidden);
        assert_eq!(classify("notes.txt"), FileKind::Junk);
        assert_eq!(classify(&format!("{}.bundle", h.to_uppercase())), FileKind::Junk);
        assert_eq!(classify("abc.bundle"), FileKind::Junk);
    }
}
