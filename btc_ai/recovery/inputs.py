"""What a session trains on: the config (validated at the edge: `btc_ai.recovery.validation`), the data, and
where it starts — for a new session or for a resumed one. Every mistake found here is a `UserInputError`,
raised before anything is created on the store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from btc_ai.domain.config import STRUCTURAL_KEYS, TrainingConfig, normalize_key
from btc_ai.domain.data import DataReport, clean_candles, data_fingerprint, load_candles
from btc_ai.domain.data.sources import file_set_change, missing_part, source_from_text, source_text
from btc_ai.domain.errors import DataValidationError, ResumeError
from btc_ai.domain.synthetic import default_candles
from btc_ai.recovery.repairs import Repair, shorten_episode_to_data
from btc_ai.recovery.state import RecoveryState
from btc_ai.recovery.validation import ValidatedConfig
from btc_ai.tracking.run_model import BUILTIN_DATA, DATAFRAME_DATA
from btc_ai.training import training_bars
from btc_ai.training.checkpoint import TrainingState, load_checkpoint


@dataclass
class SessionInputs:
    """Everything the first attempt needs, and what was repaired to get it."""

    config: TrainingConfig
    data: pd.DataFrame
    report: DataReport
    start: TrainingState | None
    requested: dict[str, Any] = field(default_factory=dict)  # the config as asked for (a new session's params)
    repairs: list[Repair] = field(default_factory=list)
    data_changed: bool = False
    source: str = BUILTIN_DATA
    resume: RecoveryState | None = None


def resume_reference(recovery_state: Any) -> RecoveryState | str | None:
    """A run ID or model URI (or a RecoveryState) to resume from; None for a local state or checkpoint file."""
    if isinstance(recovery_state, RecoveryState):
        return recovery_state
    if isinstance(recovery_state, str) and not Path(recovery_state).exists():
        return recovery_state
    return None


def checkpoint_session(ref: str) -> str:
    """The run ID of the session a local checkpoint file (or its folder) belongs to: checkpoints are written
    to ``<checkpoint dir>/<session run ID>/``, so the folder's name is the session. ResumeError when it is
    not a run ID (a file copied elsewhere): then the session is unknown, and its config with it."""
    path = Path(ref)
    folder = path if path.is_dir() else path.parent
    name = folder.resolve().name
    if _RUN_ID.match(name):
        return name
    raise ResumeError(f"{ref} is a local file, not a run, and its folder {name!r} is not a session run ID (a "
                      "checkpoint stands for its session only in checkpoints/<session run ID>/); resume takes a "
                      "session or attempt run ID or a models:/ URI")


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def new_session_inputs(config: ValidatedConfig, df: Any, start: TrainingState | None,
                       date_format: str | None = None) -> SessionInputs:
    """The inputs of a new session: ``config`` as validated at the edge (its repairs recorded with the session),
    the data (text dates read as ``date_format`` says), the state it starts from (None: generation 0)."""
    data, report, data_repair = resolve_data(df, date_format)
    repairs = [*config.repairs, *([data_repair] if data_repair is not None else [])]
    inputs = SessionInputs(config.config, data, report, start, dict(config.requested), repairs, source=source_label(df))
    return _fit_episode(inputs)


def resumed_inputs(rs: RecoveryState, cfg: TrainingConfig, df: Any, *, date_format: str | None = None,
                   allow_data_change: bool = False) -> SessionInputs:
    """The inputs of a resumed session: its recovered config ``cfg`` (see :func:`resumed_config`), the data it
    recorded (or ``df``), its newest good state."""
    source = df if df is not None else recorded_source(rs)
    data, report, _ = resolve_data(source, date_format)
    changed = check_fingerprint(rs, data, allow_data_change, report)
    return _fit_episode(SessionInputs(cfg, data, report, rs.training_state, data_changed=changed,
                                      source=source_label(source), resume=rs))


def _fit_episode(inputs: SessionInputs) -> SessionInputs:
    repair = shorten_episode_to_data(inputs.config, training_bars(inputs.data, inputs.config))
    if repair is not None:
        inputs.repairs.append(repair)
        inputs.config = repair.apply(inputs.config)
    return inputs


def resolve_data(df: Any, date_format: str | None = None) -> tuple[pd.DataFrame, DataReport, Repair | None]:
    """Candles from a DataFrame, a file or the built-in data (text dates read as ``date_format`` says, else as
    the file's evidence says); a DataFrame that fails validation is cleaned (a repair), a file that fails it
    is refused."""
    if df is None or (isinstance(df, str) and df == BUILTIN_DATA):
        df = default_candles()
    try:
        data, report = load_candles(df, date_format=date_format)
        return data, report, None
    except DataValidationError as exc:
        if not isinstance(df, pd.DataFrame):
            raise
        cleaned, actions = clean_candles(df)
        data, report = load_candles(cleaned, date_format=date_format)
        repair = Repair("clean_data", f"the data failed validation ({exc}): cleaned", "DataValidationError",
                        {}, cleaned, tuple(actions))
        return data, report, repair


def check_fingerprint(rs: RecoveryState, data: pd.DataFrame, allow_change: bool,
                      report: DataReport | None = None) -> bool:
    """True when the data changed and the change is allowed; ResumeError when it is not allowed. The data
    changed when its candles did (the fingerprint) or, for many files, when the set of files did (a file
    added, removed or changed, even one whose bars were all duplicates)."""
    current = [f.to_dict() for f in report.files] if report is not None else []
    files = file_set_change(rs.data_files, current) if rs.data_files else None
    if (rs.data_fingerprint is None or data_fingerprint(data) == rs.data_fingerprint) and files is None:
        return False
    if not allow_change:
        what = f"the data files differ: {files}" if files else "fingerprint mismatch"
        raise ResumeError(f"the data differs from the data session {rs.session_run_id} trained on "
                          f"({what}); pass the original data, or allow the change with --allow-data-change")
    return True


def resumed_config(rs: RecoveryState, overrides: Any) -> TrainingConfig:
    """The recovered config (after repairs) with the caller's overrides, e.g. more EPISODES."""
    if isinstance(overrides, TrainingConfig):
        overrides = overrides.overrides()
    changes = {normalize_key(k): v for k, v in dict(overrides or {}).items()}
    changes = {k: v for k, v in changes.items() if rs.config.to_dict().get(k) != v}
    structural = sorted(set(changes) & STRUCTURAL_KEYS)
    if structural and rs.training_state is not None:
        raise ResumeError(f"cannot change {', '.join(structural)} when resuming: the checkpoint fixes the network shape")
    return rs.config.replace(**changes) if changes else rs.config


def source_label(df: Any) -> str:
    if df is None:
        return BUILTIN_DATA
    if isinstance(df, (str, Path, list, tuple)):
        return source_text(df)
    return DATAFRAME_DATA


def recorded_source(rs: RecoveryState) -> Any:
    if rs.data_source in (None, BUILTIN_DATA):
        return None
    if rs.data_source == DATAFRAME_DATA:
        raise ResumeError(f"session {rs.session_run_id} trained on a DataFrame passed in Python; pass the same data "
                          "again (df=... or --data_path)")
    missing = missing_part(rs.data_source)
    if missing is not None:
        raise ResumeError(f"the data file {missing} of session {rs.session_run_id} is not here; pass the data "
                          "with --data_path")
    return source_from_text(rs.data_source)


def load_state(recovery_state: TrainingState | str | Path | None) -> TrainingState | None:
    """A local state to start a new session from: given, or read from a checkpoint file."""
    if recovery_state is None or isinstance(recovery_state, TrainingState):
        return recovery_state
    return load_checkpoint(recovery_state)
