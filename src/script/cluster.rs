//! What gen asks the cluster: `MaxArraySize` from `scontrol show config`.
//!
//! Reading is kept apart from parsing (as HyperQueue does): [`parse_max_array_size`] is pure
//! and unit-tested on text; [`query_max_array_size`] runs scontrol with a deadline and kills
//! it (its own child, by handle) when the controller does not answer in time.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Slurm's default `MaxArraySize`, assumed when the cluster cannot be asked.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// How long scontrol may take before gen assumes the default.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Finds `MaxArraySize = N` in `scontrol show config` output.
pub fn parse_max_array_size(text: &str) -> Option<usize> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "MaxArraySize")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Why the cluster could not be asked; gen then falls back to the default and says why.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not answer within {} s", timeout.as_secs_f64())]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status})")]
    Failed { program: String, status: String },
    #[error("{program} output has no MaxArraySize line")]
    NotFound { program: String },
}

/// Runs `<scontrol> show config` and parses its `MaxArraySize`, giving up after `timeout`.
pub fn query_max_array_size(scontrol: &Path, timeout: Duration) -> Result<usize, QueryError> {
    let program = scontrol.display().to_string();
    let mut cmd = Command::new(scontrol);
    cmd.args(["show", "config"]);
    let out = crate::deadline::output_within(&mut cmd, timeout)
        .map_err(|source| QueryError::Spawn {
            program: program.clone(),
            source,
        })?
        .ok_or_else(|| QueryError::Timeout {
            program: program.clone(),
            timeout,
        })?;
    let (status, text) = (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    );
    if !status.success() {
        return Err(QueryError::Failed {
            program,
            status: status.to_string(),
        });
    }
    parse_max_array_size(&text).ok_or(QueryError::NotFound { program })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_scontrol_output() {
        let text = "Configuration data as of 2024-01-01T00:00:00\n\
                    MailProg                = /bin/mail\n\
                    MaxArraySize            = 1001\n\
                    MaxArraySizeX = 7\n\
                    MaxJobCount             = 10000\n";
        assert_eq!(parse_max_array_size(text), Some(1001));
        assert_eq!(parse_max_array_size("MaxArraySize=40001"), Some(40001));
        assert_eq!(parse_max_array_size("MaxJobCount = 5\n"), None);
        assert_eq!(parse_max_array_size("MaxArraySize = lots\n"), None);
    }

    fn fake(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("scontrol");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A script written just now can be briefly "text file busy" while another test thread
    /// forks; retry that one error.
    fn query(scontrol: &Path, timeout: Duration) -> Result<usize, QueryError> {
        for _ in 0..50 {
            match query_max_array_size(scontrol, timeout) {
                Err(QueryError::Spawn { source, .. }) if source.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other,
            }
        }
        query_max_array_size(scontrol, timeout)
    }

    #[test]
    fn asks_a_live_scontrol() {
        let dir = tempfile::tempdir().unwrap();
        let ok = fake(dir.path(), "echo 'MaxArraySize = 77'");
        assert_eq!(query(&ok, QUERY_TIMEOUT).unwrap(), 77);
    }

    #[test]
    fn slow_or_failing_scontrol_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let slow = fake(dir.path(), "exec sleep 30");
        let started = std::time::Instant::now();
        let e = query(&slow, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, QueryError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let dir = tempfile::tempdir().unwrap();
        let failing = fake(dir.path(), "echo 'slurm_load_ctl_conf error' >&2; exit 1");
        let e = query(&failing, QUERY_TIMEOUT).unwrap_err();
        assert!(matches!(e, QueryError::Failed { .. }), "{e}");
        let e = query_max_array_size(&dir.path().join("nope"), QUERY_TIMEOUT).unwrap_err();
        assert!(matches!(e, QueryError::Spawn { .. }), "{e}");
    }
}
