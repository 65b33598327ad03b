//! Why a run stopped, and the exit status each reason maps to.

use realload_common::cli::LoadError;
use realload_common::client::ClientError;
use realload_common::whitelist::WhitelistError;
use thiserror::Error;

/// Exit statuses: 0 done (also when there was nothing to do), 1 bad input and nothing evicted,
/// 2 the API failed mid-run.
pub const EXIT_OK: u8 = 0;
pub const EXIT_BAD_INPUT: u8 = 1;
pub const EXIT_API_FAILED: u8 = 2;

#[derive(Debug, Error)]
pub enum RunError {
    /// The command line (unknown flag, bad value).
    #[error("{0}")]
    Usage(String),
    /// The policy file or the snapshot.
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{flag} {value:?} is not namespace/name")]
    BadReference { flag: &'static str, value: String },
    #[error("whitelist ConfigMap {reference}: {source}")]
    Whitelist {
        reference: String,
        #[source]
        source: WhitelistError,
    },
    #[error(
        "whitelist ConfigMap {reference} not found: create it, or pass --allow-missing-whitelist"
    )]
    WhitelistMissing { reference: String },
    #[error(
        "cooldown state ConfigMap {reference} not found: create it (deploy/base ships it empty); without it the workload cooldown could not be kept"
    )]
    StateMissing { reference: String },
    /// No usable Kubernetes configuration.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A call to the API failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: timed out after {after:?}")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },
    /// The process could not start (signal handlers, runtime, logging).
    #[error("{0}")]
    Startup(String),
}

impl RunError {
    /// The exit status: bad input of any kind is 1; a failing API is 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Api { .. } | RunError::Timeout { .. } | RunError::Startup(_) => {
                EXIT_API_FAILED
            }
            RunError::Usage(_)
            | RunError::Load(_)
            | RunError::BadReference { .. }
            | RunError::Whitelist { .. }
            | RunError::WhitelistMissing { .. }
            | RunError::StateMissing { .. }
            | RunError::Client(_) => EXIT_BAD_INPUT,
        }
    }
}
