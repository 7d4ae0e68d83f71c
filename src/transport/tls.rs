//! TLS for the `stomp+ssl` and `wss` listeners: rustls (ring provider) through tokio-rustls,
//! with the certificate, key and client CA read from PEM files named in `[tls]`.
//!
//! The files are read when the broker process starts (a bad file stops it with the reason)
//! and again on SIGHUP ([`Tls::reload`]): connections accepted afterwards get the new
//! certificate, open ones keep the session they have, and a reload that fails (file
//! missing, key not matching) is logged and changes nothing, so a renewal script that
//! writes the files one at a time cannot take the listener down.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: {what} {path}: {why}")]
    File {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tls: client certificate verifier: {0}")]
    Verifier(String),
}

/// The server side of TLS, shared by every shard's TLS listeners; swapped whole on reload.
#[derive(Debug)]
pub struct Tls {
    settings: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the files named in `settings`.
    pub fn load(settings: &TlsConfig) -> Result<Tls, TlsError> {
        Ok(Tls {
            current: RwLock::new(Arc::new(server_config(settings)?)),
            settings: settings.clone(),
        })
    }

    /// What the next handshake uses.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }

    /// Reads the files again; on success new connections get what they hold now.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(server_config(&self.settings)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

fn file_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(String) -> TlsError + 'a {
    move |why| TlsError::File {
        what,
        path: path.display().to_string(),
        why,
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path)(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path)(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(what, path)("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

fn server_config(settings: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
        return Err(TlsError::Verifier(
            "tls.cert and tls.key must both be set".into(),
        ));
    };
    let chain = certificates("certificate", cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error("private key", key)(e.to_string()))?;
    // ring, not rustls's default aws-lc-rs: no cmake/C toolchain dance in the build. ring
    // lacks the post-quantum hybrid key exchange (X25519MLKEM768), hence the deprecation
    // note; X25519 and the NIST curves are offered.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match (settings.client_auth, &settings.client_ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in certificates("client CA", ca)? {
                roots
                    .add(c)
                    .map_err(|e| file_error("client CA", ca)(e.to_string()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // with_single_cert checks that the key matches the certificate.
    Ok(builder.with_single_cert(chain, key)?)
}
