//! STCP framing, as ION sends it: a 4-octet big-endian length, then the
//! bundle. No handshake and no acknowledgement. ION sends a zero-length frame
//! (four zero octets) every 15 s as a keepalive; the decoder skips those.
//!
//! [`parse_frame`] is the checked constructor for one frame in a buffer;
//! [`Decoder`] is the incremental form for a stream; [`encode`] and
//! [`encode_keepalive`] write frames.

/// ION's default STCP port.
pub const DEFAULT_PORT: u16 = 4456;

/// The length prefix.
pub const HEADER_LEN: usize = 4;

/// Why a stream is not STCP within our limits, or a bundle can not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StcpError {
    /// The declared bundle is longer than allowed.
    #[error("STCP frame of {len} octets exceeds the limit of {max}")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// One STCP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A bundle.
    Bundle(&'a [u8]),
    /// A zero-length frame: ION's keepalive.
    Keepalive,
}

/// Parse one frame at the start of `buf`: `Ok(Some((frame, consumed)))`,
/// `Ok(None)` if incomplete. The length is checked against `max_bundle_len`
/// as soon as the prefix is complete.
pub fn parse_frame(buf: &[u8], max_bundle_len: u64) -> Result<Option<(Frame<'_>, usize)>, StcpError> {
    let Some(prefix) = buf.get(..HEADER_LEN) else { return Ok(None) };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 {
        return Ok(Some((Frame::Keepalive, HEADER_LEN)));
    }
    if u64::from(len) > max_bundle_len {
        return Err(StcpError::TooLarge { len: len.into(), max: max_bundle_len });
    }
    let n = usize::try_from(len).map_err(|_| StcpError::TooLarge { len: len.into(), max: max_bundle_len })?;
    match buf.get(HEADER_LEN..HEADER_LEN + n) {
        Some(bundle) => Ok(Some((Frame::Bundle(bundle), HEADER_LEN + n))),
        None => Ok(None),
    }
}

/// Append one frame carrying `bundle`. Fails if it does not fit the u32
/// length; an empty bundle would read as a keepalive, so it is refused too.
pub fn encode(bundle: &[u8], out: &mut Vec<u8>) -> Result<(), StcpError> {
    let len = u32::try_from(bundle.len())
        .ok()
        .filter(|len| *len > 0)
        .ok_or(StcpError::TooLarge { len: bundle.len() as u64, max: u32::MAX.into() })?;
    out.reserve(HEADER_LEN + bundle.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bundle);
    Ok(())
}

/// Append a keepalive frame (length 0).
pub fn encode_keepalive(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; HEADER_LEN]);
}

/// How much the decoder reserves ahead from a declared length.
const RESERVE_CAP: usize = 1 << 20;

enum State {
    Prefix { prefix: [u8; HEADER_LEN], have: usize },
    Body { data: Vec<u8>, len: usize },
}

/// An incremental STCP decoder: [`Decoder::feed`] bytes as they arrive and
/// take whole bundles with [`Decoder::next_bundle`]. Keepalive frames are
/// skipped (counted in [`Decoder::keepalives`]). Each bundle octet is copied
/// once; nothing is allocated from a declared length beyond `max_bundle_len`
/// (and at most 1 MiB ahead of the data).
pub struct Decoder {
    max_bundle_len: u64,
    state: State,
    ready: std::collections::VecDeque<Vec<u8>>,
    keepalives: u64,
    error: Option<StcpError>,
}

impl Decoder {
    /// A decoder that refuses bundles longer than `max_bundle_len`.
    pub fn new(max_bundle_len: u64) -> Self {
        Decoder {
            max_bundle_len,
            state: State::Prefix { prefix: [0; HEADER_LEN], have: 0 },
            ready: Default::default(),
            keepalives: 0,
            error: None,
        }
    }

    /// Consume `input`. After an error the stream is unusable and every later
    /// call returns the same error; bundles completed before it can still be
    /// taken.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), StcpError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        while !input.is_empty() {
            match &mut self.state {
                State::Prefix { prefix, have } => {
                    let take = (HEADER_LEN - *have).min(input.len());
                    prefix[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    input = &input[take..];
                    if *have < HEADER_LEN {
                        break;
                    }
                    let len = u32::from_be_bytes(*prefix);
                    *have = 0;
                    if len == 0 {
                        self.keepalives += 1;
                        continue;
                    }
                    let n = match usize::try_from(len) {
                        Ok(n) if u64::from(len) <= self.max_bundle_len => n,
                        _ => {
                            let err = StcpError::TooLarge { len: len.into(), max: self.max_bundle_len };
                            return Err(*self.error.insert(err));
                        }
                    };
                    self.state = State::Body { data: Vec::with_capacity(n.min(RESERVE_CAP)), len: n };
                }
                State::Body { data, len } => {
                    let take = (*len - data.len()).min(input.len());
                    data.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if data.len() == *len {
                        self.ready.push_back(std::mem::take(data));
                        self.state = State::Prefix { prefix: [0; HEADER_LEN], have: 0 };
                    }
                }
            }
        }
        Ok(())
    }

    /// The next whole bundle, if any.
    pub fn next_bundle(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// Keepalive frames seen so far.
    pub fn keepalives(&self) -> u64 {
        self.keepalives
    }

    /// Whether the decoder sits between frames: at EOF, `false` means the last
    /// frame was cut off.
    pub fn is_between_frames(&self) -> bool {
        matches!(self.state, State::Prefix { have: 0, .. })
    }

    /// Octets of an incomplete frame held.
    pub fn buffered_len(&self) -> usize {
        match &self.state {
            State::Prefix { have, .. } => *have,
            State::Body { data, .. } => data.len(),
        }
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("stcp::Decoder")
            .field("max_bundle_len", &self.max_bundle_len)
            .field("buffered", &self.buffered_len())
            .field("ready", &self.ready.len())
            .field("keepalives", &self.keepalives)
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_keepalives_are_skipped() {
        let mut stream = Vec::new();
        encode_keepalive(&mut stream);
        encode(b"first", &mut stream).unwrap();
        encode_keepalive(&mut stream);
        encode_keepalive(&mut stream);
        encode(&[0xab; 1000], &mut stream).unwrap();
        assert_eq!(&stream[..9], &[0, 0, 0, 0, 0, 0, 0, 5, b'f']);

        for chunk in [1, 3, 7, stream.len()] {
            let mut dec = Decoder::new(4096);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                dec.feed(piece).unwrap();
                while let Some(b) = dec.next_bundle() {
                    got.push(b);
                }
            }
            assert_eq!(got, vec![b"first".to_vec(), vec![0xab; 1000]]);
            assert_eq!(dec.keepalives(), 3);
            assert!(dec.is_between_frames());
        }
    }

    #[test]
    fn parse_frame_checks_before_waiting() {
        assert_eq!(parse_frame(&[0, 0, 0], 10), Ok(None));
        assert_eq!(parse_frame(&[0, 0, 0, 0, 1], 10), Ok(Some((Frame::Keepalive, 4))));
        assert_eq!(parse_frame(&[0, 0, 0, 2, 9], 10), Ok(None));
        assert_eq!(parse_frame(&[0, 0, 0, 2, 9, 8], 10), Ok(Some((Frame::Bundle(&[9, 8]), 6))));
        assert_eq!(
            parse_frame(&[0xff, 0xff, 0xff, 0xff], 10),
            Err(StcpError::TooLarge { len: u32::MAX.into(), max: 10 })
        );
    }

    #[test]
    fn decoder_refuses_oversized_frames_at_once() {
        let mut dec = Decoder::new(10);
        let err = StcpError::TooLarge { len: 11, max: 10 };
        assert_eq!(dec.feed(&[0, 0, 0, 11]), Err(err));
        assert_eq!(dec.feed(&[1]), Err(err));
        assert_eq!(dec.buffered_len(), 0);
    }

    #[test]
    fn empty_bundles_can_not_be_framed() {
        assert!(encode(&[], &mut Vec::new()).is_err());
    }
}
