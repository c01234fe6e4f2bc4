"""Many trainings at once on the team server (PostgreSQL + proxied artifacts + basic auth, loopback only):
8 concurrent trainings of 300 generations, once with the server up throughout and once with it restarted
mid-way; 4 concurrent trainings on one local SQLite store. Counts generations lost and doubled, checkpoints
missing and runs left RUNNING; p50/p99 store-call latency of a metric batch and of a checkpoint upload; the
slowdown against the same 8 trainings untracked; the CPU the server (mlflow + PostgreSQL) used.

Bounded: at most 8 worker processes, each with a 600 s limit. ``python -m benchmarks.bench_load worker ...``
is one training (a subprocess of the benchmark).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record

TRAININGS, GENERATIONS, SQLITE_TRAININGS = 8, 300, 4
CONFIG = {"EPISODES": GENERATIONS, "ES_POPULATION": 8, "HIDDEN_SIZE": 8, "MAX_STEPS_PER_EPISODE": 64,
          "EPISODES_PER_EVAL": 2, "EVAL_INTERVAL": 10, "MIN_CHECKPOINT_INTERVAL": 25, "CHECKPOINT_MIN_SECONDS": 0.0,
          "NOISE_TABLE_SIZE": 1 << 16, "EARLY_STOP_PATIENCE": 0}  # all 300 generations, every time
USER, PASSWORD = "loadtest", "load-Pw-51xQ"
WORKER_LIMIT_S = 600


def worker(mode: str, uri: str, seed: int, out: str) -> None:
    """One training (``tracked`` through the recovery system, or ``untracked``: the bare loop); its wall
    time, session and the latency of every store call it made, as JSON in ``out``."""
    import torch

    torch.set_num_threads(1)
    from btc_ai.training.loop import train_model

    config = {**CONFIG, "SEED": seed}
    tick = time.perf_counter()
    if mode == "untracked":
        train_model(config, None)
        Path(out).write_text(json.dumps({"seconds": time.perf_counter() - tick}))
        return
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.tracking.tracker import Tracker

    tracker = Tracker(uri, experiment="bench-load")
    calls: dict[str, list[float]] = {"metrics": [], "checkpoint": []}
    apply = tracker._apply

    def timed(op: str, args: dict) -> object:
        started = time.perf_counter()
        try:
            return apply(op, args)
        finally:
            if op == "log_batch" and args.get("metrics"):
                calls["metrics"].append(time.perf_counter() - started)
            elif op == "log_artifact" and (args.get("artifact_path") or "").startswith("checkpoints"):
                calls["checkpoint"].append(time.perf_counter() - started)

    tracker._apply = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        system = TrainingRecoverySystem(checkpoint_dir=folder, tracker=tracker)
        model, metrics, _, _ = system.start_training_with_recovery(train_model, config=config)
    if tracker.offline:
        tracker.replay(wait=True)
    Path(out).write_text(json.dumps({"seconds": time.perf_counter() - tick, "session": metrics.get("session_run_id"),
                                     "ok": model is not None, "error": metrics.get("error"),
                                     "pending": tracker.pending(), **calls}))


def _cpu_seconds(pids: set[int]) -> float:
    """utime + stime of the processes in the groups of ``pids`` and their children (Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pids or int(fields[1]) in pids:  # parent pid or process group
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
    return total


def _run_workers(mode: str, uri: str, count: int, env: dict[str, str], during=None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        outs = [str(Path(tmp) / f"{i}.json") for i in range(count)]
        procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.bench_load", "worker", mode, uri, str(i + 1),
                                   outs[i]], env=env, cwd=Path(__file__).parents[1]) for i in range(count)]
        if during is not None:
            during()
        for proc in procs:
            proc.wait(timeout=WORKER_LIMIT_S)
        return [json.loads(Path(o).read_text()) for o in outs]


def _exactness(uri: str, sessions: list[str]) -> dict[str, int]:
    from mlflow import MlflowClient

    from btc_ai.tracking.run_model import METRIC_FITNESS_MEAN, TAG_CHECKPOINT_PREFIX, TAG_KIND, TAG_PARENT

    client = MlflowClient(uri)
    lost = doubled = missing = running = 0
    for session in sessions:
        run = client.get_run(session)
        children = client.search_runs([run.info.experiment_id], f"tags.`{TAG_PARENT}` = '{session}'")
        steps: list[int] = []
        for attempt in (c for c in children if c.data.tags.get(TAG_KIND) == "attempt"):
            steps += [m.step for m in client.get_metric_history(attempt.info.run_id, METRIC_FITNESS_MEAN)]
            stored = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(attempt.info.run_id, "checkpoints")}
            missing += sum(1 for key in attempt.data.tags if key.startswith(TAG_CHECKPOINT_PREFIX)
                           and key.removeprefix(TAG_CHECKPOINT_PREFIX) + ".pt" not in stored)
        lost += len(set(range(1, GENERATIONS + 1)) - set(steps))
        doubled += len(steps) - len(set(steps))
        running += sum(1 for r in [run, *children] if r.info.status == "RUNNING")
    return {"lost": lost, "doubled": doubled, "missing": missing, "running": running}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _records(prefix: str, results: list[dict], uri: str, bare: float, cpu: float | None) -> list[Record]:
    waiting = sum(r.get("pending", 0) for r in results)
    if waiting:  # what trainings that ended during the outage left in the journal: the next command sends it
        from btc_ai.tracking.tracker import Tracker

        Tracker(uri, experiment="bench-load").close()  # opening the store replays the journal (btc-ai sync)
    exact = _exactness(uri, [r["session"] for r in results if r.get("session")])
    metric_calls = [x for r in results for x in r["metrics"]]
    checkpoint_calls = [x for r in results for x in r["checkpoint"]]
    wall = statistics.mean(r["seconds"] for r in results)
    out = [Record(f"{prefix}_writes_left_in_journal_at_exit", waiting, "writes",
                  "sent by the next command (here: opening the store, as `btc-ai sync` does) before counting"),
           Record(f"{prefix}_generations_lost", exact["lost"], "generations"),
           Record(f"{prefix}_generations_doubled", exact["doubled"], "generations"),
           Record(f"{prefix}_checkpoints_missing", exact["missing"], "checkpoints"),
           Record(f"{prefix}_runs_left_running", exact["running"], "runs"),
           Record(f"{prefix}_failed_trainings", sum(1 for r in results if not r["ok"]), "trainings"),
           Record(f"{prefix}_metric_batch_p50_ms", _pct(metric_calls, 0.5), "ms"),
           Record(f"{prefix}_metric_batch_p99_ms", _pct(metric_calls, 0.99), "ms"),
           Record(f"{prefix}_checkpoint_upload_p50_ms", _pct(checkpoint_calls, 0.5), "ms"),
           Record(f"{prefix}_checkpoint_upload_p99_ms", _pct(checkpoint_calls, 0.99), "ms"),
           Record(f"{prefix}_slowdown_pct", 100 * (wall / bare - 1), "%",
                  f"mean wall {wall:.1f} s vs {bare:.1f} s untracked, {len(results)} at once")]
    if cpu is not None:
        out.append(Record(f"{prefix}_server_cpu_cores", cpu, "cores", "mlflow server + PostgreSQL, mean over the run"))
    return out


def measure() -> list[Record]:
    from btc_ai.tracking.run_model import TAG_KIND
    from btc_ai.tracking.team_server import postgres_missing, team_deployment

    reason = postgres_missing()
    if reason:
        return [Record("load_skipped", 1, "", reason)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    bare = statistics.mean(r["seconds"] for r in _run_workers("untracked", "", TRAININGS, env))
    records = [Record("load_untracked_train_seconds", bare, "s", f"{TRAININGS} untracked trainings at once, mean")]
    with tempfile.TemporaryDirectory() as folder, team_deployment(folder, {USER: PASSWORD},
                                                                   default_permission="EDIT") as server:
        team_env = {**env, "MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": PASSWORD,
                    "BTC_AI_JOURNAL_DIR": str(Path(folder) / "journal")}
        os.environ["BTC_AI_JOURNAL_DIR"] = team_env["BTC_AI_JOURNAL_DIR"]  # the driver's sync reads it
        os.environ.update(MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=PASSWORD)  # the checks' reads
        postmaster = int((server.database.data / "postmaster.pid").read_text().split()[0])
        pids = {server.proc.pid, postmaster}
        tick, cpu = time.perf_counter(), _cpu_seconds(pids)
        results = _run_workers("tracked", server.url, TRAININGS, team_env)
        cores = (_cpu_seconds(pids) - cpu) / (time.perf_counter() - tick)
        records += _records("load_team", results, server.url, bare, cores)
        half = statistics.mean(r["seconds"] for r in results) / 2

        def restart() -> None:
            """Mid-way through trainings that are all under way (a start that meets a dead server is
            refused at once, by design: that is not what this measures)."""
            from mlflow import MlflowClient

            client, deadline = MlflowClient(server.url), time.monotonic() + WORKER_LIMIT_S
            query = f"tags.`{TAG_KIND}` = 'session' and attributes.status = 'RUNNING'"
            while (len(client.search_runs([client.get_experiment_by_name("bench-load").experiment_id], query))
                   < TRAININGS and time.monotonic() < deadline):
                time.sleep(0.5)
            time.sleep(min(half, 10.0))
            server.stop()
            server.start(timeout=180)

        results = _run_workers("tracked", server.url, TRAININGS, team_env, during=restart)
        records += _records("load_team_restart", results, server.url, bare, None)
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlruns/mlflow.db"
        results = _run_workers("tracked", uri, SQLITE_TRAININGS, {**env, "BTC_AI_JOURNAL_DIR": f"{folder}/journal"})
        bare4 = statistics.mean(r["seconds"] for r in _run_workers("untracked", "", SQLITE_TRAININGS, env))
        records += _records("load_sqlite4", results, uri, bare4, None)
    return records


def run() -> list[Record]:
    from benchmarks.common import guarded

    return guarded(measure)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        for record in measure():
            print(f"{record.name}: {record.value:.2f} {record.unit} {record.note}")
