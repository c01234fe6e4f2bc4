"""`btc-ai chaos`: every failure scenario run end to end against a scratch store, judged against what
the recovery system promises (the original design's recovery test script, as a command)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btc_ai.domain.synthetic import synthetic_candles
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.tracking.run_model import ARTIFACT_CHECKPOINTS, METRIC_FITNESS_MEAN, RunModel, SessionRecord
from btc_ai.tracking.tracker import Tracker
from btc_ai.training.faults import KILL_ENV_VAR, inject_fault
from btc_ai.training.loop import train_model

# Small enough that a scenario takes about a second in process.
CONFIG = {"EPISODES": 8, "ES_POPULATION": 8, "HIDDEN_SIZE": 8, "MAX_STEPS_PER_EPISODE": 64, "EPISODES_PER_EVAL": 2,
          "EVAL_INTERVAL": 2, "MIN_CHECKPOINT_INTERVAL": 2, "CHECKPOINT_MIN_SECONDS": 0.0, "NOISE_TABLE_SIZE": 1 << 16,
          "LEARNING_RATE": 0.05, "SIGMA": 0.1, "STALL_MIN_SECONDS": 1.0, "BUCKET": "Scalping"}
# The same for the CLI scenarios, slower per generation so a signal lands mid-training.
CLI_FLAGS = ["--generations", "30", "--hidden-size", "48", "--es-population", "16", "--set", "MAX_STEPS_PER_EPISODE=128",
             "--set", "EPISODES_PER_EVAL=4", "--min-checkpoint-interval", "3", "--set", "NOISE_TABLE_SIZE=262144",
             "--set", "CHECKPOINT_MIN_SECONDS=0"]


@dataclass
class Outcome:
    scenario: str
    classification: str
    attempts: int
    repairs: str
    outcome: str
    seconds: float
    passed: bool
    detail: str = ""
    skipped: bool = False  # this machine cannot run it (the reason in ``detail``): neither passed nor failed


@dataclass
class Scratch:
    """A throw-away folder with its own SQLite store and synthetic data; ``shared`` holds what several
    scenarios of one run use (a team server), closed by ``stack`` when the run ends."""

    root: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    shared: dict[str, Any] = field(default_factory=dict)

    def sibling(self, name: str) -> Scratch:
        """A fresh folder beside this one, sharing its run-wide resources."""
        scratch = Scratch(self.root.parent / name, self.stack, self.shared)
        scratch.root.mkdir()
        return scratch

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlruns' / 'mlflow.db'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BTC_AI_FAULT", "BTC_AI_KILL_AT"))}
        # one thread per training: the scenarios' trainings are tiny, and two processes with a thread per core
        # each (a scenario's training beside its baseline, or beside the caller) would oversubscribe the cores
        return {**env, "MLFLOW_TRACKING_URI": self.uri, "PYTHONUNBUFFERED": "1", "BTC_AI_PROGRESS_EVERY": "1",
                "OMP_NUM_THREADS": "1"}


def in_process_scenario(name: str, fault: str, expect_recovered: bool) -> Callable[[Scratch], Outcome]:
    def scenario(scratch: Scratch) -> Outcome:
        tracker = Tracker(scratch.uri, experiment=f"chaos-{name}")
        system = TrainingRecoverySystem(checkpoint_dir=scratch.root / "ck" / name, max_retries=2, tracker=tracker,
                                        sleep=lambda s: None)
        tick = time.perf_counter()
        model, _, _, _ = system.start_training_with_recovery(inject_fault(train_model, fault), dict(CONFIG),
                                                                  synthetic_candles(4032, seed=11))
        seconds = time.perf_counter() - tick
        runs = RunModel(tracker)
        (session,) = runs.sessions()
        attempts = runs.attempts(session)
        repairs = [r.rule or "?" for r in runs.repairs(session)]
        first = (attempts[0].outcome or "?") if attempts else "none"
        if expect_recovered:
            passed = model is not None and len(attempts) == 2 and first == "recoverable_error" and len(repairs) == 1
        else:
            passed = model is None and len(attempts) == 1 and first == "unrecoverable_error" and not repairs
        nothing_running = not runs.running_runs()
        return Outcome(name, "recoverable" if expect_recovered else "unrecoverable", len(attempts),
                       ", ".join(repairs) or "-", "completed" if model is not None else "failed", seconds,
                       passed and nothing_running, "" if nothing_running else "a run was left RUNNING")
    scenario.shares_store = True  # type: ignore[attr-defined]  # an experiment of its own in one scratch store
    return scenario


def run_cli(scratch: Scratch, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "btc_ai", *args], cwd=scratch.root, env=env or scratch.env(),
                          capture_output=True, text=True, timeout=timeout)


def _signal_at(scratch: Scratch, generation: int, sig: int) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "btc_ai", "train", *CLI_FLAGS], cwd=scratch.root, env=scratch.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"gen {generation}/"):
            proc.send_signal(sig)
            break
    proc.communicate(timeout=120)
    return proc.returncode


def _sessions(scratch: Scratch) -> list[SessionRecord]:
    return RunModel(Tracker(scratch.uri)).sessions()


def _final_sha(scratch: Scratch, session_id: str) -> str | None:
    return RunModel(Tracker(scratch.uri)).session(session_id).final_params_sha256


def _baseline_sha(scratch: Scratch) -> str | None:
    base = Scratch(scratch.root / "baseline")
    base.root.mkdir(exist_ok=True)
    run_cli(base, "train", *CLI_FLAGS)
    sessions = _sessions(base)
    return _final_sha(base, sessions[0].run_id) if sessions else None


def scenario_sigterm(scratch: Scratch) -> Outcome:
    tick = time.perf_counter()
    code = _signal_at(scratch, 8, signal.SIGTERM)
    (session,) = _sessions(scratch)
    resumed = run_cli(scratch, "resume", session.run_id)
    passed = code == 143 and resumed.returncode == 0 and _final_sha(scratch, session.run_id) is not None
    return Outcome("sigterm", "interrupt (never retried)", 2, "-", f"exit {code}, resumed", time.perf_counter() - tick,
                   passed)


def scenario_sigkill_resume(scratch: Scratch) -> Outcome:
    tick = time.perf_counter()
    code = _signal_at(scratch, 11, signal.SIGKILL)
    (session,) = _sessions(scratch)
    shutil.rmtree(scratch.root / "checkpoints", ignore_errors=True)
    resumed = run_cli(scratch, "resume", session.run_id)
    same = _final_sha(scratch, session.run_id) == _baseline_sha(scratch)
    passed = code == -signal.SIGKILL and resumed.returncode == 0 and same
    return Outcome("sigkill+resume", "process died", 2, "-", "bit-identical" if same else "DIFFERS",
                   time.perf_counter() - tick, passed)


# Commits of 1,050 metrics (a validation every generation, a checkpoint every 50): two chunks each.
COMMIT_FLAGS = ["--generations", "100", "--hidden-size", "8", "--es-population", "8", "--min-checkpoint-interval", "50",
                "--set", "MAX_STEPS_PER_EPISODE=32", "--set", "EPISODES_PER_EVAL=1", "--set", "EVAL_INTERVAL=1",
                "--set", "CHECKPOINT_MIN_SECONDS=0", "--set", "EARLY_STOP_PATIENCE=0", "--set", "NOISE_TABLE_SIZE=65536"]


def scenario_sigkill_mid_commit(scratch: Scratch) -> Outcome:
    """SIGKILL after the first metric chunk of the second checkpoint commit (its marker not written), then
    resume: from the first checkpoint, every generation's metrics once, bit-identical to an uninterrupted run."""
    tick = time.perf_counter()
    env = {**scratch.env(), "OMP_NUM_THREADS": "1"}  # tiny matrices: one thread is faster
    base = Scratch(scratch.root / "baseline")
    base.root.mkdir()
    run_cli(base, "train", *COMMIT_FLAGS, env={**env, "MLFLOW_TRACKING_URI": base.uri})
    killed = run_cli(scratch, "train", *COMMIT_FLAGS, env={**env, KILL_ENV_VAR: "metrics:1@2"})
    (session,) = _sessions(scratch)
    shutil.rmtree(scratch.root / "checkpoints", ignore_errors=True)
    resumed = run_cli(scratch, "resume", session.run_id, env=env)
    runs = RunModel(Tracker(scratch.uri))
    attempts = runs.attempts(session)
    steps = sorted(step for a in attempts for step, _ in runs.metric_history(a.run_id, METRIC_FITNESS_MEAN))
    baseline = _sessions(base)
    same = bool(baseline) and _final_sha(scratch, session.run_id) == _final_sha(base, baseline[0].run_id)
    once = steps == list(range(1, 101))
    start = attempts[-1].start_generation if attempts else None
    passed = killed.returncode == -signal.SIGKILL and resumed.returncode == 0 and same and once and start == 50
    outcome = "bit-identical, once" if same and once else "DIFFERS" if not same else "metrics not once"
    return Outcome("sigkill mid-commit+resume", "process died", len(attempts), "-", outcome,
                   time.perf_counter() - tick, passed)


def scenario_corrupted_checkpoint(scratch: Scratch) -> Outcome:
    tick = time.perf_counter()
    env = {**scratch.env(), "BTC_AI_FAULT": "PermissionError@8"}
    run_cli(scratch, "train", *CLI_FLAGS, env=env)
    (session,) = _sessions(scratch)
    runs = RunModel(Tracker(scratch.uri))
    attempt = runs.attempts(session)[0]
    folder = runs.artifact_folder(attempt.run_id) / ARTIFACT_CHECKPOINTS
    newest = max(folder.glob("*.pt"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    resumed = run_cli(scratch, "resume", session.run_id)
    attempts = runs.attempts(session)
    skipped = any(newest.name in (a.skipped_checkpoints or "") for a in attempts)
    return Outcome("corrupted checkpoint", "checkpoint skipped", len(attempts), "-", "resumed from the previous one",
                   time.perf_counter() - tick, resumed.returncode == 0 and skipped)


def scenario_tracking_server_down(scratch: Scratch) -> Outcome:
    tick = time.perf_counter()
    result = run_cli(scratch, "train", *CLI_FLAGS, "--tracking-uri", "http://127.0.0.1:9", timeout=60)
    seconds = time.perf_counter() - tick
    passed = result.returncode == 2 and "cannot reach" in result.stderr and seconds < 30
    return Outcome("tracking server down at start", "bad input", 0, "-", f"exit {result.returncode}", seconds, passed)


def scenario_tracking_server_lost(scratch: Scratch) -> Outcome:
    """A real `mlflow server` killed mid-training and started again: the training goes on, journals what it
    cannot send, replays it when the server is back; the server ends with every generation exactly once."""
    from btc_ai.tracking.server import LocalMlflowServer  # the server helper: only for this scenario

    server = LocalMlflowServer(scratch.root / "server")
    server.start()
    try:
        return outage_mid_training(scratch, "tracking server lost", server.url, server.stop, server.start,
                                   scratch.env())
    finally:
        server.stop()


def outage_mid_training(scratch: Scratch, name: str, url: str, fail: Callable[[], None], heal: Callable[[], None],
                        env: dict[str, str]) -> Outcome:
    """A training against ``url``: ``fail()`` at generation 4, ``heal()`` at 12 (the training held meanwhile, so
    it replays mid-training); passed when it completes with every generation's metrics once, every committed
    checkpoint stored and no run left RUNNING (read as ``env``'s login)."""
    episodes = 24
    env = {**env, "MLFLOW_TRACKING_URI": url, "BTC_AI_FAULT": "Slow@1"}
    tick = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "btc_ai", "train", *CLI_FLAGS, "--generations", str(episodes)],
                            cwd=scratch.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        session_id, broken = "", False
        try:
            for line in proc.stdout:
                if line.startswith("session run "):
                    session_id = line.split()[2]
                elif line.startswith("gen 4/"):
                    fail()
                    broken = True
                elif line.startswith("gen 12/"):
                    proc.send_signal(signal.SIGSTOP)  # held while the server restarts, then it replays mid-training
                    heal()
                    broken = False
                    proc.send_signal(signal.SIGCONT)
                    break
        finally:
            if broken:  # the training ended (or this failed) before generation 12: the store comes back all the
                heal()  # same, for the reads below and the scenarios after this one
        _, err = proc.communicate(timeout=300)
        with logged_in(env):
            runs = RunModel(Tracker(url))
            session = runs.session(session_id)  # the server may hold other scenarios' sessions
            attempts = runs.attempts(session)
            steps = sorted(step for a in attempts for step, _ in runs.metric_history(a.run_id, METRIC_FITNESS_MEAN))
            stored = {(c.run_id, c.artifact_path) for c in runs.checkpoints(attempts)}
            missing = [f"{a.run_id}:{stem}" for a in attempts for stem in a.checkpoint_sha
                       if (a.run_id, f"{ARTIFACT_CHECKPOINTS}/{stem}.pt") not in stored]
            closed = not runs.running_runs(session.experiment_id)
            runs.tracker.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    exact = steps == list(range(1, episodes + 1))
    journaled = "journal" in err
    passed = proc.returncode == 0 and exact and closed and not missing and journaled
    problems = [text for text, bad in (("a run was not closed", not closed),
                                       (f"{len(missing)} checkpoint(s) missing", missing),
                                       ("the outage was not journaled", not journaled),
                                       (f"exit {proc.returncode}: {_last_line(err)}", proc.returncode != 0)) if bad]
    return Outcome(name, "outage (journaled)", len(attempts), "-",
                   "all metrics, once" if exact else f"{len(steps)} of {episodes} metrics", time.perf_counter() - tick,
                   passed, "; ".join(problems))


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


@contextlib.contextmanager
def logged_in(env: dict[str, str]):
    """This process's MLflow login set to ``env``'s for the block (a team server's reads), then put back."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for key in keys:
            if key in env:
                os.environ[key] = env[key]
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
