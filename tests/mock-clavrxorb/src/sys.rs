//! Every raw OS call of the mock, behind a safe API, and the exported tracer
//! globals (their `#[unsafe(no_mangle)]` attribute is why they live here).
//!
//! This is the only file allowed to contain `unsafe`; every unsafe block
//! carries a `// SAFETY:` comment. It holds no protocol policy: when to
//! stop, clone or lock is decided by the callers.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, Ordering};

// ---------------------------------------------------------------------------
// The tracer globals. `AtomicI32`/`AtomicI64` have the size and alignment of
// `i32`/`i64`, so a driver reading `/proc/PID/mem` at the symbol address sees
// plain integers, exactly like the gfortran module variables of clavrxorb.
// ---------------------------------------------------------------------------

/// Waitpoint the process is stopped at; 0 while running.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_wait_number: AtomicI32 = AtomicI32::new(0);

/// -1 by default; the driver writes 1 to skip the current segment.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_skip_processing: AtomicI32 = AtomicI32::new(-1);

/// Address of an i32 array with the pids of the clones just made.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_sibling_pids_addr: AtomicI64 = AtomicI64::new(0);

/// Scan lines in the whole granule.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_number_of_lines: AtomicI32 = AtomicI32::new(0);

/// Scan-line offset in the output file of the next segment this process writes.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __pixel_common_mod_MOD_num_scans_level2_hdf: AtomicI32 = AtomicI32::new(0);

/// Entries in the i4 1-D symbol table.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_num_symbols_i4_1d: AtomicI64 = AtomicI64::new(0);

/// Address of the names (256 bytes, blank padded, per entry).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_symbol_names_i4_1d_ptr: AtomicI64 = AtomicI64::new(0);

/// Address of an i64 array: each entry's data address.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_symbol_ptrs_i4_1d_ptr: AtomicI64 = AtomicI64::new(0);

/// Address of an i64 array: each entry's length.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static __tracer_MOD_symbol_shapes_i4_1d_ptr: AtomicI64 = AtomicI64::new(0);

// ---------------------------------------------------------------------------
// SIGTERM / SIGINT: remove the temporary directory and `_exit(1)`.
// ---------------------------------------------------------------------------

/// NUL-terminated path the signal handler removes; null for none. Points to a
/// leaked `CString`, so it stays valid for the life of the process.
static HANDLER_TMPDIR: AtomicPtr<libc::c_char> = AtomicPtr::new(ptr::null_mut());

extern "C" fn on_term_signal(_signal: libc::c_int) {
    let path = HANDLER_TMPDIR.load(Ordering::SeqCst);
    if !path.is_null() {
        // SAFETY: `path` comes from `CString::into_raw` and is never freed, so
        // it is a valid NUL-terminated string; rmdir is async-signal-safe.
        unsafe {
            libc::rmdir(path);
        }
    }
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(1) }
}

/// Makes the SIGTERM/SIGINT handler remove `path` (an empty directory).
/// The previous string is leaked on purpose: a handler may still be reading it.
pub fn set_handler_tmpdir(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in temporary dir path"))?;
    HANDLER_TMPDIR.store(c.into_raw(), Ordering::SeqCst);
    Ok(())
}

/// Makes the handler remove nothing (after the directory was removed normally).
pub fn clear_handler_tmpdir() {
    HANDLER_TMPDIR.store(ptr::null_mut(), Ordering::SeqCst);
}

/// Installs the SIGTERM and SIGINT handler with sigaction. SIGHUP is left alone.
pub fn install_term_handlers() -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: sigaction is plain data; all-zero is a valid starting value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_term_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised; the handler only calls
        // async-signal-safe functions; a null old-action pointer is allowed.
        if unsafe { libc::sigaction(signal, &action, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signals among SIGTERM and SIGINT that are blocked in this thread's
/// signal mask (inherited across exec from whoever started us).
pub fn blocked_term_signals() -> io::Result<Vec<&'static str>> {
    // SAFETY: sigset_t is plain data; sigprocmask fills it in below.
    let mut current: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new-set pointer only queries the mask into `current`.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut blocked = Vec::new();
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        // SAFETY: `current` is a valid, initialised sigset_t.
        if unsafe { libc::sigismember(&current, signal) } == 1 {
            blocked.push(name);
        }
    }
    Ok(blocked)
}

/// SIGTERM and SIGINT held back until this guard is dropped (then the old mask
/// is restored and pending signals are delivered).
pub struct TermSignalsBlocked {
    old: libc::sigset_t,
}

/// Blocks SIGTERM and SIGINT, e.g. while the handler's directory is switched.
pub fn block_term_signals() -> io::Result<TermSignalsBlocked> {
    // SAFETY: sigset_t is plain data; it is initialised by sigemptyset below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for the old mask that sigprocmask fills in.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t we own; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    // SAFETY: both pointers point to valid sigset_t values we own.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TermSignalsBlocked { old })
}

impl Drop for TermSignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: `self.old` is the mask sigprocmask returned earlier.
        unsafe {
            libc::sigprocmask(libc::SIG_SETMASK, &self.old, ptr::null_mut());
        }
    }
}

// ---------------------------------------------------------------------------
// Processes.
// ---------------------------------------------------------------------------

/// This process's pid (never cached: right after a clone it is the clone's).
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The raw `clone(CLONE_PARENT, 0, 0, 0, 0)` system call: a fork whose child
/// has this process's parent as its parent. Returns `None` in the clone and
/// `Some(pid)` in the caller. Refuses to run in a multi-threaded process
/// (only the calling thread would exist in the clone).
pub fn clone_parent() -> io::Result<Option<i32>> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "clone refused: process has {threads} threads"
        )));
    }
    let flags = libc::CLONE_PARENT as libc::c_long;
    let zero: libc::c_long = 0;
    // SAFETY: without CLONE_VM the child gets a copy-on-write copy of the
    // address space (like fork), so reusing the current stack (newsp = 0) is
    // sound; the process is single-threaded (checked above), so no lock is
    // held by another thread; the tid/tls pointers are unused without the
    // corresponding flags. x86_64 order: flags, newsp, ptid, ctid, tls.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, zero, zero, zero, zero) };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as i32)),
    }
}

/// Sends SIGSTOP to this process; returns once it has been continued.
pub fn stop_self() {
    // SAFETY: kill with our own pid and a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGSTOP);
    }
}

/// Dies by a real SIGSEGV (default action, no core file).
pub fn die_by_sigsegv() -> ! {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `no_core` is a valid rlimit; lowering RLIMIT_CORE is always allowed.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    // SAFETY: resetting SIGSEGV to its default disposition; std's
    // stack-overflow handler is no longer wanted since we are about to die.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
    }
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t we own; SIGSEGV is a valid signal.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSEGV);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
    }
    // SAFETY: kill with our own pid and a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGSEGV);
    }
    // The signal is delivered before kill returns; this is only a backstop.
    std::process::abort()
}

/// Sleeps forever without using CPU; only a signal ends the process.
pub fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe {
            libc::pause();
        }
    }
}

// ---------------------------------------------------------------------------
// Descriptors.
// ---------------------------------------------------------------------------

/// What `fcntl` says about an open descriptor.
#[derive(Clone, Copy, Debug)]
pub struct FdStatus {
    /// `O_RDONLY`, `O_WRONLY` or `O_RDWR`.
    pub access_mode: i32,
    /// `O_APPEND` is set.
    pub append: bool,
    /// `FD_CLOEXEC` is set.
    pub cloexec: bool,
}

/// Status of descriptor `fd`, or `None` if it is not open.
pub fn fd_status(fd: RawFd) -> io::Result<Option<FdStatus>> {
    // SAFETY: F_GETFL only reads flags; an unknown fd gives EBADF.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl == -1 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EBADF) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: F_GETFD only reads flags of an fd that is open (checked above).
    let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fd_flags == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(FdStatus {
        access_mode: fl & libc::O_ACCMODE,
        append: fl & libc::O_APPEND != 0,
        cloexec: fd_flags & libc::FD_CLOEXEC != 0,
    }))
}

/// Makes descriptor number `target` refer to the same open file as `source`
/// (dup3), replacing whatever `target` referred to. Used to give a clone its
/// own file offsets and to redirect stdout/stderr; the owner of `target`
/// keeps a valid descriptor.
pub fn replace_fd(source: &File, target: RawFd, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    if source.as_raw_fd() == target {
        return Ok(());
    }
    // SAFETY: `source` is an open descriptor we borrow; dup3 atomically
    // closes and replaces `target`, which callers use only for descriptors
    // they mean to replace.
    if unsafe { libc::dup3(source.as_raw_fd(), target, flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(true)` if locked, `Ok(false)` if another
/// open file description holds a lock.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we borrow for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(err),
    }
}

/// `flock(LOCK_UN)`.
pub fn unlock(file: &File) -> io::Result<()> {
    // SAFETY: flock on a descriptor we borrow for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
