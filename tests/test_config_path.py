"""One config path: a command's config is validated once, where it comes in (the CLI, or the Python entry
points), and the layers below take the validated config as it is — a dict is refused there, not validated
again. `GENERATIONS` (flag and key) names what the seed called EPISODES; the old name stays accepted and
is still the one runs record."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from conftest import TINY, tiny_flags

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import ConfigValidationError
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.training import train_model


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """How often a TrainingConfig is validated (pydantic's model_validate, which every construction goes
    through), by the caller's function name."""
    seen: Counter = Counter()
    original = TrainingConfig.model_validate.__func__  # type: ignore[attr-defined]

    def counted(cls: type[TrainingConfig], *args: Any, **kwargs: Any) -> TrainingConfig:
        import sys

        seen[sys._getframe(1).f_code.co_name] += 1
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(TrainingConfig, "model_validate", classmethod(counted))
    return seen


@pytest.mark.slow  # a whole (tiny) training, in process
def test_a_training_command_validates_its_config_once(run_main, validations) -> None:
    code, _, err = run_main("train", "--quiet", *tiny_flags(EPISODES=None), "--episodes", "2")
    assert code == 0, err
    assert sum(validations.values()) == 1, dict(validations)


@pytest.mark.slow  # a tiny training, resumed with more generations, and a two-fold walk-forward, in process
def test_a_resume_and_a_walk_forward_validate_their_config_once(here, run_main, validations, candles) -> None:
    from conftest import session_runs, store_uri, write_binance_csv

    code, _, err = run_main("train", "--quiet", *tiny_flags(EPISODES=2))
    assert code == 0, err
    (session,) = session_runs(store_uri(here))
    validations.clear()
    # the checkpoint's config is restored as it was validated; the override is checked key by key
    code, _, err = run_main("resume", session.info.run_id, "--episodes", "4", "--quiet")
    assert code == 0, err
    assert sum(validations.values()) == 0, dict(validations)
    code, _, err = run_main("resume", session.info.run_id, "--episodes", "0")  # still checked, one line
    assert code == 2 and "GENERATIONS=0" in err, err
    validations.clear()
    path = write_binance_csv(here / "c.csv", candles)
    code, _, err = run_main("walk-forward", str(path), "--folds", "2", "--quiet", *tiny_flags(EPISODES=2))
    assert code == 0, err
    assert sum(validations.values()) == 1, dict(validations)  # the folds' SEED and TEST_FRACTION: key by key


def test_the_layers_below_the_edge_take_a_validated_config_and_refuse_a_dict(tmp_path) -> None:
    from btc_ai.desk.walk_forward import prepare

    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(TypeError, match="ValidatedConfig"):
        system.train(train_model, dict(TINY))
    with pytest.raises(TypeError, match="ValidatedConfig"):
        prepare(None, dict(TINY), folds=2)
    assert not (tmp_path / "m.db").exists()  # refused before any store was opened
    checked = system.validated(TINY)
    assert checked.config.generations == 6
    assert [r.rule for r in checked.repairs] == ["fill_missing_from_preset"]  # recorded with the config


def test_min_checkpoint_interval_is_the_configs_key_alone(tmp_path) -> None:
    """The specification's constructor argument is the key's default where the config leaves it out; a
    config that names the key wins; nothing changes it after validation."""
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path, min_checkpoint_interval=7)
    assert system.validated({"SEED": 1}).config.MIN_CHECKPOINT_INTERVAL == 7
    assert system.validated({**TINY, "MIN_CHECKPOINT_INTERVAL": 3}).config.MIN_CHECKPOINT_INTERVAL == 3
    given = TrainingConfig.from_dict(TINY)
    assert system.validated(given).config is given  # a TrainingConfig is taken as it is, not validated again


def test_generations_is_the_name_and_episodes_an_alias() -> None:
    assert TrainingConfig.from_dict({"GENERATIONS": 12}).EPISODES == 12
    assert TrainingConfig.from_dict({"generations": 12}).generations == 12
    assert "EPISODES" in TrainingConfig.from_dict({"GENERATIONS": 12}).to_dict()  # runs record the old name
    with pytest.raises(ConfigValidationError, match="GENERATIONS=0"):
        TrainingConfig.from_dict({"GENERATIONS": 0})


def test_the_generations_flag_and_its_old_name(run_main) -> None:
    from btc_ai.cli import build_parser, config_from_args

    code, out, _ = run_main("train", "--help")
    assert code == 0 and "--generations" in out and "GENERATIONS" in out
    for flag in ("--generations", "--episodes"):
        args = build_parser().parse_args(["train", flag, "7"])
        assert config_from_args(args).config.EPISODES == 7
    code, _, err = run_main("train", "--set", "GENERATIONS=many")
    assert code == 2 and "GENERATIONS='many'" in err, err
