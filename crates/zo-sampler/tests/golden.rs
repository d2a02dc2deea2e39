//! Golden values: they freeze the algorithm documented in the crate README (key derivation,
//! counter layout, uniform mapping, `−2·ln`, sine/cosine, Box–Muller, Rademacher bits). Any change
//! here changes every direction ever drawn: checkpoints and GPU kernels would no longer reproduce
//! them.
//!
//! Every constant below except the Philox vectors (Random123's known answers) is computed by
//! `tests/golden/generate.py`, a plain-Python implementation of the README's specification written
//! from that text alone, with every binary32 operation rounded on its own. From the repository
//! root, `python3 crates/zo-sampler/tests/golden/generate.py` prints the constants as they are
//! written here and `… generate.py --check` also checks that each one occurs in this file (the
//! script recomputes the Random123 vectors too, which checks its own Philox).

use zo_sampler::philox::philox4x32_10;
use zo_sampler::transform::{box_muller, rademacher, sin_cos_turn, uniform_open_closed};
use zo_sampler::{DirectionKey, Distribution, Stream, TensorId};

#[test]
fn philox_matches_the_random123_known_answers() {
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0]
        ),
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
    );
}

#[test]
fn tensor_ids_are_fnv1a_of_the_name() {
    assert_eq!(TensorId::from_name(""), TensorId(0xcbf2_9ce4_8422_2325));
    assert_eq!(TensorId::from_name("a"), TensorId(0xaf63_dc4c_8601_ec8c));
    assert_eq!(
        TensorId::from_name("model.layers.0.self_attn.q_proj.weight"),
        TensorId(0x3a29_6639_dc11_febb)
    );
}

fn q_proj(dist: Distribution) -> Stream {
    DirectionKey::new(42, 7, 3).stream(
        TensorId::from_name("model.layers.0.self_attn.q_proj.weight"),
        dist,
    )
}

#[test]
fn key_derivation() {
    let s = q_proj(Distribution::Normal);
    assert_eq!(s.philox_key(), [0xc4ed_960c, 0xfbfa_e464]);
    assert_eq!(s.counter_high(), [0x014a_1727, 0x479f_d763]);
    assert_eq!(
        s.block_bits(0),
        [0x9388_1f81, 0x75eb_f942, 0x436e_fb2e, 0xcdc9_ab8b]
    );
    // The distribution does not enter the derivation.
    let r = q_proj(Distribution::Rademacher);
    assert_eq!(
        (r.philox_key(), r.counter_high()),
        (s.philox_key(), s.counter_high())
    );

    let extreme = DirectionKey::new(u64::MAX, u64::MAX, u32::MAX)
        .stream(TensorId::from_name(""), Distribution::Normal);
    assert_eq!(extreme.philox_key(), [0x826b_54b0, 0xa511_ca65]);
    assert_eq!(extreme.counter_high(), [0xe5c9_3efd, 0x9b49_9750]);
}

#[test]
fn normal_stream_values() {
    let s = q_proj(Distribution::Normal);
    let golden: [(u64, u32); 14] = [
        (0, 0xbf82_4ba9),
        (1, 0x3fa0_d72f),
        (2, 0x3fab_774a),
        (31, 0xbe40_8613),
        (32, 0x3e83_9d06),
        (33, 0xbc8b_f1e2),
        (64, 0x3f0a_d1e1),
        (96, 0xbfc5_3872),
        (127, 0xbe95_6e1d),
        (128, 0xbf84_ea2f),
        (129, 0xbff9_b249),
        (1_000_003, 0xbf57_3020),
        ((1 << 40) + 5, 0x3f04_73d7),
        (u64::MAX, 0xbe05_a9a2),
    ];
    for (i, bits) in golden {
        assert_eq!(s.at(i).to_bits(), bits, "element {i}: {}", s.at(i));
        let mut one = [0f32];
        s.fill(i, &mut one);
        assert_eq!(one[0].to_bits(), bits, "fill of element {i}");
    }
}

/// FNV-1a-style fold of the bit patterns of a fill, to pin thousands of values at once.
fn fold(values: &[f32]) -> u64 {
    values.iter().fold(0u64, |h, v| {
        (h ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn normal_stream_folds() {
    let mut v = vec![0f32; 4096];
    q_proj(Distribution::Normal).fill(0, &mut v);
    assert_eq!(fold(&v), 0xed82_59c0_4ad6_8f5c);

    let extreme = DirectionKey::new(u64::MAX, u64::MAX, u32::MAX)
        .stream(TensorId::from_name(""), Distribution::Normal);
    let mut v = vec![0f32; 2000];
    extreme.fill(u64::MAX - 1999, &mut v);
    assert_eq!(fold(&v), 0x36c7_efb6_e821_caef);
}

#[test]
fn rademacher_stream_values() {
    let s = q_proj(Distribution::Rademacher);
    let golden = [
        (0, -1.0),
        (1, 1.0),
        (31, -1.0),
        (32, 1.0),
        (100, 1.0),
        (127, -1.0),
        (128, 1.0),
        (u64::MAX, 1.0),
    ];
    for (i, v) in golden {
        assert_eq!(s.at(i), v, "element {i}");
    }
    // Element i is bit i mod 32 of word (i / 32) mod 4 of block i / 128.
    let x = s.block_bits(0);
    for i in 0..128u64 {
        let bit = (x[(i / 32) as usize] >> (i % 32)) & 1;
        assert_eq!(s.at(i), if bit == 0 { 1.0 } else { -1.0 });
    }
    let mut v = vec![0f32; 4096];
    s.fill(0, &mut v);
    assert_eq!(v.iter().filter(|x| **x < 0.0).count(), 2095);
}

#[test]
fn transform_values() {
    let bm = |a, b| box_muller(a, b).map(f32::to_bits);
    assert_eq!(bm(0, 0), [0x40b8_9456, 0x0000_0000]);
    assert_eq!(bm(u32::MAX, u32::MAX), [0x8000_0000, 0x0000_0000]);
    assert_eq!(bm(0x1234_5678, 0x9abc_def0), [0xbfe9_2f3a, 0xbfb3_937a]);
    assert_eq!(bm(0x8000_0000, 0x4000_0000), [0x8000_0000, 0x3f96_b55e]);
    // Quarter turns are exact.
    assert_eq!(sin_cos_turn(0), (0.0, 1.0));
    assert_eq!(sin_cos_turn(1 << 22), (1.0, -0.0));
    assert_eq!(sin_cos_turn(1 << 23), (-0.0, -1.0));
    assert_eq!(sin_cos_turn(3 << 22), (-1.0, 0.0));
    assert_eq!(uniform_open_closed(0x0000_01ff), 2.0 * 2f32.powi(-24));
    assert_eq!(rademacher(0b10, 1), -1.0);
    assert_eq!(rademacher(0b10, 0), 1.0);
}

#[test]
fn normal_element_layout() {
    // Element 128·g + 32·q + j is output q of block 32·g + j: outputs 0, 1 are r·cos θ and r·sin θ
    // of words (0, 1), outputs 2, 3 those of words (2, 3).
    let s = q_proj(Distribution::Normal);
    for (g, j) in [(0u64, 0u64), (0, 31), (3, 17), (1 << 50, 5)] {
        let x = s.block_bits(32 * g + j);
        let [a, b] = box_muller(x[0], x[1]);
        let [c, d] = box_muller(x[2], x[3]);
        for (q, want) in [a, b, c, d].into_iter().enumerate() {
            assert_eq!(s.at(128 * g + 32 * q as u64 + j).to_bits(), want.to_bits());
        }
    }
}
