//! The plots of a run: its training loss and validation score.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{LinePlot, Series, VerticalMarks, with_ext};
use crate::error::{Result, TrainError};
use crate::model::Split;
use crate::observer::Event;
use crate::rundir::{LOSS_PLOT, VALIDATION_PLOT};

/// Draw `loss.{svg,png}` (the training loss per step and its moving average, with a grey vertical
/// line at every validation step) and `validation.{svg,png}` (the validation score per step from
/// step 0, the starting weights, with their score drawn across as the level to beat) from a run's
/// events into `dir` (created if absent). A figure without data is skipped; non-finite values are skipped; a step logged twice
/// (e.g. around a resume) keeps its last value. Every SVG is written before the first PNG, so a
/// missing font still leaves the SVGs. The paths written.
pub fn plot_run(events: &[Event], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut losses = BTreeMap::new();
    let mut scores = BTreeMap::new();
    for event in events {
        match event {
            Event::Step { report, .. } => {
                losses.insert(report.step, report.loss);
            }
            Event::Evaluation {
                step,
                split: Split::Validation,
                metrics,
                ..
            } => {
                scores.insert(*step, metrics.score);
            }
            _ => {}
        }
    }
    let finite = |m: BTreeMap<u64, f64>| -> Vec<(f64, f64)> {
        m.into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(s, v)| (s as f64, v))
            .collect()
    };
    let (losses, scores) = (finite(losses), finite(scores));
    let mut plots = Vec::new();
    if !losses.is_empty() {
        let smooth = ema(&losses);
        let evaluated = scores.iter().map(|p| p.0).filter(|&x| x > 0.0).collect();
        let plot = LinePlot::new("Training loss", "step", "loss")
            .with_series(Series::new("loss", losses))
            .with_series(Series::new("moving average", smooth))
            .with_marks(VerticalMarks {
                name: "validation".into(),
                at: evaluated,
            });
        plots.push((dir.join(LOSS_PLOT), plot));
    }
    if !scores.is_empty() {
        let mut plot = LinePlot::new("Validation", "step", "score")
            .with_series(Series::new("validation score", scores.clone()));
        // The starting weights' score as a level to beat.
        if let (Some(&(first, start)), Some(&(last, _))) = (scores.first(), scores.last())
            && first == 0.0
            && last > 0.0
        {
            plot = plot.with_series(Series::new(
                "starting weights (step 0)",
                vec![(0.0, start), (last, start)],
            ));
        }
        plots.push((dir.join(VALIDATION_PLOT), plot));
    }
    if plots.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (stem, plot) in &plots {
        let path = with_ext(stem, "svg");
        plot.write_svg(&path)?;
        written.push(path);
    }
    for (stem, plot) in &plots {
        let path = with_ext(stem, "png");
        plot.write_png(&path)?;
        written.push(path);
    }
    Ok(written)
}

/// A bias-corrected exponential moving average of the y values, its span about 2 % of the points
/// (between 5 and 500).
fn ema(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let span = (points.len() as f64 / 50.0).clamp(5.0, 500.0);
    let beta = 1.0 - 2.0 / (span + 1.0);
    let (mut avg, mut weight) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            avg = beta * avg + (1.0 - beta) * y;
            weight = beta * weight + (1.0 - beta);
            (x, avg / weight)
        })
        .collect()
}
