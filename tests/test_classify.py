"""The classification table, row by row, and the repairs' own rules."""

from __future__ import annotations

import json

import pytest
import torch

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.errors import (
    ClusterLostError,
    ConfigValidationError,
    DataValidationError,
    GPUError,
    NaNError,
    TradingEnvironmentError,
    TrainingStalledError,
)
from btc_ai.domain.presets import preset_config
from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.classify import RECOVERABLE, UNRECOVERABLE, choose_repair, classify
from btc_ai.recovery.repairs import RepairContext
from btc_ai.recovery.validation import validate_and_repair

ROWS = [
    (ValueError("x"), True, "ValueError"),
    (KeyError("x"), True, "KeyError"),
    (IndexError("x"), True, "IndexError"),
    (AttributeError("x"), True, "AttributeError"),
    (RuntimeError("x"), True, "RuntimeError"),
    (DataValidationError("x"), True, "DataValidationError"),
    (json.JSONDecodeError("x", "{", 0), True, "JSONDecodeError"),  # a ValueError, matched more specifically
    (ZeroDivisionError("x"), True, "ZeroDivisionError"),
    (NaNError("x"), True, "NaNError"),
    (TradingEnvironmentError("x"), True, "TradingEnvironmentError"),
    (TrainingStalledError("x"), True, "TrainingStalledError"),
    (torch.OutOfMemoryError("x"), True, "OutOfMemoryError"),  # a RuntimeError
    (ClusterLostError("x"), True, "ClusterLostError"),  # a RuntimeError: the repair moves to the local evaluator
    (ImportError("x"), False, "ImportError"),
    (ModuleNotFoundError("x"), False, "ModuleNotFoundError"),  # an ImportError
    (FileNotFoundError("x"), False, "FileNotFoundError"),  # an OSError
    (PermissionError("x"), False, "PermissionError"),
    (MemoryError("x"), False, "MemoryError"),
    (OSError("x"), False, "OSError"),
    (OSError("x"), False, "OSError"),  # Python 3's builtin EnvironmentError IS OSError
    (GPUError("x"), False, "GPUError"),  # a RuntimeError, but a hardware fault
    (KeyboardInterrupt(), False, "KeyboardInterrupt"),
    (ConfigValidationError([]), True, "ValueError"),
]


@pytest.mark.parametrize(("exc", "recoverable", "matched"), ROWS, ids=[f"{type(r[0]).__name__}" for r in ROWS])
def test_every_row_of_the_table(exc, recoverable, matched, tmp_path) -> None:
    verdict = classify(exc)
    assert (verdict.recoverable, verdict.matched) == (recoverable, matched)
    assert verdict.reason


def test_every_table_type_has_a_row_in_this_test() -> None:
    tested = {r[2] for r in ROWS}
    assert {t.__name__ for t in (*RECOVERABLE, *UNRECOVERABLE)} <= tested


def test_unknown_types_are_unrecoverable_unless_configured(tmp_path) -> None:
    class Strange(Exception):
        pass

    assert classify(Strange()).recoverable is False and classify(Strange()).matched == "unknown"
    assert classify(Strange(), extra_recoverable=(Strange,)).recoverable is True
    # what a session classifies its failures with: the system's configured types (no store is opened for it)
    assert TrainingRecoverySystem(checkpoint_dir=tmp_path)._settings().extra_recoverable == ()
    assert TrainingRecoverySystem(checkpoint_dir=tmp_path, extra_recoverable=(Strange,))._settings().extra_recoverable \
        == (Strange,)


def _ctx(error, config=None, **kwargs):
    config = config or TrainingConfig.from_dict({"HIDDEN_SIZE": 32, "LEARNING_RATE": 0.05})
    return RepairContext(error=error, config=config, preset=preset_config(config.BUCKET), **kwargs)


def test_fallback_never_changes_the_network_shape_once_checkpoints_exist() -> None:
    config = TrainingConfig.from_dict({"HIDDEN_SIZE": 32})  # the only override is structural
    assert choose_repair(_ctx(RuntimeError(), config)).changes == {"HIDDEN_SIZE": (32, preset_config("Scalping")["HIDDEN_SIZE"])}
    locked = choose_repair(_ctx(RuntimeError(), config, has_checkpoints=True))
    assert locked.changes == {} and locked.rule == "retry_from_last_good_state"


def test_keyed_errors_change_only_their_key_and_structural_keys_stay() -> None:
    err = ValueError("bad")
    err.key = "HIDDEN_SIZE"
    repair = choose_repair(_ctx(err, has_checkpoints=True))
    assert "HIDDEN_SIZE" not in repair.changes
    repair = choose_repair(_ctx(KeyError("learning_rate")))
    assert repair.rule == "fill_key_from_preset"
    assert repair.changes == {"LEARNING_RATE": (0.05, preset_config("Scalping")["LEARNING_RATE"])}


def test_validation_refuses_what_it_cannot_guess_and_repairs_the_rest() -> None:
    with pytest.raises(ConfigValidationError) as info:
        validate_and_repair({"BUCKET": "Moon", "EPISODES": -3, "HIDDEN_SIZE": "big"})
    assert {p.key for p in info.value.problems} == {"BUCKET", "HIDDEN_SIZE"}  # EPISODES would be clamped
    config, repairs = validate_and_repair({**preset_config("Swing"), "EPISODES": 0, "ES_POPULATION": 9})
    assert (config.EPISODES, config.ES_POPULATION) == (1, 10)
    assert [r.rule for r in repairs] == ["clamp_out_of_range_values", "make_population_even"]
    with pytest.raises(ConfigValidationError) as info:  # a real value out of range is refused, not clamped
        validate_and_repair({**preset_config("Swing"), "SIGMA": -3})
    assert "SIGMA=-3: below the allowed range" in str(info.value) and "Swing preset uses" in str(info.value)


def test_the_noise_table_is_sized_when_not_given_and_refused_when_given() -> None:
    config, repairs = validate_and_repair({"HIDDEN_SIZE": 3000})
    sized = [r for r in repairs if r.rule == "size_noise_table_to_policy"]
    assert config.NOISE_TABLE_SIZE == 1 << 24 and sized[0].changes == {"NOISE_TABLE_SIZE": (1 << 23, 1 << 24)}
    config, repairs = validate_and_repair({"HIDDEN_SIZE": 99_999})  # clamped first, then the table for 4096
    assert config.HIDDEN_SIZE == 4096 and config.NOISE_TABLE_SIZE == 1 << 25
    assert [r.rule for r in repairs][-2:] == ["clamp_out_of_range_values", "size_noise_table_to_policy"]
    with pytest.raises(ConfigValidationError) as info:
        validate_and_repair({"HIDDEN_SIZE": 3000, "NOISE_TABLE_SIZE": 1 << 16})
    assert "NOISE_TABLE_SIZE=65536" in str(info.value) and "HIDDEN_SIZE=3000" in str(info.value)


def test_a_repair_changes_only_the_key_the_error_names() -> None:
    from btc_ai.domain.noise import pair_offsets

    config = TrainingConfig.from_dict({"HIDDEN_SIZE": 32, "ES_POPULATION": 16, "LEARNING_RATE": 0.05,
                                       "NOISE_TABLE_SIZE": 1 << 16})
    with pytest.raises(ValueError) as info:
        pair_offsets(0, 1, 8, (1 << 16) + 1, 1 << 16)
    repair = choose_repair(_ctx(info.value, config))
    assert set(repair.changes) == {"NOISE_TABLE_SIZE"}  # not ES_POPULATION or LEARNING_RATE, the other overrides
    named = choose_repair(_ctx(RuntimeError("SIGMA is out of hand"), config))  # named only in the message
    assert set(named.changes) <= {"SIGMA"} and "SIGMA" in named.reason
    blamed = choose_repair(_ctx(RuntimeError("bad"), config, has_checkpoints=True))
    assert set(blamed.changes) <= {"LEARNING_RATE", "ES_POPULATION"}  # names no key: the documented fallback


def test_a_lost_cluster_continues_on_the_local_evaluator_and_changes_nothing_else() -> None:
    config = TrainingConfig.from_dict({"EVALUATOR": "ray", "RAY_WORKERS": 4})
    repair = choose_repair(RepairContext(ClusterLostError("gone"), config, preset_config("Scalping"),
                                         has_checkpoints=True))
    assert repair.rule == "continue_on_local_evaluator"
    assert dict(repair.changes) == {"EVALUATOR": ("ray", "local")}
    assert repair.apply(config).EVALUATOR == "local"
