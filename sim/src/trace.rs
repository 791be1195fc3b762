//! The ONE's external events files (what its `StandardEventsReader` reads):
//!
//! ```text
//! 0 CONN 0 1 up          # time (s) CONN host host up|down
//! 12.5 C M1 0 2 50000    # time C message-id from to size [response-size]
//! 300 CONN n0 n1 down    # hosts as numbers, or with a letter prefix (n7)
//! ```
//!
//! ONE host `h` is simulated node `h + 1` (`ipn:h+1.0`): ipn node 0 is not a
//! node (`ipn:0.0` is the null endpoint, RFC 9171 §4.2.5.1.2). Other event
//! types (transfers, deletions) describe a run, not its inputs, and are
//! refused. Every error names the file, the line and what was expected.

/// One connectivity change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnEvent {
    /// Milliseconds from the start.
    pub time_ms: u64,
    /// Node numbers (ONE host + 1).
    pub a: u64,
    pub b: u64,
    pub up: bool,
}

/// One message creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    pub time_ms: u64,
    pub id: String,
    pub from: u64,
    pub to: u64,
    pub size: u64,
}

/// What a trace file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// In file order (the ONE requires files in time order; so do we).
    pub connections: Vec<ConnEvent>,
    pub messages: Vec<MessageEvent>,
}

/// A trace line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct TraceError {
    pub file: String,
    pub line: usize,
    pub problem: TraceProblem,
}

/// What was wrong with the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceProblem {
    #[error("expected {what}, found `{found}`")]
    Bad { what: &'static str, found: String },
    #[error("expected {what} after `{after}`")]
    Missing { what: &'static str, after: String },
    #[error("event type `{0}` is not an input (expected CONN or C)")]
    Unsupported(String),
    #[error("unexpected `{0}` at the end of the line")]
    Trailing(String),
    #[error("time {time} s is earlier than the line before ({before} s)")]
    OutOfOrder { time: String, before: String },
    #[error("a host cannot connect to or send to itself")]
    SameHost,
}

/// Reads a ONE external events file; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Trace, TraceError> {
    let mut trace = Trace::default();
    let mut last: Option<(u64, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let err = |problem| TraceError { file: file.to_owned(), line: n + 1, problem };
        let mut f = line.split_whitespace();
        let time_text = f.next().unwrap_or_default();
        let time_ms = seconds_to_ms(time_text)
            .ok_or_else(|| err(TraceProblem::Bad { what: "a time in seconds", found: time_text.into() }))?;
        if let Some((before, before_text)) = &last {
            if time_ms < *before {
                return Err(err(TraceProblem::OutOfOrder { time: time_text.into(), before: before_text.clone() }));
            }
        }
        last = Some((time_ms, time_text.to_owned()));
        let kind = field(&mut f, "an event type (CONN or C)", time_text).map_err(err)?;
        match kind {
            "CONN" => {
                let a = host(&mut f, kind).map_err(err)?;
                let b = host(&mut f, "the first host").map_err(err)?;
                let state = field(&mut f, "up or down", "the second host").map_err(err)?;
                let up = match state {
                    "up" => true,
                    "down" => false,
                    other => return Err(err(TraceProblem::Bad { what: "up or down", found: other.into() })),
                };
                if a == b {
                    return Err(err(TraceProblem::SameHost));
                }
                trace.connections.push(ConnEvent { time_ms, a, b, up });
            }
            "C" => {
                let id = field(&mut f, "a message ID", kind).map_err(err)?.to_owned();
                let from = host(&mut f, "the message ID").map_err(err)?;
                let to = host(&mut f, "the source host").map_err(err)?;
                let size_text = field(&mut f, "a size in bytes", "the destination host").map_err(err)?;
                let size = size_text
                    .parse()
                    .map_err(|_| err(TraceProblem::Bad { what: "a size in bytes", found: size_text.into() }))?;
                // The ONE's optional response size: responses are not simulated, but the field is valid.
                if let Some(r) = f.next() {
                    if r.parse::<u64>().is_err() {
                        return Err(err(TraceProblem::Bad { what: "a response size in bytes", found: r.into() }));
                    }
                }
                if from == to {
                    return Err(err(TraceProblem::SameHost));
                }
                trace.messages.push(MessageEvent { time_ms, id, from, to, size });
            }
            other => return Err(err(TraceProblem::Unsupported(other.into()))),
        }
        if let Some(extra) = f.next() {
            return Err(err(TraceProblem::Trailing(extra.into())));
        }
    }
    Ok(trace)
}

fn field<'a>(f: &mut std::str::SplitWhitespace<'a>, what: &'static str, after: &str) -> Result<&'a str, TraceProblem> {
    f.next().ok_or_else(|| TraceProblem::Missing { what, after: after.into() })
}

/// A host address, `7` or `n7`, as a node number (host + 1).
fn host(f: &mut std::str::SplitWhitespace<'_>, after: &str) -> Result<u64, TraceProblem> {
    let what = "a host (a number, or a letter prefix and a number like n7)";
    let text = field(f, what, after)?;
    let digits = text.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    match digits.parse::<u64>() {
        Ok(h) if !digits.is_empty() && h < u64::MAX => Ok(h + 1),
        _ => Err(TraceProblem::Bad { what, found: text.into() }),
    }
}

/// Decimal seconds (`12`, `12.5`) as whole milliseconds, without float rounding.
pub fn seconds_to_ms(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms: u64 = int.parse::<u64>().ok()?.checked_mul(1000)?;
    for (i, d) in frac.bytes().take(3).enumerate() {
        ms = ms.checked_add(u64::from(d - b'0') * [100, 10, 1][i])?;
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        let e = parse(text, "t.txt").unwrap_err();
        e.to_string()
    }

    #[test]
    fn reads_connections_and_messages() {
        let t =
            parse("# trace\n0 CONN 0 1 up\n1.25 C M1 n0 n2 500\n2 C M2 1 0 10 20\n3 CONN n1 n0 down\n", "t").unwrap();
        assert_eq!(
            t.connections,
            vec![ConnEvent { time_ms: 0, a: 1, b: 2, up: true }, ConnEvent { time_ms: 3000, a: 2, b: 1, up: false }]
        );
        assert_eq!(t.messages[0], MessageEvent { time_ms: 1250, id: "M1".into(), from: 1, to: 3, size: 500 });
        assert_eq!(t.messages[1].size, 10);
        assert_eq!(seconds_to_ms("0.0015"), Some(1));
        assert_eq!(seconds_to_ms("1e3"), None);
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        assert_eq!(problem("x CONN 0 1 up"), "t.txt:1: expected a time in seconds, found `x`");
        assert_eq!(problem("\n1 CONN 0 1 sideways"), "t.txt:2: expected up or down, found `sideways`");
        assert_eq!(
            problem("1 CONN 0"),
            "t.txt:1: expected a host (a number, or a letter prefix and a number like n7) after `the first host`"
        );
        assert_eq!(
            problem("1 CONN 0 x up"),
            "t.txt:1: expected a host (a number, or a letter prefix and a number like n7), found `x`"
        );
        assert_eq!(problem("1 CONN 0 0 up"), "t.txt:1: a host cannot connect to or send to itself");
        assert_eq!(problem("1 S M1 0 1"), "t.txt:1: event type `S` is not an input (expected CONN or C)");
        assert_eq!(problem("1 C M1 0 1 big"), "t.txt:1: expected a size in bytes, found `big`");
        assert_eq!(problem("1 C M1 0 1 5 x"), "t.txt:1: expected a response size in bytes, found `x`");
        assert_eq!(problem("1 CONN 0 1 up now"), "t.txt:1: unexpected `now` at the end of the line");
        assert_eq!(
            problem("5 CONN 0 1 up\n4 CONN 0 1 down"),
            "t.txt:2: time 4 s is earlier than the line before (5 s)"
        );
        assert_eq!(problem("1"), "t.txt:1: expected an event type (CONN or C) after `1`");
    }
}
