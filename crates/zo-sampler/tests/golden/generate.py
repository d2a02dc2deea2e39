#!/usr/bin/env python3
"""Generator of the constants of `crates/zo-sampler/tests/golden.rs`.

An implementation of the generator specified in the crate README ("Specification"), written
from that text alone in plain Python 3 (standard library only):

* 64-bit FNV-1a tensor identities; the two hash chains (SplitMix64's finaliser, MurmurHash3's
  fmix64) that give the Philox key and the high counter words;
* Philox4x32-10 with Python integers masked to 32 bits;
* the element layout of normal and Rademacher streams;
* Box-Muller with the README's `minus_two_ln` and `sin_cos_turn`, every binary32 operation
  rounded on its own (see `f32` below).

Binary32 arithmetic: the operands are binary32 values held in Python floats (binary64). A
product of two of them is exact in binary64; a sum, difference, quotient or square root is
rounded once to binary64 and then once to binary32 by `f32`. Rounding twice this way equals
rounding once to binary32 for + - * / and sqrt, because 53 >= 2*24 + 2 (Figueroa, "When is
double rounding innocuous?", SIGNUM 1995). `f32` rounds to nearest, ties to even (the C cast
inside `struct.pack`). No fused multiply-add is involved anywhere.

Run (from the repository root):

    python3 crates/zo-sampler/tests/golden/generate.py          # print the constants
    python3 crates/zo-sampler/tests/golden/generate.py --check  # and check golden.rs has them

The output is Rust, in the form the test writes each constant; `--check` verifies that every
printed line occurs in golden.rs (whitespace ignored) and exits non-zero otherwise.
"""

import math
import os
import struct
import sys

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


# ---------------------------------------------------------------- binary32 helpers


def f32(x):
    """Round a Python float to the nearest binary32 value (ties to even)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def from_bits(b):
    return struct.unpack("<f", struct.pack("<I", b & M32))[0]


def add(a, b):
    return f32(a + b)


def sub(a, b):
    return f32(a - b)


def mul(a, b):
    return f32(a * b)


def div(a, b):
    return f32(a / b)


def sqrt(a):
    return f32(math.sqrt(a))


def flip_sign(x, flip):
    return from_bits(bits(x) ^ (0x80000000 if flip else 0))


# ---------------------------------------------------------------- keys and Philox


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def mix_a(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix_b(z):
    z = ((z ^ (z >> 33)) * 0xFF51AFD7ED558CCD) & M64
    z = ((z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53) & M64
    return z ^ (z >> 33)


def stream_key(seed, step, direction, tensor):
    """(Philox key [k0, k1], high counter words [c2, c3])."""
    a, b = 0x243F6A8885A308D3, 0x13198A2E03707344
    for v in (seed, step, direction, tensor):
        a = mix_a(a ^ v)
        b = mix_b(b ^ v)
    return [a & M32, a >> 32], [b & M32, b >> 32]


M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def philox(ctr, key):
    x0, x1, x2, x3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0 = M0 * x0
        p1 = M1 * x2
        x0, x1, x2, x3 = (
            (p1 >> 32) ^ x1 ^ k0,
            p1 & M32,
            (p0 >> 32) ^ x3 ^ k1,
            p0 & M32,
        )
        k0 = (k0 + W0) & M32
        k1 = (k1 + W1) & M32
    return [x0, x1, x2, x3]


class Stream:
    def __init__(self, seed, step, direction, name):
        self.key, self.hi = stream_key(seed, step, direction, fnv1a(name))
        self.cache = {}

    def block(self, n):
        n &= M64
        if n not in self.cache:
            self.cache[n] = philox([n & M32, n >> 32, self.hi[0], self.hi[1]], self.key)
        return self.cache[n]

    def normal(self, i):
        i &= M64
        g, q, j = i >> 7, (i >> 5) & 3, i & 31
        x = self.block(32 * g + j)
        pair = box_muller(x[0], x[1]) if q < 2 else box_muller(x[2], x[3])
        return pair[q & 1]

    def rademacher(self, i):
        i &= M64
        word = self.block(i >> 7)[(i >> 5) & 3]
        return rademacher(word, i & 31)


# ---------------------------------------------------------------- transforms

TWO_M24 = 2.0**-24
TWO_M21 = 2.0**-21
SQRT_HALF_BITS = 0x3F3504F3
Q0, Q1, Q2 = from_bits(0xBFAAAAAE), from_bits(0xBF4CBE18), from_bits(0xBF177308)
L_HI, L_LO = from_bits(0xBFB17200), from_bits(0xB63FBE8E)
S0, S1, S2, S3 = (
    from_bits(0x3F490FDB),
    from_bits(0xBDA55DDD),
    from_bits(0x3B232F62),
    from_bits(0xB816CDA0),
)


def uniform_open_closed(x):
    return mul(float((x >> 8) + 1), TWO_M24)  # exact


def minus_two_ln(x):
    ix = (bits(x) - SQRT_HALF_BITS) & M32
    e = (ix - (1 << 32) if ix & 0x80000000 else ix) >> 23  # arithmetic shift of the i32
    f = from_bits((ix & 0x7FFFFF) + SQRT_HALF_BITS)
    d = sub(f, 1.0)
    s = div(d, add(2.0, d))
    z = mul(s, s)
    q = mul(mul(s, z), add(Q0, mul(z, add(Q1, mul(z, Q2)))))
    ef = f32(float(e))
    return add(mul(ef, L_HI), add(mul(ef, L_LO), add(mul(s, -4.0), q)))


def sin_cos_turn(k):
    k &= 0xFFFFFF
    o = k >> 21
    r = k & 0x1FFFFF
    j = 0x200000 - r if o & 1 else r
    y = mul(float(j), TWO_M21)
    w = mul(y, y)
    s = mul(y, add(S0, mul(w, add(S1, mul(w, add(S2, mul(w, S3)))))))
    c = sqrt(sub(1.0, mul(s, s)))
    sn, cs = (c, s) if (o + 1) & 2 else (s, c)
    return flip_sign(sn, o & 4), flip_sign(cs, (o + 2) & 4)


def box_muller(a, b):
    r = sqrt(minus_two_ln(uniform_open_closed(a)))
    s, c = sin_cos_turn(b >> 8)
    return [mul(r, c), mul(r, s)]


def rademacher(word, bit):
    return -1.0 if (word >> (bit & 31)) & 1 else 1.0


# ---------------------------------------------------------------- Rust formatting


def h32(v):
    s = f"{v:08x}"
    return f"0x{s[:4]}_{s[4:]}"


def h64(v):
    s = f"{v:016x}"
    return "0x" + "_".join(s[i : i + 4] for i in range(0, 16, 4))


def arr(vs):
    return "[" + ", ".join(h32(v) for v in vs) + "]"


def rust_f32(x):
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    return repr(x)


def fold(values):
    h = 0
    for v in values:
        h = ((h ^ bits(v)) * 0x100000001B3) & M64
    return h


# ---------------------------------------------------------------- the constants


def lines():
    out = []
    say = out.append
    q_name = "model.layers.0.self_attn.q_proj.weight"

    say("// philox_matches_the_random123_known_answers (Random123's kat_vectors; recomputed here)")
    for ectr, ekey, ctr, key in [
        ("[0; 4]", "[0; 2]", [0] * 4, [0] * 2),
        ("[u32::MAX; 4]", "[u32::MAX; 2]", [M32] * 4, [M32] * 2),
        (None, None, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]),
    ]:
        ectr, ekey = ectr or arr(ctr), ekey or arr(key)
        say(f"philox4x32_10({ectr}, {ekey}) == {arr(philox(ctr, key))}")

    say("// tensor_ids_are_fnv1a_of_the_name")
    for name in ["", "a", q_name]:
        say(f'TensorId::from_name("{name}"), TensorId({h64(fnv1a(name))})')

    say("// key_derivation")
    s = Stream(42, 7, 3, q_name)
    say(f"s.philox_key(), {arr(s.key)}")
    say(f"s.counter_high(), {arr(s.hi)}")
    say(f"s.block_bits(0), {arr(s.block(0))}")
    extreme = Stream(M64, M64, M32, "")
    say(f"extreme.philox_key(), {arr(extreme.key)}")
    say(f"extreme.counter_high(), {arr(extreme.hi)}")

    say("// normal_stream_values")
    for expr, i in [
        ("0", 0),
        ("1", 1),
        ("2", 2),
        ("31", 31),
        ("32", 32),
        ("33", 33),
        ("64", 64),
        ("96", 96),
        ("127", 127),
        ("128", 128),
        ("129", 129),
        ("1_000_003", 1_000_003),
        ("(1 << 40) + 5", (1 << 40) + 5),
        ("u64::MAX", M64),
    ]:
        say(f"({expr}, {h32(bits(s.normal(i)))}),")

    say("// normal_stream_folds")
    say(f"fold(&v), {h64(fold([s.normal(i) for i in range(4096)]))}")
    say(f"fold(&v), {h64(fold([extreme.normal(M64 - 1999 + i) for i in range(2000)]))}")

    say("// rademacher_stream_values")
    for expr, i in [
        ("0", 0),
        ("1", 1),
        ("31", 31),
        ("32", 32),
        ("100", 100),
        ("127", 127),
        ("128", 128),
        ("u64::MAX", M64),
    ]:
        say(f"({expr}, {rust_f32(s.rademacher(i))}),")
    negatives = sum(1 for i in range(4096) if s.rademacher(i) < 0)
    say(f"v.iter().filter(|x| **x < 0.0).count(), {negatives}")

    say("// transform_values")
    for ea, eb, a, b in [
        ("0", "0", 0, 0),
        ("u32::MAX", "u32::MAX", M32, M32),
        ("0x1234_5678", "0x9abc_def0", 0x12345678, 0x9ABCDEF0),
        ("0x8000_0000", "0x4000_0000", 0x80000000, 0x40000000),
    ]:
        say(f"bm({ea}, {eb}), {arr([bits(v) for v in box_muller(a, b)])}")
    for expr, k in [("0", 0), ("1 << 22", 1 << 22), ("1 << 23", 1 << 23), ("3 << 22", 3 << 22)]:
        sn, cs = sin_cos_turn(k)
        say(f"sin_cos_turn({expr}), ({rust_f32(sn)}, {rust_f32(cs)})")
    u = uniform_open_closed(0x1FF)
    assert u == 2.0 * 2.0**-24
    say("uniform_open_closed(0x0000_01ff), 2.0 * 2f32.powi(-24)")
    say(f"rademacher(0b10, 1), {rust_f32(rademacher(0b10, 1))}")
    say(f"rademacher(0b10, 0), {rust_f32(rademacher(0b10, 0))}")
    return out


def check(out):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden.rs")
    with open(path, encoding="utf-8") as fh:
        text = "".join(fh.read().split())
    missing = 0
    for line in out:
        if line.startswith("//"):
            continue
        # `a == b` stands for `assert_eq!(a, b)` spread over several lines by rustfmt.
        needle = "".join(line.replace(" == ", ", ").split())
        if needle not in text:
            print(f"not in golden.rs: {line}", file=sys.stderr)
            missing += 1
    checked = sum(1 for line in out if not line.startswith("//"))
    if missing:
        print(f"{missing} of {checked} constants differ from golden.rs", file=sys.stderr)
        sys.exit(1)
    print(f"all {checked} constants match golden.rs", file=sys.stderr)


def main():
    out = lines()
    print("\n".join(out))
    if "--check" in sys.argv[1:]:
        check(out)


if __name__ == "__main__":
    main()
