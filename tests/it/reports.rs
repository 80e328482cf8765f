//! What the reports say and whether they arrive: a report that cannot be
//! written is a failure, non-2xx/3xx responses are not counted as success,
//! and the text, JSON and CSV describe the run they report.

use std::fs::File;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary with its standard output on `stdout`.
fn uringfetch_to(stdout: Stdio, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    wait_limited(&mut child, LIMIT, &format!("uringfetch {}", args.join(" ")))
}

fn dev_full() -> Stdio {
    Stdio::from(
        File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

/// Issue 19 item 10: `> /dev/full` exited 0 with the report lost, for load
/// (text, json, csv), merge and doctor --output json.
#[test]
fn a_report_that_cannot_be_written_fails_the_command() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let dir = temp_dir("reports-full");
    let report = dir.join("r.json");
    let out = uringfetch_to(
        Stdio::from(File::create(&report).unwrap()),
        &[
            "load", "-n", "10", "-c", "2", "-t", "1", "--output", "json", &url,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = report.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["load", "-n", "10", "-c", "2", "-t", "1", &url],
        &[
            "load", "-n", "10", "-c", "2", "-t", "1", "--output", "json", &url,
        ],
        &[
            "load", "-n", "10", "-c", "2", "-t", "1", "--output", "csv", &url,
        ],
        &["merge", report],
        &["merge", "--output", "json", report],
        &["doctor", "--output", "json"],
        &["doctor"],
    ];
    for args in cases {
        let out = uringfetch_to(dev_full(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("cannot write the report to standard output: No space left on device"),
            "{args:?}: {err}"
        );
    }
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// A reader that went away (`| head`) is no failure: exit 0, nothing said.
#[test]
fn a_closed_pipe_stays_quiet() {
    let server = demo_server(Duration::from_millis(200));
    let url = format!("http://{}/bar", server.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args(["load", "-n", "2", "-c", "1", "-t", "1", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    // The read end closes before the report (due after 400 ms) is written.
    drop(child.stdout.take());
    let out = wait_limited(&mut child, LIMIT, "load into a closed pipe");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// Issue 19 item 12 (report side): 2,000 x 404 read "Success rate:
/// 100.00%". Responses outside 2xx/3xx are counted apart (text, JSON,
/// merge) and are not success.
#[test]
fn responses_outside_2xx_3xx_are_counted_and_not_success() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/status/404", server.addr);
    let args = ["-n", "2000", "-c", "4", "-t", "1", url.as_str()];
    let out = uringfetch(&[&["load"][..], &args].concat(), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Success rate:   0.00% (2xx/3xx responses of 2000 requests finished)"),
        "{text}"
    );
    assert!(text.contains("Non-2xx or 3xx responses: 2000"), "{text}");

    let out = uringfetch(&[&["load", "--output", "json"][..], &args].concat(), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["non_2xx_3xx"], 2000);
    assert_eq!(a["success_rate"], 0.0);
    assert_eq!(a["status"]["404"], 2000);

    let ok = crate::load::load_json(&[
        "-n",
        "100",
        "-c",
        "2",
        "-t",
        "1",
        &format!("http://{}/bar", server.addr),
    ]);
    assert_eq!(ok["non_2xx_3xx"], 0);
    assert_eq!(ok["success_rate"], 1.0);
    server.shutdown();

    // Merged with a second client's report of the same test.
    let mut b = a.clone();
    b["host"] = Value::from("another-client");
    let dir = temp_dir("reports-404");
    let file = dir.join("both.json");
    std::fs::write(&file, format!("{a}\n{b}")).unwrap();
    let out = uringfetch(
        &["merge", "--output", "json", file.to_str().unwrap()],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["non_2xx_3xx"], 4000);
    assert_eq!(m["success_rate"], 0.0);
    assert_eq!(m["merged_from"][1]["non_2xx_3xx"], 2000);
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 19 item 16 (report side): the reports did not say how the
/// requests were sent. The text header and the JSON give the HTTP version,
/// keep-alive, pipelining, the number of headers and the body size; the
/// CSV gives each second's length, so its last partial second shows.
#[test]
fn reports_describe_the_run_they_measured() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let out = uringfetch(
        &[
            "load",
            "-n",
            "50",
            "-c",
            "2",
            "-t",
            "1",
            "--http1.0",
            "--disable-keepalive",
            "-H",
            "X-One: 1",
            "-H",
            "X-Two: 2",
            "-d",
            "0123456789",
            &url,
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // A body makes the default method POST, as in curl. Host, User-Agent,
    // Accept, X-One, X-Two, Content-Length.
    assert!(
        text.contains(
            "  Requests sent:  POST HTTP/1.0, 6 headers, 10 B body, keep-alive off, no pipelining\n"
        ),
        "{text}"
    );

    let v = crate::load::load_json(&[
        "-n",
        "64",
        "-c",
        "2",
        "-t",
        "1",
        "--pipeline",
        "8",
        "--backend",
        "uring-loop",
        &url,
    ]);
    assert_eq!(v["http"]["version"], "HTTP/1.1");
    assert_eq!(v["http"]["keep_alive"], true);
    assert_eq!(v["http"]["pipeline"], 8);
    assert_eq!(v["http"]["headers"], 3);
    assert_eq!(v["http"]["body_bytes"], 0);

    // An open-loop -z run is timed to its deadline: 1.5 s, so its second
    // second is half long.
    let out = uringfetch(
        &[
            "load", "-z", "1500ms", "-q", "40", "-c", "2", "-t", "1", "--output", "csv", &url,
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "second,responses,length_s", "{csv}");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("0,") && lines[1].ends_with(",1"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("1,") && lines[2].ends_with(",0.500"),
        "{csv}"
    );
    server.shutdown();
}

/// Issue 19 item 15: one convention for `--output`, as in curl and oha:
/// `-o FILE` is a file (the report's format from `--output-format` or the
/// extension), `--output-format` names the format, and `-o json` alone
/// still means the format (scripts use it). `get -o json`, which wrote the
/// body to a file named `json`, is refused with the way to say that.
#[test]
fn output_is_a_file_and_output_format_a_format() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let dir = temp_dir("output-convention");
    let file = dir.join("run.json");
    let out = uringfetch(
        &[
            "load",
            "-n",
            "5",
            "-c",
            "1",
            "-o",
            file.to_str().unwrap(),
            &url,
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "the report went to the file");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).expect("JSON by extension");
    assert_eq!(v["requests"]["completed"], 5);
    let out = uringfetch(
        &["load", "-n", "5", "-c", "1", "--output-format", "csv", &url],
        LIMIT,
    );
    assert!(stdout(&out).starts_with("second,"), "{}", stdout(&out));
    let out = uringfetch(
        &["load", "-n", "5", "-c", "1", "--output", "json", &url],
        LIMIT,
    );
    assert!(
        stdout(&out).trim_start().starts_with('{'),
        "{}",
        stdout(&out)
    );
    let out = uringfetch(&["get", "-o", "json", &url], LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("say -o ./json"), "{}", stderr(&out));
    assert!(!std::path::Path::new("json").exists());
    let out = uringfetch(&["doctor", "--output-format", "json"], LIMIT);
    assert!(
        stdout(&out).trim_start().starts_with('{'),
        "{}",
        stdout(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
    server.shutdown();
}
