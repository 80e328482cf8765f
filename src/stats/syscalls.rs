//! Counting the system calls a worker thread makes, with the kernel's own
//! counter: a `perf_event_open` counting event on the tracepoint
//! `raw_syscalls:sys_enter`, the same one `perf stat -e
//! raw_syscalls:sys_enter` reads.
//!
//! Each worker thread opens a counter on itself with `inherit`, so threads
//! it starts (the `threads` backend's) are counted too, and threads of an
//! in-process demo server are not. When counting is not permitted
//! (`perf_event_paranoid`, no tracefs, seccomp) the reason is reported
//! instead of a number.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};

const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `disabled` is bit 0, `inherit` bit 1, `exclude_hv` bit 6.
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;

/// The first, 64-byte version of `struct perf_event_attr`
/// (PERF_ATTR_SIZE_VER0); the kernel accepts it and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracepoint's id, mounting tracefs first if we may (as perf does).
fn tracepoint_id() -> Result<u64, String> {
    let read = || {
        TRACEFS.iter().find_map(|root| {
            std::fs::read_to_string(format!("{root}/events/raw_syscalls/sys_enter/id")).ok()
        })
    };
    let text = match read() {
        Some(t) => t,
        None => {
            let _ = std::process::Command::new("mount")
                .args(["-t", "tracefs", "nodev", TRACEFS[0]])
                .stderr(std::process::Stdio::null())
                .status();
            read().ok_or_else(|| {
                "tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing".to_string()
            })?
        }
    };
    text.trim()
        .parse()
        .map_err(|_| "unreadable raw_syscalls:sys_enter id".to_string())
}

/// A running count of the calling thread's (and its future children's) system calls.
pub struct SyscallCounter {
    file: File,
}

impl SyscallCounter {
    /// Starts counting on the calling thread, or says why it cannot.
    ///
    /// `URINGFETCH_NO_SYSCALL_COUNT=1` turns counting off: the tracepoint
    /// makes every system call a little dearer, so a benchmark that times
    /// CPU (`bench/run`) counts system calls in a separate run instead.
    pub fn start() -> Result<Self, String> {
        if std::env::var_os("URINGFETCH_NO_SYSCALL_COUNT").is_some_and(|v| v == "1") {
            return Err("not counted (URINGFETCH_NO_SYSCALL_COUNT=1)".to_string());
        }
        let id = tracepoint_id()?;
        let attr = PerfEventAttrV0 {
            type_: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttrV0>() as u32,
            config: id,
            flags: FLAG_INHERIT | FLAG_EXCLUDE_HV,
            ..Default::default()
        };
        // SAFETY: perf_event_open reads `size` bytes from a valid, initialised
        // attribute struct that lives across the call; pid 0 and cpu -1 mean
        // "this thread, any CPU"; no group fd, no flags. The return value is
        // either -1 or a new descriptor that we then own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttrV0,
                0 as libc::pid_t,
                -1 as libc::c_int,
                -1 as libc::c_int,
                0 as libc::c_ulong,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => format!(
                    "perf_event_open not permitted ({e}): run as root or lower kernel.perf_event_paranoid"
                ),
                Some(libc::ENOSYS) => "perf events are not available in this kernel".to_string(),
                _ => format!("perf_event_open failed: {e}"),
            });
        }
        // SAFETY: `fd` is a fresh descriptor returned by the kernel and not
        // owned by anything else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(Self {
            file: File::from(owned),
        })
    }

    /// The count so far, including threads started from this one that have
    /// exited (their counts are folded in when they exit).
    pub fn read(&mut self) -> Result<u64, String> {
        let mut buf = [0u8; 8];
        self.file
            .read_exact(&mut buf)
            .map_err(|e| format!("reading the syscall counter failed: {e}"))?;
        Ok(u64::from_ne_bytes(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_threads_syscalls_or_says_why_not() {
        match SyscallCounter::start() {
            Ok(mut c) => {
                let before = c.read().unwrap();
                for _ in 0..100 {
                    // SAFETY: getppid has no preconditions.
                    unsafe { libc::getppid() };
                }
                let after = c.read().unwrap();
                assert!(after - before >= 100, "{before} -> {after}");
            }
            Err(why) => assert!(!why.is_empty()),
        }
    }
}
