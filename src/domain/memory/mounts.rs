//! Where a process's memory cgroup is, from the text of `/proc/PID/cgroup` and
//! `/proc/PID/mountinfo`: pure parsers and the choice between a v1 memory hierarchy and
//! cgroup2.
//!
//! Pure functions of strings only: no file access (the caller reads the files and checks
//! `cgroup.controllers`), no knowledge of control files.

use std::path::{Component, Path, PathBuf};

use super::ParseError;

/// One line of `/proc/PID/cgroup`: `4:memory:/slurm_localhost/...` or v2 `0::/user.slice/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy: u32,
    /// Controllers of a v1 hierarchy (`name=systemd` included as written); empty for v2.
    pub controllers: Vec<String>,
    /// Path from the hierarchy's root, as the process's cgroup namespace sees it.
    pub path: String,
}

/// A cgroup (v1) or cgroup2 mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The cgroup shown at the mount point (field 4): `/` unless a container bind-mounts a
    /// sub-cgroup.
    pub root: String,
    pub mount_point: PathBuf,
    /// `cgroup` or `cgroup2`.
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// Which hierarchy holds memory, and where the process's cgroup is relative to its mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub v2: bool,
    pub mount_point: PathBuf,
    /// The process's cgroup below `mount_point` (empty when it is the mount's root).
    pub relative: PathBuf,
}

/// The process's memory cgroup is not below the mount's root: its files are not visible here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    pub cgroup: String,
    pub mount: CgroupMount,
}

pub fn parse_proc_cgroup(text: &str) -> Result<Vec<CgroupLine>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let bad = || ParseError::BadLine {
                line: index + 1,
                text: line.to_string(),
                expected: "`ID:CONTROLLERS:PATH`",
            };
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let controllers = parts.next().ok_or_else(bad)?;
            let path = parts.next().ok_or_else(bad)?;
            // v2 marks a removed cgroup that still has zombies.
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            Ok(CgroupLine {
                hierarchy,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// The `cgroup` and `cgroup2` mounts of a mountinfo file, in file order.
pub fn parse_cgroup_mounts(text: &str) -> Result<Vec<CgroupMount>, ParseError> {
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
        let dash = fields.iter().skip(6).position(|f| *f == "-").map(|i| i + 6);
        let Some(dash) = dash.filter(|d| fields.len() >= d + 4) else {
            return Err(ParseError::BadLine {
                line: index + 1,
                text: line.to_string(),
                expected: "a mountinfo line",
            });
        };
        let fstype = fields[dash + 1];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        mounts.push(CgroupMount {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fstype.to_string(),
            super_options: fields[dash + 3].split(',').map(str::to_string).collect(),
        });
    }
    Ok(mounts)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        if let Some(d) = octal {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Chooses the memory hierarchy: a v1 hierarchy whose controllers include `memory` when the
/// process is in one and it is mounted (hybrid machines), else the cgroup2 mount. `Ok(None)`
/// when neither is there. Whether cgroup2 really has the memory controller is for the caller
/// to check in `cgroup.controllers`.
pub fn locate(lines: &[CgroupLine], mounts: &[CgroupMount]) -> Result<Option<Located>, Outside> {
    let v1 = lines
        .iter()
        .find(|l| l.hierarchy != 0 && l.controllers.iter().any(|c| c == "memory"));
    if let Some(line) = v1 {
        let candidates: Vec<&CgroupMount> = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == "memory"))
            .collect();
        if !candidates.is_empty() {
            return place(line, &candidates, false).map(Some);
        }
    }
    let v2 = lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty());
    let candidates: Vec<&CgroupMount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    match v2 {
        Some(line) if !candidates.is_empty() => place(line, &candidates, true).map(Some),
        _ => Ok(None),
    }
}

/// The mount (of the same hierarchy) whose root is the nearest ancestor of the cgroup.
fn place(line: &CgroupLine, mounts: &[&CgroupMount], v2: bool) -> Result<Located, Outside> {
    mounts
        .iter()
        .filter_map(|m| Some((m, below(&line.path, &m.root)?)))
        .min_by_key(|(_, relative)| relative.components().count())
        .map(|(m, relative)| Located {
            v2,
            mount_point: m.mount_point.clone(),
            relative,
        })
        .ok_or_else(|| Outside {
            cgroup: line.path.clone(),
            mount: mounts[0].clone(),
        })
}

/// `path` relative to `root`, comparing whole components; `None` when it is not below it
/// (including a `/..` path from another cgroup namespace).
fn below(path: &str, root: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if path.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    path.strip_prefix(root).ok().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::memory::fixture;

    fn read(rel: &str) -> String {
        std::fs::read_to_string(fixture(rel)).unwrap()
    }

    fn mount(root: &str, point: &str, fstype: &str, opts: &str) -> CgroupMount {
        CgroupMount {
            root: root.into(),
            mount_point: point.into(),
            fstype: fstype.into(),
            super_options: opts.split(',').map(str::to_string).collect(),
        }
    }

    #[test]
    fn proc_cgroup_lines_of_a_hybrid_machine() {
        let lines = parse_proc_cgroup(&read("v1-hybrid-slurm/proc/self/cgroup")).unwrap();
        assert_eq!(lines.len(), 10);
        assert_eq!(
            lines[0],
            CgroupLine {
                hierarchy: 9,
                controllers: vec!["name=systemd".into()],
                path: "/".into()
            }
        );
        assert_eq!(
            lines[5],
            CgroupLine {
                hierarchy: 4,
                controllers: vec!["memory".into()],
                path: "/slurm_localhost/uid_0/job_5/step_0/task_0".into()
            }
        );
        assert_eq!(
            lines[9],
            CgroupLine {
                hierarchy: 0,
                controllers: vec![],
                path: "/".into()
            }
        );
    }

    #[test]
    fn proc_cgroup_co_mounted_controllers_and_deleted_v2_cgroups() {
        let lines = parse_proc_cgroup("3:cpu,cpuacct:/a:b\n0::/gone (deleted)\n").unwrap();
        assert_eq!(lines[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(lines[0].path, "/a:b");
        assert_eq!(lines[1].path, "/gone");
        assert!(matches!(
            parse_proc_cgroup("memory:/x\n"),
            Err(ParseError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn mountinfo_of_a_hybrid_machine_lists_every_cgroup_mount() {
        let mounts = parse_cgroup_mounts(&read("v1-hybrid-slurm/proc/self/mountinfo")).unwrap();
        assert_eq!(mounts.len(), 10);
        assert!(mounts.contains(&mount("/", "/sys/fs/cgroup/memory", "cgroup", "rw,memory")));
        assert!(mounts.contains(&mount("/", "/sys/fs/cgroup/unified", "cgroup2", "rw")));
    }

    #[test]
    fn mountinfo_optional_fields_and_escapes() {
        let text = "35 24 0:30 /a\\040b /sys/fs/cgroup rw,nosuid shared:9 master:2 - cgroup2 \
                    cgroup2 rw,nsdelegate\n";
        let mounts = parse_cgroup_mounts(text).unwrap();
        assert_eq!(
            mounts,
            [mount("/a b", "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate")]
        );
        assert_eq!(unescape("x\\134y\\0"), "x\\y\\0");
        assert!(matches!(
            parse_cgroup_mounts("1 2 3 / /x rw\n"),
            Err(ParseError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn hybrid_machines_pick_the_v1_memory_hierarchy() {
        let lines = parse_proc_cgroup(&read("v1-hybrid-slurm/proc/self/cgroup")).unwrap();
        let mounts = parse_cgroup_mounts(&read("v1-hybrid-slurm/proc/self/mountinfo")).unwrap();
        assert_eq!(
            locate(&lines, &mounts),
            Ok(Some(Located {
                v2: false,
                mount_point: "/sys/fs/cgroup/memory".into(),
                relative: "slurm_localhost/uid_0/job_5/step_0/task_0".into(),
            }))
        );
    }

    #[test]
    fn a_container_mount_root_is_stripped_from_the_cgroup_path() {
        let lines = parse_proc_cgroup(&read("v1-container/proc/self/cgroup")).unwrap();
        let mounts = parse_cgroup_mounts(&read("v1-container/proc/self/mountinfo")).unwrap();
        let located = locate(&lines, &mounts).unwrap().unwrap();
        assert_eq!(located.relative, Path::new("step_0/task_0"));
        assert_eq!(located.mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn mount_roots_match_whole_components_and_the_nearest_wins() {
        let lines = parse_proc_cgroup("4:memory:/job_90/step_0\n").unwrap();
        let outside = mount("/job_9", "/sys/fs/cgroup/memory", "cgroup", "rw,memory");
        assert_eq!(
            locate(&lines, std::slice::from_ref(&outside)),
            Err(Outside {
                cgroup: "/job_90/step_0".into(),
                mount: outside.clone(),
            })
        );
        let whole = mount("/", "/mnt/all", "cgroup", "rw,memory");
        let job = mount("/job_90", "/mnt/job", "cgroup", "rw,memory");
        let located = locate(&lines, &[outside, whole, job]).unwrap().unwrap();
        assert_eq!(
            (located.mount_point, located.relative),
            ("/mnt/job".into(), "step_0".into())
        );
        let other_namespace = parse_proc_cgroup("0::/../sibling\n").unwrap();
        assert!(locate(&other_namespace, &[mount("/", "/c", "cgroup2", "rw")]).is_err());
    }

    #[test]
    fn pure_v2_machines_pick_the_cgroup2_mount() {
        let lines = parse_proc_cgroup(&read("v2/proc/self/cgroup")).unwrap();
        let mounts = parse_cgroup_mounts(&read("v2/proc/self/mountinfo")).unwrap();
        assert_eq!(
            locate(&lines, &mounts),
            Ok(Some(Located {
                v2: true,
                mount_point: "/sys/fs/cgroup".into(),
                relative: "system.slice/slurmstepd.scope/job_7/step_0/user/task_0".into(),
            }))
        );
    }

    #[test]
    fn no_memory_hierarchy_and_no_cgroup2_is_none() {
        let lines = parse_proc_cgroup("4:memory:/a\n0::/\n").unwrap();
        let cpu_only = [mount("/", "/sys/fs/cgroup/cpu", "cgroup", "rw,cpu")];
        assert_eq!(locate(&lines, &cpu_only), Ok(None));
        assert_eq!(locate(&[], &cpu_only), Ok(None));
    }
}
