//! One loop for the files the extender re-reads when they change: the policy, and the TLS
//! certificate, key and CA (a mounted ConfigMap or Secret is updated in place).

use std::path::PathBuf;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use realload_common::policy::Policy;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::metrics::ResultLabel;

/// The contents of `paths`, `None` for a file that cannot be read.
pub fn read_all(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

/// Every `period`, reads `paths`; when their contents differ from the last ones seen, calls
/// `changed` with the new contents. The first contents are read now, not when the task first
/// runs, so a change in between is not missed. Unreadable files are logged and skipped (the
/// last good contents stay in force).
pub fn spawn_file_reload<F>(
    what: &'static str,
    paths: Vec<PathBuf>,
    period: Duration,
    shutdown: CancellationToken,
    mut changed: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(&[Vec<u8>]) + Send + 'static,
{
    let mut last = read_all(&paths);
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = read_all(&paths);
                if now == last {
                    continue;
                }
                let readable: Option<Vec<Vec<u8>>> = now.iter().cloned().collect();
                let Some(contents) = readable else {
                    for (p, c) in paths.iter().zip(&now) {
                        if c.is_none() {
                            warn!(path = %p.display(), "file unreadable; keeping what is in force");
                        }
                    }
                    continue;
                };
                last = now;
                changed(&contents);
            }
        }
        .instrument(info_span!("reload", what)),
    )
}

/// Re-reads a policy file when its content changes (the extender and the collector both do):
/// a valid policy goes to `apply`, an invalid one is logged and the policy in force stays; both
/// are counted in `reloads` by result.
pub fn spawn_policy_reload(
    path: PathBuf,
    period: Duration,
    shutdown: CancellationToken,
    reloads: Family<ResultLabel, Counter>,
    mut apply: impl FnMut(Policy) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let shown = path.display().to_string();
    spawn_file_reload("policy", vec![path], period, shutdown, move |contents| {
        let parsed = contents
            .first()
            .ok_or_else(|| "no contents".to_string())
            .and_then(|bytes| String::from_utf8(bytes.clone()).map_err(|e| e.to_string()))
            .and_then(|text| Policy::from_yaml(&text).map_err(|e| e.to_string()));
        let count = |result: &str| {
            reloads
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .inc();
        };
        match parsed {
            Ok(policy) => {
                apply(policy);
                count("ok");
                info!(path = %shown, "policy reloaded");
            }
            Err(e) => {
                count("invalid");
                error!(path = %shown, error = %e, "new policy rejected; keeping the policy in force");
            }
        }
    })
}
