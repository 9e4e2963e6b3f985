//! Plots of replayed traces as SVG: one panel per series, with its floor points, a fitted slope
//! line and shading where a leak was suspected.
//!
//! This module only draws what it is given ([`Panel`]): `analyze` decides what a panel holds and
//! in which units. It reads no trace and runs no analysis. SVG only: text in SVG is left to the
//! viewer's fonts, where a PNG would need fonts compiled in.

use std::path::Path;

use plotters::prelude::*;

/// One panel: a series over time, in the units the caller chose for both axes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// The raw series, split where samples are missing so no line bridges a gap.
    pub segments: Vec<Vec<(f64, f64)>>,
    /// Floor points: post-GC values, or the lows after each drop.
    pub floors: Vec<(f64, f64)>,
    pub floor_label: String,
    pub fit: Option<Fit>,
    /// Spans (x from, x to) during which a leak was suspected.
    pub suspected: Vec<(f64, f64)>,
}

/// A fitted slope line.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub from: (f64, f64),
    pub to: (f64, f64),
    /// Legend text.
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("nothing to plot: the trace holds no values")]
    Empty,
}

const PANEL_WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 340;

/// Writes the panels, stacked, as one SVG file.
pub fn write_svg(path: &Path, panels: &[Panel]) -> Result<(), PlotError> {
    let svg = render_svg(panels)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write { path: path.display().to_string(), source })
}

/// Draws the panels, stacked, into an SVG document.
pub fn render_svg(panels: &[Panel]) -> Result<String, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::Empty);
    }
    let mut svg = String::new();
    {
        let size = (PANEL_WIDTH, PANEL_HEIGHT * panels.len() as u32);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, panel: &Panel) -> Result<(), PlotError> {
    let xs = panel.segments.iter().flatten().chain(&panel.floors).map(|p| p.0);
    let (x0, x1) = padded_range(xs, 0.0, 0.0);
    let fit = panel.fit.iter().flat_map(|f| [f.from, f.to]);
    let ys = panel.segments.iter().flatten().chain(&panel.floors).copied().chain(fit).map(|p| p.1);
    // Headroom above the data for the legend.
    let (y0, y1) = padded_range(ys, 0.05, 0.45);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_error)?;

    let shade = RED.mix(0.15).filled();
    if !panel.suspected.is_empty() {
        chart
            .draw_series(panel.suspected.iter().map(|(a, b)| Rectangle::new([(*a, y0), (*b, y1)], shade)))
            .map_err(draw_error)?
            .label("leak suspected")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade));
    }
    let raw = BLUE.mix(0.6).stroke_width(1);
    for (i, segment) in panel.segments.iter().enumerate() {
        let drawn = chart.draw_series(LineSeries::new(segment.iter().copied(), raw)).map_err(draw_error)?;
        if i == 0 {
            drawn.label("value").legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], raw));
        }
    }
    if !panel.floors.is_empty() {
        let floor = RGBColor(0, 140, 60).filled();
        chart
            .draw_series(panel.floors.iter().map(|p| Circle::new(*p, 3, floor)))
            .map_err(draw_error)?
            .label(panel.floor_label.as_str())
            .legend(move |(x, y)| Circle::new((x + 9, y), 3, floor));
    }
    if let Some(fit) = &panel.fit {
        let line = RED.stroke_width(2);
        chart
            .draw_series(LineSeries::new([fit.from, fit.to], line))
            .map_err(draw_error)?
            .label(fit.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// The range of `values`, widened by `below` and `above` of its length, and never empty.
fn padded_range(values: impl Iterator<Item = f64>, below: f64, above: f64) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        return (lo - 1.0, hi + 1.0 + 2.0 * above);
    }
    (lo - (hi - lo) * below, hi + (hi - lo) * above)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> Panel {
        Panel {
            title: "heap_used of app".into(),
            x_label: "minutes".into(),
            y_label: "MiB".into(),
            segments: vec![(0..20).map(|i| (i as f64, 100.0 + i as f64)).collect(), vec![(25.0, 130.0), (26.0, 131.0)]],
            floors: vec![(5.0, 101.0), (10.0, 106.0)],
            floor_label: "post-GC heap".into(),
            fit: Some(Fit { from: (0.0, 100.0), to: (26.0, 126.0), label: "slope 1 MiB/min".into() }),
            suspected: vec![(10.0, 26.0)],
        }
    }

    #[test]
    fn draws_every_element_of_a_panel() {
        let svg = render_svg(&[panel(), Panel { title: "rss".into(), ..panel() }]).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("heap_used of app") && svg.contains("rss"));
        assert!(svg.contains("leak suspected") && svg.contains("post-GC heap") && svg.contains("slope 1 MiB/min"));
        // Two panels, each with two raw segments and a fit line.
        assert!(svg.matches("<polyline").count() >= 6, "{svg}");
        assert!(svg.matches("<circle").count() >= 4);
    }

    #[test]
    fn a_flat_or_empty_series_still_has_a_range() {
        assert_eq!(padded_range([5.0, 5.0].into_iter(), 0.05, 0.0), (4.0, 6.0));
        assert_eq!(padded_range(std::iter::empty(), 0.05, 0.0), (0.0, 1.0));
        assert_eq!(padded_range([0.0, 10.0].into_iter(), 0.1, 0.5), (-1.0, 15.0));
        let flat = Panel { segments: vec![vec![(0.0, 3.0), (1.0, 3.0)]], fit: None, floors: vec![], ..panel() };
        assert!(render_svg(&[flat]).is_ok());
        assert!(matches!(render_svg(&[]), Err(PlotError::Empty)));
    }
}
