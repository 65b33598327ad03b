//! Flags shared by the binaries (policy file, snapshot mode, clock, output format) and the
//! loading they imply.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use thiserror::Error;

use crate::policy::{Policy, PolicyError};
use crate::snapshot::{Snapshot, SnapshotError, load_snapshot_file};

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy file (YAML). Without it the built-in default policy applies.
    #[arg(long, env = "REALLOAD_POLICY")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SnapshotArgs {
    /// Read cluster state from this `kubectl get ... -A -o json|yaml` List instead of the API;
    /// nothing is written to any cluster.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Fix the clock (RFC 3339), so that staleness is reproducible.
    #[arg(long, value_parser = parse_timestamp)]
    pub now: Option<Timestamp>,
}

impl SnapshotArgs {
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// A human-readable table.
    #[default]
    Table,
    /// JSON, in the documented shape.
    Json,
}

pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|e| {
        if crate::reading::looks_like_rfc3339(text) {
            format!("{text:?} is outside the supported range (years 0001 to 9999, up to 9999-12-30): {e}")
        } else {
            format!("{text:?} is not an RFC 3339 timestamp (e.g. 2026-11-22T01:05:00Z): {e}")
        }
    })
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("policy file {path}: {source}")]
    PolicyRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file {path}: {source}")]
    Policy {
        path: String,
        #[source]
        source: PolicyError,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Loads the policy file, or the built-in default when none is given.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, LoadError> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::PolicyRead {
        path: path.display().to_string(),
        source,
    })?;
    Policy::from_yaml(&text).map_err(|source| LoadError::Policy {
        path: path.display().to_string(),
        source,
    })
}

pub fn load_snapshot(path: &Path) -> Result<Snapshot, LoadError> {
    Ok(load_snapshot_file(path)?)
}

/// Writes a report to stdout. Unlike `print!`, a full disk is an error the caller reports, not a
/// panic; a reader that closed the pipe early (`realload … | head`) has what it wanted, so that
/// is success, quietly.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    write_report(&mut std::io::stdout().lock(), text)
}

fn write_report(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    let written = out.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    });
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_success_and_a_full_disk_an_error() {
        struct Failing(std::io::ErrorKind);
        impl std::io::Write for Failing {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(self.0.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(write_report(&mut Failing(std::io::ErrorKind::BrokenPipe), "x").is_ok());
        assert!(write_report(&mut Failing(std::io::ErrorKind::StorageFull), "x").is_err());
        let mut buf = Vec::new();
        write_report(&mut buf, "a").unwrap();
        assert_eq!(buf, b"a\n");
    }

    #[test]
    fn policy_errors_name_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("realload-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("policy.yaml");
        std::fs::write(&file, "guards: {unknownLoad: 3}\n").unwrap();
        let e = load_policy(Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("policy.yaml") && e.contains("guards.unknownLoad"),
            "{e}"
        );
        let missing = load_policy(Some(&dir.join("absent.yaml")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent.yaml"), "{missing}");
        assert_eq!(load_policy(None).unwrap(), Policy::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamps_must_be_rfc3339() {
        assert!(parse_timestamp("2026-11-22T01:05:00Z").is_ok());
        assert!(
            parse_timestamp("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
        // a real date the clock cannot hold is not called malformed
        let e = parse_timestamp("9999-12-31T23:59:59Z").unwrap_err();
        assert!(e.contains("outside the supported range"), "{e}");
        let e = crate::reading::parse_annotation(
            "0.5,9999-12-31T23:59:59Z",
            crate::reading::AnnotationFormat::Realload,
            &jiff::tz::TimeZone::UTC,
        )
        .unwrap_err();
        assert_eq!(
            e,
            crate::reading::ReadingError::TimestampOutOfRange("9999-12-31T23:59:59Z".into())
        );
    }
}
