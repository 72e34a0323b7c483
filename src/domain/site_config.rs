//! The site configuration file (YAML): what a cluster's defaults are for `pseg-slurm gen`.
//!
//! Owns the serde structs, loading with errors that name the file, the line and the key,
//! and the annotated example printed by `pseg-slurm config init` (the same text as
//! `slurm/site.example.yaml`). Every key is optional; an unknown key is an error, never
//! ignored. Relative paths in the file are resolved against the file's own folder here, so
//! later stages only see absolute paths. This module does not merge command-line flags (see
//! `script::settings`) and does not check that paths exist.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::base::units::{Percent, Percentile, Size, TimeLimit};

/// The annotated example, printed by `pseg-slurm config init`.
pub const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/slurm/site.example.yaml"
));

/// The largest site config read; real ones are a few KiB.
pub const MAX_BYTES: u64 = 1 << 20;

/// How the granules are spread over Slurm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A job array: each element processes one chunk of granules.
    Array,
    /// One job of several tasks (`srun`): each task claims the next unclaimed granule until
    /// none are left.
    Tasks,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Array => "array",
            Mode::Tasks => "tasks",
        }
    }
}

/// A site configuration as written; see `slurm/site.example.yaml` for every key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub time: Option<TimeLimit>,
    pub cpus_per_task: Option<NonZeroU32>,
    /// Memory for one pseg-step (all its CPUs) when nothing is measured.
    pub memory: Option<Size>,
    pub job_name: Option<String>,

    pub headroom: Option<Percent>,
    pub percentile: Option<Percentile>,
    /// Efficiency a CPU count must keep for gen to choose it from `--profile`.
    pub min_efficiency: Option<crate::domain::plan::Efficiency>,

    pub mode: Option<Mode>,
    pub granules_per_task: Option<NonZeroUsize>,
    pub array_limit: Option<NonZeroU32>,
    pub max_array_size: Option<usize>,
    pub ntasks: Option<NonZeroUsize>,

    pub clavrxorb: Option<PathBuf>,
    pub options: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub pseg_step: Option<PathBuf>,
    pub max_workers: Option<NonZeroUsize>,
    pub max_lead: Option<NonZeroUsize>,
    pub scan_lines: Option<NonZeroUsize>,
    pub stall_timeout: Option<NonZeroUsize>,
    pub serial: Option<bool>,
    pub keep_work: Option<bool>,
    /// More pseg-step arguments, verbatim (e.g. `--mem-admission off`).
    #[serde(default)]
    pub step_args: Vec<String>,

    pub container_image: Option<PathBuf>,
    pub container_runtime: Option<String>,
    #[serde(default)]
    pub container_binds: Vec<PathBuf>,

    pub template_dir: Option<PathBuf>,
    #[serde(default)]
    pub extra_sbatch: Vec<String>,
    #[serde(default)]
    pub setup: Vec<String>,
}

/// A site config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read site config {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "site config {path}, line {line}: unknown key `{key}`{}; \
         `pseg-slurm config init` prints every valid key",
        hint(suggestion)
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        suggestion: Option<String>,
    },
    #[error("site config {path}, line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("site config {path}: {message}")]
    Malformed { path: PathBuf, message: String },
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl SiteConfig {
    /// Reads and parses a config file; relative paths in it are made relative to its folder.
    pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
        let text = crate::base::bounded_read::read_text(path, MAX_BYTES).map_err(|e| {
            ConfigError::Unreadable {
                path: path.to_path_buf(),
                source: match e {
                    crate::base::bounded_read::ReadError::Io(e) => e,
                    too_large => {
                        std::io::Error::other(format!("{too_large}; a site config is a few KiB"))
                    }
                },
            }
        })?;
        let mut config = SiteConfig::parse(&text, path)?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses config text; `path` is only used in messages. An empty file is an empty config.
    pub fn parse(text: &str, path: &Path) -> Result<SiteConfig, ConfigError> {
        match serde_yaml::from_str::<Option<SiteConfig>>(text) {
            Ok(config) => Ok(config.unwrap_or_default()),
            Err(e) => Err(describe(&e, text, path)),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            &mut self.options,
            &mut self.output_dir,
            &mut self.work_dir,
            &mut self.template_dir,
            &mut self.container_image,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        // Executables may be bare command names, looked up on PATH (or inside a container).
        for p in [&mut self.clavrxorb, &mut self.pseg_step]
            .into_iter()
            .flatten()
        {
            if !is_bare_name(p) {
                fix(p);
            }
        }
        self.container_binds.iter_mut().for_each(fix);
    }
}

/// A command name without any folder (`clavrxorb`), as opposed to a path (`./clavrxorb`).
pub fn is_bare_name(path: &Path) -> bool {
    path.is_relative() && path.components().count() == 1 && !path.starts_with(".")
}

/// Turns serde_yaml's error into one naming the file, line and (for unknown keys) the key.
fn describe(e: &serde_yaml::Error, text: &str, path: &Path) -> ConfigError {
    let full = e.to_string();
    let Some(loc) = e.location() else {
        return ConfigError::Malformed {
            path: path.to_path_buf(),
            message: full,
        };
    };
    let suffix = format!(" at line {} column {}", loc.line(), loc.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    if let Some(line) = duplicate_line(&message, text) {
        return ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            message: format!("{message}; remove one of them"),
        };
    }
    if let Some(key) = unknown_key(&message) {
        let valid = expected_keys(&message);
        return ConfigError::UnknownKey {
            path: path.to_path_buf(),
            line: loc.line(),
            suggestion: nearest(&key, &valid),
            key,
        };
    }
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line: loc.line(),
        message,
    }
}

/// serde_yaml places a duplicate key at the start of its mapping; find its second line.
fn duplicate_line(message: &str, text: &str) -> Option<usize> {
    let key = message
        .strip_prefix("duplicate field `")?
        .split('`')
        .next()?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .nth(1)
        .map(|(i, _)| i + 1)
}

/// `unknown field `partiton`, expected ...` -> `partiton` (with any `section: ` prefix).
fn unknown_key(message: &str) -> Option<String> {
    let (prefix, rest) = message.split_once("unknown field `")?;
    let key = rest.split('`').next()?;
    let section = prefix.trim_end_matches(": ");
    Some(if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    })
}

/// The valid keys serde lists after `expected one of` / `expected`.
fn expected_keys(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The valid key closest to `key` by edit distance, if it is plausibly a typo.
fn nearest(key: &str, valid: &[String]) -> Option<String> {
    let key = key.rsplit('.').next().unwrap_or(key);
    let (best, distance) = valid
        .iter()
        .map(|v| (v, edit_distance(key, v)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= key.len().max(3) / 3 + 1).then(|| best.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SiteConfig, ConfigError> {
        SiteConfig::parse(text, Path::new("/etc/site.yaml"))
    }

    #[test]
    fn example_parses_and_is_the_shipped_file() {
        let c = parse(EXAMPLE).unwrap();
        // Left to gen: chosen from --profile measurements, else its default.
        assert_eq!(c.cpus_per_task, None);
        assert_eq!(c.min_efficiency.map(|e| e.get()), Some(0.8));
        let on_disk = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/slurm/site.example.yaml"
        ))
        .unwrap();
        assert_eq!(on_disk, EXAMPLE);
    }

    #[test]
    fn empty_file_is_empty_config() {
        let c = parse("# nothing yet\n").unwrap();
        assert!(c.partition.is_none() && c.setup.is_empty());
        assert!(parse("").is_ok());
    }

    #[test]
    fn unknown_key_names_key_line_and_nearest() {
        let e = parse("partition: a\n\n# comment\npartiton: b\n").unwrap_err();
        let ConfigError::UnknownKey {
            line,
            key,
            suggestion,
            ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!((*line, key.as_str()), (4, "partiton"));
        assert_eq!(suggestion.as_deref(), Some("partition"));
        let msg = e.to_string();
        assert!(msg.contains("/etc/site.yaml, line 4"), "{msg}");
        assert!(msg.contains("unknown key `partiton`"), "{msg}");
        assert!(msg.contains("did you mean `partition`"), "{msg}");
    }

    #[test]
    fn unknown_key_far_from_any_gets_no_guess() {
        let e = parse("cpus_per_task: 2\nflux_capacitor: on\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 2: unknown key `flux_capacitor`;"),
            "{msg}"
        );
        assert!(!msg.contains("did you mean"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = parse("partition: a\ncpus_per_task: 0\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("site config /etc/site.yaml, line 2: cpus_per_task:"),
            "{msg}"
        );
        assert!(!msg.contains("column"), "{msg}");
        let e = parse("memory: 8GB\n").unwrap_err();
        assert!(e.to_string().contains("line 1: memory:"), "{e}");
        // A bare number would be bytes; Slurm users mean MB. Refused with a suggestion.
        let e = parse("partition: a\nmemory: 4000\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 2: memory:"), "{msg}");
        assert!(msg.contains("`4000M`"), "{msg}");
        let e = parse("time: soon\n").unwrap_err();
        assert!(e.to_string().contains("not a Slurm time limit"), "{e}");
        let e = parse("mode: batch\n").unwrap_err();
        assert!(e.to_string().contains("mode"), "{e}");
    }

    #[test]
    fn duplicate_key_names_its_second_line() {
        let e = parse("# site\npartition: a\nqos: b\npartition: c\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 4: duplicate field `partition`; remove one"),
            "{msg}"
        );
    }

    #[test]
    fn not_a_mapping() {
        let e = parse("- a\n- b\n").unwrap_err();
        assert!(e.to_string().contains("/etc/site.yaml"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.yaml");
        std::fs::write(
            &file,
            "options: opts/clavrx.opt\noutput_dir: /abs/out\npseg_step: pseg-step\n\
             clavrxorb: bin/clavrxorb\ncontainer_binds: [ancil]\n",
        )
        .unwrap();
        let c = SiteConfig::load(&file).unwrap();
        assert_eq!(c.options.unwrap(), dir.path().join("opts/clavrx.opt"));
        assert_eq!(c.output_dir.unwrap(), PathBuf::from("/abs/out"));
        assert_eq!(c.pseg_step.unwrap(), PathBuf::from("pseg-step"));
        assert_eq!(c.clavrxorb.unwrap(), dir.path().join("bin/clavrxorb"));
        assert_eq!(c.container_binds, vec![dir.path().join("ancil")]);
    }

    #[test]
    fn time_limits() {
        let c = parse("time: 90\n").unwrap();
        assert_eq!(c.time.unwrap().seconds, 5400);
        let c = parse("time: 01:00:00\n").unwrap();
        assert_eq!(c.time.unwrap().seconds, 3600);
    }

    #[test]
    fn percents() {
        assert_eq!(
            parse("headroom: 20\n").unwrap().headroom.unwrap(),
            Percent::from_basis_points(2000)
        );
        assert_eq!(
            parse("headroom: 7.5\n").unwrap().headroom.unwrap(),
            Percent::from_basis_points(750)
        );
        assert_eq!(
            parse("headroom: 10%\n").unwrap().headroom.unwrap(),
            Percent::from_basis_points(1000)
        );
    }

    #[test]
    fn min_efficiency_is_a_fraction() {
        assert_eq!(
            parse("min_efficiency: 0.75\n")
                .unwrap()
                .min_efficiency
                .map(|e| e.get()),
            Some(0.75)
        );
        for bad in ["0", "1.5", "80%", "-0.1"] {
            let e = parse(&format!("partition: a\nmin_efficiency: {bad}\n")).unwrap_err();
            assert!(
                e.to_string().contains("line 2") && e.to_string().contains("between 0 and 1"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn percentiles() {
        assert_eq!(
            parse("percentile: 95\n").unwrap().percentile.unwrap().get(),
            95.0
        );
        assert!(parse("percentile: 0\n").is_err());
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("partiton", "partition"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("cpus", "cpus"), 0);
        let valid = vec!["cpus_per_task".to_string(), "account".to_string()];
        assert_eq!(
            nearest("cpu_per_task", &valid).as_deref(),
            Some("cpus_per_task")
        );
        assert_eq!(nearest("zzz", &valid), None);
    }
}
