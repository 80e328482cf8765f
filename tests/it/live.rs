//! The live view in a real terminal (tmux: the screen read back with
//! `capture-pane`, `q` sent as a key), and the charts of a run: SVG that
//! parses, series as long as the run, a stall that shows, `chart` from the
//! JSON alone, `merge --chart`, and clear errors on reports it cannot draw.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

pub const INSTALL_TMUX: &str = "apt-get install -y tmux";
const LIMIT: Duration = Duration::from_secs(60);

/// A tmux server of this test's own (its own socket), killed when dropped.
struct Tmux(String);

impl Tmux {
    fn new(tag: &str) -> Self {
        Self(format!("uringfetch-{tag}-{}", std::process::id()))
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux does not run ({e}): install it with `{INSTALL_TMUX}`"))
    }

    fn screen(&self) -> String {
        stdout(&self.run(&["capture-pane", "-p", "-t", "view"]))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// Parses an SVG with Python's XML parser: it is well-formed.
fn assert_well_formed(svg: &Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); \
             assert d.documentElement.tagName == 'svg'",
        ])
        .arg(svg)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 does not run ({e}): install it with `{INSTALL_PYTHON}`")
        });
    assert!(out.status.success(), "{}: {}", svg.display(), stderr(&out));
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// Every vector of `series` has one entry per second of the run.
fn assert_series_fits(v: &Value) -> usize {
    let s = &v["series"];
    let secs = u64s(&s["responses"]).len();
    for k in ["errors", "p50_us", "p90_us", "p99_us", "max_us", "hdr"] {
        assert_eq!(s[k].as_array().unwrap().len(), secs, "series.{k}: {s}");
    }
    let duration = v["duration_s"].as_f64().unwrap();
    assert_eq!(
        secs,
        (duration - 0.01).ceil() as usize,
        "seconds of {duration} s"
    );
    secs
}

#[test]
fn the_live_view_shows_the_run_in_a_terminal_and_q_ends_it_with_its_report() {
    let server = demo_server(Duration::ZERO);
    let dir = temp_dir("live-view");
    let report = dir.join("run.json");
    let tmux = Tmux::new("view");
    // Bounded: 2000 requests/s for at most 20 s; `q` should end it in ~2 s.
    let cmd = format!(
        "{} load -q 2000 -z 20s -c 4 -t 1 http://{}/bar -o {}; echo $? > {}; sleep 20",
        env!("CARGO_BIN_EXE_uringfetch"),
        server.addr,
        report.display(),
        dir.join("exit").display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &cmd,
    ]);
    assert!(started.status.success(), "tmux: {}", stderr(&started));
    let screen = wait_for(
        "the live view with a response counted",
        Duration::from_secs(10),
        || {
            let s = tmux.screen();
            (s.contains("requests/s per second") && s.contains("200 ") && s.contains("last 1 s"))
                .then_some(s)
        },
    );
    let header = format!(
        "uringfetch load http://{}/bar · uring-loop · 4 conn on 1 thread · 20s · open loop 2000",
        server.addr
    );
    assert!(screen.starts_with(&header), "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[1].starts_with("elapsed "), "{screen}");
    assert!(lines[1].contains("  open 4  "), "{screen}");
    assert!(screen.contains("latency histogram (whole run)"), "{screen}");
    assert!(screen.contains("q or Ctrl-C: stop the run"), "{screen}");
    let sent = Instant::now();
    tmux.run(&["send-keys", "-t", "view", "q"]);
    let code = wait_for("the run to end after q", Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("exit"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(code.trim(), "0");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "q ended it at once"
    );
    let v = json(&report);
    assert_eq!(v["cancelled"], true, "{v}");
    assert!(v["duration_s"].as_f64().unwrap() < 15.0);
    assert!(v["requests"]["completed"].as_u64().unwrap() > 0);
    assert_series_fits(&v);
    // The terminal is given back: the view's screen is gone.
    let after = tmux.screen();
    assert!(!after.contains("requests/s per second"), "{after}");
}

#[test]
fn a_run_draws_its_chart_and_the_json_alone_draws_it_again() {
    let server = demo_server(Duration::ZERO);
    let dir = temp_dir("chart");
    let url = format!("http://{}/bar", server.addr);
    let mut reports = Vec::new();
    for name in ["a", "b"] {
        let (json_path, svg) = (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.svg")),
        );
        let out = uringfetch(
            &[
                "load",
                "-q",
                "2000",
                "-z",
                "2500ms",
                "-c",
                "4",
                "-t",
                "1",
                &url,
                "-o",
                json_path.to_str().unwrap(),
                "--chart",
                svg.to_str().unwrap(),
            ],
            LIMIT,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_well_formed(&svg);
        let v = json(&json_path);
        assert_eq!(
            assert_series_fits(&v),
            3,
            "2.5 s is three seconds, the last partial"
        );
        // The same seconds as `per_second`.
        assert_eq!(u64s(&v["series"]["responses"]), u64s(&v["per_second"]));
        let again = dir.join(format!("{name}-again.svg"));
        let out = uringfetch(
            &[
                "chart",
                json_path.to_str().unwrap(),
                "-o",
                again.to_str().unwrap(),
            ],
            LIMIT,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(std::fs::read(&svg).unwrap(), std::fs::read(&again).unwrap());
        reports.push((json_path, v));
    }
    // merge --chart: the series add up second by second.
    let merged_svg = dir.join("merged.svg");
    let out = uringfetch(
        &[
            "merge",
            "-o",
            "json",
            "--chart",
            merged_svg.to_str().unwrap(),
            reports[0].0.to_str().unwrap(),
            reports[1].0.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_well_formed(&merged_svg);
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total: u64 = u64s(&m["series"]["responses"]).iter().sum();
    let each: u64 = reports
        .iter()
        .map(|(_, v)| v["requests"]["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(total, each);
}

#[test]
fn a_stall_in_the_middle_of_a_run_shows_in_its_series_and_chart() {
    // Every response due from 1.5 s to 3.5 s after the server's start is
    // held until 3.5 s: the run's second 2 gets none.
    let server = stalling_server(Duration::from_millis(1500), Duration::from_secs(2));
    let dir = temp_dir("stall");
    let (json_path, svg) = (dir.join("run.json"), dir.join("run.svg"));
    let out = uringfetch(
        &[
            "load",
            "-q",
            "400",
            "-z",
            "5s",
            "-c",
            "20",
            "-t",
            "1",
            &server.url("/"),
            "-o",
            json_path.to_str().unwrap(),
            "--chart",
            svg.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&json_path);
    assert_eq!(assert_series_fits(&v), 5);
    let responses = u64s(&v["series"]["responses"]);
    let p99 = u64s(&v["series"]["p99_us"]);
    assert!(responses[0] > 300, "{responses:?}");
    assert_eq!(
        responses[2], 0,
        "nothing answered in the stall: {responses:?}"
    );
    assert!(responses[4] > 300, "{responses:?}");
    assert!(p99[0] < 100_000, "{p99:?}");
    // The second the stall ends: requests due since 1.5 s, answered at 3.5 s.
    assert!(p99[3] >= 1_000_000, "{p99:?}");
    // The chart bands the stalled second grey in both per-second panels.
    assert_well_formed(&svg);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.matches("fill=\"#D9D9D9\"").count() >= 2,
        "no stall band"
    );
}

#[test]
fn chart_says_what_it_cannot_draw() {
    let dir = temp_dir("chart-bad");
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let out = uringfetch(
        &[
            "load", "-n", "200", "-c", "2", "-t", "1", &url, "-o", "json",
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let svg = dir.join("x.svg");
    let chart = |report: &str, tag: &str| {
        let path = dir.join(format!("{tag}.json"));
        std::fs::write(&path, report).unwrap();
        uringfetch(
            &["chart", path.to_str().unwrap(), "-o", svg.to_str().unwrap()],
            LIMIT,
        )
    };
    let ok = chart(&v.to_string(), "ok");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let two = chart(&format!("{v}\n{v}"), "two");
    assert!(stderr(&two).contains("holds 2 reports"), "{}", stderr(&two));
    v["series"]["errors"] = serde_json::json!([]);
    let short = chart(&v.to_string(), "short");
    assert!(
        stderr(&short).contains("series.errors has 0 entries"),
        "{}",
        stderr(&short)
    );
    v.as_object_mut().unwrap().remove("series");
    let old = chart(&v.to_string(), "old");
    assert!(
        stderr(&old).contains("no per-second series"),
        "{}",
        stderr(&old)
    );
    let junk = chart("not json", "junk");
    for out in [&two, &short, &old, &junk] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    }
}
