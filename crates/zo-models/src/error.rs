//! Typed errors of the model crate.

use std::path::PathBuf;

/// An error while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is malformed (bad JSON, safetensors, GGUF, …).
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the architecture needs is absent from the checkpoint.
    #[error("missing tensor `{name}` in {path}")]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The checkpoint.
        path: PathBuf,
    },
    /// A tensor or input has the wrong shape.
    #[error("wrong shape for `{name}`: expected {expected:?}, found {found:?}")]
    Shape {
        /// What has the wrong shape.
        name: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The found shape.
        found: Vec<usize>,
    },
    /// A configuration value is invalid or unsupported.
    #[error("config `{field}`: {message}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A masked-LM prompt template is malformed, or an example does not fit it.
    #[error(transparent)]
    Template(#[from] crate::masked::TemplateError),
    /// A hub model name could not be resolved to a local folder.
    #[error("model `{name}`: {message}")]
    Hub {
        /// The hub name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The tensor library failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// A file or folder that does not exist: `what` says which.
    pub fn not_found(path: &std::path::Path, what: &str) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, what.to_string()),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
