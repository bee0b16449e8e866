//! Stratum over TLS: the optional second listener's certificate and key.
//!
//! Miners that speak `stratum+ssl://` connect to `[tls] listen`; after the
//! handshake the connection is served exactly as on the plain port. Behind a
//! TLS-terminating load balancer use the plain port with PROXY protocol
//! instead: the TLS listener does not read PROXY headers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ServerConfig, crypto};

/// The `[tls]` section: absent, no TLS listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Where TLS miners connect (e.g. `0.0.0.0:3443`).
    pub listen: SocketAddr,
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why the TLS listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("tls.{field} {path}: {detail}")]
    File {
        /// `cert_file` or `key_file`.
        field: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("tls: {0}")]
    Config(String),
}

impl TlsConfig {
    /// Reads the certificate and key and builds the acceptor (TLS 1.2 and
    /// 1.3, no client certificates).
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let file_error = |field: &'static str, path: &Path, detail: String| TlsError::File {
            field,
            path: path.display().to_string(),
            detail,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .map_err(|e| file_error("cert_file", &self.cert_file, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error("cert_file", &self.cert_file, e.to_string()))?;
        if certs.is_empty() {
            return Err(file_error(
                "cert_file",
                &self.cert_file,
                "no CERTIFICATE in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| file_error("key_file", &self.key_file, e.to_string()))?;
        let config =
            ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
