//! The HTTP API against a real ferryd: dtn7-rs's routes and the `/ferry/*` ones.

mod api_support;

use std::time::Duration;

use api_support::{binary_payload, bundle, payload_of, Ferryd};

fn start() -> (tempfile::TempDir, Ferryd) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferryd = Ferryd::start(&dir.path().join("data"));
    (dir, ferryd)
}

#[test]
fn send_register_endpoint_round_trip_is_byte_identical() {
    let (_dir, f) = start();
    let node = f.node_id();
    assert!(node.is_node_id(), "{node}");

    assert_eq!(f.get_ok("/register?incoming"), format!("Registered {node}incoming"));
    let eids: Vec<String> = serde_json::from_value(f.get("/status/eids").json()).unwrap();
    assert_eq!(eids, vec![format!("{node}incoming")]);

    let payload = binary_payload(70_000);
    let dst = format!("{node}incoming");
    let a = f.post(&format!("/send?dst={dst}&lifetime=10m"), payload.clone());
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().starts_with(&format!("Sent ADU in bundle {node}-")), "{}", a.text());
    assert!(a.text().ends_with(&format!("with {} bytes", payload.len())), "{}", a.text());

    let got = f.get("/endpoint?incoming");
    assert_eq!(got.status, 200);
    assert_eq!(payload_of(&got.body), payload, "payload delivered byte for byte");
    let b = ferry_core::codec::decode(&got.body).unwrap();
    assert_eq!(b.primary.destination.to_string(), dst);
    assert_eq!(b.primary.lifetime_ms, 600_000);

    // Delivered exactly once: the queue is empty and the bundle is gone.
    assert_eq!(f.get_ok("/endpoint?incoming"), "Nothing to receive");
    assert!(f.bundle_ids().is_empty());
    let info = f.get("/status/info").json();
    assert_eq!(info["stats"]["delivered"], 1);
    assert_eq!(info["stats"]["created"], 1);
    assert_eq!(info["store_bundles"], 0);
}

#[test]
fn full_eids_hex_and_unregister() {
    let (_dir, f) = start();
    let node = f.node_id();
    let ep = format!("{node}mail");
    assert_eq!(f.get_ok(&format!("/register?{ep}")), format!("Registered URI: {ep}"));
    let a = f.post(&format!("/send?dst={ep}"), b"hi".to_vec());
    assert_eq!(a.status, 200, "{}", a.text());
    let hex = f.get_ok("/endpoint.hex?mail");
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    assert_eq!(payload_of(&bytes), b"hi");
    assert_eq!(f.get_ok("/unregister?mail"), format!("Unregistered {node}mail"));
    assert_eq!(f.get("/unregister?mail").status, 404);
    let a = f.get("/endpoint?mail");
    assert_eq!((a.status, a.text().as_str()), (404, "No such endpoint registered!"));
}

#[test]
fn bad_requests_are_answered_not_dropped() {
    let (_dir, f) = start();
    let a = f.post("/push", b"this is not a bundle".to_vec());
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().starts_with("Error decoding bundle: "), "{}", a.text());
    assert_eq!(f.post("/insert", vec![0x9f, 0x01]).status, 400);

    let a = f.post("/send?dst=nonsense", b"x".to_vec());
    assert_eq!(a.status, 400);
    assert!(a.text().contains("invalid destination"), "{}", a.text());
    assert_eq!(f.post("/send", b"x".to_vec()).text(), "Missing destination endpoint id!");
    let a = f.post("/send?dst=dtn://far/x&lifetime=soon", b"x".to_vec());
    assert_eq!(a.status, 400);
    assert!(a.text().contains("invalid lifetime"), "{}", a.text());
    let a = f.post("/send?dst=dtn://far/x&src=dtn://someone-else/", b"x".to_vec());
    assert_eq!(a.status, 400);
    assert!(a.text().contains("not an endpoint of this node"), "{}", a.text());
    assert_eq!(f.get("/register").status, 400);
    assert_eq!(f.get("/delete").status, 400);
    assert!(f.bundle_ids().is_empty());
    assert_eq!(f.get("/status/info").json()["stats"]["invalid"], 2);
}

#[test]
fn push_duplicate_inspect_download_and_delete() {
    let (_dir, f) = start();
    let bytes = bundle("dtn://elsewhere/", "dtn://faraway/inbox", 7, 3_600_000, b"carried");
    let a = f.post("/push", bytes.clone());
    assert_eq!((a.status, a.text()), (200, format!("Received {} bytes", bytes.len())));
    let a = f.post("/insert", bytes.clone());
    assert_eq!(a.status, 200);
    assert!(a.text().contains("is already stored"), "{}", a.text());

    let ids = f.bundle_ids();
    assert_eq!(ids.len(), 1);
    let bid = &ids[0];
    assert!(bid.starts_with("dtn://elsewhere/-") && bid.ends_with("-7"), "{bid}");

    let list = f.get("/ferry/bundles").json();
    let one = &list[0];
    assert_eq!(one["bid"], bid.as_str());
    assert_eq!(one["src"], "dtn://elsewhere/");
    assert_eq!(one["dst"], "dtn://faraway/inbox");
    assert_eq!(one["seq"], 7);
    assert_eq!(one["lifetime_ms"], 3_600_000);
    assert_eq!(one["size"], bytes.len());
    assert_eq!(one["payload_len"], 7);
    assert_eq!(one["state"], "waiting_for_contact");
    assert_eq!(f.get(&format!("/ferry/bundle?bid={bid}")).json(), *one);
    assert_eq!(f.get("/status/store").json()[bid.as_str()], "waiting_for_contact");
    assert_eq!(f.get(&format!("/ferry/bundle.cbor?bid={bid}")).body, bytes);
    assert_eq!(f.get(&format!("/download?{bid}")).body, bytes);
    assert_eq!(f.get("/ferry/bundle?bid=dtn://nobody/-1-1").status, 404);

    assert_eq!(f.get_ok(&format!("/delete?{bid}")), format!("Deleted {bid}"));
    assert!(f.bundle_ids().is_empty());
    let a = f.get(&format!("/delete?bid={bid}"));
    assert_eq!((a.status, a.text().as_str()), (404, "Bundle not found"));
    assert_eq!(f.get(&format!("/ferry/bundle.cbor?bid={bid}")).status, 404);
}

#[test]
fn short_lifetime_bundles_expire() {
    let (_dir, f) = start();
    let a = f.post("/send?dst=dtn://faraway/x&lifetime=1s", b"soon gone".to_vec());
    assert_eq!(a.status, 200, "{}", a.text());
    let a = f.post("/send?dst=dtn://faraway/y&lifetime=1h", b"stays".to_vec());
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(f.bundle_ids().len(), 2);
    f.eventually("the 1 s bundle to expire", Duration::from_secs(15), || f.bundle_ids().len() == 1);
    let left = f.get("/ferry/bundles").json();
    assert_eq!(left[0]["dst"], "dtn://faraway/y");
    // The node forgets it at once; the store's deletion is durable a moment later.
    f.eventually("the store to delete it", Duration::from_secs(5), || {
        f.get("/status/info").json()["store_bundles"] == 1
    });
    let info = f.get("/status/info").json();
    assert_eq!(info["stats"]["expired"], 1);
}

#[test]
fn peers_are_kept_even_without_a_convergence_layer() {
    let (_dir, f) = start();
    let a = f.get("/peers/add?p=tcp://127.0.0.1:4223/node2&p_t=STATIC");
    assert_eq!(a.status, 200);
    // Started with --no-default-cla: the peer is kept, and the answer says why nothing dials it.
    assert!(a.text().starts_with("Added new peer") && a.text().contains("not connecting"), "{}", a.text());
    let peers = f.get("/status/peers").json();
    assert_eq!(peers["dtn://node2/"]["port"], 4223);
    assert_eq!(peers["dtn://node2/"]["connected"], false);
    assert_eq!(f.get("/peers/add?p=nonsense").status, 400);
    assert_eq!(f.get_ok("/peers/del?p=tcp://127.0.0.1:4223/node2"), "Removed peer");
    assert_eq!(f.get("/status/peers").json(), serde_json::json!({}));
    let cts = f.get("/cts").json();
    assert!(cts[0].as_u64().unwrap() > 0 && cts[1].is_u64(), "{cts}");
}

#[test]
fn concurrent_pushes_share_store_syncs() {
    let (_dir, f) = start();
    const THREADS: u64 = 16;
    const EACH: u64 = 25;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || {
                for i in 0..EACH {
                    let b = bundle("dtn://sender/", "dtn://faraway/sink", t * 1000 + i, 3_600_000, b"load");
                    let a = f.post("/push", b);
                    assert_eq!(a.status, 200, "{}", a.text());
                }
            });
        }
    });
    assert_eq!(f.bundle_ids().len() as u64, THREADS * EACH);
    let info = f.get("/status/info").json();
    let syncs = info["store_syncs"]["syncs"].as_u64().unwrap();
    let writes = info["store_syncs"]["writes"].as_u64().unwrap();
    eprintln!("{writes} writes in {syncs} syncs");
    assert!(writes >= THREADS * EACH, "{info}");
    assert!(syncs < writes, "concurrent pushes should share syncs: {syncs} syncs for {writes} writes");
}

#[test]
fn bundles_built_by_dtn7_tools_are_taken() {
    // dtnsend builds its bundle with bp7 (no primary-block CRC) and POSTs it
    // to /insert, with a creation timestamp from /cts.
    let (_dir, f) = start();
    let node = f.node_id();
    f.get_ok("/register?incoming");
    let src: bp7::EndpointID = node.to_string().as_str().try_into().unwrap();
    let dst: bp7::EndpointID = format!("{node}incoming").as_str().try_into().unwrap();
    let mut b = bp7::bundle::new_std_payload_bundle(src, dst, b"hello from dtnsend".to_vec());
    let cts = f.get("/cts").json();
    b.primary.creation_timestamp =
        bp7::CreationTimestamp::with_time_and_seq(cts[0].as_u64().unwrap(), cts[1].as_u64().unwrap());
    let raw = b.to_cbor();
    let a = f.post("/insert", raw.clone());
    assert_eq!((a.status, a.text()), (200, format!("Sent {} bytes", raw.len())));
    let got = f.get("/endpoint?incoming");
    assert_eq!(payload_of(&got.body), b"hello from dtnsend");
    // dtnrecv decodes what it fetched with bp7.
    let back = bp7::Bundle::try_from(got.body.as_slice()).expect("bp7 decodes the delivered bundle");
    assert_eq!(back.id(), b.id());
}
