"""Validation: the one place a config from outside (flags, a file, a dict from Python) becomes a
`TrainingConfig`, with the repairs that made it valid — once, at the edge of a command (the CLI's
`config_from_args`, `start_training_with_recovery`, or a Python caller's `validated_config` before
`TrainingRecoverySystem.train` or the walk-forward's `prepare`). Everything below takes the `ValidatedConfig`
(recovery, desk) or its `TrainingConfig` (training) and never validates the input again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btc_ai.domain.config import (
    KNOWN_KEYS,
    NOISE_TABLE_TOO_SMALL,
    ConfigProblem,
    TrainingConfig,
    bounds,
    noise_table_size_for,
    normalize_key,
)
from btc_ai.domain.config_file import read_config_file
from btc_ai.domain.errors import ConfigValidationError
from btc_ai.domain.presets import DEFAULT_BUCKET, find_bucket, preset_config
from btc_ai.domain.shapes import policy_param_count
from btc_ai.recovery.repairs import PresetSource, Repair

# Keys of the original seed config: a config without them gets them from the preset, recorded.
SEED_KEYS = ("LEARNING_RATE", "HIDDEN_SIZE", "ES_POPULATION", "BUCKET", "MAX_STEPS_PER_EPISODE")


@dataclass(frozen=True)
class ValidatedConfig:
    """A config validated once: the `TrainingConfig` that trains, what was asked for (``given``, as passed;
    ``requested``, over the preset: a new session's ``config/requested.json``) and the repairs between them
    (each a repair run of the session)."""

    config: TrainingConfig
    given: Mapping[str, Any] = field(default_factory=dict)
    repairs: tuple[Repair, ...] = ()
    requested: Mapping[str, Any] = field(default_factory=dict)

    def derived(self, **changes: Any) -> ValidatedConfig:
        """The same request with ``changes`` set by the caller (a walk-forward fold's SEED and TEST_FRACTION):
        the repairs stay those of the request."""
        return ValidatedConfig(self.config.replace(**changes), {**self.given, **changes}, self.repairs,
                               {**self.requested, **changes})


def validated_config(raw: TrainingConfig | Mapping[str, Any] | str | Path | None,
                     preset_source: PresetSource = preset_config,
                     defaults: Mapping[str, Any] | None = None) -> ValidatedConfig:
    """The one validation of a command's config: a TrainingConfig (taken as it is), a mapping of config keys
    or the path of a JSON file of them (validated and repaired), None (the default bucket's preset).
    ``defaults`` fill keys the config does not name (`TrainingRecoverySystem`'s ``min_checkpoint_interval``).
    A JSON file that does not parse falls back to the bucket preset (a repair: the specification's "a backup
    config can be used"). ConfigValidationError lists what no repair can fix."""
    if isinstance(raw, TrainingConfig):
        return ValidatedConfig(raw, raw.to_dict(), (), raw.to_dict())
    if isinstance(raw, (str, Path)):
        try:
            given: dict[str, Any] = read_config_file(raw)
        except json.JSONDecodeError as exc:
            preset = preset_source(DEFAULT_BUCKET)
            repair = Repair("fall_back_to_backup_config", f"{raw} is not valid JSON ({exc.msg}, line "
                            f"{exc.lineno}): the bucket preset is used", type(exc).__name__)
            config = TrainingConfig.from_dict({**preset, **(defaults or {})})
            return ValidatedConfig(config, {}, (repair,), {"config_file": str(raw)})
    else:
        given = dict(raw or {})
    named = {normalize_key(k) for k in given}
    values = {**{k: v for k, v in (defaults or {}).items() if k not in named}, **given}
    config, repairs = validate_and_repair(values, preset_source)
    requested = {**preset_source(config.BUCKET), **{str(k): v for k, v in given.items()}}
    return ValidatedConfig(config, given, tuple(repairs), requested)


def validate_and_repair(raw: Mapping[str, Any],
                        preset_source: PresetSource = preset_config) -> tuple[TrainingConfig, list[Repair]]:
    """A valid config from ``raw`` plus the repairs that made it valid.

    Repairs: missing seed keys filled from the preset, out-of-range values clamped to the allowed
    range, an odd population made even. Unknown keys, wrong types and unknown buckets cannot be
    guessed and raise ConfigValidationError with every such problem.
    """
    given = {normalize_key(k): v for k, v in raw.items()}
    bucket = find_bucket(str(given.get("BUCKET", DEFAULT_BUCKET)))
    preset = preset_source(bucket.name if bucket else DEFAULT_BUCKET)
    repairs: list[Repair] = []
    missing = [k for k in SEED_KEYS if k not in given]
    if missing:
        repairs.append(Repair("fill_missing_from_preset", f"keys missing from the config take the {preset['BUCKET']} "
                              "preset's values", "validation", {k: (None, preset[k]) for k in missing}))
    values = {**preset, **given}
    for _ in range(3):  # range and parity first, then the noise table for the shape they leave
        try:
            return TrainingConfig.from_dict(values), repairs
        except ConfigValidationError as exc:
            fixable = {p.key: p for p in exc.problems if _repairable(p, given)}
            unfixable = [_with_preset(p, preset) for p in exc.problems if p.key not in fixable]
            if unfixable:
                raise ConfigValidationError(unfixable) from None
        clamped = {k: (p.value, _clamped(k, p.value, preset)) for k, p in fixable.items() if p.kind in _RANGE_KINDS}
        evened = {k: (p.value, _clamped(k, p.value, preset)) for k, p in fixable.items()
                  if p.kind not in _RANGE_KINDS and p.kind != NOISE_TABLE_TOO_SMALL}
        done = []
        if clamped:
            done.append(Repair("clamp_out_of_range_values", "counts and sizes outside their allowed range were "
                               "clamped to the nearest bound", "validation", clamped))
        if evened:
            done.append(Repair("make_population_even", "mirrored sampling needs an even population", "validation",
                               evened))
        if not done:  # only the noise table is left, sized once the shape is settled
            done.append(_size_noise_table(values))
        repairs += done
        values = {**values, **{k: after for r in done for k, (_, after) in r.changes.items()}}
    return TrainingConfig.from_dict(values), repairs  # valid by now, or the problem a repair left, raised


def _size_noise_table(values: Mapping[str, Any]) -> Repair:
    params = policy_param_count(int(values["LOOKBACK"]), int(values["HIDDEN_SIZE"]), int(values["HIDDEN_LAYERS"]),
                                str(values.get("FEATURES", "base")))
    size = noise_table_size_for(params)
    return Repair("size_noise_table_to_policy", f"HIDDEN_SIZE={values['HIDDEN_SIZE']} with HIDDEN_LAYERS="
                  f"{values['HIDDEN_LAYERS']} has {params:,} parameters, more than the preset's noise table holds: "
                  "the table is sized to the policy (NOISE_TABLE_SIZE was not given)", "validation",
                  {"NOISE_TABLE_SIZE": (values["NOISE_TABLE_SIZE"], size)})


_RANGE_KINDS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _repairable(problem: ConfigProblem, given: Mapping[str, Any]) -> bool:
    """Whether validation may repair ``problem`` rather than refuse it.

    Counts and sizes (int keys) out of range are clamped: more generations, a wider net or longer episodes
    than allowed get the most allowed, which trains. Real-valued keys (rates, scales, costs, fractions,
    seconds) out of range are refused with the range: their bound is no stand-in for what was meant (a
    unit slip such as 5 for 0.05 or 20 for 0.20 is the usual cause), and LEARNING_RATE 5 clamped to 1.0
    loses a third of the capital in 3 generations."""
    if problem.key not in KNOWN_KEYS or problem.key in {"BUCKET", "TIMEFRAME"}:
        return False
    if problem.kind == NOISE_TABLE_TOO_SMALL:  # a table the user sized is theirs: refused, naming both keys
        return "NOISE_TABLE_SIZE" not in given
    if problem.kind in _RANGE_KINDS and TrainingConfig.model_fields[problem.key].annotation is not int:
        return False
    odd_population = problem.key == "ES_POPULATION" and problem.kind == "value_error"
    return problem.kind in _RANGE_KINDS or odd_population


def _with_preset(problem: ConfigProblem, preset: Mapping[str, Any]) -> ConfigProblem:
    """A refused out-of-range value, with the preset's value beside the allowed range."""
    if problem.kind not in _RANGE_KINDS or problem.key not in preset:
        return problem
    where = "below" if problem.kind.startswith("greater") else "above"
    return dataclasses.replace(problem, allowed="", message=f"{where} the allowed range ({problem.allowed}); the "
                               f"{preset['BUCKET']} preset uses {preset[problem.key]!r}")


def _clamped(key: str, value: Any, preset: Mapping[str, Any]) -> Any:
    low, low_inc, high, high_inc = bounds(key)
    new = value
    if low is not None and (value < low or (value == low and not low_inc)):
        new = low if low_inc else preset[key]
    if high is not None and (value > high or (value == high and not high_inc)):
        new = high if high_inc else preset[key]
    if key == "ES_POPULATION" and int(new) % 2:
        new = int(new) + 1 if high is None or int(new) + 1 <= high else int(new) - 1
    is_int = TrainingConfig.model_fields[key].annotation is int
    return int(new) if is_int else float(new)
