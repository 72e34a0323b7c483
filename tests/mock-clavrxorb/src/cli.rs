//! The command line: no arguments (act as clavrxorb) or
//! `generate --lines N ... OUT`. Pure parsing; nothing is run here.

use std::path::PathBuf;

use crate::granule::{Fault, Header};

/// Usage text for stderr.
pub const USAGE: &str = "\
usage: mock-clavrxorb
           act as clavrxorb: read clavrx_options and file_list in the
           current directory and process the granules
       mock-clavrxorb generate --lines N [--seed S] [--work W]
           [--read-mem BYTES] [--work-mem BYTES] [--fault KIND:K] OUT
           write a granule file; KIND is parent-exit3, clone-segv,
           self-stop or hang, K a 1-based segment number
environment (besides clavrxorb's CLAVRX_* switches):
       MOCK_CLAVRX_SCAN_FILL=missing|numbered|exact
           scan_line_number past a short segment's lines: -999 (default,
           like CLAVR-x's generic readers), numbered on past the granule's
           end (like its VIIRS/FY readers), or no entries (not CLAVR-x)
       MOCK_CLAVRX_SLEEP_MS=N   wall time added per processed segment
       MOCK_CLAVRX_STARTUP_MS=N CPU time spent starting up, before segment 1
       MOCK_CLAVRX_BASE_MEM=BYTES  memory touched at start-up and held to the end
       MOCK_CLAVRX_SPIKE=1      free the work memory before waitpoint 2
           (a peak between waitpoints)
       MOCK_CLAVRX_HOLD=N       a clone keeps its work memory until N
           clones have held theirs (N workers' memory at once)";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Act as clavrxorb.
    Run,
    /// Write a granule file.
    Generate {
        /// Header of the new file.
        header: Header,
        /// Where to write it.
        out: PathBuf,
    },
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(Command::Run);
    };
    if first != "generate" {
        return Err(format!("unknown command {first:?}"));
    }
    let mut lines = None;
    let mut header = Header {
        lines: 0,
        seed: 1,
        work: 0,
        read_mem: 0,
        work_mem: 0,
        fault: None,
    };
    let mut out = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            if out.replace(PathBuf::from(arg)).is_some() {
                return Err(format!("more than one output file ({arg:?})"));
            }
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{arg} needs a value"))?
            .as_str();
        let number = || -> Result<u64, String> {
            value
                .parse()
                .map_err(|_| format!("{arg} {value:?}: not a non-negative integer"))
        };
        match arg.as_str() {
            "--lines" => lines = Some(number()?),
            "--seed" => header.seed = number()?,
            "--work" => header.work = number()?,
            "--read-mem" => header.read_mem = number()?,
            "--work-mem" => header.work_mem = number()?,
            "--fault" => header.fault = Fault::parse(value)?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let lines = lines.ok_or("--lines is required")?;
    header.lines = u32::try_from(lines)
        .ok()
        .filter(|&n| n >= 1 && n <= i32::MAX as u32)
        .ok_or_else(|| format!("--lines {lines}: must be 1..={}", i32::MAX))?;
    let out = out.ok_or("output file is required")?;
    Ok(Command::Generate { header, out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn no_arguments_runs() {
        assert_eq!(parse(&[]), Ok(Command::Run));
    }

    #[test]
    fn generate_defaults() {
        let Ok(Command::Generate { header, out }) = parse(&args("generate --lines 10 g.bin"))
        else {
            panic!("not parsed");
        };
        assert_eq!(out, PathBuf::from("g.bin"));
        assert_eq!((header.lines, header.seed, header.work), (10, 1, 0));
        assert_eq!(
            (header.read_mem, header.work_mem, header.fault),
            (0, 0, None)
        );
    }

    #[test]
    fn generate_all_options() {
        let a = args(
            "generate out --fault hang:3 --seed 9 --work 5 --read-mem 64 --work-mem 32 --lines 7",
        );
        let Ok(Command::Generate { header, out }) = parse(&a) else {
            panic!("not parsed");
        };
        assert_eq!(out, PathBuf::from("out"));
        assert_eq!(
            header,
            Header {
                lines: 7,
                seed: 9,
                work: 5,
                read_mem: 64,
                work_mem: 32,
                fault: Some(Fault::Hang(3)),
            }
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "run",
            "generate out",
            "generate --lines 0 out",
            "generate --lines 5",
            "generate --lines 5 a b",
            "generate --lines",
            "generate --lines -1 out",
            "generate --lines 5 --fault nope:1 out",
            "generate --lines 5 --bogus 1 out",
        ] {
            assert!(parse(&args(bad)).is_err(), "accepted {bad:?}");
        }
    }
}
