//! TLS for the extender's listeners: the server configuration (with client-certificate
//! verification when a client CA is given) and its reload when the files change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::reload::spawn_file_reload;

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// The certificate files of one listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert.clone(), self.key.clone()];
        v.extend(self.client_ca.clone());
        v
    }
}

/// The rustls server configuration: our certificate, and client-certificate verification
/// against `client_ca` when given (so that only kube-scheduler can call).
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("adding a CA certificate from {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the client-certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads the listener's TLS configuration and keeps it current: the files are re-read when
/// they change (e.g. when cert-manager rotates them); bad new files are logged and the
/// certificate in force stays.
pub fn reloading_config(
    files: &TlsFiles,
    shutdown: CancellationToken,
) -> anyhow::Result<(RustlsConfig, tokio::task::JoinHandle<()>)> {
    let config = RustlsConfig::from_config(tls_config(
        &files.cert,
        &files.key,
        files.client_ca.as_deref(),
    )?);
    let reloaded = config.clone();
    let f = files.clone();
    let task = spawn_file_reload(
        "tls",
        files.paths(),
        Duration::from_secs(10),
        shutdown,
        move |_| match tls_config(&f.cert, &f.key, f.client_ca.as_deref()) {
            Ok(c) => {
                reloaded.reload_from_config(c);
                info!(cert = %f.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "new TLS files rejected; keeping the certificate in force")
            }
        },
    );
    Ok((config, task))
}
