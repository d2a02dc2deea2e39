//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, reading, sampling or scoring data.
///
/// Errors about a file name the file and, where one applies, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A row lacks a column (or a JSON record a field) that the reader needs.
    #[error("{}:{line}: missing column `{column}`", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The 1-based line (for a pool JSON file, the line where the record starts).
        line: usize,
        /// The column or field name.
        column: String,
    },
    /// A label that the task does not know.
    #[error("{}:{line}: unknown label `{label}` for task {task}", path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The offending label, as written in the file.
        label: String,
        /// The task's name.
        task: &'static str,
    },
    /// A line or file that is not valid JSON, or JSON of the wrong shape.
    #[error("{}:{line}: bad JSON: {message}", path.display())]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// Any other malformed row (an unterminated quote, an empty file without a header, …).
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A combination that the task does not define (e.g. a masked-LM template for COPA).
    #[error("task {task}: {what} is not supported")]
    Unsupported {
        /// The task's name.
        task: &'static str,
        /// What was asked for.
        what: String,
    },
    /// A task name that is not known.
    #[error(
        "unknown task `{0}` (known: sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic)"
    )]
    UnknownTask(String),
    /// No data folder exists among the candidates.
    #[error("no data folder found; tried: {}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    DataDirNotFound {
        /// Every candidate that was tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A data folder that was named explicitly (or by `ZO_DATA_DIR`) does not exist.
    #[error("{origin}: the data folder {} does not exist", path.display())]
    DataDirMissing {
        /// Who named it.
        origin: crate::datadir::DataDirOrigin,
        /// The folder.
        path: PathBuf,
    },
    /// An invalid argument (empty inputs, mismatched lengths, a zero batch size, …).
    #[error("invalid argument `{field}`: {message}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An error returned by a caller-supplied tokenizer function.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, DataError>;
