//! Plots of a run and the progress bar.

use std::path::{Path, PathBuf};

use zo_optim::StepReport;
use zo_train::plot::{LinePlot, Series, plot_run};
use zo_train::progress::ProgressBar;
use zo_train::{
    Best, Event, Metrics, Observer, Split, StopReason, Summary, TestWeights, TrainError,
};

/// A fresh, empty folder under the system's temporary folder.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-train-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn step(step: u64, loss: f64) -> Event {
    Event::Step {
        report: StepReport {
            step,
            lr: 1e-3,
            loss,
            losses: vec![loss, loss],
            projected: vec![0.1],
            forwards: 2,
            kalman: None,
            chosen: None,
            loss_std: None,
        },
        train_forwards: 2 * (step + 1),
    }
}

fn evaluation(step: u64, split: Split, score: f64) -> Event {
    Event::Evaluation {
        step,
        split,
        metrics: Metrics {
            score,
            forwards: 10,
            ..Metrics::default()
        },
        best: false,
        eval_forwards: 10 * step,
    }
}

/// A synthetic run of `steps` steps, validated every 10 steps when `eval`.
fn run(steps: u64, eval: bool) -> Vec<Event> {
    let mut events = Vec::new();
    for s in 0..steps {
        events.push(step(
            s,
            1.0 / (1.0 + s as f64) + 0.05 * ((s * 7) % 5) as f64,
        ));
        if eval && (s + 1) % 10 == 0 {
            events.push(evaluation(s + 1, Split::Validation, 0.5 + s as f64 / 400.0));
        }
    }
    events
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether no font was found for PNG text: the PNG checks are then skipped, or, under
/// `BSZO_REQUIRE_MODELS` (CI installs a font), the test fails.
fn no_font(result: &zo_train::Result<Vec<PathBuf>>) -> bool {
    let missing = matches!(result, Err(TrainError::NoFont { .. }));
    !bszo_testkit::require(
        "PNG plots",
        !missing,
        "a TrueType font (fonts-dejavu-core, or a file named by BSZO_PLOT_FONT)",
    )
}

fn check_png(path: &Path, (w, h): (u32, u32)) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), w);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), h);
}

fn check_svg(path: &Path, needles: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.trim_start().starts_with("<svg"), "{}", path.display());
    assert!(svg.trim_end().ends_with("</svg>"));
    for needle in needles {
        assert!(svg.contains(needle), "{} lacks {needle:?}", path.display());
    }
}

#[test]
fn a_run_draws_loss_and_validation() {
    let dir = scratch("full");
    let result = plot_run(&run(60, true), &dir);
    let svgs = ["loss.svg", "validation.svg"];
    check_svg(
        &dir.join("loss.svg"),
        &["Training loss", "moving average", "step"],
    );
    check_svg(&dir.join("validation.svg"), &["validation score"]);
    if no_font(&result) {
        return;
    }
    let paths = result.unwrap();
    assert_eq!(
        names(&paths),
        ["loss.png", "loss.svg", "validation.png", "validation.svg"]
    );
    check_png(&dir.join("loss.png"), (800, 500));
    check_png(&dir.join("validation.png"), (800, 500));
    for svg in svgs {
        assert!(paths.contains(&dir.join(svg)));
    }
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_without_validation_draws_only_the_loss() {
    let dir = scratch("no-eval");
    let mut events = run(30, false);
    events.push(evaluation(30, Split::Test, 0.7));
    let result = plot_run(&events, &dir);
    assert!(dir.join("loss.svg").exists());
    assert!(!dir.join("validation.svg").exists());
    if !no_font(&result) {
        assert_eq!(names(&result.unwrap()), ["loss.png", "loss.svg"]);
        assert!(!dir.join("validation.png").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_finite_values_are_skipped() {
    let dir = scratch("nan");
    let mut events = run(20, true);
    events.insert(3, step(3, f64::NAN));
    events.push(step(20, f64::INFINITY));
    events.push(evaluation(20, Split::Validation, f64::NAN));
    let result = plot_run(&events, &dir);
    let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    if !no_font(&result) {
        result.unwrap();
    }
    // Only non-finite values: nothing to draw, no error.
    let nothing = scratch("nan-only");
    let events = [
        step(0, f64::NAN),
        evaluation(1, Split::Validation, f64::NAN),
    ];
    assert!(plot_run(&events, &nothing).unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&nothing).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&nothing).unwrap();
}

#[test]
fn a_line_plot_with_several_series() {
    let dir = scratch("lines");
    let curve = |a: f64| {
        (1..=20)
            .map(|i| (i as f64 * 100.0, a * (i as f64).ln()))
            .collect()
    };
    let mut plot = LinePlot::new("Accuracy", "forward passes", "validation accuracy")
        .with_series(Series::new("BSZO", curve(0.3)))
        .with_series(Series::new("MeZO", curve(0.2)))
        .with_series(Series::new("empty", Vec::new()));
    plot.size = (640, 360);
    plot.y_range = Some((0.0, 1.0));
    let result = plot.write(&dir.join("accuracy"));
    check_svg(
        &dir.join("accuracy.svg"),
        &["BSZO", "MeZO", "forward passes", "#1F77B4", "#FF7F0E"],
    );
    if !no_font(&result) {
        assert_eq!(names(&result.unwrap()), ["accuracy.png", "accuracy.svg"]);
        check_png(&dir.join("accuracy.png"), (640, 360));
    }
    plot.log_x = true;
    plot.write_svg(&dir.join("log.svg")).unwrap();
    check_svg(&dir.join("log.svg"), &["BSZO"]);
    // Sizes: tiny ones draw or fail, never panic; degenerate ones are errors.
    for size in [(16, 16), (40, 30), (3000, 60)] {
        plot.size = size;
        let _ = plot.write_svg(&dir.join("tiny.svg"));
        let _ = plot.write_png(&dir.join("tiny.png"));
    }
    plot.size = (0, 10);
    assert!(plot.write_svg(&dir.join("zero.svg")).is_err());
    assert!(plot.write_png(&dir.join("zero.png")).is_err());
    // An empty plot draws empty axes.
    let empty = LinePlot::new("Empty", "x", "y");
    assert!(empty.is_empty());
    empty.write_svg(&dir.join("empty.svg")).unwrap();
    // A missing folder is an error naming the file, not a panic.
    let missing = dir.join("missing").join("x.svg");
    plot.size = (640, 360);
    let err = plot.write_svg(&missing).unwrap_err();
    assert!(matches!(err, TrainError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_progress_bar_follows_a_run() {
    let summary = |reason, test: Option<Metrics>| Summary {
        reason,
        steps: 40,
        train_forwards: 80,
        eval_forwards: 40,
        best: Some(Best {
            step: 30,
            score: 0.6,
        }),
        test,
        test_weights: Some(TestWeights::Final),
    };
    let mut bar = ProgressBar::hidden(40, 0);
    assert!(bar.loss().is_none());
    let mut events = run(40, true);
    events.insert(5, step(5, f64::NAN));
    events.push(Event::EarlyStop {
        step: 40,
        best_step: 30,
        best_score: 0.6,
    });
    events.push(Event::Checkpoint {
        step: 40,
        path: PathBuf::from("ckpt.json"),
    });
    events.push(evaluation(40, Split::Test, 0.7));
    let test = Metrics {
        score: 0.7,
        ..Metrics::default()
    };
    events.push(Event::Finish {
        summary: summary(StopReason::EarlyStop, Some(test)),
    });
    for event in &events {
        bar.on_event(event).unwrap();
    }
    assert!(bar.bar().is_finished());
    assert_eq!(bar.bar().position(), 40);
    assert!(bar.loss().unwrap().is_finite());
    assert_eq!(bar.score(), Some(0.5 + 39.0 / 400.0));

    // A resumed run that is stopped; more steps than the budget do not panic.
    let mut bar = ProgressBar::hidden(10, 25).clear_on_finish();
    assert_eq!(bar.bar().position(), 10);
    for event in run(12, false) {
        bar.on_event(&event).unwrap();
    }
    bar.on_event(&Event::Stopped { step: 12 }).unwrap();
    assert!(bar.bar().is_finished());
    let mut bar = ProgressBar::hidden(0, 0);
    bar.on_event(&Event::Finish {
        summary: summary(StopReason::StopFlag, None),
    })
    .unwrap();
}

#[test]
fn the_start_is_on_the_validation_plot_and_evaluations_are_marked_on_the_loss() {
    let dir = scratch("start");
    let mut events = vec![evaluation(0, Split::Validation, 0.61)];
    events.extend(run(60, true));
    let result = plot_run(&events, &dir);
    check_svg(
        &dir.join("validation.svg"),
        &["validation score", "starting weights (step 0)"],
    );
    check_svg(&dir.join("loss.svg"), &["moving average", "validation"]);
    // One grey line per validation step after the start (6), and one in the legend.
    let loss = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
    assert_eq!(loss.matches("#AAAAAA").count(), 7, "{loss}");
    // Without a step-0 evaluation there is no level to draw.
    let plain = scratch("no-start");
    let _ = plot_run(&run(60, true), &plain);
    let svg = std::fs::read_to_string(plain.join("validation.svg")).unwrap();
    assert!(!svg.contains("starting weights"));
    if !no_font(&result) {
        result.unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&plain).unwrap();
}
