//! The email app: mail between Ferry nodes, delivered into Maildirs.
//!
//! Endpoints (in the node config): `mail` (mail bundles from other nodes and
//! the status reports about the ones sent from here) and `mail-submit`
//! (submissions from `ferry mail` on this node).
//!
//! Config (`[app.config]`, every key optional):
//!
//! ```toml
//! maildir = "/mail/{user}"     # a recipient's Maildir, as the app sees it ({user}: local part)
//! autocreate = false           # create a missing Maildir instead of bouncing "unknown user"
//! outbox = "/outbox"           # folder scanned every tick for messages to send
//! state = "/state"             # where sent mail is remembered until its bundle's lifetime ends
//! lifetime = "7d"              # lifetime of mail bundles (s, m, h, d)
//! local_domains = ["camp.example"]          # domains delivered here besides the node's name
//! [app.config.domains]                      # other domains -> the mail endpoint that takes them
//! "town.example" = "dtn://town/mail"
//! ```
//!
//! Addressing: `user@node` goes to `dtn://node/mail`; a domain in `domains`
//! goes where the table says. Every mail bundle asks for deletion and
//! delivery status reports to this node's `mail`: if the network deletes it
//! before any copy was delivered
//! (lifetime, no route, a receiving app that keeps failing), the sender gets a
//! bounce in their Maildir. Unknown local users are bounced the same way.
//!
//! Delivery is idempotent: the Maildir file name is derived from the bundle ID
//! and the recipient, so a bundle offered twice (after a trap) lands once.
//!
//! Payload format (submissions, mail bundles and outbox files): envelope lines
//! `MAIL FROM:<s>`, `RCPT TO:<r>`..., optionally `EXTRACT` (take the
//! recipients from To/Cc/Bcc), then `DATA` and the message verbatim. An outbox
//! file that does not start with `MAIL FROM:` is a bare message (EXTRACT).
//! Write outbox files under a name starting with '.', then rename them.

wit_bindgen::generate!({ world: "app", path: "../wit" });

mod date;
mod message;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

use ferry::app::host::{self, LogLevel};
use ferry::app::types::{Outgoing, ReportFlags, StatusReport};
use ferry_app_util::parse_duration_ms;
use message::{Envelope, Message};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    maildir: String,
    autocreate: bool,
    outbox: Option<String>,
    state: String,
    lifetime: String,
    local_domains: Vec<String>,
    domains: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            maildir: "/mail/{user}".into(),
            autocreate: false,
            outbox: None,
            state: "/state".into(),
            lifetime: "7d".into(),
            local_domains: vec![],
            domains: BTreeMap::new(),
        }
    }
}

/// What the app works with after `start`.
struct App {
    config: Config,
    lifetime_ms: u64,
    /// This node's name (`camp` of `dtn://camp/`).
    node: String,
    /// `dtn://camp/mail`.
    mail_eid: String,
}

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
}

fn with_app<R>(f: impl FnOnce(&App) -> Result<R, String>) -> Result<R, String> {
    APP.with(|a| match a.borrow().as_ref() {
        Some(app) => f(app),
        None => Err("the app was not started".into()),
    })
}

fn log(level: LogLevel, m: &str) {
    host::log(level, m);
}

/// 64-bit FNV-1a: stable file names from bundle IDs.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(b"\0") {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The node name of a `dtn://name/...` EID.
fn node_name(eid: &str) -> Option<&str> {
    let rest = eid.strip_prefix("dtn://")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// A local part that is safe as a folder name.
fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && !u.starts_with('.')
        && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The bundle (or outbox file) a mail came in: its ID and creation time name
/// the Maildir file, so that a second delivery of it is recognised.
#[derive(Debug, Clone, Copy)]
struct Origin<'a> {
    id: &'a str,
    created_ms: u64,
}

/// What a sent mail bundle is remembered by, for bounces.
#[derive(Debug, Serialize, Deserialize)]
struct Sent {
    bundle: String,
    from: String,
    recipients: Vec<String>,
    subject: String,
    expires_at: u64,
    headers: String,
}

impl App {
    fn is_local_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.node)
            || self.config.local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            || self.config.domains.get(&domain.to_ascii_lowercase()).is_some_and(|e| *e == self.mail_eid)
    }

    /// Where mail for `domain` goes.
    fn route(&self, domain: &str) -> String {
        let d = domain.to_ascii_lowercase();
        match self.config.domains.get(&d) {
            Some(eid) => eid.clone(),
            None => format!("dtn://{d}/mail"),
        }
    }

    /// Takes a submission: local recipients get it now, the others one
    /// bundle per destination node.
    fn submit(&self, env: Envelope, msg: Vec<u8>, origin: Origin) -> Result<(), String> {
        let msg = Message::new(msg);
        let (recipients, msg) = if env.extract {
            let mut r = env.recipients.clone();
            r.extend(msg.header_addresses(&["to", "cc", "bcc"]));
            (r, msg.without_header("bcc"))
        } else {
            (env.recipients.clone(), msg)
        };
        if recipients.is_empty() {
            return Err("the message names no recipients".into());
        }
        let mut by_dest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in recipients {
            let Some((_, domain)) = r.rsplit_once('@') else {
                log(LogLevel::Warn, &format!("dropping recipient `{r}`: not user@node"));
                continue;
            };
            if self.is_local_domain(domain) {
                by_dest.entry(String::new()).or_default().push(r);
            } else {
                let dest = self.route(domain);
                let list = by_dest.entry(dest).or_default();
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        for (dest, rcpts) in by_dest {
            if dest.is_empty() {
                let env = Envelope { from: env.from.clone(), recipients: rcpts, extract: false };
                self.deliver(&env, msg.bytes(), origin, &self.mail_eid)?;
                continue;
            }
            let e = Envelope { from: env.from.clone(), recipients: rcpts.clone(), extract: false };
            let mut payload = e.to_bytes();
            payload.extend_from_slice(msg.bytes());
            let bounceable = !env.from.to_ascii_lowercase().starts_with("mailer-daemon@");
            let id = host::send(&Outgoing {
                destination: dest.clone(),
                payload,
                lifetime_ms: self.lifetime_ms,
                source_service: Some("mail".into()),
                report_to: Some(self.mail_eid.clone()),
                // Deletion reports make bounces; delivery reports let the
                // app forget a mail that arrived (with epidemic routing, a
                // copy left elsewhere may still expire and report later).
                report: if bounceable { ReportFlags::DELETION | ReportFlags::DELIVERY } else { ReportFlags::empty() },
            })
            .map_err(|e| format!("sending to {dest}: {e:?}"))?;
            log(LogLevel::Info, &format!("mail from {} to {} sent as {id}", env.from, rcpts.join(", ")));
            if bounceable {
                let sent = Sent {
                    bundle: id.clone(),
                    from: env.from.clone(),
                    recipients: rcpts,
                    subject: msg.header("subject").unwrap_or_default(),
                    expires_at: host::now().saturating_add(self.lifetime_ms),
                    headers: msg.header_block(4096),
                };
                self.remember(&sent)?;
            }
        }
        Ok(())
    }

    fn sent_path(&self, bundle: &str) -> String {
        format!("{}/sent/{:016x}.json", self.config.state, fnv(&[bundle.as_bytes()]))
    }

    fn remember(&self, sent: &Sent) -> Result<(), String> {
        let dir = format!("{}/sent", self.config.state);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
        let json = serde_json::to_vec(sent).map_err(|e| e.to_string())?;
        let path = self.sent_path(&sent.bundle);
        std::fs::write(&path, json).map_err(|e| format!("{path}: {e}"))
    }

    /// Delivers a mail to the local recipients of its envelope; bounces the
    /// unknown ones. `via` is the endpoint it came from (for Received).
    fn deliver(&self, env: &Envelope, msg: &[u8], origin: Origin, from_eid: &str) -> Result<(), String> {
        let bundle_id = origin.id;
        let mut unknown = vec![];
        for rcpt in &env.recipients {
            let Some((user, domain)) = rcpt.rsplit_once('@') else { continue };
            if !self.is_local_domain(domain) {
                log(LogLevel::Warn, &format!("{bundle_id}: recipient {rcpt} is not for this node; not relayed"));
                unknown.push(rcpt.clone());
                continue;
            }
            let user = user.to_ascii_lowercase();
            if !valid_user(&user) {
                unknown.push(rcpt.clone());
                continue;
            }
            let maildir = self.config.maildir.replace("{user}", &user);
            if std::fs::metadata(&maildir).is_err() && !self.config.autocreate {
                unknown.push(rcpt.clone());
                continue;
            }
            for sub in ["tmp", "new", "cur"] {
                std::fs::create_dir_all(format!("{maildir}/{sub}")).map_err(|e| format!("{maildir}/{sub}: {e}"))?;
            }
            let unix_secs = host::now() / 1000 + date::DTN_EPOCH_UNIX_SECS;
            // Unique and the same every time this bundle is offered: the
            // creation time, a hash of bundle ID and recipient, the node.
            let created = origin.created_ms / 1000 + date::DTN_EPOCH_UNIX_SECS;
            let name = format!("{created}.F{:016x}.{}", fnv(&[bundle_id.as_bytes(), rcpt.as_bytes()]), self.node);
            let new_path = format!("{maildir}/new/{name}");
            // A mail reader moves it to cur/ as `<name>:2,<flags>`.
            let seen = format!("{name}:");
            let delivered_before = std::fs::metadata(&new_path).is_ok()
                || std::fs::read_dir(format!("{maildir}/cur"))
                    .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&seen)))
                    .unwrap_or(false);
            if delivered_before {
                continue;
            }
            let nl = if msg.windows(2).position(|w| w == b"\r\n").is_some_and(|p| !msg[..p].contains(&b'\n')) {
                "\r\n"
            } else {
                "\n"
            };
            let peer = node_name(from_eid).unwrap_or("unknown");
            let mut head = String::new();
            head.push_str(&format!("Return-Path: <{}>{nl}", env.from));
            head.push_str(&format!("Delivered-To: {user}@{}{nl}", self.node));
            head.push_str(&format!(
                "Received: from {peer} ({from_eid}){nl}\tby {} ({}) with Ferry BPv7{nl}\tid {bundle_id}{nl}\tfor <{rcpt}>; {}{nl}",
                self.node,
                self.mail_eid,
                date::rfc5322(unix_secs)
            ));
            let tmp_path = format!("{maildir}/tmp/{name}");
            let mut f = std::fs::File::create(&tmp_path).map_err(|e| format!("{tmp_path}: {e}"))?;
            f.write_all(head.as_bytes())
                .and_then(|_| f.write_all(msg))
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("{tmp_path}: {e}"))?;
            drop(f);
            std::fs::rename(&tmp_path, &new_path).map_err(|e| format!("{new_path}: {e}"))?;
            log(LogLevel::Info, &format!("delivered {bundle_id} from {} to {user}", env.from));
        }
        if !unknown.is_empty() {
            let text = format!("No mailbox here for: {}.", unknown.join(", "));
            self.bounce(&env.from, &unknown, &text, &Message::new(msg.to_vec()).header_block(4096), origin)?;
        }
        Ok(())
    }

    /// Sends `sender` a bounce (never for a bounce: no loops).
    fn bounce(
        &self,
        sender: &str,
        recipients: &[String],
        why: &str,
        headers: &str,
        cause: Origin,
    ) -> Result<(), String> {
        if sender.to_ascii_lowercase().starts_with("mailer-daemon@") || !sender.contains('@') {
            log(LogLevel::Warn, &format!("not bouncing to {sender}: {why}"));
            return Ok(());
        }
        let now = host::now();
        let unix = now / 1000 + date::DTN_EPOCH_UNIX_SECS;
        let daemon = format!("MAILER-DAEMON@{}", self.node);
        let body = format!(
            "From: Mail Delivery System <{daemon}>\nTo: <{sender}>\nSubject: Undelivered Mail Returned to Sender\n\
             Date: {}\nMessage-ID: <bounce.{now}.{:x}@{}>\nAuto-Submitted: auto-replied\n\
             Content-Type: text/plain; charset=utf-8\n\n\
             This is the Ferry mail system at {}.\n\n\
             Your message could not be delivered to: {}\n{why}\n\n\
             --- The headers of your message ---\n{headers}\n",
            date::rfc5322(unix),
            fnv(&[why.as_bytes(), sender.as_bytes()]),
            self.node,
            self.node,
            recipients.join(", ")
        );
        let env = Envelope { from: daemon, recipients: vec![sender.to_owned()], extract: false };
        let id = format!("bounce-{}", cause.id);
        self.submit(env, body.into_bytes(), Origin { id: &id, created_ms: cause.created_ms })
    }

    /// A status report about a bundle this app sent.
    fn on_report(&self, r: &StatusReport, reporter: &str, origin: Origin) -> Result<(), String> {
        let path = self.sent_path(&r.subject);
        if !r.deleted {
            if r.delivered {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(());
        }
        let Ok(raw) = std::fs::read(&path) else {
            log(
                LogLevel::Info,
                &format!("deletion report for {} (not a mail sent here, or bounced already)", r.subject),
            );
            return Ok(());
        };
        let sent: Sent = serde_json::from_slice(&raw).map_err(|e| format!("{path}: {e}"))?;
        let reason = match r.reason {
            1 => "its lifetime expired before it could be delivered",
            3 => "the transmission was cancelled",
            4 => "a node on the way ran out of storage",
            5 => "the destination is not a valid endpoint",
            6 => "no route to the destination is known",
            7 => "no contact with the destination came in time",
            9 => "it exceeded its hop limit",
            _ => "it was deleted on the way (the receiving node could not process it)",
        };
        let why = format!("The bundle carrying it ({}) was deleted by {reporter}: {reason}.", sent.bundle);
        self.bounce(&sent.from, &sent.recipients, &why, &sent.headers, origin)?;
        let _ = std::fs::remove_file(&path);
        log(LogLevel::Info, &format!("bounced mail from {} (subject {:?}): {why}", sent.from, sent.subject));
        Ok(())
    }

    /// Sends what was dropped in the outbox; forgets sent mail whose bundles
    /// can no longer be reported on.
    fn tick(&self, now: u64) -> Result<(), String> {
        if let Some(outbox) = &self.config.outbox {
            let entries = std::fs::read_dir(outbox).map_err(|e| format!("{outbox}: {e}"))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    continue;
                }
                let path = format!("{outbox}/{name}");
                let raw = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
                let (env, msg) = if raw.starts_with(b"MAIL FROM:") {
                    match Envelope::parse(&raw) {
                        Ok(x) => x,
                        Err(e) => {
                            log(LogLevel::Error, &format!("outbox {name}: {e}; moved to {outbox}/.failed-{name}"));
                            let _ = std::fs::rename(&path, format!("{outbox}/.failed-{name}"));
                            continue;
                        }
                    }
                } else {
                    let from = Message::new(raw.clone())
                        .header_addresses(&["from"])
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| format!("postmaster@{}", self.node));
                    (Envelope { from, recipients: vec![], extract: true }, raw)
                };
                let id = format!("outbox-{now}-{:x}", fnv(&[name.as_bytes()]));
                match self.submit(env, msg, Origin { id: &id, created_ms: now }) {
                    Ok(()) => {
                        std::fs::remove_file(&path).map_err(|e| format!("{path}: {e}"))?;
                    }
                    Err(e) => {
                        log(LogLevel::Error, &format!("outbox {name}: {e}; moved to {outbox}/.failed-{name}"));
                        let _ = std::fs::rename(&path, format!("{outbox}/.failed-{name}"));
                    }
                }
            }
        }
        let dir = format!("{}/sent", self.config.state);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
                let expired = std::fs::read(&path)
                    .ok()
                    .and_then(|raw| serde_json::from_slice::<Sent>(&raw).ok())
                    // An hour's grace for the report to travel back.
                    .is_none_or(|s| s.expires_at.saturating_add(3_600_000) < now);
                if expired {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(())
    }
}

struct Email;

impl Guest for Email {
    fn start(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        let lifetime_ms = parse_duration_ms(&config.lifetime)?;
        if !config.maildir.contains("{user}") {
            return Err("config: maildir must contain {user}".into());
        }
        let node_id = host::node_id();
        let node = node_name(&node_id)
            .ok_or_else(|| format!("the email app needs a dtn:// node ID, not {node_id}"))?
            .to_owned();
        let mail_eid = format!("dtn://{node}/mail");
        std::fs::create_dir_all(format!("{}/sent", config.state)).map_err(|e| format!("{}: {e}", config.state))?;
        if let Some(o) = &config.outbox {
            std::fs::create_dir_all(o).map_err(|e| format!("{o}: {e}"))?;
        }
        APP.with(|a| *a.borrow_mut() = Some(App { config, lifetime_ms, node, mail_eid }));
        Ok(())
    }

    fn on_bundle(bundle: ferry::app::types::Incoming) -> Result<(), String> {
        with_app(|app| {
            let origin = Origin { id: &bundle.id, created_ms: bundle.creation_time };
            if let Some(report) = &bundle.report {
                return app.on_report(report, &bundle.source, origin);
            }
            if bundle.destination.ends_with("/mail-submit") {
                if node_name(&bundle.source) != Some(app.node.as_str()) {
                    log(LogLevel::Warn, &format!("ignoring a submission from another node ({})", bundle.source));
                    return Ok(());
                }
                let (env, msg) = Envelope::parse(&bundle.payload)?;
                return app.submit(env, msg, origin);
            }
            match Envelope::parse(&bundle.payload) {
                Ok((env, msg)) => app.deliver(&env, &msg, origin, &bundle.source),
                Err(e) => {
                    // Retrying cannot fix it: log and take it.
                    log(LogLevel::Error, &format!("{} from {} is not a mail bundle: {e}", bundle.id, bundle.source));
                    Ok(())
                }
            }
        })
    }

    fn on_tick(now: u64) -> Result<(), String> {
        with_app(|app| app.tick(now))
    }
}

export!(Email);
