//! gen's `--cpus-per-task` when neither a flag nor the site config gives one.
//!
//! With `--profile` reports that `pseg-slurm plan` can replay: the most CPUs whose projected
//! efficiency one granule at a time (a safe side: two in flight, pseg-step's default, do at
//! least as well) is at least `min_efficiency`, and that fit the partition's nodes when
//! Slurm says how big they are. Otherwise
//! [`DEFAULT_CPUS_PER_TASK`], which fans a granule out (1 would not). The note says which
//! and why, for the script's header.

use std::path::PathBuf;

use crate::domain::plan::{self, DEFAULT_MIN_EFFICIENCY};
use crate::domain::script::cluster;
use crate::domain::script::settings::Settings;

/// CPUs per task without a measurement: enough to fan a granule's segments out, few enough
/// to fit any node and to waste little if the granule turns out serial.
pub const DEFAULT_CPUS_PER_TASK: u32 = 4;

/// The chosen count and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub cpus: u32,
    pub note: String,
    /// The projected wall time per granule at the chosen count over the replay at the
    /// measured one, when above 1: the measured wall times are stretched by it for `--time`.
    pub wall_scale: f64,
    /// Memory the chosen count's extra workers add to the measured peak (the most over the
    /// profile's granules), when it runs more workers than were measured.
    pub extra_peak_bytes: u64,
}

/// Chooses; `min_efficiency` from the site config, `reports` the `--profile` paths.
pub fn choose(
    settings: &Settings,
    min_efficiency: Option<plan::Efficiency>,
    reports: &[PathBuf],
    warnings: &mut Vec<String>,
) -> Choice {
    if settings.serial {
        return Choice {
            cpus: 1,
            note: "1: pseg-step runs --serial, clavrxorb alone on one core".into(),
            wall_scale: 1.0,
            extra_peak_bytes: 0,
        };
    }
    let partition = settings.partition.as_ref().map(|p| p.value.as_str());
    let node = node_cpus(partition);
    let (max_cpus, node_note) = match &node {
        Ok((p, n)) => (
            Some(*n),
            format!(", within the {n} CPUs of partition {p}'s smallest node (scontrol)"),
        ),
        Err(why) => (None, format!("; node size not known ({why})")),
    };
    let fallback = |why: String| {
        let cpus = max_cpus.map_or(DEFAULT_CPUS_PER_TASK, |m| {
            DEFAULT_CPUS_PER_TASK.min(u32::try_from(m).unwrap_or(u32::MAX))
        });
        Choice {
            cpus,
            note: format!("default {DEFAULT_CPUS_PER_TASK} ({why}){node_note}"),
            wall_scale: 1.0,
            extra_peak_bytes: 0,
        }
    };
    if reports.is_empty() {
        return fallback("no --profile to choose from; `pseg-slurm plan` projects others".into());
    }
    let (min, min_source) = match min_efficiency {
        Some(e) => (e.get(), "site config `min_efficiency`"),
        None => (DEFAULT_MIN_EFFICIENCY, "default"),
    };
    let projected = plan::load(reports).and_then(|profile| {
        let p = plan::project(&profile.granules, &plan::candidates(max_cpus), None)?;
        Ok((profile, p))
    });
    let (profile, p) = match projected {
        Ok(x) => x,
        Err(e) => {
            warnings.push(format!(
                "--cpus-per-task not chosen from --profile: {e}; using the default \
                 {DEFAULT_CPUS_PER_TASK}"
            ));
            return fallback("the --profile reports cannot be replayed".into());
        }
    };
    let Some(row) = plan::choose(&p.rows, min, max_cpus) else {
        return fallback("no CPU count to choose from".into());
    };
    let next = p.rows.iter().find(|r| r.cpus > row.cpus);
    let pct = |e: f64| format!("{:.0}%", e * 100.0);
    let mut note = format!(
        "chosen by `pseg-slurm plan` from {} measured granule(s): the most CPUs whose \
         projected efficiency is at least {} ({min_source}): {} at {} ({:.1} s per granule, \
         {:.2}x --serial)",
        profile.granules.len(),
        pct(min),
        pct(row.efficiency),
        row.cpus,
        row.wall_seconds,
        row.speedup
    );
    if let Some(n) = next {
        note.push_str(&format!("; {} at {}", pct(n.efficiency), n.cpus));
    }
    note.push_str(&node_note);
    let scale = row.wall_seconds / p.replayed_wall_seconds;
    Choice {
        extra_peak_bytes: profile
            .granules
            .iter()
            .map(|g| g.extra_peak_bytes(row.cpus))
            .max()
            .unwrap_or(0),
        cpus: u32::try_from(row.cpus).unwrap_or(u32::MAX),
        note,
        wall_scale: if scale.is_finite() && scale > 1.0 {
            scale
        } else {
            1.0
        },
    }
}

/// The partition and its smallest node's CPUs, or why they are not known.
fn node_cpus(partition: Option<&str>) -> Result<(String, usize), String> {
    let scontrol = which::which("scontrol").map_err(|_| "scontrol is not on PATH".to_string())?;
    cluster::query_node_cpus(&scontrol, partition, cluster::QUERY_TIMEOUT)
        .map_err(|e| e.to_string())
}
