//! The TCPCLv4 session (RFC 9174), sans-IO, fed an arbitrary byte stream from
//! its peer, split at arbitrary points.
//!
//! Input: a mode byte, then the peer's stream. Mode bits:
//! - 0: we are the active side (else passive);
//! - 1: a valid contact header and SESS_INIT from the peer come first, so the
//!   stream's own bytes land in the Established phase;
//! - 2: the stream is `[len][len bytes]` records, each one `handle_bytes`
//!   call (else chunk sizes come from a generator seeded by the mode byte);
//! - 3: we queue three bundles of our own, so that the peer's acks and
//!   refusals meet real transfers;
//! - 4..7: the peer's segment MRU in the prefix's SESS_INIT, and the seed.
//!
//! Properties, besides never panicking:
//! - no received bundle exceeds our transfer MRU;
//! - the input held back never exceeds the longest message our limits admit
//!   plus the last chunk;
//! - every segment we send fits the peer's negotiated segment MRU and our
//!   `max_tx_segment`, and every transfer the peer's transfer MRU;
//! - each bundle we queued ends exactly once (acked, refused or failed) by
//!   the time the session is closed;
//! - every message that `Message::parse` reads from the stream re-emits to
//!   the same bytes (`emit`, `buffer_len`).
#![no_main]

use std::collections::HashMap;

use ferry_cla_tcp::tcpcl::wire::{ContactFlags, ContactHeader, ExtensionItems, Limits, Message, SessInit};
use ferry_cla_tcp::tcpcl::{Config, Event, Phase, RefuseReason, SessTermReason, Session, TransferId};
use libfuzzer_sys::fuzz_target;

const SEGMENT_MRU: u64 = 500;
const TRANSFER_MRU: u64 = 2000;
const MAX_TX_SEGMENT: u64 = 300;

fn config(active: bool) -> Config {
    let mut c = Config::new("ipn:1.0", active);
    c.segment_mru = SEGMENT_MRU;
    c.transfer_mru = TRANSFER_MRU;
    c.max_tx_segment = MAX_TX_SEGMENT;
    c.max_extensions_len = 64;
    c.max_node_id_len = 64;
    c.max_unaccepted_transfers = 2;
    c.max_unaccepted_bytes = 3000;
    c.transmit_batch = 1024;
    c.contact_timeout_ms = 10_000;
    c.transfer_timeout_ms = 20_000;
    c
}

/// The peer's side of what we send, parsed back.
struct Output {
    buf: Vec<u8>,
    header_seen: bool,
    /// Our transfers by ID: octets sent so far.
    sent: HashMap<u64, u64>,
}

impl Output {
    fn take(&mut self, bytes: &[u8], session: &Session) {
        self.buf.extend_from_slice(bytes);
        let lax = Limits { segment_mru: u64::MAX, max_extensions_len: u32::MAX, max_node_id_len: u16::MAX };
        let mut pos = 0;
        if !self.header_seen {
            match ContactHeader::parse(&self.buf) {
                Ok(Some((_, n))) => {
                    pos = n;
                    self.header_seen = true;
                }
                Ok(None) => return,
                Err(e) => panic!("we sent a bad contact header: {e:?}"),
            }
        }
        loop {
            match Message::parse(&self.buf[pos..], &lax) {
                Ok(Some((msg, n))) => {
                    pos += n;
                    if let Message::XferSegment(seg) = msg {
                        let Some(neg) = session.negotiated() else { panic!("a segment before SESS_INIT") };
                        let len = seg.data.len() as u64;
                        assert!(len <= neg.peer_segment_mru, "segment of {len} over the peer's MRU");
                        assert!(len <= MAX_TX_SEGMENT, "segment of {len} over max_tx_segment");
                        let total = self.sent.entry(seg.transfer_id).or_default();
                        *total += len;
                        assert!(*total <= neg.peer_transfer_mru, "transfer over the peer's transfer MRU");
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("we sent something that does not parse: {e:?}"),
            }
        }
        self.buf.drain(..pos);
    }
}

/// xorshift64: chunk sizes from the mode byte.
struct Chunks(u64);

impl Chunks {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % (max as u64)) as usize
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else { return };
    check_wire_round_trip(stream);

    let active = mode & 1 != 0;
    let Ok(mut session) = Session::new(config(active), 0) else { return };
    let limits_max = Limits { segment_mru: SEGMENT_MRU, max_extensions_len: 64, max_node_id_len: 64 }.max_message_len();
    let mut out = Output { buf: Vec::new(), header_seen: false, sent: HashMap::new() };
    let mut ours: HashMap<TransferId, u32> = HashMap::new();
    let mut now = 0u64;

    if mode & 8 != 0 {
        for len in [10usize, 700, 2500] {
            if let Ok(id) = session.send_bundle(vec![0xa5; len]) {
                ours.insert(id, 0);
            }
        }
    }

    let mut input = Vec::with_capacity(stream.len() + 64);
    if mode & 2 != 0 {
        ContactHeader::new(ContactFlags::EMPTY).emit(&mut input);
        Message::SessInit(SessInit {
            keepalive: 30,
            segment_mru: 1 + u64::from(mode >> 4) * 40,
            transfer_mru: 1500,
            node_id: "ipn:2.0",
            extensions: ExtensionItems::EMPTY,
        })
        .emit(&mut input);
    }
    let prefix_len = input.len();
    input.extend_from_slice(stream);

    let mut chunks = Chunks(0x9e37_79b9_7f4a_7c15 ^ u64::from(mode));
    let mut pos = 0;
    let mut steps = 0u32;
    while pos < input.len() {
        let chunk = if pos >= prefix_len && mode & 4 != 0 {
            // `[len][bytes]` records.
            let len = usize::from(input[pos]);
            pos += 1;
            let end = (pos + len).min(input.len());
            &input[pos..end]
        } else {
            let n = chunks.next(64).min(input.len() - pos);
            &input[pos..pos + n]
        };
        pos += chunk.len();
        steps += 1;
        now += 50 * u64::from(steps % 7);

        session.handle_bytes(now, chunk);
        if session.phase() != Phase::Tls {
            let held = session.buffered_input_len() as u64;
            assert!(held <= limits_max + chunk.len() as u64, "holding {held} octets of input");
        }
        drive(&mut session, &mut out, &mut ours, now, chunk.first().copied().unwrap_or(0));
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
            drive(&mut session, &mut out, &mut ours, now, 0);
        }
        if session.is_closed() {
            break;
        }
    }
    // The end of the stream: the peer goes quiet, then the connection goes.
    if let Some(t) = session.poll_timeout() {
        session.handle_timeout(t.max(now));
        drive(&mut session, &mut out, &mut ours, t.max(now), 0);
    }
    session.close(now, SessTermReason::Unknown);
    drive(&mut session, &mut out, &mut ours, now, 0);
    session.handle_connection_closed();
    drive(&mut session, &mut out, &mut ours, now, 0);
    assert!(session.is_closed());
    for (id, ends) in &ours {
        assert_eq!(*ends, 1, "our transfer {id:?} ended {ends} times");
    }
});

/// Writes out what the session sends, handles its events as the plugin does
/// (accepting or refusing received bundles by one bit of `choice`).
fn drive(session: &mut Session, out: &mut Output, ours: &mut HashMap<TransferId, u32>, now: u64, choice: u8) {
    for _ in 0..64 {
        let mut progress = false;
        while let Some(bytes) = session.poll_transmit(now) {
            out.take(&bytes, session);
            progress = true;
        }
        while let Some(event) = session.poll_event() {
            progress = true;
            match event {
                Event::BundleReceived { transfer_id, bundle } => {
                    assert!(bundle.len() as u64 <= TRANSFER_MRU, "received {} octets", bundle.len());
                    let _ = if choice & 1 == 0 {
                        session.accept_transfer(transfer_id)
                    } else {
                        session.refuse_transfer(transfer_id, RefuseReason::NoResources)
                    };
                    session.resume_input(now);
                }
                Event::TransferAcked { transfer_id }
                | Event::TransferRefused { transfer_id, .. }
                | Event::TransferFailed { transfer_id, .. } => {
                    if let Some(n) = ours.get_mut(&transfer_id) {
                        *n += 1;
                    }
                }
                _ => {}
            }
        }
        if !progress {
            return;
        }
    }
}

fn check_wire_round_trip(stream: &[u8]) {
    let limits = Limits { segment_mru: 4096, max_extensions_len: 4096, max_node_id_len: 1024 };
    let mut pos = match ContactHeader::parse(stream) {
        Ok(Some((h, n))) => {
            let mut again = Vec::new();
            h.emit(&mut again);
            assert_eq!(again, &stream[..n]);
            n
        }
        _ => 0,
    };
    while let Ok(Some((msg, n))) = Message::parse(&stream[pos..], &limits) {
        let mut again = Vec::with_capacity(n);
        msg.emit(&mut again);
        assert_eq!(again, &stream[pos..pos + n], "{msg:?} re-emits differently");
        assert_eq!(msg.buffer_len(), n);
        pos += n;
    }
}
