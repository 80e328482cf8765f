//! `uringfetch doctor`: the report on this kernel (JSON), the self-test
//! over every backend, and both under a seccomp filter that refuses
//! `io_uring_setup` the way Docker's default profile does, where doctor
//! must name the cause and the fix and the self-test must skip only the
//! io_uring backends.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{demo_server, stderr, stdout, uringfetch, wait_limited};

const LIMIT: Duration = Duration::from_secs(60);

/// Installs a seccomp filter on the calling thread (and what it execs)
/// under which `io_uring_setup` fails with EPERM; everything else is allowed.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring_setup() -> io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, EPERM, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, SYS_io_uring_setup, sock_filter, sock_fprog,
    };
    // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE, from linux/audit.h.
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // seccomp_data: nr at offset 0, arch at offset 4.
    let mut filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 4),
        jump(AUDIT_ARCH_X86_64, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jump(SYS_io_uring_setup as u32, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with these options takes plain integers; no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `prog` points to `filter`, both alive for the call; the
    // kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const sock_fprog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the binary under [`deny_io_uring_setup`], like a container whose
/// seccomp profile refuses io_uring.
#[cfg(target_arch = "x86_64")]
fn uringfetch_without_io_uring(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uringfetch"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only makes
    // prctl system calls on stack data, which is async-signal-safe.
    unsafe { cmd.pre_exec(deny_io_uring_setup) };
    let mut child = cmd.spawn().expect("binary runs");
    wait_limited(&mut child, LIMIT, &format!("uringfetch {}", args.join(" ")))
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

#[test]
fn doctor_reports_kernel_features_profiles_and_limits() {
    let o = uringfetch(&["doctor", "--output", "json"], LIMIT);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert!(!r["kernel"]["release"].as_str().unwrap_or("").is_empty());
    assert!(r["kernel"]["version"][0].as_u64().unwrap_or(0) >= 5);
    assert_eq!(r["io_uring"]["available"], true, "{r}");
    let caps = r["capabilities"].as_array().expect("capabilities");
    let cap = |name: &str| {
        caps.iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no capability {name}"))
    };
    for name in ["connect", "send", "recv", "timeout"] {
        assert_eq!(cap(name)["supported"], true, "{name}");
    }
    for name in [
        "socket",
        "SINGLE_ISSUER",
        "DEFER_TASKRUN",
        "registered ring fd",
        "no iowait",
    ] {
        assert!(cap(name)["supported"].is_boolean(), "{name}");
    }
    let backends = r["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 6, "{backends:?}");
    assert!(
        backends.iter().all(|b| b["available"] == true),
        "{backends:?}"
    );
    let loop510 = backends
        .iter()
        .find(|b| b["backend"] == "uring-loop" && b["profile"] == "5.10")
        .expect("uring-loop 5.10");
    assert_eq!(loop510["features"]["defer_taskrun"], false);
    assert_eq!(loop510["features"]["multishot_recv"], false);
    assert_eq!(loop510["features"]["no_iowait"], false);
    assert!(r["limits"]["nofile"]["soft"].as_u64().unwrap_or(u64::MAX) > 0);
    let ports = &r["limits"]["ephemeral_ports"];
    assert!(ports[0].as_u64() < ports[1].as_u64(), "{ports}");

    let text = uringfetch(&["doctor"], LIMIT);
    let t = stdout(&text);
    assert!(text.status.success());
    for needle in [
        "kernel ",
        "io_uring    available",
        "DEFER_TASKRUN",
        "RLIMIT_NOFILE",
    ] {
        assert!(t.contains(needle), "{needle} missing in:\n{t}");
    }
}

#[test]
fn self_test_passes_every_backend_and_profile() {
    let o = uringfetch(&["doctor", "--self-test", "--requests", "200"], LIMIT);
    let t = stdout(&o);
    assert!(o.status.success(), "{t}\n{}", stderr(&o));
    assert!(t.contains("against the demo server (io_uring)"), "{t}");
    let lines: Vec<&str> = t.lines().filter(|l| l.contains(" pass ")).collect();
    assert_eq!(lines.len(), 6, "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("uring-loop") && l.contains("5.10"))
    );
    assert!(t.ends_with("self-test passed\n"), "{t}");

    let o = uringfetch(
        &[
            "doctor",
            "--self-test",
            "--requests",
            "50",
            "--output",
            "json",
        ],
        LIMIT,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["self_test"]["passed"], true);
    let lines = r["self_test"]["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .iter()
            .all(|l| l["verdict"] == "pass" && l["rps"].as_f64() > Some(0.0))
    );
    assert_eq!(r["report"]["io_uring"]["available"], true);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_refusing_io_uring_is_named_and_the_other_backends_still_pass() {
    let o = uringfetch_without_io_uring(&["doctor"]);
    let t = stdout(&o);
    assert!(o.status.success(), "{t}\n{}", stderr(&o));
    assert!(t.contains("io_uring    UNAVAILABLE"), "{t}");
    assert!(t.contains("seccomp filter"), "{t}");
    assert!(t.contains("fix: allow io_uring_setup"), "{t}");
    assert!(t.contains("--backend epoll-loop"), "{t}");

    let o = uringfetch_without_io_uring(&["doctor", "--self-test", "--requests", "100"]);
    let t = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{t}\n{}", stderr(&o));
    assert!(t.contains("demo server (epoll)"), "{t}");
    assert!(t.contains("io_uring is unavailable"), "{t}");
    for backend in ["uring-loop", "uring-async"] {
        assert!(
            t.lines().any(|l| l.starts_with(backend)
                && l.contains("unsupported here")
                && l.contains("seccomp")),
            "{backend}: {t}"
        );
    }
    for backend in ["epoll-loop", "epoll-async", "threads"] {
        assert!(
            t.lines()
                .any(|l| l.starts_with(backend) && l.contains(" pass ")),
            "{backend}: {t}"
        );
    }
    assert!(t.ends_with("self-test passed\n"), "{t}");

    // A fetch on io_uring says why it cannot run and what to do.
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    for backend in ["uring-loop", "uring-async"] {
        let o = uringfetch_without_io_uring(&["get", "--backend", backend, &url]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("io_uring is unavailable") && e.contains("seccomp"),
            "{backend}: {e}"
        );
    }
    server.shutdown();
}
