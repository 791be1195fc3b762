//! `ferry git push REPO --to EID [--ref REF]...`: asks the gitsync app to
//! send a peer the commits it does not have yet.
//!
//! REPO is the name of a `git` capability granted to the gitsync app in
//! ferryd's config (`[app.capabilities.REPO]`); EID is the peer's gitsync
//! endpoint (`dtn://town/gitsync`). The command is a bundle to
//! `dtn://<this node>/gitsync-push`, stored durably before this exits 0; the
//! app builds the git bundle. A post-commit hook that calls it is in
//! wasm-apps/gitsync/hooks/post-commit.
//!
//! The command payload: `push`, `repo <name>`, `to <eid>` and one
//! `ref <refname>` per `--ref`, one per line.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_core::Eid;

use super::client::Api;
use super::fmt::query_encode;

#[derive(Debug, Subcommand)]
pub enum GitCommand {
    /// Send a peer a git bundle of the commits it lacks.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The repository's capability name in the gitsync app's config.
    pub repo: String,
    /// The peer's gitsync endpoint, e.g. dtn://town/gitsync.
    #[arg(long, value_name = "EID")]
    pub to: String,
    /// Refs to send (main, refs/heads/main, refs/tags/v1); default: every branch.
    #[arg(long = "ref", value_name = "REF")]
    pub refs: Vec<String>,
    /// The gitsync app's command endpoint on this node.
    #[arg(long, default_value = "gitsync-push", value_name = "SERVICE")]
    pub endpoint: String,
}

/// A repository name as the config may name a capability.
pub fn valid_repo(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A ref the app accepts: short branch names or full refs/heads|tags names,
/// without anything git's check-ref-format forbids that could matter here.
pub fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && !r.starts_with('-')
        && !r.contains("..")
        && !r.ends_with('/')
        && !r.ends_with(".lock")
        && r.bytes().all(|b| b.is_ascii_graphic() && !b" ~^:?*[\\".contains(&b))
}

/// The command payload for the app.
pub fn command(repo: &str, to: &str, refs: &[String]) -> String {
    let mut c = format!("push\nrepo {repo}\nto {to}\n");
    for r in refs {
        c.push_str(&format!("ref {r}\n"));
    }
    c
}

pub fn run(api: &Api, command_: &GitCommand, json: bool) -> Result<ExitCode> {
    let GitCommand::Push(args) = command_;
    if !valid_repo(&args.repo) {
        bail!("`{}` is not a repository name (letters, digits, . _ -)", args.repo);
    }
    let to: Eid = args.to.parse().with_context(|| format!("--to {}: not an endpoint ID", args.to))?;
    if let Some(bad) = args.refs.iter().find(|r| !valid_ref(r)) {
        bail!("--ref {bad}: not a ref name");
    }
    let node_id = api.get("/status/nodeid")?.text().trim().to_owned();
    let node: Eid = node_id.parse().with_context(|| format!("ferryd's node ID `{node_id}`"))?;
    let dst = node.with_service(&args.endpoint).with_context(|| format!("--endpoint {}", args.endpoint))?;
    if !super::apps::is_registered(api, &dst.to_string())? {
        bail!("nothing takes {dst}: is the gitsync app configured ([[app]] with endpoint {})?", args.endpoint);
    }
    let answer = api.post(
        &format!("/send?dst={}", query_encode(&dst.to_string())),
        command(&args.repo, &to.to_string(), &args.refs).into_bytes(),
    )?;
    if json {
        println!("{}", serde_json::json!({"repo": args.repo, "to": to.to_string(), "answer": answer.text()}));
    } else {
        println!("push of {} to {to} queued for the gitsync app", args.repo);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_refs() {
        assert!(valid_repo("project.git") && !valid_repo("a/b") && !valid_repo(""));
        assert!(valid_ref("main") && valid_ref("refs/tags/v1.0"));
        for bad in ["-c", "a..b", "x:y", "a b", "refs/heads/", "x.lock"] {
            assert!(!valid_ref(bad), "{bad}");
        }
        assert_eq!(command("p", "dtn://b/gitsync", &["main".into()]), "push\nrepo p\nto dtn://b/gitsync\nref main\n");
    }
}
