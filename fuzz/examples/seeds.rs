//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`:
//! the repository's bundle fixtures (RFC 9171 conformance and RFC 9173
//! Appendix A vectors), the simulator's example scenario and contact plan,
//! and protocol streams built with the crates' own encoders (TCPCLv4, MTCP,
//! STCP, serial and LoRa frames in KISS).
//!
//! Run it through `fuzz/seed.sh`, from anywhere:
//! `cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds -- <repo root>`.
//! Each seed starts with the target's mode byte (see each target's docs).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ferry_cla_kiss as kiss;
use ferry_cla_lora::frame::{AckStatus, Frame as LoraFrame};
use ferry_cla_serial::wire::{Body, Data, Frame as SerialFrame, Hello, ResultCode};
use ferry_cla_tcp::tcpcl::wire::{
    ContactFlags, ContactHeader, ExtensionFlags, ExtensionItem, ExtensionItems, Message, SegmentFlags, SessInit,
    SessTerm, SessTermFlags, SessTermReason, XferAck, XferSegment, TRANSFER_LENGTH_EXTENSION,
};
use ferry_cla_tcp::{mtcp, stcp};
use ferry_core::bundle::{block_flags, block_types, bundle_flags, CrcType, CreationTimestamp};
use ferry_core::codec::{self, BundleBuilder, DecodeOptions};
use ferry_core::Eid;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) -> Res<()> {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        Ok(())
    }
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(mode);
    v.extend_from_slice(bytes);
    v
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.bytes())
        .filter(u8::is_ascii_hexdigit)
        .collect();
    digits.chunks(2).map(|p| std::str::from_utf8(p).ok().and_then(|s| u8::from_str_radix(s, 16).ok())).collect()
}

/// The hex fixtures of router/core/tests/fixtures (and rfc9173/), by name.
fn fixtures(repo: &Path) -> Res<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let base = repo.join("router/core/tests/fixtures");
    for dir in [base.clone(), base.join("rfc9173")] {
        let mut names: Vec<_> = fs::read_dir(&dir)?.filter_map(Result::ok).map(|e| e.path()).collect();
        names.sort();
        for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "hex")) {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(bytes) = unhex(&fs::read_to_string(&p)?) {
                out.push((name, bytes));
            }
        }
    }
    Ok(out)
}

fn eid(s: &str) -> Res<Eid> {
    Ok(s.parse()?)
}

/// Bundles built here: every CRC type, both schemes, extension blocks,
/// fragments, flags.
fn built(payload_len: usize) -> Res<Vec<(String, Vec<u8>)>> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
    let ts = CreationTimestamp { time: 788_918_000_000, seq: 3 };
    let mut out = Vec::new();
    for (name, crc) in [("crc16", CrcType::Crc16), ("crc32c", CrcType::Crc32c), ("nocrc", CrcType::None)] {
        let b = BundleBuilder::new(eid("dtn://a/app")?, eid("ipn:2.1")?, ts, 3_600_000)
            .crc_type(crc)
            .hop_limit(30)
            .previous_node(eid("ipn:9.0")?)
            .bundle_age(12)
            .extension_block(192, block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE, vec![0x03])
            .extension_block(200, block_flags::REPLICATE_IN_FRAGMENTS, vec![1, 2, 3])
            .flags(bundle_flags::REPORT_DELIVERY)
            .build(&payload);
        out.push((format!("built_{name}"), b));
    }
    let frag = BundleBuilder::new(eid("ipn:3.1")?, eid("dtn://b/x")?, ts, 60_000)
        .fragment(100, 100 + payload_len as u64 * 2)
        .build(&payload);
    out.push(("built_fragment".into(), frag));
    let anon = BundleBuilder::new(Eid::Null, eid("ipn:4.2")?, CreationTimestamp { time: 0, seq: 0 }, 1000)
        .flags(bundle_flags::MUST_NOT_FRAGMENT)
        .build(b"anonymous");
    out.push(("built_anonymous".into(), anon));
    Ok(out)
}

fn tcpcl_seeds(s: &Seeds, bundle: &[u8]) -> Res<()> {
    let header = |out: &mut Vec<u8>| ContactHeader::new(ContactFlags::EMPTY).emit(out);
    let init = |out: &mut Vec<u8>| {
        Message::SessInit(SessInit {
            keepalive: 30,
            segment_mru: 200,
            transfer_mru: 10_000,
            node_id: "dtn://peer/",
            extensions: ExtensionItems::EMPTY,
        })
        .emit(out)
    };
    // A transfer of `bundle` in segments of 150 octets with a Transfer Length item.
    let mut transfer = Vec::new();
    let total = (bundle.len() as u64).to_be_bytes();
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::EMPTY, item_type: TRANSFER_LENGTH_EXTENSION, value: &total }.emit(&mut ext);
    let ext = ExtensionItems::new_checked(&ext).map_err(|e| format!("{e:?}"))?;
    let parts: Vec<&[u8]> = bundle.chunks(150).collect();
    for (i, part) in parts.iter().enumerate() {
        let mut flags = SegmentFlags::EMPTY;
        if i == 0 {
            flags |= SegmentFlags::START;
        }
        if i + 1 == parts.len() {
            flags |= SegmentFlags::END;
        }
        let extensions = if i == 0 { ext } else { ExtensionItems::EMPTY };
        Message::XferSegment(XferSegment { flags, transfer_id: 7, extensions, data: part }).emit(&mut transfer);
    }
    let mut tail = Vec::new();
    Message::Keepalive.emit(&mut tail);
    Message::XferAck(XferAck { flags: SegmentFlags::START | SegmentFlags::END, transfer_id: 0, acknowledged_len: 10 })
        .emit(&mut tail);
    Message::SessTerm(SessTerm { flags: SessTermFlags::EMPTY, reason: SessTermReason::Unknown }).emit(&mut tail);

    // Passive, whole conversation, generated chunks.
    let mut conv = Vec::new();
    header(&mut conv);
    init(&mut conv);
    conv.extend_from_slice(&transfer);
    conv.extend_from_slice(&tail);
    s.put("tcpcl_session", "passive_conversation", &with_mode(0x10, &conv))?;
    // Active with our bundles queued.
    s.put("tcpcl_session", "active_with_ours", &with_mode(0x29, &conv))?;
    // After the handshake prefix, as `[len][bytes]` records, one message each.
    let mut records = Vec::new();
    let mut msgs = Vec::new();
    let mut pos = 0;
    let limits = ferry_cla_tcp::tcpcl::wire::Limits::default();
    let body = [transfer.as_slice(), tail.as_slice()].concat();
    while let Ok(Some((_, n))) = Message::parse(&body[pos..], &limits) {
        msgs.push(&body[pos..pos + n]);
        pos += n;
    }
    for m in msgs {
        for piece in m.chunks(255) {
            records.push(piece.len() as u8);
            records.extend_from_slice(piece);
        }
    }
    s.put("tcpcl_session", "established_records", &with_mode(0x56, &records))?;
    s.put("tcpcl_session", "established_acks", &with_mode(0x5e, &tail))?;
    Ok(())
}

fn framing_seeds(s: &Seeds, bundles: &[&[u8]]) -> Res<()> {
    let mut m = Vec::new();
    let mut t = Vec::new();
    for b in bundles {
        mtcp::encode(b, &mut m);
        stcp::encode(b, &mut t)?;
        stcp::encode_keepalive(&mut t);
    }
    // Limit index 5 (4096), chunks of 8 and 1.
    s.put("tcp_framing", "mtcp", &with_mode(0x1a, &m))?;
    s.put("tcp_framing", "mtcp_nolimit", &with_mode(0x0e, &m))?;
    s.put("tcp_framing", "stcp", &with_mode(0x1b, &t))?;
    s.put("tcp_framing", "stcp_nolimit", &with_mode(0x0f, &t))?;
    // The first crash: an MTCP length near 2^64 with no limit (fixed; see mtcp.rs tests).
    s.put(
        "tcp_framing",
        "regression_mtcp_no_limit_overflow",
        &with_mode(0x0e, &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    )?;
    Ok(())
}

fn serial_seeds(s: &Seeds, bundle: &[u8]) -> Res<()> {
    let frames = [
        SerialFrame {
            nonce: 0x1234_5678,
            seq: 0,
            ack: 0,
            body: Body::Hello(Hello {
                version: 1,
                up: false,
                echo: 0,
                max_frame: 1024,
                max_bundle: 1 << 20,
                node_id: "dtn://peer/",
            }),
        },
        SerialFrame {
            nonce: 0x1234_5678,
            seq: 0,
            ack: 0,
            body: Body::Data(Data { transfer: 1, start: Some(bundle.len() as u64), end: true, payload: bundle }),
        },
        SerialFrame {
            nonce: 0x1234_5678,
            seq: 1,
            ack: 0,
            body: Body::Result { transfer: 1, code: ResultCode::Accepted },
        },
        SerialFrame { nonce: 0x1234_5678, seq: 2, ack: 1, body: Body::Nop },
        SerialFrame { nonce: 0x1234_5678, seq: 0, ack: 3, body: Body::Ack },
    ];
    let mut stream = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let mut one = Vec::new();
        f.emit(&mut one);
        // Mode 0x19: CRC fixed up; KISS limit 6 * 40 + 2.
        s.put("serial_frame", &format!("frame_{i}"), &with_mode(0x19, &one))?;
        kiss::encode(kiss::CMD_DATA, &one, &mut stream);
    }
    s.put("serial_frame", "kiss_stream", &with_mode(0xfc, &stream))?;
    Ok(())
}

fn lora_seeds(s: &Seeds, bundle: &[u8]) -> Res<()> {
    let chunk = bundle.get(..200).unwrap_or(bundle);
    let frames = [
        LoraFrame::Hello { src: 0x0102_0304, node_id: "dtn://peer/" },
        LoraFrame::Data { src: 0x0102_0304, dst: 0xa1b2_c3d4, transfer: 9, seq: 0, total: 1, poll: true, chunk },
        LoraFrame::Poll { src: 0x0102_0304, dst: 0xa1b2_c3d4, transfer: 9, total: 3 },
        LoraFrame::Ack {
            src: 0x0102_0304,
            dst: 0xa1b2_c3d4,
            transfer: 9,
            status: AckStatus::Partial,
            total: 12,
            bitmap: &[0xff, 0x0a],
        },
    ];
    let mut stream = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let one = f.to_vec();
        s.put("lora_frame", &format!("frame_{i}"), &with_mode(0x01, &one))?;
        kiss::encode(kiss::CMD_DATA, &one, &mut stream);
    }
    s.put("lora_frame", "kiss_stream", &with_mode(0x02, &stream))?;
    Ok(())
}

fn usbdir_seeds(s: &Seeds, bundle: &[u8]) -> Res<()> {
    s.put("usbdir", "bundle_file", &with_mode(0x01, bundle))?;
    s.put("usbdir", "node_dtn", &with_mode(0x00, b"dtn-camp"))?;
    s.put("usbdir", "node_eid", &with_mode(0x00, b"eid-dtn_3a_2f_2fcamp_2fx"))?;
    s.put("usbdir", "node_id", &with_mode(0x00, b"dtn://Camp.North/"))?;
    let hash = ferry_cla_usbdir::name::content_hash(bundle);
    let listing =
        format!("{hash}.bundle 300\n{hash}.1.part 20\n.ferry-sync.toml 10\nREADME.txt 5\n{hash}.bundle 9000\n");
    s.put("usbdir", "listing", &with_mode(0x35, listing.as_bytes()))?;
    Ok(())
}

/// Certificates as OpenSSL and `ferry tls gen` write them (DER fixtures of
/// the TCP plugin's tests).
fn tls_seeds(s: &Seeds, repo: &Path) -> Res<()> {
    for name in ["openssl-bundle-eid", "ferry-tls-gen"] {
        let der = fs::read(repo.join(format!("cla-plugins/tcp/tests/fixtures/{name}.der")))?;
        s.put("tls_names", name, &der)?;
    }
    Ok(())
}

fn text_seeds(s: &Seeds, repo: &Path) -> Res<()> {
    let plan = fs::read_to_string(repo.join("sim/examples/city/plan.txt"))?;
    let short_plan: String = plan.lines().take(40).map(|l| format!("{l}\n")).collect();
    s.put("contact_plan", "city_head", short_plan.as_bytes())?;
    let ion = "# ION commands with ranges and absolute times\n\
               a contact +0 +1000 1 2 1000\n\
               a contact +100 +200 2 3 1000 0.5\n\
               a contact 2025/01/01-00:00:10 2025/01/01-00:00:50 1 4 1000\n\
               a contact +20 +30 4 3 1000\n\
               a range +0 +1000 4 3 5\n";
    s.put("contact_plan", "ranges_utc", ion.as_bytes())?;

    let mut trace = String::new();
    for i in 0..20u64 {
        let _ = writeln!(
            trace,
            "{}.{} CONN {} {} {}",
            i * 10,
            i % 10,
            i % 5,
            (i % 5) + 1,
            if i % 2 == 0 { "up" } else { "down" }
        );
        let _ = writeln!(trace, "{}.5 C M{i} n{} n{} {} 100", i * 10, i % 4, (i % 4) + 2, 1000 + i);
    }
    s.put("one_trace", "conn_and_messages", trace.as_bytes())?;

    let scenario = fs::read_to_string(repo.join("sim/examples/city/scenario.toml"))?;
    let mut with_plan = scenario.into_bytes();
    with_plan.push(0);
    with_plan.extend_from_slice(short_plan.as_bytes());
    s.put("scenario", "city", &with_plan)?;
    let traced = "name = \"traced\"\nduration = 500\nrouter = { name = \"prophet\" }\nlink_model = \"one\"\n\
                  [contacts]\ntrace = \"trace.txt\"\nrate = 1000\n[messages]\ninterval = [5, 10]\nsize = [10, 20]\n";
    let mut t = traced.as_bytes().to_vec();
    t.push(0);
    let conns: String = trace.lines().filter(|l| l.contains("CONN")).map(|l| format!("{l}\n")).collect();
    t.extend_from_slice(conns.as_bytes());
    s.put("scenario", "traced", &t)?;
    Ok(())
}

fn main() -> Res<()> {
    let repo = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "..".into()));
    let s = Seeds { root: repo.join("fuzz/seeds") };
    let mut bundles = fixtures(&repo)?;
    bundles.extend(built(600)?);
    for (name, bytes) in &bundles {
        for (i, control) in [0x00u8, 0x5b, 0xc6].into_iter().enumerate() {
            s.put("bundle", &format!("{name}_{i}"), &with_mode(control, bytes))?;
        }
        s.put("bpsec", name, &with_mode(0x04, bytes))?;
        // The security blocks' ASBs alone, for `Asb::parse`.
        let lenient = DecodeOptions::strict().allow_unprotected_primary(true).allow_missing_bundle_age(true);
        if let Ok(b) = codec::decode_with(bytes, &lenient) {
            for blk in b.blocks.iter().filter(|blk| matches!(blk.block_type, block_types::BIB | block_types::BCB)) {
                if let Some(asb) = bytes.get(blk.data.clone()) {
                    s.put("bpsec", &format!("asb_{name}_{}", blk.number), &with_mode(0x04, asb))?;
                }
            }
        }
    }
    let sample = built(600)?.into_iter().map(|(_, b)| b).next().unwrap_or_default();
    let small = built(40)?.into_iter().map(|(_, b)| b).next().unwrap_or_default();
    tcpcl_seeds(&s, &sample)?;
    framing_seeds(&s, &[&sample, &small, b"\x9f\xff"])?;
    serial_seeds(&s, &small)?;
    lora_seeds(&s, &small)?;
    usbdir_seeds(&s, &sample)?;
    tls_seeds(&s, &repo)?;
    text_seeds(&s, &repo)?;
    Ok(())
}
