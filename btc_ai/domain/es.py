"""OpenAI-ES as a functional algorithm: fixed settings in :class:`OpenAIES`, everything that changes in
an immutable :class:`ESState`; ``ask`` and ``tell`` return numbers and never log them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from btc_ai.domain.errors import NaNError
from btc_ai.domain.metric_names import (
    METRIC_ES_GRAD_NORM,
    METRIC_ES_PARAM_NORM,
    METRIC_FITNESS_MAX,
    METRIC_FITNESS_MEAN,
    METRIC_FITNESS_STD,
)
from btc_ai.domain.noise import gather_slices, member_sign, noise_table, pair_offsets


def centered_ranks(values: np.ndarray) -> np.ndarray:
    """Fitness shaping: ranks scaled to [-0.5, 0.5] (ties broken by position, deterministically)."""
    values = np.asarray(values)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values), dtype=np.float64)
    if len(values) > 1:
        ranks /= len(values) - 1
    return ranks - 0.5


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float32, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class ESState:
    """Everything of the search that changes per generation.

    ``generation`` counts completed generations; ``best_*`` hold the best policy by validation reward
    (``best_generation`` 0 and reward -inf until the first validation).
    """

    params: np.ndarray
    m: np.ndarray
    v: np.ndarray
    generation: int = 0
    best_params: np.ndarray | None = None
    best_reward: float = float("-inf")
    best_generation: int = 0

    def __post_init__(self) -> None:
        for name in ("params", "m", "v", "best_params"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value))

    def with_best(self, params: np.ndarray, reward: float) -> ESState:
        return dataclasses.replace(self, best_params=params, best_reward=float(reward), best_generation=self.generation)


@dataclass(frozen=True)
class Perturbations:
    """The population of one generation: which table slice and sign each member uses."""

    generation: int
    offsets: np.ndarray  # one per mirrored pair

    @property
    def population(self) -> int:
        return 2 * len(self.offsets)


@dataclass(frozen=True)
class OpenAIES:
    """OpenAI-ES with mirrored sampling, centered ranks, weight decay and Adam on the ES gradient."""

    dim: int
    population: int
    sigma: float
    learning_rate: float
    weight_decay: float
    seed: int
    table_size: int
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be even and >= 2, got {self.population}")

    @property
    def table(self) -> np.ndarray:
        return noise_table(self.seed, self.table_size)

    def init(self, params: np.ndarray) -> ESState:
        zeros = np.zeros(self.dim, dtype=np.float32)
        return ESState(params=params, m=zeros, v=zeros)

    def ask(self, generation: int) -> Perturbations:
        """The perturbations of ``generation``: a pure function of (seed, generation)."""
        offsets = pair_offsets(self.seed, generation, self.population // 2, self.dim, self.table_size)
        return Perturbations(generation, offsets)

    def member_params(self, params: np.ndarray, perturbations: Perturbations, members: np.ndarray) -> np.ndarray:
        """Parameters of the given members, (len(members), dim) float32."""
        members = np.asarray(members, dtype=np.int64)
        out = gather_slices(self.table, perturbations.offsets[members // 2], self.dim)  # a fresh copy
        scale = np.where(members % 2 == 0, self.sigma, -self.sigma).astype(np.float32)[:, None]
        np.multiply(out, scale, out=out)
        np.add(out, params, out=out)
        return out

    def member_noise(self, perturbations: Perturbations, member: int) -> np.ndarray:
        """One member's unit-variance noise direction (with its sign)."""
        offset = int(perturbations.offsets[member // 2])
        return member_sign(member) * self.table[offset : offset + self.dim]

    def tell(self, state: ESState, perturbations: Perturbations, fitness: np.ndarray) -> tuple[ESState, dict[str, float]]:
        """One Adam step along the rank-shaped ES gradient; raises NaNError on non-finite numbers."""
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (self.population,):
            raise ValueError(f"expected {self.population} fitness values, got shape {fitness.shape}")
        bad = np.flatnonzero(~np.isfinite(fitness))
        if bad.size:
            raise NaNError(f"non-finite fitness for members {bad[:5].tolist()} in generation {perturbations.generation + 1}")
        shaped = centered_ranks(fitness)
        pair_weights = (shaped[0::2] - shaped[1::2]).astype(np.float32)
        noise = gather_slices(self.table, perturbations.offsets, self.dim)
        # torch, not numpy's BLAS: OpenBLAS threads left spinning after a numpy matmul compete with
        # torch's threads in the next evaluation and slow it down.
        grad = (torch.from_numpy(pair_weights) @ torch.from_numpy(noise)).numpy()
        grad = grad / np.float32(self.population * self.sigma)
        if not np.all(np.isfinite(grad)):
            raise NaNError(f"non-finite ES gradient in generation {perturbations.generation + 1}", key="SIGMA")
        grad = grad - np.float32(self.weight_decay) * state.params
        t = state.generation + 1
        m = np.float32(self.beta1) * state.m + np.float32(1 - self.beta1) * grad
        v = np.float32(self.beta2) * state.v + np.float32(1 - self.beta2) * grad * grad
        m_hat = m / np.float32(1 - self.beta1**t)
        v_hat = v / np.float32(1 - self.beta2**t)
        step = np.float32(self.learning_rate) * m_hat / (np.sqrt(v_hat) + np.float32(self.epsilon))
        params = state.params + step
        if not np.all(np.isfinite(params)):
            raise NaNError(f"non-finite parameters after the update of generation {t}", key="LEARNING_RATE")
        new_state = dataclasses.replace(state, params=params, m=m, v=v, generation=t)
        metrics = {
            METRIC_FITNESS_MEAN: float(fitness.mean()),
            METRIC_FITNESS_MAX: float(fitness.max()),
            METRIC_FITNESS_STD: float(fitness.std()),
            METRIC_ES_GRAD_NORM: float(np.linalg.norm(grad)),
            METRIC_ES_PARAM_NORM: float(np.linalg.norm(params)),
        }
        return new_state, metrics
