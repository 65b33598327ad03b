//! The Kubernetes client, built one way for every binary (feature `kube`).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Build(#[source] kube::Error),
}

/// What kube does with a throttled or briefly unavailable answer (429, 503, 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Retry it with backoff (watches, node patches, bindings).
    Retry,
    /// Return it at once: an eviction refused by a PodDisruptionBudget is a 429 and must never
    /// be hammered.
    Return,
}

/// The client from the in-cluster service account or `KUBECONFIG`.
pub async fn build(throttled: Throttled) -> Result<kube::Client, ClientError> {
    let mut config = kube::Config::infer().await.map_err(ClientError::Config)?;
    config.default_retry = throttled == Throttled::Retry;
    kube::Client::try_from(config).map_err(ClientError::Build)
}
