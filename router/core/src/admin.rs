//! Administrative records (RFC 9171 §6): the bundle status report, its reason
//! codes, and the record envelope `[record type, content]`.

use crate::bundle::{BundleId, CreationTimestamp, DtnTime};
use crate::cbor::{self, CborError, Reader};
use crate::codec::{decode_eid, encode_eid, EidDecodeError};

/// Administrative record type of a bundle status report (§6.1).
pub const RECORD_TYPE_STATUS_REPORT: u64 = 1;

/// Status report reason codes (RFC 9171 §6.1.1, Table 1, and the BPSec codes
/// 12–16 that RFC 9172 §11.2 adds).
///
/// Codes this enum does not name (17–254 unassigned, 255 reserved) decode as [`ReasonCode::NoInformation`]: the enum stays a
/// plain `repr(u8)` the node can match on, at the cost of that detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReasonCode {
    NoInformation = 0,
    LifetimeExpired = 1,
    ForwardedOverUnidirectionalLink = 2,
    TransmissionCanceled = 3,
    DepletedStorage = 4,
    DestinationEidUnintelligible = 5,
    NoKnownRoute = 6,
    NoTimelyContact = 7,
    BlockUnintelligible = 8,
    HopLimitExceeded = 9,
    TrafficPared = 10,
    BlockUnsupported = 11,
    /// RFC 9172 §11.2: a security operation the policy requires is absent
    /// (an unsigned bundle for an endpoint that requires a signature).
    MissingSecurityOperation = 12,
    /// RFC 9172 §11.2: a security operation this node does not know.
    UnknownSecurityOperation = 13,
    /// RFC 9172 §11.2: a security operation the policy does not expect.
    UnexpectedSecurityOperation = 14,
    /// RFC 9172 §11.2: a security operation failed (forged or altered).
    FailedSecurityOperation = 15,
    /// RFC 9172 §11.2: security operations that contradict each other.
    ConflictingSecurityOperation = 16,
}

impl ReasonCode {
    pub fn code(self) -> u64 {
        self as u64
    }

    /// The reason for a code; `None` for codes Table 1 does not define.
    pub fn from_code(code: u64) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match code {
            0 => NoInformation,
            1 => LifetimeExpired,
            2 => ForwardedOverUnidirectionalLink,
            3 => TransmissionCanceled,
            4 => DepletedStorage,
            5 => DestinationEidUnintelligible,
            6 => NoKnownRoute,
            7 => NoTimelyContact,
            8 => BlockUnintelligible,
            9 => HopLimitExceeded,
            10 => TrafficPared,
            11 => BlockUnsupported,
            12 => MissingSecurityOperation,
            13 => UnknownSecurityOperation,
            14 => UnexpectedSecurityOperation,
            15 => FailedSecurityOperation,
            16 => ConflictingSecurityOperation,
            _ => return None,
        })
    }
}

/// A bundle status report (§6.1.1).
///
/// Each assertion is `None` when not asserted, `Some(None)` when asserted
/// without a time, `Some(Some(t))` when asserted at DTN time `t` (the
/// subject bundle asked for status times, §4.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub received: Option<Option<DtnTime>>,
    pub forwarded: Option<Option<DtnTime>>,
    pub delivered: Option<Option<DtnTime>>,
    pub deleted: Option<Option<DtnTime>>,
    pub reason: ReasonCode,
    /// The subject bundle: source node ID, creation timestamp and, for a
    /// fragment, (offset, payload length).
    pub subject: BundleId,
}

/// A decoded administrative record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRecord {
    StatusReport(StatusReport),
    /// A record type this node does not know (§6.1); its content is ignored.
    Unknown {
        record_type: u64,
    },
}

/// Why an administrative record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminDecodeError {
    /// Malformed CBOR or an item of the wrong type.
    #[error("malformed administrative record: {0}")]
    Cbor(#[from] CborError),
    /// Not `[record type, content]` (§6.1).
    #[error("an administrative record is [record type, content]")]
    RecordShape,
    /// A status report that is not `[status info, reason, source, timestamp]`
    /// or the same with fragment offset and length (§6.1.1).
    #[error("malformed bundle status report")]
    StatusReportShape,
    /// The status information has fewer than four items, or an item is not
    /// `[asserted]` / `[asserted, time]`.
    #[error("malformed bundle status information")]
    StatusInfoShape,
    /// The source node ID is not a valid EID.
    #[error("invalid source node ID: {0}")]
    Source(EidDecodeError),
    /// Bytes follow the record.
    #[error("trailing bytes after the administrative record")]
    TrailingBytes,
}

/// Encodes a status report as an administrative record payload:
/// `[1, [[rcv, fwd, dlv, del], reason, source, [time, seq] (, offset, length)]]`,
/// each status item `[true, t]`, `[true]` or `[false]`.
pub fn encode_status_report(r: &StatusReport) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    cbor::write_array(&mut out, 2);
    cbor::write_uint(&mut out, RECORD_TYPE_STATUS_REPORT);
    cbor::write_array(&mut out, if r.subject.fragment.is_some() { 6 } else { 4 });
    cbor::write_array(&mut out, 4);
    for item in [r.received, r.forwarded, r.delivered, r.deleted] {
        match item {
            None => {
                cbor::write_array(&mut out, 1);
                cbor::write_bool(&mut out, false);
            }
            Some(None) => {
                cbor::write_array(&mut out, 1);
                cbor::write_bool(&mut out, true);
            }
            Some(Some(t)) => {
                cbor::write_array(&mut out, 2);
                cbor::write_bool(&mut out, true);
                cbor::write_uint(&mut out, t);
            }
        }
    }
    cbor::write_uint(&mut out, r.reason.code());
    encode_eid(&mut out, &r.subject.source);
    cbor::write_array(&mut out, 2);
    cbor::write_uint(&mut out, r.subject.creation.time);
    cbor::write_uint(&mut out, r.subject.creation.seq);
    if let Some((offset, len)) = r.subject.fragment {
        cbor::write_uint(&mut out, offset);
        cbor::write_uint(&mut out, len);
    }
    out
}

/// Decodes an administrative record payload (§6.1). Record types other than
/// 1 come back as [`AdminRecord::Unknown`]; status information items beyond
/// the first four are skipped (§6.1.1 says "at least four").
pub fn decode_admin_record(payload: &[u8]) -> Result<AdminRecord, AdminDecodeError> {
    let mut r = Reader::new(payload);
    let mut rec = r.read_seq()?;
    if !rec.next(&mut r)? {
        return Err(AdminDecodeError::RecordShape);
    }
    let record_type = r.read_uint()?;
    if !rec.next(&mut r)? {
        return Err(AdminDecodeError::RecordShape);
    }
    let record = if record_type == RECORD_TYPE_STATUS_REPORT {
        AdminRecord::StatusReport(decode_status_report(&mut r)?)
    } else {
        r.skip_item()?;
        AdminRecord::Unknown { record_type }
    };
    if rec.next(&mut r)? {
        return Err(AdminDecodeError::RecordShape);
    }
    if !r.is_empty() {
        return Err(AdminDecodeError::TrailingBytes);
    }
    Ok(record)
}

fn decode_status_report(r: &mut Reader<'_>) -> Result<StatusReport, AdminDecodeError> {
    use AdminDecodeError::StatusReportShape as Shape;
    let mut sr = r.read_seq()?;
    if !sr.next(r)? {
        return Err(Shape);
    }
    let mut info = r.read_seq()?;
    let mut items = [None; 4];
    for item in &mut items {
        if !info.next(r)? {
            return Err(AdminDecodeError::StatusInfoShape);
        }
        *item = decode_status_item(r)?;
    }
    while info.next(r)? {
        r.skip_item()?;
    }
    if !sr.next(r)? {
        return Err(Shape);
    }
    // Unknown codes (other specifications may define more, §6.1.1) are kept
    // as "no information" rather than failing the whole report.
    let reason = ReasonCode::from_code(r.read_uint()?).unwrap_or(ReasonCode::NoInformation);
    if !sr.next(r)? {
        return Err(Shape);
    }
    let source = decode_eid(r).map_err(AdminDecodeError::Source)?;
    if !sr.next(r)? {
        return Err(Shape);
    }
    let mut ts = r.read_seq()?;
    if !ts.next(r)? {
        return Err(Shape);
    }
    let time = r.read_uint()?;
    if !ts.next(r)? {
        return Err(Shape);
    }
    let seq = r.read_uint()?;
    if ts.next(r)? {
        return Err(Shape);
    }
    let fragment = if sr.next(r)? {
        let offset = r.read_uint()?;
        if !sr.next(r)? {
            return Err(Shape);
        }
        let len = r.read_uint()?;
        if sr.next(r)? {
            return Err(Shape);
        }
        Some((offset, len))
    } else {
        None
    };
    let [received, forwarded, delivered, deleted] = items;
    Ok(StatusReport {
        received,
        forwarded,
        delivered,
        deleted,
        reason,
        subject: BundleId { source, creation: CreationTimestamp { time, seq }, fragment },
    })
}

/// `[false]`, `[true]` or `[true, time]`. A time on an unasserted item is ignored.
fn decode_status_item(r: &mut Reader<'_>) -> Result<Option<Option<DtnTime>>, AdminDecodeError> {
    let mut item = r.read_seq()?;
    if !item.next(r)? {
        return Err(AdminDecodeError::StatusInfoShape);
    }
    let asserted = r.read_bool()?;
    let time = if item.next(r)? { Some(r.read_uint()?) } else { None };
    if time.is_some() && item.next(r)? {
        return Err(AdminDecodeError::StatusInfoShape);
    }
    Ok(asserted.then_some(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eid::Eid;

    fn report(fragment: Option<(u64, u64)>) -> StatusReport {
        StatusReport {
            received: Some(Some(1234)),
            forwarded: None,
            delivered: Some(None),
            deleted: None,
            reason: ReasonCode::HopLimitExceeded,
            subject: BundleId {
                source: "dtn://src/app".parse().unwrap(),
                creation: CreationTimestamp { time: 99, seq: 3 },
                fragment,
            },
        }
    }

    #[test]
    fn status_report_round_trips() {
        for frag in [None, Some((100, 50))] {
            let r = report(frag);
            let bytes = encode_status_report(&r);
            assert_eq!(decode_admin_record(&bytes).unwrap(), AdminRecord::StatusReport(r));
        }
    }

    #[test]
    fn known_encoding() {
        let r = StatusReport {
            received: Some(None),
            forwarded: None,
            delivered: None,
            deleted: None,
            reason: ReasonCode::NoInformation,
            subject: BundleId {
                source: Eid::ipn_node(5),
                creation: CreationTimestamp { time: 1, seq: 2 },
                fragment: None,
            },
        };
        let expect = [
            0x82, 0x01, 0x84, 0x84, 0x81, 0xf5, 0x81, 0xf4, 0x81, 0xf4, 0x81, 0xf4, 0x00, 0x82, 0x02, 0x82, 0x05, 0x00,
            0x82, 0x01, 0x02,
        ];
        assert_eq!(encode_status_report(&r), expect);
    }

    #[test]
    fn reason_codes_round_trip() {
        for c in 0..=16 {
            assert_eq!(ReasonCode::from_code(c).unwrap().code(), c);
        }
        assert_eq!(ReasonCode::from_code(17), None);
    }

    #[test]
    fn unknown_records_extra_items_and_codes() {
        // [7, {"a": 1}]
        assert_eq!(
            decode_admin_record(&[0x82, 0x07, 0xa1, 0x61, b'a', 0x01]).unwrap(),
            AdminRecord::Unknown { record_type: 7 }
        );
        // Five status items (the fifth skipped), reason 17 (unassigned), indefinite arrays.
        let bytes = [
            0x9f, 0x01, 0x9f, 0x9f, 0x81, 0xf4, 0x81, 0xf4, 0x81, 0xf4, 0x82, 0xf5, 0x07, 0x81, 0xf4, 0xff, 0x11, 0x82,
            0x01, 0x00, 0x82, 0x00, 0x00, 0xff, 0xff,
        ];
        let AdminRecord::StatusReport(r) = decode_admin_record(&bytes).unwrap() else { panic!() };
        assert_eq!(r.deleted, Some(Some(7)));
        assert_eq!(r.reason, ReasonCode::NoInformation);
        assert_eq!(r.subject.source, Eid::Null);
    }

    #[test]
    fn never_panics_on_truncation_or_corruption() {
        let bytes = encode_status_report(&report(Some((1, 2))));
        for cut in 0..bytes.len() {
            assert!(decode_admin_record(&bytes[..cut]).is_err());
        }
        for i in 0..bytes.len() {
            for x in [0x01, 0x20, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = decode_admin_record(&b);
            }
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode_admin_record(&trailing), Err(AdminDecodeError::TrailingBytes));
    }
}
