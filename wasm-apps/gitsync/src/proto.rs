//! gitsync's messages and the push command from `ferry git push`.

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Push,
    Ack,
    Resend,
}

/// A message header; `n` is the push's sequence number (`seq`), the last
/// applied (`applied`) or the first missing (`from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub kind: Kind,
    pub repo: String,
    pub n: u64,
}

/// Longest header accepted.
const MAX_HEADER: usize = 4096;

pub fn valid_repo(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Msg {
    pub fn header(&self) -> String {
        let (kind, key) = match self.kind {
            Kind::Push => ("push", "seq"),
            Kind::Ack => ("ack", "applied"),
            Kind::Resend => ("resend", "from"),
        };
        format!("gitsync 1\n{kind}\nrepo {}\n{key} {}\n\n", self.repo, self.n)
    }

    /// Splits a payload into header and body (the git bundle of a push).
    pub fn parse(payload: &[u8]) -> Result<(Msg, &[u8]), String> {
        let end = payload.windows(2).take(MAX_HEADER).position(|w| w == b"\n\n").ok_or("no end of header")?;
        let head = std::str::from_utf8(&payload[..end]).map_err(|_| "header is not UTF-8")?;
        let mut lines = head.lines();
        if lines.next() != Some("gitsync 1") {
            return Err("not `gitsync 1`".into());
        }
        let (kind, key) = match lines.next() {
            Some("push") => (Kind::Push, "seq"),
            Some("ack") => (Kind::Ack, "applied"),
            Some("resend") => (Kind::Resend, "from"),
            other => return Err(format!("unknown message {other:?}")),
        };
        let (mut repo, mut n) = (None, None);
        for line in lines {
            match line.split_once(' ') {
                Some(("repo", r)) if valid_repo(r) => repo = Some(r.to_owned()),
                Some((k, v)) if k == key => n = Some(v.parse::<u64>().map_err(|_| format!("bad {key} `{v}`"))?),
                _ => return Err(format!("unexpected line {line:?}")),
            }
        }
        let msg = Msg { kind, repo: repo.ok_or("no repo")?, n: n.ok_or_else(|| format!("no {key}"))? };
        Ok((msg, &payload[end + 2..]))
    }
}

/// `ferry git push REPO --to EID [--ref REF]...` as the app receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub repo: String,
    pub to: String,
    pub refs: Vec<String>,
}

impl Command {
    pub fn parse(payload: &[u8]) -> Result<Command, String> {
        let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8")?;
        let mut lines = text.lines();
        if lines.next() != Some("push") {
            return Err("not a push command".into());
        }
        let (mut repo, mut to, mut refs) = (None, None, vec![]);
        for line in lines.filter(|l| !l.is_empty()) {
            match line.split_once(' ') {
                Some(("repo", r)) if valid_repo(r) => repo = Some(r.to_owned()),
                Some(("to", t)) => to = Some(t.to_owned()),
                Some(("ref", r)) if !r.starts_with('-') && !r.contains("..") && !r.contains(char::is_whitespace) => {
                    refs.push(r.to_owned())
                }
                _ => return Err(format!("unexpected line {line:?}")),
            }
        }
        Ok(Command { repo: repo.ok_or("no repo")?, to: to.ok_or("no destination")?, refs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let m = Msg { kind: Kind::Push, repo: "p".into(), n: 3 };
        let mut payload = m.header().into_bytes();
        payload.extend_from_slice(b"BUNDLE");
        let (back, body) = Msg::parse(&payload).unwrap();
        assert_eq!((back, body), (m, b"BUNDLE".as_slice()));
        for bad in [
            &b"gitsync 2\npush\nrepo p\nseq 1\n\n"[..],
            b"gitsync 1\npush\nrepo ../p\nseq 1\n\n",
            b"gitsync 1\nack\nrepo p\nseq 1\n\n",
            b"gitsync 1\npush\nrepo p\nseq 1\n",
        ] {
            assert!(Msg::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let c = Command::parse(b"push\nrepo p\nto dtn://b/gitsync\nref main\n").unwrap();
        assert_eq!(c.refs, ["main"]);
        assert!(Command::parse(b"push\nrepo p\nto x\nref -c\n").is_err());
    }
}
