//! Micro-benchmarks of the hot paths every backend shares: response
//! parsing, request encoding, and latency recording and merging.
//!
//! A slower parser or recorder shows up here, in seconds and without a
//! server, before it shows up as fewer requests per second in `bench/run`.
//!
//! ```sh
//! cargo bench --bench micro              # ~1 minute
//! cargo bench --bench micro -- --quick   # a few seconds, rougher numbers
//! cargo bench --bench micro -- parse     # only the parser group
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use uringfetch::testing::{
    Progress, Recorder, RequestSpec, ResponseParser, Version, encode_request, new_histogram,
};

/// What nginx answers for the 4-byte static `/bar` that `bench/run` loads.
const SMALL: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Thu, 26 Nov 2026 12:26:57 GMT\r\n\
Content-Type: text/plain\r\n\
Content-Length: 4\r\n\
Last-Modified: Thu, 26 Nov 2026 12:26:56 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"6b082590-4\"\r\n\
Accept-Ranges: bytes\r\n\
\r\n\
bar\n";

/// Pipelining depth of the `pipeline-16` scenario.
const DEPTH: usize = 16;

/// A chunked response: 8 chunks of 64 bytes, then the last chunk and a trailer.
fn chunked_response() -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\n\
Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for i in 0..8u8 {
        out.extend_from_slice(b"40\r\n");
        out.extend(std::iter::repeat_n(b'a' + i, 64));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: done\r\n\r\n");
    out
}

/// Feeds one whole response and returns its wire length; panics on a parser
/// that does not finish, since a benchmark of a broken parser means nothing.
fn parse_one(parser: &mut ResponseParser, bytes: &[u8]) -> usize {
    parser.reset(false);
    match parser.feed(bytes) {
        Ok(Progress::Done(resp)) => resp.consumed,
        other => panic!("response did not parse in one feed: {other:?}"),
    }
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let mut parser = ResponseParser::new(false);

    g.throughput(Throughput::Bytes(SMALL.len() as u64));
    g.bench_function("small", |b| {
        b.iter(|| parse_one(&mut parser, black_box(SMALL)))
    });

    // The head split across two reads, the slow path of the parser.
    let (first, second) = SMALL.split_at(40);
    g.bench_function("small_split", |b| {
        b.iter(|| {
            parser.reset(false);
            assert!(matches!(
                parser.feed(black_box(first)),
                Ok(Progress::NeedMore)
            ));
            match parser.feed(black_box(second)) {
                Ok(Progress::Done(resp)) => resp.consumed,
                other => panic!("split response did not finish: {other:?}"),
            }
        })
    });

    let chunked = chunked_response();
    g.throughput(Throughput::Bytes(chunked.len() as u64));
    g.bench_function("chunked", |b| {
        b.iter(|| parse_one(&mut parser, black_box(&chunked)))
    });

    // 16 responses in one buffer, as one read returns them when pipelining.
    let pipelined = SMALL.repeat(DEPTH);
    g.throughput(Throughput::Elements(DEPTH as u64));
    g.bench_function("pipelined_16", |b| {
        b.iter(|| {
            let buf = black_box(pipelined.as_slice());
            let mut pos = 0;
            let mut done = 0;
            parser.reset(false);
            while pos < buf.len() {
                match parser.feed(&buf[pos..]) {
                    Ok(Progress::Done(resp)) => {
                        pos += resp.consumed;
                        done += 1;
                        parser.reset(false);
                    }
                    other => panic!("pipelined response {done} did not finish: {other:?}"),
                }
            }
            assert_eq!(done, DEPTH);
            done
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.bench_function("get", |b| {
        b.iter(|| {
            encode_request(black_box(&RequestSpec {
                method: "GET",
                host: "127.0.0.1:8080",
                path: "/bar",
                headers: &[],
                body: None,
                version: Version::Http11,
                keep_alive: true,
            }))
        })
    });
    let headers = vec![
        ("X-Token".to_string(), "abc".to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    let body = br#"{"hello":"world","n":42}"#;
    g.bench_function("post_headers_body", |b| {
        b.iter(|| {
            encode_request(black_box(&RequestSpec {
                method: "POST",
                host: "127.0.0.1:8080",
                path: "/api/items?page=2",
                headers: &headers,
                body: Some(body),
                version: Version::Http11,
                keep_alive: false,
            }))
        })
    });
    g.finish();
}

/// 100,000 latencies in µs spread like a load test's: mostly 100 µs to 5 ms,
/// a tail to seconds. A fixed xorshift, so every run records the same values.
fn latencies() -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..100_000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = 100 + x % 5_000;
            if i % 1000 == 0 { base * 500 } else { base }
        })
        .collect()
}

fn histogram(c: &mut Criterion) {
    let values = latencies();
    let mut g = c.benchmark_group("histogram");

    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("record_1e5", |b| {
        b.iter_batched_ref(
            new_histogram,
            |h| {
                for &v in black_box(&values) {
                    h.saturating_record(v);
                }
            },
            BatchSize::LargeInput,
        )
    });

    // What a worker does per response: the recorder's hot path.
    let start = Instant::now();
    let stamps: Vec<(Instant, Instant)> = values
        .iter()
        .map(|&v| (start, start + Duration::from_micros(v)))
        .collect();
    g.bench_function("recorder_response_1e5", |b| {
        b.iter_batched_ref(
            || Recorder::new(start),
            |r| {
                for &(sent, done) in black_box(&stamps) {
                    r.response(200, sent, done);
                }
            },
            BatchSize::LargeInput,
        )
    });

    g.finish();

    // Merging per-worker histograms of 1e5 values each at the end of a run.
    let mut g = c.benchmark_group("merge");
    let mut full = new_histogram();
    for &v in &values {
        full.saturating_record(v);
    }
    g.bench_function("histogram", |b| {
        b.iter_batched_ref(
            new_histogram,
            |h| h.add(black_box(&full)).expect("same bounds"),
            BatchSize::LargeInput,
        )
    });

    let mut worker = Recorder::new(start);
    for &(sent, done) in &stamps {
        worker.response(200, sent, done);
    }
    g.bench_function("recorder", |b| {
        b.iter_batched_ref(
            || Recorder::new(start),
            |r| r.merge(black_box(&worker)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = parse, encode, histogram
}
criterion_main!(benches);
