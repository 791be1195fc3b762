//! What the app tests share: the wasm-apps components (built on first use,
//! so they always match the source), nodes with `[[app]]` configs, the TCP
//! plugin, the `ferry` CLI, and the `/ferry/apps` figures.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::api_support::Ferryd;

/// The wasm-apps workspace.
pub fn wasm_apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wasm-apps")
}

/// Builds wasm-apps for wasm32-wasip2 once per test binary (cargo makes it a
/// no-op when nothing changed) and returns the folder of the components.
fn built() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = wasm_apps_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo for wasm-apps");
        assert!(
            out.status.success(),
            "building wasm-apps failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("target/wasm32-wasip2/release")
    })
}

/// The component of an app crate (`noop`, `misbehave`, `email`, `gitsync`).
pub fn component(app: &str) -> PathBuf {
    let p = built().join(format!("ferry_app_{app}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target/<profile>").to_path_buf()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// A `[[cla]]` block for the TCP plugin listening on `listen` and dialling `peers`.
pub fn tcp_cla(listen: u16, peers: &[u16]) -> String {
    let plugin = target_dir().join("libferry_cla_tcp.so");
    assert!(plugin.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", plugin.display());
    let peers: Vec<String> = peers.iter().map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).collect();
    format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\npeers = [{}]\n",
        plugin.display(),
        peers.join(", ")
    )
}

/// A ferryd named `dtn://<name>/` with `config` after its node ID.
pub fn node(dir: &Path, name: &str, config: &str) -> Ferryd {
    std::fs::create_dir_all(dir).expect("test folder");
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("node_id = \"dtn://{name}/\"\n{config}")).expect("write config");
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().expect("UTF-8 path")])
}

/// Runs `ferry --api <node> ARGS` with `stdin`, bounded in time.
pub fn ferry(node: &Ferryd, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--api")
        .arg(format!("http://{}", node.addr))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    let out = wait_output(child, Duration::from_secs(60));
    let _ = writer.join();
    out
}

/// Waits for a child's output, killing it after `limit`.
pub fn wait_output(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                panic!("{child:?} did not finish within {limit:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `ferry ARGS` that must succeed; its stdout.
pub fn ferry_ok(node: &Ferryd, args: &[&str], stdin: &[u8]) -> String {
    let out = ferry(node, args, stdin);
    assert!(out.status.success(), "ferry {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One app's entry of `/ferry/apps`.
pub fn app_status(node: &Ferryd, name: &str) -> serde_json::Value {
    let list = node.get("/ferry/apps").json();
    list.as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no app {name} in {list}"))
}

/// A counter of one app.
pub fn counter(node: &Ferryd, app: &str, key: &str) -> u64 {
    app_status(node, app)[key].as_u64().unwrap_or_else(|| panic!("{app}.{key} is not a number"))
}

/// An `[[app]]` block.
pub fn app_block(name: &str, crate_name: &str, endpoints: &[&str], extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[[app]]\nname = \"{name}\"\ncomponent = \"{}\"\nendpoints = [{}]\n{extra}\n",
        component(crate_name).display(),
        eps.join(", ")
    )
}
