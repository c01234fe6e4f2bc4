"""What a live team server costs one training (issue #15's slowdown target), measured fairly: the default
config, ``train_model`` bare against the same training logging every generation's metrics and every
checkpoint through an attempt run on the team server (PostgreSQL + proxied artifacts + basic auth on
127.0.0.1), in interleaved back-to-back triples (bare, checkpoints to local disk only, tracked), as ``bench_tracking`` does for SQLite. Two placements:

- ``shared``: the server, PostgreSQL and the training on the same 2 cores, the training on 2 torch threads
  (one machine does everything: the server's request handling takes the training's CPU);
- ``separate``: the server and PostgreSQL pinned to CPU 1, the training (bare and tracked alike) pinned to
  CPU 0 on one torch thread: a server machine of its own, reached over loopback. What is left is what a
  training pays for its writes: the round trips and the client's own work, not the server's CPU.

Bounded: 5 triples (bare, local checkpoints, tracked) of 150 generations per placement, one subprocess each (``python -m benchmarks.bench_team
worker ...``), each with a 600 s limit.
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

from benchmarks.common import Record, guarded

REPEATS = 5
GENERATIONS = 150
USER, PASSWORD = "bench", "bench-Pw-7Qz2"
WORKER_LIMIT_S = 600
SERVER_CPU, TRAINING_CPU = 1, 0


def worker(uri: str, threads: int, out: str) -> None:
    """Interleaved triples of the default training: bare, local checkpoints, tracked on ``uri``; their wall times as JSON."""
    import torch

    torch.set_num_threads(threads)
    from btc_ai.domain.config import TrainingConfig
    from btc_ai.domain.synthetic import default_candles
    from btc_ai.tracking.attempt_logger import AttemptLogger
    from btc_ai.tracking.tracker import Tracker
    from btc_ai.training.loop import train_model

    config = TrainingConfig.from_dict({"EPISODES": GENERATIONS})
    data = default_candles()
    train_model(config.replace(EPISODES=5), data)  # warm: imports, noise table
    tracker = Tracker(uri, experiment="bench-team")
    bare, local, tracked, checkpoints = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(REPEATS):
            tick = time.perf_counter()
            train_model(config, data)
            bare.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            train_model(config, data, Path(folder) / f"local{k}", emergency_checkpoints=True)
            local.append(time.perf_counter() - tick)
            run_id = tracker.create_run("attempt", name=f"bench-{k}")
            logger = AttemptLogger(tracker, run_id)
            tick = time.perf_counter()
            train_model(config, data, Path(folder) / f"ck{k}", callbacks=logger, emergency_checkpoints=True)
            logger.close()  # the time until everything is on the server counts
            tracked.append(time.perf_counter() - tick)
            tracker.end_run(run_id, "FINISHED")
            checkpoints.append(len(tracker.client.list_artifacts(run_id, "checkpoints")))
    offline = tracker.offline
    tracker.close()
    Path(out).write_text(json.dumps({"bare": bare, "local": local, "tracked": tracked, "checkpoints": checkpoints,
                                     "offline": offline}))


def _pin(pids: set[int], cpus: set[int]) -> None:
    """Every thread of every process in ``pids`` onto ``cpus`` (new ones inherit it from their parent)."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:
                continue


def _run(placement: str, uri: str, env: dict[str, str]) -> dict:
    threads = 1 if placement == "separate" else 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        preexec = (lambda: os.sched_setaffinity(0, {TRAINING_CPU})) if placement == "separate" else None
        subprocess.run([sys.executable, "-m", "benchmarks.bench_team", "worker", uri, str(threads), str(out)],
                       env=env, cwd=Path(__file__).parents[1], check=True, timeout=WORKER_LIMIT_S,
                       preexec_fn=preexec)
        return json.loads(out.read_text())


def _records(placement: str, result: dict, cpu_cores: float, note: str) -> list[Record]:
    bare, local, tracked = result["bare"], result["local"], result["tracked"]
    ratios = [t / b for t, b in zip(tracked, bare, strict=True)]
    server = [t / c for t, c in zip(tracked, local, strict=True)]
    spread = ", ".join(f"{100 * (r - 1):+.1f}" for r in ratios)
    offline = "; the training went offline (journaled)" if result["offline"] else ""
    return [
        Record(f"team_{placement}_bare_train_seconds", statistics.median(bare), "s",
               f"train_model, default config ({GENERATIONS} generations), untracked, no checkpoint files; {note}"),
        Record(f"team_{placement}_local_checkpoints_train_seconds", statistics.median(local), "s",
               "the same, untracked, writing its checkpoints to local disk (fsync) as a tracked training does"),
        Record(f"team_{placement}_tracked_train_seconds", statistics.median(tracked), "s",
               f"the same, every generation's metrics and {statistics.median(result['checkpoints']):.0f} checkpoints "
               "logged to the team server, until all is stored"),
        Record(f"team_{placement}_slowdown_pct", 100 * (statistics.median(ratios) - 1), "%",
               f"median over {len(ratios)} back-to-back triples of tracked / bare - 1 (per triple: {spread} %)"
               + offline),
        Record(f"team_{placement}_server_share_pct", 100 * (statistics.median(server) - 1), "%",
               "the server's part: tracked / local checkpoints - 1, median (per triple: "
               + ", ".join(f"{100 * (r - 1):+.1f}" for r in server) + " %)"),
        Record(f"team_{placement}_server_cpu_cores", cpu_cores, "cores",
               "mlflow server + PostgreSQL, mean over the triples"),
    ]


def measure() -> list[Record]:
    from benchmarks.bench_load import _cpu_seconds
    from btc_ai.tracking.team_server import postgres_missing, team_deployment
    from btc_ai.training.cluster.processes import descendants

    reason = postgres_missing()
    if reason:
        return [Record("team_skipped", 1, "", reason)]
    if len(os.sched_getaffinity(0)) < 2:
        return [Record("team_skipped", 1, "", "needs 2 CPUs (one for the server, one for the training)")]
    records: list[Record] = []
    with tempfile.TemporaryDirectory() as folder, team_deployment(folder, {USER: PASSWORD},
                                                                   default_permission="EDIT") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(MLFLOW_LOGGING_LEVEL="WARNING", MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=PASSWORD,
                   BTC_AI_JOURNAL_DIR=str(Path(folder) / "journal"))
        postmaster = int((server.database.data / "postmaster.pid").read_text().split()[0])
        roots = {server.proc.pid, postmaster}
        for placement, note in (("shared", "server, PostgreSQL and training share the 2 cores; 2 torch threads"),
                                ("separate", f"server + PostgreSQL pinned to CPU {SERVER_CPU}, the training to "
                                             f"CPU {TRAINING_CPU} on 1 torch thread: a server machine of its own")):
            _pin(roots.union(*(descendants(pid) for pid in roots)), {SERVER_CPU} if placement == "separate" else os.sched_getaffinity(0))
            tick, cpu = time.perf_counter(), _cpu_seconds(roots)
            result = _run(placement, server.url, env)
            cores = (_cpu_seconds(roots) - cpu) / (time.perf_counter() - tick)
            records += _records(placement, result, cores, note)
    return records


def run() -> list[Record]:
    return guarded(measure)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        for record in measure():
            print(f"{record.name}: {record.value:.2f} {record.unit} {record.note}")
