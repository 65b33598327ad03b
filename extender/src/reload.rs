//! One loop for the files the extender re-reads when they change: the policy, and the TLS
//! certificate, key and CA (a mounted ConfigMap or Secret is updated in place).

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

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
