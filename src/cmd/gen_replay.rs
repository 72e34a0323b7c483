//! The ledger's one meeting point with `gen`: remembering a gen call in `campaign.yaml`,
//! and replaying it over a retry list with the flags given to `retry` on top.
//!
//! A replayed call keeps its own folder for its relative paths; flags given to `retry` are
//! relative to the folder `retry` runs in, so they are made absolute here first.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cmd::args::{Cli, Command, GenArgs, RetryArgs};
use crate::domain::campaign::retry::{self, Selection};
use crate::domain::granule_list::{GranuleList, ListError, read_list};
use crate::domain::ledger::campaign_yaml::{Campaign, GenCall};
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::holder::Holder;
use crate::domain::ledger::{Ledger, STATE_DIR, find_state_dir};
use crate::domain::script::{self, GenError, Generated};
use crate::domain::site_config::{Mode, is_bare_name};

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Gen(#[from] GenError),
    #[error(
        "the campaign was not started by `pseg-slurm gen`, so its settings are unknown; the \
         granules to retry are listed in {list}: submit them with \
         `pseg-slurm gen --files {list} ... | sbatch`"
    )]
    NoGenCall { list: PathBuf },
    #[error("the gen call stored in {path} no longer parses: {message}")]
    StoredCall { path: PathBuf, message: String },
    #[error(
        "--out {given} is not this campaign's output folder {campaign}; a retry writes where \
         its campaign does"
    )]
    OtherOut { given: PathBuf, campaign: PathBuf },
    #[error("cannot determine the current folder: {0}")]
    Cwd(std::io::Error),
}

/// After `gen` rendered a script: records the campaign (list, output folder, the call) in
/// `<out>/pseg-state/campaign.yaml`. `argv` is the whole command line.
pub fn remember_gen(generated: &Generated, argv: &[OsString]) -> Result<(), RetryError> {
    let cwd = std::env::current_dir().map_err(RetryError::Cwd)?;
    let args = argv
        .iter()
        .skip_while(|a| a.as_os_str() != "gen")
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let call = GenCall {
        cwd,
        args,
        config: generated.config.clone(),
    };
    let mut campaign = Campaign::new(
        &generated.list,
        &generated.out,
        Some(call),
        "pseg-slurm gen",
    );
    if let Ok(list) = read_list(&generated.list) {
        campaign = campaign.with_granules(list.granules.len());
    }
    campaign.write(&generated.out.join(STATE_DIR))?;
    Ok(())
}

/// What `retry` did.
pub enum Retried {
    /// Nothing to retry; the selection says why (all done, or busy).
    Nothing(Selection),
    Script {
        generated: Box<Generated>,
        list: PathBuf,
        selection: Selection,
        /// Failed granules whose budget started again.
        reset: usize,
    },
}

/// Runs `pseg-slurm retry`.
pub fn run(args: RetryArgs) -> Result<Retried, RetryError> {
    let cwd = std::env::current_dir().map_err(RetryError::Cwd)?;
    let state = find_state_dir(&cwd.join(&args.dir))?;
    let campaign = Campaign::read(&state)?.ok_or_else(|| LedgerError::NoCampaign {
        path: state.join(crate::domain::ledger::campaign_yaml::FILE),
    })?;
    let ledger = Ledger::open(&state)?;
    let list = read_list(&campaign.list)?;
    let (failed, missing) = match (args.failed, args.missing) {
        (false, false) => (true, true),
        chosen => chosen,
    };
    let me = Holder::current();
    let selection = retry::select(&ledger, &list, failed, missing, &me)?;
    if selection.is_empty() {
        return Ok(Retried::Nothing(selection));
    }
    let list_path = retry::write_list(&ledger, &campaign.list, &selection)?;
    let Some(call) = &campaign.gen_call else {
        return Err(RetryError::NoGenCall { list: list_path });
    };
    let gen_args = replay(call, &list_path, &list, &campaign, args, &cwd, &state)?;
    let generated = script::generate_in(&gen_args, &call.cwd)?;
    generated.create_log_dir()?;
    let reset = retry::reset_failed(&ledger, &selection, &me)?;
    Ok(Retried::Script {
        generated: Box::new(generated),
        list: list_path,
        selection,
        reset,
    })
}

/// The stored gen call over `list`, with `o`'s flags (relative to `cwd`) on top.
fn replay(
    call: &GenCall,
    list: &Path,
    original: &GranuleList,
    campaign: &Campaign,
    o: RetryArgs,
    cwd: &Path,
    state: &Path,
) -> Result<GenArgs, RetryError> {
    let argv = ["pseg-slurm", "gen"]
        .into_iter()
        .map(String::from)
        .chain(call.args.iter().cloned());
    let stored = Cli::try_parse_from(argv).map_err(|e| RetryError::StoredCall {
        path: state.join(crate::domain::ledger::campaign_yaml::FILE),
        message: e.to_string(),
    })?;
    let Command::Gen(g) = stored.command else {
        return Err(RetryError::StoredCall {
            path: state.join(crate::domain::ledger::campaign_yaml::FILE),
            message: "it is not a gen call".into(),
        });
    };
    let mut g = *g;
    // What the campaign's own list implied (a file_list's output folder, clavrx_options
    // beside it) is lost with a retry list elsewhere: pass it on as flags.
    if g.step.out.is_none() {
        g.step.out = Some(campaign.output_dir.clone());
    }
    if g.step.options.is_none() {
        let beside = original.options_beside();
        if beside.is_file() {
            g.step.options = Some(std::path::absolute(&beside).unwrap_or(beside));
        }
    }
    g.files = list.to_path_buf();
    // What gen used, whether it came from --config or PSEG_SLURM_CONFIG back then.
    g.config = call.config.clone();

    let abs = |p: PathBuf| cwd.join(p);
    let command = |p: PathBuf| if is_bare_name(&p) { p } else { cwd.join(p) };
    fn over<T>(slot: &mut Option<T>, value: Option<T>) {
        if value.is_some() {
            *slot = value;
        }
    }
    over(&mut g.config, o.config.map(abs));
    if let Some(mode) = o.mode {
        // Flags of the other mode, from the stored call, would be refused.
        match mode {
            Mode::Tasks => {
                g.slurm.chunk_size = None;
                g.slurm.array_limit = None;
                g.slurm.max_array_size = None;
            }
            Mode::Array => g.slurm.ntasks = None,
        }
        g.mode = Some(mode);
    }
    over(&mut g.template, o.template.map(abs));
    if !o.sizing.profile.is_empty() {
        g.sizing.profile = o.sizing.profile.into_iter().map(abs).collect();
    }
    over(&mut g.sizing.peak_mem, o.sizing.peak_mem);
    over(&mut g.sizing.headroom, o.sizing.headroom);
    over(&mut g.sizing.percentile, o.sizing.percentile);
    let (s, os) = (&mut g.slurm, o.slurm);
    over(&mut s.partition, os.partition);
    over(&mut s.account, os.account);
    over(&mut s.qos, os.qos);
    over(&mut s.time, os.time);
    over(&mut s.cpus_per_task, os.cpus_per_task);
    over(&mut s.memory, os.memory);
    over(&mut s.job_name, os.job_name);
    over(&mut s.chunk_size, os.chunk_size);
    over(&mut s.array_limit, os.array_limit);
    over(&mut s.max_array_size, os.max_array_size);
    over(&mut s.ntasks, os.ntasks);
    over(&mut s.warning_seconds, os.warning_seconds);
    let (st, ost) = (&mut g.step, o.step);
    if let Some(out) = ost.out {
        let given = cwd.join(out);
        if std::path::absolute(&given).ok() != std::path::absolute(&campaign.output_dir).ok() {
            return Err(RetryError::OtherOut {
                given,
                campaign: campaign.output_dir.clone(),
            });
        }
    }
    over(&mut st.exe, ost.exe.map(command));
    over(&mut st.options, ost.options.map(abs));
    over(&mut st.work, ost.work.map(abs));
    over(&mut st.pseg_step, ost.pseg_step.map(command));
    over(&mut st.container, ost.container.map(abs));
    Ok(g)
}
