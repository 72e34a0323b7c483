//! Reading and writing a stopped child's memory through `/proc/PID/mem`.
//!
//! Only plain positioned reads and writes on a file: the kernel checks ptrace access (we are
//! the parent of every process we touch). Callers must only use it while the process is stopped.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An open `/proc/PID/mem`.
#[derive(Debug)]
pub struct ProcMem {
    file: File,
    pid: i32,
}

impl ProcMem {
    pub fn open(proc_root: &Path, pid: i32) -> std::io::Result<ProcMem> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(proc_root.join(pid.to_string()).join("mem"))?;
        Ok(ProcMem { file, pid })
    }

    pub fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file
            .read_exact_at(buf, addr)
            .map_err(|e| self.context("read", addr, e))
    }

    pub fn write_bytes(&self, addr: u64, buf: &[u8]) -> std::io::Result<()> {
        self.file
            .write_all_at(buf, addr)
            .map_err(|e| self.context("write", addr, e))
    }

    pub fn read_i32(&self, addr: u64) -> std::io::Result<i32> {
        let mut b = [0u8; 4];
        self.read_bytes(addr, &mut b)?;
        Ok(i32::from_ne_bytes(b))
    }

    pub fn read_i64(&self, addr: u64) -> std::io::Result<i64> {
        let mut b = [0u8; 8];
        self.read_bytes(addr, &mut b)?;
        Ok(i64::from_ne_bytes(b))
    }

    pub fn write_i32(&self, addr: u64, value: i32) -> std::io::Result<()> {
        self.write_bytes(addr, &value.to_ne_bytes())
    }

    fn context(&self, what: &str, addr: u64, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            e.kind(),
            format!("{what} of pid {} memory at {addr:#x}: {e}", self.pid),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_a_live_process_of_our_own() {
        // Our own memory through /proc/self/mem: the same kernel path as a child's.
        let cell = Box::new(0x1234_5678_i64);
        let addr = &*cell as *const i64 as u64;
        let mem = ProcMem::open(Path::new("/proc"), std::process::id() as i32).unwrap();
        assert_eq!(mem.read_i64(addr).unwrap(), 0x1234_5678);
        let target = Box::new(7_i32);
        let taddr = &*target as *const i32 as u64;
        mem.write_i32(taddr, 42).unwrap();
        assert_eq!(std::hint::black_box(*target), 42);
    }

    #[test]
    fn a_bad_address_names_pid_and_address() {
        let mem = ProcMem::open(Path::new("/proc"), std::process::id() as i32).unwrap();
        let err = mem.read_i32(8).unwrap_err();
        assert!(err.to_string().contains("at 0x8"), "{err}");
    }
}
