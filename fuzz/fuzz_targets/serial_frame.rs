//! The serial plugin's link frames (cla-plugins/serial/src/wire.rs), the
//! KISS framing they travel in (cla-plugins/kiss), and the serial `Link` fed
//! the byte stream a tty would return.
//!
//! Input: a mode byte, then bytes. Mode bit 0: the last four bytes are
//! replaced by the right CRC-32C first, so that the fuzzer explores the
//! frame bodies rather than the checksum; bit 1: every KISS frame in the
//! stream gets its CRC fixed the same way before the `Link` sees it; bits
//! 2..7: the KISS decoder's frame limit. Properties:
//! - a frame that parses re-emits to the same bytes (a HELLO: to the same
//!   frame; it may carry ignored bytes after the node ID), and `buffer_len`
//!   says how many;
//! - the KISS decoder never holds or yields more than its limit, and each
//!   frame it yields, encoded again, decodes to itself;
//! - the `Link` never panics, and no bundle it hands up exceeds its limit.
#![no_main]

use std::sync::Arc;

use ferry_cla_abi::Verdict;
use ferry_cla_kiss as kiss;
use ferry_cla_serial::link::{Config, Event, Link};
use ferry_cla_serial::wire::{Body, Frame};
use ferry_core::crc::crc32c;
use libfuzzer_sys::fuzz_target;

const MAX_BUNDLE: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let mut frame = bytes.to_vec();
    if mode & 1 != 0 {
        fix_crc(&mut frame);
    }
    check_frame(&frame);

    let max_frame = 2 + usize::from(mode >> 2) * 40;
    let frames = check_kiss(bytes, max_frame);

    let stream = if mode & 2 != 0 {
        let mut s = Vec::new();
        for (command, mut f) in frames {
            fix_crc(&mut f);
            kiss::encode(command, &f, &mut s);
        }
        s
    } else {
        bytes.to_vec()
    };
    run_link(&stream, mode);
});

fn fix_crc(frame: &mut [u8]) {
    if frame.len() >= 4 {
        let n = frame.len() - 4;
        let crc = crc32c(&frame[..n]).to_be_bytes();
        frame[n..].copy_from_slice(&crc);
    }
}

fn check_frame(bytes: &[u8]) {
    let Ok(f) = Frame::parse(bytes) else { return };
    let mut out = Vec::new();
    f.emit(&mut out);
    assert_eq!(out.len(), f.buffer_len());
    match f.body {
        Body::Hello(_) => assert_eq!(Frame::parse(&out).ok(), Some(f), "a HELLO re-parses differently"),
        _ => assert_eq!(out, bytes, "{f:?} re-emits differently"),
    }
}

fn check_kiss(bytes: &[u8], max_frame: usize) -> Vec<(u8, Vec<u8>)> {
    let mut dec = kiss::Decoder::new(max_frame);
    let mut frames = Vec::new();
    for chunk in bytes.chunks(7) {
        dec.feed(chunk, |e| {
            if let kiss::Event::Frame { command, data } = e {
                frames.push((command, data.to_vec()));
            }
        });
        assert!(dec.buffered() <= max_frame, "the KISS decoder holds {} bytes", dec.buffered());
    }
    for (command, data) in &frames {
        assert!(data.len() < max_frame, "a KISS frame over the limit (command byte included)");
        let mut again = kiss::Decoder::new(max_frame);
        let mut got = Vec::new();
        again.feed(&kiss::encode_to_vec(*command, data), |e| got.push(format!("{e:?}")));
        let want = kiss::Event::Frame { command: *command, data };
        assert_eq!(got, vec![format!("{want:?}")], "a KISS frame does not round-trip");
    }
    frames
}

fn run_link(stream: &[u8], mode: u8) {
    let mut cfg = Config::new("dtn://fuzz/");
    cfg.max_bundle = MAX_BUNDLE;
    cfg.seed = u64::from(mode);
    let Ok(mut link) = Link::new(cfg) else { return };
    let mut now = 0;
    link.handle_open(now);
    link.handle_transmit(now, 1, Arc::from(vec![0x5a; 700]));
    for chunk in stream.chunks(33) {
        now += 40;
        link.handle_bytes(now, chunk);
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle_timeout(now);
        }
        for _ in 0..1000 {
            let mut progress = false;
            while let Some(e) = link.poll_event() {
                progress = true;
                if let Event::Received { token, bundle } = e {
                    assert!(bundle.len() as u64 <= MAX_BUNDLE, "a bundle of {} bytes", bundle.len());
                    link.handle_verdict(now, token, if token % 2 == 0 { Verdict::Accepted } else { Verdict::Invalid });
                }
            }
            if link.poll_transmit(now).is_some() {
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }
    link.handle_closed(now);
    while link.poll_event().is_some() {}
}
