//! The segment loop of clavrxorb: for each granule in `file_list`, for each
//! segment: read, clone, waitpoints, faults, process, write. Policy only;
//! OS calls go through `sys`, `clones`, `output` and `tracer`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::clones::{self, Cloned};
use crate::failure::{Failure, code};
use crate::granule::{Fault, Granule};
use crate::options::{self, FileList};
use crate::output;
use crate::sys;
use crate::tmpdir::TmpDir;
use crate::tracer::{self, Settings, Tracer, wp};
use crate::work::{self, Ballast};

/// Acts as clavrxorb in the current directory.
pub fn run() -> Result<(), Failure> {
    let settings = Settings::parse(|k| std::env::var(k).ok()).map_err(Failure::input)?;
    if let Some(pause) = env_millis("MOCK_CLAVRX_STARTUP_MS") {
        // clavrxorb's start-up (ancillary data, lookup tables): serial time before the
        // first segment, which no number of workers shortens.
        std::thread::sleep(pause);
    }
    let scan_lines = options::read_scan_lines(Path::new("clavrx_options"))?;
    let list = options::read_file_list(Path::new("file_list"))?;
    refuse_blocked_term_signals()?;
    sys::install_term_handlers()
        .map_err(|e| Failure::system(format!("installing SIGTERM handler: {e}")))?;
    // Held for the whole run, and shared copy-on-write with every clone.
    let _base = start_up()?;
    let mut process = Process {
        tracer: Tracer::new(settings),
        tmp: TmpDir::create()?,
        is_clone: false,
        scan_lines,
    };
    let result = process.granules(&list);
    process.tmp.remove();
    result
}

/// State of this process (original or clone).
struct Process {
    tracer: Tracer,
    tmp: TmpDir,
    is_clone: bool,
    scan_lines: u32,
}

/// One granule being processed.
struct Current {
    granule: Granule,
    output: PathBuf,
}

impl Process {
    fn granules(&mut self, list: &FileList) -> Result<(), Failure> {
        for name in &list.granules {
            // Like clavrxorb: a file it cannot read is skipped with an error line, and the
            // run goes on to the next name (and exits 0 after the last).
            let granule = match Granule::open(&list.input_path(name)) {
                Ok(granule) => granule,
                Err(why) => {
                    crate::failure::report(format_args!("ERROR: {why}; skipping it"));
                    continue;
                }
            };
            tracer::set_number_of_lines(granule.header.lines);
            tracer::set_num_scans_level2_hdf(0);
            let segments = granule.header.lines.div_ceil(self.scan_lines);
            let mut current = Current {
                granule,
                output: list.output_path(name),
            };
            for k in 1..=segments {
                self.segment(&mut current, k)?;
            }
        }
        self.tracer.waitpoint(wp::ALL_FINISH);
        Ok(())
    }

    fn segment(&mut self, current: &mut Current, k: u32) -> Result<(), Failure> {
        let header = current.granule.header;
        let start = (k - 1) * self.scan_lines;
        let end = header.lines.min(start.saturating_add(self.scan_lines));
        let count = end - start;
        let inputs = current.granule.read_records(start, count)?;
        let read_ballast = Ballast::touched(ballast_bytes(header.read_mem, count, "read_mem")?);
        self.tracer.set_segment(start, &inputs, self.scan_lines);
        say(format_args!("segment {k}: lines {}-{end}", start + 1));

        let settings = self.tracer.settings();
        if settings.enabled && settings.clones > 0 {
            match clones::make(settings.clones, &mut self.tmp)? {
                Cloned::Original(pids) => self.tracer.set_siblings(&pids),
                Cloned::Clone => self.is_clone = true,
            }
        }
        if header.fault == Some(Fault::ParentExit3(k)) && !self.is_clone {
            return Err(Failure::new(
                code::PARENT_EXIT3,
                format!(
                    "fault parent-exit3:{k}: original process exits 3 after reading segment {k} of {}",
                    current.granule.path.display()
                ),
            ));
        }
        self.tracer.waitpoint(wp::L1B);
        if tracer::take_skip_processing() {
            say(format_args!("segment {k}: skipped"));
            return Ok(());
        }

        self.tracer.waitpoint(wp::BEFORE_ECM2);
        let work_ballast = Ballast::touched(ballast_bytes(header.work_mem, count, "work_mem")?);
        self.processing_fault(header.fault, k);
        if self.is_clone {
            hold_for_overlap();
        }
        let bytes = work::segment_bytes(u64::from(start), &inputs, header.work);
        if let Some(pause) = wall_time_per_segment() {
            // Wall time without CPU: stretches a run (to meet a time limit) without changing
            // its output, so a reference run without the variable stays fast.
            std::thread::sleep(pause);
        }
        let work_ballast = if spike() {
            // Freed before the next waitpoint: a peak only a high-water mark can see.
            drop(work_ballast);
            None
        } else {
            Some(work_ballast)
        };
        self.tracer.waitpoint(wp::ECM2);
        self.tracer.waitpoint(wp::TYPE);
        self.tracer.waitpoint(wp::FINAL);
        drop(work_ballast);

        let at = tracer::num_scans_level2_hdf();
        if settings.skip_output {
            tracer::set_num_scans_level2_hdf(at + count as i32);
        } else {
            output::write_segment(&current.output, &bytes, count)?;
        }
        say(format_args!(
            "segment {k}: lines {}-{end} processed, written at scan {at}{}",
            start + 1,
            if settings.skip_output {
                " (output skipped)"
            } else {
                ""
            }
        ));
        self.tracer.waitpoint(wp::SAVE);
        drop(read_ballast);
        Ok(())
    }

    /// Faults of the process that processes segment `k`.
    fn processing_fault(&self, fault: Option<Fault>, k: u32) {
        match fault {
            Some(Fault::CloneSegv(f)) if f == k && self.is_clone => {
                say(format_args!("fault clone-segv:{k}: dying by SIGSEGV"));
                sys::die_by_sigsegv();
            }
            Some(Fault::SelfStop(f)) if f == k => {
                say(format_args!(
                    "fault self-stop:{k}: SIGSTOP with wait_number {}",
                    tracer::wait_number()
                ));
                sys::stop_self();
            }
            Some(Fault::Hang(f)) if f == k => {
                say(format_args!("fault hang:{k}: sleeping forever"));
                sys::pause_forever();
            }
            _ => {}
        }
    }
}

/// Deliberate deviation from clavrxorb: the real program would run on with
/// SIGTERM blocked, so a driver's "end" (SIGTERM, SIGCONT) would just continue
/// it: a clone continued past waitpoint 6 reads on and clones again, for ever
/// (a fork bomb). The mock fails loudly instead.
fn refuse_blocked_term_signals() -> Result<(), Failure> {
    let blocked = sys::blocked_term_signals()
        .map_err(|e| Failure::system(format!("reading the signal mask: {e}")))?;
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Failure::input(format!(
        "{} blocked in the signal mask inherited from the parent process: \
         SIGTERM could not end this process (real clavrxorb would ignore it and, \
         in tracer mode, go on cloning); start clavrxorb with an empty signal mask",
        blocked.join(" and ")
    )))
}

/// `per_line * lines` bytes, refusing sizes that do not fit.
fn ballast_bytes(per_line: u64, lines: u32, what: &str) -> Result<usize, Failure> {
    per_line
        .checked_mul(u64::from(lines))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| Failure::input(format!("{what}={per_line} times {lines} lines overflows")))
}

/// One line on stdout, flushed.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `MOCK_CLAVRX_SPIKE=1`: the work memory is freed as soon as the segment is computed,
/// before waitpoint 2, so no waitpoint sees it held.
fn spike() -> bool {
    std::env::var("MOCK_CLAVRX_SPIKE").as_deref() == Ok("1")
}

/// `MOCK_CLAVRX_HOLD=N`: a clone holding its work memory goes on only once N clones in this
/// working directory have held theirs (or after a minute), so N workers' memory is held at
/// once however loaded the machine is: a peak a test can count on. Each clone leaves a
/// `clavrx_held.PID` file to be counted.
fn hold_for_overlap() {
    let Some(n) = std::env::var("MOCK_CLAVRX_HOLD")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    else {
        return;
    };
    let _ = std::fs::write(format!("clavrx_held.{}", sys::getpid()), "");
    let held = || {
        std::fs::read_dir(".").map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("clavrx_held."))
                .count()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while held() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `MOCK_CLAVRX_SLEEP_MS` (milliseconds per processed segment), for tests that need a run to
/// take a while; unset or unparsable means no pause.
fn wall_time_per_segment() -> Option<std::time::Duration> {
    env_millis("MOCK_CLAVRX_SLEEP_MS")
}

/// Milliseconds from the variable `name`; unset, unparsable or 0 is none.
fn env_millis(name: &str) -> Option<std::time::Duration> {
    let ms: u64 = std::env::var(name).ok()?.trim().parse().ok()?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

/// clavrxorb's start-up before the first segment (reading ancillary data, tens of seconds
/// for real CLAVR-x): `MOCK_CLAVRX_STARTUP_MS` milliseconds of CPU work, and
/// `MOCK_CLAVRX_BASE_MEM` bytes touched and held for the whole run (its base memory).
fn start_up() -> Result<Option<Ballast>, Failure> {
    let number = |name: &str| -> Result<u64, Failure> {
        match std::env::var(name) {
            Err(_) => Ok(0),
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| Failure::input(format!("{name}={v:?}: expected a whole number"))),
        }
    };
    let base = number("MOCK_CLAVRX_BASE_MEM")?;
    let ballast = (base > 0)
        .then(|| usize::try_from(base).map(Ballast::touched))
        .transpose()
        .map_err(|_| Failure::input("MOCK_CLAVRX_BASE_MEM does not fit in memory"))?;
    let ms = number("MOCK_CLAVRX_STARTUP_MS")?;
    if ms > 0 {
        // CPU time, not wall time: a start-up competes for cores like real work does.
        let want = std::time::Duration::from_millis(ms);
        let wall = std::time::Instant::now();
        // Without schedstat, wall time stands in.
        let used = || cpu_used().unwrap_or_else(|| wall.elapsed());
        let begin = used();
        let mut x = 0;
        while used().saturating_sub(begin) < want {
            x = work::work(x, 20_000);
        }
        std::hint::black_box(x);
    }
    Ok(ballast)
}

/// CPU time this process has used, from /proc/self/schedstat (nanoseconds on a CPU).
fn cpu_used() -> Option<std::time::Duration> {
    let ns = std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())?;
    Some(std::time::Duration::from_nanos(ns))
}
