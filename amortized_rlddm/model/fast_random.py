"""A small explicit-state random generator for compiled kernels (xoshiro256+).

Numba's built-in generator is a global Mersenne Twister; this one is several times faster
per draw and its whole state is an array the caller owns, so a seed fully determines a
simulation and no hidden state leaks between calls.
"""

import math

import numba as nb
import numpy as np

_MASK64 = (1 << 64) - 1


def new_state(seed):
    """Generator state (4 x uint64) from an integer seed, expanded with splitmix64."""
    x = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
    words = []
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        words.append(z ^ (z >> 31))
    return np.array(words, dtype=np.uint64)


@nb.njit(inline="always")
def uniform(state):
    """A uniform draw in [0, 1) with 53 random bits."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    result = s0 + s3
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << np.uint64(45)) | (s3 >> np.uint64(19))
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return float(result >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(inline="always")
def chi_square_1(state):
    """The square of a standard normal draw (Box-Muller radius times cos^2 of its angle)."""
    u = 1.0 - uniform(state)  # in (0, 1]
    c = math.cos(2.0 * math.pi * uniform(state))
    return -2.0 * math.log(u) * c * c
