//! Unit tests of [`super::merge`]: reports made by the real [`Summary::new`]
//! from recorders, written as JSON and read back as `merge` reads them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Summary;
use super::merge::{self, Input};
use crate::backend::{BackendKind, ConnOptions};
use crate::plan::{Rate, Stop};
use crate::runner::{LoadConfig, LoadOutcome};
use crate::stats::{Recorder, histogram_from_base64, new_histogram, resources::Usage};
use crate::target::{RequestOptions, Target};
use crate::wallclock::{from_unix_ns, unix_ns};

const T0: u64 = 1_795_698_000_000_000_000;

/// A report of `latencies` (µs) on `url`, started at `T0 + start_ms`, lasting `ms`.
fn report(url: &str, latencies: &[u64], start_ms: u64, ms: u64) -> Summary {
    let start = Instant::now();
    let mut r = Recorder::new(start);
    for &us in latencies {
        r.issue();
        r.response(200, start, start + Duration::from_micros(us));
        r.bytes_read += 100;
    }
    r.issue();
    r.error(crate::error::ErrorKind::Reset, "reset by peer");
    r.connected(Duration::from_micros(40), false);
    let opts = RequestOptions::default();
    let config = LoadConfig {
        backend: BackendKind::UringAsync.into(),
        targets: Arc::new(vec![Target::new(url, &opts).unwrap()]),
        connections: 2,
        threads: 1,
        stop: Stop::Count(1000),
        rate: Rate::Closed,
        conn: Arc::new(ConnOptions {
            timeout: None,
            connect_timeout: None,
            keep_alive: true,
            bind: Vec::new(),
            pipeline: 1,
            tls: None,
            ktls: Err("no https".into()),
            ..ConnOptions::default()
        }),
    };
    let outcome = LoadOutcome {
        series: Default::default(),
        config,
        recorder: r,
        elapsed: Duration::from_millis(ms),
        wall_start: from_unix_ns(T0 + start_ms * 1_000_000),
        usage: Usage::default(),
        cancelled: false,
    };
    Summary::new(&outcome, "GET")
}

fn json(s: &Summary) -> String {
    serde_json::to_string_pretty(s).unwrap()
}

#[test]
fn reads_one_several_and_arrays_of_reports() {
    let a = report("http://127.0.0.1:1/a", &[100], 0, 1000);
    let one = merge::parse_documents("a.json", &json(&a)).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].source, "a.json");
    let two = format!("{}\n{}", json(&a), json(&a));
    let many = merge::parse_documents("b.json", &two).unwrap();
    assert_eq!(many[1].source, "b.json#2");
    let array = serde_json::to_string(&vec![&a, &a, &a]).unwrap();
    assert_eq!(merge::parse_documents("c", &array).unwrap().len(), 3);
    assert!(
        merge::parse_documents("e", "")
            .unwrap_err()
            .contains("no report")
    );
    let err = merge::parse_documents("f", "{\"x\": 1}").unwrap_err();
    assert!(err.contains("not a uringfetch load report"), "{err}");
    assert!(merge::parse_documents("g", "{").is_err());
}

#[test]
fn merging_adds_histograms_exactly_and_counts_over_the_union_of_windows() {
    let a: Vec<u64> = (1..=1000).map(|i| i * 10).collect();
    let b: Vec<u64> = (1..=300).map(|i| i * 997).collect();
    // a runs 0..1000 ms, b 500..2500 ms: the union is 2.5 s.
    let ra = report("http://127.0.0.1:1/x", &a, 0, 1000);
    let rb = report("http://127.0.0.1:1/x", &b, 500, 2000);
    let text = format!("{}{}", json(&ra), json(&rb));
    let inputs = merge::parse_documents("-", &text).unwrap();
    merge::check_same_test(&inputs).unwrap();
    let m = merge::merge(&inputs).unwrap();
    let s = &m.summary;
    assert_eq!(s.requests.completed, 1300);
    assert_eq!(s.requests.errors, 2);
    assert_eq!(s.requests.issued, 1302);
    assert_eq!(s.status["200"], 1300);
    assert_eq!(s.errors["reset"], 2);
    assert_eq!(s.bytes.read, 130_000);
    assert_eq!(s.connections, 4);
    assert_eq!(s.mode.count, Some(2000), "the clients planned 1000 each");
    assert!((s.duration_s - 2.5).abs() < 1e-9, "{}", s.duration_s);
    assert!((s.rps - 1300.0 / 2.5).abs() < 1e-6);
    let mut all = new_histogram();
    for v in a.iter().chain(&b) {
        all.record(*v).unwrap();
    }
    assert_eq!(m.latency, all);
    assert_eq!(histogram_from_base64(&s.latency_us.hdr).unwrap(), all);
    assert_eq!(s.latency_us.p99, all.value_at_quantile(0.99));
    assert_eq!(s.latency_us.max, all.max());
    assert_eq!(s.connect_us.count, 2);
    assert_eq!(s.started_at_unix_ns, Some(T0));
    assert_eq!(s.ended_at_unix_ns, Some(T0 + 2_500_000_000));
    let rows = s.merged_from.as_ref().unwrap();
    assert_eq!(rows[1].start_offset_s, Some(0.5));
    let text = merge::render_text(&m);
    assert!(text.contains("Per input (2 reports)"), "{text}");
    assert!(text.contains("started late"), "{text}");
}

#[test]
fn per_second_series_are_split_at_their_true_offsets() {
    let mut a = report("http://127.0.0.1:1/x", &[10], 0, 2000);
    let mut b = report("http://127.0.0.1:1/x", &[10], 688, 2000);
    b.host = "other".into();
    a.per_second = vec![90, 100];
    b.per_second = vec![90, 100];
    let text = format!("{}{}", json(&a), json(&b));
    let m = merge::merge(&merge::parse_documents("-", &text).unwrap()).unwrap();
    // b's seconds straddle two buckets each, 0.312 s then 0.688 s:
    // 90 -> 28 + 62, 100 -> 31 + 69.
    assert_eq!(m.summary.per_second, vec![90 + 28, 100 + 62 + 31, 69]);
    assert_eq!(m.summary.per_second.iter().sum::<u64>(), 380);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);

    // A client whose clock is two days off: no series, a warning, no
    // two-day allocation.
    let mut c = report("http://127.0.0.1:1/x", &[10], 2 * 86_400_000, 2000);
    c.host = "skewed".into();
    c.per_second = vec![5, 5];
    let text = format!("{}{}", json(&a), json(&c));
    let m = merge::merge(&merge::parse_documents("-", &text).unwrap()).unwrap();
    assert!(m.summary.per_second.is_empty());
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("no per-second series")),
        "{:?}",
        m.warnings
    );
}

#[test]
fn the_same_report_twice_is_refused() {
    let a = report("http://127.0.0.1:1/x", &[10, 20], 0, 1000);
    let b = report("http://127.0.0.1:1/x", &[10, 20], 0, 1000);
    let text = format!("{}{}", json(&a), json(&a));
    let inputs = merge::parse_documents("a.json", &text).unwrap();
    let e = merge::merge(&inputs).unwrap_err();
    assert!(e.contains("a.json#1 and a.json#2 are the same run"), "{e}");
    // Another client's run of the same window is not the same run.
    let mut b = b;
    b.host = "other-client".into();
    let text = format!("{}{}", json(&a), json(&b));
    let inputs = merge::parse_documents("-", &text).unwrap();
    assert_eq!(merge::merge(&inputs).unwrap().summary.requests.completed, 4);
}

/// A merged report given again beside one of its own inputs would count
/// that client twice: refused; beside another client's run, it merges.
#[test]
fn a_merged_report_with_one_of_its_inputs_is_refused() {
    let a = report("http://127.0.0.1:1/x", &[10, 20], 0, 1000);
    let mut b = report("http://127.0.0.1:1/x", &[10, 20], 0, 1000);
    b.host = "client-b".into();
    let mut c = b.clone();
    c.host = "client-c".into();
    let ab =
        merge::merge(&merge::parse_documents("ab", &format!("{}{}", json(&a), json(&b))).unwrap())
            .unwrap()
            .summary;
    let inputs = vec![
        Input {
            source: "ab.json".into(),
            summary: ab.clone(),
        },
        Input {
            source: "a.json".into(),
            summary: a,
        },
    ];
    let e = merge::merge(&inputs).unwrap_err();
    assert!(e.contains("ab.json and a.json both hold the run"), "{e}");
    let inputs = vec![
        Input {
            source: "ab.json".into(),
            summary: ab,
        },
        Input {
            source: "c.json".into(),
            summary: c,
        },
    ];
    assert_eq!(merge::merge(&inputs).unwrap().summary.requests.completed, 6);
}

#[test]
fn different_tests_are_refused_with_the_difference() {
    let a = report("http://127.0.0.1:1/a", &[100], 0, 10);
    let b = report("http://127.0.0.1:1/b", &[100], 0, 10);
    let inputs = vec![
        Input {
            source: "a.json".into(),
            summary: a.clone(),
        },
        Input {
            source: "b.json".into(),
            summary: b,
        },
    ];
    let err = merge::check_same_test(&inputs).unwrap_err();
    assert!(err.contains("a.json and b.json"), "{err}");
    assert!(
        err.contains("http://127.0.0.1:1/a vs http://127.0.0.1:1/b"),
        "{err}"
    );
    let mut c = a.clone();
    c.mode.rate = Some(100.0);
    c.run_id = Some("x".into());
    let mut d = a;
    d.run_id = Some("y".into());
    let err = merge::check_same_test(&[
        Input {
            source: "d".into(),
            summary: d,
        },
        Input {
            source: "c".into(),
            summary: c,
        },
    ])
    .unwrap_err();
    assert!(err.contains("open loop at 100 req/s"), "{err}");
    assert!(err.contains("run id y vs x"), "{err}");
}

#[test]
fn a_histogram_that_disagrees_with_its_count_is_an_error() {
    let mut a = report("http://127.0.0.1:1/a", &[100, 200], 0, 10);
    a.latency_us.count = 3;
    let err = merge::merge(&[Input {
        source: "a".into(),
        summary: a,
    }])
    .unwrap_err();
    assert!(err.contains("holds 2 values"), "{err}");
}

#[test]
fn union_of_windows() {
    assert_eq!(merge::union_ns(vec![]), 0);
    assert_eq!(merge::union_ns(vec![(0, 10), (5, 20), (30, 40)]), 30);
    assert_eq!(merge::union_ns(vec![(30, 40), (0, 10), (10, 12)]), 22);
    let now = SystemTime::now();
    assert_eq!(from_unix_ns(unix_ns(now)), now);
}

/// Reports of `hosts`, each a different client of one test.
fn clients(hosts: &[&str]) -> Vec<Input> {
    hosts
        .iter()
        .map(|h| {
            let mut s = report("http://127.0.0.1:1/x", &[100, 200], 0, 1000);
            s.host = (*h).to_string();
            Input {
                source: format!("{h}.json"),
                summary: s,
            }
        })
        .collect()
}

/// Why `merge` refused the inputs ("" if it merged them: a short failure
/// message instead of a whole merged report).
fn refusal(inputs: &[Input]) -> String {
    merge::merge(inputs).err().unwrap_or_default()
}

#[test]
fn counters_that_would_wrap_around_are_refused() {
    let mut inputs = clients(&["a", "b", "c"]);
    let m = merge::merge(&inputs).unwrap();
    assert_eq!(m.summary.requests.issued, 9);
    inputs[1].summary.requests.issued = u64::MAX - 5;
    let e = refusal(&inputs);
    assert!(
        e.contains(
            "requests.issued of the reports up to c.json add up to more than 18446744073709551615"
        ),
        "{e}"
    );

    let mut inputs = clients(&["a", "b"]);
    inputs[0].summary.status.insert("200".into(), u64::MAX);
    let e = refusal(&inputs);
    assert!(e.contains("status[200] of the reports up to b.json"), "{e}");

    let mut inputs = clients(&["a", "b"]);
    inputs[1].summary.bytes.read = u64::MAX;
    assert!(refusal(&inputs).contains("bytes.read"));

    let mut inputs = clients(&["a", "b"]);
    inputs[0].summary.mode.count = Some(u64::MAX);
    assert!(refusal(&inputs).contains("mode.count"));

    let mut inputs = clients(&["a", "b"]);
    inputs[0].summary.per_second = vec![u64::MAX];
    assert!(refusal(&inputs).contains("per_second"));

    // Histograms whose counts add up past 2^64 - 1: hdrhistogram would
    // saturate them; the merge refuses.
    let mut huge = new_histogram();
    huge.record_n(100, 1 << 62).unwrap();
    let mut inputs = clients(&["a", "b", "c", "d"]);
    for i in &mut inputs {
        i.summary.latency_us = super::Percentiles::of(&huge);
    }
    let e = refusal(&inputs);
    assert!(
        e.contains("latency_us.count of the reports up to d.json"),
        "{e}"
    );
}

#[test]
fn unequal_counts_are_shares_of_one_test_and_other_plans_still_differ() {
    let mut inputs = clients(&["a", "b", "c"]);
    for (i, n) in inputs.iter_mut().zip([333_334, 333_333, 333_333]) {
        i.summary.mode.count = Some(n);
    }
    merge::check_same_test(&inputs).unwrap();
    let m = merge::merge(&inputs).unwrap();
    assert_eq!(m.summary.mode.count, Some(1_000_000));
    assert_eq!(
        m.notes,
        ["the reports are unequal shares of one test, added up: \
          -n 333334 + 333333 + 333333 = 1000000 requests"]
    );
    let text = merge::render_text(&m);
    assert!(
        text.contains("  Plan:           -n 1000000, closed loop\n"),
        "{text}"
    );
    assert!(
        text.contains("  Note:           the reports are unequal shares"),
        "{text}"
    );
    // Equal shares need no note.
    assert!(
        merge::merge(&clients(&["a", "b"]))
            .unwrap()
            .notes
            .is_empty()
    );

    // A different rate, a duration, or a duration against a count: not one test.
    let refused = |change: &dyn Fn(&mut super::Mode)| {
        let mut inputs = clients(&["a", "b"]);
        change(&mut inputs[1].summary.mode);
        merge::check_same_test(&inputs).unwrap_err()
    };
    let e = refused(&|m| m.rate = Some(100.0));
    assert!(
        e.contains("plan -n 1000, closed loop vs -n 1000, open loop at 100 req/s"),
        "{e}"
    );
    let e = refused(&|m| {
        m.count = Some(500);
        m.rate = Some(100.0);
    });
    assert!(e.contains("vs -n 500, open loop at 100 req/s"), "{e}");
    let e = refused(&|m| {
        m.stop = "duration".into();
        m.count = None;
        m.duration_s = Some(10.0);
    });
    assert!(e.contains("vs -z 10s, closed loop"), "{e}");
    let mut inputs = clients(&["a", "b"]);
    for (i, d) in inputs.iter_mut().zip([10.0, 20.0]) {
        i.summary.mode = super::Mode {
            stop: "duration".into(),
            count: None,
            duration_s: Some(d),
            rate: None,
            coordinated_omission_corrected: false,
        };
    }
    let e = merge::check_same_test(&inputs).unwrap_err();
    assert!(
        e.contains("plan -z 10s, closed loop vs -z 20s, closed loop"),
        "{e}"
    );
}

#[test]
fn non_2xx_3xx_responses_are_counted_and_not_success() {
    let mut inputs = clients(&["a", "b"]);
    // a: 2 x 200 and an error (from report()); b: one 200 became a 404.
    let b = &mut inputs[1].summary;
    b.status = [("200".to_string(), 1), ("404".to_string(), 1)].into();
    b.non_2xx_3xx = 0; // as in a report older than the field
    let m = merge::merge(&inputs).unwrap();
    assert_eq!(m.summary.non_2xx_3xx, 1);
    assert_eq!(m.summary.requests.issued, 6);
    // Of 6 finished (5 responses, 1 error), 3 are 2xx/3xx.
    assert_eq!(m.summary.requests.in_flight, 0);
    assert!((m.summary.success_rate - 3.0 / 6.0).abs() < 1e-12);
    let rows = m.summary.merged_from.as_ref().unwrap();
    assert_eq!((rows[0].non_2xx_3xx, rows[1].non_2xx_3xx), (0, 1));
    let text = merge::render_text(&m);
    assert!(text.contains("Non-2xx or 3xx responses: 1\n"), "{text}");
    assert!(text.contains("non-2xx/3xx responses"), "{text}");
}

#[test]
fn the_request_shape_is_kept_when_the_inputs_agree() {
    let inputs = clients(&["a", "b"]);
    let shape = inputs[0].summary.http.clone();
    assert!(shape.is_some());
    let m = merge::merge(&inputs).unwrap();
    assert_eq!(m.summary.http, shape);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);

    let mut inputs = clients(&["a", "b"]);
    if let Some(h) = inputs[1].summary.http.as_mut() {
        h.pipeline = 16;
    }
    let m = merge::merge(&inputs).unwrap();
    assert_eq!(m.summary.http, None);
    assert!(
        m.warnings.iter().any(|w| w.contains("different shapes")),
        "{:?}",
        m.warnings
    );
    // A report older than the field: unknown, no warning.
    let mut inputs = clients(&["a", "b"]);
    inputs[1].summary.http = None;
    let m = merge::merge(&inputs).unwrap();
    assert_eq!((m.summary.http.is_none(), m.warnings.len()), (true, 0));
}

#[test]
fn tls_handshakes_add_up_exactly_and_a_plaintext_report_has_none() {
    let tls = |start_ms, times: &[u64], resumed: usize| {
        let mut s = report("https://127.0.0.1:1/x", &[100, 200], start_ms, 1000);
        let mut r = Recorder::new(Instant::now());
        for (i, &us) in times.iter().enumerate() {
            r.handshake(Duration::from_micros(us), i < resumed);
        }
        s.tls = Some(super::TlsStats {
            handshakes: r.handshakes,
            resumed: r.resumed,
            handshake_us: super::Percentiles::of(&r.handshake),
            kernel: 0,
            userspace_because: None,
        });
        s
    };
    let plain = report("http://127.0.0.1:1/x", &[100], 0, 1000);
    assert!(plain.tls.is_none(), "a plaintext run has no tls object");
    let a = tls(0, &[300, 400, 5000], 2);
    let b = tls(500, &[700, 9000], 0);
    let text = format!("{}{}", json(&a), json(&b));
    let inputs = merge::parse_documents("-", &text).unwrap();
    let m = merge::merge(&inputs).unwrap();
    let t = m.summary.tls.as_ref().expect("merged tls");
    assert_eq!((t.handshakes, t.resumed), (5, 2));
    let mut all = new_histogram();
    for v in [300, 400, 5000, 700, 9000] {
        all.record(v).unwrap();
    }
    assert_eq!(histogram_from_base64(&t.handshake_us.hdr).unwrap(), all);
    assert_eq!(t.handshake_us.max, all.max());
    // The handshake line is in the merged text report too.
    let text = super::text::render(&m.summary, &m.latency);
    assert!(
        text.contains("TLS handshakes: 5 (3 full, 2 resumed)"),
        "{text}"
    );
}

#[test]
fn http2_counts_add_up_and_the_protocol_is_kept_or_mixed() {
    let h2 = |start_ms, streams, resets: &[(&str, u64)]| {
        let mut s = report("http://127.0.0.1:1/x", &[100], start_ms, 1000);
        s.protocol = Some("h2".into());
        s.h2 = Some(super::H2Stats {
            connections: 2,
            streams_per_connection: streams,
            peak_streams: streams,
            goaways: 1,
            stream_resets: resets.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        });
        s
    };
    let a = h2(0, 10, &[("CANCEL", 2)]);
    let b = h2(500, 100, &[("CANCEL", 1), ("INTERNAL_ERROR", 4)]);
    let plain = report("http://127.0.0.1:1/x", &[100], 700, 1000);
    assert_eq!(plain.protocol.as_deref(), Some("h1"));
    assert!(plain.h2.is_none());
    let inputs = merge::parse_documents("-", &format!("{}{}", json(&a), json(&b))).unwrap();
    let m = merge::merge(&inputs).unwrap();
    let h = m.summary.h2.as_ref().expect("merged h2");
    assert_eq!(
        (h.connections, h.goaways, h.streams_per_connection),
        (4, 2, 100)
    );
    assert_eq!(h.stream_resets["CANCEL"], 3);
    assert_eq!(h.stream_resets["INTERNAL_ERROR"], 4);
    assert_eq!(m.summary.protocol.as_deref(), Some("h2"));
    let text = super::text::render(&m.summary, &m.latency);
    assert!(
        text.contains("h2 over 4 connections, 100 streams each; 2 GOAWAY, 7 streams reset (CANCEL 3, INTERNAL_ERROR 4)"),
        "{text}"
    );
    let with_h1 = format!("{}{}", json(&a), json(&plain));
    let m = merge::merge(&merge::parse_documents("-", &with_h1).unwrap()).unwrap();
    assert_eq!(m.summary.protocol.as_deref(), Some("h1+h2"));
    assert_eq!(m.summary.h2.as_ref().map(|h| h.connections), Some(2));
    let table = super::compare::render("x", &[a, plain]);
    assert!(
        table.contains("proto") && table.contains("goaway"),
        "{table}"
    );
}
