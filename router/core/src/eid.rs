//! Endpoint IDs (RFC 9171 §4.2.5.1): the `dtn` and `ipn` URI schemes, `dtn:none`,
//! and node IDs (§4.2.5.2).

use std::fmt;
use std::str::FromStr;

/// An endpoint ID.
///
/// `dtn://node/demux` keeps the node name and the demultiplexing part apart so
/// that "is this one of my endpoints" is a string comparison, not a parse.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Eid {
    /// `dtn:none`, the null endpoint (scheme 1, SSP 0 on the wire).
    Null,
    /// `dtn://<node>/<demux>`; a node ID has an empty demux.
    Dtn { node: String, demux: String },
    /// `ipn:<node>.<service>`; a node ID has service 0.
    Ipn { node: u64, service: u64 },
}

/// Why a string or a wire value is not an endpoint ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EidError {
    /// The scheme is neither `dtn` nor `ipn`.
    #[error("unknown URI scheme (expected dtn: or ipn:)")]
    UnknownScheme,
    /// A `dtn` SSP other than `none` that does not start with `//`.
    #[error("a dtn EID is dtn:none or dtn://node/demux")]
    DtnNotAuthority,
    /// The node name of a `dtn` EID is empty or has characters outside RFC 3986 reg-name.
    #[error("the node name of a dtn EID must be a non-empty reg-name")]
    BadNodeName,
    /// The demux part of a `dtn` EID has a character that is not allowed.
    #[error("the demux part of a dtn EID has a forbidden character")]
    BadDemux,
    /// An `ipn` SSP that is not `<node>.<service>` with decimal numbers.
    #[error("an ipn EID is ipn:<node>.<service> with decimal numbers")]
    BadIpn,
}

impl Eid {
    /// `dtn://<node>/` — the node ID of a dtn-scheme node.
    pub fn dtn_node(node: &str) -> Result<Eid, EidError> {
        check_node_name(node)?;
        Ok(Eid::Dtn { node: node.to_owned(), demux: String::new() })
    }

    /// `ipn:<node>.0` — the node ID of an ipn-scheme node.
    pub fn ipn_node(node: u64) -> Eid {
        Eid::Ipn { node, service: 0 }
    }

    /// True for `dtn:none`.
    pub fn is_null(&self) -> bool {
        matches!(self, Eid::Null)
    }

    /// True when this EID is a node ID (RFC 9171 §4.2.5.2): `dtn://node/` or `ipn:N.0`.
    pub fn is_node_id(&self) -> bool {
        match self {
            Eid::Null => false,
            Eid::Dtn { demux, .. } => demux.is_empty(),
            Eid::Ipn { service, .. } => *service == 0,
        }
    }

    /// The node ID of the node this endpoint lives on (`dtn:none` for `dtn:none`).
    pub fn node_id(&self) -> Eid {
        match self {
            Eid::Null => Eid::Null,
            Eid::Dtn { node, .. } => Eid::Dtn { node: node.clone(), demux: String::new() },
            Eid::Ipn { node, .. } => Eid::Ipn { node: *node, service: 0 },
        }
    }

    /// True when `self` is an endpoint of the node `node_id`.
    pub fn is_on_node(&self, node_id: &Eid) -> bool {
        match (self, node_id) {
            (Eid::Dtn { node: a, .. }, Eid::Dtn { node: b, .. }) => a == b,
            (Eid::Ipn { node: a, .. }, Eid::Ipn { node: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The endpoint `<node>/<service>` on this EID's node: `dtn://n/svc` or, for an
    /// ipn node, `ipn:n.<service>` when `service` is a number.
    pub fn with_service(&self, service: &str) -> Result<Eid, EidError> {
        match self {
            Eid::Null => Err(EidError::UnknownScheme),
            Eid::Dtn { node, .. } => {
                check_demux(service)?;
                Ok(Eid::Dtn { node: node.clone(), demux: service.to_owned() })
            }
            Eid::Ipn { node, .. } => {
                let service = parse_u64(service).ok_or(EidError::BadIpn)?;
                Ok(Eid::Ipn { node: *node, service })
            }
        }
    }

    /// The demux part (`dtn`) or service number (`ipn`) as text; empty for `dtn:none`.
    pub fn service(&self) -> String {
        match self {
            Eid::Null => String::new(),
            Eid::Dtn { demux, .. } => demux.clone(),
            Eid::Ipn { service, .. } => service.to_string(),
        }
    }

    /// Build a `dtn` EID from the SSP found on the wire (RFC 9171 §4.2.5.1.1).
    pub fn from_dtn_ssp(ssp: &str) -> Result<Eid, EidError> {
        if ssp == "none" {
            return Ok(Eid::Null);
        }
        let rest = ssp.strip_prefix("//").ok_or(EidError::DtnNotAuthority)?;
        let (node, demux) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            // "dtn://node" without the trailing slash: accepted as the node ID.
            None => (rest, ""),
        };
        check_node_name(node)?;
        check_demux(demux)?;
        Ok(Eid::Dtn { node: node.to_owned(), demux: demux.to_owned() })
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    // u64::from_str accepts a leading '+'; the RFC's grammar does not.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 3986 reg-name: unreserved / pct-encoded / sub-delims. We accept the
/// unreserved and sub-delim characters and '%'.
fn check_node_name(node: &str) -> Result<(), EidError> {
    let ok = !node.is_empty() && node.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EidError::BadNodeName)
    }
}

/// The demux is a path (RFC 9171 §4.2.5.1.1); anything printable but whitespace goes.
fn check_demux(demux: &str) -> Result<(), EidError> {
    if demux.chars().all(|c| !c.is_control() && !c.is_whitespace()) {
        Ok(())
    } else {
        Err(EidError::BadDemux)
    }
}

impl FromStr for Eid {
    type Err = EidError;

    fn from_str(s: &str) -> Result<Eid, EidError> {
        if let Some(ssp) = s.strip_prefix("dtn:") {
            Eid::from_dtn_ssp(ssp)
        } else if let Some(ssp) = s.strip_prefix("ipn:") {
            let (node, service) = ssp.split_once('.').ok_or(EidError::BadIpn)?;
            let node = parse_u64(node).ok_or(EidError::BadIpn)?;
            let service = parse_u64(service).ok_or(EidError::BadIpn)?;
            Ok(Eid::Ipn { node, service })
        } else {
            Err(EidError::UnknownScheme)
        }
    }
}

impl fmt::Display for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eid::Null => f.write_str("dtn:none"),
            Eid::Dtn { node, demux } => write!(f, "dtn://{node}/{demux}"),
            Eid::Ipn { node, service } => write!(f, "ipn:{node}.{service}"),
        }
    }
}

impl fmt::Debug for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for s in ["dtn:none", "dtn://node1/", "dtn://node1/incoming", "dtn://n/a/b", "ipn:0.0", "ipn:7.42"] {
            let eid: Eid = s.parse().unwrap();
            assert_eq!(eid.to_string(), s);
        }
        assert_eq!("dtn://n".parse::<Eid>().unwrap().to_string(), "dtn://n/");
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "http://x/",
            "dtn:",
            "dtn:/x",
            "dtn:///x",
            "dtn://a b/",
            "ipn:1",
            "ipn:+1.2",
            "ipn:1.x",
            "ipn:99999999999999999999.1",
        ] {
            assert!(s.parse::<Eid>().is_err(), "{s} should not parse");
        }
    }

    #[test]
    fn node_ids() {
        let e: Eid = "dtn://a/mail".parse().unwrap();
        assert!(!e.is_node_id());
        assert_eq!(e.node_id().to_string(), "dtn://a/");
        assert!(e.is_on_node(&Eid::dtn_node("a").unwrap()));
        assert!(!e.is_on_node(&Eid::ipn_node(1)));
        let i: Eid = "ipn:5.3".parse().unwrap();
        assert_eq!(i.node_id(), Eid::ipn_node(5));
        assert_eq!(Eid::ipn_node(5).with_service("9").unwrap(), "ipn:5.9".parse().unwrap());
        assert!(Eid::ipn_node(5).with_service("mail").is_err());
    }
}
