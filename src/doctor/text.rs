//! The `doctor` report as text: kernel, io_uring status with the fix when
//! it is unavailable, the capability table, each backend's profile, and the
//! limits with advice.

use std::fmt::Write;

use super::Report;
use super::limits::Rlimit;

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn rlimit(l: Option<Rlimit>, scale: u64, unit: &str) -> String {
    let v = |x: Option<u64>| x.map_or("unlimited".to_string(), |x| format!("{}{unit}", x / scale));
    match l {
        Some(l) => format!("{} (hard {})", v(l.soft), v(l.hard)),
        None => "unknown".to_string(),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("unknown".to_string(), |v| v.to_string())
}

/// Renders the report for people.
pub fn render(r: &Report) -> String {
    let mut s = render_head(r);
    tables(r, &mut s);
    s
}

/// The kernel and io_uring lines, with the fix when io_uring is refused.
pub fn render_head(r: &Report) -> String {
    let mut s = String::new();
    let k = &r.kernel;
    let _ = writeln!(s, "kernel      {} ({})", k.release, k.machine);
    let u = &r.io_uring;
    let gates = format!(
        "kernel.io_uring_disabled={}, seccomp={}",
        u.io_uring_disabled
            .map_or("n/a".to_string(), |v| v.to_string()),
        match u.seccomp {
            Some(0) => "none",
            Some(1) => "strict",
            Some(2) => "filter",
            _ => "unknown",
        }
    );
    match &u.cause {
        None => {
            let _ = writeln!(s, "io_uring    available ({gates})");
        }
        Some(c) => {
            let _ = writeln!(
                s,
                "io_uring    UNAVAILABLE: {} ({}) [{gates}]",
                c.why,
                u.error.as_deref().unwrap_or("")
            );
            let _ = writeln!(
                s,
                "            fix: {}; or use --backend epoll-loop or --backend threads",
                c.fix
            );
        }
    }
    let t = &r.tls;
    let _ = writeln!(s, "tls         {}", t.library);
    let _ = writeln!(
        s,
        "kernel tls  {}: {}",
        if t.kernel_tls {
            "available"
        } else {
            "unavailable"
        },
        t.kernel_tls_note
    );
    s
}

/// The capability, backend and limit tables.
fn tables(r: &Report, s: &mut String) {
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<22} {:<9} {:<6} {:<4} used for",
        "io_uring feature", "kind", "since", "here"
    );
    for c in &r.capabilities {
        let _ = writeln!(
            s,
            "{:<22} {:<9} {:<6} {:<4} {}",
            c.name,
            c.kind,
            c.since,
            yes_no(c.supported),
            c.used_for
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<12} {:<8} {:<4} runs with",
        "backend", "profile", "ok"
    );
    for b in &r.backends {
        let _ = writeln!(
            s,
            "{:<12} {:<8} {:<4} {}",
            b.backend.name(),
            b.profile,
            yes_no(b.available),
            b.runs_with
        );
    }
    let _ = writeln!(s);
    let l = &r.limits;
    let _ = writeln!(s, "limit                          value");
    let _ = writeln!(
        s,
        "{:<30} {}",
        "open files (RLIMIT_NOFILE)",
        rlimit(l.nofile, 1, "")
    );
    let ports = l.ephemeral_ports.map(|[a, b]| {
        format!(
            "{a}-{b} ({} ports per source address and destination)",
            (b + 1).saturating_sub(a)
        )
    });
    let _ = writeln!(s, "{:<30} {}", "net.ipv4.ip_local_port_range", opt(ports));
    let _ = writeln!(s, "{:<30} {}", "net.core.somaxconn", opt(l.somaxconn));
    let _ = writeln!(s, "{:<30} {}", "net.ipv4.tcp_tw_reuse", opt(l.tcp_tw_reuse));
    let _ = writeln!(
        s,
        "{:<30} {}",
        "locked memory (RLIMIT_MEMLOCK)",
        rlimit(l.memlock, 1024, " KiB")
    );
    for a in &l.advice {
        let _ = writeln!(s, "  advice: {a}");
    }
}
