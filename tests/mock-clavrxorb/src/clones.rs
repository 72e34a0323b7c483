//! Making a segment's clones (`clone(CLONE_PARENT)`) and turning a fresh
//! clone into an independent process: own file offsets for every descriptor
//! >= 3, own stdout/stderr files, own temporary directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::RawFd;

use crate::failure::{self, Failure};
use crate::sys;
use crate::tmpdir::TmpDir;

/// Which side of the clone calls we are on.
pub enum Cloned {
    /// The process that made the clones, with their pids.
    Original(Vec<i32>),
    /// One of the clones, set up and ready to go on.
    Clone,
}

/// Makes `count` clones. SIGTERM/SIGINT are held back meanwhile, so a signal
/// never finds a clone still registered with its parent's temporary dir.
pub fn make(count: usize, tmp: &mut TmpDir) -> Result<Cloned, Failure> {
    let original = sys::getpid();
    let _blocked =
        sys::block_term_signals().map_err(|e| Failure::system(format!("blocking SIGTERM: {e}")))?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut pids = Vec::with_capacity(count);
    for _ in 0..count {
        match sys::clone_parent() {
            Ok(Some(pid)) => pids.push(pid),
            Ok(None) => {
                become_clone(original, tmp)?;
                return Ok(Cloned::Clone);
            }
            Err(e) => {
                return Err(Failure::system(format!(
                    "clone {} of {count} failed: {e}",
                    pids.len() + 1
                )));
            }
        }
    }
    Ok(Cloned::Original(pids))
}

fn become_clone(original: i32, tmp: &mut TmpDir) -> Result<(), Failure> {
    tmp.disown();
    if let Err(why) = reopen_descriptors(original) {
        failure::report(format_args!("clone {}: {why}", sys::getpid()));
        std::process::exit(1);
    }
    let me = sys::getpid();
    for (name, fd) in [
        (format!("clavrx.stdout.{me}"), 1),
        (format!("clavrx.stderr.{me}"), 2),
    ] {
        let file = File::create(&name)
            .and_then(|f| sys::replace_fd(&f, fd, false))
            .map_err(|e| Failure::system(format!("clone {me}: redirecting to {name}: {e}")));
        if let Err(f) = file {
            failure::report(&f);
            std::process::exit(1);
        }
    }
    *tmp = TmpDir::create()?;
    Ok(())
}

/// Gives every descriptor >= 3 its own open file description by opening
/// `/proc/<original>/fd/N` with the same access mode and putting it on N.
fn reopen_descriptors(original: i32) -> Result<(), String> {
    // Collect first: the listing holds a descriptor of its own while open.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("listing /proc/self/fd: {e}"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3)
        .collect();
    for fd in fds {
        let status = match sys::fd_status(fd) {
            Ok(Some(status)) => status,
            // The listing's own descriptor, closed by now.
            Ok(None) => continue,
            Err(e) => return Err(format!("descriptor {fd}: fcntl: {e}")),
        };
        let source = format!("/proc/{original}/fd/{fd}");
        let mut open = OpenOptions::new();
        match status.access_mode {
            libc::O_WRONLY => open.write(true).append(status.append),
            libc::O_RDWR => open.read(true).write(true).append(status.append),
            _ => open.read(true),
        };
        let file = open
            .open(&source)
            .map_err(|e| format!("cannot reopen descriptor {fd} through {source}: {e}"))?;
        sys::replace_fd(&file, fd, status.cloexec)
            .map_err(|e| format!("cannot put {source} on descriptor {fd}: {e}"))?;
    }
    Ok(())
}
