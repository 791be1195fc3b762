//! MTCP and STCP framing (what the plugin's MTCP/STCP connections decode).
//!
//! Input: a mode byte, then a byte stream. The mode picks the framing (bit
//! 0), the frame limit (bits 1..3, `u64::MAX` among them: "no limit") and the
//! chunk sizes the incremental decoder is fed. Properties:
//! - the incremental `Decoder` fed in chunks yields exactly the frames that
//!   `parse_frame` finds in the whole buffer, and fails where it fails;
//! - no bundle exceeds the limit, and nothing partial held exceeds it either;
//! - every bundle re-encoded and decoded again is the same bundle.
#![no_main]

use ferry_cla_tcp::{mtcp, stcp};
use libfuzzer_sys::fuzz_target;

const LIMITS: [u64; 8] = [0, 1, 23, 24, 255, 4096, u32::MAX as u64, u64::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else { return };
    let max = LIMITS[usize::from((mode >> 1) & 7)];
    let chunk = 1 + usize::from(mode >> 4) * 7;
    if mode & 1 == 0 {
        check_mtcp(stream, max, chunk);
    } else {
        check_stcp(stream, max, chunk);
    }
});

fn check_mtcp(stream: &[u8], max: u64, chunk: usize) {
    // Frame by frame over the whole buffer.
    let mut whole = Vec::new();
    let mut pos = 0;
    let failed = loop {
        match mtcp::parse_frame(&stream[pos..], max) {
            Ok(Some((bundle, n))) => {
                assert!(bundle.len() as u64 <= max);
                whole.push(bundle.to_vec());
                pos += n;
            }
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    // Incrementally, in chunks.
    let mut dec = mtcp::Decoder::new(max);
    let mut got = Vec::new();
    let mut err = false;
    for c in stream.chunks(chunk) {
        if dec.feed(c).is_err() {
            err = true;
            break;
        }
        assert!(dec.buffered_len() as u64 <= max.saturating_add(9));
        while let Some(b) = dec.next_bundle() {
            got.push(b);
        }
    }
    while let Some(b) = dec.next_bundle() {
        got.push(b);
    }
    assert_eq!(got, whole, "the decoder and parse_frame disagree");
    assert_eq!(err, failed, "the decoder and parse_frame disagree on an error");
    for b in &got {
        let mut framed = Vec::new();
        mtcp::encode(b, &mut framed);
        assert_eq!(framed.len(), mtcp::header_len(b.len() as u64) + b.len());
        assert_eq!(mtcp::parse_frame(&framed, max), Ok(Some((b.as_slice(), framed.len()))));
    }
}

fn check_stcp(stream: &[u8], max: u64, chunk: usize) {
    let mut whole = Vec::new();
    let mut keepalives = 0;
    let mut pos = 0;
    let failed = loop {
        match stcp::parse_frame(&stream[pos..], max) {
            Ok(Some((frame, n))) => {
                match frame {
                    stcp::Frame::Bundle(b) => {
                        assert!(!b.is_empty() && b.len() as u64 <= max);
                        whole.push(b.to_vec());
                    }
                    stcp::Frame::Keepalive => keepalives += 1,
                }
                pos += n;
            }
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    let mut dec = stcp::Decoder::new(max);
    let mut got = Vec::new();
    let mut err = false;
    for c in stream.chunks(chunk) {
        if dec.feed(c).is_err() {
            err = true;
            break;
        }
        assert!(dec.buffered_len() as u64 <= max.max(4));
        while let Some(b) = dec.next_bundle() {
            got.push(b);
        }
    }
    while let Some(b) = dec.next_bundle() {
        got.push(b);
    }
    assert_eq!(got, whole, "the decoder and parse_frame disagree");
    assert_eq!(err, failed, "the decoder and parse_frame disagree on an error");
    if !err {
        assert_eq!(dec.keepalives(), keepalives);
    }
    for b in &got {
        let mut framed = Vec::new();
        assert!(stcp::encode(b, &mut framed).is_ok());
        assert_eq!(stcp::parse_frame(&framed, max), Ok(Some((stcp::Frame::Bundle(b), framed.len()))));
    }
}
