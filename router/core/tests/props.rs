//! Property tests (proptest) of the codec: bundles built from arbitrary
//! fields decode back to those fields (RFC 9171 §4), and fragmenting a
//! bundle at an arbitrary size then reassembling the fragments in any order
//! gives back the original ID and payload (§5.8, §5.9).
//!
//! Case counts are modest so that `cargo test` stays fast; raise them with
//! `PROPTEST_CASES=10000 cargo test -p ferry-core --test props`.

use ferry_core::bundle::{block_flags, block_types, bundle_flags, Bundle, CrcType, CreationTimestamp};
use ferry_core::codec::{self, encode_primary_block, BundleBuilder, DecodeOptions, FragmentError};
use ferry_core::Eid;
use proptest::prelude::*;

fn lenient() -> DecodeOptions {
    DecodeOptions::strict().allow_unprotected_primary(true)
}

fn eid() -> impl Strategy<Value = Eid> {
    prop_oneof![
        1 => Just(Eid::Null),
        3 => (any::<u64>(), any::<u64>()).prop_map(|(node, service)| Eid::Ipn { node, service }),
        3 => ("[a-zA-Z0-9._~-]{1,16}", "[a-zA-Z0-9/._~é-]{0,16}")
            .prop_map(|(node, demux)| Eid::Dtn { node, demux }),
    ]
}

fn node_eid() -> impl Strategy<Value = Eid> {
    eid().prop_filter("a source other than dtn:none", |e| !e.is_null())
}

fn crc_type() -> impl Strategy<Value = CrcType> {
    prop_oneof![Just(CrcType::None), Just(CrcType::Crc16), Just(CrcType::Crc32c)]
}

/// Extension block types the decoder has no rules for (§4.4 blocks, BPSec
/// blocks and the copy count have their own tests).
fn ext_type() -> impl Strategy<Value = u64> {
    prop_oneof![2u64..=5, 8u64..=9, 13u64..=191, 193u64..=100_000]
}

fn ext_blocks() -> impl Strategy<Value = Vec<(u64, u64, Vec<u8>)>> {
    prop::collection::vec((ext_type(), 0u64..=0x1f, prop::collection::vec(any::<u8>(), 0..40)), 0..4)
}

#[derive(Debug, Clone)]
struct Fields {
    source: Eid,
    destination: Eid,
    report_to: Eid,
    creation: CreationTimestamp,
    lifetime_ms: u64,
    flags: u64,
    crc_type: CrcType,
    previous_node: Option<Eid>,
    bundle_age_ms: Option<u64>,
    hop_limit: Option<u64>,
    extensions: Vec<(u64, u64, Vec<u8>)>,
    payload: Vec<u8>,
}

fn fields(max_payload: usize) -> impl Strategy<Value = Fields> {
    (
        (eid(), node_eid(), eid()),
        (prop_oneof![Just(0u64), any::<u64>()], any::<u64>(), any::<u64>()),
        // The flags of §4.2.3 (IS_FRAGMENT follows the builder's fragment setting).
        (any::<u64>().prop_map(|f| f & 0x7_4067), crc_type()),
        (prop::option::of(node_eid()), prop::option::of(any::<u64>()), prop::option::of(0u64..300)),
        ext_blocks(),
        prop::collection::vec(any::<u8>(), 0..max_payload),
    )
        .prop_map(
            |(
                (source, destination, report_to),
                (time, seq, lifetime_ms),
                (flags, crc_type),
                (previous_node, bundle_age_ms, hop_limit),
                extensions,
                payload,
            )| Fields {
                source,
                destination,
                report_to,
                creation: CreationTimestamp { time, seq },
                lifetime_ms,
                flags: flags & !bundle_flags::IS_FRAGMENT,
                crc_type,
                previous_node,
                bundle_age_ms,
                hop_limit,
                extensions,
                payload,
            },
        )
}

fn build(f: &Fields) -> Vec<u8> {
    let mut b = BundleBuilder::new(f.source.clone(), f.destination.clone(), f.creation, f.lifetime_ms)
        .report_to(f.report_to.clone())
        .flags(f.flags)
        .crc_type(f.crc_type);
    if let Some(p) = &f.previous_node {
        b = b.previous_node(p.clone());
    }
    if let Some(age) = f.bundle_age_ms {
        b = b.bundle_age(age);
    }
    if let Some(limit) = f.hop_limit {
        b = b.hop_limit(limit);
    }
    for (t, flags, data) in &f.extensions {
        b = b.extension_block(*t, *flags, data.clone());
    }
    b.build(&f.payload)
}

fn payload<'a>(bytes: &'a [u8], b: &Bundle) -> &'a [u8] {
    &bytes[b.payload().data.clone()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever the fields, the builder's bundle decodes to them (with the
    /// RFC's adjustments the builder documents), its primary block
    /// re-encodes to the same bytes, and it passes the strict decoder unless
    /// its primary block has no CRC.
    #[test]
    fn encode_decode_round_trip(f in fields(300)) {
        let bytes = build(&f);
        let strict = codec::decode(&bytes);
        prop_assert_eq!(strict.is_ok(), f.crc_type != CrcType::None, "{:?}", strict);
        let b = codec::decode_with(&bytes, &lenient()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let p = &b.primary;

        let anonymous = f.source.is_null();
        let admin = f.flags & bundle_flags::ADMIN_RECORD != 0;
        let mut flags = f.flags;
        if anonymous {
            flags |= bundle_flags::MUST_NOT_FRAGMENT;
        }
        if anonymous || admin {
            flags &= !bundle_flags::REPORT_ANY;
        }
        prop_assert_eq!(p.flags, flags);
        prop_assert_eq!(&p.source, &f.source);
        prop_assert_eq!(&p.destination, &f.destination);
        prop_assert_eq!(&p.report_to, &f.report_to);
        prop_assert_eq!(p.creation, f.creation);
        prop_assert_eq!(p.lifetime_ms, f.lifetime_ms);
        prop_assert_eq!(p.crc_type, f.crc_type);
        prop_assert_eq!(p.fragment, None);
        prop_assert!(b.blocks.iter().all(|blk| blk.crc_type == f.crc_type));
        prop_assert_eq!(&b.previous_node, &f.previous_node);
        let age = if f.bundle_age_ms.is_none() && f.creation.time == 0 { Some(0) } else { f.bundle_age_ms };
        prop_assert_eq!(b.bundle_age_ms, age);
        prop_assert_eq!(b.hop_count.map(|h| (h.limit, h.count)), f.hop_limit.map(|l| (l.clamp(1, 255), 0)));
        prop_assert_eq!(payload(&bytes, &b), f.payload.as_slice());

        let mask = if anonymous || admin { !block_flags::REPORT_IF_UNPROCESSABLE } else { u64::MAX };
        let known = [block_types::PREVIOUS_NODE, block_types::BUNDLE_AGE, block_types::HOP_COUNT, block_types::PAYLOAD];
        let ext: Vec<(u64, u64, &[u8])> = b
            .blocks
            .iter()
            .filter(|blk| !known.contains(&blk.block_type))
            .map(|blk| (blk.block_type, blk.flags, &bytes[blk.data.clone()]))
            .collect();
        let want: Vec<(u64, u64, &[u8])> =
            f.extensions.iter().map(|(t, fl, d)| (*t, fl & mask, d.as_slice())).collect();
        prop_assert_eq!(ext, want);

        let mut primary = Vec::new();
        encode_primary_block(&mut primary, p, p.flags, p.fragment);
        prop_assert_eq!(primary.as_slice(), &bytes[p.range.clone()]);
    }

    /// Fragmenting at any size that fits a fragment, then reassembling the
    /// fragments in any order (one of them twice), gives the original ID and
    /// payload back; so does fragmenting a fragment again.
    #[test]
    fn fragment_reassemble_identity(
        f in fields(1500).prop_filter("fragmentable", |f| !f.source.is_null()),
        cut in 0.0f64..1.0,
        again in 0.0f64..1.0,
        order in any::<prop::sample::Index>(),
    ) {
        let mut f = f;
        f.flags &= !bundle_flags::MUST_NOT_FRAGMENT;
        prop_assume!(!f.payload.is_empty());
        let bytes = build(&f);
        let b = codec::decode_with(&bytes, &lenient()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let max = 60 + (cut * bytes.len() as f64) as usize;
        let frags = match codec::fragment(&bytes, &b, max) {
            Ok(frags) => frags,
            Err(FragmentError::TooSmall { .. }) => return Err(TestCaseError::reject("no fragment fits")),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        if bytes.len() <= max {
            prop_assert_eq!(&frags, &vec![bytes.clone()]);
            return Ok(());
        }
        prop_assert!(frags.len() >= 2);

        // Some fragments fragmented again, at another size.
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for (i, frag) in frags.iter().enumerate() {
            prop_assert!(frag.len() <= max, "fragment of {} bytes over {}", frag.len(), max);
            let d = codec::decode_with(frag, &lenient()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let id = d.id();
            prop_assert_eq!((&id.source, id.creation), (&f.source, f.creation));
            let smaller = 60 + (again * frag.len() as f64) as usize;
            match codec::fragment(frag, &d, smaller) {
                Ok(sub) if i % 2 == 0 => pieces.extend(sub),
                _ => pieces.push(frag.clone()),
            }
        }
        let dup = pieces[order.index(pieces.len())].clone();
        pieces.push(dup);
        let n = pieces.len();
        pieces.rotate_left(order.index(n));
        pieces.reverse();

        let decoded: Vec<Bundle> = pieces
            .iter()
            .map(|p| codec::decode_with(p, &lenient()))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parts: Vec<(&[u8], &Bundle)> = pieces.iter().map(Vec::as_slice).zip(&decoded).collect();
        let whole = codec::reassemble(&parts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let r = codec::decode_with(&whole, &lenient()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r.id(), b.id());
        prop_assert_eq!(payload(&whole, &r), f.payload.as_slice());
        prop_assert_eq!(r.primary.flags & !bundle_flags::IS_FRAGMENT, b.primary.flags);
        prop_assert_eq!(&r.previous_node, &b.previous_node);
        prop_assert_eq!(r.hop_count, b.hop_count);
        let types = |x: &Bundle| x.blocks.iter().map(|blk| blk.block_type).collect::<Vec<_>>();
        prop_assert_eq!(types(&r), types(&b));
    }
}
