"""Run the btc_ai benchmarks in one process; write results.json, results.md and the table of docs/benchmarks.md.

Usage from the project root: ``python -m benchmarks.run`` (or ``python benchmarks/run.py``), optionally
``--only eval`` (repeatable) to run one family and merge its records into the existing results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `btc_ai` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks import (
    bench_backup,
    bench_cluster,
    bench_default,
    bench_es,
    bench_eval,
    bench_fetch,
    bench_journal,
    bench_learning,
    bench_load,
    bench_models,
    bench_outage,
    bench_resume,
    bench_scale,
    bench_scale_walk_forward,
    bench_serving,
    bench_startup,
    bench_team,
    bench_tracking,
    bench_walk_forward,
)
from benchmarks.common import THREADS, CpuMeter, Record, benchmark_candles

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"
CONTEXT_TXT = HERE / "results_context.txt"  # the run's header lines, for --page-from-results
PAGE = HERE.parent / "docs" / "benchmarks.md"  # the docs site's benchmarks page holds the table
START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"

# default runs first so its max-RSS reading is not the high-water mark of the big h512 cases
FAMILIES: dict[str, Callable[[], list[Record]]] = {
    "default": bench_default.run,
    "eval": bench_eval.run,
    "es": bench_es.run,
    "tracking": bench_tracking.run,
    "resume": bench_resume.run,
    "backup": bench_backup.run,
    "outage": bench_outage.run,
    "journal": bench_journal.run,  # appends and replay at 10^3..10^5 entries, replay into SQLite and a server (~5 min)
    "startup": bench_startup.run,
    "models": bench_models.run,
    "serving": bench_serving.run,
    "walk_forward": bench_walk_forward.run,
    "load": bench_load.run,  # 8 + 8 + 4 concurrent trainings against the team server and SQLite (minutes)
    "team": bench_team.run,  # one training bare vs tracked on the team server, shared cores and a core of its own (~3 min)
    "cluster": bench_cluster.run,
    "fetch": bench_fetch.run,  # 36 monthly zips from a mirror on 127.0.0.1, a killed fetch resumed (~30 s)
    "scale": bench_scale.run,  # 1 and 3 years of 5-minute candles: loads, features, a Scalping generation (~5 min)
    "scale_walk_forward": bench_scale_walk_forward.run,  # 6 folds x 2 seeds on 3 years of 5-minute candles (~15 min)
    "learning": bench_learning.run,  # walk-forward 6 x 2 of Swing and Position on the shared hourly file (minutes)
}

# (record, comparison, threshold, label)
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("eval_speedup_pop64_h512", ">=", 25.0, "batched evaluation >= 25x the naive loop (p64, h512)"),
    ("eval_matmul_efficiency_pop64_h512", ">=", 50.0, "evaluation >= 50% of the machine's bmm rate (p64, h512)"),
    ("es_bookkeeping_share_pop64_h512", "<", 10.0, "ES ask + tell < 10% of a generation (p64, h512)"),
    ("es_bookkeeping_with_materialise_share_pop64_h512", "<", 10.0,
     "ES ask + tell + member_params < 10% of a generation (p64, h512)"),
    ("generation_speedup_vs_evotorch_pop64_h512", ">=", 2.0, "generation >= 2x faster than EvoTorch (p64, h512)"),
    ("generation_speedup_vs_evotorch_pop8_h512", ">=", 2.0, "generation >= 2x faster than EvoTorch (p8, h512)"),
    ("generation_speedup_vs_evotorch_pop64_h64", ">=", 2.0, "generation >= 2x faster than EvoTorch (p64, h64)"),
    ("generation_speedup_vs_evotorch_pop8_h64", ">=", 2.0, "generation >= 2x faster than EvoTorch (p8, h64)"),
    ("tracking_overhead_pct", "<=", 3.0, "tracking + checkpointing <= 3% of training wall time (default config)"),
    ("resume_latency_seconds", "<", 3.0, "resume latency < 3 s (default config, local store)"),
    ("outage_dead_server_overhead_pct", "<", 10.0, "a dead tracking server adds < 10% to training wall time (vs untracked)"),
    ("outage_30s_metrics_lost", "<", 0.5, "no metrics lost across a 30 s tracking-server outage"),
    ("outage_30s_metrics_duplicated", "<", 0.5, "no metrics duplicated across a 30 s tracking-server outage"),
    ("journal_append_p99_ms_1e5", "<", 5.0, "outage journal: append p99 < 5 ms at 10^5 entries (fsynced in the background)"),
    ("journal_replay_seconds_1e5_server_projected", "<", 60.0,
     "outage journal: replay of 10^5 entries of 25 metrics into a local server < 60 s (projected from 10^3)"),
    ("journal_replay_seconds_1e5", "<", 60.0,
     "outage journal: replay of 10^5 entries < 60 s, the journal's own part (the store's is apart)"),
    ("load_team_restart_generations_lost", "<", 0.5, "8 concurrent trainings, server restarted mid-way: 0 generations lost"),
    ("load_team_restart_generations_doubled", "<", 0.5, "8 concurrent trainings, server restarted mid-way: 0 doubled"),
    ("load_team_restart_checkpoints_missing", "<", 0.5, "8 concurrent trainings, server restarted mid-way: 0 checkpoints missing"),
    ("team_separate_slowdown_pct", "<=", 5.0,
     "a live team server slows a training <= 5% (default config; server on a core of its own, over loopback)"),
    ("team_shared_slowdown_pct", "<=", 5.0,
     "a live team server slows a training <= 5% (default config; server on the training's 2 cores)"),
    ("backup_seconds_20_sessions", "<", 10.0, "backup of a store with 20 sessions < 10 s"),
    ("backup_restore_mismatched_files", "<", 0.5, "every archived artifact and checkpoint restored byte for byte"),
    ("checkpoint_save_ms_h512", "<", 100.0, "checkpoint save < 100 ms at hidden 512"),
    ("checkpoint_load_ms_h512", "<", 100.0, "checkpoint load < 100 ms at hidden 512"),
    ("models_backtest_year_seconds", "<", 2.0, "backtest of one year of 5-minute candles < 2 s after imports"),
    ("models_pyfunc_predict_10k_seconds", "<", 3.0, "pyfunc load + predict 10,000 candles < 3 s (fresh process)"),
    ("models_train_one_generation_seconds", "<", 4.0, "one-generation tiny `btc-ai train` < 4 s on an existing store"),
    ("serving_round_trip_10k_seconds", "<", 3.0, "`mlflow models serve`: 10,000 candles round trip < 3 s after start-up"),
    ("system_metrics_slowdown_pct", "<=", 2.0, "system metrics on: a training slows <= 2 % (sampling every second)"),
    ("startup_help_seconds", "<", 0.5, "`btc-ai --help` < 0.5 s (a fresh process)"),
    ("startup_presets_seconds", "<", 0.5, "`btc-ai presets` < 0.5 s (a fresh process)"),
    ("startup_report_seconds", "<", 1.5, "`btc-ai report <session>` < 1.5 s (a fresh process, store of two sessions)"),
    ("startup_refused_uri_seconds", "<", 1.0, "a URI MLflow cannot open refused < 1 s (a fresh process)"),
    ("startup_refused_run_seconds", "<", 1.5, "an unknown run ID on a store refused < 1.5 s (a fresh process)"),
    ("synthetic_candles_60_days_seconds", "<", 0.5, "the default synthetic candles (60 days) < 0.5 s"),
    ("cluster_parallel_efficiency_pop256_h512", ">=", 80.0,
     "Ray: parallel efficiency of 2 single-CPU workers vs 1 >= 80 % (p256, h512)"),
    ("cluster_ray_overhead_share_pop256_h512", "<=", 10.0, "Ray overhead <= 10 % of a generation (p256, h512)"),
    ("cluster_killed_worker_share_of_generation_pop256_h512", "<=", 100.0,
     "a killed Ray worker costs at most one generation's time: the generation with the kill (p256, h512)"),
    ("cluster_killed_worker_total_extra_generations_pop256_h512", "<=", 1.0,
     "a killed Ray worker costs at most one generation's time: in all, until it rejoins (p256, h512)"),
    ("fetch_36_months_seconds", "<", 20.0, "`btc-ai data fetch` of 36 monthly 5-minute zips from a local mirror < 20 s"),
    ("fetch_resume_redownloaded_files", "<", 0.5, "a killed `data fetch` resumed: no verified file downloaded again"),
    ("scale_load_csv_3y_seconds", "<", 5.0, "3 years of 5-minute candles (315,360 rows) load from one CSV < 5 s"),
    ("scale_load_parquet_3y_seconds", "<", 1.0, "3 years of 5-minute candles load from Parquet < 1 s"),
    ("scale_load_csv_3y_cached_seconds", "<", 1.0, "3 years of 5-minute candles load from the candle cache < 1 s (CSV)"),
    ("scale_load_zips_3y_cached_seconds", "<", 1.0, "3 years of 5-minute candles load from the candle cache < 1 s (36 zips)"),
    ("scale_load_csv_3y_peak_mib", "<", 1024.0, "3 years of 5-minute candles: peak memory of loading the CSV < 1 GB"),
    ("scale_load_zips_3y_peak_mib", "<", 1024.0, "3 years of 5-minute candles: peak memory of loading 36 zips < 1 GB"),
    ("scale_walk_forward_3y_seconds_6x2", "<", 900.0,
     "walk-forward of 6 folds x 2 seeds on 3 years of 5-minute candles within 15 minutes (default config, 2 cores)"),
    ("scale_generation_3y_vs_month_pct", "<=", 10.0,
     "a Scalping generation on 3 years no slower than on one month (+10 %)"),
    ("learning_swing_seconds_6x2", "<", 600.0,
     "walk-forward of 6 folds x 2 seeds of Swing on the shared hourly file < 10 min (default config, 2 cores)"),
    ("learning_swing_never_trading_sessions", "<", 1.5, "Swing walk-forward: at most 1 of 12 policies never trades"),
    ("learning_swing_mean_test_return_pct", ">", 0.0, "Swing walk-forward: mean net test return per fold > 0"),
    ("learning_swing_sharpe_minus_best_rule", ">=", 0.0,
     "Swing walk-forward: mean out-of-sample Sharpe >= the best rule baseline's"),
    ("walk_forward_seconds_4x2", "<", 240.0,
     "walk-forward of 4 folds x 2 seeds on the shared month < 4 min (default config, 2 cores)"),
)


def format_value(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def targets_table(records: dict[str, Record]) -> list[str]:
    lines = ["| Target | Measured | Met |", "|---|---:|:---:|"]
    for name, op, threshold, label in TARGETS:
        record = records.get(name)
        if record is None:
            lines.append(f"| {label} | not run | - |")
            continue
        met = {">=": record.value >= threshold, ">": record.value > threshold}.get(op, record.value < threshold)
        lines.append(f"| {label} | {format_value(record.value)} {record.unit} | {'yes' if met else '**no**'} |")
    return lines


def markdown(records: list[Record], context: Iterable[str], *, compact: bool = False) -> str:
    """The results table and the targets; ``compact`` (the docs page) drops notes and diag_ rows."""
    by_name = {r.name: r for r in records}
    if compact:
        lines = [*context, "", "| Benchmark | Value | Unit |", "|---|---:|---|"]
        lines += [f"| `{r.name}` | {format_value(r.value)} | {r.unit} |" for r in records if not r.name.startswith("diag_")]
    else:
        lines = [*context, "", "| Benchmark | Value | Unit | Note |", "|---|---:|---|---|"]
        lines += [f"| `{r.name}` | {format_value(r.value)} | {r.unit} | {r.note.replace('|', '/')} |" for r in records]
    lines += ["", *targets_table(by_name)]
    return "\n".join(lines) + "\n"


def page_table(records: list[Record], context: list[str]) -> str:
    return markdown(records, [*context, "Notes and diagnostics: `benchmarks/results.md`."], compact=True)


def update_page(table: str, page: Path = PAGE) -> bool:
    """Replace the block between the bench markers of the page; False (and no change) when absent."""
    if not page.exists():
        return False
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
    if not pattern.search(text):
        return False
    block = f"{START_MARK}\n{table}{END_MARK}"
    page.write_text(pattern.sub(lambda _: block, text, count=1), encoding="utf-8")
    return True


def load_previous() -> list[Record]:
    try:
        return [Record(**row) for row in json.loads(RESULTS_JSON.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(FAMILIES), help="run just this family (repeatable)")
    parser.add_argument("--no-page", "--no-readme", dest="no_page", action="store_true",
                        help="leave docs/benchmarks.md alone")
    parser.add_argument("--page-from-results", "--readme-from-results", dest="page_from_results", action="store_true",
                        help="run nothing; rewrite the block of docs/benchmarks.md from the existing results.json")
    args = parser.parse_args(argv)
    if args.page_from_results:
        previous = load_previous()
        context = [CONTEXT_TXT.read_text(encoding="utf-8")] if CONTEXT_TXT.exists() else []
        done = bool(previous) and update_page(page_table(previous, context))
        print(f"[bench] docs/benchmarks.md block {'updated' if done else 'not updated (no results or no markers)'}", file=sys.stderr)
        return 0 if done else 1

    torch.set_num_threads(THREADS)
    chosen = [name for name in FAMILIES if not args.only or name in args.only]
    started = time.perf_counter()
    records: list[Record] = []
    loads: list[str] = []
    for name in chosen:
        tick = time.perf_counter()
        with CpuMeter() as meter:
            family = FAMILIES[name]()
        load = "n/a" if meter.foreign_cores is None else f"{meter.foreign_cores:.2f}"
        loads.append(f"{name} {time.perf_counter() - tick:.0f} s (foreign load {load} cores)")
        print(f"[bench] {loads[-1]}", file=sys.stderr, flush=True)
        records.extend(family)

    if args.only:  # keep the other families' last numbers, each record where it was
        fresh = {r.name: r for r in records}
        previous = load_previous()
        merged = [fresh.pop(r.name, r) for r in previous]
        records = merged + [r for r in records if r.name in fresh]

    _, data_source = benchmark_candles()
    context = [
        f"Benchmarks of btc_ai ({time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {THREADS} threads, python {platform.python_version()}).",
        f"Data: {data_source}. Families run: {'; '.join(loads)}; total {time.perf_counter() - started:.0f} s.",
        "Times are medians after warm-up. Foreign load is CPU other processes used meanwhile (the machine "
        "is shared); above ~0.1 core the 2-thread numbers are noisy, so such cases are waited for and rerun.",
    ]
    table = markdown(records, context)
    RESULTS_JSON.write_text(json.dumps([r.as_dict() for r in records], indent=2) + "\n", encoding="utf-8")
    RESULTS_MD.write_text(table, encoding="utf-8")
    CONTEXT_TXT.write_text("\n".join(context), encoding="utf-8")
    print(table)
    if not args.no_page and update_page(page_table(records, context)):
        print(f"[bench] updated the benchmark block of {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
