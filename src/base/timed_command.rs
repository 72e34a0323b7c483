//! Running a short external command (`scontrol`) with a deadline: a scheduler that does not
//! answer must not hang `gen` or a claim.

use std::io::{self, Read};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `cmd` with stdin closed and its output captured; `Ok(None)` when it did not finish
/// within `timeout` (it is killed and reaped then).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> io::Result<Option<Output>> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read on threads so a chatty command cannot block on a full pipe while we wait.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait()? {
            Some(status) => break status,
            // A short poll of one helper command, not of clavrxorb: nothing to wake us else.
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
        }
    };
    Ok(Some(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }))
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_command_answers_and_a_slow_one_is_cut_off() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo hi; echo oops >&2"]),
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.stderr, b"oops\n");
        let started = Instant::now();
        let slow = output_within(Command::new("sleep").arg("10"), Duration::from_millis(200));
        assert!(slow.unwrap().is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
