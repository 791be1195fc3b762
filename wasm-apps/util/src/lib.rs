//! Small helpers the Ferry apps share (no host imports: plain Rust).

/// Parses a duration in an app's config: `7d`, `12h`, `30m`, `90s`, `500ms`
/// or a bare number of milliseconds; the result is in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().map_err(|_| format!("`{s}` is not a duration like 30s or 7d"))?;
    let unit = match &s[split..] {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit `{other}` in `{s}` (ms, s, m, h, d)")),
    };
    n.checked_mul(unit).ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("20s"), Ok(20_000));
        assert_eq!(parse_duration_ms("1500"), Ok(1500));
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("3w").is_err());
        assert!(parse_duration_ms("99999999999999999d").is_err());
    }
}
