"""Serving and system metrics, measured.

- ``mlflow models serve`` of a registered version (default Scalping policy) as `make serve` starts it: seconds
  until ``/ping`` answers, then the round trip of 10,000 five-minute candles through ``/invocations`` (JSON
  ``dataframe_split`` in, predictions out; median of 3 after a warm-up request).
- What MLflow's system-metrics monitor costs a training: ``train_model`` (default config) bare against the same
  under `btc_ai.tracking.system_metrics` on an attempt run, sampling every second (10x MLflow's default of
  10 s), in interleaved back-to-back pairs; and the CPU the monitor itself takes while the process is idle.

Run alone: ``python -m benchmarks.run --only serving``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record

REPEATS = 3
# five pairs of trainings long enough that the monitor's fixed start and stop costs do not pass for a slowdown
# of the training (three pairs of 20-generation trainings could not tell 2 % from noise)
PAIRS = 5
GENERATIONS = 150
SAMPLING_S = "1"
IDLE_S = 10.0


def _register(uri: str) -> None:
    from btc_ai.domain.config import TrainingConfig
    from btc_ai.domain.policy import PolicyNet
    from btc_ai.domain.policy_files import PolicyCard
    from btc_ai.tracking.registry import log_model_version
    from btc_ai.tracking.tracker import Tracker
    from btc_ai.training.loop import params_sha256

    config = TrainingConfig.from_dict({"BUCKET": "Scalping"})
    card = PolicyCard.of(config)
    net = PolicyNet(card.spec, card.feature_names).load_flat(card.spec.init_params(1))
    card = PolicyCard.of(config, params_sha256(net.flat_params()))
    tracker = Tracker(uri, experiment="bench-serving")
    log_model_version(tracker, tracker.create_run("session", name="serve"), net, card, name="btc-ai-scalping",
                      tags={}, description="benchmark", champion=True, verdict="benchmark", previous={})
    tracker.close()


def _serving(folder: Path) -> list[Record]:
    from btc_ai.domain.synthetic import synthetic_candles
    from btc_ai.tracking.serving import ModelServer

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    _register(uri)
    candles = synthetic_candles(10_000, seed=1).reset_index()
    candles["timestamp"] = candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    bare = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "PATH": "/usr/bin:/bin"}
    server = ModelServer("models:/btc-ai-scalping/1", uri, folder / "serve.log", base_env=bare)
    try:
        started = server.start()
        server.invoke(candles.iloc[:2000])
        times = []
        for _ in range(REPEATS):
            tick = time.perf_counter()
            predictions = server.invoke(candles)
            times.append(time.perf_counter() - tick)
        assert len(predictions) == len(candles)
    finally:
        server.stop()
    return [
        Record("serving_startup_seconds", started, "s",
               "`mlflow models serve -m models:/btc-ai-scalping/1 --env-manager local` (1 worker) until /ping answers"),
        Record("serving_round_trip_10k_seconds", statistics.median(times), "s",
               f"10,000 5-minute candles through /invocations (JSON in, predictions out), after start-up and a "
               f"warm-up request; median of {REPEATS} ({', '.join(f'{t:.2f}' for t in times)} s)"),
    ]


def _system_metrics(folder: Path) -> list[Record]:
    from btc_ai.domain.config import TrainingConfig
    from btc_ai.domain.synthetic import default_candles
    from btc_ai.tracking.system_metrics import system_metrics
    from btc_ai.tracking.tracker import Tracker
    from btc_ai.training.loop import train_model

    before = {k: os.environ.get(k) for k in ("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING",
                                              "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")}
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = SAMPLING_S
    tracker = Tracker(f"sqlite:///{folder / 'sys.db'}", experiment="bench-system-metrics")
    config = TrainingConfig.from_dict({"EPISODES": GENERATIONS})
    data = default_candles()
    train_model(config.replace(EPISODES=5), data)  # warm: imports, noise table
    bare, monitored, samples = [], [], []
    bare_cpu, monitored_cpu = [], []  # the process's CPU seconds (every thread: the training's and the monitor's)
    try:
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "true"
        run = tracker.create_run("attempt", name="idle")
        with system_metrics(tracker, run):
            cpu, tick = time.process_time(), time.perf_counter()
            time.sleep(IDLE_S)  # the process does nothing else: its CPU is the monitor's
            idle_share = (time.process_time() - cpu) / (time.perf_counter() - tick)
        for k in range(PAIRS):
            for monitor in ((False, True) if k % 2 == 0 else (True, False)):  # alternating: no order bias
                if not monitor:
                    os.environ.pop("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", None)
                    cpu, tick = time.process_time(), time.perf_counter()
                    train_model(config, data)
                    bare.append(time.perf_counter() - tick)
                    bare_cpu.append(time.process_time() - cpu)
                    continue
                os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "true"
                run = tracker.create_run("attempt", name=f"monitored-{k}")
                cpu, tick = time.process_time(), time.perf_counter()
                with system_metrics(tracker, run):
                    train_model(config, data)
                monitored.append(time.perf_counter() - tick)  # the monitor's stop and last flush count
                monitored_cpu.append(time.process_time() - cpu)
                tracker.end_run(run, "FINISHED")
                samples.append(len(tracker.client.get_metric_history(run, "system/cpu_utilization_percentage")))
    finally:
        tracker.close()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    ratios = [m / b for m, b in zip(monitored, bare, strict=True)]
    cpu_ratios = [m / b for m, b in zip(monitored_cpu, bare_cpu, strict=True)]
    return [
        Record("system_metrics_slowdown_pct", 100 * (statistics.median(ratios) - 1), "%",
               f"train_model, default config ({GENERATIONS} generations, median {statistics.median(bare):.1f} s bare), "
               f"with MLflow's system-metrics monitor sampling every {SAMPLING_S} s ({statistics.median(samples):.0f} "
               f"samples a training) vs bare; median over {PAIRS} back-to-back pairs, in alternating order "
               f"(per pair: {', '.join(f'{100 * (r - 1):+.1f}' for r in ratios)} %; "
               f"median extra {statistics.median(m - b for m, b in zip(monitored, bare, strict=True)):+.2f} s a training)"),
        Record("system_metrics_cpu_slowdown_pct", 100 * (statistics.median(cpu_ratios) - 1), "%",
               f"the same pairs, by the process's CPU time (every thread's: the training's and the monitor's; less "
               f"exposed to other work on the machine than wall time): median over {PAIRS} pairs (per pair: "
               f"{', '.join(f'{100 * (r - 1):+.1f}' for r in cpu_ratios)} %; median "
               f"{statistics.median(bare_cpu):.1f} CPU s bare)"),
        Record("system_metrics_idle_cpu_pct", 100 * idle_share, "%",
               f"CPU the monitor takes (share of one core) sampling every {SAMPLING_S} s in an idle process, "
               f"over {IDLE_S:.0f} s"),
    ]


def run() -> list[Record]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        return [*_serving(folder), *_system_metrics(folder)]


if __name__ == "__main__":  # pragma: no cover
    for record in run():
        print(f"{record.name}: {record.value:.3f} {record.unit} ({record.note})")
