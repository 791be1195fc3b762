//! The envelope format and the few RFC 5322 header operations the app needs.

/// Sender and recipients of a mail, outside the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<String>,
    /// Take recipients from the To, Cc and Bcc headers too (sendmail -t).
    pub extract: bool,
}

/// Largest envelope (before `DATA`) accepted.
const MAX_ENVELOPE: usize = 64 * 1024;

fn angle(s: &str) -> &str {
    s.trim().trim_start_matches('<').trim_end_matches('>').trim()
}

impl Envelope {
    /// Splits a payload into envelope and message.
    pub fn parse(payload: &[u8]) -> Result<(Envelope, Vec<u8>), String> {
        let mut env = Envelope { from: String::new(), recipients: vec![], extract: false };
        let mut at = 0;
        loop {
            let rest = &payload[at..];
            let end = rest.iter().position(|&b| b == b'\n').ok_or("no DATA line in the envelope")?;
            if at + end > MAX_ENVELOPE {
                return Err("envelope too long".into());
            }
            let line = std::str::from_utf8(&rest[..end]).map_err(|_| "envelope is not UTF-8")?.trim_end_matches('\r');
            at += end + 1;
            if line == "DATA" {
                break;
            } else if let Some(a) = line.strip_prefix("MAIL FROM:") {
                env.from = angle(a).to_owned();
            } else if let Some(a) = line.strip_prefix("RCPT TO:") {
                env.recipients.push(angle(a).to_owned());
            } else if line == "EXTRACT" {
                env.extract = true;
            } else {
                return Err(format!("unknown envelope line {line:?}"));
            }
        }
        if env.from.is_empty() {
            return Err("no MAIL FROM in the envelope".into());
        }
        Ok((env, payload[at..].to_vec()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("MAIL FROM:<{}>\r\n", self.from);
        for r in &self.recipients {
            out.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        if self.extract {
            out.push_str("EXTRACT\r\n");
        }
        out.push_str("DATA\r\n");
        out.into_bytes()
    }
}

/// A message: header lines up to the first empty line, then the body.
pub struct Message {
    raw: Vec<u8>,
    /// Where the header section ends (the empty line excluded).
    header_end: usize,
}

impl Message {
    pub fn new(raw: Vec<u8>) -> Message {
        let header_end = raw
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|p| p + 1)
            .into_iter()
            .chain(raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2))
            .min()
            .unwrap_or(raw.len());
        Message { raw, header_end }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Header fields as (name, unfolded value, byte range incl. continuation lines).
    fn fields(&self) -> Vec<(String, String, std::ops::Range<usize>)> {
        let head = &self.raw[..self.header_end];
        let mut out: Vec<(String, String, std::ops::Range<usize>)> = vec![];
        let mut at = 0;
        while at < head.len() {
            let end = head[at..].iter().position(|&b| b == b'\n').map(|p| at + p + 1).unwrap_or(head.len());
            let line = String::from_utf8_lossy(&head[at..end]);
            let text = line.trim_end_matches(['\r', '\n']);
            if text.starts_with([' ', '\t']) {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(text.trim());
                    last.2.end = end;
                }
            } else if let Some((name, value)) = text.split_once(':') {
                out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned(), at..end));
            }
            at = end;
        }
        out
    }

    /// The first value of a header field.
    pub fn header(&self, name: &str) -> Option<String> {
        self.fields().into_iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v)
    }

    /// The addresses in the named fields (`Name <a@b>, c@d`).
    pub fn header_addresses(&self, names: &[&str]) -> Vec<String> {
        let mut out = vec![];
        for (_, value, _) in self.fields().into_iter().filter(|(n, _, _)| names.contains(&n.as_str())) {
            let (mut quoted, mut depth, mut start) = (false, 0i32, 0);
            let mut parts = vec![];
            for (i, c) in value.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    '<' if !quoted => depth += 1,
                    '>' if !quoted => depth -= 1,
                    ',' if !quoted && depth == 0 => {
                        parts.push(&value[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&value[start..]);
            for p in parts {
                let addr = match (p.rfind('<'), p.rfind('>')) {
                    (Some(a), Some(b)) if a < b => &p[a + 1..b],
                    _ => p,
                };
                let addr = addr.trim();
                if addr.contains('@') && !addr.contains(char::is_whitespace) {
                    out.push(addr.to_owned());
                }
            }
        }
        out
    }

    /// The message without the named field (Bcc after -t).
    pub fn without_header(self, name: &str) -> Message {
        let cut: Vec<std::ops::Range<usize>> =
            self.fields().into_iter().filter(|(n, _, _)| n == name).map(|(_, _, r)| r).collect();
        if cut.is_empty() {
            return self;
        }
        let mut raw = Vec::with_capacity(self.raw.len());
        let mut at = 0;
        for r in cut {
            raw.extend_from_slice(&self.raw[at..r.start]);
            at = r.end;
        }
        raw.extend_from_slice(&self.raw[at..]);
        Message::new(raw)
    }

    /// The header section, at most `max` bytes of it (for bounces).
    pub fn header_block(&self, max: usize) -> String {
        let end = self.header_end.min(max);
        String::from_utf8_lossy(&self.raw[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let e = Envelope { from: "a@x".into(), recipients: vec!["b@y".into()], extract: true };
        let mut p = e.to_bytes();
        p.extend_from_slice(b"Subject: s\n\nbody\n");
        let (back, msg) = Envelope::parse(&p).unwrap();
        assert_eq!(back, e);
        assert_eq!(msg, b"Subject: s\n\nbody\n");
        assert!(Envelope::parse(b"MAIL FROM:<a@x>\nHELO\nDATA\n").is_err());
        assert!(Envelope::parse(b"RCPT TO:<a@x>\nDATA\n").is_err());
        assert!(Envelope::parse(b"MAIL FROM:<a@x>\n").is_err());
    }

    #[test]
    fn headers() {
        let m = Message::new(
            b"From: A <a@x>\nTo: \"B, Jr\" <b@y>, c@z\nBcc: d@w,\n e@v\nSubject: hi\n\nTo: not@header\n".to_vec(),
        );
        assert_eq!(m.header_addresses(&["to", "cc", "bcc"]), ["b@y", "c@z", "d@w", "e@v"]);
        assert_eq!(m.header("subject").as_deref(), Some("hi"));
        let m = m.without_header("bcc");
        assert_eq!(m.bytes(), b"From: A <a@x>\nTo: \"B, Jr\" <b@y>, c@z\nSubject: hi\n\nTo: not@header\n");
    }
}
