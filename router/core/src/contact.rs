//! The contact model: scheduled, one-way windows in which one node can send
//! to another at a known rate, with a one-way light time (OWLT) — what
//! contact-graph routing plans over and what the simulator replays.
//!
//! [`ContactPlan::parse_ion`] reads ION's contact plan commands (ionadmin):
//!
//! ```text
//! # comment
//! a contact +0 +3600 1 2 100000      # from +t1 to +t2 (s), node 1 → node 2, bytes/s
//! a contact 2026/01/01-00:00:00 2026/01/01-01:00:00 2 1 100000 0.9
//! a range +0 +3600 1 2 1             # OWLT between 1 and 2, seconds
//! ```
//!
//! Times are `+seconds` relative to a base the caller gives, or absolute
//! `yyyy/mm/dd-hh:mm:ss` (UTC). Nodes are ipn node numbers (`ipn:N.0`). A
//! range holds in both directions unless the reverse pair has its own. A
//! `contact` may end with ION's confidence (0 to 1). Anything else is an
//! error naming the file, the line and what was expected.

use std::collections::BTreeMap;

use crate::bundle::{DtnTime, DTN_EPOCH_UNIX_SECS};
use crate::eid::Eid;

/// One scheduled contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub from: Eid,
    pub to: Eid,
    /// First instant of the contact (DTN ms).
    pub start: DtnTime,
    /// End of the contact, exclusive (DTN ms).
    pub end: DtnTime,
    /// Bytes per second from `from` to `to`.
    pub rate_bps: u64,
    /// One-way light time (ms), from the range that covers `start`.
    pub owlt_ms: u64,
    /// ION's confidence that the contact happens (1 unless given).
    pub confidence: f64,
}

impl Contact {
    /// Bytes the contact can carry in total.
    pub fn volume(&self) -> u64 {
        let ms = u128::from(self.end.saturating_sub(self.start));
        u64::try_from(ms * u128::from(self.rate_bps) / 1000).unwrap_or(u64::MAX)
    }

    /// Milliseconds to send `bytes` at this contact's rate (rounded up);
    /// `None` at rate 0.
    pub fn transmit_ms(&self, bytes: u64) -> Option<u64> {
        transmit_ms(bytes, self.rate_bps)
    }
}

/// Milliseconds to send `bytes` at `rate_bps` bytes per second, rounded up.
pub fn transmit_ms(bytes: u64, rate_bps: u64) -> Option<u64> {
    if rate_bps == 0 {
        return None;
    }
    let ms = (u128::from(bytes) * 1000).div_ceil(u128::from(rate_bps));
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A one-way light time that holds over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub a: Eid,
    pub b: Eid,
    pub start: DtnTime,
    pub end: DtnTime,
    pub owlt_ms: u64,
}

/// Contacts ordered by start time (then from, to), with an index by sender.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPlan {
    contacts: Vec<Contact>,
    by_from: BTreeMap<Eid, Vec<usize>>,
}

/// A contact plan line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct PlanError {
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    pub problem: PlanProblem,
}

/// What was wrong with a contact plan line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanProblem {
    /// Not a command this reader knows.
    #[error("expected `a contact` or `a range`, found `{0}`")]
    UnknownCommand(String),
    /// A field is missing.
    #[error("expected {what} after `{after}`")]
    Missing { what: &'static str, after: String },
    /// A field is there but malformed.
    #[error("expected {what}, found `{found}`")]
    Bad { what: &'static str, found: String },
    /// Fields after the last one.
    #[error("unexpected `{0}` at the end of the line")]
    Trailing(String),
    /// The end is not after the start.
    #[error("the end time must be after the start time")]
    EmptyPeriod,
}

impl ContactPlan {
    /// A plan of these contacts (sorted here).
    pub fn new(mut contacts: Vec<Contact>) -> ContactPlan {
        contacts.sort_by(|x, y| (x.start, &x.from, &x.to, x.end).cmp(&(y.start, &y.from, &y.to, y.end)));
        let mut by_from: BTreeMap<Eid, Vec<usize>> = BTreeMap::new();
        for (i, c) in contacts.iter().enumerate() {
            by_from.entry(c.from.clone()).or_default().push(i);
        }
        ContactPlan { contacts, by_from }
    }

    /// Reads ION contact plan commands; `file` names the source in errors and
    /// `base` is the DTN time that `+0` stands for.
    pub fn parse_ion(text: &str, file: &str, base: DtnTime) -> Result<ContactPlan, PlanError> {
        let mut contacts = vec![];
        let mut ranges = vec![];
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let err = |problem| PlanError { file: file.to_owned(), line: n + 1, problem };
            let mut f = Fields { it: line.split_whitespace(), last: String::new() };
            let cmd = (f.next(), f.next());
            let is_contact = match cmd {
                (Some("a"), Some("contact")) => true,
                (Some("a"), Some("range")) => false,
                _ => return Err(err(PlanProblem::UnknownCommand(line.to_owned()))),
            };
            let start = f.time(base).map_err(err)?;
            let end = f.time(base).map_err(err)?;
            let from = f.node().map_err(err)?;
            let to = f.node().map_err(err)?;
            if end <= start {
                return Err(err(PlanProblem::EmptyPeriod));
            }
            if is_contact {
                let rate_bps = f.uint("a rate in bytes per second").map_err(err)?;
                let confidence = match f.next() {
                    None => 1.0,
                    Some(c) => match c.parse::<f64>() {
                        Ok(v) if (0.0..=1.0).contains(&v) => v,
                        _ => return Err(err(PlanProblem::Bad { what: "a confidence from 0 to 1", found: c.into() })),
                    },
                };
                contacts.push(Contact { from, to, start, end, rate_bps, owlt_ms: 0, confidence });
            } else {
                let owlt_s = f.uint("a one-way light time in seconds").map_err(err)?;
                ranges.push(Range { a: from, b: to, start, end, owlt_ms: owlt_s.saturating_mul(1000) });
            }
            if let Some(extra) = f.next() {
                return Err(err(PlanProblem::Trailing(extra.to_owned())));
            }
        }
        for c in &mut contacts {
            c.owlt_ms = owlt(&ranges, &c.from, &c.to, c.start);
        }
        Ok(ContactPlan::new(contacts))
    }

    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    pub fn get(&self, index: usize) -> Option<&Contact> {
        self.contacts.get(index)
    }

    /// Indexes of the contacts `node` sends on, by start time.
    pub fn from(&self, node: &Eid) -> &[usize] {
        self.by_from.get(node).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }
}

/// The OWLT from `from` to `to` at `t`: a range for that pair, else one for
/// the reverse pair (ranges are symmetric unless both are given), else 0.
fn owlt(ranges: &[Range], from: &Eid, to: &Eid, t: DtnTime) -> u64 {
    let covering = |a: &Eid, b: &Eid| {
        ranges.iter().find(|r| &r.a == a && &r.b == b && r.start <= t && t < r.end).map(|r| r.owlt_ms)
    };
    covering(from, to).or_else(|| covering(to, from)).unwrap_or(0)
}

struct Fields<'a> {
    it: std::str::SplitWhitespace<'a>,
    last: String,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let f = self.it.next()?;
        self.last = f.to_owned();
        Some(f)
    }

    fn field(&mut self, what: &'static str) -> Result<&'a str, PlanProblem> {
        let after = self.last.clone();
        self.next().ok_or(PlanProblem::Missing { what, after })
    }

    fn uint(&mut self, what: &'static str) -> Result<u64, PlanProblem> {
        let f = self.field(what)?;
        f.parse().map_err(|_| PlanProblem::Bad { what, found: f.into() })
    }

    fn node(&mut self) -> Result<Eid, PlanProblem> {
        let what = "a node number";
        let f = self.field(what)?;
        f.parse().map(Eid::ipn_node).map_err(|_| PlanProblem::Bad { what, found: f.into() })
    }

    fn time(&mut self, base: DtnTime) -> Result<DtnTime, PlanProblem> {
        let what = "a time (+seconds or yyyy/mm/dd-hh:mm:ss)";
        let f = self.field(what)?;
        let bad = || PlanProblem::Bad { what, found: f.into() };
        match f.strip_prefix('+') {
            Some(secs) => {
                let s: u64 = secs.parse().map_err(|_| bad())?;
                Ok(base.saturating_add(s.saturating_mul(1000)))
            }
            None => parse_utc(f).ok_or_else(bad),
        }
    }
}

/// `yyyy/mm/dd-hh:mm:ss` (UTC, from 2000 on) as DTN time.
pub fn parse_utc(s: &str) -> Option<DtnTime> {
    let (date, time) = s.split_once('-')?;
    let d: Vec<u64> = date.split('/').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<u64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [y, mo, day] = <[u64; 3]>::try_from(d).ok()?;
    let [h, mi, sec] = <[u64; 3]>::try_from(t).ok()?;
    let month_days = [31, if is_leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(2000..=9999).contains(&y) || !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if day == 0 || day > month_days[usize::try_from(mo - 1).ok()?] {
        return None;
    }
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let unix = days * 86_400 + h * 3600 + mi * 60 + sec;
    Some((unix - DTN_EPOCH_UNIX_SECS) * 1000)
}

fn is_leap(y: u64) -> bool {
    // The remainders, not `is_multiple_of`: that needs Rust 1.87 and the
    // workspace builds with 1.85.
    let (r4, r100, r400) = (y % 4, y % 100, y % 400);
    (r4 == 0 && r100 != 0) || r400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> (usize, String) {
        let e = ContactPlan::parse_ion(text, "plan.txt", 0).unwrap_err();
        assert_eq!(e.file, "plan.txt");
        (e.line, e.to_string())
    }

    #[test]
    fn reads_contacts_ranges_and_absolute_times() {
        let text = "# a plan\n\
                    a contact +10 +20 2 1 500\n\
                    a contact +0 +100 1 2 1000 0.5  # trailing comment\n\
                    a range +0 +100 1 2 3\n\
                    a contact 2000/01/02-00:00:00 2000/01/02-00:01:00 3 1 10\n";
        let plan = ContactPlan::parse_ion(text, "plan.txt", 1_000_000).unwrap();
        let c = plan.contacts();
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].from.clone(), c[0].start, c[0].end), (Eid::ipn_node(1), 1_000_000, 1_100_000));
        assert_eq!((c[0].rate_bps, c[0].owlt_ms, c[0].confidence), (1000, 3000, 0.5));
        // The range holds in the reverse direction too.
        assert_eq!((c[1].from.clone(), c[1].owlt_ms, c[1].confidence), (Eid::ipn_node(2), 3000, 1.0));
        assert_eq!((c[2].start, c[2].end), (86_400_000, 86_460_000));
        assert_eq!(plan.from(&Eid::ipn_node(2)), &[1]);
        assert_eq!(c[0].volume(), 100_000);
        assert_eq!(c[0].transmit_ms(1001), Some(1001));
        assert_eq!(transmit_ms(1, 3), Some(334));
    }

    #[test]
    fn utc_times_count_leap_years() {
        assert_eq!(parse_utc("2000/01/01-00:00:00"), Some(0));
        assert_eq!(parse_utc("2000/03/01-00:00:00"), Some((31 + 29) * 86_400_000));
        assert_eq!(parse_utc("2001/01/01-00:00:01"), Some((366 * 86_400 + 1) * 1000));
        for bad in ["2001/02/29-00:00:00", "1999/01/01-00:00:00", "2000/13/01-00:00:00", "2000/01/01", "x"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        assert_eq!(
            problem("\n\nm production 1000\n"),
            (3, "plan.txt:3: expected `a contact` or `a range`, found `m production 1000`".into())
        );
        assert_eq!(
            problem("a contact +0 +10 1 2"),
            (1, "plan.txt:1: expected a rate in bytes per second after `2`".into())
        );
        assert_eq!(
            problem("a contact +0"),
            (1, "plan.txt:1: expected a time (+seconds or yyyy/mm/dd-hh:mm:ss) after `+0`".into())
        );
        assert_eq!(problem("a contact +0 +10 x 2 5"), (1, "plan.txt:1: expected a node number, found `x`".into()));
        assert_eq!(
            problem("a contact +0 +10 1 2 -5"),
            (1, "plan.txt:1: expected a rate in bytes per second, found `-5`".into())
        );
        assert_eq!(
            problem("a contact +0 +10 1 2 5 2"),
            (1, "plan.txt:1: expected a confidence from 0 to 1, found `2`".into())
        );
        assert_eq!(problem("a range +0 +10 1 2 1 9"), (1, "plan.txt:1: unexpected `9` at the end of the line".into()));
        assert_eq!(
            problem("a range +0 +10 1 2 x"),
            (1, "plan.txt:1: expected a one-way light time in seconds, found `x`".into())
        );
        assert_eq!(
            problem("a contact +10 +10 1 2 5"),
            (1, "plan.txt:1: the end time must be after the start time".into())
        );
        assert_eq!(problem("a contact 2000/02/30-00:00:00 +10 1 2 5").0, 1);
    }
}
