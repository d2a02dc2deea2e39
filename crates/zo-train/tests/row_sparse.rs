//! Row-sparse directions in the training loop: each step is restricted to the table rows its
//! minibatch reads, the seed log records them, and replay rebuilds the weights bit for bit.

mod common;

use common::temp_dir;
use zo_optim::{
    Algorithm, ObjectiveError, Optimizer, ParamSet, ParamStore, RowSupport, TensorData, TensorInfo,
};
use zo_train::{
    Metrics, SEED_LOG_FILE, Split, TaskModel, TrainConfig, TrainError, Trainer, read_seed_log,
    replay,
};

const ROWS: usize = 40;
const COLS: usize = 4;
const EXAMPLES: usize = 12;

/// Example `i` reads rows `2i` and `2i + 1` of the table `emb` (rows 24..40 are never read)
/// and the vector `w`; its loss pulls them towards `i`-dependent targets.
struct Lookup;

impl Lookup {
    fn rows_of(i: usize) -> [u32; 2] {
        [(2 * i) as u32, (2 * i + 1) as u32]
    }

    fn example_loss(p: &ParamStore, i: usize) -> f64 {
        let emb = p.get("emb").unwrap().to_f32();
        let w = p.get("w").unwrap().to_f32();
        let target = (i as f64 / EXAMPLES as f64) - 0.5;
        let mut l = 0.0;
        for r in Self::rows_of(i) {
            for c in 0..COLS {
                let x = f64::from(emb[r as usize * COLS + c]) + f64::from(w[c]);
                l += (x - target).powi(2);
            }
        }
        l
    }
}

impl TaskModel<ParamStore> for Lookup {
    fn num_train(&self) -> usize {
        EXAMPLES
    }

    fn train_loss(&mut self, p: &ParamStore, batch: &[usize]) -> Result<f64, ObjectiveError> {
        Ok(batch.iter().map(|&i| Self::example_loss(p, i)).sum::<f64>() / batch.len() as f64)
    }

    fn evaluate(&mut self, p: &ParamStore, _split: Split) -> Result<Metrics, ObjectiveError> {
        let l = self.train_loss(p, &(0..EXAMPLES).collect::<Vec<_>>())?;
        Ok(Metrics {
            score: -l,
            loss: Some(l),
            ..Metrics::default()
        })
    }

    fn rows_read(
        &mut self,
        _p: &ParamStore,
        batch: &[usize],
    ) -> Result<RowSupport, ObjectiveError> {
        let rows = batch.iter().flat_map(|&i| Self::rows_of(i)).collect();
        Ok(RowSupport::from([("emb".to_string(), rows)]))
    }
}

/// The same model without `rows_read`.
struct Blind;

impl TaskModel<ParamStore> for Blind {
    fn num_train(&self) -> usize {
        EXAMPLES
    }

    fn train_loss(&mut self, p: &ParamStore, batch: &[usize]) -> Result<f64, ObjectiveError> {
        Lookup.train_loss(p, batch)
    }

    fn evaluate(&mut self, p: &ParamStore, split: Split) -> Result<Metrics, ObjectiveError> {
        Lookup.evaluate(p, split)
    }
}

fn base() -> ParamStore {
    let mut s = ParamStore::new();
    let emb = (0..ROWS * COLS).map(|i| (i as f32 * 0.37).cos() * 0.1);
    s.insert(
        TensorInfo::new("emb", vec![ROWS, COLS]),
        TensorData::F32(emb.collect()),
    )
    .unwrap();
    s.insert(
        TensorInfo::new("w", vec![COLS]),
        TensorData::F32(vec![0.0; COLS]),
    )
    .unwrap();
    s
}

fn config(row_sparse: bool) -> TrainConfig {
    TrainConfig {
        max_steps: 30,
        batch_size: 3,
        data_seed: 4,
        eval_every: 10,
        patience: None,
        checkpoint_every: 0,
        row_sparse,
        shards: 1,
    }
}

fn emb(p: &ParamStore) -> Vec<u32> {
    p.get("emb")
        .unwrap()
        .to_f32()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn a_row_sparse_run_moves_only_rows_it_read_and_replays_bit_for_bit() {
    for algorithm in [Algorithm::Mezo, Algorithm::Bszo, Algorithm::MezoAdam] {
        let dir = temp_dir(&format!("row-sparse-{}", algorithm.name()));
        let opt = Optimizer::named(algorithm, 1e-3, 1e-2).unwrap();
        let mut trainer = Trainer::new(opt.clone(), config(true), Lookup)
            .unwrap()
            .output_dir(&dir, false);
        let mut params = base();
        let mut state = trainer.start(&params, 9).unwrap();
        let summary = trainer.run(&mut params, &mut state).unwrap();
        // The support is lifted after every step.
        assert!(params.tensors().iter().all(|t| t.rows.is_none()));

        let log = read_seed_log(&dir.join(SEED_LOG_FILE)).unwrap();
        assert_eq!(log.len(), 30);
        let mut read = std::collections::BTreeSet::new();
        for e in &log {
            let rows = &e.rows.as_ref().expect("every step logs its rows")["emb"];
            assert!(rows.len() <= 6 && rows.windows(2).all(|w| w[0] < w[1]));
            read.extend(rows.iter().copied());
        }
        // Rows no minibatch read kept their start values; the others moved.
        let (start, end) = (emb(&base()), emb(&params));
        for r in 0..ROWS {
            let same = start[r * COLS..(r + 1) * COLS] == end[r * COLS..(r + 1) * COLS];
            assert_eq!(same, !read.contains(&(r as u32)), "{algorithm} row {r}");
        }
        assert!(summary.best.is_some());

        // Replay from the seed log alone gives the same weights.
        let mut rebuilt = base();
        let replayed = replay(&opt, &mut rebuilt, &log, 30).unwrap();
        assert_eq!(emb(&rebuilt), emb(&params), "{algorithm}");
        assert_eq!(rebuilt.get("w"), params.get("w"), "{algorithm}");
        assert_eq!(replayed, state.optimizer, "{algorithm}");

        // The same run without the restriction moves every row (rows not read included).
        let mut full = base();
        let mut t = Trainer::new(opt, config(false), Lookup).unwrap();
        let mut s = t.start(&full, 9).unwrap();
        t.run(&mut full, &mut s).unwrap();
        let moved = emb(&full)
            .iter()
            .zip(&start)
            .skip(24 * COLS)
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved > 0, "{algorithm}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn row_sparse_runs_that_cannot_be_done_say_why() {
    // A model that cannot tell which rows a batch reads.
    let opt = Optimizer::named(Algorithm::Mezo, 1e-3, 1e-2).unwrap();
    let mut t = Trainer::new(opt, config(true), Blind).unwrap();
    let mut p = base();
    let mut s = t.start(&p, 1).unwrap();
    let e = t.run(&mut p, &mut s).unwrap_err().to_string();
    assert!(e.contains("rows"), "{e}");
    assert_eq!(emb(&p), emb(&base()));
    // HiZOO's curvature estimate.
    let hizoo = Optimizer::named(Algorithm::Hizoo, 1e-3, 1e-4).unwrap();
    let e = Trainer::new(hizoo, config(true), Lookup)
        .err()
        .expect("refused");
    assert!(
        matches!(
            e,
            TrainError::Config {
                field: "row_sparse",
                ..
            }
        ),
        "{e}"
    );
}
