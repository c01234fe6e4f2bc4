"""Fault injection for tests and `btc-ai chaos`: raise a chosen error inside a chosen generation.

The documented hook is the environment variable ``BTC_AI_FAULT`` read by the CLI, or
:func:`inject_fault` around any ``training_func``. A spec reads ``ERROR@GENERATION[:KEY][xTIMES]``:
``ValueError@3`` raises ValueError while generation 3 is evaluated (generation 2 is the last good
one); ``KeyError@2:LEARNING_RATE`` names the config key at fault; ``NaN@4`` makes a member's fitness
NaN so the ES itself detects it; ``Stall@4`` hangs generation 4 (the stall watchdog ends it);
``Slow@4`` adds 0.1 s to generation 4 and every later one (paces a training so a test can act on it
mid-way, e.g. stop a tracking server); ``x2`` fires twice (default once per process).

``BTC_AI_KILL_AT=STEP@N`` SIGKILLs the process right after a step of its N-th checkpoint commit (see
:func:`commit_step`), where no generation boundary falls: ``upload`` (the file is on the store), ``metrics:K``
(the K-th metric chunk is), ``marker`` (the marker tags are: the commit is complete), ``retention`` (older
checkpoints are retired). ``BTC_AI_COMMIT_FAULT=ERROR@STEP@N`` raises ERROR (a name as in ``BTC_AI_FAULT``)
in place of that step of the N-th commit, on the writer thread (``PermissionError@upload@3``: the store refuses
the third checkpoint's file, as a 403 or a read-only artifact folder would). Only tests and `btc-ai chaos` set
them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from btc_ai.domain import errors
from btc_ai.domain.evaluation import PopulationEvaluator

ENV_VAR = "BTC_AI_FAULT"
SLOW_SECONDS = 0.1
_SPEC = re.compile(r"^(?P<error>\w+)@(?P<generation>\d+)(?::(?P<key>[A-Z_]+))?(?:x(?P<times>\d+))?$")
KILL_ENV_VAR = "BTC_AI_KILL_AT"
_KILL = re.compile(r"^(?P<step>upload|metrics:(?P<chunk>[1-9]\d*)|marker|retention)@(?P<commit>[1-9]\d*)$")
COMMIT_FAULT_ENV_VAR = "BTC_AI_COMMIT_FAULT"
_commits = 0  # checkpoint commits this process has begun


def _make(name: str, message: str) -> BaseException:
    factories: dict[str, Callable[[], BaseException]] = {
        "JSONDecodeError": lambda: json.JSONDecodeError(message, "{", 0),
        "FileNotFoundError": lambda: FileNotFoundError(errno.ENOENT, message, "injected.csv"),
        "PermissionError": lambda: PermissionError(errno.EACCES, message, "checkpoints"),
        "OSError": lambda: OSError(errno.EIO, message),
        "OutOfMemoryError": lambda: torch.OutOfMemoryError(message),
        "EnvironmentError": lambda: errors.TradingEnvironmentError(message),
    }
    if name in factories:
        return factories[name]()
    cls = getattr(errors, name, None) or _builtin(name)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise ValueError(f"unknown fault error {name!r}")
    return cls(message)


def _builtin(name: str) -> Any:
    import builtins

    return getattr(builtins, name, None)


@dataclass
class FaultSpec:
    """One fault: which error, in which generation (1-based), naming which key, how many times."""

    error: str
    generation: int
    key: str | None = None
    times: int = 1
    fired: int = field(default=0, compare=False)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        match = _SPEC.match(text.strip())
        if not match:
            raise ValueError(f"fault spec {text!r} is not ERROR@GENERATION[:KEY][xTIMES], e.g. ValueError@3")
        spec = cls(match["error"], int(match["generation"]), match["key"], int(match["times"] or 1))
        if spec.error not in {"NaN", "Stall", "Slow"}:
            _make(spec.error, "check")  # unknown error names fail here, not mid-training
        return spec

    def build(self) -> BaseException:
        exc = _make(self.error, f"injected {self.error} in generation {self.generation}")
        if self.key:
            exc.key = self.key  # type: ignore[attr-defined]
        if isinstance(exc, KeyError) and self.key:
            exc.args = (self.key,)
        return exc


class _FaultyEvaluator:
    def __init__(self, inner: PopulationEvaluator, spec: FaultSpec) -> None:
        self.inner = inner
        self.spec = spec

    def evaluate(self, params: np.ndarray, generation: int, members: Sequence[int]) -> np.ndarray:
        if self.spec.error == "Slow":
            if generation + 1 >= self.spec.generation:
                time.sleep(SLOW_SECONDS)
            return self.inner.evaluate(params, generation, members)
        due = generation + 1 == self.spec.generation and self.spec.fired < self.spec.times
        if due:
            self.spec.fired += 1
            if self.spec.error == "Stall":
                time.sleep(3600)  # a hung step: the stall watchdog must end it
            elif self.spec.error != "NaN":
                raise self.spec.build()
        fitness = self.inner.evaluate(params, generation, members)
        if due:
            fitness = np.array(fitness, dtype=np.float64)
            fitness[0] = np.nan
        return fitness


def inject_fault(training_func: Callable[..., Any], spec: FaultSpec | str) -> Callable[..., Any]:
    """``training_func`` with ``spec``'s fault raised inside the real generation loop."""
    spec = FaultSpec.parse(spec) if isinstance(spec, str) else spec

    def faulty(config: Any, df: Any = None, save_path: Any = None, recovery_state: Any = None, **kwargs: Any) -> Any:
        return training_func(config, df, save_path, recovery_state,
                             wrap_evaluator=lambda inner: _FaultyEvaluator(inner, spec), **kwargs)

    faulty.fault = spec  # type: ignore[attr-defined]
    return faulty


def parse_kill_point(text: str) -> tuple[str, int]:
    """``metrics:2@3`` -> ("metrics:2", 3); ValueError naming the form when ``text`` is not a kill point."""
    match = _KILL.match(text.strip())
    if not match:
        raise ValueError(f"kill point {text!r} is not STEP@N with STEP upload, metrics:K, marker or retention "
                         "(e.g. metrics:1@2: after the first metric chunk of the second checkpoint commit)")
    return match["step"], int(match["commit"])


def commit_began() -> int:
    """Count a checkpoint commit of this process; returns its number (1-based) for :func:`commit_step`."""
    global _commits
    _commits += 1
    return _commits


def commit_step(step: str, commit: int) -> None:
    """``step`` of checkpoint commit number ``commit`` is done: SIGKILL this process here when
    ``BTC_AI_KILL_AT`` names this step of this commit."""
    text = os.environ.get(KILL_ENV_VAR)
    if text and parse_kill_point(text) == (step, commit):
        os.kill(os.getpid(), signal.SIGKILL)


def parse_commit_fault(text: str) -> tuple[str, str, int]:
    """``PermissionError@upload@3`` -> ("PermissionError", "upload", 3); ValueError naming the form otherwise."""
    name, _, point = text.strip().partition("@")
    try:
        _make(name, "check")
        step, commit = parse_kill_point(point)
    except ValueError as exc:
        raise ValueError(f"commit fault {text!r} is not ERROR@STEP@N (e.g. PermissionError@upload@3): {exc}") from None
    return name, step, commit


def commit_fault(step: str, commit: int) -> None:
    """About to do ``step`` of checkpoint commit number ``commit``: raise the error ``BTC_AI_COMMIT_FAULT``
    names for this step of this commit instead."""
    text = os.environ.get(COMMIT_FAULT_ENV_VAR)
    if text:
        name, at, number = parse_commit_fault(text)
        if (at, number) == (step, commit):
            raise _make(name, f"injected {name} in {step} of checkpoint commit {commit}")


def training_func_from_environment() -> Callable[..., Any]:
    """`train_model`, with the fault `BTC_AI_FAULT` names injected; every fault variable set is checked
    first (`BTC_AI_KILL_AT` and `BTC_AI_COMMIT_FAULT` act inside checkpoint commits): ValueError naming the
    variable when one does not parse."""
    from btc_ai.training.loop import train_model

    for name, parse in ((KILL_ENV_VAR, parse_kill_point), (COMMIT_FAULT_ENV_VAR, parse_commit_fault),
                        (ENV_VAR, FaultSpec.parse)):
        try:
            if os.environ.get(name):
                parse(os.environ[name])
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return inject_fault(train_model, os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else train_model
