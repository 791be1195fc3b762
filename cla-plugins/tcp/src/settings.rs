//! The plugin's settings (the `[cla.settings]` TOML table) and peer URLs.
//!
//! [`Settings::parse`] is the one checked constructor: unknown keys, wrong
//! types and unusable values are errors that name the key. The defaults and
//! the meaning of every key are in the [crate documentation](crate#settings).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use crate::tcpcl;

/// The validated settings of one plugin instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// TCPCLv4 listeners.
    pub listen: Vec<SocketAddr>,
    /// MTCP listeners.
    pub mtcp_listen: Vec<SocketAddr>,
    /// STCP listeners.
    pub stcp_listen: Vec<SocketAddr>,
    /// Static peers: connected at start and reconnected when lost.
    pub peers: Vec<PeerUrl>,
    /// TCPCL keepalive interval in seconds (RFC 9174 §5.1.1); 0 disables.
    /// Also the interval of STCP keepalive frames on outgoing STCP links.
    pub keepalive_secs: u16,
    /// TCPCL segment MRU: the largest segment accepted.
    pub segment_mru: u64,
    /// The largest bundle accepted on any link (TCPCL transfer MRU, MTCP and
    /// STCP frame limit).
    pub transfer_mru: u64,
    /// Never send a bundle larger than a TCPCL peer's transfer MRU.
    pub respect_peer_transfer_mru: bool,
    /// Time allowed for the contact header and SESS_INIT exchange.
    pub contact_timeout_secs: u64,
    /// A transfer that makes no progress for this long (the peer stopped
    /// acknowledging ours, or stalled in the middle of its own) ends the
    /// session; 0 = never.
    pub transfer_timeout_secs: u64,
    /// Accepted connections served at once (all listeners together).
    pub max_connections: usize,
    /// Outgoing TCPCL transfers fully sent and not yet acknowledged at once.
    pub max_pipelined_transfers: usize,
    /// Received bundles waiting for the host's verdict, per session.
    pub max_unaccepted_transfers: usize,
    /// Octets of received bundles awaiting the host's verdict, per session,
    /// before the session stops reading from its peer.
    pub max_unaccepted_mib: u64,
    /// Worker threads of the plugin's runtime.
    pub threads: usize,
    /// IPND-style discovery.
    pub discovery: DiscoverySettings,
    /// TCPCLv4 over TLS (the `[tls]` table); `None`: TLS is never offered.
    pub tls: Option<TlsSettings>,
}

/// The `[tls]` table: this node's certificate, whom it trusts, and where
/// TLS is required (RFC 9174 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file: this node's certificate (then any intermediates), naming
    /// its node ID as an id-on-bundleEID subjectAltName (`ferry tls gen`).
    pub cert: PathBuf,
    /// PEM file: the certificate's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// PEM files of trust anchors: a CA's certificate, or a peer's own
    /// self-signed one. A peer's certificate must chain to one of them.
    pub trust: Vec<PathBuf>,
    /// Refuse every TCPCL session that does not negotiate TLS.
    pub require: bool,
    /// Refuse sessions without TLS from these node IDs.
    pub require_for: Vec<String>,
}

/// The `[discovery]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// Send and receive beacons.
    pub enabled: bool,
    /// Where beacons go: a multicast group (joined on `listen`), a broadcast
    /// or a unicast address.
    pub beacon_addr: SocketAddr,
    /// Seconds between beacons.
    pub interval_secs: u64,
    /// Where beacons are received.
    pub listen: SocketAddr,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::parse("").unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// Why settings are unusable. Every message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not TOML, an unknown key, or a value of the wrong type (toml's message
    /// shows the line and the key).
    #[error("tcp plugin settings: {0}")]
    Toml(String),
    /// A listener address that is not `ip:port`.
    #[error("tcp plugin settings: `{key}` entry \"{value}\" is not an ip:port address (e.g. \"0.0.0.0:4556\")")]
    BadAddress {
        /// The key (`listen`, `discovery.beacon_addr`, ...).
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// A peer URL that does not parse.
    #[error("tcp plugin settings: `peers` entry \"{value}\": {reason}")]
    BadPeer {
        /// The value given.
        value: String,
        /// Why.
        reason: PeerUrlError,
    },
    /// A value that must be at least 1.
    #[error("tcp plugin settings: `{key}` must be at least 1")]
    Zero {
        /// The key.
        key: &'static str,
    },
    /// A value beyond what the setting allows.
    #[error("tcp plugin settings: `{key}` = {value} is larger than {max}")]
    TooLarge {
        /// The key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A `[tls]` table that cannot work.
    #[error("tcp plugin settings: `tls.{key}`: {reason}")]
    Tls {
        /// The key under `tls`.
        key: &'static str,
        /// Why.
        reason: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    listen: Vec<String>,
    mtcp_listen: Vec<String>,
    stcp_listen: Vec<String>,
    peers: Vec<String>,
    keepalive_secs: u16,
    segment_mru: u64,
    transfer_mru: u64,
    respect_peer_transfer_mru: bool,
    contact_timeout_secs: u64,
    transfer_timeout_secs: u64,
    max_connections: usize,
    max_pipelined_transfers: usize,
    max_unaccepted_transfers: usize,
    max_unaccepted_mib: u64,
    threads: usize,
    discovery: RawDiscovery,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    trust: Vec<PathBuf>,
    #[serde(default)]
    require: bool,
    #[serde(default)]
    require_for: Vec<String>,
}

impl Default for Raw {
    fn default() -> Self {
        let session = tcpcl::Config::new("", false);
        Raw {
            listen: vec![format!("0.0.0.0:{}", tcpcl::wire::DEFAULT_PORT)],
            mtcp_listen: Vec::new(),
            stcp_listen: Vec::new(),
            peers: Vec::new(),
            keepalive_secs: session.keepalive_secs,
            segment_mru: session.segment_mru,
            transfer_mru: session.transfer_mru,
            respect_peer_transfer_mru: true,
            contact_timeout_secs: session.contact_timeout_ms / 1000,
            transfer_timeout_secs: session.transfer_timeout_ms / 1000,
            max_connections: 256,
            max_pipelined_transfers: 256,
            max_unaccepted_transfers: 512,
            max_unaccepted_mib: session.max_unaccepted_bytes >> 20,
            threads: 2,
            discovery: RawDiscovery::default(),
            tls: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDiscovery {
    enabled: bool,
    beacon_addr: String,
    interval_secs: u64,
    listen: String,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        RawDiscovery {
            enabled: false,
            beacon_addr: "224.0.0.26:3003".into(),
            interval_secs: 10,
            listen: "0.0.0.0:3003".into(),
        }
    }
}

/// The largest transfer MRU accepted: a bundle is reassembled in memory.
const MAX_TRANSFER_MRU: u64 = 1 << 40;

impl Settings {
    /// Parses and checks the TOML settings text (empty: all defaults).
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let raw: Raw = toml::from_str(text).map_err(|e| SettingsError::Toml(e.to_string().trim_end().to_owned()))?;
        let addrs = |key: &'static str, list: &[String]| -> Result<Vec<SocketAddr>, SettingsError> {
            list.iter().map(|v| addr(key, v)).collect()
        };
        let peers = raw
            .peers
            .iter()
            .map(|v| v.parse().map_err(|reason| SettingsError::BadPeer { value: v.clone(), reason }))
            .collect::<Result<Vec<PeerUrl>, _>>()?;
        for (key, value) in [
            ("segment_mru", raw.segment_mru),
            ("max_connections", raw.max_connections as u64),
            ("max_pipelined_transfers", raw.max_pipelined_transfers as u64),
            ("max_unaccepted_transfers", raw.max_unaccepted_transfers as u64),
            ("max_unaccepted_mib", raw.max_unaccepted_mib),
            ("threads", raw.threads as u64),
            ("contact_timeout_secs", raw.contact_timeout_secs),
            ("discovery.interval_secs", raw.discovery.interval_secs),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero { key });
            }
        }
        for (key, value, max) in [
            ("transfer_mru", raw.transfer_mru, MAX_TRANSFER_MRU),
            ("threads", raw.threads as u64, 64),
            ("contact_timeout_secs", raw.contact_timeout_secs, 3600),
            ("transfer_timeout_secs", raw.transfer_timeout_secs, 86_400),
            ("discovery.interval_secs", raw.discovery.interval_secs, 86_400),
        ] {
            if value > max {
                return Err(SettingsError::TooLarge { key, value, max });
            }
        }
        let tls = match raw.tls {
            None => None,
            Some(t) => {
                let missing = |key| SettingsError::Tls { key, reason: "is required to use TLS" };
                if t.trust.is_empty() {
                    return Err(SettingsError::Tls {
                        key: "trust",
                        reason: "names no trust anchor: list the PEM files of the peers' certificates or of their CA",
                    });
                }
                if t.require_for.iter().any(|id| id.trim().is_empty()) {
                    return Err(SettingsError::Tls { key: "require_for", reason: "an entry is empty" });
                }
                Some(TlsSettings {
                    cert: t.cert.ok_or_else(|| missing("cert"))?,
                    key: t.key.ok_or_else(|| missing("key"))?,
                    trust: t.trust,
                    require: t.require,
                    require_for: t.require_for,
                })
            }
        };
        Ok(Settings {
            listen: addrs("listen", &raw.listen)?,
            mtcp_listen: addrs("mtcp_listen", &raw.mtcp_listen)?,
            stcp_listen: addrs("stcp_listen", &raw.stcp_listen)?,
            peers,
            keepalive_secs: raw.keepalive_secs,
            segment_mru: raw.segment_mru,
            transfer_mru: raw.transfer_mru,
            respect_peer_transfer_mru: raw.respect_peer_transfer_mru,
            contact_timeout_secs: raw.contact_timeout_secs,
            transfer_timeout_secs: raw.transfer_timeout_secs,
            max_connections: raw.max_connections,
            max_pipelined_transfers: raw.max_pipelined_transfers,
            max_unaccepted_transfers: raw.max_unaccepted_transfers,
            max_unaccepted_mib: raw.max_unaccepted_mib,
            threads: raw.threads,
            discovery: DiscoverySettings {
                enabled: raw.discovery.enabled,
                beacon_addr: addr("discovery.beacon_addr", &raw.discovery.beacon_addr)?,
                interval_secs: raw.discovery.interval_secs,
                listen: addr("discovery.listen", &raw.discovery.listen)?,
            },
            tls,
        })
    }

    /// The TCPCL session configuration for one session.
    pub fn session_config(&self, node_id: &str, active: bool) -> tcpcl::Config {
        let mut c = tcpcl::Config::new(node_id, active);
        c.keepalive_secs = self.keepalive_secs;
        c.segment_mru = self.segment_mru;
        c.transfer_mru = self.transfer_mru;
        c.respect_peer_transfer_mru = self.respect_peer_transfer_mru;
        c.contact_timeout_ms = self.contact_timeout_secs.saturating_mul(1000);
        c.transfer_timeout_ms = self.transfer_timeout_secs.saturating_mul(1000);
        c.max_pipelined_transfers = self.max_pipelined_transfers;
        c.max_unaccepted_transfers = self.max_unaccepted_transfers;
        c.max_unaccepted_bytes = self.max_unaccepted_mib.saturating_mul(1 << 20);
        c.transmit_batch = 256 * 1024;
        if let Some(tls) = &self.tls {
            c.can_tls = true;
            c.require_tls = tls.require;
            c.require_tls_for = tls.require_for.clone();
        }
        c
    }
}

fn addr(key: &'static str, value: &str) -> Result<SocketAddr, SettingsError> {
    value.trim().parse().map_err(|_| SettingsError::BadAddress { key, value: value.to_owned() })
}

/// Which framing a peer URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TCPCLv4 (RFC 9174), acknowledged: `tcpcl://` (or `tcp://`, dtn7-rs's name).
    Tcpcl,
    /// MTCP, unacknowledged: `mtcp://`.
    Mtcp,
    /// STCP, unacknowledged: `stcp://`.
    Stcp,
}

impl Scheme {
    /// The URL scheme as written in canonical form.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Tcpcl => "tcpcl",
            Scheme::Mtcp => "mtcp",
            Scheme::Stcp => "stcp",
        }
    }

    /// The port used when a URL gives none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Tcpcl => tcpcl::wire::DEFAULT_PORT,
            Scheme::Mtcp => crate::mtcp::DEFAULT_PORT,
            Scheme::Stcp => crate::stcp::DEFAULT_PORT,
        }
    }
}

/// A peer to connect to: `scheme://host[:port][/node-id]`.
///
/// - `tcpcl://192.0.2.7:4556` — the node ID comes from the peer's SESS_INIT;
///   a node ID in the URL (`tcpcl://host:4556/dtn://b/`) is only used when
///   the peer does not disclose one.
/// - `mtcp://host:16162/dtn://b/`, `stcp://host:4456/ipn:5.0` — these
///   framings exchange no node IDs, so the URL must name it.
///
/// `host` is a name, an IPv4 address or a bracketed IPv6 address; the port
/// defaults to 4556 (tcpcl), 16162 (mtcp) or 4456 (stcp).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerUrl {
    /// The framing.
    pub scheme: Scheme,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The peer's node ID, when given.
    pub node_id: Option<String>,
}

/// Why a peer URL does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerUrlError {
    /// No `scheme://`.
    #[error("expected scheme://host:port, e.g. tcpcl://192.0.2.7:4556")]
    NoScheme,
    /// A scheme other than tcpcl, tcp, mtcp, stcp.
    #[error("unknown scheme \"{0}\" (expected tcpcl, mtcp or stcp)")]
    UnknownScheme(String),
    /// Nothing between `://` and the port.
    #[error("no host")]
    EmptyHost,
    /// A port that is not 1..=65535.
    #[error("bad port \"{0}\"")]
    BadPort(String),
    /// A node ID that is neither `dtn://…` nor `ipn:N.S`.
    #[error("\"{0}\" is not a node ID (expected dtn://node/ or ipn:N.0)")]
    BadNodeId(String),
    /// MTCP and STCP URLs must name the peer's node ID.
    #[error("{0} exchanges no node IDs: name the peer, e.g. {0}://host:port/dtn://node/")]
    MissingNodeId(&'static str),
}

impl FromStr for PeerUrl {
    type Err = PeerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://").ok_or(PeerUrlError::NoScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "tcpcl" | "tcp" => Scheme::Tcpcl,
            "mtcp" => Scheme::Mtcp,
            "stcp" => Scheme::Stcp,
            other => return Err(PeerUrlError::UnknownScheme(other.to_owned())),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(PeerUrlError::EmptyHost)?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or_else(|| PeerUrlError::BadPort(p.to_owned()))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(PeerUrlError::EmptyHost);
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| PeerUrlError::BadPort(p.to_owned()))?,
        };
        let node_id = match path {
            "" => None,
            id if is_node_id(id) => Some(id.to_owned()),
            id => return Err(PeerUrlError::BadNodeId(id.to_owned())),
        };
        if node_id.is_none() && scheme != Scheme::Tcpcl {
            return Err(PeerUrlError::MissingNodeId(scheme.as_str()));
        }
        Ok(PeerUrl { scheme, host: host.to_owned(), port, node_id })
    }
}

/// A light check: the daemon validates node IDs properly; this catches typos
/// such as a missing scheme.
fn is_node_id(id: &str) -> bool {
    if let Some(rest) = id.strip_prefix("dtn://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    if let Some(rest) = id.strip_prefix("ipn:") {
        let mut parts = rest.split('.');
        return parts.next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_none();
    }
    false
}

impl PeerUrl {
    /// `host:port` as a connect target (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())?;
        if let Some(id) = &self.node_id {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = Settings::parse("").unwrap();
        assert_eq!(s.listen, vec!["0.0.0.0:4556".parse::<SocketAddr>().unwrap()]);
        assert!(s.mtcp_listen.is_empty() && s.stcp_listen.is_empty() && s.peers.is_empty());
        assert_eq!(s.keepalive_secs, 30);
        assert_eq!(s.transfer_timeout_secs, 60);
        assert!(s.respect_peer_transfer_mru);
        assert!(!s.discovery.enabled);
        assert_eq!(s.discovery.beacon_addr, "224.0.0.26:3003".parse::<SocketAddr>().unwrap());
        assert_eq!(s.discovery.interval_secs, 10);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn a_tls_table_turns_tls_on_in_every_session() {
        let s = Settings::parse(
            "[tls]\ncert = \"/d/tls/cert.pem\"\nkey = \"/d/tls/key.pem\"\ntrust = [\"/etc/ferry/b.pem\"]\n\
             require_for = [\"dtn://b/\"]\n",
        )
        .unwrap();
        let tls = s.tls.as_ref().unwrap();
        assert_eq!((tls.cert.to_str(), tls.require), (Some("/d/tls/cert.pem"), false));
        let c = s.session_config("dtn://a/", true);
        assert!(c.can_tls && !c.require_tls);
        assert_eq!(c.require_tls_for, ["dtn://b/"]);
        assert!(!Settings::default().session_config("dtn://a/", true).can_tls);
    }

    #[test]
    fn a_tls_table_that_cannot_work_is_refused_by_key() {
        for (table, key) in [
            ("cert = \"c\"\nkey = \"k\"\n", "tls.trust"),
            ("key = \"k\"\ntrust = [\"t\"]\n", "tls.cert"),
            ("cert = \"c\"\ntrust = [\"t\"]\n", "tls.key"),
            ("cert = \"c\"\nkey = \"k\"\ntrust = [\"t\"]\nrequire_for = [\"\"]\n", "tls.require_for"),
        ] {
            let e = Settings::parse(&format!("[tls]\n{table}")).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{e}");
        }
        let e = Settings::parse("[tls]\ncert = \"c\"\nkye = \"k\"\n").unwrap_err().to_string();
        assert!(e.contains("kye"), "{e}");
    }

    #[test]
    fn a_full_table() {
        let s = Settings::parse(
            r#"
            listen = ["127.0.0.1:4557", "[::1]:4557"]
            mtcp_listen = ["127.0.0.1:16162"]
            peers = ["tcpcl://127.0.0.1:4558", "mtcp://example.org/dtn://b/", "stcp://[::1]:9/ipn:5.0"]
            keepalive_secs = 0
            transfer_timeout_secs = 0
            respect_peer_transfer_mru = false
            [discovery]
            enabled = true
            beacon_addr = "127.0.0.1:3004"
            "#,
        )
        .unwrap();
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.keepalive_secs, 0);
        assert_eq!(s.session_config("dtn://n/", true).transfer_timeout_ms, 0);
        assert!(!s.respect_peer_transfer_mru);
        assert_eq!(s.peers[1].port, 16162);
        assert_eq!(s.peers[1].node_id.as_deref(), Some("dtn://b/"));
        assert_eq!(s.peers[2].to_string(), "stcp://[::1]:9/ipn:5.0");
        assert_eq!(s.peers[2].authority(), "[::1]:9");
        assert!(s.discovery.enabled);
        assert_eq!(s.discovery.listen, "0.0.0.0:3003".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| Settings::parse(t).unwrap_err().to_string();
        assert!(err("lisen = []").contains("unknown field `lisen`"), "{}", err("lisen = []"));
        assert!(err("[discovery]\nenable = true").contains("unknown field `enable`"));
        assert!(err("keepalive_secs = \"x\"").contains("keepalive_secs"), "{}", err("keepalive_secs = \"x\""));
        assert!(err("keepalive_secs = 70000").contains("keepalive_secs"));
        assert!(err("listen = [\"4556\"]").contains("`listen` entry \"4556\""));
        assert!(err("[discovery]\nbeacon_addr = \"x\"").contains("`discovery.beacon_addr`"));
        assert!(err("segment_mru = 0").contains("`segment_mru` must be at least 1"));
        assert!(err("peers = [\"mtcp://h:1\"]").contains("name the peer"));
        assert!(err("peers = [\"udp://h:1\"]").contains("unknown scheme \"udp\""));
        assert!(err("peers = [\"tcpcl://h:0\"]").contains("bad port"));
        assert!(err("peers = [\"tcpcl://:1\"]").contains("no host"));
        assert!(err("peers = [\"tcpcl://h:1/node\"]").contains("not a node ID"));
        assert!(err("transfer_mru = 1099511627777").contains("`transfer_mru`"));
    }

    #[test]
    fn peer_urls() {
        let u: PeerUrl = "tcp://host".parse().unwrap();
        assert_eq!(u, PeerUrl { scheme: Scheme::Tcpcl, host: "host".into(), port: 4556, node_id: None });
        assert_eq!(u.to_string(), "tcpcl://host:4556");
        let u: PeerUrl = "TCPCL://10.0.0.1:99/".parse().unwrap();
        assert_eq!((u.port, u.node_id), (99, None));
        let u: PeerUrl = "tcpcl://10.0.0.1:99/dtn://x/y".parse().unwrap();
        assert_eq!(u.node_id.as_deref(), Some("dtn://x/y"));
        assert_eq!("stcp://h/ipn:1.0".parse::<PeerUrl>().unwrap().port, 4456);
        assert!("stcp://h/ipn:1".parse::<PeerUrl>().is_err());
        assert!("tcpcl://[::1".parse::<PeerUrl>().is_err());
        assert!("tcpcl://[::1]x".parse::<PeerUrl>().is_err());
        assert!("tcpcl:/h".parse::<PeerUrl>().is_err());
    }
}
