//! Distributed runs on one machine: four `load` processes started together
//! by `--start-at`, then `merge` of their JSON reports, checked against the
//! sum of the reports and a histogram built from all of their samples.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::load::assert_counts_add_up;
use crate::load::n;
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn hdr(v: &Value, which: &str) -> hdrhistogram::Histogram<u64> {
    let s = v[which]["hdr"]
        .as_str()
        .unwrap_or_else(|| panic!("{which}.hdr in {v}"));
    uringfetch::testing::histogram_from_base64(s).unwrap()
}

/// Starts `load` processes at once, all told to begin at the same time.
fn load_together(url: &str, clients: usize, start_at: &str) -> Vec<Value> {
    let children: Vec<_> = (0..clients)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_uringfetch"))
                .args([
                    "load", "--output", "json", "-n", "1500", "-c", "3", "-t", "1",
                ])
                .args(["--start-at", start_at, "--run-id", "it-merge"])
                .args(["--label", &format!("host=client{i}"), "--label", "zone=lo"])
                .arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("binary runs")
        })
        .collect();
    children
        .into_iter()
        .enumerate()
        .map(|(i, mut child)| {
            let out = wait_limited(&mut child, LIMIT, &format!("load client {i}"));
            assert!(out.status.success(), "client {i}: {}", stderr(&out));
            assert!(stderr(&out).contains("waiting"), "{}", stderr(&out));
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("client {i} JSON ({e}): {}", stdout(&out)))
        })
        .collect()
}

/// Runs `merge` with `stdin` as its standard input.
fn merge_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .arg("merge")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    wait_limited(&mut child, LIMIT, "merge")
}

/// The merged report is the sum of the reports, its percentiles those of
/// all their samples together, its req/s over the union of their windows.
fn assert_merge_adds_up(reports: &[Value], m: &Value) {
    let sum = |path: &str| reports.iter().map(|r| n(r, path)).sum::<u64>();
    for path in [
        "/requests/issued",
        "/requests/completed",
        "/requests/errors",
        "/requests/in_flight",
        "/status/200",
        "/bytes/read",
        "/bytes/written",
        "/connections_opened",
        "/connect_us/count",
    ] {
        assert_eq!(n(m, path), sum(path), "{path}");
    }
    assert_eq!(n(m, "/requests/completed"), 6000);
    assert_eq!(n(m, "/connections"), 12);

    // The merged percentiles are those of all samples together.
    let mut all = hdr(&reports[0], "latency_us");
    for r in &reports[1..] {
        all.add(hdr(r, "latency_us")).unwrap();
    }
    assert_eq!(hdr(m, "latency_us"), all);
    assert_eq!(n(m, "/latency_us/count"), all.len());
    assert_eq!(n(m, "/latency_us/p50"), all.value_at_quantile(0.50));
    assert_eq!(n(m, "/latency_us/p99"), all.value_at_quantile(0.99));
    assert_eq!(n(m, "/latency_us/max"), all.max());

    // req/s over the union of the (overlapping) windows: first start to last end.
    let first = n(m, "/started_at_unix_ns");
    let last = n(m, "/ended_at_unix_ns");
    let starts = reports.iter().map(|r| n(r, "/started_at_unix_ns"));
    assert_eq!(Some(first), starts.min());
    let window = (last - first) as f64 / 1e9;
    let rps = m["rps"].as_f64().unwrap();
    assert!(
        (rps - 6000.0 / window).abs() < 1e-6 * rps,
        "{rps} vs {window}"
    );
}

#[test]
fn four_clients_start_together_and_merge_exactly() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let at = SystemTime::now() + Duration::from_secs(2);
    let start_at = humantime::format_rfc3339_millis(at).to_string();
    let reports = load_together(&url, 4, &start_at);
    server.shutdown();

    let starts: Vec<u64> = reports
        .iter()
        .map(|r| n(r, "/started_at_unix_ns"))
        .collect();
    let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
    eprintln!("four clients started within {spread} ns of each other");
    assert!(spread < 100_000_000, "starts {spread} ns apart: {starts:?}");
    let asked = uringfetch::testing::unix_ns(at) / 1_000_000 * 1_000_000;
    assert!(
        starts.iter().all(|&s| s >= asked),
        "started before --start-at: {starts:?}"
    );
    for r in &reports {
        assert_counts_add_up(r);
        assert_eq!(r["run_id"], "it-merge");
        assert_eq!(r["labels"]["zone"], "lo");
        assert!(n(r, "/ended_at_unix_ns") > n(r, "/started_at_unix_ns"));
        assert!(r["started_at"].as_str().unwrap().ends_with('Z'), "{r}");
    }

    // Two reports concatenated in one file, two as an array in another.
    let dir = temp_dir("merge");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap();
    std::fs::write(
        &a,
        format!("{}\n{}", pretty(&reports[0]), pretty(&reports[1])),
    )
    .unwrap();
    std::fs::write(&b, serde_json::to_string(&reports[2..]).unwrap()).unwrap();
    let out = uringfetch(
        &[
            "merge",
            "--output",
            "json",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_counts_add_up(&m);

    assert_merge_adds_up(&reports, &m);
    assert_eq!(m["merged_from"].as_array().unwrap().len(), 4);
    assert_eq!(m["run_id"], "it-merge");
    assert_eq!(m["labels"]["zone"], "lo");

    // The text form, from stdin, names every client in the per-input table.
    let all_json: String = reports.iter().map(pretty).collect();
    let out = merge_with_stdin(&["-"], &all_json);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Merged 4 reports of run it-merge"), "{text}");
    assert!(text.contains("[200] 6000 responses"), "{text}");
    for i in 0..4 {
        assert!(text.contains(&format!("client{i}")), "{text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reports_of_different_urls_are_refused_unless_forced() {
    let server = demo_server(Duration::ZERO);
    let bar = load_report(&format!("http://{}/bar", server.addr));
    let foo = load_report(&format!("http://{}/foo", server.addr));
    server.shutdown();
    let both = format!("{bar}\n{foo}");

    let out = merge_with_stdin(&["-"], &both);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("refusing to merge"), "{err}");
    assert!(
        err.contains("/bar vs http://") && err.contains("/foo"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert!(stdout(&out).is_empty());

    let out = merge_with_stdin(&["--force", "--output", "json", "-"], &both);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&m, "/requests/completed"), 40);
    assert_eq!(m["urls"].as_array().unwrap().len(), 2);
}

fn load_report(url: &str) -> String {
    let out = uringfetch(
        &["load", "--output", "json", "-n", "20", "-c", "2", url],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_start_time_in_the_past_is_refused() {
    let out = uringfetch(
        &[
            "load",
            "--start-at",
            "2020-01-01T00:00:00Z",
            "-n",
            "1",
            "http://127.0.0.1:9/",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("in the past"), "{err}");
    let out = uringfetch(
        &["load", "--start-at", "soon", "http://127.0.0.1:9/"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn ctrl_c_while_waiting_for_the_start_sends_nothing() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args([
            "load",
            "--start-at",
            "+30s",
            "-n",
            "1",
            "http://127.0.0.1:9/",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child, whose pid we hold.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_limited(&mut child, Duration::from_secs(5), "load after SIGINT");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no request was sent"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

/// Issue 19 item 13: a file name or a run id with control characters is
/// shown escaped, so that it cannot clear the screen or fake a line.
#[test]
fn control_characters_in_names_and_reports_are_shown_escaped() {
    let out = uringfetch(
        &["merge", "/nonexistent/\u{1b}[2Jr\nuringfetch: ok.json"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot read /nonexistent/\\u{1b}[2Jr\\nuringfetch: ok.json"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");

    let server = demo_server(Duration::ZERO);
    let report: Value =
        serde_json::from_str(&load_report(&format!("http://{}/bar", server.addr))).unwrap();
    server.shutdown();
    let (mut a, mut b) = (report.clone(), report);
    a["run_id"] = Value::from("r1\u{1b}]0;pwned\u{7}");
    a["host"] = Value::from("client\u{9b}1");
    b["run_id"] = Value::from("r2\r\nuringfetch: merged fine");
    b["host"] = Value::from("client2");
    let both = format!("{a}\n{b}");
    let out = merge_with_stdin(&["-"], &both);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("run id r1\\u{1b}]0;pwned\\u{7} vs r2\\r\\nuringfetch: merged fine"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Forced, the text report shows the run ids and hosts escaped too.
    let out = merge_with_stdin(&["--force", "-"], &both);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("client\\u{9b}1"), "{text}");
    assert!(text.contains("r2\\r\\nuringfetch: merged fine"), "{text}");
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\u{9b}', '\r']),
        "{text:?}"
    );
}

/// Runs a command under `sh -c 'ulimit -v KIB; exec ...'`: a process that
/// tries to allocate past the cap aborts instead of hogging the machine.
fn uringfetch_capped(kib: u64, args: &[&str]) -> std::process::Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_uringfetch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    wait_limited(&mut child, LIMIT, &format!("uringfetch {}", args.join(" ")))
}

/// Issue 19 item 6: a report whose histogram declares a 4 GiB payload made
/// merge allocate and zero 4 GiB (4.2 GB RSS for 5-11 s; under a memory cap
/// it aborted, rc 134). It is refused from its header, in little memory.
#[test]
fn a_histogram_that_declares_4_gib_is_refused_in_bounded_memory() {
    let server = demo_server(Duration::ZERO);
    let mut report: Value =
        serde_json::from_str(&load_report(&format!("http://{}/bar", server.addr))).unwrap();
    server.shutdown();
    report["latency_us"]["hdr"] =
        Value::from("HISTE/////8AAAAAAAAAAwAAAAAAAAABAAAAANaTpAA/8AAAAAAAAA==");
    let dir = temp_dir("merge-bomb");
    let file = dir.join("bomb.json");
    std::fs::write(&file, report.to_string()).unwrap();
    let started = std::time::Instant::now();
    // 512 MiB of address space: far below the 4 GiB the header asks for.
    let out = uringfetch_capped(512 * 1024, &["merge", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("latency_us.hdr: histogram declares 4294967295 bytes of counts but holds 0"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(stdout(&out).is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 19 item 19: one test of 1,000 requests split over three clients
/// as -n 334, -n 333, -n 333 was refused as different plans. Its shares
/// are added up, and the merge says so; a different -q is still refused.
#[test]
fn unequal_shares_of_one_count_are_added_up() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let share = |n: &str, host: &str, rate: &str| -> String {
        let out = uringfetch(
            &[
                "load",
                "--output",
                "json",
                "-n",
                n,
                "-c",
                "2",
                "-t",
                "1",
                "-q",
                rate,
                "--label",
                &format!("host={host}"),
                &url,
            ],
            LIMIT,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let shares = [
        share("334", "a", "5000"),
        share("333", "b", "5000"),
        share("333", "c", "5000"),
    ]
    .concat();
    let other_rate = share("333", "d", "2000");
    server.shutdown();

    let out = merge_with_stdin(&["-"], &shares);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Plan:           -n 1000, open loop at 15000 req/s"),
        "{text}"
    );
    assert!(
        text.contains("unequal shares of one test, added up: -n 334 + 333 + 333 = 1000 requests"),
        "{text}"
    );
    assert!(text.contains("[200] 1000 responses"), "{text}");

    let out = merge_with_stdin(&["--output", "json", "-"], &shares);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("note: the reports are unequal shares"));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&m, "/mode/count"), 1000);
    assert_eq!(n(&m, "/requests/completed"), 1000);

    let out = merge_with_stdin(&["-"], &format!("{shares}{other_rate}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("plan -n 334, open loop at 5000 req/s vs -n 333, open loop at 2000 req/s"),
        "{}",
        stderr(&out)
    );
}

/// Issue 19 item 18: `--start-at 9999-12-31T23:59:59Z` was accepted and
/// waited for (8,000 years) while `+366d` was refused. Every form has the
/// bound of a duration: a year ahead.
#[test]
fn a_start_time_more_than_a_year_ahead_is_refused_in_every_form() {
    let next_year_and_a_day = SystemTime::now() + Duration::from_secs(366 * 86_400);
    let cases = [
        "9999-12-31T23:59:59Z".to_string(),
        humantime::format_rfc3339(next_year_and_a_day).to_string(),
        format!(
            "@{}",
            uringfetch::testing::unix_ns(next_year_and_a_day) / 1_000_000_000
        ),
        "+366d".to_string(),
    ];
    for at in &cases {
        let out = uringfetch(
            &["load", "--start-at", at, "-n", "1", "http://127.0.0.1:9/"],
            Duration::from_secs(10),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{at}: a usage error: {err}");
        assert!(
            err.contains("more than a year (365d) ahead") || err.contains("longer than a year"),
            "{at}: {err}"
        );
    }
}
