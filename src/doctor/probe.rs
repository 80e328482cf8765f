//! What this kernel's io_uring can do, asked of the kernel itself: can a
//! ring be set up at all (and if not, why), which operations the opcode
//! probe reports, which setup flags a ring accepts, which feature bits it
//! returns, and whether a provided-buffer ring and a registered ring fd can
//! be registered. Nothing here is inferred from the version number except
//! multishot recv, which is a flag the probe cannot see.

use std::io;

use io_uring::{IoUring, Probe, opcode};
use serde::Serialize;

use crate::backend::uring_loop::ring::{self, BufRing, Profile};
use crate::error::UringSetupCause;

/// Whether `io_uring_setup` works here, and what gates it.
#[derive(Debug, Clone, Serialize)]
pub struct UringStatus {
    pub available: bool,
    /// `kernel.io_uring_disabled` (Linux 6.6+): 0 on, 1 root and
    /// `kernel.io_uring_group` only, 2 off; `None` where it does not exist.
    pub io_uring_disabled: Option<u8>,
    /// Seccomp mode of this process (0 none, 1 strict, 2 filter).
    pub seccomp: Option<u8>,
    /// The error `io_uring_setup` returned, if it failed.
    pub error: Option<String>,
    /// Why it failed and what to do, if it failed.
    pub cause: Option<UringSetupCause>,
}

/// One io_uring operation, setup flag or feature the backends care about.
#[derive(Debug, Clone, Serialize)]
pub struct Capability {
    pub name: &'static str,
    /// `op` (opcode probe), `setup` (flag accepted by io_uring_setup),
    /// `feature` (bit returned by io_uring_setup), `register`
    /// (io_uring_register accepted it) or `kernel` (version check).
    pub kind: &'static str,
    /// The Linux release that brought it.
    pub since: &'static str,
    pub supported: bool,
    /// What uringfetch uses it for.
    pub used_for: &'static str,
}

/// Reads a small integer from a `/proc` file.
fn read_proc<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// This process's seccomp mode, from `/proc/self/status`.
fn seccomp_mode() -> Option<u8> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Why io_uring cannot be used: the system call that failed and its error.
#[derive(Debug)]
pub struct Unusable {
    /// `io_uring_setup` or `io_uring_enter`.
    pub call: &'static str,
    pub error: io::Error,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.error)
    }
}

/// Whether this process can use io_uring at all: a ring can be set up and a
/// no-op submitted through it completes. A seccomp filter may allow
/// `io_uring_setup` and deny `io_uring_enter`; then rings are created fine
/// and no operation ever runs. Takes microseconds.
pub fn usable() -> Result<(), Unusable> {
    let mut ring = IoUring::new(2).map_err(|error| Unusable {
        call: "io_uring_setup",
        error,
    })?;
    enter_works(&mut ring)
}

/// Submits a no-op on `ring` and waits for its completion.
fn enter_works(ring: &mut IoUring) -> Result<(), Unusable> {
    let enter = |error| Unusable {
        call: "io_uring_enter",
        error,
    };
    let nop = opcode::Nop::new().build().user_data(0x6e6f70);
    // SAFETY: a no-op references no memory the kernel could use later.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| enter(io::Error::other("a fresh submission queue is full")))?;
    ring.submit_and_wait(1).map_err(enter)?;
    match ring.completion().next() {
        Some(cqe) if cqe.result() >= 0 => Ok(()),
        Some(cqe) => Err(enter(io::Error::from_raw_os_error(-cqe.result()))),
        None => Err(enter(io::Error::other("the no-op did not complete"))),
    }
}

/// Tries to set up a small ring and run a no-op on it.
pub fn status() -> (UringStatus, Option<IoUring>) {
    let gates = UringStatus {
        available: false,
        io_uring_disabled: read_proc("/proc/sys/kernel/io_uring_disabled"),
        seccomp: seccomp_mode(),
        error: None,
        cause: None,
    };
    let unusable = |u: Unusable| UringStatus {
        error: Some(u.to_string()),
        cause: Some(UringSetupCause::of(&u.error)),
        ..gates.clone()
    };
    match IoUring::new(8) {
        Ok(mut ring) => match enter_works(&mut ring) {
            Ok(()) => (
                UringStatus {
                    available: true,
                    ..gates
                },
                Some(ring),
            ),
            Err(u) => (unusable(u), None),
        },
        Err(error) => (
            unusable(Unusable {
                call: "io_uring_setup",
                error,
            }),
            None,
        ),
    }
}

/// Whether a ring with these setup flags is accepted.
fn accepts(configure: fn(&mut io_uring::Builder)) -> bool {
    let mut b = IoUring::builder();
    configure(&mut b);
    b.build(8).is_ok()
}

/// Registers a provided-buffer ring on `ring` and unregisters it again.
fn buffer_ring_works(ring: &IoUring) -> bool {
    match BufRing::new(ring, 8, 4096, 7) {
        Ok(b) => {
            let ok = b.unregister(ring).is_ok();
            if !ok {
                // Still registered: the kernel may use the memory, so it
                // must never be freed.
                std::mem::forget(b);
            }
            ok
        }
        Err(_) => false,
    }
}

/// How a capability is detected.
#[derive(Clone, Copy)]
enum Check {
    /// The opcode probe lists this opcode.
    Op(u8),
    /// A ring with these setup flags is accepted.
    Setup(fn(&mut io_uring::Builder)),
    /// io_uring_setup returns this feature bit.
    Feature(fn(&io_uring::Parameters) -> bool),
    /// A provided-buffer ring can be registered.
    BufRing,
    /// The ring's fd can be registered.
    RingFd,
    /// Multishot recv: a flag the probe cannot see, so recv, buffer rings and 6.0.
    MultishotRecv,
}

/// name, kind, since, used for, check.
type Spec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Check,
);

/// The capabilities uringfetch cares about, in the order they are shown.
const SPECS: [Spec; 22] = [
    (
        "connect",
        "op",
        "5.5",
        "both io_uring backends",
        Check::Op(opcode::Connect::CODE),
    ),
    (
        "send",
        "op",
        "5.6",
        "uring-loop requests",
        Check::Op(opcode::Send::CODE),
    ),
    (
        "recv",
        "op",
        "5.6",
        "uring-loop responses",
        Check::Op(opcode::Recv::CODE),
    ),
    (
        "read",
        "op",
        "5.6",
        "uring-async responses (tokio-uring)",
        Check::Op(opcode::Read::CODE),
    ),
    (
        "write",
        "op",
        "5.6",
        "uring-async requests (tokio-uring)",
        Check::Op(opcode::Write::CODE),
    ),
    (
        "socket",
        "op",
        "5.19",
        "uring-loop sockets, as direct descriptors (6.13+, without --bind)",
        Check::Op(opcode::Socket::CODE),
    ),
    (
        "close",
        "op",
        "5.6",
        "uring-async closes; uring-loop closes direct descriptors",
        Check::Op(opcode::Close::CODE),
    ),
    (
        "timeout",
        "op",
        "5.4",
        "timed waits in the 5.10 profile",
        Check::Op(opcode::Timeout::CODE),
    ),
    (
        "link_timeout",
        "op",
        "5.5",
        "not yet (timeouts are timers in the loop)",
        Check::Op(opcode::LinkTimeout::CODE),
    ),
    (
        "async_cancel",
        "op",
        "5.5",
        "uring-async cancels dropped operations; uring-loop cancels a closed connection's operations",
        Check::Op(opcode::AsyncCancel::CODE),
    ),
    (
        "shutdown",
        "op",
        "5.11",
        "unused: direct descriptors are cancelled and closed; shutdown(2) ends the others",
        Check::Op(opcode::Shutdown::CODE),
    ),
    (
        "multishot recv",
        "kernel",
        "6.0",
        "uring-loop: one recv per connection",
        Check::MultishotRecv,
    ),
    (
        "provided buffer ring",
        "register",
        "5.19",
        "uring-loop multishot recv buffers",
        Check::BufRing,
    ),
    (
        "SINGLE_ISSUER",
        "setup",
        "6.0",
        "uring-loop (with DEFER_TASKRUN)",
        Check::Setup(|b| {
            b.setup_single_issuer();
        }),
    ),
    (
        "DEFER_TASKRUN",
        "setup",
        "6.1",
        "uring-loop: completions run when it waits",
        Check::Setup(|b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
    ),
    (
        "COOP_TASKRUN",
        "setup",
        "5.19",
        "uring-loop without DEFER_TASKRUN",
        Check::Setup(|b| {
            b.setup_coop_taskrun();
        }),
    ),
    (
        "registered ring fd",
        "register",
        "5.18",
        "uring-loop: cheaper io_uring_enter",
        Check::RingFd,
    ),
    (
        "ext_arg",
        "feature",
        "5.11",
        "uring-loop: timed waits without a TIMEOUT op",
        Check::Feature(io_uring::Parameters::is_feature_ext_arg),
    ),
    (
        "min_wait",
        "feature",
        "6.12",
        "uring-loop: batched waits",
        Check::Feature(io_uring::Parameters::is_feature_min_timeout),
    ),
    (
        "skip CQE on success",
        "feature",
        "5.17",
        "uring-loop: sends without completions",
        Check::Feature(io_uring::Parameters::is_feature_skip_cqe_on_success),
    ),
    (
        "no iowait",
        "feature",
        "6.15",
        "uring-loop: waits show as idle, not iowait, in top and vmstat",
        Check::Feature(io_uring::Parameters::is_feature_no_iowait),
    ),
    (
        "fast poll",
        "feature",
        "5.7",
        "socket ops wait by poll, not in io-wq threads",
        Check::Feature(io_uring::Parameters::is_feature_fast_poll),
    ),
];

/// Every capability, probed on `ring` (all unsupported without one).
pub fn capabilities(ring: Option<&IoUring>) -> Vec<Capability> {
    let Some(ring) = ring else {
        return SPECS
            .iter()
            .map(|&(name, kind, since, used_for, _)| Capability {
                name,
                kind,
                since,
                supported: false,
                used_for,
            })
            .collect();
    };
    let mut probe = Probe::new();
    let probed = ring.submitter().register_probe(&mut probe).is_ok();
    let op = |code: u8| probed && probe.is_supported(code);
    let bufring = buffer_ring_works(ring);
    let supported = |check: Check| match check {
        Check::Op(code) => op(code),
        Check::Setup(configure) => accepts(configure),
        Check::Feature(bit) => bit(ring.params()),
        Check::BufRing => bufring,
        // A fresh ring, so that the probe ring stays as it was.
        Check::RingFd => IoUring::new(8).is_ok_and(|r| r.submitter().register_ring_fd().is_ok()),
        Check::MultishotRecv => {
            op(opcode::Recv::CODE) && bufring && ring::kernel_version() >= (6, 0)
        }
    };
    SPECS
        .iter()
        .map(|&(name, kind, since, used_for, check)| Capability {
            name,
            kind,
            since,
            supported: supported(check),
            used_for,
        })
        .collect()
}

/// What `uring-loop` runs with under `profile`, set up exactly as the
/// backend does it.
pub fn uring_loop_features(profile: Profile) -> io::Result<ring::Features> {
    let (ring, features, bufs) = ring::setup(64, profile, 64, 4096)?;
    if let Some(index) = features.ring_index {
        ring::unregister_ring_index(&ring, index);
    }
    if let Some(b) = bufs
        && b.unregister(&ring).is_err()
    {
        // Still registered: the kernel may use the memory, so it must never be freed.
        std::mem::forget(b);
    }
    Ok(features)
}
