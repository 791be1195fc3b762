//! The `/ws` application agent against a real ferryd, spoken as dtn7-rs's
//! clients speak it.

mod api_support;

use std::time::Duration;

use api_support::{binary_payload, bundle, payload_of, Ferryd};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(30);

fn start() -> (tempfile::TempDir, Ferryd) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferryd = Ferryd::start(&dir.path().join("data"));
    (dir, ferryd)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

async fn connect(f: &Ferryd) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(format!("ws://{}/ws", f.addr)))
        .await
        .expect("connect in time")
        .expect("websocket handshake");
    ws
}

/// The next text or binary frame (pings skipped), bounded.
async fn next(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").expect("frame");
        if m.is_text() || m.is_binary() {
            return m;
        }
    }
}

async fn command(ws: &mut Ws, cmd: &str) -> String {
    ws.send(Message::text(cmd)).await.expect("send");
    next(ws).await.into_text().expect("a text reply").to_string()
}

#[test]
fn subscribe_send_json_and_receive() {
    let (_dir, f) = start();
    let node = f.node_id();
    f.get_ok("/register?incoming");
    runtime().block_on(async {
        let mut ws = connect(&f).await;
        assert_eq!(command(&mut ws, "/node").await, format!("200 node: {node}"));
        assert_eq!(command(&mut ws, "/json").await, "200 tx mode: JSON");
        assert_eq!(command(&mut ws, "/subscribe incoming").await, "200 subscribed");
        assert_eq!(command(&mut ws, "/subscribe nobody").await, "404 unknown endpoint");

        let data = binary_payload(5000);
        let req = serde_json::json!({
            "src": node.to_string(),
            "dst": format!("{node}incoming"),
            "delivery_notification": false,
            "lifetime": 60_000,
            "data": ferry_daemon::ws::base64(&data),
        });
        ws.send(Message::binary(serde_json::to_vec(&req).unwrap())).await.unwrap();
        // The send's reply and the delivery may come in either order.
        let (mut reply, mut delivered) = (None, None);
        while reply.is_none() || delivered.is_none() {
            match next(&mut ws).await {
                Message::Text(t) => reply = Some(t.to_string()),
                Message::Binary(b) => delivered = Some(serde_json::from_slice::<serde_json::Value>(&b).unwrap()),
                _ => {}
            }
        }
        let reply = reply.unwrap();
        assert!(reply.starts_with(&format!("200 Sent bundle {node}-")), "{reply}");
        assert!(reply.ends_with("with 5000 bytes"), "{reply}");
        let d = delivered.unwrap();
        assert_eq!(d["src"], node.to_string());
        assert_eq!(d["dst"], format!("{node}incoming"));
        assert_eq!(d["lifetime"], 60_000);
        assert!(d["cts"][0].as_u64().unwrap() > 0);
        assert!(reply.contains(d["bid"].as_str().unwrap()), "{reply} vs {d}");
        use base64::Engine as _;
        let got = base64::engine::general_purpose::STANDARD.decode(d["data"].as_str().unwrap()).unwrap();
        assert_eq!(got, data);

        // A source elsewhere and a destination that does not parse are refused.
        let foreign = serde_json::json!({"src": "dtn://someone-else/", "dst": format!("{node}incoming"),
            "delivery_notification": false, "lifetime": 1000, "data": ""});
        ws.send(Message::binary(serde_json::to_vec(&foreign).unwrap())).await.unwrap();
        let r = next(&mut ws).await.into_text().unwrap().to_string();
        assert!(r.starts_with("400 ") && r.contains("not an endpoint of this node"), "{r}");
        let bad = serde_json::json!({"src": node.to_string(), "dst": "nowhere",
            "delivery_notification": false, "lifetime": 1000, "data": ""});
        ws.send(Message::binary(serde_json::to_vec(&bad).unwrap())).await.unwrap();
        let r = next(&mut ws).await.into_text().unwrap().to_string();
        assert!(r.starts_with("400 invalid destination"), "{r}");
        assert!(command(&mut ws, "/frobnicate").await.starts_with("501 "));
        ws.close(None).await.ok();
    });
    // Delivered over the websocket: gone from the node.
    f.eventually("the delivered bundle to be deleted", WAIT, || f.bundle_ids().is_empty());
    assert_eq!(f.get("/status/info").json()["stats"]["delivered"], 1);
}

#[test]
fn bundles_waiting_before_subscription_are_pushed_in_bundle_mode() {
    let (_dir, f) = start();
    let node = f.node_id();
    f.get_ok("/register?box");
    for i in 0..3u8 {
        assert_eq!(f.post(&format!("/send?dst={node}box"), vec![i; 3]).status, 200);
    }
    runtime().block_on(async {
        let mut ws = connect(&f).await;
        assert_eq!(command(&mut ws, "/bundle").await, "200 tx mode: bundle");
        ws.send(Message::text("/subscribe box")).await.unwrap();
        let mut texts = vec![];
        let mut payloads = vec![];
        while payloads.len() < 3 || texts.is_empty() {
            match next(&mut ws).await {
                Message::Text(t) => texts.push(t.to_string()),
                Message::Binary(b) => payloads.push(payload_of(&b)),
                _ => {}
            }
        }
        assert_eq!(texts, vec!["200 subscribed".to_owned()]);
        payloads.sort();
        assert_eq!(payloads, vec![vec![0u8; 3], vec![1; 3], vec![2; 3]]);
        ws.close(None).await.ok();
    });
    f.eventually("delivered bundles to be deleted", WAIT, || f.bundle_ids().is_empty());
}

#[test]
fn pipelined_bundle_frames_are_acknowledged_in_order_once_stored() {
    let (_dir, f) = start();
    const N: u64 = 200;
    let frames: Vec<Vec<u8>> =
        (0..N).map(|i| bundle("dtn://sender/", "dtn://faraway/sink", i, 3_600_000, &i.to_be_bytes())).collect();
    runtime().block_on(async {
        let mut ws = connect(&f).await;
        assert_eq!(command(&mut ws, "/bundle").await, "200 tx mode: bundle");
        // All frames go out before any reply is read.
        for b in &frames {
            ws.feed(Message::binary(b.clone())).await.unwrap();
        }
        ws.feed(Message::binary(b"garbage".to_vec())).await.unwrap();
        ws.feed(Message::binary(frames[0].clone())).await.unwrap();
        ws.send(Message::text("/node")).await.unwrap();
        for b in &frames {
            let r = next(&mut ws).await.into_text().unwrap().to_string();
            assert_eq!(r, format!("200 Sent payload with {} bytes", b.len()));
        }
        let r = next(&mut ws).await.into_text().unwrap().to_string();
        assert!(r.starts_with("400 Invalid binary bundle"), "{r}");
        let r = next(&mut ws).await.into_text().unwrap().to_string();
        assert!(r.starts_with("200 ") && r.contains("already stored"), "{r}");
        let r = next(&mut ws).await.into_text().unwrap().to_string();
        assert!(r.starts_with("200 node: "), "replies stay in frame order: {r}");
        ws.close(None).await.ok();
    });
    // Every acknowledged bundle is stored.
    assert_eq!(f.bundle_ids().len(), N as usize);
    assert_eq!(f.get("/status/info").json()["store_bundles"], N);
}

#[test]
fn sigterm_mid_stream_exits_zero_and_keeps_every_acknowledged_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = Ferryd::start(&data);
    f.get_ok("/register?idle");
    const N: u64 = 300;
    let frames: Vec<Vec<u8>> =
        (0..N).map(|i| bundle("dtn://sender/", "dtn://faraway/sink", i, 3_600_000, &[7; 512])).collect();
    let acked = runtime().block_on(async {
        let mut ws = connect(&f).await;
        // A subscribed, idle session must not hold shutdown up.
        let mut idle = connect(&f).await;
        assert_eq!(command(&mut idle, "/subscribe idle").await, "200 subscribed");
        assert_eq!(command(&mut ws, "/bundle").await, "200 tx mode: bundle");
        for b in &frames {
            ws.feed(Message::binary(b.clone())).await.unwrap();
        }
        ws.flush().await.unwrap();
        // Stop ferryd while frames are still in flight.
        let mut acked = 0u64;
        while acked < 50 {
            let t = next(&mut ws).await.into_text().unwrap().to_string();
            assert!(t.starts_with("200 Sent payload"), "{t}");
            acked += 1;
        }
        f.sigterm();
        // Read replies until ferryd closes the connection.
        loop {
            match tokio::time::timeout(WAIT, ws.next()).await.expect("ferryd closes in time") {
                Some(Ok(Message::Text(t))) => {
                    assert!(t.starts_with("200 Sent payload"), "{t}");
                    acked += 1;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
        acked
    });
    eprintln!("{acked} of {N} frames acknowledged before shutdown");
    let status = f.wait_exit();
    assert!(status.success(), "exit status {status:?}");

    let f = Ferryd::start(&data);
    let ids = f.bundle_ids();
    // Replies come in frame order: the first `acked` frames were acknowledged.
    for i in 0..acked {
        assert!(ids.iter().any(|id| id.ends_with(&format!("-{i}"))), "acknowledged bundle {i} is missing");
    }
    assert!(ids.len() as u64 >= acked);
}
