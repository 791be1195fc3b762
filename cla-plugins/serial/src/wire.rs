//! Link frames: what travels inside one KISS frame (see the
//! [wire format](crate#wire-format)).
//!
//! [`Frame::parse`] is the one checked constructor for untrusted bytes: it
//! verifies the CRC-32C, the type and every length before anything is
//! sliced, and after it no accessor can panic. [`Frame::emit`] writes the
//! exact bytes, [`Frame::buffer_len`] says how many.

use std::fmt;

/// Protocol version carried in HELLO.
pub const VERSION: u8 = 1;
/// type (1) + nonce (4) + seq (4) + ack (4).
pub const HEADER_LEN: usize = 13;
/// The trailing CRC-32C.
pub const CRC_LEN: usize = 4;
/// The shortest frame: a header and a CRC (ACK, NAK, NOP).
pub const MIN_FRAME: usize = HEADER_LEN + CRC_LEN;
/// DATA body before the payload: flags (1) + transfer (4).
pub const DATA_HEADER_LEN: usize = 5;
/// The total length that follows the DATA header when `START` is set.
pub const START_LEN: usize = 8;
/// HELLO body without the node ID: version, flags, echo, max_frame,
/// max_bundle, node ID length.
pub const HELLO_FIXED_LEN: usize = 1 + 1 + 4 + 4 + 8 + 2;
/// The longest node ID a HELLO may carry.
pub const MAX_NODE_ID_LEN: usize = 1024;
/// The smallest `max_frame` either side may announce: room for a DATA frame
/// with a start header and at least 16 payload bytes.
pub const MIN_MAX_FRAME: usize = HEADER_LEN + DATA_HEADER_LEN + START_LEN + 16 + CRC_LEN;

/// DATA flag: the first segment of a transfer; the total length follows.
pub const FLAG_START: u8 = 0x01;
/// DATA flag: the last segment of a transfer.
pub const FLAG_END: u8 = 0x02;
/// HELLO flag: the sender has a session with the receiver's current nonce.
pub const FLAG_UP: u8 = 0x01;

/// The frame types (first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Hello = 1,
    Data = 2,
    Result = 3,
    Nop = 4,
    Ack = 5,
    Nak = 6,
}

impl FrameType {
    fn from_u8(b: u8) -> Option<FrameType> {
        Some(match b {
            1 => FrameType::Hello,
            2 => FrameType::Data,
            3 => FrameType::Result,
            4 => FrameType::Nop,
            5 => FrameType::Ack,
            6 => FrameType::Nak,
            _ => return None,
        })
    }

    /// Whether frames of this type take a sequence number and are acknowledged.
    pub fn is_sequenced(self) -> bool {
        matches!(self, FrameType::Data | FrameType::Result | FrameType::Nop)
    }
}

/// How the receiver of a bundle answers its sender (RESULT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResultCode {
    /// Durable at the receiver.
    Accepted = 0,
    /// The receiver already had it.
    Duplicate = 1,
    /// The receiver could not take it now; send it again later.
    NoResources = 2,
    /// Not a valid bundle, or the transfer broke the link protocol.
    Invalid = 3,
    /// Longer than the receiver's `max_bundle`.
    TooLarge = 4,
}

impl ResultCode {
    fn from_u8(b: u8) -> Option<ResultCode> {
        Some(match b {
            0 => ResultCode::Accepted,
            1 => ResultCode::Duplicate,
            2 => ResultCode::NoResources,
            3 => ResultCode::Invalid,
            4 => ResultCode::TooLarge,
            _ => return None,
        })
    }
}

/// HELLO: the handshake (see [`crate::link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    pub version: u8,
    /// [`FLAG_UP`]: the sender's session with us is up; do not answer.
    pub up: bool,
    /// The last nonce the sender heard from us (0: none).
    pub echo: u32,
    /// The largest frame the sender accepts (header to CRC, unescaped).
    pub max_frame: u32,
    /// The largest bundle the sender accepts.
    pub max_bundle: u64,
    pub node_id: &'a str,
}

/// DATA: one segment of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    pub transfer: u32,
    /// Present on the first segment: the bundle's total length.
    pub start: Option<u64>,
    /// The last segment.
    pub end: bool,
    pub payload: &'a [u8],
}

/// What a frame carries after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    Hello(Hello<'a>),
    Data(Data<'a>),
    Result { transfer: u32, code: ResultCode },
    Nop,
    Ack,
    Nak,
}

impl Body<'_> {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Body::Hello(_) => FrameType::Hello,
            Body::Data(_) => FrameType::Data,
            Body::Result { .. } => FrameType::Result,
            Body::Nop => FrameType::Nop,
            Body::Ack => FrameType::Ack,
            Body::Nak => FrameType::Nak,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Body::Hello(h) => HELLO_FIXED_LEN + h.node_id.len(),
            Body::Data(d) => DATA_HEADER_LEN + if d.start.is_some() { START_LEN } else { 0 } + d.payload.len(),
            Body::Result { .. } => 5,
            Body::Nop | Body::Ack | Body::Nak => 0,
        }
    }
}

/// One link frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The sender's session nonce.
    pub nonce: u32,
    /// Sequence number (sequenced types; 0 otherwise).
    pub seq: u32,
    /// Cumulative acknowledgement: the next sequence number the sender expects.
    pub ack: u32,
    pub body: Body<'a>,
}

/// Why bytes are not a frame. The frame is dropped; nothing else happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than a header and a CRC.
    #[error("frame of {len} bytes is shorter than the {MIN_FRAME}-byte minimum")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The CRC-32C does not match: line noise.
    #[error("CRC-32C mismatch (frame says {found:#010x}, content gives {computed:#010x})")]
    BadCrc {
        /// The CRC in the frame.
        found: u32,
        /// The CRC of its content.
        computed: u32,
    },
    /// A type byte this version does not know.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The body is shorter than its type needs.
    #[error("{what} frame body of {len} bytes is too short")]
    Truncated {
        /// The frame type.
        what: &'static str,
        /// The body's length.
        len: usize,
    },
    /// A body longer than its type allows.
    #[error("{what} frame has {extra} unexpected bytes after its body")]
    Trailing {
        /// The frame type.
        what: &'static str,
        /// How many bytes too many.
        extra: usize,
    },
    /// DATA flags with reserved bits set.
    #[error("DATA frame with reserved flag bits set ({0:#04x})")]
    BadFlags(u8),
    /// A RESULT code this version does not know.
    #[error("RESULT frame with unknown code {0}")]
    UnknownResult(u8),
    /// A HELLO node ID longer than [`MAX_NODE_ID_LEN`] or beyond the body.
    #[error("HELLO declares a node ID of {len} bytes ({available} present, at most {MAX_NODE_ID_LEN} allowed)")]
    BadNodeIdLength {
        /// The declared length.
        len: usize,
        /// The bytes present.
        available: usize,
    },
    /// A HELLO node ID that is not UTF-8.
    #[error("HELLO node ID is not UTF-8")]
    NodeIdNotUtf8,
}

/// A checked big-endian reader over a body.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
    len: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(FrameError::Truncated { what: self.what, len: self.len });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    fn finish(self) -> Result<(), FrameError> {
        match self.bytes.len() {
            0 => Ok(()),
            extra => Err(FrameError::Trailing { what: self.what, extra }),
        }
    }
}

impl<'a> Frame<'a> {
    /// Parses one frame (the data of a KISS frame, without its command byte).
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if bytes.len() < MIN_FRAME {
            return Err(FrameError::TooShort { len: bytes.len() });
        }
        let (content, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        let mut found = [0u8; 4];
        found.copy_from_slice(crc);
        let found = u32::from_be_bytes(found);
        let computed = crc32c::crc32c(content);
        if found != computed {
            return Err(FrameError::BadCrc { found, computed });
        }
        let mut header = Reader { bytes: content, what: "frame", len: content.len() };
        let type_byte = header.u8()?;
        let nonce = header.u32()?;
        let seq = header.u32()?;
        let ack = header.u32()?;
        let ty = FrameType::from_u8(type_byte).ok_or(FrameError::UnknownType(type_byte))?;
        let body = header.rest();
        let what = match ty {
            FrameType::Hello => "HELLO",
            FrameType::Data => "DATA",
            FrameType::Result => "RESULT",
            FrameType::Nop => "NOP",
            FrameType::Ack => "ACK",
            FrameType::Nak => "NAK",
        };
        let mut r = Reader { bytes: body, what, len: body.len() };
        let body = match ty {
            FrameType::Hello => {
                let version = r.u8()?;
                let flags = r.u8()?;
                let echo = r.u32()?;
                let max_frame = r.u32()?;
                let max_bundle = r.u64()?;
                let len = usize::from(r.u16()?);
                if len > MAX_NODE_ID_LEN || len > r.bytes.len() {
                    return Err(FrameError::BadNodeIdLength { len, available: r.bytes.len() });
                }
                let node_id = std::str::from_utf8(r.take(len)?).map_err(|_| FrameError::NodeIdNotUtf8)?;
                // Bytes after the node ID are room for later versions: ignored.
                r.rest();
                Body::Hello(Hello { version, up: flags & FLAG_UP != 0, echo, max_frame, max_bundle, node_id })
            }
            FrameType::Data => {
                let flags = r.u8()?;
                if flags & !(FLAG_START | FLAG_END) != 0 {
                    return Err(FrameError::BadFlags(flags));
                }
                let transfer = r.u32()?;
                let start = if flags & FLAG_START != 0 { Some(r.u64()?) } else { None };
                Body::Data(Data { transfer, start, end: flags & FLAG_END != 0, payload: r.rest() })
            }
            FrameType::Result => {
                let transfer = r.u32()?;
                let code = r.u8()?;
                Body::Result { transfer, code: ResultCode::from_u8(code).ok_or(FrameError::UnknownResult(code))? }
            }
            FrameType::Nop => Body::Nop,
            FrameType::Ack => Body::Ack,
            FrameType::Nak => Body::Nak,
        };
        r.finish()?;
        Ok(Frame { nonce, seq, ack, body })
    }

    /// The length [`Frame::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.body_len() + CRC_LEN
    }

    /// Appends the frame (header, body, CRC-32C) to `out`.
    ///
    /// A HELLO node ID longer than [`MAX_NODE_ID_LEN`] is the caller's bug;
    /// [`crate::link::Config`] refuses one.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let from = out.len();
        out.reserve(self.buffer_len());
        out.push(self.body.frame_type() as u8);
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        match self.body {
            Body::Hello(h) => {
                out.push(h.version);
                out.push(if h.up { FLAG_UP } else { 0 });
                out.extend_from_slice(&h.echo.to_be_bytes());
                out.extend_from_slice(&h.max_frame.to_be_bytes());
                out.extend_from_slice(&h.max_bundle.to_be_bytes());
                let id = &h.node_id.as_bytes()[..h.node_id.len().min(MAX_NODE_ID_LEN)];
                out.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes());
                out.extend_from_slice(id);
            }
            Body::Data(d) => {
                let flags = if d.start.is_some() { FLAG_START } else { 0 } | if d.end { FLAG_END } else { 0 };
                out.push(flags);
                out.extend_from_slice(&d.transfer.to_be_bytes());
                if let Some(total) = d.start {
                    out.extend_from_slice(&total.to_be_bytes());
                }
                out.extend_from_slice(d.payload);
            }
            Body::Result { transfer, code } => {
                out.extend_from_slice(&transfer.to_be_bytes());
                out.push(code as u8);
            }
            Body::Nop | Body::Ack | Body::Nak => {}
        }
        let crc = crc32c::crc32c(&out[from..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame<'_>) {
        let mut out = Vec::new();
        frame.emit(&mut out);
        assert_eq!(out.len(), frame.buffer_len());
        assert_eq!(Frame::parse(&out), Ok(frame));
    }

    #[test]
    fn every_type_round_trips() {
        let hello =
            Hello { version: VERSION, up: true, echo: 7, max_frame: 1024, max_bundle: 1 << 20, node_id: "dtn://a/" };
        round_trip(Frame { nonce: 1, seq: 0, ack: 0, body: Body::Hello(hello) });
        let data = Data { transfer: 3, start: Some(10), end: false, payload: b"abcde" };
        round_trip(Frame { nonce: 1, seq: 5, ack: 9, body: Body::Data(data) });
        let last = Data { transfer: 3, start: None, end: true, payload: b"fghij" };
        round_trip(Frame { nonce: 1, seq: 6, ack: 9, body: Body::Data(last) });
        let whole = Data { transfer: 4, start: Some(0), end: true, payload: b"" };
        round_trip(Frame { nonce: 1, seq: 7, ack: 9, body: Body::Data(whole) });
        round_trip(Frame { nonce: 2, seq: 1, ack: 2, body: Body::Result { transfer: 3, code: ResultCode::TooLarge } });
        for body in [Body::Nop, Body::Ack, Body::Nak] {
            round_trip(Frame { nonce: u32::MAX, seq: u32::MAX, ack: 0, body });
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_the_crc() {
        let mut out = Vec::new();
        let data = Data { transfer: 1, start: Some(3), end: true, payload: b"xyz" };
        Frame { nonce: 9, seq: 1, ack: 1, body: Body::Data(data) }.emit(&mut out);
        for i in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(matches!(Frame::parse(&bad), Err(FrameError::BadCrc { .. })), "bit {i}");
        }
    }

    /// Content with a correct CRC appended: a frame a buggy or hostile peer sent.
    fn sealed(content: &[u8]) -> Vec<u8> {
        let mut v = content.to_vec();
        v.extend_from_slice(&crc32c::crc32c(content).to_be_bytes());
        v
    }

    #[test]
    fn malformed_frames_with_a_valid_crc_are_typed_errors() {
        let header = |ty: u8| {
            let mut h = vec![ty];
            h.extend_from_slice(&[0; 12]);
            h
        };
        assert_eq!(Frame::parse(&[1, 2, 3]), Err(FrameError::TooShort { len: 3 }));
        assert_eq!(Frame::parse(&sealed(&header(99))), Err(FrameError::UnknownType(99)));
        assert_eq!(Frame::parse(&sealed(&header(0))), Err(FrameError::UnknownType(0)));
        let mut data = header(2);
        data.push(0x80);
        data.extend_from_slice(&[0; 4]);
        assert_eq!(Frame::parse(&sealed(&data)), Err(FrameError::BadFlags(0x80)));
        let mut start = header(2);
        start.push(FLAG_START);
        start.extend_from_slice(&[0; 4 + 7]); // one byte short of the total length
        assert_eq!(Frame::parse(&sealed(&start)), Err(FrameError::Truncated { what: "DATA", len: 12 }));
        let mut result = header(3);
        result.extend_from_slice(&[0, 0, 0, 1, 42]);
        assert_eq!(Frame::parse(&sealed(&result)), Err(FrameError::UnknownResult(42)));
        let mut ack = header(5);
        ack.push(0);
        assert_eq!(Frame::parse(&sealed(&ack)), Err(FrameError::Trailing { what: "ACK", extra: 1 }));
        let mut hello = header(1);
        hello.extend_from_slice(&[VERSION, 0]);
        hello.extend_from_slice(&[0; 16]);
        hello.extend_from_slice(&u16::MAX.to_be_bytes());
        hello.extend_from_slice(b"dtn://x/");
        assert_eq!(Frame::parse(&sealed(&hello)), Err(FrameError::BadNodeIdLength { len: 65535, available: 8 }));
        let n = hello.len();
        hello[n - 10..n - 8].copy_from_slice(&2u16.to_be_bytes());
        hello.truncate(n - 8);
        hello.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(Frame::parse(&sealed(&hello)), Err(FrameError::NodeIdNotUtf8));
    }

    #[test]
    fn no_input_panics() {
        // Every prefix of every valid frame, and every single-byte change that
        // keeps a valid CRC, parses or fails cleanly.
        let mut frames = Vec::new();
        let hello = Hello { version: 1, up: false, echo: 0, max_frame: 64, max_bundle: 9, node_id: "ipn:1.0" };
        Frame { nonce: 1, seq: 0, ack: 0, body: Body::Hello(hello) }.emit(&mut frames);
        let data = Data { transfer: 1, start: Some(2), end: true, payload: b"ab" };
        Frame { nonce: 1, seq: 0, ack: 0, body: Body::Data(data) }.emit(&mut frames);
        for cut in 0..frames.len() {
            let _ = Frame::parse(&frames[..cut]);
            let content = &frames[..cut.saturating_sub(CRC_LEN)];
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut c = content.to_vec();
                if let Some(x) = c.get_mut(cut / 2) {
                    *x = b;
                }
                let _ = Frame::parse(&sealed(&c));
            }
        }
    }
}
