//! TLS for the listeners (rustls with ring): a certificate chain and key from PEM files,
//! optionally a CA that clients must present a certificate from (mutual TLS), re-read when
//! the files change so certificates rotate without a restart.
//!
//! A bad file at start is an error (the daemon does not come up half-secured); a bad file
//! later is logged and the last good configuration kept (a half-written rotation must not
//! take the listener down).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::watch;

/// The PEM files of one listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate this CA bundle signed.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{0}")]
    Rustls(String),
}

/// ALPN for gRPC (HTTP/2 only).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for the HTTP/1.1 listeners.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem("no CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads the files into a server configuration offering `alpn`.
    pub fn load(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|e| TlsError::Pem {
            path: self.key.clone(),
            message: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| TlsError::Pem {
                        path: ca.clone(),
                        message: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Rustls(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(format!("certificate and key: {e}")))?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key].into_iter().chain(&self.client_ca)
    }

    /// What identifies the files' current contents cheaply: modification times and sizes.
    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.paths()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }
}

/// A listener's TLS configuration, swapped when its files change.
#[derive(Clone)]
pub struct Reloading {
    current: watch::Receiver<Arc<ServerConfig>>,
}

/// How often the files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

impl Reloading {
    /// Loads the files (an error here is fatal) and watches them from a background task.
    /// Must be called inside a tokio runtime.
    pub fn start(
        files: TlsFiles,
        alpn: &'static [&'static [u8]],
        what: &'static str,
    ) -> Result<Reloading, TlsError> {
        let (tx, rx) = watch::channel(files.load(alpn)?);
        tokio::spawn(async move {
            let mut seen = files.stamp();
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if tx.is_closed() {
                    return;
                }
                let now = files.stamp();
                if now == seen {
                    continue;
                }
                seen = now;
                match files.load(alpn) {
                    Ok(cfg) => {
                        tracing::info!(what, cert = %files.cert.display(), "TLS files changed: reloaded");
                        let _ = tx.send(cfg);
                    }
                    Err(e) => tracing::warn!(
                        what, %e,
                        "TLS files changed but cannot be used; the previous ones stay in force"
                    ),
                }
            }
        });
        Ok(Reloading { current: rx })
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_say_which_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let files = |cert: &Path, key: &Path| TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: None,
        };
        let missing = dir.path().join("missing.pem");
        let e = files(&missing, &junk).load(ALPN_HTTP1).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = files(&junk, &junk).load(ALPN_HTTP1).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
    }
}
