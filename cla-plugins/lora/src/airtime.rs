//! Time on air of a LoRa packet, from Semtech's formula (SX1276/77/78/79
//! datasheet §4.1.1.7, application note AN1200.13 "LoRa Modem Designer's
//! Guide").
//!
//! ```text
//! T_sym      = 2^SF / BW
//! T_preamble = (n_preamble + 4.25) · T_sym
//! n_payload  = 8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)
//! T_packet   = T_preamble + n_payload · T_sym
//! ```
//!
//! PL is the payload length in bytes, CRC 1 when the radio appends its
//! payload CRC, IH 1 in implicit-header mode, CR 1..4 for coding rates
//! 4/5..4/8, and DE 1 when low-data-rate optimisation is on — which the
//! datasheet requires when a symbol lasts longer than 16 ms (SF11 and SF12
//! at 125 kHz).

/// The radio parameters that decide airtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RadioParams {
    /// Spreading factor, 6..=12.
    pub spreading_factor: u8,
    /// Bandwidth in Hz (7800 .. 500000).
    pub bandwidth_hz: u32,
    /// Coding rate denominator: 5..=8 for 4/5..4/8.
    pub coding_rate: u8,
    /// Preamble length in symbols (the radio adds 4.25).
    pub preamble_symbols: u16,
    /// The radio appends a payload CRC (LoRaWAN uplinks and RNodes do).
    pub crc: bool,
    /// Explicit header mode (the default of every LoRa modem).
    pub explicit_header: bool,
}

impl Default for RadioParams {
    /// SF7, 125 kHz, 4/5, 8 preamble symbols, CRC on, explicit header.
    fn default() -> Self {
        RadioParams {
            spreading_factor: 7,
            bandwidth_hz: 125_000,
            coding_rate: 5,
            preamble_symbols: 8,
            crc: true,
            explicit_header: true,
        }
    }
}

impl RadioParams {
    /// Duration of one symbol in nanoseconds: 2^SF / BW.
    pub fn symbol_ns(&self) -> u64 {
        let chips = 1u64 << self.spreading_factor.min(12);
        chips * 1_000_000_000 / u64::from(self.bandwidth_hz.max(1))
    }

    /// Low-data-rate optimisation: on when a symbol lasts longer than 16 ms
    /// (SX127x datasheet §4.1.1.6), i.e. SF11 and SF12 at 125 kHz.
    pub fn low_data_rate_optimize(&self) -> bool {
        self.symbol_ns() > 16_000_000
    }

    /// Number of payload symbols for a `len`-byte payload (header included).
    pub fn payload_symbols(&self, len: usize) -> u64 {
        let sf = i64::from(self.spreading_factor);
        let pl = i64::try_from(len).unwrap_or(i64::MAX / 16);
        let crc = i64::from(self.crc);
        let ih = i64::from(!self.explicit_header);
        let de = i64::from(self.low_data_rate_optimize());
        let num = 8 * pl - 4 * sf + 28 + 16 * crc - 20 * ih;
        let den = 4 * (sf - 2 * de);
        let blocks = if num <= 0 { 0 } else { (num + den - 1) / den };
        let cr = i64::from(self.coding_rate) - 4;
        // `blocks` and `cr` are non-negative here, so the cast keeps the value.
        8 + (blocks * (cr + 4)) as u64
    }

    /// Time on air of a packet with a `len`-byte payload, in microseconds
    /// (rounded up, so budgets are never underestimated).
    pub fn airtime_us(&self, len: usize) -> u64 {
        // Work in quarter symbols: the preamble has n + 4.25 symbols.
        let quarters = 4 * u64::from(self.preamble_symbols) + 17 + 4 * self.payload_symbols(len);
        (quarters * self.symbol_ns()).div_ceil(4 * 1000)
    }

    /// Raw bit rate of the modulation in bits per second:
    /// SF · BW / 2^SF · 4 / CR (AN1200.13, equation 3).
    pub fn bit_rate(&self) -> f64 {
        let sf = f64::from(self.spreading_factor);
        sf * f64::from(self.bandwidth_hz) / f64::from(1u32 << self.spreading_factor.min(12)) * 4.0
            / f64::from(self.coding_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sf: u8, bw: u32) -> RadioParams {
        RadioParams { spreading_factor: sf, bandwidth_hz: bw, ..RadioParams::default() }
    }

    #[test]
    fn sf7_125khz_matches_the_semtech_calculator() {
        // T_sym = 128 / 125 kHz = 1.024 ms; preamble 12.25 · 1.024 = 12.544 ms.
        // 10 B: ceil((80 − 28 + 28 + 16) / 28) = ceil(3.43) = 4 → 8 + 4·5 = 28
        // symbols = 28.672 ms; total 41.216 ms (the calculator's 41.2 ms).
        let p = params(7, 125_000);
        assert!(!p.low_data_rate_optimize());
        assert_eq!(p.payload_symbols(10), 28);
        assert_eq!(p.airtime_us(10), 41_216);
        // 255 B: ceil((2040 − 28 + 44) / 28) = ceil(73.43) = 74 → 8 + 370 =
        // 378 symbols = 387.072 ms; total 399.616 ms.
        assert_eq!(p.airtime_us(255), 399_616);
        // 0 B: ceil((0 − 28 + 28 + 16) / 28) = 1 → 13 symbols = 13.312 ms;
        // total 25.856 ms.
        assert_eq!(p.airtime_us(0), 25_856);
    }

    #[test]
    fn sf12_125khz_uses_low_data_rate_optimisation() {
        // T_sym = 4096 / 125 kHz = 32.768 ms > 16 ms → DE = 1.
        // Preamble 12.25 · 32.768 = 401.408 ms.
        // 10 B: ceil((80 − 48 + 44) / 40) = ceil(1.9) = 2 → 8 + 10 = 18
        // symbols = 589.824 ms; total 991.232 ms (the calculator's 991.2 ms).
        let p = params(12, 125_000);
        assert!(p.low_data_rate_optimize());
        assert_eq!(p.airtime_us(10), 991_232);
        // 255 B: ceil((2040 − 48 + 44) / 40) = ceil(50.9) = 51 → 8 + 255 =
        // 263 symbols = 8617.984 ms; total 9019.392 ms.
        assert_eq!(p.airtime_us(255), 9_019_392);
    }

    #[test]
    fn sf11_125khz_optimises_and_sf10_does_not() {
        // SF11: T_sym = 16.384 ms > 16 ms. SF10: 8.192 ms.
        assert!(params(11, 125_000).low_data_rate_optimize());
        assert!(!params(10, 125_000).low_data_rate_optimize());
        // SF12 at 250 kHz: 16.384 ms, on; at 500 kHz: 8.192 ms, off.
        assert!(params(12, 250_000).low_data_rate_optimize());
        assert!(!params(12, 500_000).low_data_rate_optimize());
        // SF10, 125 kHz, 4/5, 20 B: ceil((160 − 40 + 44) / 40) = ceil(4.1) = 5
        // → 33 symbols = 270.336 ms, preamble 100.352 ms: 370.688 ms.
        assert_eq!(params(10, 125_000).airtime_us(20), 370_688);
    }

    #[test]
    fn coding_rate_implicit_header_and_no_crc() {
        // SF9, 125 kHz, 4/8, no CRC, implicit header, 6 preamble symbols, 50 B:
        // T_sym = 4.096 ms; preamble 10.25 · 4.096 = 41.984 ms;
        // ceil((400 − 36 + 28 − 20) / 36) = ceil(10.33) = 11 → 8 + 88 = 96
        // symbols = 393.216 ms; total 435.2 ms.
        let p = RadioParams {
            spreading_factor: 9,
            bandwidth_hz: 125_000,
            coding_rate: 8,
            preamble_symbols: 6,
            crc: false,
            explicit_header: false,
        };
        assert_eq!(p.airtime_us(50), 435_200);
    }

    #[test]
    fn bit_rates() {
        // AN1200.13: SF7/125 kHz/4/5 ≈ 5469 bit/s, SF12 ≈ 293 bit/s.
        assert_eq!(params(7, 125_000).bit_rate().round(), 5469.0);
        assert_eq!(params(12, 125_000).bit_rate().round(), 293.0);
    }
}
