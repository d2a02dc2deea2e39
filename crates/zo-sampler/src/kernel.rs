//! The vectorisable generators and loops behind [`Stream::fill`] and the sweeps, with a runtime
//! dispatch to AVX2 and AVX-512 compilations of the same code.
//!
//! Every loop body here is generic and `#[inline(always)]`; it is compiled once for the baseline
//! target ("portable") and once inside each `#[target_feature(enable = …)]` function. All
//! compilations perform the same IEEE-754 operations in the same order (Rust never contracts
//! `a * b + c` into a fused multiply–add, nor uses approximate reciprocals), so they give
//! identical bits; only the vector width differs.

use std::sync::OnceLock;

use crate::philox::{philox4x32_10, philox4x32_10_lanes};
use crate::stream::{Distribution, Stream};
use crate::sweep::{Element, Term};
use crate::transform;

/// Philox blocks per group of normals.
pub(crate) const LANES: usize = 32;
/// Elements per group: the unit of generation, aligned to multiples of `GROUP` in index space.
/// A group of normals is made of `LANES` consecutive Philox blocks; a group of Rademacher signs
/// of one block.
pub(crate) const GROUP: usize = 4 * LANES;

/// The instruction set a loop runs with.
///
/// Invariant relied upon by the `unsafe` calls in [`fill`] and [`sweep`]: the values handed to
/// them come from [`Isa::detect`] or [`Isa::available`], which only list what the CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The baseline target features only.
    Portable,
    /// AVX2 (x86-64 only, detected at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F, VL, BW and DQ (x86-64 only, detected at run time).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The instruction set the public functions use: the most capable one available, capped by
    /// the environment variable `ZO_SAMPLER_ISA` (`portable`, `avx2` or `avx512`) if set. Decided
    /// once per process.
    #[inline]
    pub(crate) fn detect() -> Self {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let rank = |isa: Isa| Isa::ALL.iter().position(|&i| i == isa);
            let cap = std::env::var("ZO_SAMPLER_ISA")
                .ok()
                .and_then(|name| Isa::ALL.iter().position(|i| i.name() == name));
            let allowed = |isa: &&Isa| cap.is_none_or(|c| rank(**isa).is_some_and(|r| r <= c));
            *Self::available()
                .iter()
                .rfind(allowed)
                .unwrap_or(&Isa::Portable)
        })
    }

    /// Every instruction set this build knows, from the least to the most capable.
    const ALL: &'static [Isa] = &[
        Isa::Portable,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
    ];

    /// Every instruction set available on this CPU, from the least to the most capable.
    pub(crate) fn available() -> &'static [Self] {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
                return &[Isa::Portable, Isa::Avx2, Isa::Avx512];
            }
            if has!("avx2") {
                return &[Isa::Portable, Isa::Avx2];
            }
        }
        &[Isa::Portable]
    }

    /// The name of the instruction set, as accepted by `ZO_SAMPLER_ISA`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }
}

/// A way of generating one group of elements of a stream.
///
/// The hot loops are monomorphised per generator so that each contains the code of one
/// distribution only (a loop that could take either branch keeps fewer values in registers).
trait Generator {
    /// Elements `GROUP·g .. GROUP·g + GROUP` of `stream` into `out`.
    #[inline(always)]
    fn group(stream: &Stream, g: u64, out: &mut [f32; GROUP]) {
        Self::emit(stream, g, out, Set);
    }

    /// Elements `GROUP·g .. GROUP·g + GROUP` of `stream`, `z[k]`, combined into `out[k]` by
    /// `sink` (so that the common sweeps need no extra pass over a buffer).
    fn emit<T: Copy, S: Sink<T>>(stream: &Stream, g: u64, out: &mut [T; GROUP], sink: S);
}

/// How a generated value `z` is written to its slot `o`.
trait Sink<T>: Copy {
    /// The new value of the slot.
    fn put(self, o: T, z: f32) -> T;
}

/// `o = z`.
#[derive(Clone, Copy)]
struct Set;

impl Sink<f32> for Set {
    #[inline(always)]
    fn put(self, _: f32, z: f32) -> f32 {
        z
    }
}

/// `o = c·z`.
#[derive(Clone, Copy)]
struct Scaled(f32);

impl Sink<f32> for Scaled {
    #[inline(always)]
    fn put(self, _: f32, z: f32) -> f32 {
        self.0 * z
    }
}

/// `o = E::from_f32(o.to_f32() + c·z)`: a single-term sweep straight into the parameters (for
/// `E = f32` also the accumulation of a further term into a sum).
#[derive(Clone, Copy)]
struct AddScaled(f32);

impl<E: Element> Sink<E> for AddScaled {
    #[inline(always)]
    fn put(self, o: E, z: f32) -> E {
        E::from_f32(o.to_f32() + self.0 * z)
    }
}

/// [`Distribution::Normal`]: element `32·q + j` of group `g` is output `q` of block `32·g + j`
/// (see the crate documentation), so that every output is a contiguous run of lanes and nothing
/// is transposed.
struct Normal;

impl Generator for Normal {
    #[inline(always)]
    fn emit<T: Copy, S: Sink<T>>(stream: &Stream, g: u64, out: &mut [T; GROUP], sink: S) {
        let key = stream.philox_key();
        let [c2, c3] = stream.counter_high();
        // Blocks 32·g .. 32·g + 32 share the high word of the block index.
        let first = g.wrapping_mul(LANES as u64);
        let lo = first as u32;
        let c0: [u32; LANES] = core::array::from_fn(|j| lo + j as u32);
        let [x0, x1, x2, x3] = philox4x32_10_lanes(c0, (first >> 32) as u32, c2, c3, key);
        for j in 0..LANES {
            let [a, b] = transform::box_muller(x0[j], x1[j]);
            out[j] = sink.put(out[j], a);
            out[LANES + j] = sink.put(out[LANES + j], b);
            let [a, b] = transform::box_muller(x2[j], x3[j]);
            out[2 * LANES + j] = sink.put(out[2 * LANES + j], a);
            out[3 * LANES + j] = sink.put(out[3 * LANES + j], b);
        }
    }
}

/// [`Distribution::Rademacher`]: group `g` is the 128 bits of block `g`, word by word, least
/// significant bit first.
struct Rademacher;

impl Generator for Rademacher {
    #[inline(always)]
    fn emit<T: Copy, S: Sink<T>>(stream: &Stream, g: u64, out: &mut [T; GROUP], sink: S) {
        let [c2, c3] = stream.counter_high();
        let x = philox4x32_10([g as u32, (g >> 32) as u32, c2, c3], stream.philox_key());
        for i in 0..32 {
            let bit = i as u32;
            for w in 0..4 {
                out[32 * w + i] = sink.put(out[32 * w + i], transform::rademacher(x[w], bit));
            }
        }
    }
}

/// Either distribution, chosen per stream (sweeps mixing distributions).
struct Any;

impl Generator for Any {
    #[inline(always)]
    fn emit<T: Copy, S: Sink<T>>(stream: &Stream, g: u64, out: &mut [T; GROUP], sink: S) {
        match stream.distribution() {
            Distribution::Normal => Normal::emit(stream, g, out, sink),
            Distribution::Rademacher => Rademacher::emit(stream, g, out, sink),
        }
    }
}

/// The number of groups in the index space `0 .. 2^64` (indices wrap around modulo 2^64).
const GROUPS: u64 = 1 << (64 - GROUP.trailing_zeros());

/// Group `first + i`, modulo the number of groups.
#[inline(always)]
fn nth_group(first: u64, i: usize) -> u64 {
    first.wrapping_add(i as u64) & (GROUPS - 1)
}

/// Splits `len` elements starting at index `offset` into a partial head group, whole groups and
/// a partial tail group: returns `(head, body)`, the numbers of elements in the head and in the
/// whole groups.
#[inline(always)]
fn split(offset: u64, len: usize) -> (usize, usize) {
    let lo = (offset % GROUP as u64) as usize;
    let head = if lo == 0 { 0 } else { (GROUP - lo).min(len) };
    let body = (len - head) / GROUP * GROUP;
    (head, body)
}

/// Elements `offset .. offset + out.len()` of `stream` into `out`, where the range lies within
/// one group.
#[inline(always)]
fn fill_partial<G: Generator>(stream: &Stream, offset: u64, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let mut buf = [0f32; GROUP];
    G::group(stream, offset / GROUP as u64, &mut buf);
    let lo = (offset % GROUP as u64) as usize;
    out.copy_from_slice(&buf[lo..lo + out.len()]);
}

#[inline(always)]
fn fill_with<G: Generator>(stream: &Stream, offset: u64, out: &mut [f32]) {
    let (head, body) = split(offset, out.len());
    let (h, rest) = out.split_at_mut(head);
    let (b, t) = rest.split_at_mut(body);
    fill_partial::<G>(stream, offset, h);
    let first = offset.wrapping_add(head as u64) / GROUP as u64;
    for (i, chunk) in b.chunks_exact_mut(GROUP).enumerate() {
        let chunk: &mut [f32; GROUP] = chunk.try_into().unwrap();
        G::group(stream, nth_group(first, i), chunk);
    }
    fill_partial::<G>(stream, offset.wrapping_add((head + body) as u64), t);
}

#[inline(always)]
fn fill_body(stream: &Stream, offset: u64, out: &mut [f32]) {
    match stream.distribution() {
        Distribution::Normal => fill_with::<Normal>(stream, offset, out),
        Distribution::Rademacher => fill_with::<Rademacher>(stream, offset, out),
    }
}

/// `acc[k] = Σⱼ cⱼ·zⱼ(GROUP·g + k)`, summed in term order; `terms` is not empty.
#[inline(always)]
fn combine<G: Generator>(terms: &[Term], g: u64, acc: &mut [f32; GROUP]) {
    let (first, rest) = terms.split_first().expect("at least one term");
    G::emit(&first.stream, g, acc, Scaled(first.coeff));
    for t in rest {
        G::emit(&t.stream, g, acc, AddScaled(t.coeff));
    }
}

/// The sweep over positions `0 .. params.len()` (elements `offset ..`), which lie within one
/// group.
#[inline(always)]
fn sweep_partial<G: Generator, E: Element>(
    params: &mut [E],
    offset: u64,
    terms: &[Term],
    scale: Option<&[f32]>,
) {
    if params.is_empty() {
        return;
    }
    let mut acc = [0f32; GROUP];
    combine::<G>(terms, offset / GROUP as u64, &mut acc);
    let lo = (offset % GROUP as u64) as usize;
    let acc = &mut acc[lo..lo + params.len()];
    if let Some(scale) = scale {
        for (a, s) in acc.iter_mut().zip(scale) {
            *a *= *s;
        }
    }
    E::add_f32_slice(params, acc);
}

#[inline(always)]
fn sweep_with<G: Generator, E: Element>(
    params: &mut [E],
    offset: u64,
    terms: &[Term],
    scale: Option<&[f32]>,
) {
    let (head, body) = split(offset, params.len());
    let (h, rest) = params.split_at_mut(head);
    let (b, t) = rest.split_at_mut(body);
    let scale_at = |from: usize, len: usize| scale.map(|s| &s[from..from + len]);
    sweep_partial::<G, E>(h, offset, terms, scale_at(0, head));
    let first = offset.wrapping_add(head as u64) / GROUP as u64;
    // One term without scale, on storage with cheap conversions: `p = E::from_f32(p + c·z)`
    // straight into the parameters.
    if let ([term], None, true) = (terms, scale, E::INLINE_CONVERSIONS) {
        for (i, chunk) in b.chunks_exact_mut(GROUP).enumerate() {
            let chunk: &mut [E; GROUP] = chunk.try_into().unwrap();
            G::emit(
                &term.stream,
                nth_group(first, i),
                chunk,
                AddScaled(term.coeff),
            );
        }
    } else {
        sweep_groups::<G, E>(b, first, terms, scale.map(|s| &s[head..head + body]));
    }
    let tail_offset = offset.wrapping_add((head + body) as u64);
    sweep_partial::<G, E>(t, tail_offset, terms, scale_at(head + body, t.len()));
}

/// The sweep over whole groups `first ..` covering `params`.
#[inline(always)]
fn sweep_groups<G: Generator, E: Element>(
    params: &mut [E],
    first: u64,
    terms: &[Term],
    scale: Option<&[f32]>,
) {
    let mut acc = [0f32; GROUP];
    for (i, chunk) in params.chunks_exact_mut(GROUP).enumerate() {
        combine::<G>(terms, nth_group(first, i), &mut acc);
        if let Some(scale) = scale {
            for (a, s) in acc.iter_mut().zip(&scale[i * GROUP..(i + 1) * GROUP]) {
                *a *= *s;
            }
        }
        E::add_f32_slice(chunk, &acc);
    }
}

#[inline(always)]
fn sweep_body<E: Element>(params: &mut [E], offset: u64, terms: &[Term], scale: Option<&[f32]>) {
    let Some(first) = terms.first() else {
        return;
    };
    let dist = first.stream.distribution();
    if terms.iter().any(|t| t.stream.distribution() != dist) {
        sweep_with::<Any, E>(params, offset, terms, scale);
    } else {
        match dist {
            Distribution::Normal => sweep_with::<Normal, E>(params, offset, terms, scale),
            Distribution::Rademacher => sweep_with::<Rademacher, E>(params, offset, terms, scale),
        }
    }
}

/// Compiles the fill and sweep bodies for one instruction set.
macro_rules! compile_for {
    ($fill:ident, $sweep:ident $(, $feature:literal)?) => {
        $(#[target_feature(enable = $feature)])?
        fn $fill(stream: &Stream, offset: u64, out: &mut [f32]) {
            fill_body(stream, offset, out);
        }

        $(#[target_feature(enable = $feature)])?
        fn $sweep<E: Element>(
            params: &mut [E],
            offset: u64,
            terms: &[Term],
            scale: Option<&[f32]>,
        ) {
            sweep_body(params, offset, terms, scale);
        }
    };
}

compile_for!(fill_portable, sweep_portable);
#[cfg(target_arch = "x86_64")]
compile_for!(fill_avx2, sweep_avx2, "avx2");
#[cfg(target_arch = "x86_64")]
compile_for!(
    fill_avx512,
    sweep_avx512,
    "avx512f,avx512vl,avx512bw,avx512dq"
);

/// [`Stream::fill`] with the given instruction set.
pub(crate) fn fill(isa: Isa, stream: &Stream, offset: u64, out: &mut [f32]) {
    match isa {
        Isa::Portable => fill_portable(stream, offset, out),
        // SAFETY: every caller passes `Isa::detect()` or an element of `Isa::available()`, which
        // contain `Isa::Avx2` only when `is_x86_feature_detected!("avx2")` returned true.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { fill_avx2(stream, offset, out) },
        // SAFETY: as above, `Isa::Avx512` only when all four features were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { fill_avx512(stream, offset, out) },
    }
}

/// The serial sweep with the given instruction set; `scale`, if any, has `params.len()` elements.
pub(crate) fn sweep<E: Element>(
    isa: Isa,
    params: &mut [E],
    offset: u64,
    terms: &[Term],
    scale: Option<&[f32]>,
) {
    match isa {
        Isa::Portable => sweep_portable(params, offset, terms, scale),
        // SAFETY: every caller passes `Isa::detect()` or an element of `Isa::available()`, which
        // contain `Isa::Avx2` only when `is_x86_feature_detected!("avx2")` returned true.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { sweep_avx2(params, offset, terms, scale) },
        // SAFETY: as above, `Isa::Avx512` only when all four features were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { sweep_avx512(params, offset, terms, scale) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DirectionKey, TensorId};

    fn streams() -> Vec<Stream> {
        let key = DirectionKey::new(0x5eed, 12, 3);
        vec![
            key.stream(TensorId::from_name("a"), Distribution::Normal),
            key.stream(TensorId::from_name("b"), Distribution::Rademacher),
            DirectionKey::new(1, 2, 0).stream(TensorId(9), Distribution::Normal),
        ]
    }

    /// Offsets near group boundaries, near the top of the index range (wrapping) and odd ones.
    const OFFSETS: [u64; 6] = [0, 1, 127, 128 * 5 + 77, u64::MAX - 300, (1 << 40) + 3];

    #[test]
    fn every_instruction_set_fills_identical_bits() {
        let isas = Isa::available();
        for s in streams() {
            for offset in OFFSETS {
                for len in [0, 1, 5, 128, 129, 1000] {
                    let mut want = vec![0f32; len];
                    fill(Isa::Portable, &s, offset, &mut want);
                    for (i, w) in want.iter().enumerate() {
                        assert_eq!(w.to_bits(), s.at(offset.wrapping_add(i as u64)).to_bits());
                    }
                    for &isa in isas {
                        let mut got = vec![0f32; len];
                        fill(isa, &s, offset, &mut got);
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{isa:?} offset {offset} len {len}");
                    }
                }
            }
        }
    }

    fn check_sweeps<E: Element + PartialEq + core::fmt::Debug>(init: impl Fn(usize) -> E) {
        let s = streams();
        let term_sets = [
            vec![Term::new(0.25, s[0])],
            vec![Term::new(-1.5, s[1])],
            vec![Term::new(0.5, s[0]), Term::new(-0.75, s[2])],
            vec![
                Term::new(0.5, s[0]),
                Term::new(2.0, s[1]),
                Term::new(-0.1, s[2]),
            ],
        ];
        for terms in &term_sets {
            for offset in OFFSETS {
                for len in [1, 3, 128, 300] {
                    let scale: Vec<f32> = (0..len).map(|i| 0.5 + i as f32 * 0.01).collect();
                    for sc in [None, Some(&scale[..])] {
                        let base: Vec<E> = (0..len).map(&init).collect();
                        let mut want = base.clone();
                        sweep(Isa::Portable, &mut want, offset, terms, sc);
                        for &isa in Isa::available() {
                            let mut got = base.clone();
                            sweep(isa, &mut got, offset, terms, sc);
                            assert_eq!(got, want, "{isa:?} offset {offset} len {len}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_instruction_set_sweeps_identical_bits() {
        check_sweeps(|i| i as f32 * 0.37 - 20.0);
        check_sweeps(|i| half::bf16::from_f32(i as f32 * 0.37 - 20.0));
        check_sweeps(|i| half::f16::from_f32(i as f32 * 0.37 - 20.0));
    }

    #[test]
    fn instruction_set_names_round_trip() {
        for &isa in Isa::available() {
            assert!(Isa::ALL.iter().any(|i| i.name() == isa.name()));
        }
        assert!(Isa::available().contains(&Isa::detect()));
    }
}
