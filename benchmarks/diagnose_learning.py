"""Why does the search settle on flat? One fold's session of a bucket's config, measured generation by generation.

    python -m benchmarks.diagnose_learning --bucket Swing --fold 6 [--set KEY=VALUE ...]

At the initial parameters and at the selected ones: the share of the population that never trades on the
generation's windows, the spread of fitness across members (signal plus noise) against the spread of the same
member re-scored on other generations' windows (noise alone), and what the fitness is made of (market return,
costs, holding cost, turnover penalty, drawdown penalty) for the members and for buy-and-hold on the same windows.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from benchmarks.bench_learning import HOURLY, MONTH, _value
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import load_candles
from btc_ai.domain.es import OpenAIES
from btc_ai.domain.evaluation import BatchedEvaluator
from btc_ai.domain.folds import fold_candles, plan_folds
from btc_ai.domain.market import max_drawdown, positions_from_actions, step_rewards, turnover
from btc_ai.domain.policy import PolicySpec, batched_actions
from btc_ai.domain.presets import preset_config
from btc_ai.training import train_model
from btc_ai.training.loop import market_split, prepare_data


def scores(ev: BatchedEvaluator, params: np.ndarray, generation: int, windows_of: int) -> dict[str, np.ndarray]:
    cfg = ev.config
    member_params = torch.from_numpy(ev.es.member_params(params, ev.es.ask(generation), np.arange(cfg.ES_POPULATION)))
    inputs, returns = ev.windows(windows_of)
    actions = batched_actions(ev.spec, member_params, inputs).numpy()
    pos = positions_from_actions(actions, cfg.POSITION_MODE).reshape(cfg.ES_POPULATION, *returns.shape)
    rewards = step_rewards(pos, returns[None], cfg.cost_rate, cfg.holding_cost_rate, close_at_end=True)
    traded = turnover(pos, close_at_end=True).sum(-1)
    return {"market": (pos * returns[None]).sum(-1).mean(-1), "cost": -(cfg.cost_rate * traded).mean(-1),
            "holding": -(cfg.holding_cost_rate * np.abs(pos)).sum(-1).mean(-1),
            "turnover_penalty": -(cfg.turnover_penalty_rate * traded).mean(-1),
            "drawdown_penalty": -(cfg.DRAWDOWN_PENALTY * max_drawdown(rewards)).mean(-1),
            "fitness": ev.evaluate(params, generation, np.arange(cfg.ES_POPULATION)) if windows_of == generation else None,
            "never_trades": (traded.sum(-1) == 0), "long_share": (pos > 0).mean((-1, -2)),
            "hold": returns.sum(-1).mean()}


def report(ev: BatchedEvaluator, params: np.ndarray, generation: int) -> dict[str, float]:
    own = scores(ev, params, generation, generation)
    total = {k: own[k] for k in ("market", "cost", "holding", "turnover_penalty", "drawdown_penalty")}
    fitness = sum(total.values())
    again = np.stack([sum(scores(ev, params, generation, generation + 1000 + k)[c]
                          for c in total) for k in range(4)] + [fitness])
    return {"never_trading_share": float(own["never_trades"].mean()), "long_share": float(own["long_share"].mean()),
            "fitness_spread_across_members": float(fitness.std()),
            "same_member_other_windows_spread": float(again.std(axis=0).mean()),
            **{f"mean_{k}": float(v.mean()) for k, v in total.items()}, "buy_and_hold_log_return": float(own["hold"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bucket", default="Swing")
    parser.add_argument("--fold", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    overrides = {k.strip().upper(): _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    data = MONTH if args.bucket.lower() == "scalping" else HOURLY
    candles, _ = load_candles(data)
    values = {**preset_config(args.bucket), **overrides, "SEED": args.seed}
    config = TrainingConfig.from_dict(values)
    fold = plan_folds(candles, config, 6).folds[args.fold - 1]
    values["TEST_FRACTION"] = fold.test_fraction
    config = TrainingConfig.from_dict(values)
    bars, _, _ = prepare_data(fold_candles(candles, fold), config)
    split = market_split(bars, config)
    spec = PolicySpec(len(split.feature_names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS)
    es = OpenAIES(spec.n_params, config.ES_POPULATION, config.SIGMA, config.LEARNING_RATE, config.WEIGHT_DECAY,
                  config.SEED, config.NOISE_TABLE_SIZE)
    ev = BatchedEvaluator(es, spec, split.train, config)
    net, metrics, _, _ = train_model(values, fold_candles(candles, fold))
    out = {"initial": report(ev, spec.init_params(config.SEED), 0),
           "selected": report(ev, net.flat_params(), metrics["best_generation"]),
           "best_generation": metrics["best_generation"], "generations": metrics["generations"],
           "validation_score_history": [(h["generation"], round(h["validation/score"], 4), h["validation/position_changes"])
                                        for h in metrics["history"] if "validation/score" in h]}
    history = out.pop("validation_score_history")
    print(json.dumps(out, indent=1))
    print("validation (generation, score, position changes):", history)


if __name__ == "__main__":
    main()
