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
