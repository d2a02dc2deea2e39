#!/usr/bin/env python3
"""Generator of the pinned permutations of `zo_sampler::permutation` (the `permutation_is_pinned`
unit test in `crates/zo-sampler/src/shuffle.rs` and the example in `crates/zo-data/README.md`).

Plain Python 3 with arbitrary-precision integers reduced modulo 2^64, written from the algorithm
the module documents: SplitMix64 (Steele, Lea and Flood 2014; the constants of Vigna's
`splitmix64.c`: the state advances by 0x9E3779B97F4A7C15, the output is the state through
`z = (z ^ z>>30)*0xBF58476D1CE4E5B9; z = (z ^ z>>27)*0x94D049BB133111EB; z ^ z>>31`),
an unbiased integer in 0..n by rejection (words above the largest multiple of n minus one are
drawn again, then `x mod n`), and the Fisher-Yates shuffle from the last position down, position i
swapped with a uniform position in 0..=i.

Run (from the repository root):

    python3 crates/zo-sampler/tests/golden/permutation.py            # permutation(10, 42)
    python3 crates/zo-sampler/tests/golden/permutation.py N SEED     # any other

It also prints the first five SplitMix64 words of seed 1234567, which Vigna's `splitmix64.c`
gives too (the `splitmix64_matches_the_reference_sequence` unit test), as a check of the
generator itself.
"""

import sys

M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, n):
        if n == 0:
            return 0
        # Accept x < floor(2^64 / n) * n: every residue is then equally likely.
        limit = ((1 << 64) // n) * n
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n


def permutation(n, seed):
    items = list(range(n))
    rng = SplitMix64(seed)
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        items[i], items[j] = items[j], items[i]
    return items


def main():
    args = sys.argv[1:]
    n, seed = (int(args[0]), int(args[1])) if len(args) == 2 else (10, 42)
    g = SplitMix64(1234567)
    words = [g.next_u64() for _ in range(5)]
    print("splitmix64(1234567): " + ", ".join(f"{w:_}" for w in words))
    print(f"permutation({n}, {seed}) = {permutation(n, seed)}")


if __name__ == "__main__":
    main()
