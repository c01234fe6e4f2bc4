"""Repairs: what to change after a recoverable error (and, when the data is too short, before the first attempt).

Each repair is a small function named for what it does; `btc_ai.recovery.classify` picks one by the
error's most specific type, beside the table that says whether the error is retried at all. A repair never
changes the network shape of a training that has checkpoints, and says in words what it changed and why.
The repairs of validation (a config from outside made valid) are `btc_ai.recovery.validation`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from btc_ai.domain.config import (
    KNOWN_KEYS,
    STRUCTURAL_KEYS,
    TrainingConfig,
    noise_table_size_for,
    normalize_key,
)
from btc_ai.domain.data import clean_candles
from btc_ai.domain.errors import DataValidationError
from btc_ai.domain.shapes import policy_param_count

PresetSource = Callable[[str], dict[str, Any]]

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
