//! The gitsync app between two real ferryd processes: three pushes from a
//! whose bundles reach b out of order, twice, and one not at all (b asks
//! for it again over the TCP plugin) leave b's refs/remotes/a/* identical to
//! a's branches; a commit's post-commit hook sends the next one.

mod api_support;
mod apps_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use apps_support::{app_block, ferry_ok, free_port, node, target_dir, tcp_cla};

const WAIT: Duration = Duration::from_secs(90);

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@a", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(repo)
        .env("PATH", format!("{}:{}", target_dir().display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn commit(repo: &Path, file: &str, content: &str) {
    std::fs::write(repo.join(file), content).unwrap();
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", &format!("{file}: {content}")]);
}

/// `sha name` of the refs under `prefix`, with the prefix cut off.
fn refs(repo: &Path, prefix: &str) -> Vec<(String, String)> {
    git(repo, &["for-each-ref", "--format=%(objectname) %(refname)", prefix])
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(s, n)| (s.to_owned(), n.trim_start_matches(prefix).to_owned())))
        .collect()
}

fn gitsync_app(state: &Path, repo: &Path) -> String {
    app_block(
        "gitsync",
        "gitsync",
        &["gitsync", "gitsync-push"],
        &format!(
            "[app.dirs]\n\"/state\" = \"{}\"\n[app.config]\nresend_after = \"2s\"\n\
             [app.capabilities.project]\nprogram = \"git\"\ndir = \"{}\"\n",
            state.display(),
            repo.display()
        ),
    )
}

/// The bundles a holds for b's gitsync endpoint, oldest first.
fn pushes_for_b(a: &api_support::Ferryd) -> Vec<String> {
    let list = a.get("/ferry/bundles").json();
    let mut found: Vec<(u64, u64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["dst"] == "dtn://b/gitsync")
        .map(|b| {
            (b["creation_time"].as_u64().unwrap(), b["seq"].as_u64().unwrap(), b["bid"].as_str().unwrap().to_owned())
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, _, bid)| bid).collect()
}

#[test]
fn pushes_out_of_order_duplicated_and_lost_leave_identical_refs() {
    let dir = tempfile::tempdir().unwrap();
    let (repo_a, repo_b) = (dir.path().join("repo-a"), dir.path().join("repo-b"));
    for r in [&repo_a, &repo_b] {
        std::fs::create_dir_all(r).unwrap();
        git(r, &["init", "-q"]);
    }
    let (pa, pb) = (free_port(), free_port());
    // Not connected yet: the pushes wait in a's store.
    let a = node(dir.path(), "a", &(tcp_cla(pa, &[]) + &gitsync_app(&dir.path().join("a-state"), &repo_a)));
    let b = node(dir.path(), "b", &(tcp_cla(pb, &[]) + &gitsync_app(&dir.path().join("b-state"), &repo_b)));

    // Each push is built when the app takes the command: wait for it before
    // the next commit.
    let push = |n: usize, extra: &[&str]| {
        let mut args = vec!["git", "push", "project", "--to", "dtn://b/gitsync"];
        args.extend_from_slice(extra);
        ferry_ok(&a, &args, b"");
        a.eventually(&format!("push {n} in a's store"), WAIT, || pushes_for_b(&a).len() == n);
    };
    commit(&repo_a, "one", "1");
    push(1, &[]);
    commit(&repo_a, "two", "2");
    git(&repo_a, &["branch", "feature"]);
    push(2, &[]);
    commit(&repo_a, "three", "3");
    git(&repo_a, &["tag", "v1"]);
    push(3, &["--ref", "main", "--ref", "refs/tags/v1"]);
    let pushes = pushes_for_b(&a);
    let bytes: Vec<Vec<u8>> = pushes.iter().map(|bid| a.get(&format!("/ferry/bundle.cbor?bid={bid}")).body).collect();

    // Push 2 is lost on the way: a still keeps it in the app's state.
    assert_eq!(a.get(&format!("/delete?bid={}", pushes[1])).status, 200);
    // 3 and 1 arrive out of order, each twice (a USB stick carried twice).
    for i in [2usize, 0, 2, 0] {
        let r = b.post("/push", bytes[i].clone());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    b.eventually("push 1 applied", WAIT, || !refs(&repo_b, "refs/remotes/a/").is_empty());
    let first = refs(&repo_b, "refs/remotes/a/");
    assert_eq!(first.len(), 1, "only push 1 applied while 2 is missing: {first:?}");

    // The link comes up: b's request for push 2 reaches a, a sends it again.
    b.get_ok(&format!("/peers/add?p=tcp://127.0.0.1:{pa}/a"));
    let want = || {
        let mut w = refs(&repo_a, "refs/heads/");
        w.extend(refs(&repo_a, "refs/tags/").into_iter().map(|(s, n)| (s, format!("tags/{n}"))));
        w.sort_by(|x, y| x.1.cmp(&y.1));
        w
    };
    let got = || {
        let mut g = refs(&repo_b, "refs/remotes/a/");
        g.sort_by(|x, y| x.1.cmp(&y.1));
        g
    };
    b.eventually("b's refs to match a's", WAIT, || got() == want());
    assert_eq!(git(&repo_b, &["rev-list", "--count", "refs/remotes/a/main"]).trim(), "3");
    git(&repo_b, &["fsck", "--no-dangling"]);

    // The post-commit hook sends the next commit by itself, over the link.
    let hook = apps_support::wasm_apps_dir().join("gitsync/hooks/post-commit");
    std::fs::copy(&hook, repo_a.join(".git/hooks/post-commit")).unwrap();
    git(&repo_a, &["config", "ferry.repo", "project"]);
    git(&repo_a, &["config", "ferry.to", "dtn://b/gitsync"]);
    git(&repo_a, &["config", "ferry.api", &format!("http://{}", a.addr)]);
    commit(&repo_a, "four", "4");
    b.eventually("the hook's push to arrive", WAIT, || got() == want());
    assert_eq!(git(&repo_b, &["rev-list", "--count", "refs/remotes/a/main"]).trim(), "4");
    // A new branch on a commit b has already: the push carries just the ref.
    git(&repo_a, &["branch", "stable", "HEAD~1"]);
    ferry_ok(&a, &["git", "push", "project", "--to", "dtn://b/gitsync", "--ref", "stable"], b"");
    b.eventually("the new branch to arrive", WAIT, || got() == want());
    // Acknowledged pushes are forgotten on a.
    let kept = dir.path().join("a-state/out/project/b");
    a.eventually("acknowledged pushes forgotten", WAIT, || {
        std::fs::read_dir(&kept).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().ends_with(".bundle"))
    });
    let logs = ferry_ok(&b, &["apps", "logs", "gitsync"], b"");
    assert!(logs.contains("is early") && logs.contains("applied already"), "{logs}");
}
