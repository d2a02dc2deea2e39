//! Ways to *apply* an estimate: SGD with weight decay, momentum, sign, Adam and the conservative
//! step. A rule sees the estimate's direction terms, the displacement the parameters still carry
//! and, for SGD, the estimate's optional per-element preconditioner (HiZOO's `1/√H`).

use serde::{Deserialize, Serialize};

use crate::direction::{TensorDirection, Term, negate};
use crate::error::{ConfigError, OptimError, ParamError, non_negative, positive, unit_interval};
use crate::estimator::Estimate;
use crate::estimator::probe::Evaluator;
use crate::objective::Objective;
use crate::params::{
    Chunk, ParamSet, Perturbation, ProbeMode, StateVec, StoreRounding, for_each_chunk,
};

/// Which sign ZO-SGD-Sign takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignMode {
    /// `θ ← θ − η Σⱼ sign(gⱼ) zⱼ`: the sign of each projected gradient (the default).
    #[default]
    Coefficient,
    /// `θ ← θ − η sign(ĝ)` element-wise (ZO-Bench's sign-SGD on the full estimate).
    Elementwise,
}

/// An update rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdateRule {
    /// `θ ← θ − η (ĝ + λ θ)` (λ only on tensors whose group has weight decay).
    Sgd {
        /// Weight decay λ.
        weight_decay: f64,
    },
    /// Heavy-ball momentum: `m ← β m + (ĝ + λθ)`, `θ ← θ − η m` (+n floats of state).
    Momentum {
        /// Momentum β ∈ [0, 1).
        beta: f64,
        /// Weight decay λ.
        weight_decay: f64,
    },
    /// Sign descent (see [`SignMode`]).
    Sign {
        /// Which sign.
        mode: SignMode,
        /// Weight decay λ.
        weight_decay: f64,
    },
    /// Adam on ĝ with bias correction (+2n floats of state).
    Adam {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// The denominator's ε.
        eps: f64,
        /// Weight decay λ (added to the gradient, as `torch.optim.Adam`).
        weight_decay: f64,
    },
    /// ZO-SGD-Cons: evaluate θ, θ − ηĝ and θ + ηĝ and keep the best (3 more forwards).
    #[serde(deserialize_with = "no_fields")]
    Conservative,
}

/// A field-less variant's content: an empty map, so that a key next to its tag is an error (serde
/// ignores them for unit variants of internally tagged enums even with `deny_unknown_fields`).
fn no_fields<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    NoFields::deserialize(deserializer).map(|NoFields {}| ())
}

impl UpdateRule {
    /// Validate the hyper-parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let wd = |v: f64| non_negative("weight_decay", v);
        match *self {
            Self::Sgd { weight_decay } | Self::Sign { weight_decay, .. } => wd(weight_decay),
            Self::Momentum { beta, weight_decay } => {
                unit_interval("beta", beta)?;
                wd(weight_decay)
            }
            Self::Adam {
                beta1,
                beta2,
                eps: adam_eps,
                weight_decay,
            } => {
                unit_interval("beta1", beta1)?;
                unit_interval("beta2", beta2)?;
                positive("eps", adam_eps)?;
                wd(weight_decay)
            }
            Self::Conservative => Ok(()),
        }
    }

    /// Whether the rule applies an estimate's per-element preconditioner (SGD only).
    pub fn accepts_preconditioner(&self) -> bool {
        matches!(self, Self::Sgd { .. })
    }

    /// Forward passes the rule itself runs per step.
    pub fn forwards_per_step(&self) -> usize {
        match self {
            Self::Conservative => 3,
            _ => 0,
        }
    }

    pub(crate) fn init<P: ParamSet + ?Sized>(&self, params: &P) -> RuleState {
        match self {
            Self::Momentum { .. } => RuleState::Momentum {
                m: StateVec::filled_like(params, 0.0),
            },
            Self::Adam { .. } => RuleState::Adam {
                m: StateVec::filled_like(params, 0.0),
                v: StateVec::filled_like(params, 0.0),
                t: 0,
            },
            _ => RuleState::Stateless,
        }
    }
}

/// The update rule's state carried across steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleState {
    /// No state.
    Stateless,
    /// Momentum buffer.
    Momentum {
        /// The buffer.
        m: StateVec,
    },
    /// Adam moments and step count.
    Adam {
        /// First moment.
        m: StateVec,
        /// Second moment.
        v: StateVec,
        /// Adam's own step count (for bias correction).
        t: u64,
    },
}

/// What the rule did.
pub(crate) struct Applied {
    pub loss: Option<f64>,
    pub chosen: Option<i8>,
}

/// The per-element arithmetic of one rule, given the restored parameter `p` and the estimate `g`.
#[derive(Clone, Copy)]
enum Kernel {
    Sgd {
        lr: f32,
        wd: f32,
    },
    SignElementwise {
        lr: f32,
        wd: f32,
    },
    Momentum {
        lr: f32,
        wd: f32,
        beta: f32,
    },
    Adam {
        lr: f32,
        wd: f32,
        b1: f32,
        b2: f32,
        eps: f32,
        c1: f32,
        c2: f32,
    },
}

impl UpdateRule {
    pub(crate) fn apply<P, O>(
        &self,
        state: &mut RuleState,
        params: &mut P,
        ev: &mut Evaluator<'_, O>,
        est: &Estimate<'_>,
        lr: f64,
        rounding: StoreRounding,
    ) -> Result<Applied, OptimError>
    where
        P: ParamSet + ?Sized,
        O: Objective<P>,
    {
        let plain = Applied {
            loss: None,
            chosen: None,
        };
        match *self {
            Self::Sgd { weight_decay } => {
                if weight_decay == 0.0 && est.preconditioner().is_none() {
                    // Restore and update fused into one additive sweep.
                    let mut terms = negate(est.displacement());
                    terms.extend(
                        est.terms()
                            .iter()
                            .map(|t| Term::new((-lr * f64::from(t.coeff)) as f32, t.direction)),
                    );
                    params.add_rounded(&terms, None, rounding)?;
                } else {
                    let k = Kernel::Sgd {
                        lr: lr as f32,
                        wd: weight_decay as f32,
                    };
                    run_kernel(params, est, est.terms(), k, None, rounding)?;
                }
                Ok(plain)
            }
            Self::Sign { mode, weight_decay } => {
                let lr32 = lr as f32;
                match mode {
                    SignMode::Coefficient => {
                        let terms: Vec<Term> = est
                            .terms()
                            .iter()
                            .map(|t| {
                                Term::new(
                                    if t.coeff == 0.0 {
                                        0.0
                                    } else {
                                        t.coeff.signum()
                                    },
                                    t.direction,
                                )
                            })
                            .collect();
                        run_kernel(
                            params,
                            est,
                            &terms,
                            Kernel::Sgd {
                                lr: lr32,
                                wd: weight_decay as f32,
                            },
                            None,
                            rounding,
                        )?;
                    }
                    SignMode::Elementwise => {
                        let k = Kernel::SignElementwise {
                            lr: lr32,
                            wd: weight_decay as f32,
                        };
                        run_kernel(params, est, est.terms(), k, None, rounding)?;
                    }
                }
                Ok(plain)
            }
            Self::Momentum { beta, weight_decay } => {
                let RuleState::Momentum { m } = state else {
                    return Err(OptimError::StateMismatch(
                        "momentum needs its buffer".into(),
                    ));
                };
                m.check_matches(params)?;
                let k = Kernel::Momentum {
                    lr: lr as f32,
                    wd: weight_decay as f32,
                    beta: beta as f32,
                };
                run_kernel(params, est, est.terms(), k, Some((m, None)), rounding)?;
                Ok(plain)
            }
            Self::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let RuleState::Adam { m, v, t } = state else {
                    return Err(OptimError::StateMismatch("Adam needs its moments".into()));
                };
                m.check_matches(params)?;
                v.check_matches(params)?;
                let t1 = *t + 1;
                let k = Kernel::Adam {
                    lr: lr as f32,
                    wd: weight_decay as f32,
                    b1: beta1 as f32,
                    b2: beta2 as f32,
                    eps: eps as f32,
                    c1: (1.0 - beta1.powf(t1 as f64)) as f32,
                    c2: (1.0 - beta2.powf(t1 as f64)) as f32,
                };
                run_kernel(params, est, est.terms(), k, Some((m, Some(v))), rounding)?;
                *t = t1;
                Ok(plain)
            }
            Self::Conservative => {
                if est.preconditioner().is_some() {
                    return Err(ConfigError::Unsupported(
                        "the conservative rule with a preconditioned estimate",
                    )
                    .into());
                }
                let step: Vec<Term> = est
                    .terms()
                    .iter()
                    .map(|t| Term::new((lr * f64::from(t.coeff)) as f32, t.direction))
                    .collect();
                let neg = negate(&step);
                if params.probe_mode() == ProbeMode::View {
                    return conservative_viewed(params, ev, step, neg, rounding);
                }
                let double: Vec<Term> = step
                    .iter()
                    .map(|t| Term::new(2.0 * t.coeff, t.direction))
                    .collect();
                // Restore fused with the first candidate move: θ_now → θ − ηĝ.
                let mut first = negate(est.displacement());
                first.extend_from_slice(&neg);
                params.add(&first, None)?;
                let undo_minus = {
                    let step = step.clone();
                    move |p: &mut P| p.add(&step, None)
                };
                let l_minus = ev.eval(params, &undo_minus)?;
                params.add(&double, None)?;
                let l_plus = ev.eval(params, &|p: &mut P| p.add(&neg, None))?;
                params.add(&neg, None)?;
                let l0 = ev.eval_here(params)?;
                // Keep the best; ties prefer staying, then the descent candidate.
                let (chosen, loss) = if l0 <= l_minus && l0 <= l_plus {
                    (0, l0)
                } else if l_minus <= l_plus {
                    params.add(&neg, None)?;
                    (-1, l_minus)
                } else {
                    params.add(&step, None)?;
                    (1, l_plus)
                };
                Ok(Applied {
                    loss: Some(loss),
                    chosen: Some(chosen),
                })
            }
        }
    }
}

/// The conservative step through a view: the candidates `θ ∓ ηĝ` are shown to the readers, and
/// only the kept one is written (with the step's rounding).
fn conservative_viewed<P, O>(
    params: &mut P,
    ev: &mut Evaluator<'_, O>,
    step: Vec<Term>,
    neg: Vec<Term>,
    rounding: StoreRounding,
) -> Result<Applied, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let clear = |p: &mut P| p.set_view(None);
    params.set_view(Some(Perturbation::new(neg.clone())))?;
    let l_minus = ev.eval(params, &clear)?;
    params.set_view(Some(Perturbation::new(step.clone())))?;
    let l_plus = ev.eval(params, &clear)?;
    params.set_view(None)?;
    let l0 = ev.eval_here(params)?;
    // Keep the best; ties prefer staying, then the descent candidate.
    let (chosen, loss) = if l0 <= l_minus && l0 <= l_plus {
        (0, l0)
    } else if l_minus <= l_plus {
        params.add_rounded(&neg, None, rounding)?;
        (-1, l_minus)
    } else {
        params.add_rounded(&step, None, rounding)?;
        (1, l_plus)
    };
    Ok(Applied {
        loss: Some(loss),
        chosen: Some(chosen),
    })
}

/// Remove the estimate's displacement and apply `kernel` with the estimate `Σ terms` (through the
/// estimate's preconditioner, if any), element by element, in one sweep per tensor, written with
/// `rounding`.
fn run_kernel<P: ParamSet + ?Sized>(
    params: &mut P,
    est: &Estimate<'_>,
    terms: &[Term],
    kernel: Kernel,
    mut state: Option<(&mut StateVec, Option<&mut StateVec>)>,
    rounding: StoreRounding,
) -> Result<(), ParamError> {
    let displacement = est.displacement();
    let np = displacement.len();
    let coeffs: Vec<f32> = displacement.iter().chain(terms).map(|t| t.coeff).collect();
    let preconditioner = est.preconditioner();
    let mut index = 0;
    params.visit_mut(&mut |info, data| {
        let pre = match &preconditioner {
            Some(pc) => Some(pc.tensor(index, info)?),
            None => None,
        };
        let (s1, s2) = match state.as_mut() {
            Some((a, b)) => {
                let a = a.tensor_mut(index, info)?;
                let b = match b.as_mut() {
                    Some(b) => Some(b.tensor_mut(index, info)?),
                    None => None,
                };
                (Some(a), b)
            }
            None => (None, None),
        };
        index += 1;
        let dirs: Vec<TensorDirection> = displacement
            .iter()
            .chain(terms)
            .map(|t| TensorDirection::new(&t.direction, info))
            .collect();
        let decay = info.decay;
        let round = rounding.stream(info.id());
        let body = |c: Chunk<'_>| {
            let Chunk {
                offset,
                params,
                z,
                mut s1,
                mut s2,
                bits,
            } = c;
            let pre = pre.map(|pc| pc.range(offset, params.len()));
            params.for_each_rounded(bits, |i, p| {
                let mut restore = 0.0f32;
                for j in 0..np {
                    restore += coeffs[j] * z[j][i];
                }
                // θ_now = θ + Σ displacement: the restore subtracts it.
                let p = if np > 0 { p - restore } else { p };
                let mut g = 0.0f32;
                for j in np..coeffs.len() {
                    g += coeffs[j] * z[j][i];
                }
                if let Some(pre) = &pre {
                    g = pre.apply(i, g);
                }
                match kernel {
                    Kernel::Sgd { lr, wd } => {
                        let wd = if decay { wd } else { 0.0 };
                        p - lr * (g + wd * p)
                    }
                    Kernel::SignElementwise { lr, wd } => {
                        let wd = if decay { wd } else { 0.0 };
                        let s = if g == 0.0 { 0.0 } else { g.signum() };
                        p - lr * (s + wd * p)
                    }
                    Kernel::Momentum { lr, wd, beta } => {
                        let wd = if decay { wd } else { 0.0 };
                        let m = s1.as_deref_mut().expect("momentum buffer is passed");
                        m[i] = beta * m[i] + (g + wd * p);
                        p - lr * m[i]
                    }
                    Kernel::Adam {
                        lr,
                        wd,
                        b1,
                        b2,
                        eps,
                        c1,
                        c2,
                    } => {
                        let wd = if decay { wd } else { 0.0 };
                        let g = g + wd * p;
                        let m = s1.as_deref_mut().expect("first moment is passed");
                        let v = s2.as_deref_mut().expect("second moment is passed");
                        m[i] = b1 * m[i] + (1.0 - b1) * g;
                        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                        let mh = m[i] / c1;
                        let vh = v[i] / c2;
                        p - lr * mh / (vh.sqrt() + eps)
                    }
                }
            });
        };
        for_each_chunk(data, &dirs, s1, s2, round.as_ref(), &body);
        Ok(())
    })
}
