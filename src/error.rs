//! Failure classes of a request, shared by every backend, `get` and the report.
//!
//! A load test is pointed at failing servers on purpose, so a failure is data:
//! each one is classified into a [`ErrorKind`] and counted, and the message a
//! user sees says what happened and what to do.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::http::HttpError;

/// Why a request got no response. The names are stable: they are JSON keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The peer refused the connection (nothing listening).
    Refused,
    /// The peer reset the connection, or the write hit a closed socket.
    Reset,
    /// The request took longer than `--timeout`.
    Timeout,
    /// The connection took longer than `--connect-timeout`.
    ConnectTimeout,
    /// The response broke HTTP framing.
    BadResponse,
    /// The peer closed the connection before the response was complete.
    EarlyEof,
    /// No local address or port was free (ephemeral ports exhausted).
    AddressUnavailable,
    /// The process or system ran out of file descriptors.
    TooManyOpenFiles,
    /// The network or host could not be reached.
    Unreachable,
    /// io_uring could not be used (old kernel, seccomp, sysctl).
    UringUnavailable,
    /// The server's certificate was refused (unknown issuer, expired, name mismatch).
    TlsCertificate,
    /// The TLS handshake (or a later record) failed: an alert, no common
    /// version or cipher suite, a broken record.
    TlsHandshake,
    /// An `https://` URL answered in plaintext.
    NotTls,
    /// An `http://` URL answered with TLS.
    TlsOnHttp,
    /// The server broke HTTP/2 (a connection error: a malformed frame, a
    /// flow-control or HPACK failure, a flood); the message says which.
    H2Protocol,
    /// The server reset an HTTP/2 stream (RST_STREAM); the message names its error code.
    StreamReset,
    /// Anything else the OS reported.
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::ConnectTimeout,
        ErrorKind::BadResponse,
        ErrorKind::EarlyEof,
        ErrorKind::AddressUnavailable,
        ErrorKind::TooManyOpenFiles,
        ErrorKind::Unreachable,
        ErrorKind::UringUnavailable,
        ErrorKind::TlsCertificate,
        ErrorKind::TlsHandshake,
        ErrorKind::NotTls,
        ErrorKind::TlsOnHttp,
        ErrorKind::H2Protocol,
        ErrorKind::StreamReset,
        ErrorKind::Other,
    ];

    /// The stable name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::EarlyEof => "early_eof",
            ErrorKind::AddressUnavailable => "address_unavailable",
            ErrorKind::TooManyOpenFiles => "too_many_open_files",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::UringUnavailable => "uring_unavailable",
            ErrorKind::TlsCertificate => "tls_certificate",
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::NotTls => "not_tls",
            ErrorKind::TlsOnHttp => "tls_on_http",
            ErrorKind::H2Protocol => "h2_protocol",
            ErrorKind::StreamReset => "stream_reset",
            ErrorKind::Other => "other",
        }
    }

    /// What to do about it, for the report's footnotes.
    pub fn advice(self) -> Option<&'static str> {
        match self {
            ErrorKind::Refused => Some("is the server running and listening on that port?"),
            ErrorKind::AddressUnavailable => Some(
                "ephemeral ports ran out: spread connections with --bind 127.0.0.2-127.0.0.9, \
                 widen net.ipv4.ip_local_port_range, set net.ipv4.tcp_tw_reuse=1, or use keep-alive",
            ),
            ErrorKind::TooManyOpenFiles => {
                Some("raise the open-file limit (ulimit -n) or lower -c")
            }
            ErrorKind::UringUnavailable => {
                Some("io_uring is disabled or blocked here; try --backend epoll-loop")
            }
            ErrorKind::TlsCertificate => {
                Some("trust the server's CA with --cacert FILE, or skip verification with -k")
            }
            ErrorKind::NotTls => Some("the server speaks plaintext: use an http:// URL"),
            ErrorKind::TlsOnHttp => Some("the server speaks TLS: use an https:// URL"),
            _ => None,
        }
    }

    /// Classifies an OS error.
    pub fn from_io(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ErrorKind::Refused,
            Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => ErrorKind::Reset,
            Some(libc::ETIMEDOUT) => ErrorKind::Timeout,
            Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => ErrorKind::AddressUnavailable,
            Some(libc::EMFILE | libc::ENFILE) => ErrorKind::TooManyOpenFiles,
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => ErrorKind::Unreachable,
            _ => match e.kind() {
                io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                io::ErrorKind::UnexpectedEof => ErrorKind::EarlyEof,
                _ => ErrorKind::Other,
            },
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One failed request: its class and a line a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub kind: ErrorKind,
    pub message: String,
}

impl FetchError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An OS error while connecting to `addr`.
    pub fn connect(e: &io::Error, addr: SocketAddr) -> Self {
        let kind = ErrorKind::from_io(e);
        let message = match kind {
            ErrorKind::Refused => format!("connection refused: {addr}"),
            ErrorKind::AddressUnavailable => {
                format!("no local address/port available to connect to {addr}: {e}")
            }
            ErrorKind::TooManyOpenFiles => format!("too many open files connecting to {addr}"),
            _ => format!("cannot connect to {addr}: {e}"),
        };
        Self { kind, message }
    }

    /// An OS error on an established connection.
    pub fn io(e: &io::Error, addr: SocketAddr) -> Self {
        let kind = ErrorKind::from_io(e);
        let message = match kind {
            ErrorKind::Reset => format!("connection reset by {addr}"),
            _ => format!("i/o error with {addr}: {e}"),
        };
        Self { kind, message }
    }

    /// The response broke framing.
    pub fn http(e: &HttpError, addr: SocketAddr) -> Self {
        let kind = match e {
            HttpError::UnexpectedEof(_) => ErrorKind::EarlyEof,
            _ => ErrorKind::BadResponse,
        };
        Self {
            kind,
            message: format!("bad response from {addr}: {e}"),
        }
    }

    pub fn timeout(after: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!("timed out after {}", fmt_duration(after)),
        )
    }

    /// io_uring could not be set up: say why and what to do instead.
    pub fn uring_setup(e: &io::Error) -> Self {
        let cause = UringSetupCause::of(e);
        Self::new(
            ErrorKind::UringUnavailable,
            format!(
                "io_uring is unavailable: {} ({e}); {}; or use --backend epoll-loop or --backend threads",
                cause.why, cause.fix
            ),
        )
    }

    /// A ring was set up but `io_uring_enter` fails (a seccomp filter that
    /// allows only the setup): no operation could ever run.
    pub fn uring_enter(e: &io::Error) -> Self {
        let cause = UringSetupCause::of(e);
        Self::new(
            ErrorKind::UringUnavailable,
            format!(
                "io_uring is unavailable: rings can be set up but io_uring_enter is refused: {} \
                 ({e}); {}; or use --backend epoll-loop or --backend threads",
                cause.why, cause.fix
            ),
        )
    }

    /// The TLS handshake did not finish within `--connect-timeout`.
    pub fn handshake_timeout(after: Duration, addr: SocketAddr) -> Self {
        Self::new(
            ErrorKind::ConnectTimeout,
            format!(
                "TLS handshake with {addr} did not finish within the connect timeout ({})",
                fmt_duration(after)
            ),
        )
    }

    /// A TLS server answered a plaintext request.
    pub fn tls_on_http(addr: SocketAddr) -> Self {
        Self::new(
            ErrorKind::TlsOnHttp,
            format!("{addr} answered with TLS, not plain HTTP: is the URL meant to be https://?"),
        )
    }

    pub fn connect_timeout(after: Duration, addr: SocketAddr) -> Self {
        Self::new(
            ErrorKind::ConnectTimeout,
            format!("connect to {addr} timed out after {}", fmt_duration(after)),
        )
    }
}

/// Why `io_uring_setup` failed and how to fix it, told apart where the
/// system lets us: the errno alone does not separate the sysctl from a
/// seccomp filter, but `/proc` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UringSetupCause {
    /// What stands in the way.
    pub why: String,
    /// What to do about it.
    pub fix: String,
}

impl UringSetupCause {
    /// Diagnoses an error returned by `io_uring_setup`.
    pub fn of(e: &io::Error) -> Self {
        let (why, fix) = match e.raw_os_error() {
            Some(libc::ENOSYS) => (
                "the kernel is too old or built without io_uring (CONFIG_IO_URING; Linux 5.10+ needed)"
                    .to_string(),
                "run on Linux 5.10 or newer built with io_uring".to_string(),
            ),
            Some(libc::EPERM | libc::EACCES) => eperm_cause(),
            // Kernels before 5.12 charge rings to RLIMIT_MEMLOCK; later
            // ones to memory cgroups, where ENOMEM means memory ran short.
            Some(libc::ENOMEM | libc::ENOBUFS)
                if crate::backend::uring_loop::ring::kernel_version() < (5, 12) =>
            {
                (
                    "RLIMIT_MEMLOCK is too low for the ring (kernels before 5.12 charge rings to it)"
                        .to_string(),
                    "raise it: `ulimit -l unlimited` (or memlock in /etc/security/limits.conf, \
                     LimitMEMLOCK= for a systemd unit, --ulimit memlock=-1 for docker)"
                        .to_string(),
                )
            }
            Some(libc::ENOMEM | libc::ENOBUFS) => (
                "the kernel could not allocate the ring's memory (the process or its memory \
                 cgroup is short of memory)"
                    .to_string(),
                "free memory, raise the cgroup's memory limit, or run fewer rings (-t)".to_string(),
            ),
            _ => (
                "the kernel refused io_uring_setup".to_string(),
                "check dmesg and the kernel's io_uring settings".to_string(),
            ),
        };
        Self { why, fix }
    }
}

/// EPERM: `kernel.io_uring_disabled` (6.6+) or a seccomp filter.
fn eperm_cause() -> (String, String) {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim() == "2"))
        })
        .unwrap_or(false);
    let sysctl_fix = "as root: `sysctl -w kernel.io_uring_disabled=0`";
    match disabled {
        Some(2) => (
            "it is disabled by sysctl kernel.io_uring_disabled=2".to_string(),
            sysctl_fix.to_string(),
        ),
        Some(1) if !seccomp => (
            "sysctl kernel.io_uring_disabled=1 allows it only to root and members of the group \
             in kernel.io_uring_group"
                .to_string(),
            format!("add the user to that group, or {sysctl_fix}"),
        ),
        _ if seccomp => (
            "it is blocked by a seccomp filter on this process (e.g. Docker's default profile)"
                .to_string(),
            "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile \
             (docker run --security-opt seccomp=PROFILE.json)"
                .to_string(),
        ),
        _ => (
            "it is disabled by sysctl kernel.io_uring_disabled or blocked by a seccomp profile \
             (e.g. Docker's default)"
                .to_string(),
            format!("{sysctl_fix}, or allow the io_uring syscalls in the seccomp profile"),
        ),
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

/// `2s`, `1.5s`, `250ms`: how durations are shown to people.
pub fn fmt_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_os_errors() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(ErrorKind::from_io(&e), ErrorKind::Refused);
        let e = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        assert_eq!(ErrorKind::from_io(&e), ErrorKind::AddressUnavailable);
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(ErrorKind::from_io(&e), ErrorKind::TooManyOpenFiles);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            FetchError::connect(&e, addr).message,
            "connection refused: 127.0.0.1:9"
        );
        assert_eq!(
            FetchError::timeout(Duration::from_secs(2)).message,
            "timed out after 2s"
        );
    }

    /// Issue 19 item 13: ENOMEM at ring setup named RLIMIT_MEMLOCK "for
    /// kernels before 5.12" on any kernel; only those charge rings to it.
    #[test]
    fn ring_memory_errors_name_the_right_limit() {
        let cause = UringSetupCause::of(&io::Error::from_raw_os_error(libc::ENOMEM));
        let old = crate::backend::uring_loop::ring::kernel_version() < (5, 12);
        assert_eq!(cause.why.contains("RLIMIT_MEMLOCK"), old, "{}", cause.why);
        if !old {
            assert!(cause.why.contains("short of memory"), "{}", cause.why);
        }
    }
}
