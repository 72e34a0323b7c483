//! What gen asks the cluster: `MaxArraySize` from `scontrol show config`, and the CPUs of
//! a partition's nodes from `scontrol -o show partition` / `scontrol -o show node`.
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
    #[error("{program} output has no {what}")]
    NotFound { program: String, what: &'static str },
}

/// The partition marked `Default=YES` in `scontrol -o show partition` output.
pub fn parse_default_partition(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let fields = fields(line);
        (field(&fields, "Default") == Some("YES"))
            .then(|| field(&fields, "PartitionName").map(str::to_string))
            .flatten()
    })
}

/// The CPUs of the smallest node in `partition` (every node when `None`), from
/// `scontrol -o show node` output: a task sized to it fits on any of them. `CPUEfctv`
/// (CPUs left to jobs once specialised cores are set aside) when Slurm gives it, else
/// `CPUTot`.
pub fn parse_node_cpus(text: &str, partition: Option<&str>) -> Option<usize> {
    text.lines()
        .filter_map(|line| {
            let fields = fields(line);
            field(&fields, "NodeName")?;
            if let Some(p) = partition
                && !field(&fields, "Partitions").is_some_and(|ps| ps.split(',').any(|x| x == p))
            {
                return None;
            }
            field(&fields, "CPUEfctv")
                .or_else(|| field(&fields, "CPUTot"))?
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
        })
        .min()
}

fn fields(line: &str) -> Vec<(&str, &str)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn field<'a>(fields: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// The CPUs of the smallest node of `partition` (the default partition when `None`).
pub fn query_node_cpus(
    scontrol: &Path,
    partition: Option<&str>,
    timeout: Duration,
) -> Result<(String, usize), QueryError> {
    let program = scontrol.display().to_string();
    let partition = match partition {
        Some(p) => p.to_string(),
        None => parse_default_partition(&ask(scontrol, &["-o", "show", "partition"], timeout)?)
            .ok_or_else(|| QueryError::NotFound {
                program: program.clone(),
                what: "a default partition",
            })?,
    };
    let nodes = ask(scontrol, &["-o", "show", "node"], timeout)?;
    let cpus = parse_node_cpus(&nodes, Some(&partition)).ok_or(QueryError::NotFound {
        program,
        what: "a node of the partition",
    })?;
    Ok((partition, cpus))
}

/// Runs `<scontrol> show config` and parses its `MaxArraySize`, giving up after `timeout`.
pub fn query_max_array_size(scontrol: &Path, timeout: Duration) -> Result<usize, QueryError> {
    let program = scontrol.display().to_string();
    let text = ask(scontrol, &["show", "config"], timeout)?;
    parse_max_array_size(&text).ok_or(QueryError::NotFound {
        program,
        what: "a MaxArraySize line",
    })
}

/// `<scontrol> ARGS`'s standard output, giving up after `timeout`.
fn ask(scontrol: &Path, args: &[&str], timeout: Duration) -> Result<String, QueryError> {
    let program = scontrol.display().to_string();
    let mut cmd = Command::new(scontrol);
    cmd.args(args);
    let out = crate::base::timed_command::output_within(&mut cmd, timeout)
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
    Ok(text)
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

    #[test]
    fn parses_partitions_and_nodes() {
        let parts = "PartitionName=debug AllowGroups=ALL Default=NO Nodes=a\n\
                     PartitionName=batch AllowGroups=ALL Default=YES Nodes=n[1-2]\n";
        assert_eq!(parse_default_partition(parts), Some("batch".into()));
        assert_eq!(
            parse_default_partition("PartitionName=x Default=NO\n"),
            None
        );
        let nodes = "NodeName=n1 CPUAlloc=0 CPUEfctv=30 CPUTot=32 Partitions=batch,debug\n\
                     NodeName=n2 CPUAlloc=0 CPUTot=16 Partitions=batch\n\
                     NodeName=g1 CPUAlloc=0 CPUTot=128 Partitions=gpu\n";
        assert_eq!(parse_node_cpus(nodes, Some("batch")), Some(16));
        assert_eq!(parse_node_cpus(nodes, Some("debug")), Some(30));
        assert_eq!(parse_node_cpus(nodes, Some("gpu")), Some(128));
        assert_eq!(parse_node_cpus(nodes, Some("none")), None);
        assert_eq!(parse_node_cpus(nodes, None), Some(16));
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
