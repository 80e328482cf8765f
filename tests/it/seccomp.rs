//! io_uring unavailable: the binary runs under a seccomp filter that makes
//! `io_uring_setup` fail with EPERM, as Docker's default profile does. The
//! io_uring backends must say why and name the way out; the others must
//! work there as usual.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// A filter that allows everything but `io_uring_setup`, which gets EPERM.
fn deny_io_uring() -> BpfProgram {
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .expect("seccompiler supports this architecture");
    let filter = SeccompFilter::new(
        [(libc::SYS_io_uring_setup, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .expect("filter");
    filter.try_into().expect("BPF program")
}

/// Runs the binary with io_uring denied (the filter is built before the
/// fork; the child only installs it, then execs).
fn run_denied(args: &[&str]) -> Output {
    let program = deny_io_uring();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uringfetch"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only calls prctl and
    // seccomp through `apply_filter` on a program built before the fork; it
    // takes no lock and allocates nothing on success.
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(|e| std::io::Error::other(e.to_string()))
        });
    }
    let mut child = cmd.spawn().expect("binary runs");
    wait_limited(
        &mut child,
        LIMIT,
        &format!("uringfetch {args:?} under seccomp"),
    )
}

fn assert_explains(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(err.contains("io_uring is unavailable"), "{what}: {err}");
    assert!(err.contains("seccomp"), "{what}: names the cause: {err}");
    assert!(
        err.contains("--backend epoll-loop"),
        "{what}: the way out: {err}"
    );
}

#[test]
fn io_uring_backends_name_the_cause_and_the_way_out() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    for b in [
        &["--backend", "uring-loop"][..],
        &["--backend", "uring-loop", "--uring-profile", "5.10"],
        &["--backend", "uring-async"],
        &[],
    ] {
        let out = run_denied(&[&["get"], b, &[url.as_str()]].concat());
        assert_explains(&out, &format!("get {b:?}"));
        let out = run_denied(&[&["load", "-n", "10", "-c", "2"], b, &[url.as_str()]].concat());
        assert_explains(&out, &format!("load {b:?}"));
    }
    server.shutdown();
}

#[test]
fn readiness_and_blocking_backends_work_without_io_uring() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    for b in ["epoll-loop", "epoll-async", "threads"] {
        let out = run_denied(&["get", "--backend", b, &url]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        assert_eq!(stdout(&out), "<h1>bar!</h1>", "{b}");
        let out = run_denied(&[
            "load",
            "--backend",
            b,
            "-n",
            "50",
            "-c",
            "2",
            "--output",
            "json",
            &url,
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        crate::load::assert_counts_add_up(&v);
        assert_eq!(v["status"]["200"], 50, "{b}: {v}");
    }
    let out = run_denied(&["get", "--sequential", &url]);
    assert!(out.status.success(), "--sequential: {}", stderr(&out));
    server.shutdown();
}
