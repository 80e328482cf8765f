//! The system limits that cap a load test before the server or the client
//! does: open files (one per connection), ephemeral ports (one per
//! connection to the same destination), the listen backlog of a local
//! server, TIME_WAIT reuse for runs without keep-alive, and locked memory
//! (charged for rings before Linux 5.12). Each one low enough to bite gets
//! a line of advice.

use serde::Serialize;

/// A resource limit; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl Rlimit {
    /// Reads one limit now; `None` if the kernel does not say.
    pub fn get(resource: libc::__rlimit_resource_t) -> Option<Self> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the valid pointer we pass.
        if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
            return None;
        }
        let v = |x: libc::rlim_t| (x != libc::RLIM_INFINITY).then_some(x);
        Some(Self {
            soft: v(lim.rlim_cur),
            hard: v(lim.rlim_max),
        })
    }
}

/// The limits, as read now.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// RLIMIT_NOFILE: one descriptor per connection (two with a local server).
    pub nofile: Option<Rlimit>,
    /// RLIMIT_MEMLOCK in bytes: caps io_uring rings on kernels before 5.12.
    pub memlock: Option<Rlimit>,
    /// `net.ipv4.ip_local_port_range`: the ports one source address can use
    /// towards one destination.
    pub ephemeral_ports: Option<[u32; 2]>,
    /// `net.core.somaxconn`: the cap on a listener's backlog.
    pub somaxconn: Option<u64>,
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only.
    pub tcp_tw_reuse: Option<u32>,
    /// What to change, for limits low enough to cap a run.
    pub advice: Vec<String>,
}

/// Reads a sysctl through `/proc/sys`.
fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads every limit and says which ones will cap a large run.
pub fn read(kernel: (u32, u32)) -> Limits {
    let ephemeral_ports = sysctl("net/ipv4/ip_local_port_range").and_then(|s| {
        let mut it = s.split_whitespace().map(|p| p.parse::<u32>().ok());
        Some([it.next()??, it.next()??])
    });
    let mut l = Limits {
        nofile: Rlimit::get(libc::RLIMIT_NOFILE),
        memlock: Rlimit::get(libc::RLIMIT_MEMLOCK),
        ephemeral_ports,
        somaxconn: sysctl("net/core/somaxconn").and_then(|s| s.parse().ok()),
        tcp_tw_reuse: sysctl("net/ipv4/tcp_tw_reuse").and_then(|s| s.parse().ok()),
        advice: Vec::new(),
    };
    l.advice = advise(&l, kernel);
    l
}

/// One line per limit that will cap a run of about 10,000 connections.
fn advise(l: &Limits, kernel: (u32, u32)) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Rlimit {
        soft: Some(soft),
        hard,
    }) = l.nofile
        && soft < 20_000
    {
        let how = match hard {
            Some(h) if h <= soft => "raise the hard limit too (as root: `ulimit -n 100000`, \
                                      nofile in /etc/security/limits.conf, LimitNOFILE= for a unit)"
                .to_string(),
            Some(h) => format!("raise with `ulimit -n {}`", h.min(1 << 20)),
            None => "raise with `ulimit -n 100000`".to_string(),
        };
        out.push(format!(
            "open files: -c is capped near {} (half that with a local server); {how}",
            soft.saturating_sub(64)
        ));
    }
    if let Some([lo, hi]) = l.ephemeral_ports
        && hi.saturating_sub(lo) < 28_000
    {
        out.push(format!(
            "ephemeral ports: only {} per source address and destination; widen with \
             `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"` or spread with --bind",
            hi.saturating_sub(lo) + 1
        ));
    }
    if l.somaxconn.is_some_and(|s| s < 4096) {
        out.push(
            "somaxconn: a local server drops connect bursts above it (SYN retries, 1 s stalls); \
             `sysctl -w net.core.somaxconn=4096`"
                .to_string(),
        );
    }
    if l.tcp_tw_reuse == Some(0) {
        out.push(
            "tcp_tw_reuse is off: --disable-keepalive runs run out of ports in TIME_WAIT; \
             `sysctl -w net.ipv4.tcp_tw_reuse=1`"
                .to_string(),
        );
    }
    if kernel < (5, 12)
        && let Some(Rlimit {
            soft: Some(soft), ..
        }) = l.memlock
        && soft < 64 << 20
    {
        out.push(format!(
            "locked memory: {} KiB; before Linux 5.12 every ring is charged to it, so many \
             threads or large rings fail with ENOMEM; `ulimit -l unlimited`",
            soft / 1024
        ));
    }
    out
}
