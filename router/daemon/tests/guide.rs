//! The user guide (`docs/guide/`) stays true: every ```sh block of every
//! chapter runs, in order, as one bash script per chapter (`set -euo
//! pipefail`), in a fresh folder, with this build's binaries first on
//! PATH, `PLUGINS` naming the folder of this build's plugins, `APPS` that
//! of the apps (scripts/build-wasm-apps) and `REPO` the repository. A chapter
//! that starts daemons in the background has them killed when it ends.
//! Everything listens on 127.0.0.1 (or ::1); a chapter needing dtn7-rs
//! finds it through `FERRY_DTN7_BIN` (skipped without it, unless
//! `FERRY_REQUIRE_DTN7` is set).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A chapter may take this long.
const LIMIT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The ```sh blocks of a Markdown text, in order.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().unwrap_or_default()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

fn run_chapter(name: &str) {
    let md = std::fs::read_to_string(repo().join("docs/guide").join(name)).unwrap();
    let blocks = sh_blocks(&md);
    assert!(!blocks.is_empty(), "{name} has no ```sh block");
    let needs_dtn7 = blocks.iter().any(|b| b.contains("dtnd "));
    let mut path = vec![Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().unwrap().to_path_buf()];
    if needs_dtn7 {
        let bin = std::env::var_os("FERRY_DTN7_BIN")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ferry-tools/dtn7-0.21.0/bin")))
            .filter(|d| d.join("dtnd").is_file());
        match bin {
            Some(b) => path.push(b),
            None => {
                assert!(
                    std::env::var_os("FERRY_REQUIRE_DTN7").is_none(),
                    "{name} needs dtn7-rs (scripts/install-dtn7)"
                );
                eprintln!("dtn7-rs not installed: skipping {name}");
                return;
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n{}",
        blocks.join("# ----\n")
    );
    std::fs::write(dir.path().join("chapter.sh"), &script).unwrap();
    let mut search = path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    search.push(std::env::var("PATH").unwrap_or_default());
    let out = dir.path().join("output.txt");
    let mut child = Command::new("bash")
        .arg("chapter.sh")
        .current_dir(dir.path())
        .env("PATH", search.join(":"))
        .env("PLUGINS", &path[0])
        .env("REPO", repo())
        .env("APPS", repo().join("wasm-apps/target/wasm32-wasip2/release"))
        .env_remove("FERRY_API")
        .env_remove("RUST_BACKTRACE")
        // A chapter that builds something builds it where a reader would.
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::options().append(true).open(&out).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = String::new();
    let _ = std::fs::File::open(&out).and_then(|mut f| f.read_to_string(&mut output));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{name}: the chapter's commands failed ({s}):\n{output}"),
        None => panic!("{name}: still running after {LIMIT:?}:\n{output}"),
    }
}

#[test]
fn every_chapter_is_listed_in_the_table_of_contents() {
    let toc = std::fs::read_to_string(repo().join("docs/guide/README.md")).unwrap();
    for e in std::fs::read_dir(repo().join("docs/guide")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            assert!(toc.contains(&format!("({name})")), "docs/guide/README.md does not link {name}");
        }
    }
}

#[test]
fn chapter_1_two_sites_and_a_usb_stick() {
    run_chapter("1-camp-and-stick.md");
}

#[test]
fn chapter_2_joining_a_dtn7_rs_network() {
    run_chapter("2-joining-dtn7-rs.md");
}

#[test]
fn chapter_3_a_study_with_ferry_sim() {
    run_chapter("3-a-study-with-ferry-sim.md");
}

#[test]
fn chapter_4_a_plugin_in_c() {
    run_chapter("4-a-plugin-in-c.md");
}

#[test]
fn chapter_5_writing_a_wasm_app() {
    run_chapter("5-writing-a-wasm-app.md");
}

#[test]
fn chapter_6_mail_between_two_sites() {
    run_chapter("6-mail-between-sites.md");
}

#[test]
fn chapter_7_a_lora_link() {
    run_chapter("7-a-lora-link.md");
}

#[test]
fn chapter_8_a_plugin_in_rust() {
    run_chapter("8-a-plugin-in-rust.md");
}
