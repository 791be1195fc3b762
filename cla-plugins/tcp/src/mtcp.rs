//! MTCP framing: each bundle travels as one CBOR byte string (major type 2:
//! a head with the length, then the bundle) on a plain TCP stream, as
//! dtn7-rs, dtn7-go and µD3TN send it. There is no handshake, no
//! acknowledgement and no keepalive: a bundle written is all there is.
//!
//! [`parse_frame`] is the checked constructor for one frame in a buffer;
//! [`Decoder`] is the incremental form for a stream; [`encode`] writes a
//! frame.
//!
//! Observed on the wire: dtn7-rs encodes the head minimally (serde_cbor) and
//! its decoder waits for at least 10 octets before it looks at a frame, then
//! insists that the bundle's last octet is 0xff (the end of the bundle's
//! indefinite-length array). Bundles are far longer than 10 octets, so this
//! only matters for hand-made test frames.

/// dtn7-rs's default MTCP port.
pub const DEFAULT_PORT: u16 = 16162;

/// CBOR major type 2, shifted into the initial byte.
const BYTE_STRING: u8 = 0x40;

/// Why a stream is not MTCP. The stream can not be resynchronised after any
/// of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MtcpError {
    /// The item is not a CBOR byte string.
    #[error("MTCP frame is not a CBOR byte string (initial byte {initial_byte:#04x})")]
    NotAByteString {
        /// The initial byte.
        initial_byte: u8,
    },
    /// An indefinite-length byte string: no MTCP sender produces one.
    #[error("indefinite-length byte string in MTCP stream")]
    IndefiniteLength,
    /// Additional information 28–30, reserved by RFC 8949 §3.
    #[error("reserved CBOR additional information (initial byte {initial_byte:#04x})")]
    ReservedAdditionalInfo {
        /// The initial byte.
        initial_byte: u8,
    },
    /// The declared bundle is longer than allowed.
    #[error("MTCP frame of {len} octets exceeds the limit of {max}")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// The head's length for a given initial byte, or why it is not a byte string.
fn head_len(initial_byte: u8) -> Result<usize, MtcpError> {
    if initial_byte & 0xe0 != BYTE_STRING {
        return Err(MtcpError::NotAByteString { initial_byte });
    }
    match initial_byte & 0x1f {
        0..=23 => Ok(1),
        24 => Ok(2),
        25 => Ok(3),
        26 => Ok(5),
        27 => Ok(9),
        31 => Err(MtcpError::IndefiniteLength),
        _ => Err(MtcpError::ReservedAdditionalInfo { initial_byte }),
    }
}

/// The declared length from a complete head (`head.len() == head_len(head[0])`).
fn head_value(head: &[u8]) -> u64 {
    match head {
        [b] => u64::from(b & 0x1f),
        [_, rest @ ..] => rest.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        [] => 0,
    }
}

/// Parse one frame at the start of `buf`: `Ok(Some((bundle, consumed)))`,
/// `Ok(None)` if incomplete. The length is checked against `max_bundle_len`
/// as soon as the head is complete.
pub fn parse_frame(buf: &[u8], max_bundle_len: u64) -> Result<Option<(&[u8], usize)>, MtcpError> {
    let Some(&initial_byte) = buf.first() else { return Ok(None) };
    let hl = head_len(initial_byte)?;
    let Some(head) = buf.get(..hl) else { return Ok(None) };
    let len = head_value(head);
    let too_large = MtcpError::TooLarge { len, max: max_bundle_len };
    if len > max_bundle_len {
        return Err(too_large);
    }
    // With no real limit (u64::MAX) the end may not fit a usize at all.
    let end = usize::try_from(len).ok().and_then(|n| hl.checked_add(n)).ok_or(too_large)?;
    match buf.get(hl..end) {
        Some(bundle) => Ok(Some((bundle, end))),
        None => Ok(None),
    }
}

/// Append the CBOR byte string head for a bundle of `len` octets, minimally
/// encoded (RFC 8949 §4.2.1), as serde_cbor does.
pub fn encode_header(len: u64, out: &mut Vec<u8>) {
    let be = len.to_be_bytes();
    match header_len(len) {
        // Additional information 0..=23 holds the length itself.
        1 => out.push(BYTE_STRING | be[7]),
        2 => out.extend_from_slice(&[BYTE_STRING | 24, be[7]]),
        3 => out.extend_from_slice(&[BYTE_STRING | 25, be[6], be[7]]),
        5 => out.extend_from_slice(&[BYTE_STRING | 26, be[4], be[5], be[6], be[7]]),
        _ => {
            out.push(BYTE_STRING | 27);
            out.extend_from_slice(&be);
        }
    }
}

/// The length of the head [`encode_header`] writes for `len`.
pub fn header_len(len: u64) -> usize {
    match len {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Append one MTCP frame carrying `bundle`.
pub fn encode(bundle: &[u8], out: &mut Vec<u8>) {
    out.reserve(header_len(bundle.len() as u64) + bundle.len());
    encode_header(bundle.len() as u64, out);
    out.extend_from_slice(bundle);
}

/// How much the decoder reserves ahead from a declared length; beyond this a
/// frame's buffer grows with the data that actually arrives.
const RESERVE_CAP: usize = 1 << 20;

enum State {
    /// Collecting the head (at most 9 octets).
    Head { head: [u8; 9], have: usize },
    /// Collecting `len` octets of bundle.
    Body { data: Vec<u8>, len: usize },
}

/// An incremental MTCP decoder: [`Decoder::feed`] bytes as they arrive and
/// take whole bundles with [`Decoder::next_bundle`]. Each bundle octet is
/// copied once, into the bundle's own buffer; nothing is allocated from a
/// declared length beyond `max_bundle_len` (and at most 1 MiB ahead of the
/// data).
pub struct Decoder {
    max_bundle_len: u64,
    state: State,
    ready: std::collections::VecDeque<Vec<u8>>,
    error: Option<MtcpError>,
}

impl Decoder {
    /// A decoder that refuses bundles longer than `max_bundle_len`.
    pub fn new(max_bundle_len: u64) -> Self {
        Decoder { max_bundle_len, state: State::Head { head: [0; 9], have: 0 }, ready: Default::default(), error: None }
    }

    /// Consume `input`. Whole bundles become available from
    /// [`Decoder::next_bundle`]. After an error the stream is unusable and
    /// every later call returns the same error; bundles completed before it
    /// can still be taken.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), MtcpError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        while !input.is_empty() {
            match &mut self.state {
                State::Head { head, have } => {
                    let need = match head_len(if *have == 0 { input[0] } else { head[0] }) {
                        Ok(need) => need,
                        Err(err) => return Err(*self.error.insert(err)),
                    };
                    let take = (need - *have).min(input.len());
                    head[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    input = &input[take..];
                    if *have < need {
                        break;
                    }
                    let len = head_value(&head[..need]);
                    let n = match usize::try_from(len) {
                        // As in parse_frame: the whole frame must fit a usize.
                        Ok(n) if len <= self.max_bundle_len && n.checked_add(need).is_some() => n,
                        _ => return Err(*self.error.insert(MtcpError::TooLarge { len, max: self.max_bundle_len })),
                    };
                    self.state = State::Body { data: Vec::with_capacity(n.min(RESERVE_CAP)), len: n };
                }
                State::Body { data, len } => {
                    let take = (*len - data.len()).min(input.len());
                    data.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
            }
            if let State::Body { data, len } = &mut self.state {
                if data.len() == *len {
                    self.ready.push_back(std::mem::take(data));
                    self.state = State::Head { head: [0; 9], have: 0 };
                }
            }
        }
        Ok(())
    }

    /// The next whole bundle, if any.
    pub fn next_bundle(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// Whether the decoder sits between frames (nothing partial buffered): at
    /// EOF, `false` means the last frame was cut off.
    pub fn is_between_frames(&self) -> bool {
        matches!(self.state, State::Head { have: 0, .. })
    }

    /// Octets of an incomplete frame held.
    pub fn buffered_len(&self) -> usize {
        match &self.state {
            State::Head { have, .. } => *have,
            State::Body { data, .. } => data.len(),
        }
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mtcp::Decoder")
            .field("max_bundle_len", &self.max_bundle_len)
            .field("buffered", &self.buffered_len())
            .field("ready", &self.ready.len())
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_minimal_and_round_trip() {
        for len in [0u64, 1, 23, 24, 255, 256, 65535, 65536, 0xffff_ffff, 0x1_0000_0000] {
            let mut out = Vec::new();
            encode_header(len, &mut out);
            assert_eq!(out.len(), header_len(len), "{len}");
            assert_eq!(head_len(out[0]), Ok(out.len()));
            assert_eq!(head_value(&out), len);
        }
        let mut out = Vec::new();
        encode(b"abc", &mut out);
        assert_eq!(out, [0x43, b'a', b'b', b'c']);
        out.clear();
        encode(&[7; 24], &mut out);
        assert_eq!(&out[..2], &[0x58, 24]);
    }

    #[test]
    fn parse_frame_checks_before_waiting() {
        assert_eq!(parse_frame(&[], 10), Ok(None));
        assert_eq!(parse_frame(&[0x43, 1], 10), Ok(None));
        assert_eq!(parse_frame(&[0x43, 1, 2, 3, 9], 10), Ok(Some((&[1u8, 2, 3][..], 4))));
        assert_eq!(
            parse_frame(&[0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0], 10),
            Err(MtcpError::TooLarge { len: 1 << 63, max: 10 })
        );
        assert_eq!(parse_frame(&[0x9f], 10), Err(MtcpError::NotAByteString { initial_byte: 0x9f }));
        assert_eq!(parse_frame(&[0x5f], 10), Err(MtcpError::IndefiniteLength));
        assert_eq!(parse_frame(&[0x5c], 10), Err(MtcpError::ReservedAdditionalInfo { initial_byte: 0x5c }));
        // Non-minimal heads are accepted.
        assert_eq!(parse_frame(&[0x59, 0, 2, 7, 8], 10), Ok(Some((&[7u8, 8][..], 5))));
    }

    /// Found by the `tcp_framing` fuzz target: with no limit (u64::MAX), a
    /// declared length near 2^64 overflowed `head + length` (a panic in
    /// debug builds; in release a frame that never completes).
    #[test]
    fn parse_frame_without_limit_refuses_a_length_that_cannot_fit() {
        let frame = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(parse_frame(&frame, u64::MAX), Err(MtcpError::TooLarge { len: u64::MAX, max: u64::MAX }));
        let mut dec = Decoder::new(u64::MAX);
        assert_eq!(dec.feed(&frame), Err(MtcpError::TooLarge { len: u64::MAX, max: u64::MAX }));
    }

    #[test]
    fn decoder_byte_by_byte() {
        let bundles: Vec<Vec<u8>> = vec![vec![], vec![0x9f, 0xff], (0..300u32).map(|i| i as u8).collect()];
        let mut stream = Vec::new();
        for b in &bundles {
            encode(b, &mut stream);
        }
        let mut dec = Decoder::new(1000);
        let mut got = Vec::new();
        for byte in &stream {
            dec.feed(std::slice::from_ref(byte)).unwrap();
            while let Some(b) = dec.next_bundle() {
                got.push(b);
            }
        }
        assert_eq!(got, bundles);
        assert!(dec.is_between_frames());
    }

    #[test]
    fn decoder_refuses_and_stays_failed() {
        let mut dec = Decoder::new(100);
        let mut stream = Vec::new();
        encode(b"ok", &mut stream);
        stream.extend_from_slice(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let err = MtcpError::TooLarge { len: u64::MAX, max: 100 };
        assert_eq!(dec.feed(&stream), Err(err));
        assert_eq!(dec.next_bundle(), Some(b"ok".to_vec()));
        assert_eq!(dec.feed(b"\x41a"), Err(err));
        let mut dec = Decoder::new(100);
        assert_eq!(dec.feed(&[0x01]), Err(MtcpError::NotAByteString { initial_byte: 1 }));
    }
}
