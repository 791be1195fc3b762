//! Text helpers shared by the commands: error messages, hex, DTN time,
//! durations, file names and tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::bundle::{DtnTime, DTN_EPOCH_UNIX_SECS};

/// An error and its causes on one line: "outer: inner: root".
pub fn error_chain(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// Why hex text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character that is neither a hex digit nor whitespace.
    #[error("line {line}: '{ch}' is not a hex digit")]
    NotHex { line: usize, ch: char },
    /// The digits do not pair up into bytes.
    #[error("odd number of hex digits ({0})")]
    OddLength(usize),
}

/// Decodes hex text: whitespace anywhere is ignored, and so are lines whose
/// first non-blank character is '#'.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut nibbles = Vec::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for ch in line.chars().filter(|c| !c.is_whitespace()) {
            let v = ch.to_digit(16).ok_or(HexError::NotHex { line: n + 1, ch })?;
            // to_digit(16) is below 16, so it fits a u8.
            nibbles.push(v as u8);
        }
    }
    if nibbles.len() % 2 != 0 {
        return Err(HexError::OddLength(nibbles.len()));
    }
    Ok(nibbles.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The current DTN time (ms since 2000-01-01T00:00:00Z) from the system clock;
/// 0 if the clock is set before 2000.
pub fn dtn_now() -> DtnTime {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let ms = unix_ms.saturating_sub(u128::from(DTN_EPOCH_UNIX_SECS) * 1000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A DTN time as an RFC 3339 UTC date, or "unknown" for 0 (§4.2.6: no clock).
pub fn dtn_date(t: DtnTime) -> String {
    if t == 0 {
        return "unknown (0)".to_owned();
    }
    let unix = Duration::from_secs(DTN_EPOCH_UNIX_SECS) + Duration::from_millis(t);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + unix).to_string()
}

/// A duration for people, to the second: "1h 2m 3s"; "0s" for less than a second.
pub fn duration(d: Duration) -> String {
    let secs = Duration::from_secs(d.as_secs());
    humantime::format_duration(secs).to_string()
}

/// How long until `expires_at`, from `now`: "59m 12s", or "expired".
pub fn expires_in(now: DtnTime, expires_at: DtnTime) -> String {
    if expires_at <= now {
        "expired".to_owned()
    } else {
        duration(Duration::from_millis(expires_at - now))
    }
}

/// A byte count for people: "512 B", "10.0 KiB", "1.0 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Precision loss is irrelevant for a one-decimal display.
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A bundle ID (or any text) made safe as a file name: every character other
/// than ASCII letters, digits, '.', '-' and '_' becomes '_'; never empty, never
/// "." or "..".
pub fn sanitise_file_name(text: &str) -> String {
    let s: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

/// Percent-encodes a query-string component. Characters that are safe in a
/// query (RFC 3986 unreserved, plus ':', '/' and '@', which EIDs are full of)
/// stay as they are, so IDs remain readable in logs.
pub fn query_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A plain text table: a header row, then the rows, columns padded to fit.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            if i + 1 < widths.len() {
                l.extend(std::iter::repeat_n(' ', w.saturating_sub(cell.chars().count())));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Transfers at least this large get a progress bar.
pub const PROGRESS_MIN_BYTES: u64 = 1 << 20;

/// A progress bar for moving `len` bytes on standard error; hidden for
/// small transfers, with `--json`, and when standard error is not a
/// terminal (scripts, logs).
pub fn transfer_bar(len: u64, json: bool, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    let shown = !json && std::io::stderr().is_terminal() && len >= PROGRESS_MIN_BYTES;
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A progress bar over `n` items (bundles), under the same conditions as
/// [`transfer_bar`] (shown from one item).
pub fn count_bar(n: u64, json: bool, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ignores_comments_and_whitespace() {
        let text = "# a comment\n  # indented comment\n9f 88\n07\t1a\n\n";
        assert_eq!(decode_hex(text).unwrap(), vec![0x9f, 0x88, 0x07, 0x1a]);
        assert_eq!(decode_hex("0").unwrap_err(), HexError::OddLength(1));
        assert_eq!(decode_hex("# x\n0g").unwrap_err(), HexError::NotHex { line: 2, ch: 'g' });
        assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(sanitise_file_name("dtn://a/b-12-0"), "dtn___a_b-12-0");
        assert_eq!(sanitise_file_name(".."), "_..");
        assert_eq!(sanitise_file_name(""), "_");
        assert_eq!(sanitise_file_name("ipn:1.2-3-4"), "ipn_1.2-3-4");
    }

    #[test]
    fn query_encoding_keeps_eids_readable() {
        assert_eq!(query_encode("dtn://n/in box&x=1"), "dtn://n/in%20box%26x%3D1");
        assert_eq!(query_encode("ipn:1.2-3-4"), "ipn:1.2-3-4");
    }

    #[test]
    fn tables_align() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(expires_in(10_000, 5_000), "expired");
        assert_eq!(expires_in(0, 3_723_500), "1h 2m 3s");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(10_240), "10.0 KiB");
        assert_eq!(bytes(1_048_576), "1.0 MiB");
        assert_eq!(dtn_date(0), "unknown (0)");
        assert_eq!(dtn_date(1000), "2000-01-01T00:00:01Z");
    }
}
