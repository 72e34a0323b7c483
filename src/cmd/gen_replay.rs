//! gen's call kept for `retry`: remembering it in `campaign.yaml`, and replaying it over a
//! retry list with the flags given to `retry` on top.
//!
//! A replayed call keeps its own folder for its relative paths; flags given to `retry` are
//! relative to the folder `retry` runs in, so they are made absolute here first (every
//! path-valued flag, known from clap's value hint). gen's own parser merges them: each flag
//! typed for `retry` replaces the stored call's, whichever flag it is, so a flag added to gen
//! is replayed without a line here.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, ValueHint};

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

/// Runs `pseg-slurm retry`; `given` are its parsed flags (which of them were typed).
pub fn run(args: RetryArgs, given: &ArgMatches) -> Result<Retried, RetryError> {
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
    let replayed = Replay {
        call,
        list: &list_path,
        original: &list,
        campaign: &campaign,
        cwd: &cwd,
        state: &state,
    };
    let gen_args = replayed.gen_args(&args, given)?;
    let generated = script::generate_in(&crate::cmd::r#gen::request(gen_args), &call.cwd)?;
    generated.create_log_dir()?;
    let reset = retry::reset_failed(&ledger, &selection, &me)?;
    Ok(Retried::Script {
        generated: Box::new(generated),
        list: list_path,
        selection,
        reset,
    })
}

/// A stored gen call to replay over a retry list.
struct Replay<'a> {
    call: &'a GenCall,
    /// The retry list.
    list: &'a Path,
    /// The campaign's own list.
    original: &'a GranuleList,
    campaign: &'a Campaign,
    /// Where `retry` runs: its flags' relative paths are relative to it.
    cwd: &'a Path,
    state: &'a Path,
}

/// Each gen flag's values, by clap id, in the form `--long=value`.
type Flags = HashMap<String, Vec<OsString>>;

impl Replay<'_> {
    /// gen's flags for the retry: for each flag, the first of what `retry` was given
    /// (`given`, relative paths made absolute), what the stored call was given, and what the
    /// campaign's own list implied; parsed by gen's own parser.
    fn gen_args(&self, o: &RetryArgs, given: &ArgMatches) -> Result<GenArgs, RetryError> {
        if let Some(out) = &o.step.out {
            let given = self.cwd.join(out);
            let campaign = &self.campaign.output_dir;
            if std::path::absolute(&given).ok() != std::path::absolute(campaign).ok() {
                return Err(RetryError::OtherOut {
                    given,
                    campaign: campaign.clone(),
                });
            }
        }
        let stored_argv = ["pseg-slurm", "gen"]
            .into_iter()
            .map(OsString::from)
            .chain(self.call.args.iter().map(OsString::from));
        let stored = self.parse(stored_argv)?;
        let stored = stored
            .subcommand_matches("gen")
            .ok_or_else(|| self.stored_call("it is not a gen call".into()))?;
        let cli = Cli::command();
        let gen_command = cli.find_subcommand("gen").expect("gen is a subcommand");
        let mut stored = typed(gen_command, stored, |_, v| v.into());
        if let Some(mode) = o.mode {
            // Flags of the other mode, from the stored call, would be refused.
            for id in other_mode_flags(mode.into()) {
                stored.remove(*id);
            }
        }
        let cwd = self.cwd;
        let from_retry = typed(gen_command, given, |arg, v| {
            let path = PathBuf::from(v);
            match arg.get_value_hint() {
                // Executables: a bare name stays a name, looked up on PATH.
                ValueHint::CommandName if is_bare_name(&path) => path.into(),
                ValueHint::CommandName | ValueHint::AnyPath => cwd.join(path).into(),
                _ => v.into(),
            }
        });
        let implied = self.implied(gen_command);
        // The list is the retry list, whatever the stored call said.
        let mut list = Flags::new();
        set(gen_command, &mut list, "files", self.list);
        let mut argv: Vec<OsString> = vec!["pseg-slurm".into(), "gen".into()];
        for arg in gen_command.get_arguments() {
            let id = arg.get_id().as_str();
            let values = [&list, &from_retry, &stored, &implied]
                .into_iter()
                .find_map(|layer| layer.get(id));
            argv.extend(values.into_iter().flatten().cloned());
        }
        let Command::Gen(g) = Cli::from_arg_matches(&self.parse(argv)?)
            .map_err(|e| self.stored_call(e.to_string()))?
            .command
        else {
            unreachable!("parsed as gen")
        };
        let mut g = *g;
        if given.value_source("config") != Some(ValueSource::CommandLine) {
            // What gen used, whether it came from --config or PSEG_SLURM_CONFIG back then
            // (and not PSEG_SLURM_CONFIG now).
            g.config = self.call.config.clone();
        }
        Ok(g)
    }

    /// What the campaign's own list implied (a file_list's output folder, clavrx_options
    /// beside it) is lost with a retry list elsewhere: it is passed on as flags.
    fn implied(&self, gen_command: &clap::Command) -> Flags {
        let mut flags = Flags::new();
        set(gen_command, &mut flags, "out", &self.campaign.output_dir);
        let beside = self.original.options_beside();
        if beside.is_file() {
            let beside = std::path::absolute(&beside).unwrap_or(beside);
            set(gen_command, &mut flags, "options", &beside);
        }
        flags
    }

    /// Parses a gen command line; an error is the stored call's.
    fn parse(&self, argv: impl IntoIterator<Item = OsString>) -> Result<ArgMatches, RetryError> {
        Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| self.stored_call(e.to_string()))
    }

    fn stored_call(&self, message: String) -> RetryError {
        RetryError::StoredCall {
            path: self.state.join(crate::domain::ledger::campaign_yaml::FILE),
            message,
        }
    }
}

/// The gen flags typed on a command line (`matches` of gen or of retry), each value passed
/// through `value`, as `--long=value` words.
fn typed(
    gen_command: &clap::Command,
    matches: &ArgMatches,
    value: impl Fn(&clap::Arg, &OsStr) -> OsString,
) -> Flags {
    let mut flags = Flags::new();
    for arg in gen_command.get_arguments() {
        let id = arg.get_id().as_str();
        // `retry` has no `--files`: clap says so with an error, read as "not given".
        let Ok(Some(raw)) = matches.try_get_raw(id) else {
            continue;
        };
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let words = raw.map(|v| flag(arg, &value(arg, v))).collect();
        flags.insert(id.to_string(), words);
    }
    flags
}

/// Sets gen's flag `id` to `value`.
fn set(gen_command: &clap::Command, flags: &mut Flags, id: &str, value: &Path) {
    if let Some(arg) = gen_command.get_arguments().find(|a| a.get_id() == id) {
        flags.insert(id.to_string(), vec![flag(arg, value.as_os_str())]);
    }
}

/// `--long=value`: one word, whatever the value starts with.
fn flag(arg: &clap::Arg, value: &OsStr) -> OsString {
    let mut word = OsString::from("--");
    word.push(arg.get_long().unwrap_or(arg.get_id().as_str()));
    word.push("=");
    word.push(value);
    word
}

/// The flags (clap ids) only the other mode than `mode` takes.
fn other_mode_flags(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Tasks => &["chunk_size", "array_limit", "max_array_size"],
        Mode::Array => &["ntasks"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::args::Mode as ModeArg;

    /// `retry FLAGS` over a campaign whose gen was `gen STORED` in `/gen-cwd`, with the
    /// config `/gen-cwd/site.yaml`; retry runs in `/retry-cwd`.
    fn replay(stored: &[&str], flags: &[&str]) -> Result<GenArgs, RetryError> {
        let dir = tempfile::tempdir().unwrap();
        let list_path = dir.path().join("l.txt");
        std::fs::write(&list_path, "g.hdf\n").unwrap();
        let original = read_list(&list_path).unwrap();
        let call = GenCall {
            cwd: "/gen-cwd".into(),
            args: stored.iter().map(|a| a.to_string()).collect(),
            config: Some("/gen-cwd/site.yaml".into()),
        };
        let campaign = Campaign::new(&list_path, Path::new("/out"), Some(call.clone()), "t");
        let given = Cli::command()
            .try_get_matches_from(["pseg-slurm", "retry"].iter().chain(flags))
            .unwrap();
        let given = given.subcommand_matches("retry").unwrap();
        let args = RetryArgs::from_arg_matches(given).unwrap();
        let replayed = Replay {
            call: &call,
            list: Path::new("/state/retry/l-retry-1.txt"),
            original: &original,
            campaign: &campaign,
            cwd: Path::new("/retry-cwd"),
            state: Path::new("/state"),
        };
        replayed.gen_args(&args, given)
    }

    #[test]
    fn flags_typed_for_retry_replace_the_stored_ones() {
        let g = replay(
            &[
                "--files",
                "l.txt",
                "--mode",
                "array",
                "--chunk-size",
                "3",
                "-p",
                "a",
                "--profile",
                "p1",
                "--profile",
                "p0",
                "--exe",
                "./x",
                "--time",
                "90",
            ],
            &[
                "--mode",
                "tasks",
                "--ntasks",
                "2",
                "--profile",
                "p2",
                "--exe",
                "clavrxorb",
                "--template",
                "t.tera",
                "--config",
                "c.yaml",
                "--pseg-step",
                "bin/ps",
            ],
        )
        .unwrap();
        assert_eq!(g.files, PathBuf::from("/state/retry/l-retry-1.txt"));
        assert_eq!(g.mode, Some(ModeArg::Tasks));
        assert_eq!(g.slurm.chunk_size, None, "array mode's flag is left behind");
        assert_eq!(g.slurm.ntasks.map(|n| n.get()), Some(2));
        assert_eq!(
            g.slurm.partition.as_deref(),
            Some("a"),
            "stored, not typed again"
        );
        assert_eq!(g.slurm.time.unwrap().seconds, 5400);
        assert_eq!(
            g.sizing.profile,
            [PathBuf::from("/retry-cwd/p2")],
            "replaced"
        );
        assert_eq!(
            g.step.exe,
            Some("clavrxorb".into()),
            "a bare name stays a name"
        );
        assert_eq!(g.step.pseg_step, Some("/retry-cwd/bin/ps".into()));
        assert_eq!(g.template, Some("/retry-cwd/t.tera".into()));
        assert_eq!(g.config, Some("/retry-cwd/c.yaml".into()));
        assert_eq!(
            g.step.out,
            Some("/out".into()),
            "the campaign's output folder"
        );
    }

    #[test]
    fn the_stored_call_stands_where_retry_gives_nothing() {
        let g = replay(
            &[
                "--files",
                "l.txt",
                "--config",
                "other.yaml",
                "--profile",
                "p1",
                "--exe",
                "./x",
            ],
            &["--failed"],
        )
        .unwrap();
        assert_eq!(g.config, Some("/gen-cwd/site.yaml".into()), "what gen used");
        assert_eq!(
            g.sizing.profile,
            [PathBuf::from("p1")],
            "relative to gen's folder"
        );
        assert_eq!(g.step.exe, Some("./x".into()));
        let e = replay(&["--files", "l.txt", "--no-such"], &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the gen call stored in /state/campaign.yaml no longer parses"),
            "{e}"
        );
        let e = replay(&["--files", "l.txt"], &["--out", "/elsewhere"]).unwrap_err();
        assert!(matches!(e, RetryError::OtherOut { .. }), "{e}");
    }
}
