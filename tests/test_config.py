"""TrainingConfig: presets plus overrides, every problem reported at once, unknown keys named."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from btc_ai.domain.config import KNOWN_KEYS, STRUCTURAL_KEYS, TrainingConfig
from btc_ai.domain.errors import ConfigValidationError
from btc_ai.domain.presets import BUCKETS, preset_config


def test_defaults_are_the_scalping_preset() -> None:
    config = TrainingConfig.from_dict({})
    assert config.BUCKET == "Scalping"
    assert config.to_dict() == preset_config("Scalping")
    assert config.overrides() == {}


@pytest.mark.parametrize("name", list(BUCKETS))
def test_every_bucket_is_a_complete_valid_preset(name: str) -> None:
    preset = preset_config(name)
    assert set(preset) == set(KNOWN_KEYS)
    assert TrainingConfig.from_dict({"BUCKET": name}).to_dict() == preset


def test_buckets_differ_in_timeframe_and_fees() -> None:
    configs = [TrainingConfig.from_dict({"BUCKET": b}) for b in BUCKETS]
    assert len({c.TIMEFRAME for c in configs}) == len(configs)
    assert len({c.FEE_BPS for c in configs}) == len(configs)


def test_bucket_override_keeps_the_rest_of_the_preset() -> None:
    config = TrainingConfig.from_dict({"bucket": "swing", "learning-rate": 0.1, "Hidden_Size": 32})
    assert config.BUCKET == "Swing"
    assert config.LEARNING_RATE == 0.1
    assert config.HIDDEN_SIZE == 32
    assert preset_config("Swing")["TIMEFRAME"] == config.TIMEFRAME
    assert config.overrides() == {"LEARNING_RATE": 0.1, "HIDDEN_SIZE": 32}


def test_every_problem_is_reported_at_once_with_key_value_and_range() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict(
            {"LEARNING_RATE": -1, "ES_POPULATION": 7, "HIDDEN_SIZE": "wide", "SIGMA": 2.0, "BUCKET": "Scalping"}
        )
    problems = {p.key: p for p in info.value.problems}
    assert set(problems) == {"LEARNING_RATE", "ES_POPULATION", "HIDDEN_SIZE", "SIGMA"}
    assert problems["LEARNING_RATE"].value == -1
    assert "0.0 < float <= 1.0" in problems["LEARNING_RATE"].allowed
    assert "even" in problems["ES_POPULATION"].message
    assert "4 <= int <= 4096" in problems["HIDDEN_SIZE"].allowed
    text = str(info.value)
    assert "\n" not in text and "LEARNING_RATE=-1" in text and "SIGMA=2.0" in text


def test_unknown_key_names_the_closest_known_key() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({"LEARNIN_RATE": 0.01, "HIDEN_SIZE": 8})
    text = str(info.value)
    assert "did you mean LEARNING_RATE?" in text
    assert "did you mean HIDDEN_SIZE?" in text


def test_unknown_bucket_lists_the_known_ones() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({"BUCKET": "HODL", "SIGMA": -1})
    keys = {p.key for p in info.value.problems}
    assert keys == {"BUCKET", "SIGMA"}
    assert "Scalping, Intraday, Swing, Position" in str(info.value)


def test_json_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"BUCKET": "Intraday", "SEED": 7, "SIGMA": 0.1}))
    config = TrainingConfig.from_json(path, SIGMA=0.2)
    assert (config.BUCKET, config.SEED, config.SIGMA) == ("Intraday", 7, 0.2)


def test_invalid_json_raises_json_decode_error(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"SIGMA": 0.1,')
    with pytest.raises(json.JSONDecodeError):
        TrainingConfig.from_json(path)


def test_config_is_immutable_and_replace_validates() -> None:
    config = TrainingConfig.from_dict({})
    with pytest.raises(ValidationError):
        config.SIGMA = 0.5  # type: ignore[misc]
    assert config.replace(SIGMA=0.5).SIGMA == 0.5
    with pytest.raises(ConfigValidationError):
        config.replace(SIGMA=5.0)


def test_structural_keys_are_config_keys() -> None:
    assert set(KNOWN_KEYS) >= STRUCTURAL_KEYS
