//! `doctor`: what this machine lets uringfetch do, asked of the kernel.
//!
//! A load tester that fails with a bare errno in a container or on an older
//! kernel loses its user; this says what works, what does not, why, and
//! what to change. [`Report::gather`] probes io_uring ([`probe`]), derives
//! the profile each backend will run with (through the same setup code the
//! `uring-loop` backend uses) and reads the limits that cap a run
//! ([`limits`]). [`selftest`] then proves it by running every backend
//! against the demo server on loopback.

pub mod limits;
pub mod probe;
pub mod selftest;
mod text;

use serde::Serialize;

use crate::backend::BackendKind;
use crate::backend::uring_loop::ring::{self, Features, Profile};

pub use text::{render, render_head};

/// The running kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// `uname -m`.
    pub machine: String,
    /// `(major, minor)` parsed from the release.
    pub version: (u32, u32),
}

impl Kernel {
    /// Reads the running kernel's identity.
    pub fn current() -> Self {
        // SAFETY: utsname is plain data, for which all zeroes is valid, and
        // uname fills the struct we pass a valid pointer to.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the fields are NUL-terminated on success.
        let ok = unsafe { libc::uname(&mut u) } == 0;
        let field = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Self {
            release: if ok { field(&u.release) } else { String::new() },
            machine: if ok { field(&u.machine) } else { String::new() },
            version: ring::kernel_version(),
        }
    }
}

/// How one backend (and profile) will run on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct BackendProfile {
    pub backend: BackendKind,
    /// `auto` or `5.10` for `uring-loop`; `default` for the others.
    pub profile: &'static str,
    pub available: bool,
    /// What it runs with, or why it cannot run.
    pub runs_with: String,
    /// The `uring-loop` feature set, where it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
}

/// Everything `doctor` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: Kernel,
    pub io_uring: probe::UringStatus,
    pub capabilities: Vec<probe::Capability>,
    pub backends: Vec<BackendProfile>,
    pub limits: limits::Limits,
    pub tls: TlsStatus,
}

/// What `https://` runs on here.
#[derive(Debug, Clone, Serialize)]
pub struct TlsStatus {
    /// The TLS library and its crypto provider.
    pub library: &'static str,
    /// Whether the kernel offers kernel TLS (the `tls` ULP).
    pub kernel_tls: bool,
    /// Why not, or what uringfetch does with it.
    pub kernel_tls_note: String,
}

impl TlsStatus {
    fn gather() -> Self {
        let probe = crate::ktls::probe();
        Self {
            library: crate::tls::LIBRARY,
            kernel_tls: probe.is_ok(),
            kernel_tls_note: match probe {
                Ok(c) => format!(
                    "the kernel takes TLS keys (ciphers:{}{}{}): https on uring-loop, \
                     epoll-loop and threads hands them over after the handshake (--ktls auto)",
                    if c.aes_gcm_128 { " AES-128-GCM" } else { "" },
                    if c.aes_gcm_256 { " AES-256-GCM" } else { "" },
                    if c.chacha20_poly1305 {
                        " ChaCha20-Poly1305"
                    } else {
                        ""
                    },
                ),
                Err(why) => format!("{why}; TLS runs in userspace"),
            },
        }
    }
}

impl Report {
    /// Probes the kernel and reads the limits. Takes milliseconds.
    pub fn gather() -> Self {
        let kernel = Kernel::current();
        let (io_uring, ring) = probe::status();
        let capabilities = probe::capabilities(ring.as_ref());
        drop(ring);
        let backends = backend_profiles(&io_uring, &capabilities);
        let limits = limits::read(kernel.version);
        Self {
            kernel,
            io_uring,
            capabilities,
            backends,
            limits,
            tls: TlsStatus::gather(),
        }
    }

    /// Whether a backend (and `uring-loop` profile) can run here, and if
    /// not, why.
    pub fn availability(&self, backend: BackendKind, profile: Profile) -> Result<(), String> {
        let name = profile_name(backend, profile);
        match self
            .backends
            .iter()
            .find(|b| b.backend == backend && b.profile == name)
        {
            Some(b) if b.available => Ok(()),
            Some(b) => Err(b.runs_with.clone()),
            None => Ok(()),
        }
    }
}

/// The profile label of a backend run.
pub fn profile_name(backend: BackendKind, profile: Profile) -> &'static str {
    match (backend, profile) {
        (BackendKind::UringLoop, Profile::Auto) => "auto",
        (BackendKind::UringLoop, Profile::Linux510) => "5.10",
        (BackendKind::UringLoop, Profile::AutoPlainRecv) => "auto-plain-recv",
        _ => "default",
    }
}

/// The fast paths a `uring-loop` feature set uses, in words.
pub fn describe(f: &Features) -> String {
    let mut parts = Vec::new();
    if f.defer_taskrun {
        parts.push("SINGLE_ISSUER+DEFER_TASKRUN");
    } else if f.coop_taskrun {
        parts.push("COOP_TASKRUN");
    }
    if f.multishot_recv {
        parts.push("multishot recv into a buffer ring");
    }
    if f.skip_success && f.send_waitall {
        parts.push("sends with MSG_WAITALL and no CQE");
    } else if f.send_waitall {
        parts.push("sends with MSG_WAITALL");
    }
    if f.ext_arg {
        parts.push(if f.min_wait {
            "ext_arg waits batched by min_wait"
        } else {
            "ext_arg timed waits"
        });
    }
    if f.registered_ring {
        parts.push("registered ring fd");
    }
    if f.no_iowait {
        parts.push("waits not counted as iowait");
    }
    if f.direct_descriptors {
        parts.push("direct descriptors (SOCKET op, fixed files; not with --bind)");
    }
    if parts.is_empty() {
        "Linux 5.10 set: plain connect/send/recv, TIMEOUT-op waits, no setup flags".to_string()
    } else {
        parts.join(", ")
    }
}

/// The missing operations among `needed`, named.
fn missing(caps: &[probe::Capability], needed: &[&str]) -> Vec<&'static str> {
    caps.iter()
        .filter(|c| needed.contains(&c.name) && !c.supported)
        .map(|c| c.name)
        .collect()
}

/// An io_uring backend's profile: unavailable if the ring cannot be set
/// up or the kernel lacks one of `needed`, else what `runs_with` says.
fn uring_profile(
    backend: BackendKind,
    profile: &'static str,
    status: &probe::UringStatus,
    lacking: Vec<&'static str>,
    runs_with: impl FnOnce() -> Result<(String, Option<Features>), String>,
) -> BackendProfile {
    let result = match &status.cause {
        Some(c) => Err(format!("io_uring: {}", c.why)),
        None if !lacking.is_empty() => Err(format!("the kernel lacks {}", lacking.join(", "))),
        None => runs_with(),
    };
    let available = result.is_ok();
    let (runs_with, features) = result.unwrap_or_else(|why| (why, None));
    BackendProfile {
        backend,
        profile,
        available,
        runs_with,
        features,
    }
}

fn backend_profiles(
    status: &probe::UringStatus,
    caps: &[probe::Capability],
) -> Vec<BackendProfile> {
    let mut out = Vec::new();
    for profile in [Profile::Auto, Profile::Linux510] {
        let lacking = missing(caps, &["connect", "send", "recv", "timeout"]);
        let name = profile_name(BackendKind::UringLoop, profile);
        out.push(uring_profile(
            BackendKind::UringLoop,
            name,
            status,
            lacking,
            || uring_loop(profile).map(|f| (describe(&f), Some(f))),
        ));
    }
    let lacking = missing(caps, &["connect", "read", "write", "close"]);
    let fast_poll = caps.iter().any(|c| c.name == "fast poll" && c.supported);
    out.push(uring_profile(
        BackendKind::UringAsync,
        "default",
        status,
        lacking,
        || {
            let slow = if fast_poll {
                ""
            } else {
                "; no fast poll, so socket reads wait in io-wq threads"
            };
            Ok((
                format!("tokio-uring: connect, read, write, close ops, no setup flags{slow}"),
                None,
            ))
        },
    ));
    for (backend, how) in [
        (BackendKind::EpollLoop, "mio event loop on epoll"),
        (BackendKind::EpollAsync, "tokio tasks on epoll"),
        (
            BackendKind::Threads,
            "blocking std::net, one thread per connection",
        ),
    ] {
        out.push(BackendProfile {
            backend,
            profile: "default",
            available: true,
            runs_with: how.to_string(),
            features: None,
        });
    }
    out
}

/// The `uring-loop` feature set under `profile`, or why none.
fn uring_loop(profile: Profile) -> Result<Features, String> {
    probe::uring_loop_features(profile).map_err(|e| {
        format!(
            "ring setup failed: {}",
            crate::error::FetchError::uring_setup(&e)
        )
    })
}
