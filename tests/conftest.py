"""Shared fixtures and helpers: small candle sets, the tiny config (as a dict and as `btc-ai` flags), a
tracking store under tmp_path, `btc-ai` in a subprocess or in-process through ``main(argv)``."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the candle cache of the tests (and the `btc-ai` processes they start) is their own, never ~/.cache; a
# process that names one (a benchmark's child importing the writers here) keeps it
if "BTC_AI_CACHE_DIR" not in os.environ:
    os.environ["BTC_AI_CACHE_DIR"] = tempfile.mkdtemp(prefix="btc_ai-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BTC_AI_CACHE_DIR"], True)
# a session's end draws no PNG in the tests (about 2 s a training: minutes of the suite); the tests of the
# plots turn them on (``plots_on``, or BTC_AI_PLOTS=on in a subprocess's env) and a test checks the switch
os.environ.setdefault("BTC_AI_PLOTS", "off")
REAL_DATA = ROOT.parent / "shared" / "data" / "btcusdt_5m_2021-06_binance.csv"

# A config small enough that a whole training takes a fraction of a second.
TINY = {
    "EPISODES": 6,
    "ES_POPULATION": 8,
    "HIDDEN_SIZE": 8,
    "MAX_STEPS_PER_EPISODE": 64,
    "EPISODES_PER_EVAL": 2,
    "EVAL_INTERVAL": 2,
    "MIN_CHECKPOINT_INTERVAL": 2,
    "CHECKPOINT_MIN_SECONDS": 0.0,
    "NOISE_TABLE_SIZE": 1 << 16,
}


@pytest.fixture(scope="session")
def candles() -> pd.DataFrame:
    """Three weeks of synthetic 5-minute candles."""
    from btc_ai.domain.synthetic import synthetic_candles

    return synthetic_candles(n_rows=6048, seed=3)


@pytest.fixture(scope="session")
def real_candles() -> pd.DataFrame:
    if not REAL_DATA.exists():
        pytest.skip(f"real data not present at {REAL_DATA}")
    from btc_ai.domain.data import load_candles

    return load_candles(REAL_DATA)[0]


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


# the flags `btc-ai train` has for these keys; every other key of the tiny config goes as --set KEY=VALUE
_TINY_FLAG_NAMES = {"EPISODES": "--generations", "HIDDEN_SIZE": "--hidden-size", "ES_POPULATION": "--es-population"}


def tiny_flags(**overrides: Any) -> list[str]:
    """The tiny config as `btc-ai train` flags; ``overrides`` change keys (or add them), ``KEY=None`` leaves a
    key out (so it takes the preset's value)."""
    config = {**TINY, **overrides}
    flags = [arg for key, name in _TINY_FLAG_NAMES.items() if config.get(key) is not None
             for arg in (name, str(config[key]))]
    return flags + [f"--set={key}={value}" for key, value in config.items()
                    if key not in _TINY_FLAG_NAMES and value is not None]


def store_uri(folder: Path) -> str:
    """The local store `btc-ai` run in ``folder`` uses: ``folder/mlruns/mlflow.db``."""
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def session_runs(uri: str, experiment: str = "btc-ai") -> list:
    """The session runs of a store's experiment, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], "tags.`btc_ai.kind` = 'session'",
                              order_by=["attribute.start_time ASC"])


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return store_uri(tmp_path)


def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a `btc-ai` subprocess: its own store, no inherited tracking URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = store_uri(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    env["BTC_AI_PROGRESS_EVERY"] = "1"  # a progress line per generation: tests act on `gen N/` lines
    return env


def wait_for_line(proc: Any, lines: list[str], prefix: str) -> None:
    """Read ``proc``'s stdout into ``lines`` until a line starts with ``prefix``; fail if it ends first."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return
    raise AssertionError(f"training ended before {prefix!r}:\n{''.join(lines)}")


def btc_ai_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "btc_ai", *args]


@contextlib.contextmanager
def logging_put_back() -> Iterator[None]:
    """The level, propagation and handlers of the loggers ``main()`` configures, as they were before the block."""
    loggers = [logging.getLogger(name) for name in ("btc_ai", "mlflow", "alembic")]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    try:
        yield
    finally:
        for lg, level, propagate, kept in saved:
            for handler in [h for h in lg.handlers if h not in kept]:
                lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def run_cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`btc-ai ARGS` run as a subprocess would run it (working folder ``folder``, exactly the environment
    ``env``, default `cli_env`; its exit code, stdout and stderr) but in this process, through ``main(argv)``:
    the seconds a fresh interpreter spends importing MLflow and torch are paid once per test process. For
    the commands a test does not signal, kill or run beside another; those stay real processes
    (`btc_ai_cmd`). The working folder, environment, logging and signal handlers are put back afterwards."""
    import io
    import signal
    from contextlib import redirect_stderr, redirect_stdout

    from btc_ai.cli import main

    env = cli_env(folder) if env is None else env
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(folder)
        with logging_put_back(), redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # `--help`, argparse's usage errors
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess([*btc_ai_cmd(*args)], code, out.getvalue(), err.getvalue())


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path as the working folder of an in-process `btc-ai` (see ``run_main``), with its own store and
    the environment `cli_env` gives a subprocess; the logging and environment ``main()`` sets are undone."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(tmp_path))
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "ERROR")  # what main() sets; restored (removed) afterwards
    monkeypatch.setenv("BTC_AI_PROGRESS_EVERY", "1")
    monkeypatch.delenv("BTC_AI_FAULT", raising=False)
    monkeypatch.delenv("BTC_AI_KILL_AT", raising=False)
    with logging_put_back():
        yield tmp_path


@pytest.fixture
def run_main(here: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`btc-ai ARGS` in this process through ``main(argv)`` in ``here``: (exit code, stdout, stderr).
    argparse's own errors (which exit through the parser) come back as their exit code too."""
    from btc_ai.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # what came before is not this command's output
        try:
            code = main(list(argv))
        except SystemExit as exc:  # `--help`, and argparse's usage errors
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def write_binance_csv(path: Path, df: pd.DataFrame) -> Path:
    """Candles in the raw Binance kline layout (no header, 12 columns, epoch ms)."""
    ms = (df.index.asi8 // 1_000_000).astype(np.int64)
    out = pd.DataFrame(
        {
            0: ms, 1: df["open"], 2: df["high"], 3: df["low"], 4: df["close"], 5: df["volume"],
            6: ms + 299_999, 7: df["volume"] * df["close"], 8: 100, 9: df["volume"] / 2,
            10: df["volume"] * df["close"] / 2, 11: 0,
        }
    )
    out.to_csv(path, header=False, index=False)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` sends the tests of one ``xdist_group`` to one test process by a ``@group`` suffix on
    their IDs, which pytest-xdist 3.8 sets through ``item._nodeid``; pytest 9 keeps the ID elsewhere, so
    without this every group was split across processes (a Ray cluster or a module's training twice). Where
    xdist's own suffix took, nothing is done."""
    if not getattr(config.option, "loadgroup", False):  # set in the test processes of --dist loadgroup
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid.rpartition("]")[2].rpartition("::")[2]:
            from _pytest.nodeid import coerce_node_id  # pytest 9's ID type; pytest 8 never gets here

            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")
