"""The Ray evaluator against the local one (issue #14): generation time at population 256 and 1,024, hidden
512, 500-step episodes, on 1 and 2 single-CPU workers of a local:2 cluster; Ray's own overhead per
generation; the time one killed worker costs; and the driver's ES update as the population grows.

Bounded: a few evaluations per case (the 1,024 cases once each, after the 256 ones warmed the actors).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.common import THREADS, Record, bench_config, median_seconds, train_market
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import BatchedEvaluator
from btc_ai.domain.policy import PolicySpec

HIDDEN = 512
POPULATIONS = (256, 1024)
REPEATS = 3
GENERATION = 3
REJOIN_MAX_GENERATIONS = 40


def _setup(population: int):
    config = bench_config(population, HIDDEN)
    market, names = train_market(config.LOOKBACK, config.VALIDATION_FRACTION)
    spec = PolicySpec(len(names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(spec.n_params, population, config.SIGMA, config.LEARNING_RATE, config.WEIGHT_DECAY, config.SEED,
                  config.NOISE_TABLE_SIZE)
    return config, market, spec, es, spec.init_params(config.SEED)


def _timed(fn, repeats: int) -> float:
    return median_seconds(fn, repeats, warmup=0) if repeats > 1 else _once(fn)


def _once(fn) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def _es_update_ms(es: OpenAIES, params: np.ndarray) -> float:
    state = es.init(params)
    fitness = np.random.default_rng(0).standard_normal(es.population)
    perturbations = es.ask(GENERATION)
    return 1e3 * median_seconds(lambda: es.tell(state, perturbations, fitness), 3)


def _killed_worker(evaluator, params: np.ndarray, members: np.ndarray, generation_s: float,
                   population: int) -> list[Record]:
    """One worker of two SIGKILLed on its first chunk of a generation (the worst moment: all its work of that
    generation is redone), then generations run on until Ray has restarted it and it rejoined: the extra time
    of the generation with the kill, and the extra time summed over it and every generation until the rejoin."""
    evaluator.take_events()
    evaluator.faults[GENERATION] = "kill"
    times: list[float] = []
    rejoined = False
    while not rejoined and len(times) < REJOIN_MAX_GENERATIONS:
        times.append(_once(lambda: evaluator.evaluate(params, GENERATION, members)))
        rejoined = evaluator.live_workers == 2 and any("rejoined" in e for e in evaluator.take_events())
    extra = [t - generation_s for t in times]
    tag = f"pop{population}_h{HIDDEN}"
    return [
        Record(f"cluster_killed_worker_extra_seconds_{tag}", extra[0], "s",
               f"2 workers: {times[0]:.2f} s for the generation in which one is killed vs {generation_s:.2f} s; same "
               "fitness"),
        Record(f"cluster_killed_worker_share_of_generation_{tag}", 100 * extra[0] / generation_s, "%",
               "the generation with the kill: extra time / one generation; target <= 100 %"),
        Record(f"cluster_killed_worker_generations_until_rejoin_{tag}", float(len(times)), "generations",
               "generations (the one with the kill included) until the restarted worker evaluated again"
               + ("" if rejoined else f"; not rejoined within {REJOIN_MAX_GENERATIONS}")),
        Record(f"cluster_killed_worker_total_extra_generations_{tag}", sum(extra) / generation_s, "generations",
               f"extra time over those generations ({sum(extra):.2f} s: one worker evaluating while Ray restarts "
               "the other, whose start-up also takes CPU) / one generation"),
    ]


def run() -> list[Record]:
    try:
        import ray  # noqa: F401
    except ImportError:
        return [Record("cluster_skipped", 1.0, "flag", "ray not installed (pip install -e .[cluster])")]
    from btc_ai.training.cluster.connection import RayConnection
    from btc_ai.training.cluster.evaluator import RayEvaluator

    records: list[Record] = []
    local: dict[int, float] = {}
    for population in POPULATIONS:
        config, market, spec, es, params = _setup(population)
        members = np.arange(population)
        evaluator = BatchedEvaluator(es, spec, market, config)
        repeats = REPEATS if population == POPULATIONS[0] else 1
        torch.set_num_threads(1)  # the same single CPU a worker has
        evaluator.evaluate(params, GENERATION, members[: config.RAY_CHUNK_MEMBERS])  # warm-up
        local[population] = _timed(lambda e=evaluator, p=params, m=members: e.evaluate(p, GENERATION, m), repeats)
        torch.set_num_threads(THREADS)
        records.append(Record(f"cluster_local_1thread_seconds_pop{population}_h{HIDDEN}", local[population], "s",
                              "local evaluator, one thread, one generation's evaluation"))
        records.append(Record(f"cluster_es_update_ms_pop{population}_h{HIDDEN}", _es_update_ms(es, params), "ms",
                              "driver: OpenAIES.tell (rank, gather the noise, Adam step)"))
    with RayConnection("local:2"):
        for population in POPULATIONS:
            config, market, spec, es, params = _setup(population)
            members = np.arange(population)
            repeats = REPEATS if population == POPULATIONS[0] else 1
            times = {}
            for workers in (1, 2):
                evaluator = RayEvaluator(es, spec, market, config, workers=workers)
                try:
                    if population == POPULATIONS[0]:
                        evaluator.evaluate(params, GENERATION, members)  # warm-up: imports, noise table
                    times[workers] = _timed(lambda e=evaluator, p=params, m=members: e.evaluate(p, GENERATION, m),
                                            repeats)
                    if workers == 2 and population == POPULATIONS[0]:
                        records += _killed_worker(evaluator, params, members, times[2], population)
                finally:
                    evaluator.close()
                records.append(Record(f"cluster_ray_seconds_pop{population}_h{HIDDEN}_w{workers}", times[workers], "s",
                                      f"Ray evaluator, {workers} single-CPU worker(s), one generation's evaluation"))
            records.append(Record(f"cluster_parallel_efficiency_pop{population}_h{HIDDEN}",
                                  100 * times[1] / (2 * times[2]), "%", "2 workers vs 1: t1 / (2 t2)"))
            records.append(Record(f"cluster_ray_overhead_share_pop{population}_h{HIDDEN}",
                                  100 * max(0.0, times[1] - local[population]) / times[1], "%",
                                  "1 worker vs the local evaluator on one thread: driver put + calls + gather"))
    return records
