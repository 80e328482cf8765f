//! An SVG chart of a `compare` run: req/s and CPU µs per request against the
//! number of connections, one line per backend, one pair of panels per
//! scenario. For people who would rather look than read.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::Summary;

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// One metric per backend, as (connections, value) points sorted by connections.
fn series(rows: &[Summary], metric: impl Fn(&Summary) -> f64) -> Series {
    let mut out: Series = BTreeMap::new();
    for r in rows {
        out.entry(r.backend.clone())
            .or_default()
            .push((r.connections as f64, metric(r)));
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    data: &Series,
) -> Result<(), String> {
    let xs = data.values().flatten().map(|p| p.0);
    let x_min = xs.clone().fold(f64::INFINITY, f64::min).max(1.0);
    let x_max = xs.fold(0.0, f64::max).max(x_min * 2.0);
    let y_max = data
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("connections (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if y_max > 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .y_desc(y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (backend, pts)) in data.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(backend.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes the chart: per scenario, req/s on the left and CPU µs/request on the right.
pub fn write_svg(path: &Path, groups: &[(String, Vec<Summary>)]) -> Result<(), String> {
    let groups: Vec<_> = groups.iter().filter(|(_, rows)| !rows.is_empty()).collect();
    if groups.is_empty() {
        return Err("no successful run to draw".into());
    }
    let height = 420 * groups.len() as u32;
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let rows_areas = root.split_evenly((groups.len(), 2));
    for (g, (label, rows)) in groups.iter().enumerate() {
        let rps = series(rows, |r| r.rps);
        let cpu = series(rows, |r| r.resources.cpu_us_per_request);
        panel(
            &rows_areas[g * 2],
            &format!("{label}: req/s"),
            "requests/s",
            &rps,
        )?;
        panel(
            &rows_areas[g * 2 + 1],
            &format!("{label}: CPU"),
            "CPU µs/request",
            &cpu,
        )?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Light bands behind the per-second panels: seconds with errors (red) and
/// seconds of the run with no response at all (grey): a stall.
const ERROR_BAND: RGBColor = RGBColor(0xf6, 0xc4, 0xc4);
const STALL_BAND: RGBColor = RGBColor(0xd9, 0xd9, 0xd9);

/// The per-second series `summary` carries, checked: what `chart` draws.
fn run_series(summary: &Summary) -> Result<&super::PerSecond, String> {
    let s = summary.series.as_ref().ok_or(
        "the report has no per-second series (`series`): it was written by a uringfetch \
         older than charts, or by a merge of such reports; run the test again with this one",
    )?;
    s.check()?;
    if s.is_empty() {
        return Err("the report's per-second series is empty: the run lasted no time".into());
    }
    Ok(s)
}

/// The bands of seconds with errors or with no response, as (second, colour).
fn bands(s: &super::PerSecond) -> Vec<(usize, RGBColor)> {
    (0..s.len())
        .filter_map(|i| {
            if s.errors[i] > 0 {
                Some((i, ERROR_BAND))
            } else if s.responses[i] == 0 {
                Some((i, STALL_BAND))
            } else {
                None
            }
        })
        .collect()
}

/// The latency percentile distribution of HdrHistogram's plotter: latency
/// against percentile on a log scale of 1/(1-q), so 90%, 99%, 99.9% ...
/// are evenly spaced. Points as (1/(1-q), ms).
fn distribution(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    const CAP: f64 = 1e6;
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 - 1.0 / CAP {
                CAP
            } else {
                1.0 / (1.0 - q)
            };
            (
                x,
                h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
            )
        })
        .collect();
    pts.dedup_by(|a, b| a.0 <= b.0);
    pts
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes the charts of one run (a `load` report, or a merge of several)
/// from its own report: requests/s per second, p50 and p99 per second (log
/// scale), with seconds that had errors banded red and seconds with no
/// response banded grey; and the latency percentile distribution.
pub fn write_run_svg(path: &Path, summary: &Summary) -> Result<(), String> {
    let s = run_series(summary)?;
    let whole = crate::stats::histogram_from_base64(&summary.latency_us.hdr)
        .map_err(|e| format!("the report's latency histogram: {e}"))?;
    let root = SVGBackend::new(path, (1200, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "{} · {} · {} conn · {:.0} req/s · p99 {}",
        summary.urls.first().map(String::as_str).unwrap_or("?"),
        summary.backend,
        summary.connections,
        summary.rps,
        super::text::fmt_us(summary.latency_us.p99)
    );
    let root = root.titled(&title, ("sans-serif", 20)).map_err(err)?;
    let areas = root.split_evenly((3, 1));
    let n = s.len() as f64;
    let bands = bands(s);

    // Requests/s and errors/s.
    let top = s
        .responses
        .iter()
        .chain(&s.errors)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let mut c = ChartBuilder::on(&areas[0])
        .caption(
            "requests/s per second (errors/s in red; red band: errors, grey: no response)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("seconds since the start")
        .y_desc("per second")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    c.draw_series(bands.iter().map(|&(i, color)| {
        Rectangle::new([(i as f64, 0.0), (i as f64 + 1.0, top)], color.filled())
    }))
    .map_err(err)?;
    let mid = |i: usize| i as f64 + 0.5;
    c.draw_series(LineSeries::new(
        s.responses
            .iter()
            .enumerate()
            .map(|(i, &v)| (mid(i), v as f64)),
        PALETTE[0].stroke_width(2),
    ))
    .map_err(err)?
    .label("responses/s")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[0].stroke_width(2)));
    c.draw_series(
        s.errors
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(i, &v)| Cross::new((mid(i), v as f64), 5, PALETTE[1].stroke_width(2))),
    )
    .map_err(err)?
    .label("errors/s")
    .legend(|(x, y)| Cross::new((x + 9, y), 5, PALETTE[1].stroke_width(2)));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    // p50 and p99 per second, ms on a log scale; no line through a second
    // with no response.
    let ms = |us: u64| us as f64 / 1000.0;
    let lat_max = s
        .p99_us
        .iter()
        .chain(&s.max_us)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let lat_min = s
        .p50_us
        .iter()
        .copied()
        .filter(|&v| v > 0)
        .min()
        .unwrap_or(1)
        .max(1);
    let (y0, y1) = (ms(lat_min) / 2.0, ms(lat_max) * 2.0);
    let mut c = ChartBuilder::on(&areas[1])
        .caption(
            "latency per second: p50 and p99 (ms, log scale)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n, (y0..y1).log_scale())
        .map_err(err)?;
    // Few guides: the light lines of a log axis would read as a band.
    c.configure_mesh()
        .x_desc("seconds since the start")
        .y_desc("ms")
        .y_labels(6)
        .max_light_lines(1)
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(err)?;
    c.draw_series(
        bands.iter().map(|&(i, color)| {
            Rectangle::new([(i as f64, y0), (i as f64 + 1.0, y1)], color.filled())
        }),
    )
    .map_err(err)?;
    for (name, values, color) in [
        ("p50", &s.p50_us, PALETTE[2]),
        ("p99", &s.p99_us, PALETTE[3]),
    ] {
        // One line per run of seconds that had responses.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, &v) in values.iter().enumerate() {
            if s.responses[i] == 0 {
                runs.push(Vec::new());
            } else if let Some(r) = runs.last_mut() {
                r.push((mid(i), ms(v).max(y0)));
            }
        }
        for r in runs.iter().filter(|r| !r.is_empty()) {
            c.draw_series(LineSeries::new(r.iter().copied(), color.stroke_width(2)))
                .map_err(err)?;
            c.draw_series(r.iter().map(|&p| Circle::new(p, 2, color.filled())))
                .map_err(err)?;
        }
        c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    // The percentile distribution of the whole run.
    let pts = distribution(&whole);
    let x1 = pts.last().map_or(10.0, |p| p.0).max(10.0) * 1.5;
    let y1 = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut c = ChartBuilder::on(&areas[2])
        .caption(
            "latency by percentile, whole run (HdrHistogram's percentile distribution)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d((1.0..x1).log_scale(), 0.0..y1)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(
        pts.iter().copied(),
        PALETTE[0].stroke_width(2),
    ))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// `90%`, `99.9%` for 1/(1-q) = 10, 1000.
fn percentile_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".into();
    }
    let q = (1.0 - 1.0 / x) * 100.0;
    let digits = (x.log10().round() as usize).saturating_sub(2);
    format!("{q:.digits$}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_labelled_as_hdrhistogram_does() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn the_distribution_climbs_to_the_maximum() {
        let mut h = crate::stats::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        let pts = distribution(&h);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let last = pts.last().unwrap();
        assert!((last.1 - 100.0).abs() < 0.2, "{last:?}");
        assert!(
            pts.iter()
                .any(|p| (p.0 - 100.0).abs() < 20.0 && (p.1 - 99.0).abs() < 1.0)
        );
    }
}
