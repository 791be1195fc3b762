//! TCPCLv4 over TLS (RFC 9174 §4.4): the node's credentials, how peers are
//! authenticated, and [`TlsLayer`], the record layer one session runs
//! through once both contact headers offered CAN_TLS.
//!
//! - TLS 1.3 only (rustls on ring). The active entity is the TLS client,
//!   the passive one the server, and the server requires a client
//!   certificate: both ends are authenticated.
//! - A peer's certificate must chain to one of the configured trust anchors
//!   (a CA, or the peer's own self-signed certificate). Its host name or
//!   address is not checked: DTN nodes move and are named by node ID. The
//!   node IDs the certificate names (subjectAltName otherName
//!   id-on-bundleEID, [`eid`]) go to the session, which refuses a SESS_INIT
//!   claiming another one (RFC 9174 §4.4.3).
//! - [`TlsLayer`] does no I/O: ciphertext from the socket goes in with
//!   [`TlsLayer::read_from_peer`], plaintext comes out for the session; the
//!   session's plaintext goes in with [`TlsLayer::write_to_peer`] and
//!   ciphertext comes out for the socket.

pub mod eid;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore, ServerConfig};
use rustls::{ServerConnection, SignatureScheme};
use thiserror::Error;

use crate::settings::TlsSettings;

/// Why the TLS settings cannot be used. Every message names the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("tls: {what} {path}: {reason}")]
    File {
        /// Which setting (certificate, key, trust anchor).
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the
    /// certificate).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("tls: trust anchors: {0}")]
    Verifier(String),
    /// Our own certificate names no node ID, or another than ours.
    #[error(
        "tls: certificate {path} names {named:?} but this node is {node_id}; make one with `ferry tls gen` for this node"
    )]
    WrongNodeId {
        /// The certificate file.
        path: String,
        /// The node IDs it names.
        named: Vec<String>,
        /// This node's ID.
        node_id: String,
    },
}

/// The client and server configurations every TLS session of one plugin
/// instance shares.
#[derive(Debug, Clone)]
pub struct TlsContext {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl TlsContext {
    /// Loads the certificate chain, key and trust anchors the settings name.
    /// `node_id` is this node's: the certificate must name it, so that peers
    /// accept it (an empty one, not yet known, skips the check).
    pub fn load(settings: &TlsSettings, node_id: &str) -> Result<TlsContext, TlsSetupError> {
        let chain = read_certs("certificate", &settings.cert)?;
        if !node_id.is_empty() {
            let named = eid::bundle_eids(&chain[0]).unwrap_or_default();
            if !named.iter().any(|n| n == node_id) {
                return Err(TlsSetupError::WrongNodeId {
                    path: settings.cert.display().to_string(),
                    named,
                    node_id: node_id.to_owned(),
                });
            }
        }
        let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| TlsSetupError::File {
            what: "private key",
            path: settings.key.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for path in &settings.trust {
            for cert in read_certs("trust anchor", path)? {
                roots.add(cert).map_err(|e| TlsSetupError::File {
                    what: "trust anchor",
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        Self::new(chain, key, roots)
    }

    /// A context from parsed parts (tests build their own certificates).
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: RootCertStore,
    ) -> Result<TlsContext, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier { roots, provider }))
            .with_client_auth_cert(chain, key)?;
        Ok(TlsContext { client: Arc::new(client), server: Arc::new(server) })
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let err = |reason: String| TlsSetupError::File { what, path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Checks a server's certificate chain against the trust anchors, not its
/// name: TCPCL authenticates a node by the node ID its certificate names,
/// which the session checks at SESS_INIT.
#[derive(Debug)]
struct PeerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS session failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The handshake or a record failed (a certificate not trusted, a bad
    /// record, an alert from the peer).
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The peer's certificate names its node IDs in a way we cannot read.
    #[error("TLS: peer certificate: {0}")]
    Names(#[from] eid::EidError),
}

/// One session's TLS record layer (sans-IO).
pub struct TlsLayer {
    conn: Connection,
    reported: bool,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer").field("handshaking", &self.conn.is_handshaking()).finish()
    }
}

impl TlsLayer {
    /// A TLS client (the active entity) or server (the passive one) for a
    /// session with `peer`.
    pub fn new(ctx: &TlsContext, client: bool, peer: IpAddr) -> Result<TlsLayer, TlsError> {
        let conn = if client {
            Connection::Client(ClientConnection::new(ctx.client.clone(), ServerName::IpAddress(peer.into()))?)
        } else {
            Connection::Server(ServerConnection::new(ctx.server.clone())?)
        };
        let mut conn: Connection = conn;
        // The session bounds its own output (one batch at a time): rustls
        // need not refuse plaintext.
        conn.set_buffer_limit(None);
        Ok(TlsLayer { conn, reported: false })
    }

    /// Ciphertext from the peer: decrypts it and appends the plaintext to
    /// `plain`. An error is final (an alert for the peer may be waiting in
    /// [`TlsLayer::take_output`]).
    pub fn read_from_peer(&mut self, mut input: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        while !input.is_empty() {
            // rustls takes what fits its buffer each call; what it decrypted
            // is drained every turn, so its buffer never stays full.
            let n = self.conn.read_tls(&mut input).map_err(|e| rustls::Error::General(e.to_string()))?;
            self.conn.process_new_packets()?;
            self.drain_plaintext(plain);
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn drain_plaintext(&mut self, plain: &mut Vec<u8>) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.conn.reader().read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => plain.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Once, when the handshake has completed: the node IDs the peer's
    /// (authenticated) certificate names. `None` before, and after the first
    /// call.
    pub fn take_established(&mut self) -> Option<Result<Vec<String>, TlsError>> {
        if self.reported || self.conn.is_handshaking() {
            return None;
        }
        self.reported = true;
        let names = match self.conn.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => eid::bundle_eids(cert).map_err(TlsError::from),
            None => Err(TlsError::Rustls(rustls::Error::NoCertificatesPresented)),
        };
        Some(names)
    }

    /// Plaintext for the peer: encrypts it and appends the records to `out`.
    pub fn write_to_peer(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        // The buffer limit is off (see `new`), so rustls takes all of it;
        // it fails only once the session is closing, when nothing matters.
        let _ = self.conn.writer().write_all(plain);
        self.take_output(out);
    }

    /// Appends what TLS itself has to send (handshake, alerts) to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Ends the TLS session: a close_notify alert goes to `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.take_output(out);
    }
}
