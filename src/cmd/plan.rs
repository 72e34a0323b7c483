//! `pseg-slurm plan`: the projection, as a table or as data.

use crate::cmd::args::{Format, PlanArgs};
use crate::cmd::{Outcome, print};
use crate::domain::plan;

/// `pseg-slurm plan`: the projection, as a table or as data.
pub fn run(args: &PlanArgs) -> Outcome {
    let profile = plan::load(&args.profile)?;
    for (file, why) in &profile.unusable {
        eprintln!("pseg-slurm: warning: {} left out: {why}", file.display());
    }
    let cpus: Vec<usize> = args.cpus.iter().map(|c| c.get()).collect();
    let campaign = args.granules.map(|n| plan::Campaign {
        granules: n.get(),
        concurrency: args.array_concurrency.get(),
    });
    let p = plan::project(&profile.granules, &cpus, campaign)?;
    print(&match args.format {
        Format::Text => plan::text(&p),
        Format::Yaml => serde_yaml::to_string(&p)?,
        Format::Json => serde_json::to_string_pretty(&p)? + "\n",
    })
}
