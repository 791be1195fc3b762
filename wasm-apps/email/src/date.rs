//! RFC 5322 dates (for Received and bounce headers) without a clock crate.

/// Seconds from the Unix epoch to the DTN epoch (2000-01-01T00:00:00Z).
pub const DTN_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Year, month (1-12) and day of a count of days since 1970-01-01
/// (the civil-from-days algorithm of H. Hinnant's date library).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `Sun, 22 Nov 2026 05:00:00 +0000` for Unix time `secs`.
pub fn rfc5322(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(super::rfc5322(946_684_800), "Sat, 1 Jan 2000 00:00:00 +0000");
        assert_eq!(super::rfc5322(1_795_323_600), "Sun, 22 Nov 2026 05:00:00 +0000");
        assert_eq!(super::rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
