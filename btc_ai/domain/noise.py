"""The shared ES noise table and the seeded draws that pick each member's slice of it.

As in Salimans et al. (2017), members do not sample fresh normals: each takes a slice of one fixed
table of standard normals. A member's perturbation is then fully described by (seed, generation,
member index), which is all a remote worker needs to rebuild it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from btc_ai.domain.errors import BtcAiError

_TABLE_STREAM = 0x7AB1E
_OFFSET_STREAM = 0x0FF5E7


class NoiseTableTooSmall(BtcAiError, ValueError):
    """The policy has more parameters than the noise table holds (``key`` NOISE_TABLE_SIZE)."""


def generation_rng(seed: int, generation: int, stream: int) -> np.random.Generator:
    """The random generator of one purpose (``stream``) in generation ``generation``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, generation, stream])))


@lru_cache(maxsize=4)
def noise_table(seed: int, size: int) -> np.ndarray:
    """``size`` standard normals (float32, read-only), the same for the same (seed, size) everywhere."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _TABLE_STREAM])))
    table = rng.standard_normal(size, dtype=np.float32)
    table.flags.writeable = False
    return table


def pair_offsets(seed: int, generation: int, pairs: int, dim: int, table_size: int) -> np.ndarray:
    """Start of each mirrored pair's slice in the table for ``generation`` (int64, length ``pairs``)."""
    if dim > table_size:
        raise NoiseTableTooSmall(f"policy has {dim} parameters but the noise table only {table_size}; raise "
                                 "NOISE_TABLE_SIZE", key="NOISE_TABLE_SIZE")
    return generation_rng(seed, generation, _OFFSET_STREAM).integers(0, table_size - dim + 1, size=pairs)


def member_sign(member: int) -> float:
    """Members 2j and 2j+1 share slice j with opposite signs (antithetic sampling)."""
    return 1.0 if member % 2 == 0 else -1.0


def gather_slices(table: np.ndarray, offsets: np.ndarray, dim: int) -> np.ndarray:
    """Rows table[o : o+dim] for each offset, as a (len(offsets), dim) array."""
    return np.lib.stride_tricks.sliding_window_view(table, dim)[offsets]
