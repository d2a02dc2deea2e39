//! Row-sparse directions: with a row support, every optimizer (HiZOO aside) moves only the
//! supported rows, and moves them exactly as the unrestricted run does when the objective reads
//! nothing else.

use half::bf16;
use zo_optim::{
    Algorithm, Optimizer, ParamSet, ParamStore, RowSupport, TensorData, TensorInfo,
    with_row_support,
};

const ROWS: usize = 50;
const COLS: usize = 8;
const SUPPORT: [u32; 5] = [3, 7, 8, 20, 49];

/// A table `emb` [50, 8] and a vector `w` [16], in f32 or bf16.
fn store(half: bool) -> ParamStore {
    let mut s = ParamStore::new();
    let emb: Vec<f32> = (0..ROWS * COLS)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect();
    let w: Vec<f32> = (0..16).map(|i| (i as f32 * 0.3).sin()).collect();
    let data = |v: Vec<f32>| {
        if half {
            TensorData::BF16(v.into_iter().map(bf16::from_f32).collect())
        } else {
            TensorData::F32(v)
        }
    };
    s.insert(TensorInfo::new("emb", vec![ROWS, COLS]), data(emb))
        .unwrap();
    s.insert(TensorInfo::new("w", vec![16]), data(w)).unwrap();
    s
}

fn support() -> RowSupport {
    RowSupport::from([("emb".to_string(), SUPPORT.to_vec())])
}

/// A quadratic that reads only the supported rows of `emb` and all of `w`.
fn loss(p: &ParamStore) -> f64 {
    let emb = p.get("emb").unwrap().to_f32();
    let w = p.get("w").unwrap().to_f32();
    let mut l = 0.0;
    for &r in &SUPPORT {
        for c in 0..COLS {
            let x = f64::from(emb[r as usize * COLS + c]);
            l += 0.5 * (1.0 + c as f64) * (x - 0.25).powi(2);
        }
    }
    for (i, x) in w.iter().enumerate() {
        l += 0.1 * (i % 3 + 1) as f64 * (f64::from(*x) + 0.5).powi(2);
    }
    l
}

fn run(alg: Algorithm, half: bool, sparse: bool, steps: usize) -> (ParamStore, Vec<f64>) {
    let opt = Optimizer::named(alg, 1e-3, 1e-3).unwrap();
    let mut p = store(half);
    let mut state = opt.init(&p, 11);
    let mut losses = Vec::new();
    for _ in 0..steps {
        if sparse {
            p.set_row_support(Some(&support())).unwrap();
        }
        let report = opt.step(&mut state, &mut p, &mut loss).unwrap();
        p.set_row_support(None).unwrap();
        losses.extend(report.losses);
    }
    (p, losses)
}

fn is_supported(i: usize) -> bool {
    SUPPORT.contains(&((i / COLS) as u32))
}

#[test]
fn every_optimizer_moves_only_the_supported_rows_and_moves_them_as_the_full_run_does() {
    for half in [false, true] {
        let start = store(half).get("emb").unwrap().to_f32();
        for alg in Algorithm::ALL {
            if alg == Algorithm::Hizoo {
                continue;
            }
            let (sparse, sparse_losses) = run(alg, half, true, 12);
            let (full, full_losses) = run(alg, half, false, 12);
            // The objective reads only supported rows: the same losses, bit for bit.
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&sparse_losses),
                bits(&full_losses),
                "{alg} half={half}"
            );
            let (se, fe) = (
                sparse.get("emb").unwrap().to_f32(),
                full.get("emb").unwrap().to_f32(),
            );
            let mut moved = 0;
            for i in 0..ROWS * COLS {
                if is_supported(i) {
                    assert_eq!(se[i].to_bits(), fe[i].to_bits(), "{alg} half={half} {i}");
                    moved += usize::from(se[i] != start[i]);
                } else {
                    assert_eq!(se[i].to_bits(), start[i].to_bits(), "{alg} half={half} {i}");
                }
            }
            assert!(moved > 0, "{alg} half={half}: no supported element moved");
            // The full run moved unsupported rows too: the restriction is not vacuous.
            let full_moved_outside = (0..ROWS * COLS)
                .filter(|&i| !is_supported(i) && fe[i] != start[i])
                .count();
            assert!(full_moved_outside > 0, "{alg} half={half}");
            assert_eq!(sparse.get("w"), full.get("w"), "{alg} half={half}");
        }
    }
}

#[test]
fn a_row_support_is_checked_and_refused_where_it_is_undefined() {
    let mut p = store(false);
    let bad_row = RowSupport::from([("emb".to_string(), vec![2, 50])]);
    let e = p.set_row_support(Some(&bad_row)).unwrap_err().to_string();
    assert!(e.contains("emb") && e.contains("50"), "{e}");
    let unknown = RowSupport::from([("nope".to_string(), vec![0])]);
    let e = p.set_row_support(Some(&unknown)).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
    // A refused support leaves the set unrestricted.
    assert!(p.tensors().iter().all(|t| t.rows.is_none()));
    // Rows come back sorted and distinct.
    let messy = RowSupport::from([("emb".to_string(), vec![9, 1, 9, 4])]);
    p.set_row_support(Some(&messy)).unwrap();
    let emb = p.tensors().into_iter().find(|t| t.name == "emb").unwrap();
    assert_eq!(emb.rows.as_deref(), Some(&[1u32, 4, 9][..]));
    let infos = with_row_support(&p.tensors(), None).unwrap();
    assert!(infos.iter().all(|t| t.rows.is_none()));
    // A flat vector has no row-sparse directions.
    let mut flat = vec![0.0f32; 8];
    let support = RowSupport::from([("params".to_string(), vec![0])]);
    assert!(flat.set_row_support(Some(&support)).is_err());
    assert!(flat.set_row_support(None).is_ok());
    // HiZOO's curvature estimate is not defined with row-sparse directions.
    let hizoo = Optimizer::named(Algorithm::Hizoo, 1e-3, 1e-4).unwrap();
    let e = hizoo
        .config()
        .validate_row_sparse()
        .unwrap_err()
        .to_string();
    assert!(e.contains("HiZOO"), "{e}");
    for alg in Algorithm::ALL
        .into_iter()
        .filter(|a| *a != Algorithm::Hizoo)
    {
        let opt = Optimizer::named(alg, 1e-3, 1e-4).unwrap();
        assert!(opt.config().validate_row_sparse().is_ok(), "{alg}");
    }
}
