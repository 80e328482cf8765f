//! The fault matrix: every fault of [`FaultServer`] against every backend,
//! for `get` and for `load`, plus the refused port. `get` must exit 1 with
//! one clear line; `load` must finish, count every failure under the right
//! kind, and add up. Descriptor leaks are checked in-process, in a child
//! copy of this test binary so that no other test's descriptors interfere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uringfetch::testing::{Backend, BackendKind, ConnOptions, Live};
use uringfetch::testing::{LoadConfig, runner};
use uringfetch::testing::{Rate, Stop};
use uringfetch::testing::{RequestOptions, Target};

use crate::fault_server::{Fault, FaultServer, TINY_CHUNKS, refused_url};
use crate::load::n;
use crate::load::{assert_counts_add_up, load_json};
use crate::support::*;

/// Every request's `--timeout` in the matrix.
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// Hard limit on one run of the binary (it is killed past this).
const LIMIT: Duration = Duration::from_secs(15);

/// One row of the matrix: a fault, or nothing listening at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Fault(Fault),
    Refused,
}

/// What `get` must do.
enum GetExpect {
    /// Exit 1 with exactly one error line containing this.
    Fails(&'static str),
    /// Exit 0 with this body.
    Body(fn() -> Vec<u8>),
    /// Exit 0 with this body and one warning line containing this.
    BodyWarns(fn() -> Vec<u8>, &'static str),
}

/// What `load` must count.
enum LoadExpect {
    /// Every request fails with this kind.
    AllFail(&'static str),
    /// Every request gets a 200; connections opened within these bounds.
    AllOk { min_conns: u64, max_conns: u64 },
}

/// `-n` and `-c` of the load runs; timeouts get fewer requests so that a
/// run stays near two rounds of `TIMEOUT`.
const N: u64 = 12;
const C: u64 = 3;
const N_TIMEOUT: u64 = 6;

fn expect(case: Case) -> (GetExpect, LoadExpect) {
    use GetExpect::*;
    use LoadExpect::*;
    let Case::Fault(fault) = case else {
        return (Fails("connection refused: 127.0.0.1:"), AllFail("refused"));
    };
    let all_ok = |min_conns, max_conns| AllOk {
        min_conns,
        max_conns,
    };
    match fault {
        Fault::ResetAfter(_) => (Fails("connection reset by 127.0.0.1:"), AllFail("reset")),
        Fault::CloseMidHeaders => (
            Fails("connection closed inside a response (in the headers)"),
            AllFail("early_eof"),
        ),
        Fault::CloseMidBody => (
            Fails("connection closed inside a response (in the body)"),
            AllFail("early_eof"),
        ),
        Fault::Stall | Fault::ContentLengthTooLong | Fault::NeverRead => {
            (Fails("timed out after 300ms"), AllFail("timeout"))
        }
        Fault::Garbage => (Fails("malformed response head"), AllFail("bad_response")),
        Fault::BadChunkSize => (Fails("invalid chunk size line"), AllFail("bad_response")),
        Fault::HugeHead => (
            Fails("response header block larger than 65536 bytes"),
            AllFail("bad_response"),
        ),
        // The extra bytes are not a response: `get` keeps the body as framed
        // and warns (as curl), `load` counts the response and does not reuse
        // a connection it can no longer frame.
        Fault::ContentLengthTooShort => (
            BodyWarns(
                || b"ok".to_vec(),
                "11 bytes after the end of the response from 127.0.0.1:",
            ),
            all_ok(N, N),
        ),
        Fault::TinyChunks => (Body(|| vec![b'x'; TINY_CHUNKS]), all_ok(C, C)),
        Fault::ConnectionClose => (Body(|| b"ok".to_vec()), all_ok(N, N)),
        Fault::KeepAliveLimit(k) => (Body(|| b"ok".to_vec()), all_ok(N / k as u64, N)),
    }
}

/// A 4 MiB request body, so a peer that never reads blocks the send itself.
fn big_body_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("uringfetch-4mib-{}", std::process::id()));
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(4 << 20) {
        let tmp = path
            .with_extension(format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
        std::fs::write(&tmp, vec![b'b'; 4 << 20]).expect("write the body file");
        std::fs::rename(&tmp, &path).expect("rename the body file");
    }
    path
}

/// Runs `get` against the case; checks the exit code, the one line, the time.
pub fn get_case(b: &[&str], case: Case) {
    let server = match case {
        Case::Fault(f) => Some(FaultServer::start(f)),
        Case::Refused => None,
    };
    let url = server.as_ref().map_or_else(refused_url, FaultServer::url);
    let t = Instant::now();
    let out = uringfetch(
        &[&["get", "--timeout", "300ms"], b, &[url.as_str()]].concat(),
        LIMIT,
    );
    let elapsed = t.elapsed();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(elapsed < TIMEOUT + Duration::from_secs(2), "{elapsed:?}");
    match expect(case).0 {
        GetExpect::Fails(what) => {
            assert_eq!(out.status.code(), Some(1), "{case:?}: {err}");
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("uringfetch:"))
                .collect();
            assert_eq!(lines.len(), 1, "{case:?}: one error line: {err}");
            assert!(lines[0].contains(what), "{case:?}: {err}");
            assert!(lines[0].ends_with(&format!("({url})")), "{err}");
        }
        GetExpect::Body(body) => {
            assert!(out.status.success(), "{case:?}: {err}");
            assert_eq!(out.stdout, body(), "{case:?}");
            assert!(!err.contains("uringfetch:"), "{case:?}: {err}");
        }
        GetExpect::BodyWarns(body, what) => {
            assert!(out.status.success(), "{case:?}: {err}");
            assert_eq!(out.stdout, body(), "{case:?}");
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("uringfetch:"))
                .collect();
            assert_eq!(lines.len(), 1, "{case:?}: one warning line: {err}");
            assert!(lines[0].starts_with("uringfetch: warning: "), "{err}");
            assert!(lines[0].contains(what), "{case:?}: {err}");
        }
    }
}

/// Runs `load` against the case; checks the counts by kind and the time.
pub fn load_case(b: &[&str], case: Case) {
    let server = match case {
        Case::Fault(f) => Some(FaultServer::start(f)),
        Case::Refused => None,
    };
    let url = server.as_ref().map_or_else(refused_url, FaultServer::url);
    let (_, load_exp) = expect(case);
    let slow = matches!(load_exp, LoadExpect::AllFail("timeout"));
    let total = if slow { N_TIMEOUT } else { N };
    let (total_s, c_s) = (total.to_string(), C.to_string());
    let mut args = vec!["-n", &total_s, "-c", &c_s, "--timeout", "300ms"];
    let body = big_body_file();
    if case == Case::Fault(Fault::NeverRead) {
        args.extend([
            "-m",
            "POST",
            "--body-file",
            body.to_str().unwrap_or_default(),
        ]);
    }
    args.extend(b);
    args.push(&url);
    let t = Instant::now();
    let v = load_json(&args);
    let elapsed = t.elapsed();
    assert_eq!(v["backend"], b[1]);
    assert_counts_add_up(&v);
    assert_eq!(n(&v, "/requests/issued"), total, "{v}");
    let rounds = (total / C) as u32;
    assert!(
        elapsed < TIMEOUT * rounds + Duration::from_secs(2),
        "{case:?}: {elapsed:?}"
    );
    match load_exp {
        LoadExpect::AllFail(kind) => {
            assert_eq!(n(&v, &format!("/errors/{kind}")), total, "{case:?}: {v}");
            assert_eq!(n(&v, "/requests/completed"), 0, "{case:?}: {v}");
        }
        LoadExpect::AllOk {
            min_conns,
            max_conns,
        } => {
            assert_eq!(n(&v, "/status/200"), total, "{case:?}: {v}");
            assert_eq!(n(&v, "/requests/errors"), 0, "{case:?}: {v}");
            let opened = n(&v, "/connections_opened");
            assert!(
                (min_conns..=max_conns).contains(&opened),
                "{case:?}: {opened} connections: {v}"
            );
            if case == Case::Fault(Fault::TinyChunks) {
                assert!(n(&v, "/bytes/read") > total * 6 * TINY_CHUNKS as u64, "{v}");
            }
        }
    }
}

/// An open loop keeps its schedule while every connection is reset.
pub fn rate_kept_under_resets(b: &[&str]) {
    let server = FaultServer::start(Fault::ResetAfter(20));
    let url = server.url();
    let v = load_json(
        &[
            &["-q", "200", "-z", "1s", "-c", "4", "--timeout", "300ms"],
            b,
            &[url.as_str()],
        ]
        .concat(),
    );
    assert_counts_add_up(&v);
    let issued = n(&v, "/requests/issued");
    assert!((198..=200).contains(&issued), "200 scheduled in 1 s: {v}");
    assert_eq!(
        n(&v, "/errors/reset") + n(&v, "/requests/in_flight"),
        issued,
        "{v}"
    );
    assert!(server.accepted() as u64 >= issued - 4, "reconnected: {v}");
}

/// Every case in the matrix, in one list for the descriptor-leak check.
pub const ALL: [Case; 14] = [
    Case::Fault(Fault::ResetAfter(20)),
    Case::Fault(Fault::CloseMidHeaders),
    Case::Fault(Fault::CloseMidBody),
    Case::Fault(Fault::Stall),
    Case::Fault(Fault::Garbage),
    Case::Fault(Fault::BadChunkSize),
    Case::Fault(Fault::ContentLengthTooLong),
    Case::Fault(Fault::ContentLengthTooShort),
    Case::Fault(Fault::HugeHead),
    Case::Fault(Fault::TinyChunks),
    Case::Fault(Fault::ConnectionClose),
    Case::Fault(Fault::KeepAliveLimit(3)),
    Case::Fault(Fault::NeverRead),
    Case::Refused,
];

const CHILD_ENV: &str = "URINGFETCH_FD_LEAK_URLS";

/// Runs every case in-process (load and get) in a child copy of this test
/// binary, where nothing else opens descriptors, and checks that the
/// process has exactly as many open descriptors after each as before.
pub fn no_fd_leaked(b: &[&str], test_path: &str) {
    if let Ok(urls) = std::env::var(CHILD_ENV) {
        return fd_child(b, &urls);
    }
    let servers: Vec<Option<FaultServer>> = ALL
        .iter()
        .map(|c| match c {
            Case::Fault(f) => Some(FaultServer::start(*f)),
            Case::Refused => None,
        })
        .collect();
    let urls: Vec<String> = servers
        .iter()
        .map(|s| s.as_ref().map_or_else(refused_url, FaultServer::url))
        .collect();
    // `it::faults::x::test` is run as `faults::x::test`.
    let name = test_path
        .split_once("::")
        .map_or(test_path, |(_, rest)| rest);
    let mut child = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, urls.join(" "))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("re-run the test binary");
    let out = wait_limited(&mut child, Duration::from_secs(60), name);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran the test: {text}");
}

fn backend_of(b: &[&str]) -> (Backend, ConnOptions) {
    use clap::ValueEnum;
    let mut backend = Backend::from(BackendKind::from_str(b[1], true).expect("backend name"));
    let conn = ConnOptions {
        timeout: Some(TIMEOUT),
        connect_timeout: Some(TIMEOUT),
        ..ConnOptions::default()
    };
    if let Some(i) = b.iter().position(|a| *a == "--uring-profile") {
        backend.uring_profile = ValueEnum::from_str(b[i + 1], true).expect("profile");
    }
    (backend, conn)
}

fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    v.sort();
    v
}

/// Waits (the runner closes perf counters on a helper thread) until the
/// open descriptors are back to `baseline`, or fails listing the extra ones.
fn assert_fds_back_to(baseline: &[String], what: &str) {
    let start = Instant::now();
    loop {
        let now = open_fds();
        if now.len() <= baseline.len() {
            return;
        }
        if start.elapsed() > Duration::from_secs(3) {
            let extra: Vec<&String> = now.iter().filter(|f| !baseline.contains(f)).collect();
            panic!(
                "{what}: {} descriptors open, {} before; new: {extra:?}",
                now.len(),
                baseline.len()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fd_child(b: &[&str], urls: &str) {
    let (kind, conn) = backend_of(b);
    let urls: Vec<&str> = urls.split(' ').collect();
    let body = std::fs::read(big_body_file()).expect("body file");
    let run_case = |case: Case, url: &str| {
        let mut opts = RequestOptions::default();
        if case == Case::Fault(Fault::NeverRead) {
            opts.method = "POST".into();
            opts.body = Some(body.clone());
        }
        let target = Target::new(url, &opts).expect("target");
        let config = LoadConfig {
            backend: kind,
            targets: Arc::new(vec![target.clone()]),
            connections: C as usize,
            threads: 2,
            stop: Stop::Count(N_TIMEOUT),
            rate: Rate::Closed,
            conn: Arc::new(conn.clone()),
        };
        let outcome = runner::run(&config, Arc::new(Live::default()), |_| {});
        let outcome = outcome.unwrap_or_else(|e| panic!("{case:?}: {e}"));
        let r = &outcome.recorder;
        assert_eq!(
            r.issued,
            r.completed() + r.error_count() + r.in_flight,
            "{case:?}"
        );
        let get_conn = ConnOptions {
            keep_alive: false,
            ..conn.clone()
        };
        let fetched = runner::fetch(kind, &[target], &get_conn, 1);
        let _ = fetched.unwrap_or_else(|e| panic!("{case:?}: {e}"));
    };
    // A first run opens whatever is opened once per process.
    run_case(Case::Fault(Fault::ConnectionClose), urls[10]);
    let baseline = open_fds();
    for (case, url) in ALL.iter().zip(&urls) {
        run_case(*case, url);
        assert_fds_back_to(&baseline, &format!("{} {case:?}", kind.name()));
    }
}

/// The matrix for one backend: `$b` is its arguments.
macro_rules! fault_cases {
    ($b:expr) => {
        use super::Case::{self, Refused};
        use crate::fault_server::Fault::*;
        #[test]
        fn reset_get() {
            super::get_case($b, Case::Fault(ResetAfter(20)))
        }
        #[test]
        fn reset_load() {
            super::load_case($b, Case::Fault(ResetAfter(20)))
        }
        #[test]
        fn close_mid_headers_get() {
            super::get_case($b, Case::Fault(CloseMidHeaders))
        }
        #[test]
        fn close_mid_headers_load() {
            super::load_case($b, Case::Fault(CloseMidHeaders))
        }
        #[test]
        fn close_mid_body_get() {
            super::get_case($b, Case::Fault(CloseMidBody))
        }
        #[test]
        fn close_mid_body_load() {
            super::load_case($b, Case::Fault(CloseMidBody))
        }
        #[test]
        fn stall_get() {
            super::get_case($b, Case::Fault(Stall))
        }
        #[test]
        fn stall_load() {
            super::load_case($b, Case::Fault(Stall))
        }
        #[test]
        fn garbage_get() {
            super::get_case($b, Case::Fault(Garbage))
        }
        #[test]
        fn garbage_load() {
            super::load_case($b, Case::Fault(Garbage))
        }
        #[test]
        fn bad_chunk_size_get() {
            super::get_case($b, Case::Fault(BadChunkSize))
        }
        #[test]
        fn bad_chunk_size_load() {
            super::load_case($b, Case::Fault(BadChunkSize))
        }
        #[test]
        fn content_length_too_long_get() {
            super::get_case($b, Case::Fault(ContentLengthTooLong))
        }
        #[test]
        fn content_length_too_long_load() {
            super::load_case($b, Case::Fault(ContentLengthTooLong))
        }
        #[test]
        fn content_length_too_short_get() {
            super::get_case($b, Case::Fault(ContentLengthTooShort))
        }
        #[test]
        fn content_length_too_short_load() {
            super::load_case($b, Case::Fault(ContentLengthTooShort))
        }
        #[test]
        fn huge_head_get() {
            super::get_case($b, Case::Fault(HugeHead))
        }
        #[test]
        fn huge_head_load() {
            super::load_case($b, Case::Fault(HugeHead))
        }
        #[test]
        fn tiny_chunks_get() {
            super::get_case($b, Case::Fault(TinyChunks))
        }
        #[test]
        fn tiny_chunks_load() {
            super::load_case($b, Case::Fault(TinyChunks))
        }
        #[test]
        fn connection_close_get() {
            super::get_case($b, Case::Fault(ConnectionClose))
        }
        #[test]
        fn connection_close_load() {
            super::load_case($b, Case::Fault(ConnectionClose))
        }
        #[test]
        fn keep_alive_limit_get() {
            super::get_case($b, Case::Fault(KeepAliveLimit(3)))
        }
        #[test]
        fn keep_alive_limit_load() {
            super::load_case($b, Case::Fault(KeepAliveLimit(3)))
        }
        #[test]
        fn never_read_get() {
            super::get_case($b, Case::Fault(NeverRead))
        }
        #[test]
        fn never_read_load() {
            super::load_case($b, Case::Fault(NeverRead))
        }
        #[test]
        fn refused_get() {
            super::get_case($b, Refused)
        }
        #[test]
        fn refused_load() {
            super::load_case($b, Refused)
        }
        #[test]
        fn rate_kept_under_resets() {
            super::rate_kept_under_resets($b)
        }
        #[test]
        fn no_fd_leaked_in_process() {
            super::no_fd_leaked($b, concat!(module_path!(), "::no_fd_leaked_in_process"))
        }
    };
}

/// One module per backend, each with the whole matrix.
macro_rules! fault_suite {
    ($($module:ident => [$($arg:literal),+]),* $(,)?) => {$(
        mod $module {
            const B: &[&str] = &["--backend", $($arg),+];
            fault_cases!(B);
        }
    )*};
}

every_backend!(fault_suite);
