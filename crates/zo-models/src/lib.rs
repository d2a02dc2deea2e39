#![doc = include_str!("../README.md")]

mod activation;
pub mod adapters;
pub mod bert;
pub mod calibration;
pub mod causal;
pub mod error;
pub mod gguf;
pub mod hub;
pub mod llama;
pub mod llama2c;
pub mod loading;
pub mod masked;
pub mod opt;
pub mod param;
pub mod tokenizer;
pub mod weights;

pub use adapters::{Load, LoraConfig, Peft, PrefixConfig, PrefixInit};
pub use bert::{Config as BertConfig, Flavor, MaskedLm};
pub use causal::{CandidateExample, CandidateObjective, CausalLm, load_causal_lm};
pub use error::{ModelError, Result};
pub use gguf::GgufModel;
pub use hub::{HubOptions, resolve_model};
pub use llama::{Llama, LlamaConfig};
pub use llama2c::{Llama2cModel, Llama2cTokenizer};
pub use loading::{Checkpoint, Precision};
pub use masked::{
    MaskedLmClassifier, PromptBatch, PromptObjective, Template, TemplateError, Transform,
};
pub use opt::{Opt, OptConfig};
pub use param::{Linear, LoraBranch, Param, Prefix};
pub use tokenizer::Tokenizer;
pub use weights::{LoraPair, Weights};
