//! LoRa frames (cla-plugins/lora/src/frame.rs), the KISS framing between
//! the plugin and its modem, and the LoRa `Link` fed the packets.
//!
//! Input: a mode byte, then bytes. Mode bit 0: the last two bytes are
//! replaced by the right CRC-16/X.25 first, so that the fuzzer explores the
//! frame fields rather than the checksum. The bytes are also read as a KISS
//! stream from the modem; each KISS data frame is a radio packet for the
//! `Link` (with its CRC fixed when bit 1 is set). Properties:
//! - a frame that parses re-emits to the same bytes and `buffer_len` says
//!   how many;
//! - the KISS decoder never holds more than a packet;
//! - the `Link` never panics, hands up no bundle over its `max_bundle`, and
//!   keeps its reassembly memory within `max_reassembly_bytes`.
#![no_main]

use ferry_cla_abi::Verdict;
use ferry_cla_kiss as kiss;
use ferry_cla_lora::airtime::RadioParams;
use ferry_cla_lora::frame::{Frame, MAX_PACKET};
use ferry_cla_lora::link::{Event, Link, LinkConfig};
use ferry_core::crc::crc16_x25;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let mut packet = bytes.to_vec();
    if mode & 1 != 0 {
        fix_crc(&mut packet);
    }
    check_frame(&packet);

    let mut dec = kiss::Decoder::new(MAX_PACKET + 1);
    let mut packets = Vec::new();
    dec.feed(bytes, |e| {
        if let kiss::Event::Frame { command: kiss::CMD_DATA, data } = e {
            packets.push(data.to_vec());
        }
    });
    assert!(dec.buffered() <= MAX_PACKET + 1);
    if packets.is_empty() {
        packets.push(packet);
    }
    if mode & 2 != 0 {
        packets.iter_mut().for_each(|p| fix_crc(p));
    }
    run_link(&packets, mode);
});

fn fix_crc(packet: &mut [u8]) {
    if packet.len() >= 2 {
        let n = packet.len() - 2;
        let crc = crc16_x25(&packet[..n]).to_be_bytes();
        packet[n..].copy_from_slice(&crc);
    }
}

fn check_frame(bytes: &[u8]) {
    let Ok(f) = Frame::parse(bytes) else { return };
    let out = f.to_vec();
    assert_eq!(out.len(), f.buffer_len());
    assert_eq!(out, bytes, "{f:?} re-emits differently");
}

fn run_link(packets: &[Vec<u8>], mode: u8) {
    let mut cfg = LinkConfig::new(RadioParams::default(), 100.0);
    cfg.max_bundle = 8 * 1024;
    cfg.max_reassembly_bytes = 16 * 1024;
    cfg.max_reassemblies = 2;
    let (max_bundle, max_bytes) = (cfg.max_bundle, cfg.max_reassembly_bytes);
    let mut link = Link::new(cfg, "dtn://fuzz/", 0, u64::from(mode));
    let mut now = 0u64;
    for p in packets {
        now += 250_000;
        link.handle_packet(now, p);
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle_timeout(now);
        }
        let (_, bytes) = link.reassembly_load();
        assert!(bytes <= max_bytes, "reassemblies reserve {bytes} bytes");
        for _ in 0..1000 {
            let mut progress = false;
            while let Some(e) = link.poll_event() {
                progress = true;
                if let Event::BundleReceived { token, bundle, .. } = e {
                    assert!(bundle.len() <= max_bundle, "a bundle of {} bytes", bundle.len());
                    link.handle_verdict(now, token, Verdict::Accepted);
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
    link.close(now);
    while link.poll_event().is_some() {}
}
