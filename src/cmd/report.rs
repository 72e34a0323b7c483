//! `pseg-slurm report`: renders the page and writes it (atomically: a browser reloading it
//! never sees half a page).

use crate::base::atomic_file;
use crate::cmd::args::ReportArgs;
use crate::cmd::{Outcome, print, warn};
use crate::domain::page;

/// `pseg-slurm report`: renders the page and writes it (atomically: a browser reloading it
/// never sees half a page).
pub fn run(args: &ReportArgs) -> Outcome {
    let options = page::Options {
        slowest: args.slowest,
        details: args.details,
        failed_details: args.failed_details,
        granules: args.granule.clone(),
        ..page::Options::default()
    };
    let page = page::render(&args.dir, &options)?;
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
    // Readable by others, as a page to share (the umask still applies).
    atomic_file::write_with_mode(dir, name, page.html.as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "pseg-slurm: wrote {} ({} granule(s), {} drawn in detail); open it in a browser",
        out.display(),
        page.granules,
        page.details
    );
    Ok(0)
}
