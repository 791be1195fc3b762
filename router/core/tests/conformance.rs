//! RFC 9171 decoding conformance: every bundle in `tests/fixtures/*.hex`
//! against its verdict in `tests/fixtures/verdicts.txt`, plus cross-checks
//! with bp7-rs (dtn7-rs's codec) in both directions.
//!
//! The fixtures are committed. `regenerate_fixtures` (ignored) rewrites them
//! from the table below: `cargo test -p ferry-core --test conformance --
//! --ignored regenerate_fixtures`. Vectors named `ext_*` are bundles published
//! in other projects' issue trackers, copied byte for byte.

use std::collections::BTreeMap;
use std::convert::TryFrom;
use std::path::{Path, PathBuf};

use ferry_core::admin::{self, ReasonCode, StatusReport};
use ferry_core::bundle::{
    block_flags, block_types, bundle_flags, BundleId, CrcType, CreationTimestamp, Fragment, HopCount, PrimaryBlock,
};
use ferry_core::codec::{self, encode_canonical_block, encode_primary_block, BundleBuilder, DecodeError};
use ferry_core::crc;
use ferry_core::eid::Eid;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Hex text; lines starting with '#' are comments, whitespace is ignored.
fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(digits.len() & 1 == 0, "odd number of hex digits");
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit")).collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn load(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    parse_hex(&text)
}

/// The variant name of an error, from its Debug form.
fn variant(e: &DecodeError) -> String {
    let dbg = format!("{e:?}");
    dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default().to_owned()
}

/// `file -> None` (valid) or `file -> Some(variant)` (invalid).
fn verdicts() -> BTreeMap<String, Option<String>> {
    let text = std::fs::read_to_string(fixtures_dir().join("verdicts.txt")).expect("verdicts.txt");
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let verdict = match words.as_slice() {
            [_, "valid"] => None,
            [_, "invalid", v] => Some((*v).to_owned()),
            _ => panic!("bad verdict line: {line}"),
        };
        assert!(out.insert(words[0].to_owned(), verdict).is_none(), "duplicate verdict for {}", words[0]);
    }
    out
}

#[test]
fn fixtures_match_verdicts() {
    let verdicts = verdicts();
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    files.sort();
    assert_eq!(files, verdicts.keys().cloned().collect::<Vec<_>>(), "every fixture has exactly one verdict");
    let mut failures = vec![];
    for (file, expect) in &verdicts {
        let got = codec::decode(&load(file));
        let ok = match (&got, expect) {
            (Ok(_), None) => true,
            (Err(e), Some(v)) => &variant(e) == v,
            _ => false,
        };
        if !ok {
            failures.push(format!("{file}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} fixtures disagree:\n{}", failures.len(), failures.join("\n"));
    let valid = verdicts.values().filter(|v| v.is_none()).count();
    assert!(valid >= 20 && verdicts.len() - valid >= 30, "{valid} valid, {} invalid", verdicts.len() - valid);
}

#[test]
fn valid_fixtures_decode_to_the_expected_fields() {
    let d = |name: &str| codec::decode(&load(name)).unwrap();

    let b = d("unknown_block_type.hex");
    assert_eq!(b.unsupported_blocks, vec![2]);
    assert_eq!(b.block(2).unwrap().block_type, 200);

    let b = d("bib_no_primary_crc.hex");
    assert_eq!(b.primary.crc_type, CrcType::None);
    assert_eq!(b.unsupported_blocks, vec![2]);

    assert_eq!(d("report_to_ipn_0_1.hex").primary.report_to, Eid::Ipn { node: 0, service: 1 });
    assert_eq!(d("hop_count.hex").hop_count, Some(HopCount { limit: 30, count: 3 }));
    assert_eq!(d("hop_count_exceeded.hex").hop_count, Some(HopCount { limit: 2, count: 3 }));
    assert_eq!(d("previous_node.hex").previous_node, Some("dtn://prev/".parse().unwrap()));
    assert_eq!(d("creation_time_zero_with_age.hex").bundle_age_ms, Some(5000));
    assert_eq!(d("fragment.hex").primary.fragment, Some(Fragment { offset: 100, total_adu_len: 300 }));
    assert_eq!(d("fragment.hex").id().fragment, Some((100, 50)));
    assert_eq!(d("ipn_three_element.hex").primary.destination, Eid::Ipn { node: (977 << 32) | 5, service: 1 });
    assert_eq!(d("crc16.hex").primary.crc_type, CrcType::Crc16);
    assert_eq!(d("reserved_bundle_flags.hex").primary.flags & RESERVED_BUNDLE_FLAGS, RESERVED_BUNDLE_FLAGS);

    let bytes = load("indefinite_primary_crc.hex");
    let b = codec::decode(&bytes).unwrap();
    assert_eq!(bytes[b.primary.range.start], 0x9f);
    let bytes = load("indefinite_canonical.hex");
    let b = codec::decode(&bytes).unwrap();
    assert!(b.blocks.iter().all(|blk| bytes[blk.range.start] == 0x9f));

    let bytes = load("admin_record.hex");
    let b = codec::decode(&bytes).unwrap();
    assert!(b.is_admin_record());
    let admin::AdminRecord::StatusReport(r) = admin::decode_admin_record(&bytes[b.payload().data.clone()]).unwrap()
    else {
        panic!("not a status report")
    };
    assert_eq!(r, sample_report());

    // The external vectors: the published bytes, CRCs and all.
    let b = d("ext_bp7_issue6_creation_time_zero.hex");
    assert_eq!(b.primary.creation.time, 0);
    assert_eq!(b.bundle_age_ms, Some(52));
    let b = d("ext_bp7_issue12_reserved_block_flags.hex");
    assert_eq!(b.payload().flags, 0xf9);
    assert_eq!(b.previous_node, Some("ipn:2.0".parse().unwrap()));
}

#[test]
fn invalid_fixtures_carry_the_right_reason_code() {
    for (file, verdict) in verdicts() {
        if let Err(e) = codec::decode(&load(&file)) {
            let expect = if verdict.as_deref() == Some("Eid") && file.contains("destination") {
                ReasonCode::DestinationEidUnintelligible
            } else {
                ReasonCode::BlockUnintelligible
            };
            assert_eq!(e.reason_code(), expect, "{file}");
        }
    }
}

// --- Cross-checks with bp7 ----------------------------------------------------

fn bp7_eid(e: &Eid) -> bp7::EndpointID {
    match e {
        Eid::Null => bp7::EndpointID::none(),
        Eid::Dtn { .. } => bp7::EndpointID::try_from(e.to_string().as_str()).unwrap(),
        Eid::Ipn { node, service } => bp7::EndpointID::with_ipn(*node, *service).unwrap(),
    }
}

fn ferry_eid(e: &bp7::EndpointID) -> Eid {
    e.to_string().parse().unwrap()
}

/// Bundles made by our builder decode with bp7 to the same fields, with CRCs
/// bp7 agrees with.
#[test]
fn builder_bundles_decode_with_bp7() {
    for crc_type in [CrcType::Crc16, CrcType::Crc32c] {
        for (src, dst, rpt) in [
            ("dtn://alpha/app", "dtn://beta/inbox", "dtn://alpha/"),
            ("ipn:1.0", "ipn:2.7", "ipn:1.0"),
            ("dtn://alpha/", "ipn:2.7", "dtn:none"),
        ] {
            let (src, dst, rpt): (Eid, Eid, Eid) = (src.parse().unwrap(), dst.parse().unwrap(), rpt.parse().unwrap());
            let bytes = BundleBuilder::new(
                src.clone(),
                dst.clone(),
                CreationTimestamp { time: 712_000_000_123, seq: 9 },
                86_400_000,
            )
            .report_to(rpt.clone())
            .flags(bundle_flags::REPORT_DELIVERY)
            .crc_type(crc_type)
            .hop_limit(17)
            .bundle_age(321)
            .previous_node("dtn://prev/".parse().unwrap())
            .build(b"cross-checked payload");
            let mut b = bp7::Bundle::try_from(bytes.clone()).expect("bp7 decodes our bundle");
            b.validate().expect("bp7 validates our bundle");
            assert!(b.crc_valid(), "bp7 agrees with our CRCs ({crc_type:?})");
            assert_eq!(ferry_eid(&b.primary.source), src);
            assert_eq!(ferry_eid(&b.primary.destination), dst);
            assert_eq!(ferry_eid(&b.primary.report_to), rpt);
            assert_eq!(b.primary.creation_timestamp.dtntime(), 712_000_000_123);
            assert_eq!(b.primary.creation_timestamp.seqno(), 9);
            assert_eq!(b.primary.lifetime.as_millis(), 86_400_000);
            assert_eq!(b.primary.bundle_control_flags, bundle_flags::REPORT_DELIVERY);
            assert_eq!(b.payload().unwrap().as_slice(), b"cross-checked payload");
            let hc = b.extension_block_by_type(bp7::canonical::HOP_COUNT_BLOCK).unwrap();
            assert_eq!(hc.hop_count_get(), Some((17, 0)));
            let age = b.extension_block_by_type(bp7::canonical::BUNDLE_AGE_BLOCK).unwrap();
            assert_eq!(age.bundle_age_get(), Some(321));
            assert_eq!(ferry_eid(b.previous_node().unwrap()), "dtn://prev/".parse().unwrap());
            // And bp7 re-encodes it to the same bytes: our encoding is the
            // shortest-form one it also produces.
            assert_eq!(b.to_cbor(), bytes);
        }
    }
}

fn bp7_bundle(crc: u8, with_extensions: bool) -> bp7::Bundle {
    use bp7::flags::BlockControlFlags;
    let src = bp7_eid(&"dtn://node1/app".parse().unwrap());
    let primary = bp7::primary::PrimaryBlockBuilder::default()
        .destination(bp7_eid(&"ipn:22.3".parse().unwrap()))
        .source(src.clone())
        .report_to(src)
        .creation_timestamp(bp7::CreationTimestamp::with_time_and_seq(765_432_100_000, 1))
        .lifetime(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut blocks = vec![bp7::canonical::new_payload_block(BlockControlFlags::empty(), b"from bp7".to_vec())];
    if with_extensions {
        blocks.push(bp7::canonical::new_hop_count_block(2, BlockControlFlags::empty(), 32));
        blocks.push(bp7::canonical::new_bundle_age_block(3, BlockControlFlags::BLOCK_REPLICATE, 77));
        blocks.push(bp7::canonical::new_previous_node_block(
            4,
            BlockControlFlags::empty(),
            bp7_eid(&"ipn:5.0".parse().unwrap()),
        ));
    }
    let mut b = bp7::Bundle::new(primary, blocks);
    b.sort_canonicals();
    b.set_crc(crc);
    b
}

/// Bundles made by bp7 with CRCs decode with ours to the same fields.
#[test]
fn bp7_bundles_decode_with_ferry() {
    for crc in [bp7::crc::CRC_16, bp7::crc::CRC_32] {
        for ext in [false, true] {
            let mut b7 = bp7_bundle(crc, ext);
            let bytes = b7.to_cbor();
            let b = codec::decode(&bytes).unwrap_or_else(|e| panic!("crc {crc} ext {ext}: {e:?}"));
            assert_eq!(b.primary.crc_type, if crc == bp7::crc::CRC_16 { CrcType::Crc16 } else { CrcType::Crc32c });
            assert_eq!(b.primary.source, "dtn://node1/app".parse().unwrap());
            assert_eq!(b.primary.destination, "ipn:22.3".parse().unwrap());
            assert_eq!(b.primary.report_to, "dtn://node1/app".parse().unwrap());
            assert_eq!(b.primary.creation, CreationTimestamp { time: 765_432_100_000, seq: 1 });
            assert_eq!(b.primary.lifetime_ms, 3_600_000);
            assert_eq!(&bytes[b.payload().data.clone()], b"from bp7");
            if ext {
                assert_eq!(b.hop_count, Some(HopCount { limit: 32, count: 0 }));
                assert_eq!(b.bundle_age_ms, Some(77));
                assert_eq!(b.previous_node, Some("ipn:5.0".parse().unwrap()));
                assert_eq!(b.block(3).unwrap().flags, block_flags::REPLICATE_IN_FRAGMENTS);
            }
            // bp7's own standard bundle, with a CRC added, too.
            let mut std = bp7::bundle::new_std_payload_bundle(
                bp7_eid(&"dtn://a/x".parse().unwrap()),
                bp7_eid(&"dtn://b/y".parse().unwrap()),
                b"std".to_vec(),
            );
            std.set_crc(crc);
            let bytes = std.to_cbor();
            let b = codec::decode(&bytes).unwrap();
            assert_eq!(b.hop_count, Some(HopCount { limit: 32, count: 0 }));
        }
    }
}

/// Known bp7 0.12 defects, each shown on a concrete bundle (and our verdict).
#[test]
fn bp7_known_bugs_confirmed() {
    // bp7-rs #16: no primary CRC and no BIB, accepted by bp7 (without its
    // bpsec feature, which is how dtn7-rs builds it).
    let bytes = load("ext_bp7_issue16_no_primary_crc.hex");
    let b7 = bp7::Bundle::try_from(bytes.clone()).unwrap();
    assert!(b7.validate().is_ok(), "bp7 accepts a primary block without CRC or BIB");
    assert_eq!(codec::decode(&bytes), Err(DecodeError::PrimaryCrcMissing));

    // bp7's default construction (new_std_payload_bundle) has no primary CRC:
    // invalid per RFC 9171 §4.3.1.
    assert_eq!(codec::decode(&load("bp7_default.hex")), Err(DecodeError::PrimaryCrcMissing));

    // bp7-rs #12: reserved block flags rejected, though §4.2.4 says ignore them.
    let bytes = load("ext_bp7_issue12_reserved_block_flags.hex");
    let b7 = bp7::Bundle::try_from(bytes.clone()).unwrap();
    assert!(b7.validate().is_err(), "bp7 rejects reserved block flags");
    assert!(codec::decode(&bytes).is_ok());
    // ... and block flags above 0xff do not even parse (bp7 keeps them in a u8).
    let bytes = load("reserved_block_flags.hex");
    assert!(bp7::Bundle::try_from(bytes.clone()).is_err(), "bp7 cannot hold block flags > 0xff");
    assert!(codec::decode(&bytes).is_ok());
    // Reserved bundle flags: rejected by bp7 too.
    let bytes = load("reserved_bundle_flags.hex");
    let b7 = bp7::Bundle::try_from(bytes.clone()).unwrap();
    assert!(b7.validate().is_err(), "bp7 rejects reserved bundle flags");

    // bp7-rs #15: a report-to of ipn:0.1 is silently rewritten to ipn:0.0,
    // so the primary block's CRC no longer matches when bp7 checks it.
    let bytes = load("report_to_ipn_0_1.hex");
    let mut b7 = bp7::Bundle::try_from(bytes.clone()).unwrap();
    assert_eq!(b7.primary.report_to.to_string(), "ipn:0.0");
    assert!(!b7.crc_valid(), "bp7 changed the EID, so its CRC check fails");
    assert!(codec::decode(&bytes).is_ok());

    // bp7-rs #20: a text-string payload is accepted as bytes.
    let bytes = load("payload_text_string.hex");
    assert!(bp7::Bundle::try_from(bytes.clone()).is_ok(), "bp7 accepts a text string as block data");
    assert!(matches!(codec::decode(&bytes), Err(DecodeError::BlockDataNotByteString { .. })));

    // ... and with no CRC on the block to trip over, bp7 validates it too.
    let text_payload = bundle(&[p().encode(), vec![0x85, 0x01, 0x01, 0x00, 0x00, 0x64, b't', b'e', b'x', b't']]);
    bp7::Bundle::try_from(text_payload.clone()).unwrap().validate().expect("bp7 accepts a text-string payload");
    assert!(matches!(codec::decode(&text_payload), Err(DecodeError::BlockDataNotByteString { .. })));

    // bp7 checks the dtn:none rules of §4.2.3 only in part: report requests
    // and a missing must-not-fragment flag on an anonymous bundle pass.
    for file in ["anonymous_with_report_flags.hex", "anonymous_may_fragment.hex"] {
        let b7 = bp7::Bundle::try_from(load(file)).unwrap();
        assert!(b7.validate().is_ok(), "bp7 accepts {file}");
    }
    // It takes a definite-length outer array and a tag-wrapped bundle (§4.1),
    // a hop limit of 0 (§4.4.3), a fragment beyond its ADU, and a dtn node
    // name that is a space.
    for file in [
        "definite_outer_array.hex",
        "self_describe_tag.hex",
        "hop_limit_zero.hex",
        "fragment_out_of_range.hex",
        "bad_destination_eid.hex",
    ] {
        let b7 = bp7::Bundle::try_from(load(file)).unwrap();
        assert!(b7.validate().is_ok(), "bp7 accepts {file}");
        assert!(codec::decode(&load(file)).is_err());
    }
    // It cannot read RFC 9758's three-element ipn EIDs.
    assert!(bp7::Bundle::try_from(load("ipn_three_element.hex")).is_err());

    // CRCs of indefinite-length blocks: bp7 re-encodes the block (as a
    // definite-length array) to check the CRC, so a correct CRC fails.
    let bytes = load("indefinite_primary_crc.hex");
    let mut b7 = bp7::Bundle::try_from(bytes.clone()).unwrap();
    assert!(!b7.crc_valid(), "bp7 checks the CRC of a re-encoded block");
    assert!(codec::decode(&bytes).is_ok());
    // The same goes for non-shortest heads and tag-24 block data: valid
    // bundles whose CRCs bp7 gets wrong.
    for file in ["indefinite_canonical.hex", "non_shortest_heads.hex", "tag24_block_data.hex"] {
        let mut b7 = bp7::Bundle::try_from(load(file)).unwrap();
        assert!(!b7.crc_valid(), "{file}");
        assert!(codec::decode(&load(file)).is_ok());
    }
    // bp7-rs #4 is fixed in 0.12 as far as `validate` goes: CRC type 25 parses
    // but does not validate.
    let b7 = bp7::Bundle::try_from(load("ext_bp7_issue4_crc_type_25.hex")).unwrap();
    assert!(b7.validate().is_err());

    // Hop count fields are u8 in bp7: a count of 256 (past a limit of 255,
    // which the node deletes with reason 9) is unintelligible to bp7.
    let bytes = BundleBuilder::new("ipn:1.0".parse().unwrap(), "ipn:2.1".parse().unwrap(), ts(), 1000)
        .extension_block(block_types::HOP_COUNT, 0, vec![0x82, 0x18, 0xff, 0x19, 0x01, 0x00])
        .build(b"x");
    let b7 = bp7::Bundle::try_from(bytes.clone()).unwrap();
    assert!(b7.validate().is_err());
    assert_eq!(codec::decode(&bytes).unwrap().hop_count, Some(HopCount { limit: 255, count: 256 }));
}

// --- Fixture generation ---------------------------------------------------------

const RESERVED_BUNDLE_FLAGS: u64 = 0x08 | 0x10 | 0x80 | 0x8000 | 0x10_0000 | (1 << 40);

fn ts() -> CreationTimestamp {
    CreationTimestamp { time: 780_000_000_000, seq: 42 }
}

fn eid(s: &str) -> Eid {
    s.parse().unwrap()
}

fn sample_report() -> StatusReport {
    StatusReport {
        received: Some(Some(780_000_001_000)),
        forwarded: None,
        delivered: None,
        deleted: Some(Some(780_000_002_000)),
        reason: ReasonCode::HopLimitExceeded,
        subject: BundleId { source: eid("ipn:9.0"), creation: ts(), fragment: Some((0, 512)) },
    }
}

/// Primary block fields for hand-made bundles.
#[derive(Clone)]
struct P {
    flags: u64,
    crc: CrcType,
    dst: Eid,
    src: Eid,
    rpt: Eid,
    creation: CreationTimestamp,
    lifetime: u64,
    fragment: Option<Fragment>,
}

fn p() -> P {
    P {
        flags: 0,
        crc: CrcType::Crc32c,
        dst: eid("ipn:2.1"),
        src: eid("ipn:1.0"),
        rpt: eid("ipn:1.0"),
        creation: ts(),
        lifetime: 3_600_000,
        fragment: None,
    }
}

impl P {
    fn encode(&self) -> Vec<u8> {
        let block = PrimaryBlock {
            flags: self.flags,
            crc_type: self.crc,
            destination: self.dst.clone(),
            source: self.src.clone(),
            report_to: self.rpt.clone(),
            creation: self.creation,
            lifetime_ms: self.lifetime,
            fragment: self.fragment,
            range: 0..0,
        };
        let mut out = Vec::new();
        // encode_primary_block keeps IS_FRAGMENT in step with `fragment`;
        // hand-made inconsistencies are built by other means.
        encode_primary_block(&mut out, &block, self.flags, self.fragment);
        out
    }
}

fn blk(block_type: u64, number: u64, flags: u64, crc: CrcType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_canonical_block(&mut out, block_type, number, flags, crc, data);
    out
}

fn payload(data: &[u8]) -> Vec<u8> {
    blk(1, 1, 0, CrcType::Crc32c, data)
}

fn bundle(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0x9f];
    for p in parts {
        out.extend_from_slice(p);
    }
    out.push(0xff);
    out
}

/// Fills in the CRC of a hand-made block whose CRC value starts at `value_at`.
fn seal(block: &mut [u8], crc_type: CrcType, value_at: usize) {
    let v = crc::block_crc(crc_type, block, value_at).unwrap();
    match crc_type {
        CrcType::Crc16 => block[value_at..value_at + 2].copy_from_slice(&(v as u16).to_be_bytes()),
        CrcType::Crc32c => block[value_at..value_at + 4].copy_from_slice(&v.to_be_bytes()),
        CrcType::None => {}
    }
}

/// Re-encodes a definite-length block as an indefinite-length one, CRC resealed.
fn indefinite(block: &[u8], crc_type: CrcType) -> Vec<u8> {
    assert!((0x80..=0x97).contains(&block[0]));
    let mut out = vec![0x9f];
    out.extend_from_slice(&block[1..]);
    out.push(0xff);
    if crc_type != CrcType::None {
        let at = out.len() - 1 - crc_type.len();
        out[at..at + crc_type.len()].fill(0);
        seal(&mut out, crc_type, at);
    }
    out
}

/// Re-seals the CRC-32C at the end of a definite-length block after an edit.
fn reseal(block: &mut [u8]) {
    let at = block.len() - 4;
    block[at..].fill(0);
    seal(block, CrcType::Crc32c, at);
}

struct Fixture {
    name: &'static str,
    about: String,
    bytes: Vec<u8>,
    /// `None`: valid; `Some(variant)`: invalid.
    verdict: Option<&'static str>,
}

fn fixtures() -> Vec<Fixture> {
    let mut f = Vec::new();
    let mut add = |name: &'static str, about: &str, bytes: Vec<u8>, verdict: Option<&'static str>| {
        f.push(Fixture { name, about: about.to_owned(), bytes, verdict });
    };
    let b = || BundleBuilder::new(eid("dtn://alpha/app"), eid("dtn://beta/inbox"), ts(), 3_600_000);

    // --- valid ---
    add(
        "crc16.hex",
        "CRC-16/X.25 on every block, dtn EIDs, hop count block (definite-length blocks)",
        b().crc_type(CrcType::Crc16).hop_limit(8).build(b"crc16 payload"),
        None,
    );
    add(
        "crc32c.hex",
        "CRC-32C on every block, ipn EIDs, definite-length blocks",
        BundleBuilder::new(eid("ipn:1.0"), eid("ipn:2.1"), ts(), 60_000).build(b"crc32c payload"),
        None,
    );
    {
        let prim = p().encode();
        let mut ext = blk(200, 2, 0, CrcType::Crc16, b"x");
        ext = indefinite(&ext, CrcType::Crc16);
        let pay = indefinite(&payload(b"indefinite blocks"), CrcType::Crc32c);
        add(
            "indefinite_canonical.hex",
            "canonical blocks as indefinite-length arrays, CRCs over the bytes as sent",
            bundle(&[prim, ext, pay]),
            None,
        );
    }
    {
        let prim = indefinite(&p().encode(), CrcType::Crc32c);
        add(
            "indefinite_primary_crc.hex",
            "primary block as an indefinite-length array with CRC-32C (computed over the break too)",
            bundle(&[prim, payload(b"x")]),
            None,
        );
    }
    add(
        "bib_no_primary_crc.hex",
        "primary CRC type 0 with a BIB (type 11) present: allowed by RFC 9171 4.3.1",
        bundle(&[
            P { crc: CrcType::None, ..p() }.encode(),
            blk(11, 2, 0, CrcType::Crc32c, &[0x81, 0x00, 0x01, 0x00, 0x82, 0x01, 0x00, 0x80, 0x80]),
            payload(b"signed"),
        ]),
        None,
    );
    add(
        "reserved_bundle_flags.hex",
        "reserved and unassigned bundle processing flags set: ignored (4.2.3)",
        bundle(&[P { flags: RESERVED_BUNDLE_FLAGS, ..p() }.encode(), payload(b"x")]),
        None,
    );
    add(
        "reserved_block_flags.hex",
        "reserved and unassigned block processing flags (0xe8, bit 40) set: ignored (4.2.4)",
        bundle(&[
            p().encode(),
            blk(200, 2, 0x68 | (1 << 40), CrcType::Crc32c, b""),
            blk(1, 1, 0xe8 | (1 << 40), CrcType::Crc32c, b"x"),
        ]),
        None,
    );
    add(
        "creation_time_zero_with_age.hex",
        "creation time 0 with a bundle age block (4.4.2)",
        BundleBuilder::new(
            eid("dtn://alpha/app"),
            eid("dtn://beta/inbox"),
            CreationTimestamp { time: 0, seq: 77 },
            60_000,
        )
        .bundle_age(5000)
        .build(b"no clock"),
        None,
    );
    add(
        "hop_count.hex",
        "hop count block [30, 3]",
        bundle(&[p().encode(), blk(10, 2, 0, CrcType::Crc32c, &[0x82, 0x18, 30, 3]), payload(b"x")]),
        None,
    );
    add(
        "hop_count_exceeded.hex",
        "hop count [2, 3]: decodable; the node deletes it with reason 9",
        bundle(&[p().encode(), blk(10, 2, 0, CrcType::Crc32c, &[0x82, 2, 3]), payload(b"x")]),
        None,
    );
    add(
        "previous_node.hex",
        "previous node block dtn://prev/",
        b().previous_node(eid("dtn://prev/")).build(b"x"),
        None,
    );
    add(
        "report_to_ipn_0_1.hex",
        "report-to ipn:0.1 (bp7-rs #15): a valid EID under RFC 9171",
        bundle(&[P { rpt: Eid::Ipn { node: 0, service: 1 }, ..p() }.encode(), payload(b"x")]),
        None,
    );
    add(
        "fragment.hex",
        "a fragment: offset 100, total ADU length 300, 50-byte payload",
        b().fragment(100, 300).build(&[7; 50]),
        None,
    );
    add(
        "unknown_block_type.hex",
        "an extension block of unknown type 200: valid, listed as unsupported",
        bundle(&[
            p().encode(),
            blk(200, 2, block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE, CrcType::Crc32c, b"?"),
            payload(b"x"),
        ]),
        None,
    );
    add(
        "admin_record.hex",
        "an administrative record: a status report about a fragment",
        BundleBuilder::new(eid("ipn:3.0"), eid("ipn:9.0"), ts(), 60_000)
            .report_to(Eid::Null)
            .flags(bundle_flags::ADMIN_RECORD)
            .build(&admin::encode_status_report(&sample_report())),
        None,
    );
    add(
        "anonymous.hex",
        "source dtn:none with must-not-fragment and no report requests",
        bundle(&[
            P { src: Eid::Null, rpt: Eid::Null, flags: bundle_flags::MUST_NOT_FRAGMENT, ..p() }.encode(),
            payload(b"x"),
        ]),
        None,
    );
    {
        // Lifetime as a 9-byte head, block number as a 3-byte head, payload length as a 2-byte head.
        let mut prim = P { crc: CrcType::None, ..p() }.encode();
        let life = [0x1a, 0x00, 0x36, 0xee, 0x80];
        let at = prim.windows(5).position(|w| w == life).unwrap();
        prim.splice(at..at + 5, [0x1b, 0, 0, 0, 0, 0x00, 0x36, 0xee, 0x80]);
        prim[0] = 0x89;
        prim[3] = 2; // the CRC type field (after 0x89, 7, 0)
        prim.extend_from_slice(&[0x44, 0, 0, 0, 0]);
        let n = prim.len();
        seal(&mut prim, CrcType::Crc32c, n - 4);
        let mut pay = vec![0x86, 0x01, 0x19, 0x00, 0x01, 0x00, 0x02, 0x58, 0x01, b'x', 0x44, 0, 0, 0, 0];
        reseal(&mut pay);
        add(
            "non_shortest_heads.hex",
            "non-shortest CBOR heads (lifetime, block number, byte string length): accepted",
            bundle(&[prim, pay]),
            None,
        );
    }
    {
        let mut pay = vec![0x86, 0x01, 0x01, 0x00, 0x02, 0xd8, 0x18, 0x41, b'x', 0x44, 0, 0, 0, 0];
        reseal(&mut pay);
        add(
            "tag24_block_data.hex",
            "block data tagged 24 (encoded CBOR), as RFC 9171 Appendix B allows",
            bundle(&[p().encode(), pay]),
            None,
        );
    }
    {
        let mut prim = P { crc: CrcType::None, dst: eid("ipn:1.1"), ..p() }.encode();
        // Replace destination [2, [1, 1]] by [2, [977, 5, 1]] (RFC 9758).
        let at = prim.windows(5).position(|w| w == [0x82, 0x02, 0x82, 0x01, 0x01]).unwrap();
        prim.splice(at..at + 5, [0x82, 0x02, 0x83, 0x19, 0x03, 0xd1, 0x05, 0x01]);
        prim[0] = 0x89;
        prim[3] = 2;
        prim.extend_from_slice(&[0x44, 0, 0, 0, 0]);
        let n = prim.len();
        seal(&mut prim, CrcType::Crc32c, n - 4);
        add(
            "ipn_three_element.hex",
            "destination in RFC 9758's three-element ipn form [977, 5, 1]",
            bundle(&[prim, payload(b"x")]),
            None,
        );
    }
    {
        let mut b7 = bp7_bundle(bp7::crc::CRC_32, true);
        add(
            "bp7_crc32.hex",
            "made by bp7 0.12 with set_crc(CRC_32): hop count, bundle age, previous node",
            b7.to_cbor(),
            None,
        );
    }
    add(
        "ext_bp7_issue12_reserved_block_flags.hex",
        "bp7-rs issue #12: payload block flags 0xf9 (reserved bits): valid per 4.2.4",
        hex("9f89071844018202820301820100820100821b000000b5998c982b011a000493e042c9f68506021000458202820200850704010042183485010118f9004454455354ff"),
        None,
    );
    add(
        "ext_bp7_issue6_creation_time_zero.hex",
        "bp7-rs issue #6: creation time 0 with a bundle age block numbered 166",
        hex("9f890718440182028203018201008201008200011a000493e042a2218506021000458202820200850718a6010042183485010101004454455354ff"),
        None,
    );

    // --- invalid ---
    {
        let mut bytes = b().build(b"x");
        let d = codec::decode(&bytes).unwrap();
        bytes[d.primary.range.end - 1] ^= 1;
        add("bad_crc_primary.hex", "the primary block's CRC-32C is off by one bit", bytes, Some("CrcMismatch"));
        let mut bytes = b().crc_type(CrcType::Crc16).build(b"x");
        let d = codec::decode(&bytes).unwrap();
        bytes[d.payload().data.start] ^= 0x20;
        add("bad_crc_canonical.hex", "a payload byte changed under a CRC-16", bytes, Some("CrcMismatch"));
    }
    {
        let mut pay = vec![0x86, 0x01, 0x01, 0x00, 0x03, 0x41, b'x', 0x44, 0, 0, 0, 0];
        reseal(&mut pay);
        add("crc_type_3.hex", "payload block with CRC type 3", bundle(&[p().encode(), pay]), Some("InvalidCrcType"));
        let mut pay = vec![0x86, 0x01, 0x01, 0x00, 0x02, 0x41, b'x', 0x42, 0, 0];
        let n = pay.len();
        seal(&mut pay, CrcType::Crc16, n - 2);
        add(
            "crc_value_wrong_length.hex",
            "CRC type 2 with a 2-byte CRC value",
            bundle(&[p().encode(), pay]),
            Some("CrcValueLength"),
        );
    }
    add(
        "no_primary_crc.hex",
        "primary CRC type 0 and no BIB (4.3.1)",
        bundle(&[P { crc: CrcType::None, ..p() }.encode(), payload(b"x")]),
        Some("PrimaryCrcMissing"),
    );
    {
        let mut std = bp7::bundle::new_std_payload_bundle(
            bp7_eid(&eid("dtn://node1/app")),
            bp7_eid(&eid("dtn://node2/inbox")),
            b"bp7 default".to_vec(),
        );
        std.primary.creation_timestamp = bp7::CreationTimestamp::with_time_and_seq(780_000_000_000, 0);
        add(
            "bp7_default.hex",
            "bp7 0.12 new_std_payload_bundle as is: no CRC on any block, so the primary block is unprotected (4.3.1)",
            std.to_cbor(),
            Some("PrimaryCrcMissing"),
        );
    }
    add(
        "ext_bp7_issue16_no_primary_crc.hex",
        "bp7-rs issue #16: primary block without CRC, no BIB",
        hex("9f88071844008202820301820100820100821b000000b5998c982b011a000493e08506021000458202820200850704010042183485010101004454455354ff"),
        Some("PrimaryCrcMissing"),
    );
    add(
        "ext_bp7_issue15_report_to_ipn_0_1.hex",
        "bp7-rs issue #15 (report-to ipn:0.1): that bundle's primary block also has no CRC and no BIB",
        hex("9f88070000820282020182028201018202820001821b00ff00bb0e20b4ea001a000927c08507020100410085010100004d48656c6f2c20576f726c642142ff"),
        Some("PrimaryCrcMissing"),
    );
    {
        let mut pay = vec![0x86, 0x01, 0x01, 0x00, 0x02, 0x64, b't', b'e', b'x', b't', 0x44, 0, 0, 0, 0];
        reseal(&mut pay);
        add(
            "payload_text_string.hex",
            "payload data as a text string (bp7-rs #20)",
            bundle(&[p().encode(), pay]),
            Some("BlockDataNotByteString"),
        );
        let mut pay = vec![0x86, 0x01, 0x01, 0x00, 0x02, 0x5f, 0x41, b'x', 0xff, 0x44, 0, 0, 0, 0];
        reseal(&mut pay);
        add(
            "payload_indefinite_bytes.hex",
            "payload data as an indefinite-length byte string (4.3.2)",
            bundle(&[p().encode(), pay]),
            Some("BlockDataNotByteString"),
        );
    }
    add(
        "payload_not_last.hex",
        "an extension block after the payload block (4.1)",
        bundle(&[p().encode(), payload(b"x"), blk(200, 2, 0, CrcType::Crc32c, b"")]),
        Some("PayloadNotLast"),
    );
    add(
        "ext_bp7_issue5_payload_not_last.hex",
        "bp7-rs issue #5: bundle age block after the payload block",
        hex("9f89071844018202820301820100820100821b000000b5998c982b011a000493e042c9f68506021000458202820200850101010044544553548507040100421834ff"),
        Some("PayloadNotLast"),
    );
    add(
        "two_payloads.hex",
        "two payload blocks (4.1)",
        bundle(&[p().encode(), payload(b"x"), payload(b"y")]),
        Some("DuplicatePayload"),
    );
    add(
        "duplicate_block_numbers.hex",
        "two extension blocks numbered 2 (4.1)",
        bundle(&[
            p().encode(),
            blk(200, 2, 0, CrcType::Crc32c, b""),
            blk(201, 2, 0, CrcType::Crc32c, b""),
            payload(b"x"),
        ]),
        Some("DuplicateBlockNumber"),
    );
    add(
        "block_number_zero.hex",
        "an extension block numbered 0, the primary block's number (4.1)",
        bundle(&[p().encode(), blk(200, 0, 0, CrcType::Crc32c, b""), payload(b"x")]),
        Some("InvalidBlockNumber"),
    );
    add(
        "ext_ion53_payload_number_33.hex",
        "ION-DTN issue #53: payload block numbered 33 (4.1: always 1)",
        hex("9f89071844018202820301820100820100821b000000b5998c982b011a000493e042c9f6850602100045820282020085070401004218348501182101004454455354ff"),
        Some("InvalidBlockNumber"),
    );
    add(
        "ext_bp7_issue4_crc_type_25.hex",
        "bp7-rs issue #4: payload block with CRC type 25",
        hex("9f89071844018202820301820100820100821b000000b5998c982b011a000493e042c9f6850602100045820282020085070401004218348501010118194454455354ff"),
        Some("InvalidCrcType"),
    );
    add(
        "creation_time_zero_without_age.hex",
        "creation time 0 and no bundle age block (4.4.2)",
        bundle(&[P { creation: CreationTimestamp { time: 0, seq: 3 }, ..p() }.encode(), payload(b"x")]),
        Some("MissingBundleAge"),
    );
    add(
        "two_previous_node_blocks.hex",
        "two previous node blocks (4.4.1)",
        bundle(&[
            p().encode(),
            blk(6, 2, 0, CrcType::Crc32c, &[0x82, 0x02, 0x82, 0x03, 0x00]),
            blk(6, 3, 0, CrcType::Crc32c, &[0x82, 0x02, 0x82, 0x04, 0x00]),
            payload(b"x"),
        ]),
        Some("DuplicateExtensionBlock"),
    );
    add(
        "hop_limit_zero.hex",
        "hop count block with limit 0 (4.4.3: 1 through 255)",
        bundle(&[p().encode(), blk(10, 2, 0, CrcType::Crc32c, &[0x82, 0, 0]), payload(b"x")]),
        Some("HopLimitOutOfRange"),
    );
    add(
        "anonymous_with_report_flags.hex",
        "source dtn:none requesting delivery reports (4.2.3)",
        bundle(&[
            P { src: Eid::Null, flags: bundle_flags::MUST_NOT_FRAGMENT | bundle_flags::REPORT_DELIVERY, ..p() }
                .encode(),
            payload(b"x"),
        ]),
        Some("StatusReportsForbidden"),
    );
    add(
        "admin_record_with_report_flags.hex",
        "an administrative record requesting reception reports (4.2.3)",
        bundle(&[
            P { flags: bundle_flags::ADMIN_RECORD | bundle_flags::REPORT_RECEPTION, ..p() }.encode(),
            payload(&[0x82, 0x07, 0x00]),
        ]),
        Some("StatusReportsForbidden"),
    );
    add(
        "anonymous_may_fragment.hex",
        "source dtn:none without the must-not-fragment flag (4.2.3)",
        bundle(&[P { src: Eid::Null, ..p() }.encode(), payload(b"x")]),
        Some("AnonymousFragmentable"),
    );
    add(
        "ext_hardy248_anonymous_block_report_flag.hex",
        "Hardy issue #248: dtn:none source, a block flagged 'report if unprocessable' (4.2.4)",
        hex("9f89071844018202820301820100820100821b000000b5998c982b011a000493e042c9f6850602182700458202820200850704010042183485010101004454455354ff"),
        Some("BlockStatusReportForbidden"),
    );
    {
        let bytes = b().build(b"truncated payload");
        add("truncated.hex", "a valid bundle cut 5 bytes short", bytes[..bytes.len() - 5].to_vec(), Some("Cbor"));
        let mut bytes = b().build(b"x");
        bytes.extend_from_slice(&[0x00, 0xde, 0xad]);
        add("trailing_garbage.hex", "three bytes after the bundle's break", bytes, Some("TrailingBytes"));
        let mut bytes = b().build(b"x");
        bytes[0] = 0x82;
        bytes.pop();
        add(
            "definite_outer_array.hex",
            "the bundle as a definite-length array of 2 (4.1)",
            bytes,
            Some("NotIndefiniteArray"),
        );
        let mut bytes = vec![0xd9, 0xd9, 0xf7];
        bytes.extend(b().build(b"x"));
        add("self_describe_tag.hex", "the bundle wrapped in tag 55799", bytes, Some("NotIndefiniteArray"));
    }
    {
        let mut prim = p().encode();
        prim[1] = 6;
        let n = prim.len();
        prim[n - 4..].fill(0);
        seal(&mut prim, CrcType::Crc32c, n - 4);
        add("version_6.hex", "primary block version 6", bundle(&[prim, payload(b"x")]), Some("UnsupportedVersion"));
    }
    {
        // 9 elements: crc type 0 and not a fragment, plus one extra field.
        let mut prim = P { crc: CrcType::None, ..p() }.encode();
        prim[0] = 0x89;
        prim.push(0x00);
        add(
            "primary_wrong_length.hex",
            "primary block of 9 elements with CRC type 0 and no fragment fields (4.3.1)",
            bundle(&[prim, blk(11, 2, 0, CrcType::None, b""), payload(b"x")]),
            Some("PrimaryBlockLength"),
        );
        let pay = vec![0x86, 0x01, 0x01, 0x00, 0x00, 0x41, b'x', 0x00];
        add(
            "canonical_wrong_length.hex",
            "canonical block of 6 elements with CRC type 0 (4.3.2)",
            bundle(&[p().encode(), pay]),
            Some("BlockLength"),
        );
    }
    {
        let mut prim = P { crc: CrcType::None, ..p() }.encode();
        // source ipn:1.0 [2, [1, 0]] -> scheme 3
        let at = prim.windows(5).position(|w| w == [0x82, 0x02, 0x82, 0x01, 0x00]).unwrap();
        prim[at + 1] = 3;
        prim[0] = 0x89;
        prim[3] = 2;
        prim.extend_from_slice(&[0x44, 0, 0, 0, 0]);
        let n = prim.len();
        seal(&mut prim, CrcType::Crc32c, n - 4);
        add("unknown_eid_scheme.hex", "source EID with URI scheme code 3", bundle(&[prim, payload(b"x")]), Some("Eid"));
        let mut prim = P { dst: eid("dtn://x/"), ..p() }.encode();
        let at = prim.windows(4).position(|w| w == b"//x/").unwrap();
        prim[at + 2] = b' '; // "//x/" -> "// /": a node name that is a space
        let n = prim.len();
        prim[n - 4..].fill(0);
        seal(&mut prim, CrcType::Crc32c, n - 4);
        add(
            "bad_destination_eid.hex",
            "destination dtn EID whose node name has a space (reason 5)",
            bundle(&[prim, payload(b"x")]),
            Some("Eid"),
        );
    }
    add(
        "fragment_out_of_range.hex",
        "fragment at offset 290 of a 300-byte ADU with a 50-byte payload",
        b().fragment(290, 300).build(&[1; 50]),
        Some("FragmentOutOfRange"),
    );
    add(
        "no_payload.hex",
        "a primary block and an extension block only (4.1)",
        bundle(&[p().encode(), blk(200, 2, 0, CrcType::Crc32c, b"")]),
        Some("MissingPayload"),
    );
    {
        let mut prim = p().encode();
        let life = [0x1a, 0x00, 0x36, 0xee, 0x80];
        let at = prim.windows(5).position(|w| w == life).unwrap();
        prim[at] = 0x3a; // major type 1: -3600001
        let n = prim.len();
        prim[n - 4..].fill(0);
        seal(&mut prim, CrcType::Crc32c, n - 4);
        add(
            "negative_lifetime.hex",
            "lifetime as a CBOR negative integer",
            bundle(&[prim, payload(b"x")]),
            Some("Cbor"),
        );
    }
    f
}

fn hex(s: &str) -> Vec<u8> {
    parse_hex(s)
}

#[test]
fn generated_fixtures_are_the_committed_ones() {
    // Guards against editing the table without regenerating (the bp7 bytes
    // and everything else are deterministic).
    for fx in fixtures() {
        assert_eq!(load(fx.name), fx.bytes, "{} differs from the generator: regenerate the fixtures", fx.name);
        let v = verdicts();
        assert_eq!(v.get(fx.name).cloned().flatten().as_deref(), fx.verdict, "{}", fx.name);
    }
}

#[test]
#[ignore = "writes tests/fixtures; run by hand after changing the table"]
fn regenerate_fixtures() {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut verdicts = String::from(
        "# Expected verdicts of RFC 9171 decoding for every fixture in this folder.\n\
         # <file> valid | <file> invalid <DecodeError variant>\n\
         # Generated by tests/conformance.rs regenerate_fixtures.\n",
    );
    for fx in fixtures() {
        let mut text = format!("# {}\n", fx.about);
        for chunk in to_hex(&fx.bytes).as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(chunk).unwrap());
            text.push('\n');
        }
        std::fs::write(dir.join(fx.name), text).unwrap();
        match fx.verdict {
            None => verdicts.push_str(&format!("{} valid\n", fx.name)),
            Some(v) => verdicts.push_str(&format!("{} invalid {v}\n", fx.name)),
        }
    }
    std::fs::write(dir.join("verdicts.txt"), verdicts).unwrap();
}
