//! IPND beacons as dtn7-rs 0.21 sends them (its `ipnd::beacon` and
//! `ipnd::services`), sans-IO: [`Beacon::encode`] and the checked
//! [`Beacon::decode`].
//!
//! A beacon is one UDP datagram holding one CBOR array, definite length,
//! minimal heads (serde_cbor):
//!
//! ```text
//! [ version      uint   7 (IPND draft is 4; dtn7-rs bumped it for BPv7)
//!   flags        uint   0x01 EID present, 0x02 service block, 0x04 period
//!   eid          BPv7 EID: [1, "//node/"] | [1, 0] (dtn:none) | [2, [node, service]]
//!   sequence     uint   u32, counts beacons sent to one destination
//!   services?    [ [[cla name, port | null], ...], {tag: [bytes...]} ]   when flag 0x02
//!   period?      uint   seconds between beacons                          when flag 0x04
//! ]
//! ```
//!
//! dtn7-rs names its TCPCLv4 agent `"tcp"` and MTCP `"mtcp"`; the address to
//! reach them is the beacon's UDP source address with the advertised port.
//! Decoding is lenient where that loses nothing (any version, unknown CLA
//! names and services skipped, indefinite lengths accepted) and bounded:
//! nesting depth and item counts are limited by the datagram's size and
//! [`MAX_DEPTH`], and nothing is allocated from a declared length.

/// dtn7-rs's IPND version.
pub const IPND_VERSION: u8 = 7;
/// The beacon carries the sender's EID.
pub const SOURCE_EID_PRESENT: u8 = 0x01;
/// The beacon carries a service block.
pub const SERVICE_BLOCK_PRESENT: u8 = 0x02;
/// The beacon carries its period.
pub const BEACON_PERIOD_PRESENT: u8 = 0x04;
/// CBOR nesting accepted when decoding.
pub const MAX_DEPTH: usize = 8;

/// One beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// IPND version (7 from dtn7-rs and Ferry).
    pub version: u8,
    /// Flags as received.
    pub flags: u8,
    /// The sender's node ID (`dtn://node/`, `ipn:N.0`, `dtn:none`).
    pub node_id: String,
    /// Beacon sequence number.
    pub sequence: u32,
    /// Advertised convergence layers: name and port.
    pub clas: Vec<(String, Option<u16>)>,
    /// Seconds between the sender's beacons.
    pub period_secs: Option<u64>,
}

/// Why a datagram is not a beacon, or a beacon can not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeaconError {
    /// The bytes are not one well-formed CBOR item within our limits.
    #[error("beacon is not well-formed CBOR")]
    Cbor,
    /// Bytes after the beacon's array.
    #[error("trailing bytes after the beacon")]
    TrailingBytes,
    /// The CBOR is not shaped like a beacon.
    #[error("beacon field {0} is missing or has the wrong type")]
    Shape(&'static str),
    /// The node ID can not be written as a BPv7 EID.
    #[error("node ID \"{0}\" is neither dtn:… nor ipn:N.S")]
    NodeId(String),
}

impl Beacon {
    /// A beacon from node `node_id` advertising `clas`.
    pub fn new(node_id: &str, sequence: u32, clas: Vec<(String, Option<u16>)>, period_secs: Option<u64>) -> Self {
        let mut flags = SOURCE_EID_PRESENT;
        if !clas.is_empty() {
            flags |= SERVICE_BLOCK_PRESENT;
        }
        if period_secs.is_some() {
            flags |= BEACON_PERIOD_PRESENT;
        }
        Beacon { version: IPND_VERSION, flags, node_id: node_id.to_owned(), sequence, clas, period_secs }
    }

    /// The datagram, as serde_cbor writes dtn7-rs's `Beacon`.
    pub fn encode(&self) -> Result<Vec<u8>, BeaconError> {
        let mut out = Vec::with_capacity(64);
        let n = 4 + usize::from(!self.clas.is_empty()) + usize::from(self.period_secs.is_some());
        head(&mut out, 4, n as u64);
        head(&mut out, 0, self.version.into());
        head(&mut out, 0, self.flags.into());
        encode_eid(&self.node_id, &mut out)?;
        head(&mut out, 0, self.sequence.into());
        if !self.clas.is_empty() {
            head(&mut out, 4, 2);
            head(&mut out, 4, self.clas.len() as u64);
            for (name, port) in &self.clas {
                head(&mut out, 4, 2);
                text(&mut out, name);
                match port {
                    Some(p) => head(&mut out, 0, (*p).into()),
                    None => out.push(0xf6),
                }
            }
            head(&mut out, 5, 0); // no custom services
        }
        if let Some(p) = self.period_secs {
            head(&mut out, 0, p);
        }
        Ok(out)
    }

    /// Parses a datagram.
    pub fn decode(buf: &[u8]) -> Result<Beacon, BeaconError> {
        let mut r = Reader { buf, pos: 0 };
        let v = r.value(0)?;
        if r.pos != buf.len() {
            return Err(BeaconError::TrailingBytes);
        }
        let Value::Array(items) = v else { return Err(BeaconError::Shape("beacon")) };
        let mut it = items.into_iter();
        let version = it.next().and_then(|v| v.uint()).and_then(|v| u8::try_from(v).ok());
        let version = version.ok_or(BeaconError::Shape("version"))?;
        let flags = it.next().and_then(|v| v.uint()).and_then(|v| u8::try_from(v).ok());
        let flags = flags.ok_or(BeaconError::Shape("flags"))?;
        let node_id = it.next().and_then(decode_eid).ok_or(BeaconError::Shape("eid"))?;
        let sequence = it.next().and_then(|v| v.uint()).and_then(|v| u32::try_from(v).ok());
        let sequence = sequence.ok_or(BeaconError::Shape("beacon sequence number"))?;
        let mut clas = Vec::new();
        let mut period_secs = None;
        // dtn7-rs tells the optional fields apart by the flags; their types
        // say the same, so those are used.
        for v in it {
            match v {
                Value::Array(block) => clas = decode_services(block)?,
                Value::Uint(p) => period_secs = Some(p),
                _ => return Err(BeaconError::Shape("service block or period")),
            }
        }
        Ok(Beacon { version, flags, node_id, sequence, clas, period_secs })
    }
}

fn decode_services(block: Vec<Value>) -> Result<Vec<(String, Option<u16>)>, BeaconError> {
    let mut clas = Vec::new();
    let Some(Value::Array(list)) = block.into_iter().next() else {
        // An empty service block is an empty array.
        return Ok(clas);
    };
    for entry in list {
        let Value::Array(pair) = entry else { return Err(BeaconError::Shape("cla entry")) };
        let mut pair = pair.into_iter();
        let name = match pair.next() {
            Some(Value::Text(t)) => t,
            _ => return Err(BeaconError::Shape("cla name")),
        };
        let port = match pair.next() {
            Some(Value::Uint(p)) => Some(u16::try_from(p).map_err(|_| BeaconError::Shape("cla port"))?),
            Some(Value::Null) | None => None,
            _ => return Err(BeaconError::Shape("cla port")),
        };
        clas.push((name, port));
    }
    Ok(clas)
}

/// BPv7 EID encoding (RFC 9171 §4.2.5.1).
fn encode_eid(node_id: &str, out: &mut Vec<u8>) -> Result<(), BeaconError> {
    let bad = || BeaconError::NodeId(node_id.to_owned());
    head(out, 4, 2);
    if node_id == "dtn:none" {
        head(out, 0, 1);
        head(out, 0, 0);
    } else if let Some(ssp) = node_id.strip_prefix("dtn:") {
        head(out, 0, 1);
        text(out, ssp);
    } else if let Some(ssp) = node_id.strip_prefix("ipn:") {
        let (n, s) = ssp.split_once('.').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        let s: u64 = s.parse().map_err(|_| bad())?;
        head(out, 0, 2);
        head(out, 4, 2);
        head(out, 0, n);
        head(out, 0, s);
    } else {
        return Err(bad());
    }
    Ok(())
}

fn decode_eid(v: Value) -> Option<String> {
    let Value::Array(parts) = v else { return None };
    let mut parts = parts.into_iter();
    match (parts.next()?, parts.next()?) {
        (Value::Uint(1), Value::Uint(0)) => Some("dtn:none".into()),
        (Value::Uint(1), Value::Text(ssp)) => Some(format!("dtn:{ssp}")),
        (Value::Uint(2), Value::Array(nums)) => match nums[..] {
            [Value::Uint(n), Value::Uint(s)] => Some(format!("ipn:{n}.{s}")),
            _ => None,
        },
        _ => None,
    }
}

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    let be = value.to_be_bytes();
    match value {
        0..=23 => out.push(m | be[7]),
        24..=0xff => out.extend_from_slice(&[m | 24, be[7]]),
        0x100..=0xffff => out.extend_from_slice(&[m | 25, be[6], be[7]]),
        0x1_0000..=0xffff_ffff => out.extend_from_slice(&[m | 26, be[4], be[5], be[6], be[7]]),
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&be);
        }
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The CBOR a beacon can hold. Floats, tags' numbers and simple values other
/// than null are kept only as "something else".
#[derive(Debug)]
enum Value {
    Uint(u64),
    Text(String),
    Array(Vec<Value>),
    Null,
    Other,
}

impl Value {
    fn uint(self) -> Option<u64> {
        match self {
            Value::Uint(v) => Some(v),
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A head's argument, or "indefinite" (additional information 31).
enum Arg {
    Value(u64),
    Indefinite,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, BeaconError> {
        let b = *self.buf.get(self.pos).ok_or(BeaconError::Cbor)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], BeaconError> {
        // A length beyond the datagram fails here, before anything is allocated.
        let n = usize::try_from(n).map_err(|_| BeaconError::Cbor)?;
        let end = self.pos.checked_add(n).ok_or(BeaconError::Cbor)?;
        let s = self.buf.get(self.pos..end).ok_or(BeaconError::Cbor)?;
        self.pos = end;
        Ok(s)
    }

    fn head(&mut self) -> Result<(u8, u8, Arg), BeaconError> {
        let ib = self.byte()?;
        let (major, ai) = (ib >> 5, ib & 0x1f);
        let arg = match ai {
            0..=23 => Arg::Value(ai.into()),
            24..=27 => {
                let n = 1u64 << (ai - 24);
                Arg::Value(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
            }
            31 => Arg::Indefinite,
            _ => return Err(BeaconError::Cbor),
        };
        Ok((major, ai, arg))
    }

    fn at_break(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xff) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, BeaconError> {
        if depth > MAX_DEPTH {
            return Err(BeaconError::Cbor);
        }
        let (major, ai, arg) = self.head()?;
        match (major, arg) {
            (0, Arg::Value(v)) => Ok(Value::Uint(v)),
            (1, Arg::Value(_)) => Ok(Value::Other),
            (2 | 3, Arg::Value(n)) => {
                let bytes = self.take(n)?;
                match major {
                    3 => Ok(Value::Text(std::str::from_utf8(bytes).map_err(|_| BeaconError::Cbor)?.to_owned())),
                    _ => Ok(Value::Other),
                }
            }
            (2 | 3, Arg::Indefinite) => {
                let mut s = Vec::new();
                while !self.at_break() {
                    let (m, _, arg) = self.head()?;
                    let Arg::Value(n) = arg else { return Err(BeaconError::Cbor) };
                    if m != major {
                        return Err(BeaconError::Cbor);
                    }
                    s.extend_from_slice(self.take(n)?);
                }
                match major {
                    3 => Ok(Value::Text(String::from_utf8(s).map_err(|_| BeaconError::Cbor)?)),
                    _ => Ok(Value::Other),
                }
            }
            (4 | 5, arg) => {
                let per_entry = if major == 5 { 2 } else { 1 };
                let mut items = Vec::new();
                match arg {
                    Arg::Value(n) => {
                        // Every item takes at least one byte: a count beyond
                        // what is left is malformed (and never allocated).
                        let left = (self.buf.len() - self.pos) as u64;
                        if n.checked_mul(per_entry).is_none_or(|k| k > left) {
                            return Err(BeaconError::Cbor);
                        }
                        for _ in 0..n * per_entry {
                            items.push(self.value(depth + 1)?);
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break() {
                            items.push(self.value(depth + 1)?);
                        }
                        if major == 5 && items.len() & 1 == 1 {
                            return Err(BeaconError::Cbor);
                        }
                    }
                }
                Ok(if major == 4 { Value::Array(items) } else { Value::Other })
            }
            (6, Arg::Value(_)) => {
                self.value(depth + 1)?;
                Ok(Value::Other)
            }
            (7, _) => match ai {
                22 => Ok(Value::Null),
                0..=27 => Ok(Value::Other),
                _ => Err(BeaconError::Cbor),
            },
            _ => Err(BeaconError::Cbor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What dtn7-rs 0.21 (serde_cbor) sends for node `dtn://node1/` with its
    /// tcp CLA on 4556 and mtcp on 16162, sequence 3, period 2 s.
    const DTN7_BEACON: &[u8] = &[
        0x86, 0x07, 0x07, 0x82, 0x01, 0x68, b'/', b'/', b'n', b'o', b'd', b'e', b'1', b'/', 0x03, 0x82, 0x82, 0x82,
        0x63, b't', b'c', b'p', 0x19, 0x11, 0xcc, 0x82, 0x64, b'm', b't', b'c', b'p', 0x19, 0x3f, 0x22, 0xa0, 0x02,
    ];

    #[test]
    fn encodes_like_serde_cbor_and_round_trips() {
        let b = Beacon::new("dtn://node1/", 3, vec![("tcp".into(), Some(4556)), ("mtcp".into(), Some(16162))], Some(2));
        assert_eq!(b.encode().unwrap(), DTN7_BEACON);
        assert_eq!(Beacon::decode(DTN7_BEACON).unwrap(), b);
    }

    #[test]
    fn minimal_and_ipn_beacons() {
        let b = Beacon::new("ipn:23.0", 0, vec![], None);
        let wire = b.encode().unwrap();
        assert_eq!(wire, [0x84, 0x07, 0x01, 0x82, 0x02, 0x82, 0x17, 0x00, 0x00]);
        assert_eq!(Beacon::decode(&wire).unwrap(), b);
        let none = Beacon::new("dtn:none", 1, vec![("x".into(), None)], None);
        assert_eq!(Beacon::decode(&none.encode().unwrap()).unwrap(), none);
        assert!(Beacon::new("nodeA", 0, vec![], None).encode().is_err());
        // An empty service block (an empty array) and a period.
        let wire = [0x86, 0x07, 0x07, 0x82, 0x01, 0x63, b'/', b'/', b'a', 0x00, 0x80, 0x0a];
        let b = Beacon::decode(&wire).unwrap();
        assert_eq!((b.node_id.as_str(), b.clas.len(), b.period_secs), ("dtn://a", 0, Some(10)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x84],
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x81; 100],
            [DTN7_BEACON, &[0]].concat(),
            vec![0x84, 0x07, 0x01, 0x82, 0x02, 0x81, 0x17, 0x00],
        ];
        for cut in 0..DTN7_BEACON.len() {
            inputs.push(DTN7_BEACON[..cut].to_vec());
        }
        let mut x = 7u32;
        for _ in 0..2000 {
            let mut v = DTN7_BEACON.to_vec();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x as usize % v.len();
            v[i] ^= (x >> 8) as u8 | 1;
            inputs.push(v);
        }
        for input in inputs {
            let _ = Beacon::decode(&input);
        }
        assert!(Beacon::decode(&[0x81; 100]).is_err());
    }
}
