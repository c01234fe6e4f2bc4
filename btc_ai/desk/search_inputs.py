"""What a search is asked to do, checked before anything is created (`prepare`), and where its study is kept
(`study_storage`): the inputs of `desk.search` and of its report, `desk.search_report`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from btc_ai.desk.walk_forward import WalkForwardInputs, load_data
from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.data import data_fingerprint
from btc_ai.domain.errors import ConfigValidationError, UserInputError
from btc_ai.domain.folds import plan_folds
from btc_ai.domain.held_out import HeldOut, held_out_block, study_candles
from btc_ai.domain.search_space import Dimension
from btc_ai.recovery.validation import validated_config
from btc_ai.tracking.stores import sqlite_file

STUDY_FILE = "optuna.db"  # beside a local mlflow.db: see `study_storage`


def study_storage(tracking_uri: str, given: str | None) -> str:
    """Where Optuna keeps the study: ``given``, else beside a local SQLite store (``optuna.db`` in mlflow.db's
    folder). Not inside mlflow.db: both keep their schema version in a table named ``alembic_version``, and
    MLflow's migrations would read Optuna's. A server's database is not the client's to open, so a study
    tracked on a server names its storage (the team's PostgreSQL, a database of its own) with --study-storage."""
    if given:
        return given
    db = sqlite_file(tracking_uri)
    if db is None:
        raise UserInputError(f"the tracking store {tracking_uri} is a server: name the study's storage with "
                             "--study-storage (e.g. postgresql://USER@HOST/optuna, or sqlite:///PATH/optuna.db)")
    return f"sqlite:///{db.parent / STUDY_FILE}"


@dataclass
class SearchInputs:
    """Everything a search needs, checked before anything is created."""

    source: str
    candles: pd.DataFrame  # all of them, held-out block included
    files: list[dict[str, Any]]
    fingerprint: str
    values: dict[str, Any]  # the config every trial starts from (the space's keys drawn per trial)
    config: TrainingConfig
    dims: tuple[Dimension, ...]
    trials: int
    folds: int
    seeds: tuple[int, ...]
    seed: int  # the sampler's
    prune_after: int
    held_out_share: float
    held: HeldOut
    storage: str
    timeout: float | None = None
    study: pd.DataFrame = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.study = study_candles(self.candles, self.held)

    def spec(self) -> dict[str, Any]:
        return {"data_source": self.source, "data_fingerprint": self.fingerprint, "data_files": self.files,
                "config": self.values, "space": {d.key: d.as_dict() for d in self.dims}, "trials": self.trials,
                "folds": self.folds, "seeds": list(self.seeds), "seed": self.seed, "prune_after": self.prune_after,
                "held_out_share": self.held_out_share, "held_out": self.held.label,
                "held_out_cut": self.held.cut.isoformat(), "storage": self.storage, "timeout": self.timeout}

    def trial_inputs(self, drawn: Mapping[str, Any]) -> WalkForwardInputs:
        """The walk-forward of a trial with ``drawn`` values: on the study's candles only."""
        values = {**self.values, **drawn}
        try:
            validated = validated_config(values)
        except ConfigValidationError as exc:
            raise UserInputError(f"{exc}") from None
        return WalkForwardInputs(self.source, self.study, data_fingerprint(self.study), validated,
                                 plan_folds(self.study, validated.config, self.folds), self.seeds, self.files)


def prepare(source: str | Path | list[str] | None, values: Mapping[str, Any], dims: Sequence[Dimension], *,
            trials: int, folds: int, seeds: Sequence[int] | None, seed: int, prune_after: int,
            held_out_share: float, storage: str, timeout: float | None = None) -> SearchInputs:
    """Check everything (budget, config, data, the held-out block, the study part long enough for the folds)."""
    if trials < 1:
        raise UserInputError(f"--trials {trials}: a search needs at least 1 trial")
    if folds < 1:
        raise UserInputError(f"--folds {folds}: each trial's walk-forward needs at least 1 fold")
    values = {k: v for k, v in values.items() if k != "TEST_FRACTION"}
    try:
        config = validated_config(values).config
    except ConfigValidationError as exc:
        raise UserInputError(f"{exc}; fix these values (see `btc-ai presets --keys`)") from None
    label, candles, files = load_data(source)
    held = held_out_block(candles, config, held_out_share)
    inputs = SearchInputs(label, candles, files, data_fingerprint(candles), values, config, tuple(dims), trials,
                          folds, tuple(int(s) for s in seeds) if seeds else (config.SEED,), seed, prune_after,
                          held_out_share, held, storage, timeout)
    plan_folds(inputs.study, config, folds)  # the study's part must hold the folds (a one-line refusal if not)
    return inputs
