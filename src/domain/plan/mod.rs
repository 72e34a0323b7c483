//! `pseg-slurm plan`: what a number of CPUs per granule would buy, from measured granules.
//!
//! [`work`] turns pseg-step's granule reports into each phase's work; [`sim`] replays that
//! work through the supervisor's own fan-out machine on a virtual clock at any CPU count.
//! This module reads the reports, projects a table (wall time per granule, speedup over a
//! `--serial` run, efficiency, core-hours, a campaign's wall time; one granule at a time
//! and with granules overlapping) and picks a CPU count for `gen`.

pub mod sim;
pub mod work;

use std::path::PathBuf;

use serde::Serialize;

use crate::base::units::{self, Unit};
use crate::domain::reports::GranuleReport;
use crate::domain::script::profile::{self, ProfileError, Report};
use sim::Setup;
use work::GranuleWork;

/// CPU counts projected when none are asked for.
pub const DEFAULT_CPUS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Granules in flight for the overlapping projection.
pub const IN_FLIGHT: usize = 2;
/// Efficiency `gen` asks of a CPU count before choosing it, unless the site config says.
pub const DEFAULT_MIN_EFFICIENCY: f64 = 0.8;

/// A parallel efficiency in (0, 1]: speedup over serial divided by the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Efficiency(f64);

impl Efficiency {
    pub fn new(e: f64) -> Option<Efficiency> {
        (e > 0.0 && e <= 1.0).then_some(Efficiency(e))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// A fraction as written: `0.8`, `1`.
impl std::str::FromStr for Efficiency {
    type Err = String;
    fn from_str(text: &str) -> Result<Efficiency, String> {
        let e = text.trim().parse::<f64>().ok().and_then(Efficiency::new);
        e.ok_or_else(|| not_efficiency(&text))
    }
}

impl Unit for Efficiency {
    const EXPECTING: &'static str = "a fraction between 0 and 1, such as 0.8";
}

impl<'de> serde::Deserialize<'de> for Efficiency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        units::deserialize(d)
    }
}

fn not_efficiency(shown: &dyn std::fmt::Display) -> String {
    format!(
        "`{shown}` is not an efficiency; write a fraction between 0 and 1 (e.g. 0.8: above 0, at most 1)"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(
        "no report under the --profile paths can be replayed ({0}); plan needs granule reports \
         of done fan-out runs written by this pseg-step (not --serial)"
    )]
    NothingToReplay(String),
    #[error("the replay failed: {0}")]
    Replay(#[from] std::io::Error),
}

/// The granules read from `--profile`, and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub granules: Vec<GranuleWork>,
    /// Reports of other kinds (step summaries).
    pub skipped: usize,
    /// Granule reports that cannot be replayed, with why.
    pub unusable: Vec<(PathBuf, String)>,
}

/// Reads every report under `paths` (files, or folders searched for `*.pseg.yaml`).
pub fn load(paths: &[PathBuf]) -> Result<Profile, PlanError> {
    let mut p = Profile::default();
    for path in paths {
        for report in profile::report_texts(path)? {
            let (file, text) = report?;
            match profile::parse_report(&text, &file)? {
                Report::Other { .. } => p.skipped += 1,
                Report::NotDone { status } => p
                    .unusable
                    .push((file, format!("the granule is {status}, not done"))),
                Report::Granule { .. } => match granule(&text) {
                    Ok(g) => p.granules.push(g),
                    Err(why) => p.unusable.push((file, why)),
                },
            }
        }
    }
    if p.granules.is_empty() {
        let why = match p.unusable.first() {
            Some((file, why)) => format!("{}: {why}", file.display()),
            None => format!("{} report(s) of other kinds", p.skipped),
        };
        return Err(PlanError::NothingToReplay(why));
    }
    Ok(p)
}

fn granule(text: &str) -> Result<GranuleWork, String> {
    let r: GranuleReport = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    GranuleWork::from_report(&r)
}

/// A campaign to project: this many granules, this many array elements at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Campaign {
    pub granules: usize,
    pub concurrency: usize,
}

/// One CPU count's projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub cpus: usize,
    /// Mean wall time per granule, one granule at a time (`--max-granules 1`).
    pub wall_seconds: f64,
    /// The `--serial` wall time over `wall_seconds`.
    pub speedup: f64,
    /// `speedup / cpus`.
    pub efficiency: f64,
    pub core_hours_per_1000: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_hours: Option<f64>,
    /// The same with [`IN_FLIGHT`] granules sharing the CPUs (pseg-step's default): wall time
    /// per granule is the whole run's over the granules.
    pub overlap_wall_seconds: f64,
    pub overlap_speedup: f64,
    pub overlap_efficiency: f64,
    pub overlap_core_hours_per_1000: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap_campaign_hours: Option<f64>,
}

/// The whole projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projection {
    /// Granule reports replayed.
    pub granules: usize,
    /// Mean measured wall time per granule, and the CPUs it was measured on (the most
    /// common count).
    pub measured_wall_seconds: f64,
    pub measured_cpus: usize,
    /// The replay of the same granules at the measured CPU count: how well the model
    /// reproduces what was measured.
    pub replayed_wall_seconds: f64,
    /// Mean projected wall time per granule of a `--serial` run.
    pub serial_seconds: f64,
    pub in_flight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Campaign>,
    pub rows: Vec<Row>,
}

/// Projects `granules` at each count of `cpus`.
pub fn project(
    granules: &[GranuleWork],
    cpus: &[usize],
    campaign: Option<Campaign>,
) -> Result<Projection, PlanError> {
    let n = granules.len().max(1) as f64;
    let serial = granules
        .iter()
        .map(GranuleWork::serial_seconds)
        .sum::<f64>()
        / n;
    let mean_wall = |setup: Setup| -> Result<f64, PlanError> {
        let r = sim::replay(granules, setup)?;
        Ok(r.walls.iter().sum::<f64>() / n)
    };
    // Enough granules that the overlap's ramp up and down weigh little; whole copies of
    // the list, so each granule weighs the same as in the mean above.
    let copies = (4 * IN_FLIGHT).div_ceil(granules.len().max(1));
    let stream: Vec<GranuleWork> = (0..copies).flat_map(|_| granules.iter().cloned()).collect();
    let measured_cpus = most_common(granules.iter().map(|g| g.measured_cpus));
    let mut rows = Vec::new();
    for &c in cpus {
        let c = c.max(1);
        let wall = mean_wall(Setup::on(c))?;
        let overlap = {
            let setup = Setup {
                in_flight: IN_FLIGHT,
                ..Setup::on(c)
            };
            sim::replay(&stream, setup)?.makespan / stream.len() as f64
        };
        let hours = |w: f64| w * c as f64 * 1000.0 / 3600.0;
        let campaign_hours = |w: f64| {
            campaign.map(|k| k.granules.div_ceil(k.concurrency.max(1)) as f64 * w / 3600.0)
        };
        rows.push(Row {
            cpus: c,
            wall_seconds: wall,
            speedup: serial / wall,
            efficiency: serial / wall / c as f64,
            core_hours_per_1000: hours(wall),
            campaign_hours: campaign_hours(wall),
            overlap_wall_seconds: overlap,
            overlap_speedup: serial / overlap,
            overlap_efficiency: serial / overlap / c as f64,
            overlap_core_hours_per_1000: hours(overlap),
            overlap_campaign_hours: campaign_hours(overlap),
        });
    }
    Ok(Projection {
        granules: granules.len(),
        measured_wall_seconds: granules.iter().map(|g| g.measured_wall).sum::<f64>() / n,
        measured_cpus,
        replayed_wall_seconds: mean_wall(Setup::on(measured_cpus))?,
        serial_seconds: serial,
        in_flight: IN_FLIGHT,
        campaign,
        rows,
    })
}

fn most_common(counts: impl Iterator<Item = usize>) -> usize {
    let mut tally = std::collections::BTreeMap::new();
    for c in counts {
        *tally.entry(c).or_insert(0usize) += 1;
    }
    tally
        .into_iter()
        .max_by_key(|&(c, n)| (n, c))
        .map_or(1, |(c, _)| c)
}

/// `gen`'s choice: the largest count of `rows` with at least `min_efficiency` (one granule at
/// a time, as pseg-step runs) and at most `max_cpus`; 1 when none qualifies.
pub fn choose(rows: &[Row], min_efficiency: f64, max_cpus: Option<usize>) -> Option<&Row> {
    rows.iter()
        .filter(|r| max_cpus.is_none_or(|m| r.cpus <= m))
        .filter(|r| r.cpus == 1 || r.efficiency >= min_efficiency)
        .max_by_key(|r| r.cpus)
}

/// The CPU counts `gen` weighs: powers of two up to the node's CPUs, and the node's own
/// count; without a node size, [`DEFAULT_CPUS`].
pub fn candidates(max_cpus: Option<usize>) -> Vec<usize> {
    let Some(max) = max_cpus else {
        return DEFAULT_CPUS.to_vec();
    };
    let mut c: Vec<usize> = (0..)
        .map(|i| 1usize << i)
        .take_while(|&n| n <= max)
        .collect();
    if c.last() != Some(&max) {
        c.push(max);
    }
    c
}

/// The projection as a table for people.
pub fn text(p: &Projection) -> String {
    let mut out = format!(
        "Replayed {} granule report(s), measured at {} CPU(s): {} per granule; replayed at {} \
         CPU(s) without the time they waited for a CPU: {}.\n--serial: {} per granule.\n",
        p.granules,
        p.measured_cpus,
        secs(p.measured_wall_seconds),
        p.measured_cpus,
        secs(p.replayed_wall_seconds),
        secs(p.serial_seconds),
    );
    if let Some(c) = p.campaign {
        out.push_str(&format!(
            "Campaign: {} granules, {} array element(s) at once.\n",
            c.granules, c.concurrency
        ));
    }
    out.push('\n');
    let campaign = p.campaign.is_some();
    let width = 37 + if campaign { 10 } else { 0 };
    out.push_str(&format!(
        "{:>5} | {:<width$} | {} granules in flight\n",
        "", "one granule at a time", p.in_flight,
    ));
    let head = |c: bool| {
        format!(
            "{:>10} {:>7} {:>6} {:>11}{}",
            "wall",
            "speedup",
            "effic",
            "core-h/1000",
            if c {
                format!(" {:>9}", "campaign")
            } else {
                String::new()
            }
        )
    };
    out.push_str(&format!(
        "{:>5} | {} | {}\n",
        "cpus",
        head(campaign),
        head(campaign)
    ));
    for r in &p.rows {
        let cells = |wall: f64, speedup: f64, eff: f64, ch: f64, camp: Option<f64>| {
            format!(
                "{:>10} {:>6.2}x {:>5.0}% {:>11.1}{}",
                secs(wall),
                speedup,
                eff * 100.0,
                ch,
                camp.map(|h| format!(" {:>9}", hours(h)))
                    .unwrap_or_default()
            )
        };
        out.push_str(&format!(
            "{:>5} | {} | {}\n",
            r.cpus,
            cells(
                r.wall_seconds,
                r.speedup,
                r.efficiency,
                r.core_hours_per_1000,
                r.campaign_hours
            ),
            cells(
                r.overlap_wall_seconds,
                r.overlap_speedup,
                r.overlap_efficiency,
                r.overlap_core_hours_per_1000,
                r.overlap_campaign_hours
            ),
        ));
    }
    out
}

fn secs(s: f64) -> String {
    if s >= 600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.2} s")
    }
}

fn hours(h: f64) -> String {
    if h < 1.0 {
        format!("{:.1} min", h * 60.0)
    } else if h >= 48.0 {
        format!("{:.1} d", h / 24.0)
    } else {
        format!("{h:.1} h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use work::SegmentWork;

    fn cpu_bound() -> GranuleWork {
        GranuleWork {
            name: "g".into(),
            startup: 0.1,
            segments: vec![
                SegmentWork {
                    lines: 10,
                    process: 1.0,
                    write: 0.01,
                    ..SegmentWork::default()
                };
                64
            ],
            measured_cpus: 2,
            ..GranuleWork::default()
        }
    }

    #[test]
    fn efficiency_falls_with_cpus_and_the_choice_follows_it() {
        let p = project(&[cpu_bound()], &DEFAULT_CPUS, None).unwrap();
        let effs: Vec<f64> = p.rows.iter().map(|r| r.efficiency).collect();
        assert!(effs.windows(2).all(|w| w[1] <= w[0] + 1e-9), "{effs:?}");
        assert!((p.rows[0].efficiency - 1.0).abs() < 1e-9);
        // 64 segments of 1 s, the first one processed before the others start: on 8 CPUs
        // 0.1 + 1.01 + 63/8 rounds of 1 s = 9.1 s against 64.7 s serial (89 %); on 16,
        // 0.1 + 1.01 + 4 = 5.1 s (79 %).
        assert_eq!(choose(&p.rows, 0.8, None).unwrap().cpus, 8);
        assert_eq!(choose(&p.rows, 0.8, Some(2)).unwrap().cpus, 2);
        // Nothing reaches 100 % beyond one CPU: one is the answer.
        assert_eq!(choose(&p.rows, 1.0, None).unwrap().cpus, 1);
    }

    #[test]
    fn a_serial_start_up_keeps_a_granule_on_one_cpu() {
        let mut g = cpu_bound();
        g.startup = 20.0;
        let p = project(&[g], &DEFAULT_CPUS, None).unwrap();
        assert_eq!(choose(&p.rows, 0.8, None).unwrap().cpus, 1);
        // Overlapping granules fill the start-up of one with the work of the other.
        assert!(p.rows[1].overlap_efficiency > p.rows[1].efficiency + 0.2);
    }

    #[test]
    fn the_campaign_is_whole_rounds_of_granules() {
        let c = Campaign {
            granules: 10,
            concurrency: 4,
        };
        let p = project(&[cpu_bound()], &[1], Some(c)).unwrap();
        let r = &p.rows[0];
        assert!((r.campaign_hours.unwrap() - 3.0 * r.wall_seconds / 3600.0).abs() < 1e-12);
    }

    #[test]
    fn candidates_stop_at_the_node() {
        assert_eq!(candidates(Some(12)), vec![1, 2, 4, 8, 12]);
        assert_eq!(candidates(Some(8)), vec![1, 2, 4, 8]);
        assert_eq!(candidates(None), DEFAULT_CPUS.to_vec());
    }
}
