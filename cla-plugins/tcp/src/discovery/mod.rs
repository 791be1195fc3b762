//! IPND-style neighbour discovery, compatible with dtn7-rs's beacons.
//!
//! One UDP socket, bound to `discovery.listen` with SO_REUSEADDR (dtn7-rs
//! binds 0.0.0.0:3003 the same way, so both can run on one host), sends a
//! [`Beacon`] to `discovery.beacon_addr` every `interval_secs` and receives
//! the beacons of others. A multicast `beacon_addr` is joined on that
//! socket; a unicast one (two nodes, or tests on loopback) works as well.
//!
//! Our beacons advertise the first TCPCL listener as `"tcp"` and the first
//! MTCP listener as `"mtcp"` (dtn7-rs's names), with their bound ports. A
//! beacon from another node makes us dial it at the beacon's source address:
//! TCPCL when it advertises `"tcp"`, else MTCP (with the beacon's node ID),
//! unless a session with that node is up already. Beacons carrying our own
//! node ID (our multicast looped back) are ignored.

pub mod beacon;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

pub use beacon::{Beacon, BeaconError};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::plugin::{lock, Shared};
use crate::settings::{PeerUrl, Scheme};

/// Binds the discovery socket (called from `start`, so errors surface there).
pub(crate) fn bind(shared: &Shared) -> Result<UdpSocket, String> {
    let d = &shared.settings.discovery;
    Beacon::new(&shared.node_id, 0, Vec::new(), None).encode().map_err(|e| format!("discovery: {e}"))?;
    let socket = || -> std::io::Result<UdpSocket> {
        let socket = Socket::new(Domain::for_address(d.listen), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&d.listen.into())?;
        match d.beacon_addr.ip() {
            IpAddr::V4(group) if group.is_multicast() => socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?,
            IpAddr::V6(group) if group.is_multicast() => socket.join_multicast_v6(&group, 0)?,
            IpAddr::V4(ip) if ip.is_broadcast() => socket.set_broadcast(true)?,
            _ => {}
        }
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket.into())
    };
    let socket = socket().map_err(|e| format!("discovery: cannot listen on udp {}: {e}", d.listen))?;
    if let Ok(local) = socket.local_addr() {
        shared.host.info(&format!("discovery listening on udp://{local}, beacons to {}", d.beacon_addr));
    }
    Ok(socket)
}

/// Starts the beacon task.
pub(crate) fn spawn(shared: &Arc<Shared>, socket: UdpSocket) {
    let s = shared.clone();
    shared.spawn(run(s, socket));
}

async fn run(shared: Arc<Shared>, socket: UdpSocket) {
    let d = shared.settings.discovery.clone();
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(d.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence = 0u32;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let clas = lock(&shared.advertised).clone();
                let beacon = Beacon::new(&shared.node_id, sequence, clas, Some(d.interval_secs));
                sequence = sequence.wrapping_add(1);
                if let Ok(bytes) = beacon.encode() {
                    if let Err(e) = socket.send_to(&bytes, d.beacon_addr).await {
                        shared.host.debug(&format!("discovery: beacon to {}: {e}", d.beacon_addr));
                    }
                }
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => received(&shared, &buf[..n], from.ip()),
                Err(e) => {
                    shared.host.debug(&format!("discovery: receive: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn received(shared: &Arc<Shared>, datagram: &[u8], from: IpAddr) {
    let beacon = match Beacon::decode(datagram) {
        Ok(b) => b,
        Err(e) => {
            shared.host.debug(&format!("discovery: datagram from {from}: {e}"));
            return;
        }
    };
    if beacon.node_id == shared.node_id || beacon.node_id == "dtn:none" {
        return;
    }
    let port = |name: &str| beacon.clas.iter().find(|(n, p)| n == name && p.is_some()).and_then(|(_, p)| *p);
    let (scheme, port) = match (port("tcp"), port("mtcp")) {
        (Some(p), _) => (Scheme::Tcpcl, p),
        (None, Some(p)) => (Scheme::Mtcp, p),
        (None, None) => {
            shared.host.debug(&format!("discovery: {} at {from} offers no tcp or mtcp agent", beacon.node_id));
            return;
        }
    };
    let url = PeerUrl { scheme, host: from.to_string(), port, node_id: Some(beacon.node_id.clone()) };
    crate::dial::dial_discovered(shared, url, &beacon.node_id);
}
