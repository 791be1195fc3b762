use super::*;
use crate::bundle::{block_flags, block_types, bundle_flags, CrcType, CreationTimestamp, HopCount};
use crate::cbor::write_uint;
use crate::eid::Eid;

fn eid(s: &str) -> Eid {
    s.parse().unwrap()
}

fn ts(time: u64, seq: u64) -> CreationTimestamp {
    CreationTimestamp { time, seq }
}

fn builder() -> BundleBuilder {
    BundleBuilder::new(eid("dtn://src/app"), eid("dtn://dst/inbox"), ts(700_000_000_000, 5), 3_600_000)
}

fn full_bundle(crc: CrcType) -> Vec<u8> {
    builder()
        .crc_type(crc)
        .report_to(eid("ipn:9.0"))
        .flags(bundle_flags::REPORT_DELIVERY | bundle_flags::STATUS_TIME_REQUESTED)
        .hop_limit(30)
        .bundle_age(1234)
        .previous_node(eid("ipn:3.0"))
        .extension_block(200, block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE, vec![0xde, 0xad])
        .extension_block(201, block_flags::REPLICATE_IN_FRAGMENTS, vec![1, 2, 3])
        .build(&[0x55; 1000])
}

/// Wraps blocks into a bundle.
fn wrap(blocks: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x9f];
    for b in blocks {
        out.extend_from_slice(b);
    }
    out.push(0xff);
    out
}

fn block(block_type: u64, number: u64, flags: u64, crc: CrcType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_canonical_block(&mut out, block_type, number, flags, crc, data);
    out
}

fn primary_of(bytes: &[u8]) -> Vec<u8> {
    let b = decode(bytes).unwrap();
    bytes[b.primary.range].to_vec()
}

#[test]
fn builder_output_decodes_with_every_crc_type() {
    for crc in [CrcType::Crc16, CrcType::Crc32c] {
        let bytes = full_bundle(crc);
        let b = decode(&bytes).unwrap();
        assert_eq!(b.primary.crc_type, crc);
        assert_eq!(b.primary.source, eid("dtn://src/app"));
        assert_eq!(b.primary.destination, eid("dtn://dst/inbox"));
        assert_eq!(b.primary.report_to, eid("ipn:9.0"));
        assert_eq!(b.primary.creation, ts(700_000_000_000, 5));
        assert_eq!(b.primary.lifetime_ms, 3_600_000);
        assert_eq!(b.previous_node, Some(eid("ipn:3.0")));
        assert_eq!(b.bundle_age_ms, Some(1234));
        assert_eq!(b.hop_count, Some(HopCount { limit: 30, count: 0 }));
        assert_eq!(b.unsupported_blocks, vec![5, 6]);
        let numbers: Vec<u64> = b.blocks.iter().map(|b| b.number).collect();
        assert_eq!(numbers, [2, 3, 4, 5, 6, 1]);
        assert_eq!(&bytes[b.payload().data.clone()], &[0x55; 1000][..]);
        assert!(b.blocks.iter().all(|blk| blk.crc_type == crc));
        assert_eq!(b.primary.range.start, 1);
        assert_eq!(b.payload().range.end, bytes.len() - 1);
    }
}

#[test]
fn builder_enforces_the_rfc_on_requests() {
    // Anonymous: must-not-fragment set, report requests and block report flags dropped.
    let bytes = BundleBuilder::new(Eid::Null, eid("ipn:1.1"), ts(0, 7), 1000)
        .flags(bundle_flags::REPORT_ANY)
        .extension_block(99, block_flags::REPORT_IF_UNPROCESSABLE | block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE, vec![])
        .hop_limit(1000)
        .build(b"x");
    let b = decode(&bytes).unwrap();
    assert_eq!(b.primary.flags, bundle_flags::MUST_NOT_FRAGMENT);
    assert_eq!(b.primary.report_to, Eid::Null);
    // Creation time 0: a bundle age block of 0 was added.
    assert_eq!(b.bundle_age_ms, Some(0));
    assert_eq!(b.hop_count, Some(HopCount { limit: 255, count: 0 }));
    assert_eq!(b.block(4).unwrap().flags, block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE);
    // Admin record: no report requests.
    let bytes = builder().flags(bundle_flags::ADMIN_RECORD | bundle_flags::REPORT_RECEPTION).build(b"x");
    assert_eq!(decode(&bytes).unwrap().primary.flags, bundle_flags::ADMIN_RECORD);
    // Fragment flag follows fragment().
    let bytes = builder().flags(bundle_flags::IS_FRAGMENT).build(b"x");
    assert_eq!(decode(&bytes).unwrap().primary.fragment, None);
    let bytes = builder().fragment(10, 11).build(b"x");
    let b = decode(&bytes).unwrap();
    assert_eq!(b.primary.fragment, Some(crate::bundle::Fragment { offset: 10, total_adu_len: 11 }));
    assert_eq!(b.id().fragment, Some((10, 1)));
}

#[test]
fn eids_round_trip() {
    for s in [
        "dtn:none",
        "dtn://n/",
        "dtn://node-1/a/b~c",
        "ipn:0.0",
        "ipn:0.1",
        "ipn:4294967296.7",
        "ipn:1.18446744073709551615",
    ] {
        let e = eid(s);
        let mut out = Vec::new();
        encode_eid(&mut out, &e);
        assert_eq!(out.len(), encoded_eid_len(&e), "{s}");
        assert_eq!(decode_eid_exact(&out).unwrap(), e, "{s}");
    }
}

#[test]
fn eid_decoding_rules() {
    // RFC 9758 three-element ipn form: [allocator, node, service].
    assert_eq!(decode_eid_exact(&[0x82, 0x02, 0x83, 0x01, 0x05, 0x07]).unwrap(), eid("ipn:4294967301.7"));
    assert_eq!(
        decode_eid_exact(&[0x82, 0x02, 0x83, 0x1b, 1, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x07]),
        Err(EidDecodeError::IpnComponentRange)
    );
    assert!(matches!(decode_eid_exact(&[0x82, 0x02, 0x81, 0x01]), Err(EidDecodeError::IpnShape { .. })));
    assert!(matches!(decode_eid_exact(&[0x82, 0x02, 0x84, 1, 2, 3, 4]), Err(EidDecodeError::IpnShape { .. })));
    assert_eq!(decode_eid_exact(&[0x82, 0x03, 0x00]), Err(EidDecodeError::UnknownScheme { scheme: 3 }));
    assert_eq!(decode_eid_exact(&[0x82, 0x01, 0x01]), Err(EidDecodeError::DtnNone));
    assert_eq!(decode_eid_exact(&[0x82, 0x01, 0x64, b'n', b'o', b'n', b'e']), Err(EidDecodeError::DtnNone));
    assert!(matches!(decode_eid_exact(&[0x82, 0x01, 0x61, b'x']), Err(EidDecodeError::Dtn(_))));
    assert!(matches!(decode_eid_exact(&[0x83, 0x01, 0x00, 0x00]), Err(EidDecodeError::Shape { .. })));
    assert!(matches!(decode_eid_exact(&[0x81, 0x01]), Err(EidDecodeError::Shape { .. })));
    // Indefinite-length arrays are fine.
    assert_eq!(decode_eid_exact(&[0x9f, 0x02, 0x9f, 0x01, 0x02, 0xff, 0xff]).unwrap(), eid("ipn:1.2"));
}

#[test]
fn every_truncation_fails_and_no_corruption_panics() {
    for crc in [CrcType::Crc16, CrcType::Crc32c] {
        let bytes = builder().crc_type(crc).hop_limit(9).previous_node(eid("dtn://p/")).build(b"hello world");
        assert!(decode(&bytes).is_ok());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut accepted = 0;
        for i in 0..bytes.len() {
            for x in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                if decode(&b).is_ok() {
                    accepted += 1;
                }
            }
        }
        // With a CRC on every block, only flips in the outer array framing
        // could slip through; there is none that does.
        assert_eq!(accepted, 0);
    }
}

#[test]
fn corruption_without_crcs_never_panics() {
    // No CRCs anywhere (a BIB stands in for the primary's): corruptions reach
    // every field decoder instead of being stopped by a CRC.
    let bytes = builder()
        .crc_type(CrcType::None)
        .hop_limit(9)
        .previous_node(eid("ipn:1.0"))
        .extension_block(block_types::BIB, 0, vec![0x81, 0x00])
        .build(b"hello");
    decode(&bytes).unwrap();
    for i in 0..bytes.len() {
        for v in 0..=255u8 {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = decode(&b);
        }
    }
}

#[test]
fn rejects_definite_outer_array_and_trailing_bytes() {
    let mut bytes = full_bundle(CrcType::Crc32c);
    bytes.push(0);
    assert!(matches!(decode(&bytes), Err(DecodeError::TrailingBytes { len: 1, .. })));
    bytes.pop();
    bytes[0] = 0x87;
    assert_eq!(decode(&bytes), Err(DecodeError::NotIndefiniteArray { initial: 0x87 }));
    assert_eq!(decode(&[]), Err(DecodeError::Cbor(crate::cbor::CborError::Truncated { offset: 0 })));
}

#[test]
fn block_rules() {
    let base = builder().build(b"x");
    let p = primary_of(&base);
    let pay = block(1, 1, 0, CrcType::Crc32c, b"x");
    let ext = |n: u64| block(200, n, 0, CrcType::Crc32c, b"");
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (wrap(&[&p]), DecodeError::MissingPayload),
        (wrap(&[&p, &pay, &ext(2)]), DecodeError::PayloadNotLast { block_number: 2 }),
        (wrap(&[&p, &pay, &pay]), DecodeError::DuplicatePayload),
        (wrap(&[&p, &ext(2), &ext(2), &pay]), DecodeError::DuplicateBlockNumber { block_number: 2 }),
        (wrap(&[&p, &ext(0), &pay]), DecodeError::InvalidBlockNumber { block_type: 200, block_number: 0 }),
        (wrap(&[&p, &ext(1), &pay]), DecodeError::InvalidBlockNumber { block_type: 200, block_number: 1 }),
        (
            wrap(&[&p, &block(1, 2, 0, CrcType::Crc32c, b"x")]),
            DecodeError::InvalidBlockNumber { block_type: 1, block_number: 2 },
        ),
        (
            wrap(&[&p, &block(7, 2, 0, CrcType::Crc32c, &[0x01]), &block(7, 3, 0, CrcType::Crc32c, &[0x02]), &pay]),
            DecodeError::DuplicateExtensionBlock { block_type: 7 },
        ),
        (
            wrap(&[&p, &block(7, 2, 0, CrcType::Crc32c, &[0x01, 0x02]), &pay]),
            DecodeError::ExtensionBlockContent { block_type: 7, block_number: 2 },
        ),
        (
            wrap(&[&p, &block(10, 2, 0, CrcType::Crc32c, &[0x82, 0x00, 0x00]), &pay]),
            DecodeError::HopLimitOutOfRange { limit: 0 },
        ),
        (
            wrap(&[&p, &block(10, 2, 0, CrcType::Crc32c, &[0x82, 0x19, 0x01, 0x00, 0x00]), &pay]),
            DecodeError::HopLimitOutOfRange { limit: 256 },
        ),
        (
            wrap(&[&p, &block(10, 2, 0, CrcType::Crc32c, &[0x81, 0x05]), &pay]),
            DecodeError::ExtensionBlockContent { block_type: 10, block_number: 2 },
        ),
        (
            wrap(&[&p, &block(6, 2, 0, CrcType::Crc32c, &[0x82, 0x01, 0x61, b'x']), &pay]),
            DecodeError::ExtensionBlockContent { block_type: 6, block_number: 2 },
        ),
    ];
    for (bytes, expect) in cases {
        assert_eq!(decode(&bytes), Err(expect));
    }
    // A hop count above its limit decodes; the node deletes it (reason 9).
    let over = wrap(&[&p, &block(10, 2, 0, CrcType::Crc32c, &[0x82, 0x05, 0x06]), &pay]);
    assert_eq!(decode(&over).unwrap().hop_count, Some(HopCount { limit: 5, count: 6 }));
    // Unknown block flags are ignored (§4.2.4).
    let flagged =
        wrap(&[&p, &block(200, 2, 0xffff_ff00, CrcType::Crc32c, b""), &block(1, 1, 0xe8, CrcType::Crc32c, b"x")]);
    assert_eq!(decode(&flagged).unwrap().unsupported_blocks, vec![2]);
}

#[test]
fn too_many_blocks_is_bounded() {
    let base = builder().crc_type(CrcType::None).extension_block(block_types::BIB, 0, vec![]).build(b"x");
    let p = primary_of(&base);
    let mut parts: Vec<Vec<u8>> = vec![p];
    for n in 0..(MAX_BLOCKS as u64 + 1) {
        parts.push(block(11, n + 2, 0, CrcType::None, b""));
    }
    parts.push(block(1, 1, 0, CrcType::None, b"x"));
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    assert_eq!(decode(&wrap(&refs)), Err(DecodeError::TooManyBlocks { limit: MAX_BLOCKS }));
    let refs: Vec<&[u8]> = parts[..MAX_BLOCKS].iter().chain(parts.last()).map(|p| p.as_slice()).collect();
    assert_eq!(decode(&wrap(&refs)).unwrap().blocks.len(), MAX_BLOCKS);
}

#[test]
fn reason_codes() {
    let destination = DecodeError::Eid { field: EidField::Destination, error: EidDecodeError::DtnNone };
    assert_eq!(destination.reason_code(), ReasonCode::DestinationEidUnintelligible);
    let source = DecodeError::Eid { field: EidField::Source, error: EidDecodeError::DtnNone };
    assert_eq!(source.reason_code(), ReasonCode::BlockUnintelligible);
    assert_eq!(DecodeError::MissingPayload.reason_code(), ReasonCode::BlockUnintelligible);
}

// --- Forwarding ----------------------------------------------------------------

#[test]
fn rewrite_replaces_updates_and_discards() {
    for crc in [CrcType::Crc16, CrcType::Crc32c] {
        let bytes = full_bundle(crc);
        let b = decode(&bytes).unwrap();
        let edit = ForwardEdit {
            previous_node: eid("dtn://me/"),
            bundle_age_ms: Some(99_999),
            hop_count: Some(HopCount { limit: 30, count: 1 }),
            discard_blocks: vec![5],
            copies: None,
        };
        let out = rewrite_for_forward(&bytes, &b, &edit);
        let o = decode(&out).unwrap();
        assert_eq!(&out[o.primary.range.clone()], &bytes[b.primary.range.clone()]);
        assert_eq!(o.previous_node, Some(eid("dtn://me/")));
        assert_eq!(o.bundle_age_ms, Some(99_999));
        assert_eq!(o.hop_count, Some(HopCount { limit: 30, count: 1 }));
        assert!(o.block(5).is_none());
        assert_eq!(o.unsupported_blocks, vec![6]);
        // Numbers, flags and CRC types kept.
        let numbers: Vec<u64> = o.blocks.iter().map(|b| b.number).collect();
        assert_eq!(numbers, [2, 3, 4, 6, 1]);
        assert!(o.blocks.iter().all(|blk| blk.crc_type == crc));
        // Unchanged blocks verbatim.
        assert_eq!(&out[o.block(6).unwrap().range.clone()], &bytes[b.block(6).unwrap().range.clone()]);
        assert_eq!(&out[o.payload().range.clone()], &bytes[b.payload().range.clone()]);
    }
}

#[test]
fn rewrite_inserts_missing_blocks() {
    let bytes = builder().crc_type(CrcType::Crc16).build(b"payload");
    let b = decode(&bytes).unwrap();
    let edit = ForwardEdit {
        previous_node: eid("ipn:7.0"),
        bundle_age_ms: Some(5),
        hop_count: Some(HopCount { limit: 3, count: 1 }),
        discard_blocks: vec![1],
        copies: None,
    };
    let out = rewrite_for_forward(&bytes, &b, &edit);
    let o = decode(&out).unwrap();
    assert_eq!(o.previous_node, Some(eid("ipn:7.0")));
    assert_eq!(o.bundle_age_ms, Some(5));
    assert_eq!(o.hop_count, Some(HopCount { limit: 3, count: 1 }));
    assert_eq!(&out[o.payload().data.clone()], b"payload");
    let numbers: Vec<u64> = o.blocks.iter().map(|b| b.number).collect();
    assert_eq!(numbers, [2, 3, 4, 1]);
    assert!(o.blocks.iter().all(|blk| blk.crc_type == CrcType::Crc16));
    // Idempotent in shape: forwarding again keeps one of each.
    let again = rewrite_for_forward(&out, &o, &ForwardEdit { discard_blocks: vec![], ..edit });
    assert_eq!(decode(&again).unwrap().blocks.len(), 4);
}

#[test]
fn rewrite_sets_replaces_and_drops_the_copy_count() {
    let bytes = builder().build(b"payload");
    let b = decode(&bytes).unwrap();
    assert_eq!(b.copy_count, None);
    let edit = ForwardEdit {
        previous_node: eid("ipn:7.0"),
        bundle_age_ms: None,
        hop_count: None,
        discard_blocks: vec![],
        copies: Some(4),
    };
    let four = rewrite_for_forward(&bytes, &b, &edit);
    let o = decode(&four).unwrap();
    assert_eq!(o.copy_count, Some(4));
    assert!(o.unsupported_blocks.is_empty());
    let copy_block = o.blocks.iter().find(|blk| blk.block_type == block_types::COPY_COUNT).unwrap();
    assert_eq!(copy_block.flags, block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE);
    let two = rewrite_for_forward(&four, &o, &ForwardEdit { copies: Some(2), ..edit.clone() });
    let t = decode(&two).unwrap();
    assert_eq!(t.copy_count, Some(2));
    assert_eq!(t.blocks.len(), o.blocks.len());
    let none = rewrite_for_forward(&two, &t, &ForwardEdit { copies: None, ..edit });
    assert_eq!(decode(&none).unwrap().copy_count, None);
}

// --- Fragmentation ---------------------------------------------------------------

fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

#[test]
fn fragment_and_reassemble_round_trip() {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    for crc in [CrcType::Crc16, CrcType::Crc32c] {
        let bytes = builder()
            .crc_type(crc)
            .hop_limit(30)
            .previous_node(eid("ipn:3.0"))
            .extension_block(200, block_flags::REPLICATE_IN_FRAGMENTS, vec![7; 10])
            .extension_block(201, 0, vec![8; 10])
            .build(&payload);
        let b = decode(&bytes).unwrap();
        for max in [200, 333, 1000, 4999, 5100] {
            let frags = fragment(&bytes, &b, max).unwrap();
            assert!(frags.len() >= 2, "max {max}");
            let decoded: Vec<_> = frags.iter().map(|f| decode(f).unwrap()).collect();
            let mut offset = 0;
            for (i, (f, d)) in frags.iter().zip(&decoded).enumerate() {
                assert!(f.len() <= max, "fragment {i} is {} > {max}", f.len());
                let fr = d.primary.fragment.unwrap();
                assert_eq!(fr.offset, offset);
                assert_eq!(fr.total_adu_len, payload.len() as u64);
                assert!(d.block(4).is_some(), "replicated block in every fragment");
                assert_eq!(d.block(5).is_some(), i == 0, "others only in the first");
                assert_eq!(d.hop_count.is_some(), i == 0);
                offset += d.payload().data.len() as u64;
            }
            assert_eq!(offset, payload.len() as u64);
            let mut parts: Vec<(&[u8], &crate::bundle::Bundle)> =
                frags.iter().map(|f| f.as_slice()).zip(decoded.iter()).collect();
            shuffle(&mut parts, max as u64);
            let whole = reassemble(&parts).unwrap();
            let w = decode(&whole).unwrap();
            assert_eq!(w.primary.fragment, None);
            assert_eq!(w.primary.flags, b.primary.flags);
            assert_eq!(&whole[w.payload().data.clone()], &payload[..]);
            assert_eq!(w.blocks.len(), b.blocks.len());
            assert_eq!(w.id(), b.id());
            // Incomplete without one of them.
            assert_eq!(reassemble(&parts[1..]), Err(ReassemblyError::Incomplete));
        }
    }
}

/// Found by the `fragment_reassemble_identity` property test: fragments of a
/// bundle whose creation time is 0 lacked the bundle age block after the
/// first, so every receiver (this decoder too) discarded them (§4.4.2).
#[test]
fn fragments_of_a_bundle_without_clock_carry_its_bundle_age() {
    let bytes = BundleBuilder::new(eid("ipn:1.1"), eid("ipn:2.1"), ts(0, 4), 60_000).bundle_age(90).build(&[5; 900]);
    let b = decode(&bytes).unwrap();
    let frags = fragment(&bytes, &b, 300).unwrap();
    assert!(frags.len() >= 3);
    for f in &frags {
        assert_eq!(decode(f).unwrap().bundle_age_ms, Some(90));
    }
    let decoded: Vec<_> = frags.iter().map(|f| decode(f).unwrap()).collect();
    let parts: Vec<(&[u8], &crate::bundle::Bundle)> = frags.iter().map(|f| f.as_slice()).zip(&decoded).collect();
    let whole = decode(&reassemble(&parts).unwrap()).unwrap();
    assert_eq!((whole.id(), whole.bundle_age_ms), (b.id(), Some(90)));
}

#[test]
fn fragmenting_a_fragment_keeps_the_adu() {
    let payload = vec![3u8; 3000];
    let bytes = builder().build(&payload);
    let b = decode(&bytes).unwrap();
    let frags = fragment(&bytes, &b, 1200).unwrap();
    let second = decode(&frags[1]).unwrap();
    let sub = fragment(&frags[1], &second, 500).unwrap();
    let mut all: Vec<Vec<u8>> = vec![frags[0].clone()];
    all.extend(sub.iter().cloned());
    all.extend(frags[2..].iter().cloned());
    let decoded: Vec<_> = all.iter().map(|f| decode(f).unwrap()).collect();
    for d in &decoded[1..] {
        assert_eq!(d.primary.fragment.unwrap().total_adu_len, 3000);
    }
    // Overlapping fragments too: add the original first fragment twice.
    let mut parts: Vec<(&[u8], &crate::bundle::Bundle)> =
        all.iter().map(|f| f.as_slice()).zip(decoded.iter()).collect();
    parts.push(parts[0]);
    let whole = reassemble(&parts).unwrap();
    assert_eq!(&whole[decode(&whole).unwrap().payload().data.clone()], &payload[..]);
}

#[test]
fn fragment_refusals() {
    let bytes = builder().flags(bundle_flags::MUST_NOT_FRAGMENT).build(&[1; 500]);
    let b = decode(&bytes).unwrap();
    assert_eq!(fragment(&bytes, &b, 100), Err(FragmentError::MustNotFragment));
    // Fits already: unchanged.
    assert_eq!(fragment(&bytes, &b, 10_000).unwrap(), vec![bytes.clone()]);
    let bytes = builder().build(&[1; 500]);
    let b = decode(&bytes).unwrap();
    assert!(matches!(fragment(&bytes, &b, 60), Err(FragmentError::TooSmall { .. })));
}

#[test]
fn reassembly_refusals() {
    let bytes = builder().build(&[1; 500]);
    let b = decode(&bytes).unwrap();
    assert_eq!(reassemble(&[]), Err(ReassemblyError::Empty));
    assert_eq!(reassemble(&[(&bytes, &b)]), Err(ReassemblyError::NotAFragment));
    let f1 = builder().fragment(0, 10).build(&[1; 5]);
    let f2 = BundleBuilder::new(eid("dtn://other/"), eid("dtn://dst/inbox"), ts(700_000_000_000, 5), 1)
        .fragment(5, 10)
        .build(&[1; 5]);
    let (d1, d2) = (decode(&f1).unwrap(), decode(&f2).unwrap());
    assert_eq!(reassemble(&[(&f1, &d1), (&f2, &d2)]), Err(ReassemblyError::Mismatch));
}

#[test]
fn coverage() {
    assert!(covers(&[(0, 5), (5, 5)], 10));
    assert!(covers(&[(5, 5), (0, 6)], 10));
    assert!(covers(&[(0, 10)], 10));
    assert!(!covers(&[(0, 4), (5, 5)], 10));
    assert!(!covers(&[(1, 9)], 10));
    assert!(!covers(&[], 1));
    assert!(covers(&[], 0));
    assert!(covers(&[(0, u64::MAX), (u64::MAX, u64::MAX)], u64::MAX));
}

#[test]
fn canonical_block_lengths_are_exact() {
    for (t, n, f, len) in [(1, 1, 0, 0), (200, 300, 70_000, 24), (1, 1, 1 << 40, 70_000)] {
        for crc in [CrcType::None, CrcType::Crc16, CrcType::Crc32c] {
            let data = vec![0u8; len];
            let mut out = Vec::new();
            encode_canonical_block(&mut out, t, n, f, crc, &data);
            assert_eq!(out.len(), encode::canonical_block_len(t, n, f, crc, len));
        }
    }
    let mut data = Vec::new();
    write_uint(&mut data, 1);
    assert_eq!(data, [1]);
}

#[test]
fn lenient_option_accepts_an_unprotected_primary() {
    let bytes = builder().crc_type(CrcType::None).build(b"x");
    assert_eq!(decode(&bytes), Err(DecodeError::PrimaryCrcMissing));
    let lenient = DecodeOptions::strict().allow_unprotected_primary(true);
    assert_eq!(decode_with(&bytes, &lenient).unwrap().primary.crc_type, CrcType::None);
}

#[test]
fn crc_failure_outranks_eid_errors() {
    // A destination damaged in transit is a CRC failure (reason 8), not an
    // unintelligible destination (reason 5).
    let build = |crc| {
        BundleBuilder::new(eid("ipn:1.0"), eid("dtn://dst/"), ts(1, 1), 1)
            .crc_type(crc)
            .extension_block(block_types::BIB, 0, vec![])
            .build(b"x")
    };
    let mut bytes = build(CrcType::Crc32c);
    let at = bytes.windows(4).position(|w| w == b"//ds").unwrap();
    bytes[at + 2] = b' ';
    assert!(matches!(decode(&bytes), Err(DecodeError::CrcMismatch { block_number: 0, .. })));
    // The same EID with no CRC over it is reported as such.
    let mut bytes = build(CrcType::None);
    let at = bytes.windows(4).position(|w| w == b"//ds").unwrap();
    bytes[at + 2] = b' ';
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Eid { field: EidField::Destination, .. }));
    assert_eq!(err.reason_code(), ReasonCode::DestinationEidUnintelligible);
}
