"""TrainingConfig: presets plus overrides, every problem reported at once, unknown keys named."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from btc_ai.domain.config import KNOWN_KEYS, STRUCTURAL_KEYS, TrainingConfig
from btc_ai.domain.config_file import read_config_file
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
    config = TrainingConfig.from_dict(read_config_file(path), SIGMA=0.2)
    assert (config.BUCKET, config.SEED, config.SIGMA) == ("Intraday", 7, 0.2)


def test_invalid_json_raises_json_decode_error(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"SIGMA": 0.1,')
    with pytest.raises(json.JSONDecodeError):
        read_config_file(path)


def test_config_is_immutable_and_replace_validates() -> None:
    config = TrainingConfig.from_dict({})
    with pytest.raises(ValidationError):
        config.SIGMA = 0.5  # type: ignore[misc]
    assert config.replace(SIGMA=0.5).SIGMA == 0.5 and config.SIGMA != 0.5
    with pytest.raises(ConfigValidationError, match=r"SIGMA=5\.0"):
        config.replace(SIGMA=5.0)
    # the changed keys are checked one by one, each as from_dict checks it; the cross-key noise table check too
    with pytest.raises(ConfigValidationError, match="must be even"):
        config.replace(es_population=7)
    with pytest.raises(ConfigValidationError, match="did you mean SIGMA"):
        config.replace(SIGAM=0.1)
    with pytest.raises(ConfigValidationError, match="noise table is smaller than the policy"):
        config.replace(HIDDEN_SIZE=512, NOISE_TABLE_SIZE=65536)
    assert config.replace(generations=9).EPISODES == 9 and config.replace(LOOKBACK="12").LOOKBACK == 12


def test_a_checkpoint_s_config_is_restored_as_it_was_and_an_incomplete_one_is_validated() -> None:
    config = TrainingConfig.from_dict({"SIGMA": 0.07, "BUCKET": "Swing"})
    assert TrainingConfig.restored(config.to_dict()) == config
    older = {k: v for k, v in config.to_dict().items() if k != "FITNESS"}  # written before the key existed
    assert TrainingConfig.restored(older).FITNESS == TrainingConfig.from_dict({"BUCKET": "Swing"}).FITNESS
    with pytest.raises(ConfigValidationError):
        TrainingConfig.restored({**older, "SIGMA": -1})


def test_structural_keys_are_config_keys() -> None:
    assert set(KNOWN_KEYS) >= STRUCTURAL_KEYS


# -- mistakes that read as something else -------------------------------------------------------------


@pytest.mark.parametrize(("given", "meant"), [("EPOCHS", "GENERATIONS"), ("n_generations", "GENERATIONS"), ("lr", "LEARNING_RATE"),
                                              ("POP_SIZE", "ES_POPULATION"), ("noise_std", "SIGMA"),
                                              ("LEARNIN_RATE", "LEARNING_RATE"), ("fees", "FEE_BPS")])
def test_unknown_keys_name_what_they_most_likely_mean(given, meant) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({given: 1})
    assert f"did you mean {meant}?" in str(info.value)


def test_a_flag_in_a_config_says_to_use_the_flag() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({"data_path": "btc.csv", "max-retries": 5})
    assert "pass --data_path instead" in str(info.value) and "pass --max_retries instead" in str(info.value)


@pytest.mark.parametrize(("value", "says"), [(float("nan"), "not a number (NaN)"), ("NaN", "not a number (NaN)"),
                                             (float("inf"), "infinite"), ("-inf", "infinite")])
def test_non_finite_numbers_are_named_as_such(value, says) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({"SIGMA": value})
    assert says in str(info.value) and "less than" not in str(info.value)


@pytest.mark.parametrize("key", ["HIDDEN_SIZE", "LEARNING_RATE", "GENERATIONS"])
def test_true_and_false_are_not_numbers(key) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({key: True})
    assert f"{key}=True" in str(info.value) and "true/false" in str(info.value)


def test_the_noise_table_must_hold_the_policy() -> None:
    from btc_ai.domain.features import feature_names
    from btc_ai.domain.policy import PolicySpec
    from btc_ai.domain.shapes import policy_param_count

    for lookback, hidden, layers in [(12, 128, 2), (24, 2888, 2), (5, 4096, 4)]:  # the count matches the real net
        assert policy_param_count(lookback, hidden, layers) == PolicySpec(len(feature_names(lookback)), hidden,
                                                                          layers).n_params
    TrainingConfig.from_dict({"HIDDEN_SIZE": 2800})  # 8.0 M parameters: fits the default 2**23
    with pytest.raises(ConfigValidationError) as info:
        TrainingConfig.from_dict({"HIDDEN_SIZE": 2900})
    text = str(info.value)
    assert info.value.key == "NOISE_TABLE_SIZE" and "HIDDEN_SIZE=2900" in text and "at least 16777216" in text
    assert TrainingConfig.from_dict({"HIDDEN_SIZE": 4096, "HIDDEN_LAYERS": 4, "NOISE_TABLE_SIZE": 1 << 26})


def test_config_files_are_read_like_data_files(tmp_path) -> None:
    from btc_ai.domain.config_file import read_config_file

    text = '{"SIGMA": 0.05, "bucket": "Swing"}'
    for name, raw in [("plain", text.encode()), ("bom", b"\xef\xbb\xbf" + text.encode()),
                      ("utf16", text.encode("utf-16")), ("utf16be", text.encode("utf-16-be"))]:
        path = tmp_path / f"{name}.json"
        path.write_bytes(raw)
        assert read_config_file(path) == {"SIGMA": 0.05, "bucket": "Swing"}, name


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"SIGMA": 0.1, "sigma": 0.2}', "SIGMA is given 2 times"),
    (b'{"SIGMA": 0.1, "SIGMA": 0.2}', "SIGMA is given 2 times"),
    (b'{"learning-rate": 0.1, "LEARNING_RATE": 0.2}', "LEARNING_RATE is given 2 times"),
    (b'{"BUCKET": "Scalping\xe9"}', "not UTF-8 text"),
])
def test_config_files_that_cannot_mean_one_thing_are_refused(tmp_path, raw, says) -> None:
    from btc_ai.domain.config_file import read_config_file
    from btc_ai.domain.errors import UserInputError

    path = tmp_path / "c.json"
    path.write_bytes(raw)
    with pytest.raises(UserInputError) as info:
        read_config_file(path)
    assert says in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_config_path_that_is_no_file_is_one_line(tmp_path) -> None:
    import os

    from btc_ai.domain.config_file import read_config_file
    from btc_ai.domain.errors import UserInputError

    os.mkfifo(tmp_path / "pipe.json")
    for path, says in [(tmp_path, "is a folder"), (tmp_path / "pipe.json", "is a named pipe")]:
        with pytest.raises(UserInputError) as info:
            read_config_file(path)
        assert says in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_config_file(tmp_path / "none.json")
