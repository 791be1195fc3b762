//! `ferry doctor` and `ferry completions`, run as a user would, on configs
//! that work and on configs with one of each kind of mistake.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("run ferry")
}

fn target_file(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target dir").join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --workspace` first", p.display());
    p
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A data folder with a node key and a TLS certificate for `node`.
fn prepared(dir: &Path, node: &str) -> PathBuf {
    let data = dir.join("data");
    let o = ferry(&["tls", "gen", "--node-id", node, "--data-dir", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    data
}

fn config(dir: &Path, data: &Path, node: &str, plugin: &Path, extra_cla: &str, rest: &str) -> PathBuf {
    let cfg = dir.join("ferryd.toml");
    std::fs::write(
        &cfg,
        format!(
            "node_id = \"{node}\"\ndata_dir = \"{}\"\n{rest}\n[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:0\"]\n{extra_cla}",
            data.display(),
            plugin.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_working_setup_passes_and_says_what_it_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "dtn://camp/");
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let tls = format!(
        "peers = [\"tcpcl://127.0.0.1:{port}\"]\n[cla.settings.tls]\ncert = \"{0}/tls/cert.pem\"\nkey = \"{0}/tls/key.pem\"\ntrust = [\"{0}/tls/cert.pem\"]\n",
        data.display()
    );
    let cfg = config(dir.path(), &data, "dtn://camp/", &target_file("libferry_cla_tcp.so"), &tls, "");
    let o = ferry(&["--api", "http://127.0.0.1:1", "doctor", "--config", cfg.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "ok    config",
        "ok    data folder",
        "ok    node key",
        "tcp 0.1.0 takes its settings",
        "ok    TLS",
        "answers",
        "warn  ferryd: not reachable",
        "0 failed",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // --json: the same checks, machine-readable.
    let o =
        ferry(&["--json", "--api", "http://127.0.0.1:1", "doctor", "--config", cfg.to_str().unwrap(), "--no-peers"]);
    let checks: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let checks = checks.as_array().unwrap();
    assert!(checks.iter().any(|c| c["what"] == "TLS" && c["status"] == "ok"), "{checks:?}");
    assert!(!checks.iter().any(|c| c["what"].as_str().unwrap().starts_with("peer ")), "--no-peers: {checks:?}");
}

#[test]
fn each_mistake_is_a_failure_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "dtn://other/");
    // The key readable by others; the TLS certificate for another node; an
    // app whose component is missing; a second plugin that is not there.
    std::fs::set_permissions(data.join("node.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let tls = format!(
        "[cla.settings.tls]\ncert = \"{0}/tls/cert.pem\"\nkey = \"{0}/tls/key.pem\"\ntrust = [\"{0}/tls/cert.pem\"]\n\
         [[cla]]\npath = \"/nonexistent/libferry_cla_x.so\"\n",
        data.display()
    );
    let app = "[[app]]\nname = \"mail\"\ncomponent = \"/nonexistent/mail.wasm\"\nendpoints = [\"mail\"]\n";
    let cfg = config(dir.path(), &data, "dtn://camp/", &target_file("libferry_cla_tcp.so"), &tls, app);
    let o = ferry(&["--api", "http://127.0.0.1:1", "doctor", "--config", cfg.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "FAIL  node key",
        "chmod 600",
        "FAIL  TLS",
        "ferry tls gen",
        "FAIL  plugin /nonexistent/libferry_cla_x.so",
        "FAIL  app mail",
        "4 failed",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // A config that does not parse: the line and the key.
    std::fs::write(&cfg, "node_id = \"dtn://camp/\"\n\nrouter = \"epidemc\"\n").unwrap();
    let o = ferry(&["doctor", "--config", cfg.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL  config") && out.contains("epidemc"), "{out}");
}

#[test]
fn completions_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let o = ferry(&["completions", shell]);
        assert!(o.status.success(), "{}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        for cmd in ["doctor", "send", "tls", "trust"] {
            assert!(script.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    assert!(!ferry(&["completions", "cmd.exe"]).status.success());
}
