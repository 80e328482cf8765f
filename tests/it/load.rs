//! `uringfetch load` end to end: counts that add up, reconnects, errors by
//! kind, in-flight requests at the deadline, the open-loop rate, Ctrl-C.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `load ... --output json` and returns the parsed report. A run in
/// which not one request got a response still prints its report and exits
/// 1 (saying so); any other run must exit 0.
pub fn load_json(args: &[&str]) -> Value {
    let mut all = vec!["load", "--output", "json"];
    all.extend_from_slice(args);
    let out = uringfetch(&all, LIMIT);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "load {args:?}: JSON report ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    let none_arrived =
        v["requests"]["issued"].as_u64() > Some(0) && v["requests"]["completed"] == 0;
    let expected = if none_arrived { 1 } else { 0 };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "load {args:?}: {}",
        stderr(&out)
    );
    if none_arrived {
        assert!(
            stderr(&out).contains("uringfetch: not one response arrived"),
            "{}",
            stderr(&out)
        );
    }
    v
}

/// A number in a JSON report, by JSON pointer; panics naming the path.
pub fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

/// `load` on one backend (`b`: `--backend NAME` and its own options) with
/// a JSON report whose counts add up.
pub fn load_on(b: &[&str], args: &[&str]) -> Value {
    let v = load_json(&[b, args].concat());
    assert_eq!(v["backend"], b[1]);
    assert_counts_add_up(&v);
    v
}

/// issued == responses + errors + in flight, and the status map sums to completed.
pub fn assert_counts_add_up(v: &Value) {
    let issued = n(v, "/requests/issued");
    let completed = n(v, "/requests/completed");
    let errors = n(v, "/requests/errors");
    let in_flight = n(v, "/requests/in_flight");
    let by_status: u64 = v["status"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_u64().unwrap())
        .sum();
    let by_kind: u64 = v["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(issued, completed + errors + in_flight, "{v}");
    assert_eq!(by_status, completed, "{v}");
    assert_eq!(by_kind, errors, "{v}");
    assert_eq!(n(v, "/latency_us/count"), completed, "{v}");
}

#[test]
fn counts_add_up_against_nginx() {
    let nginx = nginx();
    let v = load_json(&[
        "-n",
        "2000",
        "-c",
        "8",
        &format!("http://{}/bar", nginx.addr),
    ]);
    assert_counts_add_up(&v);
    assert_eq!(n(&v, "/requests/completed"), 2000);
    assert_eq!(n(&v, "/requests/errors"), 0);
    assert_eq!(n(&v, "/status/200"), 2000);
    assert_eq!(
        n(&v, "/connections_opened"),
        8,
        "keep-alive reuses the 8 connections"
    );
    assert!(
        v["latency_us"]["hdr"]
            .as_str()
            .unwrap()
            .starts_with("HISTFAAA")
    );
    assert!(v["resources"]["cpu_us_per_request"].as_f64().unwrap() > 0.0);
}

#[test]
fn server_closing_connections_is_reconnected_not_an_error() {
    let nginx = nginx();
    // nginx closes each connection after 3 requests on /limited.
    let v = load_json(&[
        "-n",
        "300",
        "-c",
        "4",
        &format!("http://{}/limited", nginx.addr),
    ]);
    assert_counts_add_up(&v);
    assert_eq!(n(&v, "/requests/completed"), 300);
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    assert!(n(&v, "/reconnects") >= 90, "{v}");
}

#[test]
fn statuses_are_counted_and_urls_used_round_robin() {
    let server = demo_server(Duration::ZERO);
    let a = format!("http://{}/status/503", server.addr);
    let b = format!("http://{}/bar", server.addr);
    let v = load_json(&[
        "-n", "100", "-c", "2", "-m", "POST", "-d", "payload", &a, &b,
    ]);
    assert_counts_add_up(&v);
    assert_eq!(n(&v, "/status/503"), 50);
    assert_eq!(n(&v, "/status/200"), 50);
    assert_eq!(
        n(&v, "/requests/errors"),
        0,
        "a 503 is a response, not an error"
    );
    server.shutdown();
}

#[test]
fn urls_file_and_chunked_responses() {
    let nginx = nginx();
    let dir = temp_dir("urls");
    let file = dir.join("urls.txt");
    std::fs::write(
        &file,
        format!(
            "# two URLs\nhttp://{0}/chunked\n\nhttp://{0}/bar\n",
            nginx.addr
        ),
    )
    .unwrap();
    let v = load_json(&[
        "-n",
        "400",
        "-c",
        "4",
        "--urls-file",
        file.to_str().unwrap(),
    ]);
    assert_counts_add_up(&v);
    assert_eq!(n(&v, "/status/200"), 400);
    assert_eq!(v["urls"].as_array().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs uringfetch with `args`, sends it SIGINT after 800 ms, and waits
/// (5 s at most) for it to end.
fn interrupted(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: sending a signal to our own child, whose pid we hold.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    wait_limited(
        &mut child,
        Duration::from_secs(5),
        "uringfetch after SIGINT",
    )
}

#[test]
fn sigint_ends_the_run_and_still_prints_the_report() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let out = interrupted(&["load", "-z", "30s", "-q", "100", "-c", "2", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("stopped early by Ctrl-C"), "{text}");
    assert!(text.contains("[200]"), "{text}");
    server.shutdown();
}

/// `--timeout 0` and `--connect-timeout 0` are no limit (curl's `-m 0`),
/// not a limit every request misses.
#[test]
fn a_zero_timeout_is_no_limit() {
    let server = demo_server(Duration::from_millis(200));
    let url = format!("http://{}/bar", server.addr);
    for backend in ["uring-loop", "threads"] {
        let out = uringfetch(
            &[
                "load",
                "--backend",
                backend,
                "--timeout",
                "0",
                "--connect-timeout",
                "0",
                "-n",
                "4",
                "-c",
                "2",
                "-o",
                "json",
                &url,
            ],
            LIMIT,
        );
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["requests"]["completed"], 4, "{backend}: {v}");
    }
    server.shutdown();
}

/// Ctrl-C in `compare` ends the comparison, not just its current row: the
/// rows so far are printed, and the one it cut is named.
#[test]
fn sigint_ends_a_comparison_and_still_prints_its_rows() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let out = interrupted(&[
        "compare",
        "-z",
        "30s",
        "-q",
        "100",
        "-c",
        "2",
        "--backends",
        "epoll-loop,threads,uring-loop",
        &url,
    ]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{err}");
    assert!(text.contains("epoll-loop"), "{text}");
    assert!(
        !text.contains("threads") && !text.contains("uring-loop"),
        "{text}"
    );
    assert!(
        err.contains("stopped early by Ctrl-C: the epoll-loop -c 2 row"),
        "{err}"
    );
    server.shutdown();
}

#[test]
fn too_many_connections_for_the_fd_limit_fails_early_with_advice() {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -n 256 && exec {} load -c 1000 -n 1000 http://127.0.0.1:9/",
                env!("CARGO_BIN_EXE_uringfetch")
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // `ulimit -n 256` in sh sets the hard limit too: no `ulimit -n` can help.
    assert!(
        err.contains("RLIMIT_NOFILE") && err.contains("more than the hard limit (256)"),
        "{err}"
    );
}

/// Issue 19 item 5: a method is a token. A request line cannot be injected
/// through -X or -m on any command.
#[test]
fn a_method_that_is_not_a_token_is_refused() {
    for cmd in ["get", "load", "compare"] {
        for method in [
            "GET /admin HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET",
            "DELETE /other",
            "",
        ] {
            let out = uringfetch(&[cmd, "-X", method, "http://127.0.0.1:9/x"], LIMIT);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {method:?}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).contains("is not a method"), "{}", stderr(&out));
        }
    }
}

/// Issue 19 item 14: `-d @FILE` is the file's bytes in `load` as in `get`
/// (and as in curl), and a body switches the default method to POST.
#[test]
fn load_reads_a_body_file_as_get_does() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let server = RawServer::start(move |mut stream| {
        while let Some((head, body)) = read_request(&mut stream) {
            s.lock().unwrap().push((head, body));
            send(&mut stream, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let dir = temp_dir("load-body");
    let file = dir.join("body.json");
    std::fs::write(&file, b"{\"a\": 1}").unwrap();
    let at = format!("@{}", file.display());
    let v = load_json(&["-n", "3", "-c", "1", "-d", &at, &server.url("/x")]);
    assert_eq!(n(&v, "/status/200"), 3, "{v}");
    for (head, body) in seen.lock().unwrap().iter() {
        assert!(head.starts_with("POST /x HTTP/1.1\r\n"), "{head}");
        assert_eq!(body, b"{\"a\": 1}");
    }
    // wrk's `-d 2s` is a duration: here it is a body, and the user is told.
    let out = uringfetch(
        &["load", "-n", "1", "-c", "1", "-d", "2s", &server.url("/x")],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("-d '2s' is the request body (as in curl and oha); the duration is -z 2s"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_histograms_merge_exactly() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let a = load_json(&["-n", "300", "-c", "3", &url]);
    let b = load_json(&["-n", "500", "-c", "5", &url]);
    let ha = uringfetch::testing::histogram_from_base64(a["latency_us"]["hdr"].as_str().unwrap())
        .unwrap();
    let hb = uringfetch::testing::histogram_from_base64(b["latency_us"]["hdr"].as_str().unwrap())
        .unwrap();
    assert_eq!(ha.len(), 300);
    assert_eq!(hb.len(), 500);
    assert_eq!(ha.max(), n(&a, "/latency_us/max"));
    let mut merged = ha.clone();
    merged.add(&hb).unwrap();
    assert_eq!(merged.len(), 800);
    assert_eq!(merged.max(), ha.max().max(hb.max()));
    server.shutdown();
}

#[test]
fn open_loop_latency_shows_a_server_stall() {
    let server = stalling_server(Duration::from_secs(2), Duration::from_secs(1));
    let v = load_json(&["-q", "1000", "-z", "5s", "-c", "50", &server.url("/")]);
    assert_counts_add_up(&v);
    let issued = n(&v, "/requests/issued");
    assert!(
        (4950..=5000).contains(&issued),
        "within 1% of 5000: {issued}"
    );
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    // A fifth of the requests were scheduled during the 1 s stall and waited
    // for it: corrected latency must show that, not the server's ~0 ms.
    let p99 = n(&v, "/latency_us/p99");
    assert!(p99 >= 500_000, "p99 {p99} µs does not show the stall");
    let p50 = n(&v, "/latency_us/p50");
    assert!(
        p50 < 100_000,
        "p50 {p50} µs: most requests were not stalled"
    );
}

/// An open-loop `-z` run covers its whole window even when the schedule's
/// last request falls well before its end: `-q 4 -z 1200ms` has requests
/// at 0, 0.25, ... 1.0 s and lasts 1.2 s (it used to end after the fifth,
/// near 1.0 s, and read 5 req/s).
#[test]
fn open_loop_duration_run_lasts_its_window() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    for backend in ["uring-loop", "threads"] {
        let v = load_json(&[
            "--backend",
            backend,
            "-q",
            "4",
            "-z",
            "1200ms",
            "-c",
            "2",
            &url,
        ]);
        assert_counts_add_up(&v);
        assert_eq!(n(&v, "/requests/completed"), 5, "{backend}: {v}");
        let secs = v["duration_s"].as_f64().unwrap();
        assert!((1.2..1.4).contains(&secs), "{backend}: duration {secs} s");
        let rps = v["rps"].as_f64().unwrap();
        assert!(rps < 4.5, "{backend}: {rps} req/s");
    }
    server.shutdown();
}

/// Options that cannot work are refused before anything is sent, with the
/// reason: exit 2 for what the argument parser sees, 1 for the rest.
#[test]
fn impossible_options_are_refused_up_front() {
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["load", "-n", "2", "--bind", "::1", "http://127.0.0.1:9/"],
            1,
            "--bind ::1 cannot reach http://127.0.0.1:9/",
        ),
        (
            &[
                "load",
                "--timeout",
                "18446744073709551615s",
                "http://127.0.0.1:9/",
            ],
            2,
            "longer than a year",
        ),
        (
            &["load", "--pipeline", "4294967296", "http://127.0.0.1:9/"],
            2,
            "pipeline depth from 1 to 10000",
        ),
        (
            &["load", "-q", "1e-300", "http://127.0.0.1:9/"],
            2,
            "-q must be at least 0.001",
        ),
        (
            &["load", "--start-at", "@1e30", "http://127.0.0.1:9/"],
            2,
            "invalid --start-at",
        ),
        (
            &[
                "get",
                "--sequential",
                "--backend",
                "epoll-loop",
                "http://127.0.0.1:9/",
            ],
            2,
            "cannot be used with",
        ),
        (
            &["compare", "--output", "csv"],
            2,
            "this command has no csv format",
        ),
        (
            &["doctor", "--self-test", "--requests", "0"],
            2,
            "--requests",
        ),
        (&["serve", "--threads", "0"], 2, "at least 1"),
        // Mistakes found after parsing are usage errors too (exit 2).
        (&["load", "-n", "0", "http://127.0.0.1:9/"], 2, "-n must be"),
        (
            &[
                "load",
                "--chart",
                "/nonexistent/x.svg",
                "http://127.0.0.1:9/",
            ],
            1,
            "checked before the run",
        ),
        (&["load", "-z", "0", "http://127.0.0.1:9/"], 2, "-z must be"),
        (&["load", "-q", "0", "http://127.0.0.1:9/"], 2, "-q must be"),
        (&["load"], 2, "no URL given"),
        (&["load", "ftp://127.0.0.1/"], 2, "unsupported scheme"),
        (&["load", "http://127.0.0.1:99999/"], 2, "invalid port"),
        (
            &[
                "load",
                "--pipeline",
                "4",
                "--backend",
                "threads",
                "http://127.0.0.1:9/",
            ],
            2,
            "--pipeline is implemented by",
        ),
        (
            &["load", "--pipeline", "4", "-q", "5", "http://127.0.0.1:9/"],
            2,
            "--pipeline works with",
        ),
        (
            &[
                "load",
                "--http2-prior-knowledge",
                "http://127.0.0.1:9/a",
                "http://127.0.0.1:10/b",
            ],
            2,
            "same scheme, host and port",
        ),
        (
            &[
                "load",
                "--http1.0",
                "--http2-prior-knowledge",
                "http://127.0.0.1:9/",
            ],
            2,
            "exclude each other",
        ),
        (
            &["load", "--http2", "--streams", "4", "http://127.0.0.1:9/"],
            2,
            "use --http2-prior-knowledge",
        ),
    ];
    for (args, code, says) in cases {
        let out = uringfetch(args, LIMIT);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// Issue 19 item 7: `--pipeline 10000` with a 1 MiB body tried to copy the
/// request 10,000 times (10 GB) even for `-n 1`; batches are now bounded by
/// bytes, the user is told, and the run stays small.
#[test]
fn a_pipelined_batch_is_bounded_by_bytes() {
    let server = demo_server(Duration::ZERO);
    let dir = temp_dir("pipeline-bytes");
    let body = dir.join("body.bin");
    std::fs::write(&body, vec![b'x'; 1 << 20]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args([
            "load",
            "--pipeline",
            "10000",
            "--body-file",
            body.to_str().unwrap(),
            "-n",
            "2",
            "-c",
            "1",
            "--output",
            "json",
            &format!("http://{}/bar", server.addr),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peak = peak_rss_kb(&mut child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writing batches of 1 instead"),
        "{}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&v, "/status/200"), 2, "{v}");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 19 item 12: a run where not one response arrived exits 1 (it used
/// to exit 0 with "Success rate: 0.00%"), and `--fail-on` lets CI fail a
/// run on its figures (exit 3), the report printed all the same; `merge`
/// takes the same conditions.
#[test]
fn failure_is_not_success() {
    let out = uringfetch(
        &["load", "-n", "5", "-c", "1", "http://127.0.0.1:9/"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("refused"),
        "the report: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("not one response arrived (5 requests: 5 errors"),
        "{}",
        stderr(&out)
    );

    let not_found = RawServer::start(|mut s| {
        while read_head(&mut s).is_some() {
            send(
                &mut s,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    let url = not_found.url("/");
    let args = |fail_on: &str| -> Vec<String> {
        [
            "load",
            "-n",
            "20",
            "-c",
            "2",
            "--fail-on",
            fail_on,
            url.as_str(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |fail_on: &str| {
        let a = args(fail_on);
        uringfetch(&a.iter().map(String::as_str).collect::<Vec<_>>(), LIMIT)
    };
    let out = run("non-2xx>0");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Non-2xx or 3xx responses: 20"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("--fail-on non-2xx>0: 20 responses outside 2xx/3xx"),
        "{}",
        stderr(&out)
    );
    let out = run("errors>0,p99>10s,success<50%");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--fail-on success<50%: success rate 0.000%"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("errors>0"), "{}", stderr(&out));
    let out = run("errors>0,p99>10s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run("p99>10");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a latency needs a unit"),
        "{}",
        stderr(&out)
    );

    // merge: the same conditions on the merged report.
    let dir = temp_dir("fail-on-merge");
    let report = dir.join("a.json");
    let out = uringfetch(
        &[
            "load",
            "-n",
            "10",
            "-c",
            "1",
            "--output",
            "json",
            url.as_str(),
        ],
        LIMIT,
    );
    std::fs::write(&report, &out.stdout).unwrap();
    let out = uringfetch(
        &[
            "merge",
            "--fail-on",
            "non-2xx>50%",
            report.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = uringfetch(&["load", "--help"], LIMIT);
    assert!(stdout(&out).contains("Exit codes:"), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 19 item 3: numbers that wrapped round in the open-file check made
/// a worker panic before the start gate, and the run hung for ever (Ctrl-C
/// did nothing). Each is refused at once now, with the reason.
#[test]
fn huge_counts_are_refused_not_hung() {
    for args in [
        &[
            "load",
            "-n",
            "1",
            "-c",
            "18446744073709551615",
            "http://127.0.0.1:9/",
        ][..],
        &[
            "compare",
            "-n",
            "1",
            "-c",
            "9223372036854775808",
            "--backends",
            "threads",
            "http://127.0.0.1:9/",
        ],
        &["demo", "--requests", "9223372036854775808", "--delay", "0"],
    ] {
        let out = uringfetch(args, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("open files"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// Issue 19 item 13, `get`'s messages: a typo in the scheme is a malformed
/// URL (not a host named "http"), control characters from the command line
/// are shown escaped, a message that names the URL does not repeat it, and
/// no timing line follows when no URL could run.
#[test]
fn get_says_what_went_wrong_once_and_plainly() {
    let out = uringfetch(&["get", "http:/127.0.0.1:8080/bar"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("malformed: a URL starts with http://"),
        "{err}"
    );
    assert!(!err.contains("resolve"), "{err}");
    assert_eq!(err.matches("http:/127.0.0.1:8080/bar").count(), 1, "{err}");
    assert!(!err.contains("URL in"), "no timing line: {err}");
    let out = uringfetch(&["get", "http://127.0.0.1:9/\u{1b}[2J"], LIMIT);
    let err = stderr(&out);
    assert!(!err.contains('\u{1b}'), "{err:?}");
}
