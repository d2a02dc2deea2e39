//! Helpers shared by the causal-LM tests.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{Device, Tensor};

/// A fixture folder.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The golden data of a fixture.
pub struct Golden {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u32>>,
    /// `[b][s][vocab]`.
    pub logits: Vec<Vec<Vec<f64>>>,
    /// `[b][s][width]` final hidden states.
    pub final_hidden: Vec<Vec<Vec<f64>>>,
}

fn ints(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn floats3(v: &serde_json::Value) -> Vec<Vec<Vec<f64>>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect()
        })
        .collect()
}

impl Golden {
    pub fn load(name: &str) -> Self {
        let text = std::fs::read_to_string(fixture(name).join("golden.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        Self {
            input_ids: ints(&v["input_ids"]),
            attention_mask: ints(&v["attention_mask"]),
            logits: floats3(&v["logits"]),
            final_hidden: floats3(&v["hidden_states"]["final"]),
        }
    }

    pub fn ids(&self) -> Tensor {
        let b = self.input_ids.len();
        let s = self.input_ids[0].len();
        Tensor::from_vec(self.input_ids.concat(), (b, s), &Device::Cpu).unwrap()
    }

    pub fn mask(&self) -> Tensor {
        let b = self.attention_mask.len();
        let s = self.attention_mask[0].len();
        Tensor::from_vec(self.attention_mask.concat(), (b, s), &Device::Cpu).unwrap()
    }

    /// The largest absolute difference from `expected` at positions with mask 1.
    pub fn max_diff(&self, expected: &[Vec<Vec<f64>>], got: &Tensor) -> f64 {
        let got: Vec<Vec<Vec<f32>>> = got
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec3()
            .unwrap();
        let mut worst = 0.0f64;
        for (r, row) in self.attention_mask.iter().enumerate() {
            for (p, &m) in row.iter().enumerate() {
                if m == 0 {
                    continue;
                }
                assert_eq!(got[r][p].len(), expected[r][p].len());
                for (a, b) in got[r][p].iter().zip(&expected[r][p]) {
                    worst = worst.max((f64::from(*a) - b).abs());
                }
            }
        }
        worst
    }
}

/// The folder of provisioned real models (`ZO_MODELS_DIR`, default `<workspace>/.cache/models`).
pub fn models_dir() -> PathBuf {
    bszo_testkit::models_dir()
}

/// A fresh empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zo-models-causal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
