//! The memory a run needs, estimated before any work, and the memory the machine has.
//!
//! The estimate adds up what a run holds at its peak: the weights twice (the trainable copy, and the
//! base weights reloaded at the end to rebuild the best weights from the seed log), the
//! optimizer's per-parameter vectors (MeZO-Adam's two moments, a momentum buffer, HiZOO's
//! curvature), the checkpoint's copy of them being read back on a resume, BSZO's `k × m` Kalman
//! matrices, and the activations of the largest forward — `tokens × (vocabulary + 16 × hidden)`
//! f32 values for a minibatch of training or evaluation prompts of the longest length. It is an
//! order-of-magnitude bound meant to refuse a configuration that cannot fit (an
//! `optimizer.estimator.k` or a `train.batch_size` a thousand times too large) with a clear error instead of an abort, not to size a
//! machine to the megabyte.

use anyhow::{Result, anyhow, bail};
use zo_optim::{Estimator, Optimizer, TensorInfo, UpdateRule};

/// What the estimate is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Bytes by item, largest first.
    pub parts: Vec<(&'static str, u64)>,
}

impl Estimate {
    /// The total in bytes.
    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, (_, b)| a.saturating_add(*b))
    }
}

/// The shape of the model that the activations depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// Trainable parameters.
    pub params: usize,
    /// Frozen parameters (the checkpoint's weights beside trained adapters).
    pub frozen: usize,
    /// Bytes per parameter (4 for f32, 2 for bf16/f16).
    pub bytes_per_param: usize,
    /// The vocabulary (rows of the largest 2-D tensor, the token embeddings).
    pub vocab: usize,
    /// The hidden size (columns of that tensor).
    pub hidden: usize,
}

impl ModelShape {
    /// The shape read from the trainable tensors' shapes.
    pub fn from_tensors(tensors: &[TensorInfo], bytes_per_param: usize) -> Self {
        let params = tensors.iter().map(TensorInfo::numel).sum();
        let (vocab, hidden) = tensors
            .iter()
            .filter(|t| t.shape.len() == 2)
            .max_by_key(|t| t.numel())
            .map(|t| {
                let (a, b) = (t.shape[0], t.shape[1]);
                (a.max(b), a.min(b))
            })
            .unwrap_or((0, 0));
        Self {
            params,
            frozen: 0,
            bytes_per_param,
            vocab,
            hidden,
        }
    }

    /// The shape of a model whose trainable tensors are `trainable` and whose frozen ones (the
    /// checkpoint's weights beside adapters) are `frozen`: the vocabulary and hidden size are read
    /// from all of them.
    pub fn with_frozen(
        trainable: &[TensorInfo],
        frozen: &[TensorInfo],
        bytes_per_param: usize,
    ) -> Self {
        let all: Vec<TensorInfo> = trainable.iter().chain(frozen).cloned().collect();
        Self {
            params: trainable.iter().map(TensorInfo::numel).sum(),
            frozen: frozen.iter().map(TensorInfo::numel).sum(),
            ..Self::from_tensors(&all, bytes_per_param)
        }
    }
}

/// The estimate for a run of `optimizer` on `model`, with training minibatches of `batch` prompts,
/// evaluation batches of `eval_batch` prompts, and prompts of at most `max_length` tokens.
pub fn estimate(
    model: ModelShape,
    optimizer: &Optimizer,
    batch: usize,
    eval_batch: usize,
    max_length: usize,
) -> Estimate {
    let m = |a: u64, b: u64| a.saturating_mul(b);
    let n = model.params as u64;
    let all = n.saturating_add(model.frozen as u64);
    let weights = m(m(all, model.bytes_per_param as u64), 2);
    let config = optimizer.config();
    let vectors: u64 = match config.rule {
        UpdateRule::Adam { .. } => 2,
        UpdateRule::Momentum { .. } => 1,
        _ => 0,
    } + u64::from(matches!(config.estimator, Estimator::Hessian { .. }));
    // The vectors, and their copy while a checkpoint is read back.
    let state = m(m(n, 4), m(vectors, 2));
    let kalman = match &config.estimator {
        Estimator::KalmanSubspace(ks) => {
            let (k, mm) = (ks.k as u64, ks.m as u64);
            m(m(k, k.max(mm)), 8 * 4)
        }
        _ => 0,
    };
    let per_token = m(
        (model.vocab as u64).saturating_add(m(model.hidden as u64, 16)),
        4,
    );
    let tokens = m(batch.max(eval_batch) as u64, max_length as u64);
    let activations = m(tokens, per_token);
    let mut parts = vec![
        ("weights (trainable and base copies)", weights),
        ("optimizer state", state),
        ("Kalman matrices", kalman),
        ("activations of the largest forward", activations),
    ];
    parts.retain(|(_, b)| *b > 0);
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    Estimate { parts }
}

/// Bytes per weight at `precision`.
pub fn precision_bytes(precision: zo_models::Precision) -> usize {
    match precision {
        zo_models::Precision::F32 => 4,
        _ => 2,
    }
}

/// A `kB` field of `/proc/meminfo` (Linux), in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The memory this process may still use: `MemAvailable` (else `MemTotal`) of `/proc/meminfo`, plus
/// what the process already holds (its resident set), since the estimate counts the loaded model.
pub fn available() -> Option<u64> {
    let free = meminfo("MemAvailable:").or_else(|| meminfo("MemTotal:"))?;
    let rss = crate::finetune::status_kb("VmRSS:").unwrap_or(0) * 1024;
    Some(free.saturating_add(rss))
}

/// Parse a size: a number of bytes, or with a suffix K, M, G, T (powers of 1024; an optional `B`
/// or `iB` after it), e.g. `512M`, `8G`, `1.5GiB`.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (num, scale) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 1u64 << 10),
        Some('M') => (&body[..body.len() - 1], 1 << 20),
        Some('G') => (&body[..body.len() - 1], 1 << 30),
        Some('T') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow!("`{text}` is not a size (e.g. 512M, 8G, 1.5GiB, or bytes)"))?;
    if !value.is_finite() || value <= 0.0 {
        bail!("`{text}` is not a positive size");
    }
    Ok((value * scale as f64) as u64)
}

/// Format bytes for a message.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 40) as f64 {
        format!("{:.1} TiB", b / (1u64 << 40) as f64)
    } else if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

/// Refuse the estimate when it exceeds `limit` (`--max-memory`), else what the machine has.
pub fn check(estimate: &Estimate, limit: Option<u64>) -> Result<()> {
    let (cap, what) = match limit {
        Some(l) => (l, "--max-memory"),
        None => match available() {
            Some(a) => (a, "the memory available on this machine"),
            None => return Ok(()),
        },
    };
    let need = estimate.total();
    if need > cap {
        let (item, bytes) = estimate.parts[0];
        bail!(
            "this configuration needs about {} of memory, more than {what} ({}); the largest part is {item} ({}) — lower optimizer.estimator.k, train.batch_size, task.eval_batch_size or model.max_length (--set KEY=VALUE), or raise --max-memory",
            human(need),
            human(cap),
            human(bytes)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
    }
}
