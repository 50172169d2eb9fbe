//! `--plot FILE.svg`: noise budget and error per layer, one series per parameter set, with
//! its layout in the legend and each sanitized answer's budget marked.

use crate::*;
use plotters::prelude::*;
use std::path::Path;

/// Why the plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {reason}")]
pub struct PlotError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A set's points: (layer, budget) of encrypted layers, (layer, budget) of sanitized answers,
/// (layer, max error) of every layer that has one.
type Series = (Vec<(f64, f64)>, Vec<(f64, f64)>, Vec<(f64, f64)>);

fn series(set: &SetReport) -> Series {
    let mut budget = Vec::new();
    let mut sanitized = Vec::new();
    let mut error = Vec::new();
    for l in &set.layers {
        let x = l.index as f64;
        if let Some(e) = &l.encrypted {
            budget.push((x, e.noise_budget as f64));
            if e.sanitization.is_some() {
                sanitized.push((x, e.noise_budget as f64));
            }
        }
        if l.max_error.is_finite() {
            error.push((x, l.max_error.max(1e-9)));
        }
    }
    (budget, sanitized, error)
}

/// Draws the report's sets into an SVG file: the noise budget left after each encrypted
/// layer (crosses: sanitized answers, as the client receives them) above, the largest error
/// against the float model after every layer (the plaintext tail too, log scale) below.
pub fn plot_svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    let err = |reason: String| PlotError {
        path: path.display().to_string(),
        reason,
    };
    let data: Vec<(String, Series)> = report
        .sets
        .iter()
        .map(|s| (format!("{} [{}]", s.name, s.parameters.layout), series(s)))
        .collect();
    let layers = data
        .iter()
        .flat_map(|(_, (b, _, e))| b.iter().chain(e).map(|p| p.0))
        .fold(1.0f64, f64::max);
    let top = data
        .iter()
        .flat_map(|(_, (b, _, _))| b.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let (emin, emax) = data
        .iter()
        .flat_map(|(_, (_, _, e))| e.iter().map(|p| p.1))
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let (emin, emax) = if emax > 0.0 {
        (emin / 2.0, emax * 2.0)
    } else {
        (1e-6, 1.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (upper, lower) = root.split_vertically(380);
        let mut budget = ChartBuilder::on(&upper)
            .caption(
                format!("{}: noise budget left per layer", report.model),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..layers + 0.5, 0.0..top)
            .map_err(|e| err(e.to_string()))?;
        budget
            .configure_mesh()
            .x_desc("layer")
            .y_desc("bits")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (k, (name, (b, san, _))) in data.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            budget
                .draw_series(LineSeries::new(b.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 16, y + 4)], color.filled())
                });
            budget
                .draw_series(san.iter().map(|&p| Cross::new(p, 7, color.stroke_width(2))))
                .map_err(|e| err(e.to_string()))?;
        }
        budget
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let mut error = ChartBuilder::on(&lower)
            .caption(
                "largest |error| against the float model per layer, the plaintext tail included",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..layers + 0.5, (emin..emax).log_scale())
            .map_err(|e| err(e.to_string()))?;
        error
            .configure_mesh()
            .x_desc("layer")
            .y_desc("max |error|")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (k, (_, (_, _, e))) in data.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            error
                .draw_series(LineSeries::new(e.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::write(path, svg).map_err(|e| err(e.to_string()))
}
