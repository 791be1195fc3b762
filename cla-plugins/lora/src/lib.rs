//! Ferry's LoRa convergence-layer plugin: bundles over a LoRa radio, through
//! a serial-attached modem that speaks KISS (the RNode/TNC convention: a
//! KISS data frame, command 0x00, carries one radio packet of at most 255
//! bytes), cut into frames that fit, reassembled with bounded memory,
//! repaired by selective retransmission, and never sent faster than the
//! duty cycle allows.
//!
//! Built as a `cdylib` it is a Ferry CLA plugin (ABI 1, see
//! [`ferry_cla_abi`]); as an `rlib` the same plugin runs in-process through
//! [`DESCRIPTOR`] and [`ferry_cla_abi::host::Plugin::in_process`].
//!
//! # Layout
//! Sans-IO (no device, no thread, no clock):
//! - [`airtime`]: time on air of a packet, Semtech's formula;
//! - [`duty`]: the sliding-window duty-cycle budget;
//! - [`frame`]: the radio frames (`parse`, `emit`, `buffer_len`);
//! - [`link`]: [`link::Link`], the protocol state machine: neighbours,
//!   fragmentation, reassembly, selective retransmission, scheduling;
//! - [`vsim`]: a virtual-time channel of links, for tests and the report;
//! - [`settings`]: the plugin's settings.
//!
//! I/O:
//! - [`plugin`]: [`LoraCla`], the [`ferry_cla_abi::Cla`] implementation and
//!   its radio thread; `serial`: the modem's tty;
//! - [`sim`]: a simulated radio channel behind real pseudo-terminals, and
//!   the `lora-sim-channel` binary around it.
//!
//! # Frames
//!
//! Every radio packet is one frame (layout in [`frame`]): a version/kind
//! byte, the sender's 32-bit short ID (CRC-32C of its node ID), the fields
//! of its kind, and a CRC-16/X.25 over all of it, so that a frame corrupted
//! on the serial line or passed on by a modem that does not check the
//! radio's CRC is dropped before anything in it is believed.
//!
//! | kind | carries | overhead |
//! |---|---|---|
//! | HELLO | node ID | 8 bytes + node ID |
//! | DATA (+POLL flag) | receiver, transfer ID (u32), sequence number, frame count, 1..236 bundle bytes | 19 bytes |
//! | POLL | receiver, transfer ID, frame count | 17 bytes |
//! | ACK | receiver, transfer ID, status, frame count, bitmap of frames held (status *partial* only) | 18 bytes + count/8 |
//!
//! A bundle of `n` bytes takes `ceil(n / 236)` DATA frames (every one full
//! but the last), at most [`frame::MAX_FRAMES`] = 1024, so that its ACK
//! bitmap fits one packet. The protocol (rounds ending in a poll, the
//! bitmap ACK, resending only the missing frames, the final ACK only after
//! the host's verdict) is described in [`link`].
//!
//! # Airtime and the duty cycle
//!
//! Every frame's airtime comes from Semtech's formula ([`airtime`]): symbol
//! time 2^SF / BW; preamble n + 4.25 symbols; payload
//! `8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE)))·(CR + 4), 0)`
//! symbols, with low-data-rate optimisation (DE) on when a symbol lasts
//! more than 16 ms (SF11 and SF12 at 125 kHz). A full 255-byte packet takes
//! 399.6 ms at SF7/125 kHz and 9019.4 ms at SF12/125 kHz (coding rate 4/5,
//! 8 preamble symbols, CRC on).
//!
//! The [`duty::DutyCycle`] budget allows `duty_cycle_percent` of any sliding
//! window of `duty_window_secs` (EU868: 1 % of an hour, 36 s). A frame goes
//! on air only when the radio is idle (the previous frame's airtime has
//! passed) and the frame fits the budget of the window ending at its end;
//! otherwise it waits. DATA frames may use 90 % of the budget; the rest
//! keeps HELLOs, POLLs and ACKs going, so a busy sender neither falls silent
//! to its neighbours nor starves its own acknowledgements.
//!
//! The rate reported to the router in `peer_up` is the long-run one: 236
//! bytes per full packet's airtime, times the duty cycle (SF7/125 kHz at
//! 1 %: 5 B/s; without a duty cycle: 590 B/s). The MTU is `max_bundle`, so
//! the router fragments larger bundles (RFC 9171 §5.8) before they reach
//! the plugin. (The ABI counts whole bytes per second; SF12 at 1 % carries
//! 0.26 B/s and is reported as 1.)
//!
//! A sliding window lets a fresh budget go out in one burst: 10 KiB at
//! SF7/1 % takes 18 s when the last hour was quiet, and an hour when earlier
//! traffic has just spent the budget. `cargo run --release -p ferry-cla-lora
//! --example lora_report` prints these figures and goodput against loss.
//!
//! # Figures
//!
//! From `lora_report` (virtual time, the real airtime and duty-cycle rules,
//! independent loss per packet and receiver, no collisions; 4 KiB bundles,
//! 125 kHz, 4/5, 8 preamble symbols). Goodput in bundle bytes per second,
//! and as a share of the ideal (236 bytes per full packet's airtime, times
//! the duty cycle):
//!
//! | loss | SF7, no duty cycle | SF7, 1 % | SF12, no duty cycle | SF12, 1 % |
//! |---|---|---|---|---|
//! | 0 % | 579 B/s (98 %) | 6.06 B/s (103 %¹) | 25.1 B/s (96 %) | 0.206 B/s (79 %²) |
//! | 10 % | 484 B/s (82 %) | 6.05 B/s (102 %¹) | 17.6 B/s (67 %) | 0.175 B/s (67 %) |
//! | 30 % | 269 B/s (46 %) | 3.63 B/s (62 %) | 13.4 B/s (51 %) | 0.126 B/s (48 %) |
//! | 50 % | 126 B/s (21 %) | 2.02 B/s (34 %) | 6.7 B/s (26 %) | 0.083 B/s (32 %) |
//!
//! ¹ The run (about 3 h) starts with a quiet hour's budget, which a sliding
//! window lets go out at once. ² Only three 9 s packets fit the 32.4 s of
//! data budget per hour. Without a duty cycle, loss costs most in idle
//! time: each lost poll or ACK waits out `ack_timeout`. Under a duty cycle
//! the budget, not the waiting, is the limit, and loss costs only the
//! airtime of what is sent again.
//!
//! With radios that are deaf while they send and packets that collide
//! (`half_duplex` in [`vsim`]), two nodes at 10 % loss keep 79 % (SF7) and
//! 56 % (SF12) of the ideal without a duty cycle, and the same as above at
//! 1 %. Several nodes sending at once without a duty cycle collide nearly
//! always unless the modem listens before it talks (RNodes do).
//!
//! One 10 KiB bundle (44 frames) at 1 %: SF7 17.5 s with a quiet last hour
//! (21.6 s at 10 % loss), 1.0 h right after other traffic spent the budget;
//! SF12 14.0 h (15.0 h at 10 % loss, or after spent budget).
//!
//! # Neighbours
//!
//! LoRa is a broadcast medium. Each node sends a HELLO every
//! `hello_interval_secs` (by default as often as a tenth of the budget
//! allows, at least every 60 s) and soon after hearing a new neighbour. A
//! neighbour is up (`peer_up`, node ID from its HELLO, address
//! `lora://<device>#<short ID>`) from its first HELLO and down after
//! `peer_timeout_secs` without any frame from it. DATA, POLL and ACK frames
//! name their receiver; other nodes ignore them.
//!
//! # Configuring it in ferryd
//!
//! ```toml
//! [[cla]]
//! path = "target/release/libferry_cla_lora.so"
//! [cla.settings]
//! device = "/dev/serial/by-id/usb-RNode-if00"
//! baud = 115200
//! region = "EU868"          # 1 % duty cycle
//! spreading_factor = 9
//! bandwidth_hz = 125000
//! coding_rate = 5           # 4/5
//! ```
//!
//! The modem must be set to the same spreading factor, bandwidth, coding
//! rate and preamble (and a frequency in the region's band) by its own
//! tools, e.g. `rnodeconf` for an RNode in TNC mode; the plugin uses these
//! settings for airtime and the duty cycle, and sends only KISS data frames.
//!
//! # Settings
//!
//! Unknown keys are errors; every error names its key.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `device` | (required) | the modem's serial device; reopened with back-off (1 s doubling to `reopen_max_secs`) when it vanishes or cannot be opened |
//! | `baud` | `115200` | serial speed |
//! | `region` | `"EU868"` | `EU868` (1 % duty cycle), `EU433` (10 %), `US915` (no duty cycle; a full packet must fit the 400 ms dwell time) or `none` (then `duty_cycle_percent` is required) |
//! | `duty_cycle_percent` | the region's | airtime share of any window; at most the region's |
//! | `duty_window_secs` | `3600` | the sliding window of the duty cycle |
//! | `spreading_factor` | `7` | 6 ..= 12 |
//! | `bandwidth_hz` | `125000` | 7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000 or 500000 |
//! | `coding_rate` | `5` | 5 ..= 8, for 4/5 ..= 4/8 |
//! | `preamble_symbols` | `8` | preamble length |
//! | `radio_crc` | `true` | whether the modem appends the LoRa payload CRC (airtime only) |
//! | `hello_interval_secs` | ≥ 60, a tenth of the budget | between HELLOs |
//! | `peer_timeout_secs` | 5 HELLO intervals | silence before a neighbour is down |
//! | `ack_timeout_ms` | a full packet + an ACK + 300 ms (SF7: 0.78 s) | wait for an ACK before polling again |
//! | `max_retries` | `20` | polls in a row without an answer (or *pending* answers) before a transmission fails; the router retries later |
//! | `max_bundle` | `65536` | largest bundle sent or accepted (the MTU); at most 241664 (1024 frames) |
//! | `max_reassemblies` | `8` | bundles being reassembled at once |
//! | `max_reassembly_bytes` | `524288` | bytes reserved by reassemblies (frame count × 236, from the first frame) |
//! | `reassembly_timeout_secs` | 10 min (+ the window under a duty cycle) | silence before a partial bundle is dropped |
//! | `max_queued` | `64` | bundles queued per neighbour |
//! | `reopen_max_secs` | `30` | longest wait between attempts to reopen the device |
//! | `time_scale` | `1` | simulations only: the radio clock runs this many times faster (with `lora-sim-channel --time-scale`); logged as a warning |
//!
//! # What the host sees
//!
//! - **Received bundles** come with a token; the final ACK (*accepted*)
//!   goes on air only when `verdict(token, Accepted)` arrives. `Duplicate`,
//!   `Invalid` and `NoResources` are passed to the sender as such. A
//!   retransmitted frame of a finished transfer is answered from memory,
//!   never handed up again.
//! - **Transmissions** end exactly once: `Sent` on *accepted* or
//!   *duplicate*, `Refused` on *invalid*, `Failed` on *no resources*, after
//!   `max_retries` unanswered polls, when the neighbour falls silent, the
//!   modem vanishes, or the plugin stops.
//! - **Bad input** — line noise, bad KISS escapes, frames longer than a
//!   packet, frames with a bad CRC, well-checksummed frames with impossible
//!   fields, transfers larger than `max_bundle` — is dropped with a warning
//!   that says what was wrong (malformed packets: one line per kind of error
//!   per minute, with a count of the rest, so that another LoRa network on
//!   the channel does not flood the log); nothing in it can panic the plugin
//!   or grow its memory beyond the limits above.
//!
//! # Architecture invariant
//! [`link`], [`frame`], [`airtime`] and [`duty`] do no I/O, spawn no thread
//! and read no clock: packets and the time (µs) go in; packets, events and
//! the next deadline come out. Only [`plugin`], `serial` and [`sim`] touch
//! devices, threads and time.

pub mod airtime;
pub mod duty;
pub mod frame;
pub mod link;
pub mod plugin;
mod serial;
pub mod settings;
pub mod sim;
pub mod vsim;

#[cfg(test)]
mod link_tests;

pub use plugin::{descriptor, LoraCla, DESCRIPTOR};

#[cfg(feature = "export")]
ferry_cla_abi::export_cla!(plugin::LoraCla);
