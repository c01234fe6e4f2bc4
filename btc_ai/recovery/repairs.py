"""Repairs: what to change before a first attempt (validation) and after a recoverable error.

Each repair is a small function named for what it does; :func:`choose_repair` picks one by the
error's most specific type. A repair never changes the network shape of a training that has
checkpoints, and says in words what it changed and why.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from btc_ai.domain.config import (
    KNOWN_KEYS,
    NOISE_TABLE_TOO_SMALL,
    STRUCTURAL_KEYS,
    ConfigProblem,
    TrainingConfig,
    bounds,
    noise_table_size_for,
    normalize_key,
)
from btc_ai.domain.data import clean_candles
from btc_ai.domain.errors import (
    ClusterLostError,
    ConfigValidationError,
    DataValidationError,
    NaNError,
    TradingEnvironmentError,
    TrainingStalledError,
)
from btc_ai.domain.presets import DEFAULT_BUCKET, find_bucket, preset_config
from btc_ai.domain.shapes import policy_param_count

PresetSource = Callable[[str], dict[str, Any]]

# Keys of the original seed config: a config without them gets them from the preset, recorded.
SEED_KEYS = ("LEARNING_RATE", "HIDDEN_SIZE", "ES_POPULATION", "BUCKET", "MAX_STEPS_PER_EPISODE")
# Hyperparameters a fallback repair may revert to the preset, most likely culprit first. The job's
# definition (bucket, seed, length, costs, data split) is never reverted.
REVERT_ORDER = ("LEARNING_RATE", "SIGMA", "ES_POPULATION", "WEIGHT_DECAY", "MAX_STEPS_PER_EPISODE",
                "EPISODES_PER_EVAL", "HIDDEN_SIZE", "HIDDEN_LAYERS")
MIN_EPISODE_STEPS = 8


@dataclass(frozen=True)
class Repair:
    """One repair: the rule applied, why, what triggered it, and every changed key (before, after)."""

    rule: str
    reason: str
    triggered_by: str
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    data: pd.DataFrame | None = field(default=None, repr=False, compare=False)  # cleaned candles, if any
    data_actions: tuple[str, ...] = ()

    def apply(self, config: TrainingConfig) -> TrainingConfig:
        return config.replace(**{k: after for k, (_, after) in self.changes.items()}) if self.changes else config

    def summary(self) -> str:
        parts = [f"{k} {before!r} -> {after!r}" for k, (before, after) in self.changes.items()]
        parts += list(self.data_actions)
        return f"{self.rule}: " + ("; ".join(parts) if parts else "no config change") + f" ({self.reason})"


# -- validation repairs (before the first attempt) -------------------------------------------------


def validate_and_repair(raw: Mapping[str, Any] | TrainingConfig,
                        preset_source: PresetSource = preset_config) -> tuple[TrainingConfig, list[Repair]]:
    """A valid config from ``raw`` plus the repairs that made it valid.

    Repairs: missing seed keys filled from the preset, out-of-range values clamped to the allowed
    range, an odd population made even. Unknown keys, wrong types and unknown buckets cannot be
    guessed and raise ConfigValidationError with every such problem.
    """
    if isinstance(raw, TrainingConfig):
        return raw, []
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


def shorten_episode_to_data(config: TrainingConfig, train_bars: int) -> Repair | None:
    """Shorten MAX_STEPS_PER_EPISODE when the training span is shorter than one episode.

    Raises DataValidationError when the span is too short for any episode at all.
    """
    if train_bars >= config.MAX_STEPS_PER_EPISODE:
        return None
    if train_bars < MIN_EPISODE_STEPS:
        raise DataValidationError(
            f"the data leaves {train_bars} bars to train on after the {config.TIMEFRAME} resampling, the feature "
            f"warm-up and the validation split; at least {MIN_EPISODE_STEPS} are needed: give more candles "
            "(or a finer TIMEFRAME / shorter LOOKBACK)", key="MAX_STEPS_PER_EPISODE")
    return Repair("shorten_episode_to_data", f"the training span has only {train_bars} bars", "validation",
                  {"MAX_STEPS_PER_EPISODE": (config.MAX_STEPS_PER_EPISODE, train_bars)})


# -- repairs after a recoverable error ------------------------------------------------------------


@dataclass(frozen=True)
class RepairContext:
    """What a repair may look at: the error, the config and data of the failed attempt, and limits."""

    error: BaseException
    config: TrainingConfig
    preset: Mapping[str, Any]
    data: pd.DataFrame | None = None
    has_checkpoints: bool = False
    backup_config: TrainingConfig | None = None
    train_bars: int | None = None

    @property
    def locked(self) -> frozenset[str]:
        """Keys a repair must not change: the network shape once a checkpoint exists."""
        return STRUCTURAL_KEYS if self.has_checkpoints else frozenset()

    @property
    def triggered_by(self) -> str:
        return type(self.error).__name__

    def change(self, rule: str, reason: str, changes: Mapping[str, Any]) -> Repair | None:
        """A repair setting ``changes`` (key -> new value); None if it would change nothing or a locked key."""
        current = self.config.to_dict()
        diff = {k: (current[k], v) for k, v in changes.items() if current[k] != v and k not in self.locked}
        if not diff:
            return None
        return Repair(rule, reason, self.triggered_by, diff)


def error_key(exc: BaseException) -> str | None:
    """The config key an error blames: its ``key`` attribute, a KeyError's missing key, or the one config key
    its message names (``... raise NOISE_TABLE_SIZE``)."""
    key = getattr(exc, "key", None)
    if key is None and isinstance(exc, KeyError) and exc.args:
        key = normalize_key(exc.args[0])
    if key is None:
        named = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", str(exc))) & set(KNOWN_KEYS)
        key = named.pop() if len(named) == 1 else None
    return key if key in KNOWN_KEYS else None


def halve_learning_rate_and_sigma_on_nan(ctx: RepairContext) -> Repair | None:
    """NaN: resume from the last good state with half the learning rate and half the noise."""
    return ctx.change("halve_learning_rate_and_sigma_on_nan", "non-finite numbers: smaller steps from the last good state",
                      {"LEARNING_RATE": ctx.config.LEARNING_RATE / 2, "SIGMA": ctx.config.SIGMA / 2})


def fill_key_from_preset(ctx: RepairContext) -> Repair | None:
    """KeyError: the missing key takes the bucket preset's value."""
    key = error_key(ctx.error)
    if key is None:
        return None
    return ctx.change("fill_key_from_preset", f"{key} was missing or unusable: the preset's value is used",
                      {key: ctx.preset[key]})


def clamp_offending_value(ctx: RepairContext) -> Repair | None:
    """ValueError/IndexError: pull the blamed key back into a safe range."""
    key = error_key(ctx.error)
    if key is None:
        return None
    value = getattr(ctx.config, key)
    if key == "MAX_STEPS_PER_EPISODE":
        limit = ctx.train_bars if ctx.train_bars is not None else value
        new = max(MIN_EPISODE_STEPS, min(value // 2, limit))
    elif key == "ES_POPULATION":
        new = max(2, value // 4 * 2)
    elif key == "NOISE_TABLE_SIZE":  # a table too small for the policy: sized to it
        c = ctx.config
        new = max(value, noise_table_size_for(policy_param_count(c.LOOKBACK, c.HIDDEN_SIZE, c.HIDDEN_LAYERS,
                                                                        c.FEATURES)))
    elif value != ctx.preset[key]:
        new = ctx.preset[key]
    else:
        return None
    return ctx.change("clamp_offending_value", f"{key}={value!r} caused {ctx.triggered_by}", {key: new})


def clean_data(ctx: RepairContext) -> Repair | None:
    """DataValidationError: drop bad rows, dedupe and sort, then retry on the cleaned candles."""
    if ctx.data is None:
        return None
    cleaned, actions = clean_candles(ctx.data)
    return Repair("clean_data", "the data failed validation: bad rows dropped, duplicates removed, rows sorted",
                  ctx.triggered_by, {}, cleaned, tuple(actions) or ("data already clean: nothing dropped",))


def fall_back_to_backup_config(ctx: RepairContext) -> Repair | None:
    """JSONDecodeError: use the last good config, else the bucket preset's hyperparameters."""
    if ctx.backup_config is not None and ctx.backup_config != ctx.config:
        return ctx.change("fall_back_to_backup_config", "a config could not be parsed: the last good config is used",
                          ctx.backup_config.to_dict())
    return ctx.change("fall_back_to_backup_config", "a config could not be parsed: the bucket preset's "
                      "hyperparameters are used", {k: ctx.preset[k] for k in REVERT_ORDER})


def rebuild_environment(ctx: RepairContext) -> Repair | None:
    """Trading environment error: a fresh environment from the last good state, config unchanged."""
    return Repair("rebuild_environment", "the trading environment is rebuilt and the training resumed from the "
                  "last good state", ctx.triggered_by)


def halve_population_on_oom(ctx: RepairContext) -> Repair | None:
    """Out of memory: half the population (still even) needs about half the memory."""
    return ctx.change("halve_population_on_oom", "out of memory: a smaller population",
                      {"ES_POPULATION": max(2, ctx.config.ES_POPULATION // 4 * 2)})


def retry_from_last_good_state(ctx: RepairContext) -> Repair | None:
    """A stalled generation: retry it from the last good state."""
    return Repair("retry_from_last_good_state", "the generation stalled: it is retried from the last good state",
                  ctx.triggered_by)


def continue_on_local_evaluator(ctx: RepairContext) -> Repair | None:
    """The Ray cluster is lost: the same training continues in this process from the last good state (the
    local evaluator gives the same numbers, so the session still ends as it would have)."""
    return ctx.change("continue_on_local_evaluator", "the Ray cluster was lost: the training continues on the "
                      "local evaluator from the last good state", {"EVALUATOR": "local"})


def revert_override_to_preset(ctx: RepairContext) -> Repair:
    """Fallback: an error that blames a key reverts that key (and no other) to the preset; one that names no
    key reverts the first user override (in REVERT_ORDER)."""
    current = ctx.config.to_dict()
    blamed = error_key(ctx.error)
    if blamed is not None:
        why = f"{ctx.triggered_by} blames {blamed}, which no specific repair can change further"
        if blamed not in ctx.locked and current[blamed] != ctx.preset[blamed]:
            return Repair("revert_override_to_preset", f"{why}: {blamed} reverts to its {ctx.preset['BUCKET']} preset "
                          "value", ctx.triggered_by, {blamed: (current[blamed], ctx.preset[blamed])})
        return Repair("retry_from_last_good_state", f"{why} and it cannot be reverted (it is the preset's, or fixed "
                      "by a checkpoint): retrying from the last good state, no other key changed", ctx.triggered_by)
    why = f"{ctx.triggered_by} names no config key"
    for key in REVERT_ORDER:
        if key not in ctx.locked and current[key] != ctx.preset[key]:
            return Repair("revert_override_to_preset", f"{why}: one step toward the {ctx.preset['BUCKET']} preset "
                          f"({key} reverts to its preset value)", ctx.triggered_by, {key: (current[key], ctx.preset[key])})
    return Repair("retry_from_last_good_state", f"{why} and no override is left to revert: retrying from the last "
                  "good state", ctx.triggered_by)


REPAIR_BY_ERROR: Mapping[type[BaseException], Callable[[RepairContext], Repair | None]] = {
    NaNError: halve_learning_rate_and_sigma_on_nan,
    KeyError: fill_key_from_preset,
    ValueError: clamp_offending_value,
    IndexError: clamp_offending_value,
    DataValidationError: clean_data,
    json.JSONDecodeError: fall_back_to_backup_config,
    TradingEnvironmentError: rebuild_environment,
    torch.OutOfMemoryError: halve_population_on_oom,
    TrainingStalledError: retry_from_last_good_state,
    ClusterLostError: continue_on_local_evaluator,
}


def choose_repair(ctx: RepairContext) -> Repair:
    """The repair for the most specific type of the error that has one, else the fallback."""
    for cls in type(ctx.error).__mro__:
        if cls in REPAIR_BY_ERROR:
            repair = REPAIR_BY_ERROR[cls](ctx)
            if repair is not None:
                return repair
            break
    return revert_override_to_preset(ctx)
