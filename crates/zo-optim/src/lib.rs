#![doc = include_str!("../README.md")]

pub mod direction;
pub mod error;
pub mod estimator;
pub mod objective;
pub mod optimizer;
pub mod params;
pub mod rule;
pub mod schedule;

pub use direction::{Direction, DirectionKind, Term};
pub use error::{ConfigError, ObjectiveError, OptimError, ParamError};
pub use estimator::{
    Difference, Estimator, EstimatorState, ExtraSample, KalmanReport, KalmanSubspace, NoiseUpdate,
    Variance,
};
pub use objective::{Counted, Objective, Share};
pub use optimizer::{
    Algorithm, Optimizer, OptimizerConfig, OptimizerState, StepReport, UnknownAlgorithm,
};
pub use params::{
    ParamSet, ParamSliceMut, ParamStore, Perturbation, ProbeMode, Rounding, RowSupport, StateVec,
    StoreRounding, TensorData, TensorInfo, default_decay, with_row_support,
};
pub use rule::{RuleState, SignMode, UpdateRule};
pub use schedule::Schedule;
pub use zo_sampler::{DirectionKey, Distribution};
