//! `campaign.yaml`: what a state folder belongs to — the granule list, the output folder,
//! and the `gen` call that made the job, so `status` can count what was never started and
//! `retry` can render a script the same way.
//!
//! Paths in it are absolute, so `status` and `retry` work from any folder. `pseg-slurm gen`
//! writes it over an older record of the same list and output folder (adding its call), and
//! refuses one of another campaign; a driver started by hand records the list and output
//! folder with [`Campaign::remember`], which never replaces one and says how an existing one
//! disagrees.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::atomic_file;
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::store;

pub const SCHEMA: &str = "pseg-campaign/1";
pub const FILE: &str = "campaign.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub schema: String,
    /// The granule list, absolute.
    pub list: PathBuf,
    /// The output folder, absolute.
    pub output_dir: PathBuf,
    /// The `gen` that rendered the campaign's script, when it was gen.
    #[serde(default, rename = "gen", skip_serializing_if = "Option::is_none")]
    pub gen_call: Option<GenCall>,
    /// Granules the list named when this was written: an array element past the end of a
    /// shorter list now is then a known shrink, not a misconfigured job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granules: Option<usize>,
    pub written_unix: f64,
    /// `pseg-slurm gen` or `pseg-step`.
    pub written_by: String,
    /// The jobs `pseg-slurm run` submitted for the campaign, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submissions: Vec<Submission>,
    /// How the last `pseg-slurm run` ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_outcome: Option<RunOutcome>,
}

/// One job `pseg-slurm run` submitted: enough to find it again (`squeue -j`) after the run
/// was killed, and to size the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub job_id: String,
    pub purpose: crate::domain::autopilot::decide::Purpose,
    /// The decision, as it was printed.
    pub why: String,
    /// Granules in its list.
    pub granules: usize,
    pub list: PathBuf,
    pub script: PathBuf,
    /// What the script asks for, read from its `#SBATCH` lines.
    pub sizing: crate::domain::autopilot::decide::Sizing,
    /// What was changed in gen's flags for it.
    #[serde(default)]
    pub overrides: crate::domain::autopilot::decide::Overrides,
    /// Done granules of the campaign when it was submitted.
    pub done_before: usize,
    pub submitted_unix: f64,
    /// When `run` saw it leave Slurm's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix: Option<f64>,
}

/// The end of a `pseg-slurm run`: its exit status and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub exit: u8,
    pub why: String,
    pub unix: f64,
}

/// A `pseg-slurm gen` command line, enough to run it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenCall {
    /// The folder it ran in: relative paths in `args` are relative to it.
    pub cwd: PathBuf,
    /// Its arguments after `gen`, as typed.
    pub args: Vec<String>,
    /// The site config it used (from `--config` or `PSEG_SLURM_CONFIG`), absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

impl Campaign {
    pub fn new(list: &Path, output_dir: &Path, gen_call: Option<GenCall>, by: &str) -> Campaign {
        Campaign {
            schema: SCHEMA.to_string(),
            list: list.to_path_buf(),
            output_dir: output_dir.to_path_buf(),
            gen_call,
            granules: None,
            written_unix: crate::base::time::unix_now(),
            written_by: by.to_string(),
            submissions: Vec::new(),
            run_outcome: None,
        }
    }

    /// The same campaign, recording that its list named `n` granules.
    pub fn with_granules(mut self, n: usize) -> Campaign {
        self.granules = Some(n);
        self
    }

    fn text(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Writes `state_dir/campaign.yaml` (what `gen` does): over an older record of the same
    /// list and output folder, never over another campaign's.
    pub fn write(&self, state_dir: &Path) -> Result<(), LedgerError> {
        std::fs::create_dir_all(state_dir).map_err(|source| LedgerError::Create {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let old = Campaign::read(state_dir)?;
        if let Some(how) = old.as_ref().and_then(|old| old.disagreement(self)) {
            return Err(LedgerError::OtherCampaign {
                path: state_dir.join(FILE),
                how,
            });
        }
        // A gen after a `run` keeps the run's jobs: a later run must still find them.
        let mut new = self.clone();
        if let Some(old) = old.filter(|_| new.submissions.is_empty()) {
            new.submissions = old.submissions;
            new.run_outcome = new.run_outcome.or(old.run_outcome);
        }
        atomic_file::write(state_dir, FILE, new.text().as_bytes())
            .map_err(LedgerError::write(state_dir.join(FILE)))
    }

    /// Writes `state_dir/campaign.yaml` only if there is none; if there is one of another
    /// campaign, says how it disagrees.
    pub fn remember(&self, state_dir: &Path) -> Result<Option<String>, LedgerError> {
        let path = state_dir.join(FILE);
        if store::create_exclusive(state_dir, FILE, self.text().as_bytes())
            .map_err(LedgerError::write(&path))?
        {
            return Ok(None);
        }
        Ok(Campaign::read(state_dir)?
            .and_then(|old| old.disagreement(self))
            .map(|how| format!("{} belongs to another campaign: {how}", path.display())))
    }

    /// How `self` (recorded) and `new` name different campaigns, if they do. A relative list
    /// (from an older pseg-step) cannot be compared and never disagrees.
    pub fn disagreement(&self, new: &Campaign) -> Option<String> {
        let same = |a: &Path, b: &Path| {
            let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            a == b || real(a) == real(b)
        };
        let mut how = Vec::new();
        if self.list.is_absolute() && !same(&self.list, &new.list) {
            how.push(format!(
                "it records the granule list {}, this {} has {}",
                self.list.display(),
                new.written_by,
                new.list.display()
            ));
        }
        if self.output_dir.is_absolute() && !same(&self.output_dir, &new.output_dir) {
            how.push(format!(
                "it records the output folder {}, this {} has {}",
                self.output_dir.display(),
                new.written_by,
                new.output_dir.display()
            ));
        }
        (!how.is_empty()).then(|| format!("{} (written by {})", how.join("; "), self.written_by))
    }

    /// Reads `state_dir/campaign.yaml`; `None` if there is none.
    pub fn read(state_dir: &Path) -> Result<Option<Campaign>, LedgerError> {
        let path = state_dir.join(FILE);
        let Some(bytes) = store::read_optional(&path).map_err(LedgerError::read(&path))? else {
            return Ok(None);
        };
        serde_yaml::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt {
                path,
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_replaces_the_same_campaign_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Campaign::read(dir.path()).unwrap(), None);
        let by_step = Campaign::new(Path::new("/l.txt"), Path::new("/out"), None, "pseg-step");
        assert_eq!(by_step.remember(dir.path()).unwrap(), None);
        let again = Campaign::new(
            Path::new("/other.txt"),
            Path::new("/out"),
            None,
            "pseg-step",
        );
        let how = again.remember(dir.path()).unwrap().unwrap();
        assert!(
            how.contains("granule list /l.txt, this pseg-step has /other.txt"),
            "{how}"
        );
        assert_eq!(
            Campaign::read(dir.path()).unwrap().unwrap().list,
            Path::new("/l.txt")
        );
        let call = |list: &str| GenCall {
            cwd: "/".into(),
            args: vec!["--files".into(), list.into()],
            config: Some("/etc/site.yaml".into()),
        };
        let other = Campaign::new(
            Path::new("/l2.txt"),
            Path::new("/out"),
            Some(call("l2.txt")),
            "pseg-slurm gen",
        );
        let e = other.write(dir.path()).unwrap_err();
        assert!(matches!(e, LedgerError::OtherCampaign { .. }), "{e}");
        assert!(e.to_string().contains("/l.txt"), "{e}");
        // The same list: gen's record, with its call, takes the driver's place.
        let by_gen = Campaign::new(
            Path::new("/l.txt"),
            Path::new("/out"),
            Some(call("l.txt")),
            "pseg-slurm gen",
        );
        by_gen.write(dir.path()).unwrap();
        assert_eq!(Campaign::read(dir.path()).unwrap().unwrap(), by_gen);
        assert_eq!(by_step.remember(dir.path()).unwrap(), None);
        assert_eq!(Campaign::read(dir.path()).unwrap().unwrap(), by_gen);
        std::fs::write(dir.path().join(FILE), "list: [").unwrap();
        let e = Campaign::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("campaign.yaml is not a file"), "{e}");
    }
}
