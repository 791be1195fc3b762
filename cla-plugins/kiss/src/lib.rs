//! KISS framing, shared by Ferry's serial and LoRa convergence layers.
//!
//! KISS (the TNC convention that RNode and most LoRa/packet modems speak)
//! delimits frames with `FEND` (0xC0) and escapes `FEND`/`FESC` inside a frame
//! as `FESC TFEND` / `FESC TFESC`. The first byte of a frame is a command byte
//! (high nibble: port, low nibble: command; 0x00 is "data on port 0").
//!
//! The [`Decoder`] is sans-IO: feed it whatever bytes the tty returned and it
//! yields whole frames. It never holds more than `max_frame` bytes: a frame
//! that grows beyond is dropped and reported, and the decoder resynchronises
//! on the next `FEND`, so line noise costs at most the frame it hit.

/// Frame delimiter.
pub const FEND: u8 = 0xC0;
/// Escape.
pub const FESC: u8 = 0xDB;
/// Escaped `FEND`.
pub const TFEND: u8 = 0xDC;
/// Escaped `FESC`.
pub const TFESC: u8 = 0xDD;
/// The KISS "data frame" command on port 0.
pub const CMD_DATA: u8 = 0x00;

/// Appends one frame (`FEND command data… FEND`) to `out`, escaping as needed.
pub fn encode(command: u8, data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 64 + 4);
    out.push(FEND);
    push_escaped(command, out);
    for &b in data {
        push_escaped(b, out);
    }
    out.push(FEND);
}

/// The bytes [`encode`] would produce, in a new vector.
pub fn encode_to_vec(command: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(command, data, &mut out);
    out
}

fn push_escaped(b: u8, out: &mut Vec<u8>) {
    match b {
        FEND => out.extend_from_slice(&[FESC, TFEND]),
        FESC => out.extend_from_slice(&[FESC, TFESC]),
        b => out.push(b),
    }
}

/// What the decoder found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete frame: its command byte and unescaped data.
    Frame { command: u8, data: &'a [u8] },
    /// A frame was dropped; decoding resumes at the next `FEND`.
    Dropped(DropReason),
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It grew beyond the decoder's `max_frame` bytes (command byte included).
    TooLong,
    /// `FESC` followed by something other than `TFEND`/`TFESC`.
    BadEscape,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::TooLong => f.write_str("frame longer than the maximum frame size"),
            DropReason::BadEscape => f.write_str("invalid KISS escape sequence"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames, or skipping the rest of a dropped frame until `FEND`.
    Idle,
    InFrame,
    Escaped,
    Skipping,
}

/// A streaming KISS decoder with a bound on frame size.
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    buf: Vec<u8>,
    state: State,
    /// A complete frame waiting to be handed out by `next_event`.
    ready: bool,
    pending_drop: Option<DropReason>,
}

impl Decoder {
    /// A decoder that accepts frames of at most `max_frame` bytes (command byte included).
    pub fn new(max_frame: usize) -> Decoder {
        Decoder { max_frame, buf: Vec::new(), state: State::Idle, ready: false, pending_drop: None }
    }

    /// Feeds bytes and calls `on_event` for each frame or drop, in stream order.
    /// Empty frames (back-to-back `FEND`s, used as fill) are skipped silently.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        for &b in bytes {
            self.push(b);
            if let Some(reason) = self.pending_drop.take() {
                on_event(Event::Dropped(reason));
            }
            if self.ready {
                self.ready = false;
                if let Some((&command, data)) = self.buf.split_first() {
                    on_event(Event::Frame { command, data });
                }
                self.buf.clear();
            }
        }
    }

    /// Bytes of the frame being received (0 between frames).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn push(&mut self, b: u8) {
        match (self.state, b) {
            (_, FEND) => {
                let complete = matches!(self.state, State::InFrame) && !self.buf.is_empty();
                if matches!(self.state, State::Escaped) {
                    self.pending_drop = Some(DropReason::BadEscape);
                    self.buf.clear();
                }
                self.state = State::InFrame;
                self.ready = complete;
            }
            (State::Idle | State::Skipping, _) => {}
            (State::InFrame, FESC) => self.state = State::Escaped,
            (State::InFrame, b) => self.store(b),
            (State::Escaped, TFEND) => {
                self.state = State::InFrame;
                self.store(FEND);
            }
            (State::Escaped, TFESC) => {
                self.state = State::InFrame;
                self.store(FESC);
            }
            (State::Escaped, _) => self.drop_frame(DropReason::BadEscape),
        }
    }

    fn store(&mut self, b: u8) {
        if self.buf.len() >= self.max_frame {
            self.drop_frame(DropReason::TooLong);
        } else {
            self.buf.push(b);
        }
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.buf.clear();
        self.state = State::Skipping;
        self.pending_drop = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Vec<Result<(u8, Vec<u8>), DropReason>> {
        let mut out = Vec::new();
        d.feed(bytes, |e| match e {
            Event::Frame { command, data } => out.push(Ok((command, data.to_vec()))),
            Event::Dropped(r) => out.push(Err(r)),
        });
        out
    }

    #[test]
    fn escapes_fend_and_fesc() {
        assert_eq!(encode_to_vec(CMD_DATA, &[1, FEND, 2, FESC, 3]), [FEND, 0, 1, FESC, TFEND, 2, FESC, TFESC, 3, FEND]);
    }

    #[test]
    fn round_trips_every_byte_value_fed_one_byte_at_a_time() {
        let data: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        let wire = encode_to_vec(0x10, &data);
        let mut d = Decoder::new(1024);
        let mut got = Vec::new();
        for b in &wire {
            got.extend(decode_all(&mut d, std::slice::from_ref(b)));
        }
        assert_eq!(got, vec![Ok((0x10, data))]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn frames_sharing_a_fend_and_fill_between_them() {
        let mut wire = encode_to_vec(0, b"one");
        wire.extend_from_slice(&[FEND, FEND]);
        wire.pop(); // frames may share a FEND
        wire.extend_from_slice(&encode_to_vec(0, b"two")[1..]);
        let mut d = Decoder::new(64);
        assert_eq!(decode_all(&mut d, &wire), vec![Ok((0, b"one".to_vec())), Ok((0, b"two".to_vec()))]);
    }

    #[test]
    fn garbage_before_the_first_fend_is_ignored() {
        let mut wire = b"noise without delimiter".to_vec();
        wire.extend_from_slice(&encode_to_vec(0, b"ok"));
        assert_eq!(decode_all(&mut Decoder::new(64), &wire), vec![Ok((0, b"ok".to_vec()))]);
    }

    #[test]
    fn an_oversized_frame_is_dropped_once_and_the_next_one_decodes() {
        let mut wire = encode_to_vec(0, &[7u8; 100]);
        wire.extend_from_slice(&encode_to_vec(0, b"next"));
        let mut d = Decoder::new(16);
        assert_eq!(decode_all(&mut d, &wire), vec![Err(DropReason::TooLong), Ok((0, b"next".to_vec()))]);
        assert!(d.buffered() <= 16);
    }

    #[test]
    fn a_frame_of_exactly_max_frame_bytes_is_accepted() {
        let wire = encode_to_vec(0, &[1u8; 15]);
        assert_eq!(decode_all(&mut Decoder::new(16), &wire), vec![Ok((0, vec![1u8; 15]))]);
    }

    #[test]
    fn bad_escapes_drop_the_frame() {
        let wire = [FEND, 0, 1, FESC, 0x42, 2, FEND, 0, b'x', FEND];
        assert_eq!(decode_all(&mut Decoder::new(64), &wire), vec![Err(DropReason::BadEscape), Ok((0, b"x".to_vec()))]);
        let cut = [FEND, 0, 1, FESC, FEND, 0, b'y', FEND];
        assert_eq!(decode_all(&mut Decoder::new(64), &cut), vec![Err(DropReason::BadEscape), Ok((0, b"y".to_vec()))]);
    }
}
