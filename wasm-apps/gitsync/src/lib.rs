//! The gitsync app: git repositories kept in sync between Ferry nodes over
//! bundles, applied strictly in order.
//!
//! Endpoints (node config): `gitsync` (messages from peers) and
//! `gitsync-push` (commands from `ferry git push` on this node).
//!
//! Each repository is a `git` capability granted in the node config, named
//! as `ferry git push` names it; the app runs git only through it:
//!
//! ```toml
//! [app.capabilities.project]
//! program = "git"
//! dir = "/home/me/project"
//! [app.config]
//! state = "/state"          # a preopened folder for the app's state (default /state)
//! lifetime = "7d"           # lifetime of the bundles it sends
//! resend_after = "30s"      # how long a gap waits before the missing push is asked for again
//! ```
//!
//! Protocol (payloads start with `gitsync 1`, then `key value` lines, an
//! empty line, and for a push the git bundle):
//! - `push`, `repo R`, `seq N`: the N-th git bundle this node sent that peer
//!   for R (N = 1, 2, ...). It holds the commits of the changed refs that
//!   were not in pushes 1..N-1, so push N applies on top of them.
//! - `ack`, `repo R`, `applied N`: the receiver applied every push up to N;
//!   the sender forgets them.
//! - `resend`, `repo R`, `from N`: the receiver has a gap at N; the sender
//!   sends its kept pushes N.. again.
//!
//! The sender remembers per peer and repository the next sequence number,
//! the refs it sent, the pushes not yet acknowledged (kept for resending)
//! and the last acknowledged one. The receiver remembers per peer the last
//! push applied and keeps later ones until the gap closes; duplicates and
//! old pushes are acknowledged and dropped. Applying is `git bundle
//! unbundle` (which checks the prerequisites are present) and one
//! `git update-ref --stdin` transaction that moves refs/heads/X to
//! refs/remotes/<peer>/X and refs/tags/T to refs/remotes/<peer>/tags/T.

wit_bindgen::generate!({ world: "app", path: "../wit" });

mod proto;
mod state;

use std::cell::RefCell;

use ferry::app::host::{self, LogLevel};
use ferry::app::types::{InvokeError, Outgoing, ReportFlags};
use ferry_app_util::parse_duration_ms;
use proto::{Kind, Msg};
use serde::Deserialize;
use state::{In, Out, Store};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    state: String,
    lifetime: String,
    resend_after: String,
}

impl Default for Config {
    fn default() -> Config {
        Config { state: "/state".into(), lifetime: "7d".into(), resend_after: "30s".into() }
    }
}

struct App {
    store: Store,
    lifetime_ms: u64,
    resend_after_ms: u64,
    node: String,
}

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
}

fn log(level: LogLevel, m: &str) {
    host::log(level, m);
}

/// The node part of an EID, as a safe folder and ref component:
/// `dtn://town/gitsync` -> `town`, `ipn:7.3` -> `ipn-7`.
fn peer_name(eid: &str) -> Option<String> {
    let name = if let Some(rest) = eid.strip_prefix("dtn://") {
        rest.split('/').next()?.to_owned()
    } else {
        format!("ipn-{}", eid.strip_prefix("ipn:")?.split('.').next()?)
    };
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(name)
}

/// Runs git through the repository's capability; its stdout on success.
fn git(repo: &str, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match host::invoke(repo, &args, stdin) {
        Ok(out) if out.status == 0 => Ok(out.stdout),
        Ok(out) => Err(format!(
            "git {} in `{repo}` exited with {}: {}",
            args.first().map(String::as_str).unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(InvokeError::NotGranted(m)) | Err(InvokeError::Refused(m)) | Err(InvokeError::Failed(m)) => Err(m),
    }
}

/// `sha refname` lines (for-each-ref, bundle unbundle output).
fn ref_lines(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            let (sha, name) = l.trim().split_once(' ')?;
            (sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) && name.starts_with("refs/"))
                .then(|| (sha.to_owned(), name.trim().to_owned()))
        })
        .collect()
}

/// Where a peer's ref lands here.
fn remote_ref(peer: &str, name: &str) -> Option<String> {
    let rest = name.strip_prefix("refs/")?;
    let mapped = match rest.strip_prefix("heads/") {
        Some(branch) => branch.to_owned(),
        None => rest.to_owned(),
    };
    let ok = !mapped.is_empty()
        && !mapped.contains("..")
        && !mapped.starts_with('/')
        && mapped.bytes().all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b));
    ok.then(|| format!("refs/remotes/{peer}/{mapped}"))
}

impl App {
    fn send(&self, to: &str, msg: &Msg, body: &[u8]) -> Result<String, String> {
        let mut payload = msg.header().into_bytes();
        payload.extend_from_slice(body);
        host::send(&Outgoing {
            destination: to.to_owned(),
            payload,
            lifetime_ms: self.lifetime_ms,
            source_service: Some("gitsync".into()),
            report_to: None,
            report: ReportFlags::empty(),
        })
        .map_err(|e| format!("sending to {to}: {e:?}"))
    }

    /// `ferry git push`: a git bundle of what `to` lacks, as the next push.
    fn push(&self, repo: &str, to: &str, refs: &[String]) -> Result<(), String> {
        let peer = peer_name(to).ok_or_else(|| format!("`{to}` is not a peer endpoint"))?;
        let patterns: Vec<String> = if refs.is_empty() {
            vec!["refs/heads/".into()]
        } else {
            refs.iter().map(|r| if r.starts_with("refs/") { r.clone() } else { format!("refs/heads/{r}") }).collect()
        };
        let mut args = vec!["for-each-ref", "--format=%(objectname) %(refname)", "--"];
        args.extend(patterns.iter().map(String::as_str));
        let current = ref_lines(&git(repo, &args, b"")?);
        if current.is_empty() {
            return Err(format!("no refs match {} in `{repo}`", patterns.join(" ")));
        }
        let mut out = self.store.out(repo, &peer)?;
        let changed: Vec<&(String, String)> =
            current.iter().filter(|(sha, name)| out.sent_refs.get(name) != Some(sha)).collect();
        if changed.is_empty() {
            log(LogLevel::Info, &format!("{repo}: {peer} is up to date"));
            return Ok(());
        }
        let mut args: Vec<String> = vec!["bundle".into(), "create".into(), "-".into()];
        args.extend(changed.iter().map(|(_, name)| name.clone()));
        let mut basis: Vec<&String> = out.sent_refs.values().collect();
        basis.sort();
        basis.dedup();
        args.extend(basis.iter().map(|sha| format!("^{sha}")));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let bundle = match git(repo, &argv, b"") {
            Ok(b) => b,
            // Every changed ref points at commits sent already (a new branch
            // or a light tag on a sent commit): git makes no empty bundle, so
            // send the tips themselves, on top of their parents.
            Err(e) if e.contains("empty bundle") => {
                let mut args: Vec<String> = vec!["bundle".into(), "create".into(), "-".into()];
                args.extend(changed.iter().map(|(_, name)| name.clone()));
                args.extend(changed.iter().map(|(sha, _)| format!("^{sha}^@")));
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                git(repo, &argv, b"")?
            }
            Err(e) => return Err(e),
        };
        let seq = out.next_seq;
        let msg = Msg { kind: Kind::Push, repo: repo.to_owned(), n: seq };
        self.store.keep_push(repo, &peer, seq, &bundle)?;
        let id = self.send(to, &msg, &bundle)?;
        out.next_seq += 1;
        out.peer_eid = to.to_owned();
        for (sha, name) in &changed {
            out.sent_refs.insert(name.clone(), sha.clone());
        }
        self.store.save_out(repo, &peer, &out)?;
        log(
            LogLevel::Info,
            &format!("{repo}: push {seq} ({} refs, {} bytes) to {to} as {id}", changed.len(), bundle.len()),
        );
        Ok(())
    }

    /// A push from a peer: apply it if it is next, keep it if it is early,
    /// drop it if it is old; acknowledge what is applied.
    fn on_push(&self, from: &str, peer: &str, msg: &Msg, bundle: &[u8]) -> Result<(), String> {
        let repo = &msg.repo;
        let mut st = self.store.inb(repo, peer)?;
        st.peer_eid = from.to_owned();
        if msg.n == 0 {
            return Err("push number 0".into());
        }
        if msg.n > st.applied + 1 {
            self.store.keep_early(repo, peer, msg.n, bundle)?;
            log(LogLevel::Info, &format!("{repo}: push {} from {peer} is early (applied {}); kept", msg.n, st.applied));
            self.request_resend(repo, peer, &mut st)?;
            return self.store.save_in(repo, peer, &st);
        }
        if msg.n <= st.applied {
            log(LogLevel::Info, &format!("{repo}: push {} from {peer} was applied already", msg.n));
        } else {
            self.apply(repo, peer, msg.n, bundle)?;
            st.applied = msg.n;
            self.store.save_in(repo, peer, &st)?;
            // Later pushes that came early now fit.
            while let Some(next) = self.store.early(repo, peer, st.applied + 1)? {
                self.apply(repo, peer, st.applied + 1, &next)?;
                st.applied += 1;
                self.store.save_in(repo, peer, &st)?;
                self.store.drop_early(repo, peer, st.applied)?;
            }
        }
        if self.store.has_early_after(repo, peer, st.applied)? {
            self.request_resend(repo, peer, &mut st)?;
        } else {
            st.requested_at = 0;
        }
        self.store.save_in(repo, peer, &st)?;
        let ack = Msg { kind: Kind::Ack, repo: repo.clone(), n: st.applied };
        self.send(from, &ack, b"")?;
        Ok(())
    }

    fn apply(&self, repo: &str, peer: &str, n: u64, bundle: &[u8]) -> Result<(), String> {
        let heads = ref_lines(&git(repo, &["bundle", "unbundle", "-"], bundle)?);
        let mut updates = String::new();
        for (sha, name) in &heads {
            match remote_ref(peer, name) {
                Some(r) => updates.push_str(&format!("update {r} {sha}\n")),
                None => log(LogLevel::Warn, &format!("{repo}: push {n} from {peer}: skipping ref {name}")),
            }
        }
        git(repo, &["update-ref", "--stdin"], updates.as_bytes())?;
        log(LogLevel::Info, &format!("{repo}: applied push {n} from {peer} ({} refs)", heads.len()));
        Ok(())
    }

    fn request_resend(&self, repo: &str, peer: &str, st: &mut In) -> Result<(), String> {
        let now = host::now();
        if st.requested_at != 0 && now.saturating_sub(st.requested_at) < self.resend_after_ms {
            return Ok(());
        }
        let req = Msg { kind: Kind::Resend, repo: repo.to_owned(), n: st.applied + 1 };
        self.send(&st.peer_eid, &req, b"")?;
        st.requested_at = now;
        log(LogLevel::Info, &format!("{repo}: asked {peer} for push {} again", st.applied + 1));
        Ok(())
    }

    fn on_ack(&self, peer: &str, msg: &Msg) -> Result<(), String> {
        let mut out: Out = self.store.out(&msg.repo, peer)?;
        if msg.n > out.acked && msg.n < out.next_seq {
            out.acked = msg.n;
            self.store.save_out(&msg.repo, peer, &out)?;
        }
        self.store.forget_pushes(&msg.repo, peer, out.acked)
    }

    fn on_resend(&self, from: &str, peer: &str, msg: &Msg) -> Result<(), String> {
        let out: Out = self.store.out(&msg.repo, peer)?;
        for n in msg.n.max(out.acked + 1)..out.next_seq {
            match self.store.kept_push(&msg.repo, peer, n)? {
                Some(bundle) => {
                    let push = Msg { kind: Kind::Push, repo: msg.repo.clone(), n };
                    self.send(from, &push, &bundle)?;
                    log(LogLevel::Info, &format!("{}: sent push {n} to {peer} again", msg.repo));
                }
                None => log(LogLevel::Warn, &format!("{}: push {n} for {peer} is not kept", msg.repo)),
            }
        }
        Ok(())
    }

    /// Gaps that have waited long enough are asked about again.
    fn tick(&self) -> Result<(), String> {
        for (repo, peer) in self.store.inbound()? {
            let mut st = self.store.inb(&repo, &peer)?;
            if self.store.has_early_after(&repo, &peer, st.applied)? {
                self.request_resend(&repo, &peer, &mut st)?;
                self.store.save_in(&repo, &peer, &st)?;
            }
        }
        Ok(())
    }
}

struct Gitsync;

impl Guest for Gitsync {
    fn start(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        let node = peer_name(&host::node_id()).ok_or("this node's ID cannot name a peer")?;
        let app = App {
            store: Store::open(&config.state)?,
            lifetime_ms: parse_duration_ms(&config.lifetime)?,
            resend_after_ms: parse_duration_ms(&config.resend_after)?,
            node,
        };
        APP.with(|a| *a.borrow_mut() = Some(app));
        Ok(())
    }

    fn on_bundle(bundle: ferry::app::types::Incoming) -> Result<(), String> {
        APP.with(|a| {
            let a = a.borrow();
            let app = a.as_ref().ok_or("the app was not started")?;
            let Some(peer) = peer_name(&bundle.source) else {
                log(LogLevel::Warn, &format!("{}: source {} names no peer; dropped", bundle.id, bundle.source));
                return Ok(());
            };
            if bundle.destination.ends_with("/gitsync-push") {
                if peer != app.node {
                    log(LogLevel::Warn, &format!("ignoring a push command from another node ({})", bundle.source));
                    return Ok(());
                }
                let cmd = match proto::Command::parse(&bundle.payload) {
                    Ok(c) => c,
                    Err(e) => {
                        log(LogLevel::Error, &format!("bad push command {}: {e}", bundle.id));
                        return Ok(());
                    }
                };
                return app.push(&cmd.repo, &cmd.to, &cmd.refs);
            }
            let (msg, body) = match Msg::parse(&bundle.payload) {
                Ok(m) => m,
                Err(e) => {
                    log(
                        LogLevel::Error,
                        &format!("{} from {} is not a gitsync message: {e}", bundle.id, bundle.source),
                    );
                    return Ok(());
                }
            };
            match msg.kind {
                Kind::Push => app.on_push(&bundle.source, &peer, &msg, body),
                Kind::Ack => app.on_ack(&peer, &msg),
                Kind::Resend => app.on_resend(&bundle.source, &peer, &msg),
            }
        })
    }

    fn on_tick(_now: u64) -> Result<(), String> {
        APP.with(|a| match a.borrow().as_ref() {
            Some(app) => app.tick(),
            None => Err("the app was not started".into()),
        })
    }
}

export!(Gitsync);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_refs() {
        assert_eq!(peer_name("dtn://town/gitsync").as_deref(), Some("town"));
        assert_eq!(peer_name("ipn:7.3").as_deref(), Some("ipn-7"));
        assert_eq!(peer_name("dtn://../x"), None);
        assert_eq!(remote_ref("a", "refs/heads/main").as_deref(), Some("refs/remotes/a/main"));
        assert_eq!(remote_ref("a", "refs/tags/v1").as_deref(), Some("refs/remotes/a/tags/v1"));
        assert_eq!(remote_ref("a", "refs/heads/../../x"), None);
        assert_eq!(remote_ref("a", "HEAD"), None);
        let lines = ref_lines(b"0123456789012345678901234567890123456789 refs/heads/main\nnoise\n");
        assert_eq!(lines, vec![("0123456789012345678901234567890123456789".into(), "refs/heads/main".into())]);
    }
}
