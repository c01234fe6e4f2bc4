"""Population evaluation: BatchedEvaluator vs a naive one-member-one-step gym loop, and vs raw bmm."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import (
    EVAL_EPISODES,
    EVAL_STEPS,
    Record,
    bench_config,
    guarded,
    median_seconds,
    train_market,
)
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import BatchedEvaluator, episode_starts
from btc_ai.domain.market import TradingEnv
from btc_ai.domain.policy import PolicyNet, PolicySpec, batched_actions

SHAPES: tuple[tuple[int, int], ...] = ((8, 64), (64, 64), (8, 512), (64, 512))
GENERATION = 3  # any fixed generation: the same episode windows for every repetition and both loops
REPEATS = 7
NAIVE_MEMBERS = 64  # every member of both populations fits the time budget, so nothing is extrapolated
ACTION_MATCH_MIN = 0.999
REWARD_RTOL = 1e-4


@dataclass
class Setup:
    """One (population, hidden) case: config, policy, ES and the evaluator training would build."""

    config: TrainingConfig
    spec: PolicySpec
    es: OpenAIES
    evaluator: BatchedEvaluator
    params: np.ndarray

    @property
    def population(self) -> int:
        return self.config.ES_POPULATION

    @property
    def decisions(self) -> int:
        return self.population * self.evaluator.steps_per_member


def make_setup(population: int, hidden: int) -> Setup:
    """The objects train_model would build for this population and width, on the benchmark data."""
    config = bench_config(population, hidden)
    market, names = train_market(config.LOOKBACK, config.VALIDATION_FRACTION)
    spec = PolicySpec(len(names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(
        dim=spec.n_params,
        population=population,
        sigma=config.SIGMA,
        learning_rate=config.LEARNING_RATE,
        weight_decay=config.WEIGHT_DECAY,
        seed=config.SEED,
        table_size=config.NOISE_TABLE_SIZE,
    )
    evaluator = BatchedEvaluator(es, spec, market, config)
    return Setup(config, spec, es, evaluator, spec.init_params(config.SEED))


def time_batched(setup: Setup) -> float:
    """Median seconds of one full-population ``evaluate`` call, as the training loop makes it."""
    members = np.arange(setup.population)
    return median_seconds(lambda: setup.evaluator.evaluate(setup.params, GENERATION, members), REPEATS)


@torch.inference_mode()
def naive_episode(net: PolicyNet, env: TradingEnv, start: int, steps: int) -> tuple[list[int], list[float]]:
    """One member, one step at a time: what a gym loop around the same policy does."""
    actions: list[int] = []
    rewards: list[float] = []
    obs = env.reset(start, steps)
    done = False
    while not done:
        action = int(net(torch.from_numpy(obs).unsqueeze(0)).argmax())
        obs, reward, done = env.step(action)
        actions.append(action)
        rewards.append(reward)
    return actions, rewards


@dataclass
class NaiveResult:
    seconds_per_step: float
    members: int
    action_match: float
    max_reward_rel_error: float
    max_reward_abs_error: float


def run_naive(setup: Setup) -> NaiveResult:
    """Naive loop over the evaluator's own members and windows, compared action by action."""
    config, evaluator = setup.config, setup.evaluator
    members = np.arange(min(setup.population, NAIVE_MEMBERS))
    perturbations = setup.es.ask(GENERATION)
    member_params = setup.es.member_params(setup.params, perturbations, members)
    inputs, _ = evaluator.windows(GENERATION)
    batched = batched_actions(setup.spec, torch.from_numpy(member_params), inputs).numpy()
    batched = batched.reshape(len(members), config.EPISODES_PER_EVAL, config.MAX_STEPS_PER_EPISODE)
    batched_rewards = evaluator.rewards(setup.params, GENERATION, members)
    starts = episode_starts(
        config.SEED, GENERATION, config.EPISODES_PER_EVAL, config.MAX_STEPS_PER_EPISODE, len(evaluator.market)
    )
    env = TradingEnv(evaluator.market, config.cost_rate, config.holding_cost_rate, close_at_end=True)
    net = PolicyNet(setup.spec).load_flat(member_params[0])
    naive_episode(net, env, int(starts[0]), config.MAX_STEPS_PER_EPISODE)  # warm-up

    member_seconds, matches, rel_errors, abs_errors = [], 0, [], []
    for k in range(len(members)):
        tick = time.perf_counter()
        net = PolicyNet(setup.spec).load_flat(member_params[k])
        for e, start in enumerate(starts):
            actions, rewards = naive_episode(net, env, int(start), config.MAX_STEPS_PER_EPISODE)
            matches += int((np.asarray(actions) == batched[k, e]).sum())
            naive_total = float(np.sum(rewards))
            batched_total = float(batched_rewards[k, e].sum(dtype=np.float64))
            abs_errors.append(abs(naive_total - batched_total))
            rel_errors.append(abs_errors[-1] / max(abs(batched_total), 1e-12))
        member_seconds.append(time.perf_counter() - tick)
    steps = len(members) * evaluator.steps_per_member
    return NaiveResult(
        seconds_per_step=float(np.median(member_seconds)) / evaluator.steps_per_member,
        members=len(members),
        action_match=matches / steps,
        max_reward_rel_error=max(rel_errors),
        max_reward_abs_error=max(abs_errors),
    )


def matmul_seconds(setup: Setup) -> float:
    """Median seconds of the policy's baddbmm calls alone, on contiguous tensors of the exact shapes.

    Outputs are preallocated: this is the ceiling the evaluator could reach if everything but the
    matrix products were free.
    """
    members, rows = setup.population, setup.evaluator.steps_per_member
    gen = torch.Generator().manual_seed(0)
    layers = []
    for fan_in, fan_out in setup.spec.layer_shapes:
        layers.append(
            (
                torch.randn(members, 1, fan_out, generator=gen),
                torch.randn(members, rows, fan_in, generator=gen),
                torch.randn(members, fan_in, fan_out, generator=gen),
                torch.empty(members, rows, fan_out),
            )
        )

    def run() -> None:
        for bias, x, w, out in layers:
            torch.baddbmm(bias, x, w, out=out)

    return median_seconds(run, REPEATS)


def bench_case(population: int, hidden: int) -> list[Record]:
    setup = make_setup(population, hidden)
    tag = f"pop{population}_h{hidden}"
    batched_s = time_batched(setup)
    naive = run_naive(setup)
    mm_s = matmul_seconds(setup)
    flops = setup.spec.flops_per_decision() * setup.decisions
    eval_rate = setup.decisions / batched_s
    naive_rate = 1.0 / naive.seconds_per_step
    eval_gflops = flops / batched_s / 1e9
    mm_gflops = flops / mm_s / 1e9
    match_ok = naive.action_match >= ACTION_MATCH_MIN and naive.max_reward_rel_error <= REWARD_RTOL
    shape = f"{EVAL_EPISODES} episode x {EVAL_STEPS} steps per member"
    return [
        Record(f"eval_throughput_{tag}", eval_rate, "env-steps/s",
               f"BatchedEvaluator.evaluate, {shape}, median of {REPEATS}"),
        Record(f"naive_throughput_{tag}", naive_rate, "env-steps/s",
               f"TradingEnv + PolicyNet, one member one step; median per-member time over all {naive.members} members "
               "(none extrapolated); "
               f"match {'OK' if match_ok else 'FAILED'}: actions {naive.action_match:.4%} identical, "
               f"max reward-sum rel err {naive.max_reward_rel_error:.1e} (abs {naive.max_reward_abs_error:.1e})"),
        Record(f"eval_speedup_{tag}", eval_rate / naive_rate, "x", "batched / naive env-steps per second"),
        Record(f"eval_speedup_ceiling_{tag}", setup.decisions / mm_s / naive_rate, "x",
               "bound for any evaluator on this machine: env-steps/s at matmul_gflops (all else free) / naive"),
        Record(f"matmul_gflops_{tag}", mm_gflops, "GFLOP/s",
               f"baddbmm alone on layers {list(setup.spec.layer_shapes)} x P={population}, N={setup.evaluator.steps_per_member}"),
        Record(f"eval_gflops_{tag}", eval_gflops, "GFLOP/s", "flops_per_decision x P x N / evaluate time"),
        Record(f"eval_matmul_efficiency_{tag}", 100.0 * eval_gflops / mm_gflops, "%", "eval_gflops / matmul_gflops"),
    ]


def run() -> list[Record]:
    records: list[Record] = []
    for population, hidden in SHAPES:
        records.extend(guarded(lambda p=population, h=hidden: bench_case(p, h)))
    return records

