//! What the live view shows, as a pure function of a [`ViewState`]: the
//! run's setup, its progress, requests/s per second, latency percentiles of
//! the last second and of the whole run, a latency histogram, and the
//! responses by status and errors by kind. No terminal here, so the tests
//! draw it on ratatui's test backend at any size and read the cells.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};

use crate::backend::LiveTotals;
use crate::report::text::fmt_us;

/// How far along the run is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// A duration run: how long it lasts.
    Time(Duration),
    /// A count run: how many requests it makes.
    Count(u64),
}

/// Latency percentiles of some responses, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pcts {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Pcts {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything one frame shows.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    /// The run's setup, one line.
    pub header: String,
    pub elapsed: Duration,
    pub progress: Option<Progress>,
    pub totals: LiveTotals,
    /// Responses in each whole second so far (the current one excluded).
    pub rps: Vec<u64>,
    /// Errors in each of those seconds.
    pub errors: Vec<u64>,
    /// The last whole second's latencies, and the whole run's.
    pub last: Pcts,
    pub whole: Pcts,
    /// Latency histogram of the whole run: (upper bound µs, responses).
    pub buckets: Vec<(u64, u64)>,
    pub status: BTreeMap<u16, u64>,
    pub error_kinds: Vec<(String, u64)>,
    /// The run is stopping (q pressed, or its end).
    pub stopping: bool,
}

/// Rows of the latency histogram (the bottom panels' height, less borders).
pub const HISTOGRAM_ROWS: usize = 6;

/// The smallest terminal the view draws in; a smaller one gets a line
/// saying so (the run goes on, and `q` still stops it).
pub const MIN_SIZE: (u16, u16) = (60, 16);

/// Buckets of a 1-2-5 series (µs) covering a histogram's values, with the
/// responses in each: at most `max` of them.
pub fn buckets(h: &Histogram<u64>, max: usize) -> Vec<(u64, u64)> {
    if h.is_empty() || max == 0 {
        return Vec::new();
    }
    let (lo, hi) = (h.min().max(1), h.max().max(1));
    let mut bounds = Vec::new();
    let mut decade = 1u64;
    'outer: loop {
        for m in [1u64, 2, 5] {
            let b = decade.saturating_mul(m);
            if b >= lo {
                bounds.push(b);
            }
            if b >= hi || b == u64::MAX {
                break 'outer;
            }
        }
        decade = decade.saturating_mul(10);
    }
    // Too many rows: merge neighbours, keeping the top bound of each pair.
    while bounds.len() > max {
        bounds = bounds.chunks(2).map(|c| c[c.len() - 1]).collect::<Vec<_>>();
    }
    let mut counts = vec![0u64; bounds.len()];
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to());
        let i = bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(bounds.len() - 1);
        counts[i] += v.count_at_value();
    }
    bounds.into_iter().zip(counts).collect()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let t = d.as_secs();
        format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    }
}

/// The progress line: elapsed, remaining, done, and the live counters.
fn progress_line(s: &ViewState) -> Line<'static> {
    let done = s.totals.completed + s.totals.errors;
    let remaining = match s.progress {
        Some(Progress::Time(d)) => secs(d.saturating_sub(s.elapsed)),
        Some(Progress::Count(n)) => format!("{} requests", thousands(n.saturating_sub(done))),
        None => "-".into(),
    };
    let label = |t: &'static str| Span::styled(t, Style::new().fg(Color::DarkGray));
    let value = |v: String| Span::styled(v, Style::new().add_modifier(Modifier::BOLD));
    let errors = Span::styled(
        thousands(s.totals.errors),
        if s.totals.errors > 0 {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        },
    );
    // Most important first: a narrow terminal cuts the end.
    Line::from(vec![
        label("elapsed "),
        value(secs(s.elapsed)),
        label("  left "),
        value(remaining),
        label("  done "),
        value(thousands(done)),
        label("  errors "),
        errors,
        label("  open "),
        value(thousands(s.totals.open())),
        label("  in flight "),
        value(thousands(s.totals.in_flight())),
    ])
}

fn rps_chart<'a>(s: &ViewState, points: &'a [(f64, f64)], errs: &'a [(f64, f64)]) -> Chart<'a> {
    let n = s.rps.len().max(1) as f64;
    let top = s.rps.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let last = s.rps.last().copied().unwrap_or(0);
    let mut sets = vec![
        Dataset::default()
            .name("req/s")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(points),
    ];
    if !errs.is_empty() {
        sets.push(
            Dataset::default()
                .name("errors/s")
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(Style::new().fg(Color::Red))
                .data(errs),
        );
    }
    Chart::new(sets)
        .block(Block::bordered().title(format!(
            " requests/s per second (last {}) ",
            thousands(last)
        )))
        .x_axis(
            Axis::default()
                .bounds([0.0, n])
                .labels(["0 s".to_string(), format!("{} s", s.rps.len())]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(["0".to_string(), thousands(top as u64)]),
        )
        .legend_position(None)
}

fn latency_table(s: &ViewState) -> Paragraph<'static> {
    let head = Style::new().fg(Color::DarkGray);
    let mut lines = vec![Line::from(Span::styled(
        format!("{:<6}{:>10}{:>11}", "", "last 1 s", "whole run"),
        head,
    ))];
    type Row = (&'static str, fn(&Pcts) -> u64);
    let rows: [Row; 5] = [
        ("p50", |p| p.p50),
        ("p90", |p| p.p90),
        ("p99", |p| p.p99),
        ("p99.9", |p| p.p999),
        ("max", |p| p.max),
    ];
    let cell = |p: &Pcts, f: fn(&Pcts) -> u64| {
        if p.count == 0 {
            "-".to_string()
        } else {
            fmt_us(f(p))
        }
    };
    for (name, f) in rows {
        lines.push(Line::from(format!(
            "{name:<6}{:>10}{:>11}",
            cell(&s.last, f),
            cell(&s.whole, f)
        )));
    }
    Paragraph::new(lines).block(Block::bordered().title(" latency "))
}

/// A bucket's upper bound, a 1-2-5 value: `500µs`, `2ms`, `10s`.
fn bound(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 if us.is_multiple_of(1_000) => format!("{}ms", us / 1_000),
        1_000_000.. if us.is_multiple_of(1_000_000) => format!("{}s", us / 1_000_000),
        _ => fmt_us(us),
    }
}

fn histogram(s: &ViewState, width: u16) -> Paragraph<'static> {
    let most = s.buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    // "≤ 500ms " and " 12,345" around the bar.
    let bar_width = width.saturating_sub(2 + 8 + 10) as u64;
    let lines: Vec<Line> = s
        .buckets
        .iter()
        .map(|&(upper, n)| {
            let len = (n * bar_width).div_ceil(most) as usize;
            Line::from(vec![
                Span::raw(format!("≤{:>6} ", bound(upper))),
                Span::styled("█".repeat(len), Style::new().fg(Color::Green)),
                Span::raw(format!(" {}", thousands(n))),
            ])
        })
        .collect();
    Paragraph::new(lines).block(Block::bordered().title(" latency histogram (whole run) "))
}

fn outcomes(s: &ViewState) -> Paragraph<'static> {
    let mut lines: Vec<Line> = s
        .status
        .iter()
        .map(|(code, n)| {
            let style = match code {
                200..=399 => Style::new().fg(Color::Green),
                _ => Style::new().fg(Color::Yellow),
            };
            Line::from(vec![
                Span::styled(format!("{code}"), style),
                Span::raw(format!(" {}", thousands(*n))),
            ])
        })
        .collect();
    for (kind, n) in &s.error_kinds {
        lines.push(Line::from(vec![
            Span::styled(kind.clone(), Style::new().fg(Color::Red)),
            Span::raw(format!(" {}", thousands(*n))),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            "none yet",
            Style::new().fg(Color::DarkGray),
        )));
    }
    Paragraph::new(lines).block(Block::bordered().title(" status / errors "))
}

/// Draws one frame.
pub fn draw(frame: &mut Frame<'_>, s: &ViewState) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let text = format!(
            "uringfetch: terminal {}x{} is too small for the live view (needs {}x{}); \
             the run goes on, q stops it",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        frame.render_widget(
            Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [head, progress, chart, bottom, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(HISTOGRAM_ROWS as u16 + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(
            s.header.clone(),
            Style::new().add_modifier(Modifier::BOLD),
        ))),
        head,
    );
    frame.render_widget(Paragraph::new(progress_line(s)), progress);
    let points: Vec<(f64, f64)> = s
        .rps
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as f64 + 0.5, n as f64))
        .collect();
    let errs: Vec<(f64, f64)> = s
        .errors
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| (i as f64 + 0.5, n as f64))
        .collect();
    frame.render_widget(rps_chart(s, &points, &errs), chart);
    let [lat, hist, out] = Layout::horizontal([
        Constraint::Length(29),
        Constraint::Fill(2),
        Constraint::Fill(1),
    ])
    .areas(bottom);
    frame.render_widget(latency_table(s), lat);
    frame.render_widget(histogram(s, hist.width), hist);
    frame.render_widget(outcomes(s), out);
    let footer = if s.stopping {
        "stopping: the report follows"
    } else {
        "q or Ctrl-C: stop the run and print the report"
    };
    frame.render_widget(
        Paragraph::new(Span::styled(footer, Style::new().fg(Color::DarkGray))),
        foot,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// What a `w`×`h` terminal shows for `s`, one string per row.
    fn screen(w: u16, h: u16, s: &ViewState) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, s)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    fn state() -> ViewState {
        let mut h = crate::stats::new_histogram();
        for v in 1..=1000u64 {
            h.record(100 + v).unwrap();
        }
        h.record(250_000).unwrap();
        let mut last = crate::stats::new_histogram();
        last.record(900).unwrap();
        ViewState {
            header: "uringfetch load http://127.0.0.1:8080/ · uring-loop · 64 conn on 2 threads"
                .into(),
            elapsed: Duration::from_millis(12_300),
            progress: Some(Progress::Time(Duration::from_secs(30))),
            totals: LiveTotals {
                issued: 1_234_631,
                completed: 1_234_560,
                errors: 7,
                connected: 66,
                closed: 2,
            },
            rps: vec![100_000, 101_000, 0, 0, 99_500, 100_200],
            errors: vec![0, 0, 7, 0, 0, 0],
            last: Pcts::of(&last),
            whole: Pcts::of(&h),
            buckets: buckets(&h, HISTOGRAM_ROWS),
            status: BTreeMap::from([(200, 1_234_000), (503, 560)]),
            error_kinds: vec![("timeout".into(), 7)],
            stopping: false,
        }
    }

    fn find(rows: &[String], text: &str) -> usize {
        rows.iter()
            .position(|r| r.contains(text))
            .unwrap_or_else(|| panic!("{text:?} not on screen:\n{}", rows.join("\n")))
    }

    #[test]
    fn an_80x24_terminal_shows_every_panel() {
        let rows = screen(80, 24, &state());
        assert_eq!(rows.len(), 24);
        assert!(rows[0].starts_with("uringfetch load http://127.0.0.1:8080/ · uring-loop"));
        assert_eq!(
            rows[1].trim_end(),
            "elapsed 12.3 s  left 17.7 s  done 1,234,567  errors 7  open 64  in flight 64"
        );
        assert!(
            rows[2].contains("requests/s per second (last 100,200)"),
            "{}",
            rows[2]
        );
        // The x axis runs to the seconds so far.
        assert!(rows.iter().any(|r| r.contains("6 s")));
        let head = find(&rows, "last 1 s  whole run");
        assert!(
            rows[head + 1].contains("p50        900µs      601µs"),
            "{}",
            rows[head + 1]
        );
        assert!(
            rows[head + 5].contains("max        900µs   250.11ms"),
            "{}",
            rows[head + 5]
        );
        let h = find(&rows, "latency histogram (whole run)");
        assert_eq!(h, head - 1);
        // 101..=1100 µs and one 250 ms: 1-2-5 bounds, paired to fit 6 rows.
        assert!(
            rows[h + 1].contains("≤ 500µs ██████████ 400 "),
            "{}",
            rows[h + 1]
        );
        assert!(
            rows[h + 2].contains("≤   2ms ██████████████ 600 "),
            "{}",
            rows[h + 2]
        );
        assert!(rows[h + 3].contains("≤  10ms  0 "), "{}", rows[h + 3]);
        assert!(rows[h + 6].contains("≤ 500ms █ 1 "), "{}", rows[h + 6]);
        assert!(rows[h + 1].contains("200 1,234,000"), "{}", rows[h + 1]);
        assert!(rows[h + 2].contains("503 560"), "{}", rows[h + 2]);
        assert!(rows[h + 3].contains("timeout 7"), "{}", rows[h + 3]);
        assert_eq!(
            rows[23].trim_end(),
            "q or Ctrl-C: stop the run and print the report"
        );
    }

    #[test]
    fn a_200x50_terminal_gives_the_chart_the_room() {
        let s = state();
        let rows = screen(200, 50, &s);
        let small = screen(80, 24, &s);
        // The panels keep their place below and the chart grows.
        assert_eq!(find(&rows, "latency histogram (whole run)"), 50 - 9);
        assert_eq!(find(&small, "latency histogram (whole run)"), 24 - 9);
        let plotted = |rows: &[String]| {
            rows.iter()
                .map(|r| {
                    r.chars()
                        .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
                        .count()
                })
                .sum::<usize>()
        };
        assert!(
            plotted(&rows) > plotted(&small),
            "more braille dots on the larger screen"
        );
        assert!(rows[1].ends_with(' '), "the progress line fits");
        // The stall (seconds 2 and 3 at 0) reaches the bottom of the chart:
        // the chart's last plotted row holds dots.
        let bottom = find(&rows, "└") - 1;
        let dots_low = (bottom - 3..=bottom).any(|y| {
            rows[y]
                .chars()
                .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
        });
        assert!(dots_low, "the stall shows at 0:\n{}", rows.join("\n"));
    }

    #[test]
    fn a_small_terminal_gets_a_message_not_a_panic() {
        for (w, h) in [(40, 10), (59, 30), (100, 15), (1, 1), (0, 0)] {
            let rows = screen(w, h, &state());
            if w >= 20 && h >= 3 {
                assert!(
                    rows.join("").contains("too small for the live view"),
                    "{w}x{h}"
                );
            }
        }
        let rows = screen(MIN_SIZE.0, MIN_SIZE.1, &state());
        assert!(!rows.join("").contains("too small"));
    }

    #[test]
    fn a_count_run_shows_requests_left_and_an_empty_run_draws() {
        let mut s = ViewState {
            header: "h".into(),
            progress: Some(Progress::Count(1_000)),
            ..Default::default()
        };
        s.totals.completed = 250;
        let rows = screen(80, 24, &s);
        assert!(rows[1].contains("left 750 requests"), "{}", rows[1]);
        assert!(rows.iter().any(|r| r.contains("none yet")));
        let dashes = format!("{:<6}{:>10}{:>11}", "p99", "-", "-");
        assert!(
            rows.iter().any(|r| r.contains(&dashes)),
            "{}",
            rows.join("\n")
        );
        s.stopping = true;
        assert!(screen(80, 24, &s)[23].starts_with("stopping"));
    }

    #[test]
    fn histogram_buckets_cover_the_values_in_few_rows() {
        let mut h = crate::stats::new_histogram();
        for v in [3u64, 40, 40, 700, 9_000, 2_000_000] {
            h.record(v).unwrap();
        }
        let b = buckets(&h, 6);
        assert!(b.len() <= 6, "{b:?}");
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 6);
        assert!(b.last().unwrap().0 >= 2_000_000);
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(buckets(&crate::stats::new_histogram(), 6).is_empty());
    }
}
