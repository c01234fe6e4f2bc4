"""A search space: which config keys a study varies and over what, read from a small YAML or JSON file and
checked before anything runs. Each key maps to a range or a list of choices:

    LEARNING_RATE: {low: 0.003, high: 0.1, log: true}   # floats; log: sampled evenly in log scale
    HIDDEN_SIZE: {choices: [16, 32, 64]}                # any values of the key
    HIDDEN_LAYERS: {low: 1, high: 3}                    # integers when both ends are integers (step optional)

Every value the space can give must be one the key allows, so a trial never fails on a value the space
itself offered. TEST_FRACTION (set per fold) and SEED (the study's --seeds) cannot be searched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btc_ai.domain.config import TrainingConfig, allowed_range, bounds, closest_key, normalize_key
from btc_ai.domain.errors import UserInputError

# The keys that matter most for an ES policy, with ranges around the presets' values: the step size and the
# perturbation scale of the optimizer, its pull toward zero, and the policy's width.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "LEARNING_RATE": {"low": 0.003, "high": 0.1, "log": True},
    "SIGMA": {"low": 0.01, "high": 0.2, "log": True},
    "WEIGHT_DECAY": {"low": 0.0, "high": 0.01},
    "HIDDEN_SIZE": {"choices": [16, 32, 64]},
}
NOT_SEARCHED = {"TEST_FRACTION": "set for each fold", "SEED": "the study's --seeds"}


@dataclass(frozen=True)
class Dimension:
    """One searched key: choices, or a range (integers when ``integer``) with an optional step and log scale."""

    key: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    integer: bool = False

    def as_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def read_space(path: str | Path | None) -> tuple[Dimension, ...]:
    """The space in ``path`` (YAML or JSON), or the default space for None; UserInputError in one line."""
    if path is None:
        return parse_space(DEFAULT_SPACE, "the default space")
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"--space {where}: cannot read it ({exc.strerror or exc}); check the path") from None
    try:
        raw = json.loads(text) if where.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError(f"--space {where} is not valid {'JSON' if where.endswith('.json') else 'YAML'} "
                             f"({first}); see docs/search.md for the format") from None
    return parse_space(raw, f"--space {where}")


def parse_space(raw: Any, where: str = "the space") -> tuple[Dimension, ...]:
    """The dimensions of a parsed space (a mapping of key -> range or choices), each checked."""
    if not isinstance(raw, Mapping) or not raw:
        raise UserInputError(f"{where}: expected a mapping of config keys to ranges, e.g. "
                             "LEARNING_RATE: {low: 0.003, high: 0.1, log: true}")
    dims = [_dimension(normalize_key(k), v, where) for k, v in raw.items()]
    keys = [d.key for d in dims]
    if len(set(keys)) != len(keys):
        raise UserInputError(f"{where}: a key appears twice ({', '.join(sorted({k for k in keys if keys.count(k) > 1}))}); "
                             "give each key once")
    return tuple(dims)


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    if key not in TrainingConfig.model_fields:
        near = closest_key(key)
        raise UserInputError(f"{where}: unknown config key {key}" + (f"; did you mean {near}?" if near else ""))
    if key in NOT_SEARCHED:
        raise UserInputError(f"{where}: {key} cannot be searched ({NOT_SEARCHED[key]}); drop it from the space")
    if not isinstance(spec, Mapping):
        raise UserInputError(f"{where}: {key} needs {{low: .., high: ..}} or {{choices: [..]}}, not {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise UserInputError(f"{where}: {key} has unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
                             "use low, high, log, step or choices")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or set(spec) != {"choices"}:
            raise UserInputError(f"{where}: {key}: choices is a non-empty list and comes alone")
        for value in choices:
            _check_value(key, value, where)
        return Dimension(key, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise UserInputError(f"{where}: {key} needs both low and high (or choices)")
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (low, high))
    if not numbers or not low < high:
        raise UserInputError(f"{where}: {key}: low ({low!r}) must be a number below high ({high!r})")
    if log and low <= 0:
        raise UserInputError(f"{where}: {key}: a log range needs low > 0 (got {low})")
    if step is not None and (log or not isinstance(step, (int, float)) or step <= 0 or step > high - low):
        raise UserInputError(f"{where}: {key}: step must be a positive number up to high - low, without log")
    integer = TrainingConfig.model_fields[key].annotation is int
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise UserInputError(f"{where}: {key} is an integer key; give integer low and high")
    for value in (low, high):
        _check_value(key, value, where)
    return Dimension(key, low=low, high=high, log=log, step=step, integer=integer)


def _check_value(key: str, value: Any, where: str) -> None:
    """The value must be one ``key`` allows (its type and bounds), so every trial's config is valid."""
    kind = TrainingConfig.model_fields[key].annotation
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                 or not math.isfinite(value) or (kind is int and not float(value).is_integer())):
        raise UserInputError(f"{where}: {key}={value!r} is not allowed ({allowed_range(key)})")
    if kind in (int, float):
        low, low_inc, high, high_inc = bounds(key)
        below = low is not None and (value < low or (value == low and not low_inc))
        above = high is not None and (value > high or (value == high and not high_inc))
        if below or above:
            raise UserInputError(f"{where}: {key}={value!r} is outside the allowed range ({allowed_range(key)})")
    elif not isinstance(value, (str, int, float, bool)):
        raise UserInputError(f"{where}: {key}={value!r} is not allowed ({allowed_range(key)})")
