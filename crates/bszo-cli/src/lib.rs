#![doc = include_str!("../README.md")]

pub mod cli;
pub mod config;
pub mod export;
pub mod finetune;
pub mod inputs;
pub mod load;
pub mod report;
pub mod resources;
pub mod settings;
pub mod task_model;
pub mod zero_shot;

pub use config::{DEFAULT_TOML, RunConfig};
pub use finetune::{Options, Outcome, Report, finetune};
