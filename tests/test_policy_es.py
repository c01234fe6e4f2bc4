"""Policy and ES: batched forward == module forward, determinism, perturbations rebuilt from indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from btc_ai.domain.errors import NaNError
from btc_ai.domain.es import OpenAIES, centered_ranks
from btc_ai.domain.noise import noise_table
from btc_ai.domain.policy import PolicyNet, PolicySpec, batched_actions


def test_batched_actions_equal_each_members_module_forward() -> None:
    spec = PolicySpec(n_inputs=7, hidden_size=32, hidden_layers=2)
    rng = np.random.default_rng(0)
    flat = rng.standard_normal((5, spec.n_params)).astype(np.float32) * 0.3
    x = torch.from_numpy(rng.standard_normal((200, 7)).astype(np.float32))
    actions = batched_actions(spec, torch.from_numpy(flat), x)
    for member in range(5):
        net = PolicyNet(spec).load_flat(flat[member])
        assert torch.equal(actions[member], net(x).argmax(dim=-1))
        np.testing.assert_array_equal(net.flat_params(), flat[member])


def test_init_params_are_deterministic_per_seed() -> None:
    spec = PolicySpec(10, 16)
    np.testing.assert_array_equal(spec.init_params(1), spec.init_params(1))
    assert not np.array_equal(spec.init_params(1), spec.init_params(2))
    assert spec.init_params(1).shape == (spec.n_params,)
    assert spec.n_params == 10 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3


def test_centered_ranks() -> None:
    np.testing.assert_allclose(centered_ranks(np.array([10.0, -3.0, 2.0])), [0.5, -0.5, 0.0])


def _es(seed: int = 1, dim: int = 50, population: int = 16) -> OpenAIES:
    return OpenAIES(dim=dim, population=population, sigma=0.1, learning_rate=0.05, weight_decay=0.0,
                    seed=seed, table_size=1 << 16)


def _toy_run(es: OpenAIES, generations: int) -> tuple[np.ndarray, list[float]]:
    state = es.init(np.zeros(es.dim, np.float32))
    means = []
    for _ in range(generations):
        draw = es.ask(state.generation)
        x = es.member_params(state.params, draw, np.arange(es.population))
        state, metrics = es.tell(state, draw, -((x - 1.0) ** 2).sum(axis=1))
        means.append(metrics["fitness/mean"])
    return state.params, means


def test_es_improves_a_toy_objective() -> None:
    params, means = _toy_run(_es(), 150)
    assert np.mean(means[-10:]) > 0.2 * np.mean(means[:10])  # fitness is negative: closer to 0 is better
    assert np.abs(params - 1.0).mean() < 0.3


def test_same_seed_gives_bit_identical_parameters() -> None:
    a, _ = _toy_run(_es(seed=5), 20)
    b, _ = _toy_run(_es(seed=5), 20)
    c, _ = _toy_run(_es(seed=6), 20)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_members_are_mirrored_pairs_rebuilt_from_seed_generation_and_index() -> None:
    es = _es()
    params = np.linspace(-1, 1, es.dim).astype(np.float32)
    draw = es.ask(4)
    everyone = es.member_params(params, draw, np.arange(es.population))
    # a worker that only knows (seed, generation, member) rebuilds any subset identically
    worker = _es()
    subset = worker.member_params(params, worker.ask(4), np.array([5, 2, 11]))
    np.testing.assert_array_equal(subset, everyone[[5, 2, 11]])
    np.testing.assert_allclose(everyone[0] - params, -(everyone[1] - params), atol=1e-6)
    np.testing.assert_allclose(everyone[0], params + 0.1 * es.member_noise(draw, 0), rtol=1e-6)
    assert not np.array_equal(es.ask(4).offsets, es.ask(5).offsets)


def test_noise_table_is_standard_normal_and_shared() -> None:
    table = noise_table(3, 1 << 16)
    assert table is noise_table(3, 1 << 16)
    assert abs(table.mean()) < 0.02 and abs(table.std() - 1) < 0.02
    assert not table.flags.writeable


def test_non_finite_fitness_raises_nan_error() -> None:
    es = _es()
    state = es.init(np.zeros(es.dim, np.float32))
    fitness = np.zeros(es.population)
    fitness[3] = np.nan
    with pytest.raises(NaNError, match="members \\[3\\]"):
        es.tell(state, es.ask(0), fitness)


def test_state_is_immutable() -> None:
    es = _es()
    state = es.init(np.zeros(es.dim, np.float32))
    with pytest.raises(ValueError):
        state.params[0] = 1.0
