//! `ferry mail`: a sendmail-compatible submission command for the email app.
//!
//! Reads an RFC 5322 message on standard input and hands it, with its
//! envelope, to the email app as a bundle to `dtn://<this node>/mail-submit`
//! (stored durably before this command exits 0). The app maps each recipient
//! `user@node` to `dtn://node/mail` and sends one bundle per destination node.
//!
//! ```text
//! ferry mail [-t] [-f SENDER] [-i] [-o OPTION]... [--] [RECIPIENT...]
//! ```
//!
//! Postfix (`master.cf`, with `transport_maps` pointing a domain at `ferry`):
//! ```text
//! ferry     unix  -       n       n       -       -       pipe
//!   flags=Rq user=ferry argv=/usr/bin/ferry mail -f ${sender} -- ${recipient}
//! ```
//! Exim (a transport and a router that uses it):
//! ```text
//! ferry_pipe:
//!   driver = pipe
//!   command = /usr/bin/ferry mail -f $sender_address -- $local_part@$domain
//!   return_fail_output
//! ```
//! mutt: `set sendmail="/usr/bin/ferry mail -oi"`.
//!
//! Exit codes follow sysexits(3), which both MTAs read: 0 queued; 64 bad
//! usage; 65 a message or address that cannot be sent (the MTA bounces it);
//! 75 ferryd unreachable or not storing (the MTA tries again later).
//!
//! The submission payload is a small envelope before the message, in the
//! style of batched SMTP: `MAIL FROM:<s>`, one `RCPT TO:<r>` per recipient,
//! `EXTRACT` when recipients are to be taken from the headers (`-t`), then
//! `DATA` and the message bytes verbatim (no dot-stuffing; the payload's end
//! is the message's end). A file in the app's outbox folder has the same
//! shape, or is a bare message whose recipients come from its headers.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::client::Api;
use super::fmt::query_encode;

/// sysexits(3) codes the MTAs understand.
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_TEMPFAIL: u8 = 75;

/// Largest message accepted (the API's own limit is larger).
pub const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, Args)]
pub struct MailArgs {
    /// Take the recipients from the message's To, Cc and Bcc headers (Bcc is removed).
    #[arg(short = 't')]
    pub extract: bool,
    /// Envelope sender (user or user@node); default $USER@NODE, NODE being this node.
    #[arg(short = 'f', short_alias = 'r', value_name = "SENDER")]
    pub from: Option<String>,
    /// Sender's full name (accepted for sendmail compatibility, not used).
    #[arg(short = 'F', value_name = "NAME")]
    pub full_name: Option<String>,
    /// A line with a single '.' does not end the message (always so here).
    #[arg(short = 'i')]
    pub ignore_dots: bool,
    /// sendmail options such as -oi, -oem, -odb (accepted, ignored).
    #[arg(short = 'o', value_name = "OPTION")]
    pub options: Vec<String>,
    /// The email app's submission endpoint on this node.
    #[arg(long, default_value = "mail-submit", value_name = "SERVICE")]
    pub endpoint: String,
    /// Recipients, user@node (or user@domain that the app's config maps).
    #[arg(value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
}

/// An address the envelope can carry: `local@domain`, printable ASCII, no
/// brackets or spaces.
pub fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && a.len() <= 320
        && a.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b',' | b'"' | b'\\'))
}

/// The submission payload: envelope lines, `DATA`, the message.
pub fn envelope(from: &str, recipients: &[String], extract: bool, message: &[u8]) -> Vec<u8> {
    let mut out = format!("MAIL FROM:<{from}>\r\n").into_bytes();
    for r in recipients {
        out.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
    }
    if extract {
        out.extend_from_slice(b"EXTRACT\r\n");
    }
    out.extend_from_slice(b"DATA\r\n");
    out.extend_from_slice(message);
    out
}

fn fail(code: u8, message: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("ferry mail: {message}");
    Ok(ExitCode::from(code))
}

pub fn run(api: &Api, args: &MailArgs) -> Result<ExitCode> {
    if !args.extract && args.recipients.is_empty() {
        return fail(EX_USAGE, "no recipients (give them as arguments, or -t to take them from the headers)");
    }
    if let Some(bad) = args.recipients.iter().find(|r| !valid_address(r)) {
        return fail(EX_DATAERR, format!("`{bad}` is not an address like user@node"));
    }
    let mut message = vec![];
    std::io::stdin()
        .lock()
        .take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut message)
        .context("cannot read the message from standard input")?;
    if message.len() > MAX_MESSAGE {
        return fail(EX_DATAERR, format!("the message is larger than {MAX_MESSAGE} bytes"));
    }
    let node_id = match api.get("/status/nodeid") {
        Ok(a) => a.text().trim().to_owned(),
        Err(e) => return fail(EX_TEMPFAIL, format!("{e:#}")),
    };
    let node_name = node_id.trim_start_matches("dtn://").trim_end_matches('/').to_owned();
    let from = match &args.from {
        Some(f) if f.is_empty() || f == "<>" => "MAILER-DAEMON@".to_owned() + &node_name,
        Some(f) if f.contains('@') => f.trim_matches(|c| c == '<' || c == '>').to_owned(),
        Some(f) => format!("{f}@{node_name}"),
        None => format!("{}@{node_name}", std::env::var("USER").unwrap_or_else(|_| "root".into())),
    };
    if !valid_address(&from) {
        return fail(EX_DATAERR, format!("sender `{from}` is not an address like user@node"));
    }
    let payload = envelope(&from, &args.recipients, args.extract, &message);
    let dst =
        format!("{}{}", if node_id.ends_with('/') { node_id.clone() } else { format!("{node_id}/") }, args.endpoint);
    match super::apps::is_registered(api, &dst) {
        Ok(true) => {}
        Ok(false) => {
            return fail(
                EX_TEMPFAIL,
                format!("nothing takes {dst}: is the email app configured ([[app]] with endpoint {})?", args.endpoint),
            )
        }
        Err(e) => return fail(EX_TEMPFAIL, format!("{e:#}")),
    }
    match api.post(&format!("/send?dst={}", query_encode(&dst)), payload) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => fail(EX_TEMPFAIL, format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(valid_address("alice@camp"));
        assert!(valid_address("a.b+c@town.example"));
        for bad in ["alice", "@camp", "alice@", "a b@camp", "<a@b>", "a,b@c"] {
            assert!(!valid_address(bad), "{bad}");
        }
    }

    #[test]
    fn envelope_shape() {
        let e = envelope("a@x", &["b@y".into(), "c@z".into()], true, b"Subject: hi\r\n\r\nbody");
        assert_eq!(
            e,
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@z>\r\nEXTRACT\r\nDATA\r\nSubject: hi\r\n\r\nbody"
        );
    }
}
