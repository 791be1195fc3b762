//! The Debian package, installed for real: `dpkg -i` of the .deb that
//! `scripts/package-deb` built (its path in `FERRY_DEB`), then what an
//! operator gets is checked — the binaries, plugins, apps, config and unit
//! in their places, the `ferry` system user owning a 0700 state folder, the
//! unit enabled and accepted by `systemd-analyze verify`, `ferry doctor`
//! happy with the installed config, and the installed ferryd running as
//! `ferry` with the installed plugin and app — then `dpkg --purge`, which
//! keeps the node's state.
//!
//! It changes the machine (installs, then purges the package), so it runs
//! only as root and only when `FERRY_DEB` names a package (scripts/test
//! builds one and sets it); otherwise it says so and passes, unless
//! `FERRY_REQUIRE_DEB` is set.

mod api_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "ferry"]);
    }
}

fn package() -> Option<PathBuf> {
    let deb = std::env::var_os("FERRY_DEB").map(PathBuf::from).filter(|p| p.is_file());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if deb.is_none() || !root {
        assert!(
            std::env::var_os("FERRY_REQUIRE_DEB").is_none(),
            "FERRY_REQUIRE_DEB is set but FERRY_DEB names no package or this is not root"
        );
        eprintln!("no FERRY_DEB package, or not root: skipping the package test (scripts/package-deb builds one)");
        return None;
    }
    deb
}

#[test]
fn the_package_installs_a_working_hardened_service_and_purges_cleanly() {
    let Some(deb) = package() else { return };
    assert!(!Path::new("/usr/bin/ferryd").exists(), "ferry is installed already: this test would remove it");
    let o = run("dpkg", &["-i", deb.to_str().unwrap()]);
    let _installed = Installed;
    assert!(o.status.success(), "dpkg -i: {}", text(&o));

    for f in [
        "/usr/bin/ferryd",
        "/usr/bin/ferry",
        "/usr/lib/ferry/plugins/libferry_cla_tcp.so",
        "/usr/lib/ferry/plugins/libferry_cla_usbdir.so",
        "/usr/lib/ferry/plugins/libferry_cla_serial.so",
        "/usr/lib/ferry/plugins/libferry_cla_lora.so",
        "/usr/lib/ferry/apps/ferry_app_email.wasm",
        "/usr/lib/ferry/apps/ferry_app_noop.wasm",
        "/etc/ferry/ferryd.toml",
        "/usr/lib/systemd/system/ferryd.service",
        "/usr/share/doc/ferry/README.md",
    ] {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let conffiles = run("dpkg-query", &["--showformat=${Conffiles}", "--show", "ferry"]);
    assert!(text(&conffiles).contains("/etc/ferry/ferryd.toml"), "the config is a conffile: {}", text(&conffiles));

    // The system user and its state folder.
    let user = run("getent", &["passwd", "ferry"]);
    assert!(user.status.success(), "no ferry user");
    let uid: u32 = text(&user).split(':').nth(2).unwrap().parse().unwrap();
    let state = std::fs::metadata("/var/lib/ferry").expect("/var/lib/ferry");
    assert_eq!((state.uid(), state.permissions().mode() & 0o777), (uid, 0o700));

    // The unit: enabled, and valid with every hardening option it names.
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/ferryd.service").exists(),
        "the unit is not enabled"
    );
    let verify = run("systemd-analyze", &["verify", "/usr/lib/systemd/system/ferryd.service"]);
    assert!(verify.status.success(), "systemd-analyze verify: {}", text(&verify));
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/ferryd.service").unwrap();
    for line in ["User=ferry", "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=ferry", "ProtectHome=yes"]
    {
        assert!(unit.contains(line), "the unit lacks {line}");
    }

    // The installed config passes the doctor.
    let doctor = run(
        "/usr/bin/ferry",
        &["--api", "http://127.0.0.1:1", "doctor", "--config", "/etc/ferry/ferryd.toml", "--no-peers"],
    );
    assert!(doctor.status.success(), "ferry doctor: {}", text(&doctor));

    // The installed ferryd runs as `ferry` with the installed plugin and app.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(uid), None).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("ferryd.toml");
    std::fs::write(
        &cfg,
        "node_id = \"dtn://installed/\"\n[[cla]]\npath = \"/usr/lib/ferry/plugins/libferry_cla_tcp.so\"\n\
         [cla.settings]\nlisten = [\"127.0.0.1:0\"]\n[[app]]\nname = \"noop\"\n\
         component = \"/usr/lib/ferry/apps/ferry_app_noop.wasm\"\nendpoints = [\"noop\"]\n",
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.path().join("ferryd.log");
    // As `ferry` (its uid and gid): the child is ferryd itself, so killing
    // it below stops the daemon (runuser would leave it running).
    let gid: u32 = text(&user).split(':').nth(3).unwrap().parse().unwrap();
    let mut child = Command::new("/usr/bin/ferryd")
        .uid(uid)
        .gid(gid)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .args(["--api", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the installed ferryd");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix(ferry_daemon::server::LISTENING_PREFIX) {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the installed ferryd did not start: {}", std::fs::read_to_string(&log).unwrap_or_default())
    });
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let apps = loop {
        let apps: serde_json::Value = http
            .get(format!("http://{addr}/ferry/apps"))
            .send()
            .and_then(|r| r.bytes())
            .map(|b| serde_json::from_slice(&b).unwrap_or_default())
            .unwrap_or_default();
        if apps[0]["state"] == "running" || Instant::now() > deadline {
            break apps;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let info = http.get(format!("http://{addr}/status/info")).send().and_then(|r| r.text()).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(apps[0]["state"], "running", "the installed app: {apps}\n{log}");
    assert!(info.contains("dtn://installed/"), "{info}");
    assert!(log.contains("convergence-layer plugin loaded"), "{log}");
    // It ran as `ferry`: its key belongs to that user.
    assert_eq!(std::fs::metadata(data.join("node.key")).unwrap().uid(), uid);

    // Purge: the files go, the node's state stays.
    drop(_installed);
    assert!(!Path::new("/usr/bin/ferryd").exists(), "ferryd is still installed after the purge");
    assert!(!Path::new("/etc/ferry/ferryd.toml").exists(), "the config is still there after the purge");
    assert!(Path::new("/var/lib/ferry").exists(), "the purge removed the node's state");
    let _ = std::fs::remove_dir_all("/var/lib/ferry");
}
