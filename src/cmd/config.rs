//! `pseg-slurm config`, the command: print the annotated example site config, or check one.

use crate::cmd::args::ConfigCommand;
use crate::cmd::{Outcome, print};
use crate::domain::site_config::{EXAMPLE, SiteConfig};

/// Runs `pseg-slurm config init|check`.
pub fn run(command: ConfigCommand) -> Outcome {
    match command {
        ConfigCommand::Init => print(EXAMPLE),
        ConfigCommand::Check { config } => {
            SiteConfig::load(&config)?;
            eprintln!("pseg-slurm: {} is a valid site config", config.display());
            Ok(0)
        }
    }
}
