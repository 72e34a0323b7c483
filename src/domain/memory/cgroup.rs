//! The memory cgroup Slurm enforces against: finding a process's cgroup (v1 memory hierarchy
//! or cgroup2) and reading its usage, peak, effective limit and OOM-kill count.
//!
//! Reads control files only: it never creates, writes or removes cgroups (only its live tests
//! do, on a cgroup of their own), and it keeps no samples (a kernel without a peak file gives
//! `None`; keeping the highest sampled usage is the sampler's job).

use std::path::{Path, PathBuf};

use super::mounts::{locate, parse_cgroup_mounts, parse_proc_cgroup};
use super::{FileError, ParseError, read_optional, read_parsed, read_parsed_optional};

/// A v1 limit at or above this is "no limit": the kernel shows PAGE_COUNTER_MAX rounded down
/// to a page (9223372036854771712 with 4 KiB pages).
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn usage_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        }
    }

    fn peak_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        }
    }

    fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }

    fn events_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        }
    }
}

/// One memory cgroup directory, as seen under some root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCgroup {
    pub version: Version,
    /// Absolute directory of the cgroup (under the root it was discovered from).
    pub dir: PathBuf,
    /// The controller's mount point (under the same root): walking up stops there.
    mount: PathBuf,
}

/// A memory limit and the cgroup directory that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub at: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{path} puts the process in memory cgroup {cgroup}, which is not below what the cgroup \
         mount at {mount_point} shows ({mount_root}); its memory cannot be measured from here \
         (in a container, bind-mount the host's cgroup tree or run the tool outside it)"
    )]
    Outside {
        path: PathBuf,
        cgroup: String,
        mount_point: PathBuf,
        mount_root: String,
    },
}

impl MemoryCgroup {
    /// Finds the memory cgroup of `pid` (or "self") from ROOT/proc/PID/cgroup and
    /// ROOT/proc/PID/mountinfo; Ok(None) when there is no memory controller.
    ///
    /// A v1 hierarchy with `memory` wins (hybrid machines also mount a controller-less
    /// cgroup2); otherwise cgroup2, if its `cgroup.controllers` (when present) lists memory.
    pub fn discover(root: &Path, pid: &str) -> Result<Option<MemoryCgroup>, CgroupError> {
        let proc_dir = root.join("proc").join(pid);
        let cgroup_file = proc_dir.join("cgroup");
        let lines = read_parsed(&cgroup_file, parse_proc_cgroup)?;
        let mounts = read_parsed(&proc_dir.join("mountinfo"), parse_cgroup_mounts)?;
        let located = match locate(&lines, &mounts) {
            Ok(Some(located)) => located,
            Ok(None) => return Ok(None),
            Err(outside) => {
                return Err(CgroupError::Outside {
                    path: cgroup_file,
                    cgroup: outside.cgroup,
                    mount_point: outside.mount.mount_point,
                    mount_root: outside.mount.root,
                });
            }
        };
        let mount = under_root(root, &located.mount_point);
        let dir = mount.join(&located.relative);
        if located.v2 {
            let controllers = read_optional(&dir.join("cgroup.controllers"))?;
            if controllers.is_some_and(|text| !lists_memory(&text)) {
                return Ok(None);
            }
        }
        let version = if located.v2 { Version::V2 } else { Version::V1 };
        Ok(Some(MemoryCgroup::at(version, dir, mount)))
    }

    /// For tests and for a cgroup we created.
    pub fn at(version: Version, dir: PathBuf, mount: PathBuf) -> MemoryCgroup {
        MemoryCgroup {
            version,
            dir,
            mount,
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Bytes charged now (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub fn usage(&self) -> std::io::Result<u64> {
        Ok(read_parsed(
            &self.dir.join(self.version.usage_file()),
            parse_bytes,
        )?)
    }

    /// What the cgroup holds that the kernel could not simply drop: usage less the inactive
    /// file cache (v1 `total_inactive_file`, v2 `inactive_file` of `memory.stat`), the
    /// working set as cAdvisor counts it. Cache of inputs and outputs stays charged until the
    /// limit nears, so usage alone overstates what a run needs and would hold workers back.
    pub fn working_set(&self) -> std::io::Result<u64> {
        let usage = self.usage()?;
        let key = match self.version {
            Version::V1 => "total_inactive_file",
            Version::V2 => "inactive_file",
        };
        let inactive = read_parsed_optional(&self.dir.join("memory.stat"), |t| parse_key(t, key))?
            .flatten()
            .unwrap_or(0);
        Ok(usage.saturating_sub(inactive))
    }

    /// Highest charge since the cgroup was made (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`); None when the kernel has no such file (v2 before Linux 5.19).
    pub fn peak(&self) -> std::io::Result<Option<u64>> {
        Ok(read_parsed_optional(
            &self.dir.join(self.version.peak_file()),
            parse_bytes,
        )?)
    }

    /// The limit that binds this cgroup: the smallest real limit of this directory and its
    /// ancestors up to the mount (a step can set more than its job, and the job's still
    /// applies); on a tie the nearest directory. v1: `memory.limit_in_bytes` below 2^62
    /// (memory only, not memory+swap), and no walking past a cgroup with
    /// `memory.use_hierarchy` 0. v2: `memory.max` other than `max`.
    pub fn limit(&self) -> std::io::Result<Option<Limit>> {
        let parse = |text: &str| parse_limit(self.version, text);
        let mut best: Option<Limit> = None;
        let mut dir = self.dir.as_path();
        loop {
            let file = dir.join(self.version.limit_file());
            let at_mount = dir == self.mount;
            // The root of a cgroup2 tree has no memory.max.
            let bytes = if at_mount {
                read_parsed_optional(&file, parse)?.flatten()
            } else {
                read_parsed(&file, parse)?
            };
            if let Some(bytes) = bytes {
                if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                    best = Some(Limit {
                        bytes,
                        at: dir.to_path_buf(),
                    });
                }
            }
            if at_mount || !self.charges_parent(dir)? {
                break;
            }
            match dir.parent() {
                Some(parent) if parent.starts_with(&self.mount) => dir = parent,
                _ => break,
            }
        }
        Ok(best)
    }

    /// Whether `dir`'s charges count against its parent's limit: always in v2; in v1 unless
    /// hierarchical accounting is off (`memory.use_hierarchy` 0, possible before Linux 5.16).
    fn charges_parent(&self, dir: &Path) -> std::io::Result<bool> {
        if self.version == Version::V2 {
            return Ok(true);
        }
        let flag = read_parsed_optional(&dir.join("memory.use_hierarchy"), parse_bytes)?;
        Ok(flag != Some(0))
    }

    /// Processes the kernel's OOM killer killed here: v2 `memory.events` `oom_kill`, counting
    /// this cgroup and its descendants; v1 `memory.oom_control` `oom_kill`, which counts only
    /// kills of processes in this very cgroup (not in children, even when the limit hit was
    /// this one's), so ask the process's own cgroup. None when the kernel does not count.
    pub fn oom_kills(&self) -> std::io::Result<Option<u64>> {
        Ok(
            read_parsed_optional(&self.dir.join(self.version.events_file()), parse_oom_kill)?
                .flatten(),
        )
    }
}

/// `/sys/fs/cgroup/memory` seen under `root`.
fn under_root(root: &Path, absolute: &Path) -> PathBuf {
    root.join(absolute.strip_prefix("/").unwrap_or(absolute))
}

/// A control file holding one byte count.
pub fn parse_bytes(text: &str) -> Result<u64, ParseError> {
    let value = text.trim();
    value.parse().map_err(|_| ParseError::BadLine {
        line: 1,
        text: value.to_string(),
        expected: "a byte count",
    })
}

/// A limit file: None when it sets no limit (v1 2^62 or more, v2 `max`).
pub fn parse_limit(version: Version, text: &str) -> Result<Option<u64>, ParseError> {
    match version {
        Version::V1 => parse_bytes(text).map(|b| (b < V1_UNLIMITED).then_some(b)),
        Version::V2 if text.trim() == "max" => Ok(None),
        Version::V2 => parse_bytes(text).map(Some),
    }
}

/// The `oom_kill N` line of v1 `memory.oom_control` or v2 `memory.events` (flat `key value`
/// lines); None when there is none (v1 before Linux 4.13).
pub fn parse_oom_kill(text: &str) -> Result<Option<u64>, ParseError> {
    parse_key(text, "oom_kill")
}

/// The value of `key` in a flat `key value` file (`memory.stat`, `memory.events`); None
/// when the key is absent.
pub fn parse_key(text: &str, key: &str) -> Result<Option<u64>, ParseError> {
    for (index, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }
        let value = fields.next().and_then(|v| v.parse().ok());
        return match (value, fields.next()) {
            (Some(value), None) => Ok(Some(value)),
            _ => Err(ParseError::BadLine {
                line: index + 1,
                text: line.to_string(),
                expected: "`key N`",
            }),
        };
    }
    Ok(None)
}

/// Whether a `cgroup.controllers` file lists the memory controller.
pub fn lists_memory(controllers: &str) -> bool {
    controllers.split_whitespace().any(|c| c == "memory")
}

#[cfg(test)]
mod tests;
