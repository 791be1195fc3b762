//! Radio frames: what one LoRa packet (one KISS data frame, ≤ 255 bytes)
//! carries. [`Frame::parse`] is the one checked constructor (smoltcp's
//! `Repr` idea): after it, nothing can panic; [`Frame::emit`] writes a frame,
//! [`Frame::buffer_len`] says how long it is.
//!
//! ```text
//! offset  size  field
//! 0       1     version (high nibble, 1) | kind (low nibble)
//! 1       4     sender short ID (u32, big endian)
//! kind 1 HELLO:      5: node ID length (u8), node ID (UTF-8)
//! kind 2 DATA,
//! kind 3 DATA+POLL:  5: receiver short ID (u32), 9: transfer ID (u32),
//!                    13: sequence number (u16), 15: frame count (u16),
//!                    17: bundle bytes (1..=236)
//! kind 4 POLL:       5: receiver, 9: transfer ID, 13: frame count
//! kind 5 ACK:        5: receiver, 9: transfer ID, 13: status (u8),
//!                    14: frame count (u16), 16: bitmap (status 0 only,
//!                    ceil(count / 8) bytes, bit i (LSB first) = frame i held)
//! last    2     CRC-16/X.25 of every byte before it
//! ```
//!
//! Short IDs are the CRC-32C of the node ID ([`short_id`]). The CRC guards
//! against corruption on the serial line and against modems that do not
//! check the radio's own CRC; every frame is checked before anything in it
//! is believed.

use ferry_core::crc::{crc16_x25, crc32c};

/// The largest radio packet a LoRa modem carries.
pub const MAX_PACKET: usize = 255;
/// Format version in the high nibble of the first byte.
pub const VERSION: u8 = 1;
/// Bytes of a DATA frame that are not bundle bytes (header and CRC).
pub const DATA_OVERHEAD: usize = 17 + CRC_LEN;
/// Bundle bytes in a full DATA frame.
pub const MAX_CHUNK: usize = MAX_PACKET - DATA_OVERHEAD;
/// Most frames one bundle may take: its ACK bitmap must fit one packet.
pub const MAX_FRAMES: u16 = 1024;
/// Longest node ID a HELLO carries.
pub const MAX_NODE_ID: usize = MAX_PACKET - 6 - CRC_LEN;

const CRC_LEN: usize = 2;

const KIND_HELLO: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_DATA_POLL: u8 = 3;
const KIND_POLL: u8 = 4;
const KIND_ACK: u8 = 5;

/// The 32-bit short ID of a node in frames: CRC-32C of its node ID.
pub fn short_id(node_id: &str) -> u32 {
    crc32c(node_id.as_bytes())
}

/// What a receiver says about a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Still incomplete: the bitmap says which frames arrived.
    Partial,
    /// Complete and durable at the receiver (the final acknowledgement).
    Accepted,
    /// Complete; the receiver already had the bundle.
    Duplicate,
    /// Complete, but not a valid bundle: do not send it again.
    Invalid,
    /// The receiver can not take it now (no room or its store failed): try later.
    NoResources,
    /// Complete and handed to the receiver's store; the verdict is pending.
    Pending,
}

impl AckStatus {
    fn code(self) -> u8 {
        match self {
            AckStatus::Partial => 0,
            AckStatus::Accepted => 1,
            AckStatus::Duplicate => 2,
            AckStatus::Invalid => 3,
            AckStatus::NoResources => 4,
            AckStatus::Pending => 5,
        }
    }

    fn from_code(code: u8) -> Option<AckStatus> {
        Some(match code {
            0 => AckStatus::Partial,
            1 => AckStatus::Accepted,
            2 => AckStatus::Duplicate,
            3 => AckStatus::Invalid,
            4 => AckStatus::NoResources,
            5 => AckStatus::Pending,
            _ => return None,
        })
    }
}

/// A parsed frame, borrowing from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// "I am here": a neighbour's short ID and node ID.
    Hello { src: u32, node_id: &'a str },
    /// Frame `seq` of `total` of transfer `transfer` from `src` to `dst`;
    /// `poll` asks the receiver to answer with an ACK.
    Data { src: u32, dst: u32, transfer: u32, seq: u16, total: u16, poll: bool, chunk: &'a [u8] },
    /// "Where are we with this transfer?": the receiver answers with an ACK.
    Poll { src: u32, dst: u32, transfer: u32, total: u16 },
    /// The receiver's state of a transfer (`src` is the receiver).
    Ack { src: u32, dst: u32, transfer: u32, status: AckStatus, total: u16, bitmap: &'a [u8] },
}

/// Why a packet is not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than the smallest frame of its kind.
    #[error("frame of {0} bytes is too short")]
    TooShort(usize),
    /// Longer than a LoRa packet.
    #[error("frame of {0} bytes is longer than a LoRa packet ({MAX_PACKET} bytes)")]
    TooLong(usize),
    /// The CRC does not match: corrupted.
    #[error("frame CRC mismatch (corrupted)")]
    BadCrc,
    /// Another format version.
    #[error("frame format version {0}, expected {VERSION}")]
    Version(u8),
    /// An unknown kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A length field disagrees with the bytes present.
    #[error("frame length field disagrees with the frame size")]
    Length,
    /// The node ID in a HELLO is not UTF-8.
    #[error("HELLO node ID is not UTF-8")]
    NodeId,
    /// Frame count 0, above the limit, or a sequence number beyond it.
    #[error("sequence number {seq} of {total} frames is out of range (at most {MAX_FRAMES} frames)")]
    Sequence { seq: u16, total: u16 },
    /// An unknown ACK status code.
    #[error("unknown ACK status {0}")]
    Status(u8),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Bytes of an ACK bitmap for `total` frames.
pub fn bitmap_len(total: u16) -> usize {
    usize::from(total).div_ceil(8)
}

impl<'a> Frame<'a> {
    /// Checks and parses one radio packet.
    pub fn parse(packet: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if packet.len() > MAX_PACKET {
            return Err(FrameError::TooLong(packet.len()));
        }
        if packet.len() < 5 + CRC_LEN {
            return Err(FrameError::TooShort(packet.len()));
        }
        let (body, crc) = packet.split_at(packet.len() - CRC_LEN);
        if crc16_x25(body) != be16(crc, 0) {
            return Err(FrameError::BadCrc);
        }
        let (version, kind) = (body[0] >> 4, body[0] & 0x0f);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let src = be32(body, 1);
        let need = |n: usize| if body.len() < n { Err(FrameError::TooShort(packet.len())) } else { Ok(()) };
        let check_total = |seq: u16, total: u16| {
            if total == 0 || total > MAX_FRAMES || seq >= total {
                Err(FrameError::Sequence { seq, total })
            } else {
                Ok(())
            }
        };
        match kind {
            KIND_HELLO => {
                need(6)?;
                let len = usize::from(body[5]);
                if body.len() != 6 + len {
                    return Err(FrameError::Length);
                }
                let node_id = std::str::from_utf8(&body[6..]).map_err(|_| FrameError::NodeId)?;
                Ok(Frame::Hello { src, node_id })
            }
            KIND_DATA | KIND_DATA_POLL => {
                need(18)?;
                let (seq, total) = (be16(body, 13), be16(body, 15));
                check_total(seq, total)?;
                Ok(Frame::Data {
                    src,
                    dst: be32(body, 5),
                    transfer: be32(body, 9),
                    seq,
                    total,
                    poll: kind == KIND_DATA_POLL,
                    chunk: &body[17..],
                })
            }
            KIND_POLL => {
                need(15)?;
                if body.len() != 15 {
                    return Err(FrameError::Length);
                }
                let total = be16(body, 13);
                check_total(0, total)?;
                Ok(Frame::Poll { src, dst: be32(body, 5), transfer: be32(body, 9), total })
            }
            KIND_ACK => {
                need(16)?;
                let status = AckStatus::from_code(body[13]).ok_or(FrameError::Status(body[13]))?;
                let total = be16(body, 14);
                check_total(0, total)?;
                let bitmap = &body[16..];
                let expected = if status == AckStatus::Partial { bitmap_len(total) } else { 0 };
                if bitmap.len() != expected {
                    return Err(FrameError::Length);
                }
                Ok(Frame::Ack { src, dst: be32(body, 5), transfer: be32(body, 9), status, total, bitmap })
            }
            other => Err(FrameError::Kind(other)),
        }
    }

    /// The encoded length of this frame.
    pub fn buffer_len(&self) -> usize {
        CRC_LEN
            + match self {
                Frame::Hello { node_id, .. } => 6 + node_id.len(),
                Frame::Data { chunk, .. } => 17 + chunk.len(),
                Frame::Poll { .. } => 15,
                Frame::Ack { bitmap, .. } => 16 + bitmap.len(),
            }
    }

    /// Appends the encoded frame to `out`. The caller keeps frames within
    /// [`MAX_PACKET`] (node IDs within [`MAX_NODE_ID`], chunks within
    /// [`MAX_CHUNK`]); a longer node ID is cut to fit.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let head = |kind: u8, src: u32, out: &mut Vec<u8>| {
            out.push(VERSION << 4 | kind);
            out.extend_from_slice(&src.to_be_bytes());
        };
        match *self {
            Frame::Hello { src, node_id } => {
                head(KIND_HELLO, src, out);
                let mut n = node_id.len().min(MAX_NODE_ID);
                while !node_id.is_char_boundary(n) {
                    n -= 1;
                }
                out.push(n as u8); // n ≤ MAX_NODE_ID < 256
                out.extend_from_slice(&node_id.as_bytes()[..n]);
            }
            Frame::Data { src, dst, transfer, seq, total, poll, chunk } => {
                head(if poll { KIND_DATA_POLL } else { KIND_DATA }, src, out);
                out.extend_from_slice(&dst.to_be_bytes());
                out.extend_from_slice(&transfer.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(chunk);
            }
            Frame::Poll { src, dst, transfer, total } => {
                head(KIND_POLL, src, out);
                out.extend_from_slice(&dst.to_be_bytes());
                out.extend_from_slice(&transfer.to_be_bytes());
                out.extend_from_slice(&total.to_be_bytes());
            }
            Frame::Ack { src, dst, transfer, status, total, bitmap } => {
                head(KIND_ACK, src, out);
                out.extend_from_slice(&dst.to_be_bytes());
                out.extend_from_slice(&transfer.to_be_bytes());
                out.push(status.code());
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(bitmap);
            }
        }
        let crc = crc16_x25(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The encoded frame in a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame<'static>> {
        vec![
            Frame::Hello { src: 0xdead_beef, node_id: "dtn://camp/" },
            Frame::Data { src: 1, dst: 2, transfer: 7, seq: 0, total: 1, poll: true, chunk: b"x" },
            Frame::Data {
                src: 1,
                dst: 2,
                transfer: u32::MAX,
                seq: 9,
                total: 10,
                poll: false,
                chunk: &[0xc0; MAX_CHUNK],
            },
            Frame::Poll { src: 3, dst: 4, transfer: 5, total: MAX_FRAMES },
            Frame::Ack { src: 4, dst: 3, transfer: 5, status: AckStatus::Partial, total: 9, bitmap: &[0xff, 0x01] },
            Frame::Ack { src: 4, dst: 3, transfer: 5, status: AckStatus::Accepted, total: 9, bitmap: &[] },
            Frame::Ack { src: 4, dst: 3, transfer: 5, status: AckStatus::Pending, total: 1, bitmap: &[] },
        ]
    }

    #[test]
    fn round_trips() {
        for f in samples() {
            let wire = f.to_vec();
            assert_eq!(wire.len(), f.buffer_len());
            assert!(wire.len() <= MAX_PACKET);
            assert_eq!(Frame::parse(&wire), Ok(f));
        }
        // A full data frame is exactly one LoRa packet.
        let full = Frame::Data { src: 1, dst: 2, transfer: 3, seq: 0, total: 1, poll: false, chunk: &[1; MAX_CHUNK] };
        assert_eq!(full.buffer_len(), MAX_PACKET);
        // The largest bitmap fits too.
        let bitmap = [0u8; 128];
        let ack =
            Frame::Ack { src: 1, dst: 2, transfer: 3, status: AckStatus::Partial, total: MAX_FRAMES, bitmap: &bitmap };
        assert!(ack.buffer_len() <= MAX_PACKET);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        for f in samples() {
            let wire = f.to_vec();
            for i in 0..wire.len() * 8 {
                let mut bad = wire.clone();
                bad[i / 8] ^= 1 << (i % 8);
                assert!(Frame::parse(&bad).is_err(), "{f:?} with bit {i} flipped parsed");
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error_and_nothing_panics() {
        for f in samples() {
            let wire = f.to_vec();
            for n in 0..wire.len() {
                assert!(Frame::parse(&wire[..n]).is_err());
            }
        }
        assert_eq!(Frame::parse(&[0u8; 256]), Err(FrameError::TooLong(256)));
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..20_000 {
            let len = rng.usize(0..300);
            let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = Frame::parse(&junk);
        }
    }

    /// A frame whose CRC is right but whose fields are not.
    fn with_crc(body: &[u8]) -> Vec<u8> {
        let mut v = body.to_vec();
        v.extend_from_slice(&crc16_x25(body).to_be_bytes());
        v
    }

    #[test]
    fn well_checksummed_nonsense_is_refused_with_a_reason() {
        assert_eq!(Frame::parse(&with_crc(&[0x21, 0, 0, 0, 1])), Err(FrameError::Version(2)));
        assert_eq!(Frame::parse(&with_crc(&[0x19, 0, 0, 0, 1])), Err(FrameError::Kind(9)));
        // HELLO whose length byte overstates.
        assert_eq!(Frame::parse(&with_crc(&[0x11, 0, 0, 0, 1, 200, b'a'])), Err(FrameError::Length));
        assert_eq!(Frame::parse(&with_crc(&[0x11, 0, 0, 0, 1, 1, 0xff])), Err(FrameError::NodeId));
        // DATA with seq beyond total, with total 0, and above MAX_FRAMES.
        let data = |seq: u16, total: u16| {
            let mut b = vec![0x12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
            b.extend_from_slice(&seq.to_be_bytes());
            b.extend_from_slice(&total.to_be_bytes());
            b.push(42);
            with_crc(&b)
        };
        assert_eq!(Frame::parse(&data(5, 5)), Err(FrameError::Sequence { seq: 5, total: 5 }));
        assert_eq!(Frame::parse(&data(0, 0)), Err(FrameError::Sequence { seq: 0, total: 0 }));
        assert!(Frame::parse(&data(0, MAX_FRAMES + 1)).is_err());
        assert!(Frame::parse(&data(4, 5)).is_ok());
        // ACK with a bitmap of the wrong size, and an unknown status.
        let ack = |status: u8, bitmap: &[u8]| {
            let mut b = vec![0x15, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, status, 0, 9];
            b.extend_from_slice(bitmap);
            with_crc(&b)
        };
        assert_eq!(Frame::parse(&ack(0, &[1])), Err(FrameError::Length));
        assert_eq!(Frame::parse(&ack(1, &[1])), Err(FrameError::Length));
        assert_eq!(Frame::parse(&ack(9, &[])), Err(FrameError::Status(9)));
        assert!(Frame::parse(&ack(0, &[1, 2])).is_ok());
    }

    #[test]
    fn short_ids_are_crc32c_of_the_node_id() {
        assert_eq!(short_id(""), 0);
        assert_ne!(short_id("dtn://a/"), short_id("dtn://b/"));
        // CRC-32C check value (RFC 3720 B.4 uses the same polynomial).
        assert_eq!(short_id("123456789"), 0xe306_9283);
    }
}
