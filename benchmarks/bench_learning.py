"""Does the learner learn? The walk-forward of a bucket's config on real candles, out of sample, beside rule baselines.

As a benchmark family (``python -m benchmarks.run --only learning``): the real ``btc-ai walk-forward`` (every session
tracked on a local SQLite store) of the default Swing and Position configs on the shared hourly file, 6 folds x seeds
1 2. As a command, one ablation row per call, recorded in ``benchmarks/learning_ablation.json``::

    python -m benchmarks.bench_learning --bucket Swing --set POSITION_MODE=long_short --label "long/short"

runs the same folds through the same training loop and scoring without tracking (``--tracked`` for the real
command). Per config: mean test return per fold (each fold the mean over its seeds), mean out-of-sample Sharpe, the
t-statistic of the fold returns, the share of sessions whose selected policy never trades on its test span, wall and
CPU time, and the rule baselines on the same test spans with the same cost model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks.common import Record, guarded
from btc_ai.domain.baselines import RULES
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import load_candles
from btc_ai.domain.folds import fold_candles, plan_folds
from btc_ai.domain.presets import preset_config

# ../shared from the main checkout (/work/main), ../../shared from a worktree (/work/wt/NAME)
DATA = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[1:4] if (p / "shared" / "data").is_dir()),
            Path("shared/data"))
HOURLY = DATA / "btcusdt_1h_2017-08_2021-06_cryptodatadownload.csv"
MONTH = DATA / "btcusdt_5m_2021-06_binance.csv"
ABLATION = Path(__file__).resolve().parent / "learning_ablation.json"
FOLDS, SEEDS = 6, (1, 2)


def session_baselines(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The rule baselines a training scored on its own test span (btc_ai.domain.baselines: same span, same
    costs, holding cost included, windows of a day and a week), as {rule: {return, sharpe, trades}}."""
    return {rule: {"return": metrics[f"baseline/{rule}/total_return"], "sharpe": metrics[f"baseline/{rule}/sharpe"],
                   "trades": metrics[f"baseline/{rule}/position_changes"]} for rule in RULES}


def _session(values: dict[str, Any], candles: pd.DataFrame) -> dict[str, Any]:
    import torch

    from btc_ai.training import train_model

    torch.set_num_threads(int(os.environ.get("LEARNING_THREADS", "1")))
    cpu = time.process_time()
    _, metrics, _, _ = train_model(values, candles)
    history = metrics["history"]
    return {"test_return": metrics["test/total_return"], "sharpe": metrics["test/sharpe"],
            "trades": metrics["test/position_changes"], "long_share": metrics["test/long_share"],
            "short_share": metrics["test/short_share"], "turnover": metrics["test/turnover"],
            "best_generation": metrics["best_generation"], "generations": metrics["generations"],
            "validation_score": metrics["best_reward"], "validation_trades": metrics["best/validation_position_changes"],
            "fitness_std_last": history[-1]["fitness/std"] if history else float("nan"),
            "baselines": session_baselines(metrics), "cpu_s": time.process_time() - cpu}


def lean_rows(candles: pd.DataFrame, values: Mapping[str, Any], folds: int, seeds: Sequence[int],
              jobs: int) -> list[dict[str, Any]]:
    """Every fold and seed trained by ``train_model`` directly (no tracking), as the walk-forward cuts them."""
    config = TrainingConfig.from_dict(dict(values))
    plan = plan_folds(candles, config, folds)
    tasks = []
    for fold in plan.folds:
        data = fold_candles(candles, fold)
        for seed in seeds:
            tasks.append((fold, seed, {**values, "SEED": seed, "TEST_FRACTION": fold.test_fraction}, data))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_session, v, d) for _, _, v, d in tasks]
        results = [f.result() for f in futures]
    rows = []
    for (fold, seed, _, _), result in zip(tasks, results, strict=True):
        rows.append({"fold": fold.number, "seed": seed, **result})
    return rows


def tracked_rows(candles_path: Path, candles: pd.DataFrame, values: Mapping[str, Any], folds: int,
                 seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The real walk-forward (every session tracked on a local SQLite store under a temporary folder)."""
    from btc_ai.desk.walk_forward import WalkForward, prepare
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.recovery.validation import validated_config
    from btc_ai.tracking.tracker import Tracker

    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", experiment="learning")
        inputs = prepare(candles_path, validated_config(dict(values)), folds, seeds)
        system = TrainingRecoverySystem(checkpoint_dir=Path(tmp) / "checkpoints", tracker=tracker)
        result = WalkForward(system).start(inputs)
    if result.outcome != "completed":
        raise RuntimeError(result.error)
    return [{"fold": r.fold, "seed": r.seed, "test_return": r.test_return, "sharpe": r.sharpe, "trades": r.position_changes,
             "baselines": {rule: {"return": getattr(r, f"{rule}_return", 0.0), "sharpe": getattr(r, f"{rule}_sharpe", 0.0)}
                           for rule in RULES}} for r in result.rows]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over folds (each fold the mean over its seeds), as the walk-forward aggregates."""
    folds = sorted({r["fold"] for r in rows})
    fold_returns = np.array([np.mean([r["test_return"] for r in rows if r["fold"] == f]) for f in folds])
    sd = fold_returns.std(ddof=1) if len(folds) > 1 else float("nan")
    out: dict[str, Any] = {
        "mean_test_return": float(fold_returns.mean()),
        "mean_sharpe": float(np.mean([r["sharpe"] for r in rows])),
        "t_statistic": float(fold_returns.mean() / (sd / np.sqrt(len(folds)))) if sd and sd > 0 else float("nan"),
        "flat_sessions": int(sum(r["trades"] == 0 for r in rows)), "sessions": len(rows),
        "mean_trades": float(np.mean([r["trades"] for r in rows])),
        "fold_returns": [float(v) for v in fold_returns],
    }
    names = rows[0]["baselines"].keys()
    out["baselines"] = {}
    for name in names:  # one per fold (the seeds share the span)
        per_fold = [next(r for r in rows if r["fold"] == f)["baselines"][name] for f in folds]
        out["baselines"][name] = {"mean_return": float(np.mean([b["return"] for b in per_fold])),
                                  "mean_sharpe": float(np.mean([b["sharpe"] for b in per_fold]))}
    return out


def evaluate(bucket: str, overrides: Mapping[str, Any], *, data: Path, folds: int = FOLDS,
             seeds: Sequence[int] = SEEDS, jobs: int = 1, tracked: bool = False) -> dict[str, Any]:
    candles, _ = load_candles(data)
    values = {**preset_config(bucket), **overrides}
    TrainingConfig.from_dict(values)  # a bad --set fails here, before any training
    tick, cpu = time.perf_counter(), time.process_time()
    if tracked:
        rows = tracked_rows(data, candles, values, folds, seeds)
    else:
        rows = lean_rows(candles, values, folds, seeds, jobs)
    wall = time.perf_counter() - tick
    cpu_s = time.process_time() - cpu + sum(r.get("cpu_s", 0.0) for r in rows)
    return {"bucket": bucket, "overrides": dict(overrides), "data": data.name, "folds": folds, "seeds": list(seeds),
            "tracked": tracked, "wall_s": wall, "cpu_s": cpu_s, **summarise(rows), "rows": rows}


def describe(result: Mapping[str, Any]) -> str:
    rules = ", ".join(f"{k} {v['mean_return']:+.2%} (Sharpe {v['mean_sharpe']:.2f})"
                      for k, v in result["baselines"].items() if k != "flat")
    return (f"{result['bucket']} {result.get('label', '')}: mean test return {result['mean_test_return']:+.2%}/fold, "
            f"Sharpe {result['mean_sharpe']:.2f}, t {result['t_statistic']:+.2f}, never trading "
            f"{result['flat_sessions']}/{result['sessions']}, trades {result['mean_trades']:.1f}; {rules}; "
            f"{result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU")


def run() -> list[Record]:
    if not HOURLY.exists():
        print(f"[bench] learning skipped: {HOURLY} is not here", file=sys.stderr)
        return []
    return guarded(measure)


def measure() -> list[Record]:
    records = []
    for bucket in ("Swing", "Position"):
        result = evaluate(bucket, {}, data=HOURLY, tracked=True)
        key = bucket.lower()
        best = max(result["baselines"].items(), key=lambda kv: kv[1]["mean_sharpe"])
        records += [
            Record(f"learning_{key}_seconds_6x2", result["wall_s"], "s", describe(result)),
            Record(f"learning_{key}_cpu_seconds_6x2", result["cpu_s"], "s",
                   "CPU time of the same walk-forward, all threads (the machine is shared: wall time alone misleads)"),
            Record(f"learning_{key}_mean_test_return_pct", 100 * result["mean_test_return"], "%",
                   "walk-forward mean test return per fold, shared hourly file, default config, net of costs"),
            Record(f"learning_{key}_mean_sharpe", result["mean_sharpe"], "", "mean out-of-sample Sharpe of the sessions"),
            Record(f"learning_{key}_t_statistic", result["t_statistic"], "", "t-statistic of the 6 fold returns"),
            Record(f"learning_{key}_never_trading_sessions", result["flat_sessions"], "of 12",
                   "sessions whose selected policy never trades on its test span"),
            Record(f"learning_{key}_best_rule_sharpe", best[1]["mean_sharpe"], "", f"best rule baseline: {best[0]}"),
            Record(f"learning_{key}_sharpe_minus_best_rule", result["mean_sharpe"] - best[1]["mean_sharpe"], "",
                   f"the policy's mean out-of-sample Sharpe less {best[0]}'s"),
            Record(f"learning_{key}_buy_and_hold_sharpe", result["baselines"]["buy_and_hold"]["mean_sharpe"], ""),
        ]
    return records


def _rule(name: str) -> str:
    """The rule a recorded baseline column names: early rows (the screening's own rule function, before
    btc_ai.domain.baselines) say ``sma_24_168`` and ``momentum_168``, later ones the rule's name."""
    return "sma_crossover" if name.startswith("sma_") else "momentum" if name.startswith("momentum") else name


def ablation_table(history: list[dict[str, Any]]) -> str:
    """Every recorded row, in the order run, as a Markdown table (one per bucket)."""
    history = [{**r, "baselines": {_rule(k): v for k, v in r["baselines"].items()}} for r in history]
    lines = []
    for bucket in dict.fromkeys(r["bucket"] for r in history):
        rows = [r for r in history if r["bucket"] == bucket]
        rules = list(rows[0]["baselines"])
        lines += [f"**{bucket}** ({rows[0]['data']}, {rows[0]['folds']} folds x seeds "
                  f"{' '.join(map(str, rows[0]['seeds']))}; rule baselines: mean test return / Sharpe)", "",
                  "| # | change (config keys) | mean test return / fold | Sharpe | t | never trade | "
                  + " | ".join(rules) + " | wall / CPU s |", "|---|---|---:|---:|---:|---:|" + "---:|" * len(rules) + "---:|"]
        for number, r in enumerate(rows, start=1):
            keys = ", ".join(f"{k}={v}" for k, v in r["overrides"].items())
            keys = f": {keys}" if keys else ""
            base = " | ".join(f"{r['baselines'][k]['mean_return']:+.1%} / {r['baselines'][k]['mean_sharpe']:.2f}"
                              for k in rules)
            lines.append(f"| {number} | {r.get('label', '')}{keys}{' (tracked)' if r.get('tracked') else ''} | "
                         f"{r['mean_test_return']:+.2%} | {r['mean_sharpe']:.2f} | {r['t_statistic']:+.2f} | "
                         f"{r['flat_sessions']}/{r['sessions']} | {base} | {r['wall_s']:.0f} / {r['cpu_s']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one ablation row: a walk-forward of a bucket's config")
    parser.add_argument("--bucket", default="Swing")
    parser.add_argument("--data", type=Path, default=None, help="candles (default: hourly file; Scalping: the month)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="sessions trained at once (1 torch thread each)")
    parser.add_argument("--tracked", action="store_true", help="through the real walk-forward and MLflow")
    parser.add_argument("--label", default="", help="the row's name in the ablation record")
    parser.add_argument("--no-record", action="store_true", help="do not append to learning_ablation.json")
    parser.add_argument("--table", action="store_true", help="run nothing; write learning_ablation.md from the record")
    args = parser.parse_args(argv)
    if args.table:
        text = ablation_table(json.loads(ABLATION.read_text()))
        ABLATION.with_suffix(".md").write_text(text)
        print(text)
        return 0
    overrides = dict(item.split("=", 1) for item in args.set)
    overrides = {k.strip().upper(): _value(v) for k, v in overrides.items()}
    data = args.data or (MONTH if args.bucket.lower() == "scalping" else HOURLY)
    result = evaluate(args.bucket, overrides, data=data, folds=args.folds, seeds=args.seeds, jobs=args.jobs,
                      tracked=args.tracked)
    result["label"] = args.label
    result["when"] = time.strftime("%Y-%m-%d %H:%M")
    print(describe(result))
    for row in result["rows"]:
        print(f"  fold {row['fold']} seed {row['seed']}: {row['test_return']:+.2%} Sharpe {row['sharpe']:.2f} "
              f"trades {row['trades']:.0f} best gen {row.get('best_generation', '?')}/{row.get('generations', '?')}")
    if not args.no_record:
        history = json.loads(ABLATION.read_text()) if ABLATION.exists() else []
        history.append(result)
        ABLATION.write_text("[\n" + ",\n".join(json.dumps(r, default=float) for r in history) + "\n]\n")  # a row a line
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
