//! TLS for tests: a CA made with rcgen and the certificates it signs (server and client,
//! written as PEM files in a temp dir for the broker's `[tls]`), and a blocking rustls client
//! that trusts the CA, with or without a client certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::frame::{parse, Frame, Parsed};
use super::WAIT;

/// A CA and certificates it signs, written as PEM files in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "stompbox test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate for `names` with subject `CN=<cn>` (and writes `<file>.pem` and
    /// `<file>.key`); returns its DER.
    pub fn issue(&self, file: &str, names: &[&str], cn: &str) -> CertificateDer<'static> {
        self.issue_to(file, names, &[(DnType::CommonName, cn)])
    }

    /// Issues a certificate whose subject has the RDNs of `subject`, least specific first
    /// (the order a certificate holds them, the reverse of RFC 4514 text).
    pub fn issue_to(
        &self,
        file: &str,
        names: &[&str],
        subject: &[(DnType, &str)],
    ) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        // Not rcgen's default subject, whose CN would come first whatever is pushed.
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.path(&format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// `[tls]` with the server certificate `server`.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[tls]\nbind = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\n{extra}",
            self.path("server.pem"),
            self.path("server.key"),
        )
    }

    /// A client trusting this CA, with the certificate `<file>.pem` if `identity` names one.
    pub fn client(&self, identity: Option<&str>) -> Arc<ClientConfig> {
        let files = identity.map(|f| {
            (
                self.path(&format!("{f}.pem")),
                self.path(&format!("{f}.key")),
            )
        });
        tls_config(
            &self.ca_der(),
            files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client trusting `ca`, with a client certificate if `identity` is given.
pub fn tls_config(
    ca: &CertificateDer<'static>,
    identity: Option<(&Path, &Path)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr`, handshake done (or its error).
pub fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut tls = StreamOwned::new(conn, sock);
    let deadline = Instant::now() + WAIT;
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
    Ok(tls)
}

/// STOMP over a TLS connection: frames written whole, frames read with a deadline.
pub struct TlsClient {
    pub tls: Tls,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr` (the handshake must succeed) and sends `connect`; returns the
    /// client and the broker's first frame (None when the connection ended first).
    pub fn connect(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        connect: &Frame,
    ) -> (TlsClient, Option<Frame>) {
        let tls = tls_connect(addr, config).expect("TLS handshake");
        let mut client = TlsClient {
            tls,
            buf: Vec::new(),
        };
        client.send(connect);
        let first = client.next_frame();
        (client, first)
    }

    pub fn send(&mut self, frame: &Frame) {
        self.tls.write_all(&frame.encode()).expect("write over TLS");
    }

    /// The next frame within [`WAIT`], or None when the connection ends first.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + WAIT;
        let mut chunk = [0u8; 4096];
        loop {
            match parse(&self.buf, "1.2") {
                Ok(Parsed::Frame {
                    frame, consumed, ..
                }) => {
                    self.buf.drain(..consumed);
                    return Some(frame);
                }
                Ok(Parsed::Incomplete { .. }) => {}
                Err(e) => panic!("not a STOMP frame over TLS: {e}"),
            }
            match self.tls.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no frame over TLS within {WAIT:?}"
                    );
                }
                Err(_) => return None,
            }
        }
    }

    /// The next frame, which must be `command`.
    pub fn expect(&mut self, command: &str) -> Frame {
        let f = self
            .next_frame()
            .unwrap_or_else(|| panic!("closed, {command} expected"));
        assert_eq!(f.command, command, "{f:?}");
        f
    }
}
