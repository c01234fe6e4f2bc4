"""One whole ES generation (ask, evaluate, tell): btc_ai's OpenAIES vs EvoTorch's PGPE as OpenAI-ES."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.bench_eval import Setup, make_setup
from benchmarks.common import Record, guarded, median_seconds
from btc_ai.domain.market import positions_from_actions, shaped_fitness, step_rewards
from btc_ai.domain.policy import batched_actions

SHAPES: tuple[tuple[int, int], ...] = ((8, 64), (64, 64), (8, 512), (64, 512))
WARMUP_GENERATIONS = 1
TIMED_GENERATIONS = 5
SHARE_SHAPE = (64, 512)


def batched_fitness(setup: Setup, params: torch.Tensor, generation: int) -> np.ndarray:
    """Fitness of (P, dim) params on ``generation``'s windows: the evaluator's own steps, minus the ES."""
    config = setup.config
    inputs, returns = setup.evaluator.windows(generation)
    actions = batched_actions(setup.spec, params, inputs).numpy()
    positions = positions_from_actions(actions).reshape(params.shape[0], *returns.shape)
    rewards = step_rewards(positions, returns[None], config.cost_rate, config.holding_cost_rate, close_at_end=True)
    return shaped_fitness(rewards, config.DRAWDOWN_PENALTY).mean(axis=-1)


@dataclass
class BtcTimes:
    generation: float
    ask: float
    tell: float
    materialise: float


def time_btc_ai_openblas1(setup: Setup) -> float | None:
    """The same generations with numpy's BLAS pool held to one thread (None without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    with threadpool_limits(limits=1, user_api="blas"):
        return time_btc_ai(setup).generation


def time_btc_ai(setup: Setup) -> BtcTimes:
    """Generations exactly as training.py runs them, without validation or checkpointing."""
    es, evaluator = setup.es, setup.evaluator
    members = np.arange(setup.population)
    state = es.init(setup.params)
    totals, asks, tells = [], [], []
    for k in range(WARMUP_GENERATIONS + TIMED_GENERATIONS):
        t0 = time.perf_counter()
        perturbations = es.ask(state.generation)
        t1 = time.perf_counter()
        fitness = evaluator.evaluate(state.params, state.generation, members)
        t2 = time.perf_counter()
        state, _ = es.tell(state, perturbations, fitness)
        t3 = time.perf_counter()
        if k >= WARMUP_GENERATIONS:
            totals.append(t3 - t0)
            asks.append(t1 - t0)
            tells.append(t3 - t2)
    # member_params runs inside evaluate; time the same call on its own to split it out
    perturbations = es.ask(state.generation)
    materialise = median_seconds(lambda: es.member_params(state.params, perturbations, members), TIMED_GENERATIONS)
    return BtcTimes(statistics.median(totals), statistics.median(asks), statistics.median(tells), materialise)


def time_evotorch(setup: Setup) -> float:
    """EvoTorch PGPE configured as OpenAI-ES around the same batched fitness; median seconds per step."""
    import logging

    from evotorch import Problem, SolutionBatch
    from evotorch.algorithms import PGPE

    logging.getLogger("evotorch").setLevel(logging.WARNING)  # one INFO line per setting per Problem

    class TradingProblem(Problem):
        """Vectorised fitness: the whole population in one batched_actions call."""

        def __init__(self) -> None:
            super().__init__(
                "max", solution_length=setup.spec.n_params, initial_bounds=(-1.0, 1.0), dtype=torch.float32,
                seed=setup.config.SEED,
            )
            self.generation = 0

        def _evaluate_batch(self, batch: SolutionBatch) -> None:
            values = batch.values.as_subclass(torch.Tensor)
            batch.set_evals(torch.from_numpy(batched_fitness(setup, values, self.generation)).float())
            self.generation += 1

    config = setup.config
    searcher = PGPE(
        TradingProblem(),
        popsize=setup.population,
        center_learning_rate=config.LEARNING_RATE,
        stdev_learning_rate=0.0,
        stdev_init=config.SIGMA,
        optimizer="adam",
        ranking_method="centered",
        symmetric=True,
        center_init=torch.from_numpy(setup.params.copy()),
    )
    times = []
    for k in range(WARMUP_GENERATIONS + TIMED_GENERATIONS):
        tick = time.perf_counter()
        searcher.step()
        if k >= WARMUP_GENERATIONS:
            times.append(time.perf_counter() - tick)
    return statistics.median(times)


def bench_case(population: int, hidden: int) -> list[Record]:
    setup = make_setup(population, hidden)
    tag = f"pop{population}_h{hidden}"
    btc = time_btc_ai(setup)
    evo = time_evotorch(setup)
    gens = f"median of {TIMED_GENERATIONS} generations after {WARMUP_GENERATIONS} warm-up"
    records = [
        Record(f"generation_seconds_btc_ai_{tag}", btc.generation, "s", f"ask + BatchedEvaluator.evaluate + tell, {gens}"),
        Record(f"generation_seconds_evotorch_{tag}", evo, "s",
               f"PGPE(adam, centered, symmetric, stdev_learning_rate=0) step on the same batched fitness, {gens}"),
        Record(f"generation_speedup_vs_evotorch_{tag}", evo / btc.generation, "x", "evotorch / btc_ai seconds"),
    ]
    pinned = time_btc_ai_openblas1(setup) if hidden >= 512 else None
    if pinned is not None:
        records.append(Record(f"diag_generation_seconds_btc_ai_openblas1_{tag}", pinned, "s",
                              "as generation_seconds_btc_ai with numpy's OpenBLAS limited to 1 thread (threadpoolctl)"))
    if (population, hidden) == SHARE_SHAPE:
        records += [
            Record(f"es_bookkeeping_share_{tag}", 100.0 * (btc.ask + btc.tell) / btc.generation, "%",
                   f"(ask {btc.ask * 1e3:.2f} ms + tell {btc.tell * 1e3:.2f} ms) / generation"),
            Record(f"es_bookkeeping_with_materialise_share_{tag}",
                   100.0 * (btc.ask + btc.tell + btc.materialise) / btc.generation, "%",
                   f"plus member_params {btc.materialise * 1e3:.2f} ms (P x dim noise gather, scale, add)"),
        ]
    return records


def run() -> list[Record]:
    records: list[Record] = []
    for population, hidden in SHAPES:
        records.extend(guarded(lambda p=population, h=hidden: bench_case(p, h)))
    return records
