//! `pseg-slurm`: parse the command line, run the subcommand, map the outcome to an exit code.
//!
//! Exit status: 0 success (a broken stdout pipe counts as success), 1 a problem with the
//! inputs (explained on stderr, nothing on stdout), 2 a usage error (from clap), 3 `retry`
//! found nothing to retry (nothing on stdout); `verify`: 1 also when an output differs;
//! `run`: 1 some granules failed for good, 3 a bound or a Slurm error, 4 another run.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pseg_slurm::cli::{
    Cli, Command, ConfigCommand, Format, PlanArgs, ReleaseArgs, ReportArgs, VerifyArgs,
};
use pseg_slurm::config::{EXAMPLE, SiteConfig};
use pseg_slurm::ledger::claim::Marked;
use pseg_slurm::ledger::regen::{self, Retried};
use pseg_slurm::ledger::release::{self, Decision, Filter, Released};
use pseg_slurm::ledger::{self, Holder, Ledger, RetryBudget, STATE_DIR, status, verify};
use pseg_slurm::render;
use pseg_slurm::script;

#[path = "cmd/run.rs"]
mod run_cmd;

/// `retry` found nothing to retry.
const NOTHING_TO_RETRY: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = pseg_slurm::escape::controls_in_lines(&chain(e.as_ref()));
            eprintln!("pseg-slurm: error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Gen(args) => {
            let generated = script::generate(&args)?;
            warn(&generated.warnings);
            let argv: Vec<_> = std::env::args_os().collect();
            regen::remember_gen(&generated, &argv)?;
            generated.create_log_dir()?;
            print(&generated.script)
        }
        Command::Status(args) => {
            let dir = ledger::find_state_dir(&args.dir)?;
            let summary = status::summarize(
                status::read(&dir)?,
                &RetryBudget::default(),
                pseg_slurm::report::unix_now(),
            );
            let text = match args.format {
                Format::Text => status::render_text(&summary),
                Format::Yaml => serde_yaml::to_string(&summary)?,
                Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
            };
            print(&text)
        }
        Command::Retry(args) => match regen::run(*args)? {
            Retried::Nothing(selection) => {
                eprintln!(
                    "pseg-slurm: nothing to retry{}",
                    match selection.busy.len() {
                        0 => String::new(),
                        n => format!(" ({n} granule(s) are being processed now)"),
                    }
                );
                Ok(NOTHING_TO_RETRY)
            }
            Retried::Script {
                generated,
                list,
                selection,
                reset,
            } => {
                warn(&generated.warnings);
                eprintln!(
                    "pseg-slurm: retrying {} failed ({reset} with a fresh retry budget) and {} \
                     missing granule(s), listed in {}{}",
                    selection.failed.len(),
                    selection.missing.len(),
                    list.display(),
                    match selection.busy.len() {
                        0 => String::new(),
                        n => format!("; {n} being processed now are left out"),
                    }
                );
                print(&generated.script)
            }
        },
        Command::Run(args) => run_cmd::run(*args),
        Command::Release(args) => release(&args),
        Command::Verify(args) => verify(&args),
        Command::Report(args) => report(&args),
        Command::Plan(args) => plan(&args),
        Command::Config(ConfigCommand::Init) => print(EXAMPLE),
        Command::Config(ConfigCommand::Check { config }) => {
            SiteConfig::load(&config)?;
            eprintln!("pseg-slurm: {} is a valid site config", config.display());
            Ok(0)
        }
    }
}

/// `pseg-slurm release`: lists the matching claims, and with `--yes` releases those whose
/// holder is not provably alive.
fn release(args: &ReleaseArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let dir = ledger::find_state_dir(&args.dir)?;
    let ledger = Ledger::open_existing(&dir)?;
    let filter = Filter {
        granules: args.granule.clone(),
        host: args.host.clone(),
    };
    let me = Holder::current();
    let plan = release::plan(&ledger, &filter, &me)?;
    let now = pseg_slurm::report::unix_now();
    let mut released = 0;
    // Line by line: if releasing one fails, what was done before is on stdout.
    for found in &plan.found {
        let line = release::describe(found, now);
        let verb = match (&found.decision, args.yes) {
            (Decision::Keep(_), _) => "keep",
            (Decision::Release(_), false) => "would release",
            (Decision::Release(_), true) => match release::release(&ledger, found, &me)? {
                Released::Changed => "left alone (the claim changed meanwhile)",
                Released::Kept => "keep",
                Released::Done { interrupted } => released_verb(interrupted, &mut released),
            },
        };
        print(&format!("{verb} {line}\n"))?;
    }
    for bad in &plan.unreadable {
        let verb = if args.yes {
            match release::release_unreadable(&ledger, bad, &me)? {
                Released::Changed | Released::Kept => "left alone (it changed meanwhile)",
                Released::Done { interrupted } => released_verb(interrupted, &mut released),
            }
        } else {
            "would release"
        };
        print(&format!(
            "{verb} unreadable claim file {} (it names no holder; pseg-step never leaves one)\n",
            bad.describe()
        ))?;
    }
    let n = plan.releasable() + plan.unreadable.len();
    print(
        &match (plan.found.len() + plan.unreadable.len(), args.yes) {
            (0, _) => "no matching claims\n".to_string(),
            (_, true) => format!("released {released} claim(s)\n"),
            (_, false) if n > 0 => {
                format!("dry run: {n} claim(s) would be released; run again with --yes to do it\n")
            }
            (_, false) => "nothing to release: every matching holder is alive\n".to_string(),
        },
    )
}

/// The words for a claim that was released, counting it.
fn released_verb(interrupted: bool, count: &mut usize) -> &'static str {
    *count += 1;
    if interrupted {
        "released (record marked interrupted)"
    } else {
        "released"
    }
}

/// `pseg-slurm verify`: one line per finding on stdout, what was recorded on stderr; 1 if
/// anything differs.
fn verify(args: &VerifyArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let out = &args.dir;
    let state = args.state.clone().unwrap_or_else(|| out.join(STATE_DIR));
    if ledger::find_state_dir(out).is_ok_and(|s| &s == out) {
        return Err(format!(
            "{} is a state folder: pass the output folder (`--out`), and --state if the state \
             folder is elsewhere",
            out.display()
        )
        .into());
    }
    let ledger = Ledger::open_existing(&state)?;
    // Checking the wrong folder would send every done granule back: refuse instead (unless
    // the campaign's folder no longer exists: moved, and OUT is where it went).
    let elsewhere =
        |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a != b,
            _ => false,
        };
    if let Some(campaign) = ledger::Campaign::read(&state)? {
        if elsewhere(&campaign.output_dir, out) {
            return Err(format!(
                "the campaign of {} writes into {}, not {}: pass that folder",
                state.display(),
                campaign.output_dir.display(),
                out.display()
            )
            .into());
        }
    }
    if !out.join(pseg_slurm::report::DIR).is_dir() {
        return Err(format!(
            "{} has no {} folder: it is not the output folder of a pseg-step run",
            out.display(),
            pseg_slurm::report::DIR
        )
        .into());
    }
    let report = verify::check(&ledger, out)?;
    for finding in &report.findings {
        print(&format!("{finding}\n"))?;
    }
    if !report.legacy.is_empty() {
        eprintln!(
            "pseg-slurm: warning: {} granule(s) have an outputs manifest from an older \
             pseg-step, without sizes or hashes (first: {}): their files were only checked to \
             be there",
            report.legacy.len(),
            report.legacy[0]
        );
    }
    let checked = format!(
        "{} done granule(s), {} file(s), {}",
        report.checked,
        report.files,
        pseg_slurm::size::Size(report.bytes)
    );
    if report.findings.is_empty() {
        eprintln!("pseg-slurm: verified {checked}: every output matches its manifest");
        return Ok(0);
    }
    let marked = verify::record(&ledger, out, &report, &Holder::current())?;
    let count = |m: Marked| marked.iter().filter(|(_, x)| *x == m).count();
    eprintln!(
        "pseg-slurm: checked {checked}: {} finding(s); {} granule(s) recorded as failed \
         (output-changed, no retry used): the next run or `pseg-slurm retry --missing` redoes \
         them",
        report.findings.len(),
        count(Marked::Marked)
    );
    for (name, m) in &marked {
        let why = match m {
            Marked::Marked => continue,
            Marked::Fine => "matches again now (redone meanwhile?)",
            Marked::NotDone => "is no longer done (being redone?)",
            Marked::Held => "is held by a running process",
        };
        eprintln!("pseg-slurm: {name} not recorded: it {why}");
    }
    Ok(1)
}

/// `pseg-slurm report`: renders the page and writes it (atomically: a browser reloading it
/// never sees half a page).
fn report(args: &ReportArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let options = render::Options {
        slowest: args.slowest,
        details: args.details,
        failed_details: args.failed_details,
        granules: args.granule.clone(),
        ..render::Options::default()
    };
    let page = render::render(&args.dir, &options)?;
    warn(&page.warnings);
    if args.output.as_os_str() == "-" {
        return print(&page.html);
    }
    let out = &args.output;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| format!("{} names no file to write the page to", out.display()))?;
    let write = || -> std::io::Result<()> {
        // Readable by others, as a page to share (the umask still applies).
        let mut tmp = tempfile::Builder::new()
            .prefix(".pseg-report")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)?;
        tmp.write_all(page.html.as_bytes())?;
        tmp.persist(dir.join(name)).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "pseg-slurm: wrote {} ({} granule(s), {} drawn in detail); open it in a browser",
        out.display(),
        page.granules,
        page.details
    );
    Ok(0)
}

/// `pseg-slurm plan`: the projection, as a table or as data.
fn plan(args: &PlanArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let profile = pseg_slurm::plan::load(&args.profile)?;
    for (file, why) in &profile.unusable {
        eprintln!("pseg-slurm: warning: {} left out: {why}", file.display());
    }
    let cpus: Vec<usize> = args.cpus.iter().map(|c| c.get()).collect();
    let campaign = args.granules.map(|n| pseg_slurm::plan::Campaign {
        granules: n.get(),
        concurrency: args.array_concurrency.get(),
    });
    let p = pseg_slurm::plan::project(&profile.granules, &cpus, campaign)?;
    print(&match args.format {
        Format::Text => pseg_slurm::plan::text(&p),
        Format::Yaml => serde_yaml::to_string(&p)?,
        Format::Json => serde_json::to_string_pretty(&p)? + "\n",
    })
}

fn warn(warnings: &[String]) {
    for warning in warnings {
        let warning = pseg_slurm::escape::controls_in_lines(warning);
        eprintln!("pseg-slurm: warning: {warning}");
    }
}

/// Writes all of `text` to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Result<u8, Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// An error and its causes, one per line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str("\n  caused by: ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}
