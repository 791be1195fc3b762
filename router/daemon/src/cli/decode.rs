//! `ferry bundle decode`: decode and validate a bundle file offline and print
//! what it holds as JSON. The verdict is ferry-core's strict decoder's, so it
//! is the same one ferryd applies to bundles it receives.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ferry_core::bundle::{block_types, bundle_flags, Bundle, CanonicalBlock, CrcType};
use ferry_core::{admin, codec};
use serde_json::{json, Value};

use super::fmt::{error_chain, to_hex};
use super::DecodeArgs;

/// Exit code when the input could not be read at all.
const EXIT_TROUBLE: u8 = 2;

pub fn run(args: &DecodeArgs) -> ExitCode {
    let bytes = match read_input(&args.file, args.hex) {
        Ok(b) => b,
        Err(err) => {
            eprintln!("ferry: {}", error_chain(&err));
            return ExitCode::from(EXIT_TROUBLE);
        }
    };
    match codec::decode(&bytes) {
        Ok(bundle) => {
            println!("{}", pretty(&describe(&bundle, &bytes)));
            ExitCode::SUCCESS
        }
        Err(err) => {
            let verdict = json!({ "verdict": "invalid", "error": err.to_string(), "size": bytes.len() });
            println!("{}", pretty(&verdict));
            eprintln!("ferry: invalid bundle: {err}");
            ExitCode::FAILURE
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn read_input(file: &Path, hex: bool) -> Result<Vec<u8>> {
    let raw = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf).context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    if !hex {
        return Ok(raw);
    }
    let text = String::from_utf8(raw).context("--hex: the input is not text")?;
    super::fmt::decode_hex(&text).context("--hex")
}

/// The JSON description of a valid bundle.
pub fn describe(bundle: &Bundle, bytes: &[u8]) -> Value {
    let p = &bundle.primary;
    let payload = bundle.payload();
    let payload_bytes = bytes.get(payload.data.clone()).unwrap_or_default();
    let mut out = json!({
        "verdict": "valid",
        "bundle_id": bundle.id().to_string(),
        "size": bytes.len(),
        "primary": {
            "version": 7,
            "flags": p.flags,
            "flag_names": bundle_flag_names(p.flags),
            "crc_type": crc_name(p.crc_type),
            "destination": p.destination.to_string(),
            "source": p.source.to_string(),
            "report_to": p.report_to.to_string(),
            "creation_time": p.creation.time,
            "creation_seq": p.creation.seq,
            "lifetime_ms": p.lifetime_ms,
            "fragment": p.fragment.map(|f| json!({ "offset": f.offset, "total_adu_len": f.total_adu_len })),
        },
        "blocks": bundle.blocks.iter().map(|b| block(b, bundle)).collect::<Vec<_>>(),
        "extensions": {
            "previous_node": bundle.previous_node.as_ref().map(ToString::to_string),
            "bundle_age_ms": bundle.bundle_age_ms,
            "hop_count": bundle.hop_count.map(|h| json!({ "limit": h.limit, "count": h.count })),
        },
        "unsupported_blocks": bundle.unsupported_blocks,
        "payload_len": payload_bytes.len(),
    });
    if bundle.is_admin_record() {
        out["admin_record"] = match admin::decode_admin_record(payload_bytes) {
            Ok(record) => admin_record(&record),
            Err(err) => json!({ "error": err.to_string() }),
        };
    } else if payload_bytes.len() <= 64 {
        // Short payloads are shown; text as text, anything else as hex.
        out["payload"] = match std::str::from_utf8(payload_bytes) {
            Ok(s) => json!({ "utf8": s }),
            Err(_) => json!({ "hex": to_hex(payload_bytes) }),
        };
    }
    out
}

fn admin_record(record: &admin::AdminRecord) -> Value {
    // RFC 9171 §6.1.1: each status item is asserted or not, with a time when
    // the subject bundle asked for status times.
    let item = |a: Option<Option<u64>>| match a {
        None => json!({ "asserted": false }),
        Some(time) => json!({ "asserted": true, "time": time }),
    };
    match record {
        admin::AdminRecord::StatusReport(r) => json!({
            "type": "status_report",
            "received": item(r.received),
            "forwarded": item(r.forwarded),
            "delivered": item(r.delivered),
            "deleted": item(r.deleted),
            "reason": { "code": r.reason.code(), "name": format!("{:?}", r.reason) },
            "subject": r.subject.to_string(),
        }),
        admin::AdminRecord::Unknown { record_type } => {
            json!({ "type": "unknown", "record_type": record_type })
        }
    }
}

fn block(b: &CanonicalBlock, bundle: &Bundle) -> Value {
    json!({
        "type": b.block_type,
        "type_name": block_type_name(b.block_type),
        "number": b.number,
        "flags": b.flags,
        "crc_type": crc_name(b.crc_type),
        "data_len": b.data.len(),
        "supported": !bundle.unsupported_blocks.contains(&b.number),
    })
}

fn crc_name(t: CrcType) -> &'static str {
    match t {
        CrcType::None => "none",
        CrcType::Crc16 => "crc16",
        CrcType::Crc32c => "crc32c",
    }
}

fn block_type_name(t: u64) -> &'static str {
    match t {
        block_types::PAYLOAD => "payload",
        block_types::PREVIOUS_NODE => "previous_node",
        block_types::BUNDLE_AGE => "bundle_age",
        block_types::HOP_COUNT => "hop_count",
        block_types::BIB => "bib",
        block_types::BCB => "bcb",
        _ => "unknown",
    }
}

/// The names of the bundle processing control flags set in `flags` (RFC 9171 §4.2.3).
pub fn bundle_flag_names(flags: u64) -> Vec<&'static str> {
    use bundle_flags::*;
    let names = [
        (IS_FRAGMENT, "is_fragment"),
        (ADMIN_RECORD, "admin_record"),
        (MUST_NOT_FRAGMENT, "must_not_fragment"),
        (APP_ACK_REQUESTED, "app_ack_requested"),
        (STATUS_TIME_REQUESTED, "status_time_requested"),
        (REPORT_RECEPTION, "report_reception"),
        (REPORT_FORWARDING, "report_forwarding"),
        (REPORT_DELIVERY, "report_delivery"),
        (REPORT_DELETION, "report_deletion"),
    ];
    names.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect()
}
