//! SVG plots of reports, drawn with plotters' SVG backend: delivery
//! probability over time, the latency CDF, buffer occupancy over time, and a
//! comparison of routers (mean delivery probability over seeds).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Report;

/// A plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {plot}: {what}")]
pub struct PlotError {
    pub plot: &'static str,
    pub what: String,
}

const SIZE: (u32, u32) = (800, 500);

fn err<E: std::fmt::Display>(plot: &'static str) -> impl Fn(E) -> PlotError {
    move |e| PlotError { plot, what: e.to_string() }
}

/// Draws `points` as one or more named lines; x and y ranges from the data.
fn lines(
    plot: &'static str,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    y_max: Option<f64>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let e = err(plot);
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let all = series.iter().flat_map(|(_, p)| p.iter());
        let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
        let y_top = y_max.unwrap_or_else(|| all.map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.05);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_top)
            .map_err(&e)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(&e)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(&e)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        if series.len() > 1 {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(&e)?;
        }
        root.present().map_err(&e)?;
    }
    Ok(svg)
}

fn label(r: &Report) -> String {
    match r.copies {
        Some(l) => format!("{} L={l} (seed {})", short(&r.router), r.seed),
        None => format!("{} (seed {})", short(&r.router), r.seed),
    }
}

/// Router names short enough for an axis.
fn short(name: &str) -> String {
    name.replace("binary-spray-and-wait", "binary S&W").replace("spray-and-wait", "S&W")
}

/// Delivery probability over simulated time, one line per report.
pub fn delivery_over_time(reports: &[&Report]) -> Result<String, PlotError> {
    let series: Vec<_> =
        reports.iter().map(|r| (label(r), r.series.iter().map(|s| (s.time, s.delivery_prob)).collect())).collect();
    lines(
        "delivery over time",
        "Delivery probability over time",
        ("time (s)", "delivered / created"),
        &series,
        Some(1.0),
    )
}

/// Cumulative distribution of latency (delivered messages only).
pub fn latency_cdf(reports: &[&Report]) -> Result<String, PlotError> {
    let series: Vec<_> = reports
        .iter()
        .map(|r| {
            let n = r.latencies.len().max(1) as f64;
            let points = r.latencies.iter().enumerate().map(|(i, l)| (*l, (i + 1) as f64 / n)).collect();
            (label(r), points)
        })
        .collect();
    lines(
        "latency CDF",
        "Latency CDF (delivered messages)",
        ("latency (s)", "fraction delivered within"),
        &series,
        Some(1.0),
    )
}

/// Mean buffer occupancy (fraction of the buffer, or bytes without a buffer size).
pub fn buffer_occupancy(reports: &[&Report]) -> Result<String, PlotError> {
    let fraction = reports.iter().all(|r| r.series.iter().all(|s| s.buffer_occupancy.is_some()));
    let series: Vec<_> = reports
        .iter()
        .map(|r| {
            let points = r
                .series
                .iter()
                .map(|s| (s.time, if fraction { s.buffer_occupancy.unwrap_or(0.0) } else { s.buffer_bytes_mean }))
                .collect();
            (label(r), points)
        })
        .collect();
    let y = if fraction { "mean occupancy (0–1)" } else { "mean bytes held per node" };
    lines("buffer occupancy", "Buffer occupancy over time", ("time (s)", y), &series, fraction.then_some(1.0))
}

/// One bar per router: mean delivery probability, with the mean latency (s)
/// and overhead ratio written above it. Every row gets one slot.
pub fn comparison(rows: &[(String, f64, Option<f64>, Option<f64>)]) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let e = err("router comparison");
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        // A segmented 0..k axis has k + 1 slots.
        let n = rows.len().saturating_sub(1).max(1) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption("Routers compared: delivery probability (latency avg | overhead)", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0u32..n).into_segmented(), 0.0..1.1)
            .map_err(&e)?;
        let names: Vec<String> = rows.iter().map(|r| short(&r.0)).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("delivered / created (mean over seeds)")
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(&e)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), r.1)],
                    BLUE.mix(0.6).filled(),
                );
                bar.set_margin(0, 0, 20, 20);
                bar
            }))
            .map_err(&e)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let lat = r.2.map_or("–".into(), |l| format!("{l:.0} s"));
                let ovh = r.3.map_or("–".into(), |o| format!("{o:.1}"));
                Text::new(
                    format!("{:.3} | {lat} | {ovh}", r.1),
                    (SegmentValue::CenterOf(i as u32), (r.1 + 0.04).min(1.08)),
                    ("sans-serif", 11).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(svg)
}
