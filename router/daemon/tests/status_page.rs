//! The status page (`/ui`) in a real headless browser (Debian's chromium,
//! driven over the DevTools protocol): it loads, shows a bundle sent during
//! the test and the peer that is up, and updates by itself when that peer
//! goes down. A screenshot is kept as a test artifact
//! (`<target>/tmp/status-page.png`; with `FERRY_UPDATE_SCREENSHOT=1` also
//! `docs/status-page.png`).
//!
//! Chromium runs with background networking off and every host name
//! resolving to nothing but 127.0.0.1, so it reaches only the ferryd on
//! loopback. Without chromium the test says so and passes, unless
//! `FERRY_REQUIRE_CHROMIUM` is set (scripts/test sets it after
//! scripts/install-deps installed chromium).

mod api_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_support::{free_port, tcp_plugin, Ferryd};
use base64::Engine as _;
use tokio_tungstenite::tungstenite::{self, Message};

const WAIT: Duration = Duration::from_secs(30);

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FERRY_CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/lib/chromium/chromium")),
        Some(PathBuf::from("/usr/bin/chromium")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("FERRY_REQUIRE_CHROMIUM").is_none(),
            "FERRY_REQUIRE_CHROMIUM is set but chromium is not installed (scripts/install-deps)"
        );
        eprintln!("chromium not installed (apt-get install chromium); skipping the status page test");
    }
    found
}

fn node(dir: &Path, name: &str, listen: u16, peer: Option<u16>) -> Ferryd {
    let peers = peer.map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).unwrap_or_default();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "node_id = \"dtn://{name}/\"\n[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\n\
             peers = [{peers}]\nkeepalive_secs = 1\n",
            tcp_plugin().display()
        ),
    )
    .unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

/// A headless chromium, killed on drop.
struct Browser {
    child: Child,
    devtools: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start(exe: &Path, profile: &Path) -> Browser {
        let mut child = Command::new(exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--window-size=1200,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("chromium's stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let ws = rx.recv_timeout(WAIT).expect("chromium printed its DevTools address");
        // ws://127.0.0.1:PORT/devtools/browser/ID → http://127.0.0.1:PORT
        let host = ws.trim_start_matches("ws://").split('/').next().expect("host:port").to_owned();
        Browser { child, devtools: format!("http://{host}") }
    }

    /// Opens `url` in a new tab; its DevTools session.
    fn open(&self, url: &str) -> Page {
        let http = reqwest::blocking::Client::new();
        let target: serde_json::Value = http
            .put(format!("{}/json/new?{url}", self.devtools))
            .send()
            .and_then(|r| r.bytes())
            .map(|b| serde_json::from_slice(&b).expect("a target"))
            .expect("open a tab");
        let ws_url = target["webSocketDebuggerUrl"].as_str().expect("the tab's DevTools URL").to_owned();
        let (socket, _) = tungstenite::connect(ws_url).expect("DevTools websocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
            s.set_read_timeout(Some(WAIT)).unwrap();
        }
        Page { socket, next: 0 }
    }
}

struct Page {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next: u64,
}

impl Page {
    /// Calls a DevTools method; its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket.send(Message::text(msg.to_string())).expect("send to DevTools");
        loop {
            match self.socket.read().expect("read from DevTools") {
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(&t).expect("DevTools JSON");
                    if v["id"] == id {
                        assert!(v.get("error").is_none(), "{method}: {v}");
                        return v["result"].clone();
                    }
                }
                _ => continue,
            }
        }
    }

    fn text_of(&mut self, selector: &str) -> String {
        let expr = format!("(document.querySelector('{selector}') || {{innerText: ''}}).innerText");
        let r = self.call("Runtime.evaluate", serde_json::json!({ "expression": expr, "returnByValue": true }));
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (bounded) until the text of `selector` satisfies `f`.
    fn wait_text(&mut self, selector: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text_of(selector);
            if f(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; {selector} shows:\n{t}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn the_status_page_shows_bundles_and_peers_and_follows_a_peer_going_down() {
    let Some(exe) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let b = node(dir.path(), "b", pb, None);
    let a = node(dir.path(), "a", pa, Some(pb));
    a.eventually("A's session with B", WAIT, || a.get("/status/peers").json()["dtn://b/"]["connected"] == true);

    let browser = Browser::start(&exe, &dir.path().join("chromium-profile"));
    let mut page = browser.open(&format!("http://{}/ui", a.addr));
    page.wait_text("#node-id", "the node ID", |t| t == "dtn://a/");
    page.wait_text("#live", "the live feed", |t| t == "live");
    let peers = page.wait_text("#peers", "B up", |t| t.contains("dtn://b/") && t.contains("up"));
    assert!(peers.contains("tcp"), "{peers}");
    page.wait_text("#contacts", "the contacts", |t| t.contains("no contact plan"));
    page.wait_text("#apps", "the apps", |t| t.contains("no apps"));

    // A bundle sent now (for a node nobody knows, so it stays) shows up.
    let sent = a.post("/send?dst=dtn://far/inbox&lifetime=1h", b"for the page".to_vec());
    assert_eq!(sent.status, 200, "{}", sent.text());
    let bid = a.bundle_ids().pop().expect("the bundle is held");
    page.wait_text("#bundles", "the new bundle", |t| t.contains(&bid) && t.contains("dtn://far/inbox"));
    // The search box filters it in and out.
    page.call(
        "Runtime.evaluate",
        serde_json::json!({ "expression": "const s = document.getElementById('search'); s.value = 'no-such-bundle'; s.dispatchEvent(new Event('input'));" }),
    );
    page.wait_text("#bundles", "the filter", |t| t.contains("no bundle matches"));
    page.call(
        "Runtime.evaluate",
        serde_json::json!({ "expression": "const s2 = document.getElementById('search'); s2.value = 'far'; s2.dispatchEvent(new Event('input'));" }),
    );
    page.wait_text("#bundles", "the filter", |t| t.contains(&bid));

    // B goes away: the page, not reloaded, says so.
    drop(b);
    page.wait_text("#events", "the peer_down event", |t| t.contains("peer_down") && t.contains("dtn://b/ down"));
    page.wait_text("#peers", "B no longer up", |t| !(t.contains("dtn://b/") && t.contains("\tup")));

    let shot = page.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }));
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("PNG data")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&artifact, &png).unwrap();
    if std::env::var_os("FERRY_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("status-page.png"), &png).unwrap();
    }
    eprintln!("status page screenshot: {}", artifact.display());
}
