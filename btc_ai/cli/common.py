"""What the command modules share: the parser class, the flag helper, exit codes, the error line and the
tracking-server check (nothing heavy imported, so building the parser stays fast)."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from btc_ai.domain.errors import CredentialsError, UserInputError
from btc_ai.tracking.credentials import PASSWORD_VARIABLE, USERNAME_VARIABLE, login_hint, redact

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2  # and 128 + the signal number when interrupted

TRACKING_URI_HELP = ("MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the local store "
                     "sqlite:///<this folder>/mlruns/mlflow.db)")
EXIT_CODES = ("exit codes: 0 done, 1 the training failed (error_report.md on the failed attempts), 2 bad input "
              "(one line says what and how to fix it; nothing is created), 130 interrupted by Ctrl-C, 143 by SIGTERM")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong and where to look), exit code 2, and no
    abbreviated flags (``--learning_rat`` must not silently mean ``--learning_rate``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """``--name`` and its dash form ``--na-me``, both stored as ``name``."""
    dashed = name.replace("_", "-")
    names = [f"--{dashed}"] + ([f"--{name}"] if dashed != name else [])  # the dash form first, as users type it
    parser.add_argument(*names, dest=name, **kwargs)


def error(message: str) -> None:
    """The one-line error format of `btc-ai` on stderr (secrets masked: a URI's password, password variables)."""
    print(f"btc-ai: error: {redact(message)}", file=sys.stderr)


class TrackingServerUnreachable(UserInputError):
    """The HTTP tracking server did not answer its health check before anything started."""


def check_tracking_uri(uri: str | None, *, must_exist: bool = False, write: bool = True,
                       experiment: str = "btc-ai") -> None:
    """The store must be usable before anything starts, in milliseconds (not MLflow's minutes of retries
    and a traceback): a URI MLflow opens, a local store this user can read (``write``: and write) that
    exists where it must (``must_exist``: report, resume), and an HTTP server that answers in 5 s and
    accepts our login.
    Nothing is created (`btc_ai.tracking.stores.check_store`)."""
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.tracking.stores import check_store

    uri = check_store(uri, must_exist=must_exist, write=write)
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingServerUnreachable(f"cannot reach the tracking server at {uri} ({reason}); start it, or check "
                                        "--tracking-uri / MLFLOW_TRACKING_URI") from None
    check_login(uri, experiment)


def check_login(uri: str, experiment: str = "btc-ai") -> None:
    """A server that has logins (MLflow's basic-auth app) accepts ours and lets us read ``experiment``:
    else one line (which server, what to set) before anything is created or journaled. A server without
    logins answers 200 or 404 here, which is fine."""
    import urllib.error  # urllib.request loads http and email: only when a server is asked
    import urllib.request

    query = urllib.parse.urlencode({"experiment_name": experiment})
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}")
    user, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise CredentialsError(f"the tracking server at {uri} refused the request: {login_hint(uri)}") from None
        if exc.code == 403:
            raise CredentialsError(f"the tracking server at {uri} does not let user {user!r} read experiment "
                                   f"{experiment!r}; ask its admin for permission on it, or use --experiment NAME") \
                from None
    except (urllib.error.URLError, OSError, ValueError):
        pass  # it answered /health just now; a hiccup here is the training's to ride out


def check_run_reference(uri: str | None, ref: str) -> None:
    """A run ID or model URI on a local store is looked up with sqlite3 before anything heavy loads: a wrong
    or deleted one is refused in milliseconds (a checkpoint path, or a server's run, is left to the resume)."""
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.tracking.paths import resolve_tracking_uri
    from btc_ai.tracking.stores import sqlite_file

    ref = ref.strip()
    if sqlite_file(resolve_tracking_uri(uri)) is None:
        return
    if not ref.startswith("models:/") and ("/" in ref or os.sep in ref or ref.endswith(".pt") or os.path.exists(ref)):
        return
    from btc_ai.tracking.run_model.local import open_run_model

    open_run_model(uri).resolve_session(ref)  # ResumeError or StoreError: one line, exit 2


def check_writable(folder: str, what: str, flag_name: str, *, renamed_into_place: bool = False) -> None:
    """A folder a command will write into (or, where it is still to be made, the nearest one that exists)
    is writable for this user: refused before anything is created, not as a failed training later. A folder
    ``renamed_into_place`` is built beside it first, so its parent is what must be writable."""

    path = Path(folder).absolute()
    existing = path.parent if renamed_into_place else path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(f"{what} {folder} cannot be made: {existing} is a file; pass {flag_name} DIR")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "the working folder" if existing == Path.cwd() else existing
        raise UserInputError(f"{what} {folder} cannot be written: {where} is read-only for this user; run btc-ai "
                             f"in a folder you can write, or pass {flag_name} DIR")


DATA_HELP = ("candles: a CSV/Parquet/zip file, a folder of them (Binance's monthly zips; .CHECKSUM and *.part files "
             "are passed over), a quoted glob ('data/BTCUSDT-5m-*.zip'), or several of these, read as one series")
OUTLIER_HELP = ("bars whose open, high or low lie over 1.5x outside the previous and own close: repair (default: "
                "clamp them to those closes), refuse, or keep; sets BTC_AI_OUTLIER_BARS")


def data_source(values: str | list[str] | None, name: str = "--data_path") -> str | list[str] | None:
    """One path stays the text it always was; several (``--data_path a b``, a repeated flag, DATA DATA) a list."""
    if values is None or isinstance(values, str):
        items = [] if values is None else [values]
    else:
        items = list(values)
    if any(not str(v).strip() for v in items):
        raise UserInputError(f"{name} is empty; give a CSV, Parquet or zip file, a folder or a glob, or drop it for "
                             "the built-in data")
    if not items:
        return None
    return items[0] if len(items) == 1 else items


_outlier_before: list[tuple[str, str | None]] = []  # what --outlier-bars and --system-metrics replaced, put back
                                                   # as the command ends


def apply_outlier_flag(args: argparse.Namespace) -> None:
    """--outlier-bars for every reader of this command (sessions, folds, the backtest), checked here; the
    variable is put back when the command ends (:func:`undo_outlier_flag`), so a later ``main()`` in the same
    process (a notebook, a test) reads its data as it would alone."""
    choice = getattr(args, "outlier_bars", None)
    if choice is None:
        return
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.domain.data.quality import OUTLIER_VARIABLE, outlier_choice

    _set_for_command(OUTLIER_VARIABLE, outlier_choice(choice))


SYSTEM_METRICS_HELP = ("log the attempts' CPU, memory, disk and network use as MLflow system metrics (system/...); "
                       "sets MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true for this command")


def add_variable_flags(parser: argparse.ArgumentParser) -> None:
    """--outlier-bars and --system-metrics: flags that set a variable for one training command."""
    flag(parser, "outlier_bars", metavar="CHOICE", help=OUTLIER_HELP)
    flag(parser, "system_metrics", action="store_true", help=SYSTEM_METRICS_HELP)


def apply_variable_flags(args: argparse.Namespace) -> None:
    apply_outlier_flag(args)
    apply_system_metrics_flag(args)


def apply_system_metrics_flag(args: argparse.Namespace) -> None:
    """--system-metrics: MLflow's own switch, for this command only (put back like --outlier-bars)."""
    if getattr(args, "system_metrics", False):
        _set_for_command("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")


def _set_for_command(name: str, value: str) -> None:
    _outlier_before.append((name, os.environ.get(name)))
    os.environ[name] = value


def undo_outlier_flag() -> None:
    """The variables as they were before this command's --outlier-bars and --system-metrics."""
    while _outlier_before:
        name, before = _outlier_before.pop()
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
