//! A terminal progress bar as an observer.

use std::fmt::Write as _;
use std::time::Instant;

use indicatif::{ProgressDrawTarget, ProgressStyle};
use zo_optim::ObjectiveError;

use crate::model::Split;
use crate::observer::{Event, Observer};

const TEMPLATE: &str =
    "{elapsed_precise} [{wide_bar:.cyan/blue}] {pos}/{len} steps  {msg}  ETA {eta_precise}";

/// The weight of a new training loss in the displayed moving average.
const LOSS_WEIGHT: f64 = 0.1;

/// An [`Observer`] that draws a progress bar (on standard error, through `indicatif`): steps done
/// of the budget, the smoothed training loss, the last validation score, training forwards per
/// second and the time left. It finishes on [`Event::Finish`] and [`Event::Stopped`].
#[derive(Debug)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    loss: Option<f64>,
    /// Debiasing weight of `loss` (the moving average starts from nothing).
    loss_weight: f64,
    score: Option<f64>,
    /// When and at how many training forwards the first step of this process was seen.
    first: Option<(Instant, u64)>,
    rate: Option<f64>,
    clear: bool,
}

impl ProgressBar {
    /// A bar for a budget of `max_steps` steps, `start_step` of them already done (a resumed run),
    /// drawn on standard error (hidden when that is not a terminal).
    pub fn new(max_steps: u64, start_step: u64) -> Self {
        Self::with_target(max_steps, start_step, ProgressDrawTarget::stderr())
    }

    /// A bar that draws nothing (tests, logs that are not terminals).
    pub fn hidden(max_steps: u64, start_step: u64) -> Self {
        Self::with_target(max_steps, start_step, ProgressDrawTarget::hidden())
    }

    /// A bar drawn on `target`.
    pub fn with_target(max_steps: u64, start_step: u64, target: ProgressDrawTarget) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(Some(max_steps), target);
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_position(start_step.min(max_steps));
        // Let the rate estimate start from `start_step`, not from 0.
        bar.tick();
        bar.reset_eta();
        Self {
            bar,
            loss: None,
            loss_weight: 0.0,
            score: None,
            first: None,
            rate: None,
            clear: false,
        }
    }

    /// Clear the bar at the end of the run instead of leaving its last line.
    pub fn clear_on_finish(mut self) -> Self {
        self.clear = true;
        self
    }

    /// The underlying `indicatif` bar.
    pub fn bar(&self) -> &indicatif::ProgressBar {
        &self.bar
    }

    /// The smoothed training loss shown.
    pub fn loss(&self) -> Option<f64> {
        self.loss.map(|l| l / self.loss_weight)
    }

    /// The last validation score shown.
    pub fn score(&self) -> Option<f64> {
        self.score
    }

    fn message(&self) -> String {
        let mut msg = String::new();
        if let Some(loss) = self.loss() {
            let _ = write!(msg, "loss {loss:.4}");
        }
        if let Some(score) = self.score {
            let _ = write!(msg, "  val {score:.4}");
        }
        if let Some(rate) = self.rate {
            let _ = write!(msg, "  {rate:.1} fwd/s");
        }
        msg.trim_start().to_string()
    }

    fn end(&self, message: String) {
        if self.clear {
            self.bar.finish_and_clear();
        } else {
            self.bar.finish_with_message(message);
        }
    }
}

impl Observer for ProgressBar {
    fn on_event(&mut self, event: &Event) -> Result<(), ObjectiveError> {
        match event {
            Event::Step {
                report,
                train_forwards,
            } => {
                if report.loss.is_finite() {
                    let avg = self.loss.unwrap_or(0.0);
                    self.loss = Some((1.0 - LOSS_WEIGHT) * avg + LOSS_WEIGHT * report.loss);
                    self.loss_weight = (1.0 - LOSS_WEIGHT) * self.loss_weight + LOSS_WEIGHT;
                }
                let now = Instant::now();
                match self.first {
                    None => self.first = Some((now, *train_forwards)),
                    Some((t0, f0)) => {
                        let secs = now.duration_since(t0).as_secs_f64();
                        if secs > 0.0 {
                            self.rate = Some(train_forwards.saturating_sub(f0) as f64 / secs);
                        }
                    }
                }
                self.bar.set_message(self.message());
                self.bar.set_position(report.step + 1);
            }
            Event::Evaluation {
                split: Split::Validation,
                metrics,
                ..
            } => {
                self.score = Some(metrics.score);
                self.bar.set_message(self.message());
            }
            Event::EarlyStop { .. } => {
                self.bar
                    .set_message(format!("{}  early stop", self.message()));
            }
            Event::Stopped { step } => {
                self.bar.set_position(*step);
                self.end(format!("{}  stopped (resumable)", self.message()));
            }
            Event::Finish { summary } => {
                self.bar.set_position(summary.steps);
                let mut msg = self.message();
                if let Some(test) = &summary.test {
                    let _ = write!(msg, "  test {:.4}", test.score);
                }
                self.end(msg);
            }
            Event::Evaluation { .. } | Event::Checkpoint { .. } => {}
        }
        Ok(())
    }
}
