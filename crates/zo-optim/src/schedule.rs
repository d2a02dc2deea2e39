//! Learning-rate schedules: values the optimizer receives, separate from its configuration.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, at_least_one, non_negative};

/// A learning rate as a function of the (0-based) step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// `η_t = lr`.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// Linear decay from `lr` at step 0 to `end_lr` at `total_steps`, constant afterwards.
    Linear {
        /// The initial learning rate.
        lr: f64,
        /// The final learning rate.
        end_lr: f64,
        /// Steps over which to decay.
        total_steps: u64,
    },
    /// Cosine decay from `lr` to `end_lr` over `total_steps`, constant afterwards.
    Cosine {
        /// The initial learning rate.
        lr: f64,
        /// The final learning rate.
        end_lr: f64,
        /// Steps over which to decay.
        total_steps: u64,
    },
}

impl Schedule {
    /// The names of the kinds, as serialised (the `kind` tag).
    pub const KINDS: [&'static str; 3] = ["constant", "linear", "cosine"];

    /// A constant learning rate.
    pub const fn constant(lr: f64) -> Self {
        Self::Constant { lr }
    }

    /// The schedule of kind `kind` (one of [`Schedule::KINDS`]) at its defaults: starting at
    /// `lr` and, for a decaying kind, reaching 0 at `total_steps`. `None` for an unknown kind.
    pub fn of_kind(kind: &str, lr: f64, total_steps: u64) -> Option<Self> {
        match kind {
            "constant" => Some(Self::constant(lr)),
            "linear" => Some(Self::Linear {
                lr,
                end_lr: 0.0,
                total_steps,
            }),
            "cosine" => Some(Self::Cosine {
                lr,
                end_lr: 0.0,
                total_steps,
            }),
            _ => None,
        }
    }

    /// The learning rate at `step`.
    pub fn lr(&self, step: u64) -> f64 {
        match *self {
            Self::Constant { lr } => lr,
            Self::Linear {
                lr,
                end_lr,
                total_steps,
            } => {
                let p = progress(step, total_steps);
                lr + (end_lr - lr) * p
            }
            Self::Cosine {
                lr,
                end_lr,
                total_steps,
            } => {
                let p = progress(step, total_steps);
                end_lr + 0.5 * (lr - end_lr) * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }

    /// Check the values (learning rates finite and >= 0, total steps > 0). A learning rate of 0
    /// runs probe-only steps: every forward of the step, no change to the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (lr, end, total) = match *self {
            Self::Constant { lr } => (lr, lr, 1),
            Self::Linear {
                lr,
                end_lr,
                total_steps,
            } => (lr, end_lr, total_steps),
            Self::Cosine {
                lr,
                end_lr,
                total_steps,
            } => (lr, end_lr, total_steps),
        };
        non_negative("lr", lr)?;
        non_negative("end_lr", end)?;
        at_least_one("total_steps", total)
    }
}

fn progress(step: u64, total: u64) -> f64 {
    (step.min(total) as f64) / (total.max(1) as f64)
}
