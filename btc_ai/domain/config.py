"""`TrainingConfig`: the validated training configuration, built from a bucket preset plus overrides."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from btc_ai.domain.errors import ConfigValidationError
from btc_ai.domain.key_names import FLAG_NAMES, SYNONYMS
from btc_ai.domain.presets import BUCKETS, DEFAULT_BUCKET, find_bucket
from btc_ai.domain.shapes import FEATURE_SETS, policy_param_count

TIMEFRAMES = ("5min", "15min", "30min", "1h", "4h", "1d")
EVALUATORS = ("local", "ray")
POSITION_MODES = ("long_short", "long_flat")
FITNESSES = ("return", "sharpe")
CHOICES = {"EVALUATOR": EVALUATORS, "POSITION_MODE": POSITION_MODES, "FEATURES": FEATURE_SETS, "FITNESS": FITNESSES}

# EPISODES counts ES generations: GENERATIONS is the name people are shown and may give; EPISODES, the seed's
# name, stays the key runs record (their params, a resume's overrides), so old runs and new read alike.
KEY_ALIASES = {"GENERATIONS": "EPISODES"}
SHOWN_NAMES = {key: alias for alias, key in KEY_ALIASES.items()}

# Keys that fix the network's shape or its inputs: a resumed or repaired training must keep them.
STRUCTURAL_KEYS = frozenset({"HIDDEN_SIZE", "HIDDEN_LAYERS", "LOOKBACK", "TIMEFRAME", "NOISE_TABLE_SIZE", "FEATURES"})


class TrainingConfig(BaseModel):
    """Every knob of one training, in the original upper-case key names.

    Build it with :meth:`from_dict` (or :meth:`from_json`): the named bucket's preset supplies every
    key the caller does not give.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    BUCKET: str = Field(DEFAULT_BUCKET, description="trading style preset: " + ", ".join(BUCKETS))
    SEED: int = Field(ge=0, le=2**31 - 1, description="all randomness of generation g derives from (SEED, g)")
    EPISODES: int = Field(ge=1, le=1_000_000, description="ES generations to train (GENERATIONS; recorded as EPISODES)")
    ES_POPULATION: int = Field(ge=2, le=4096, description="population size per generation (even: mirrored pairs)")
    LEARNING_RATE: float = Field(gt=0.0, le=1.0, description="Adam step size on the ES gradient")
    SIGMA: float = Field(gt=0.0, le=1.0, description="standard deviation of parameter perturbations")
    WEIGHT_DECAY: float = Field(ge=0.0, lt=1.0, description="L2 pull of parameters toward zero per update")
    HIDDEN_SIZE: int = Field(ge=4, le=4096, description="width of each hidden layer of the policy MLP")
    HIDDEN_LAYERS: int = Field(ge=1, le=4, description="number of hidden layers of the policy MLP")
    MAX_STEPS_PER_EPISODE: int = Field(ge=8, le=100_000, description="decisions per training episode")
    EPISODES_PER_EVAL: int = Field(ge=1, le=256, description="episode windows each member is scored on per generation")
    TIMEFRAME: str = Field(description="bar size the 5-minute candles are resampled to: " + ", ".join(TIMEFRAMES))
    LOOKBACK: int = Field(ge=2, le=1000, description="feature look-back in bars")
    FEATURES: str = Field("base", description="feature set: base (horizons up to 4 x LOOKBACK) or trend (also the "
                          "return and moving averages over 7 x LOOKBACK bars)")
    POSITION_MODE: str = Field("long_short", description="long_short, or long_flat (a spot account: never short)")
    DECISION_INTERVAL: int = Field(1, ge=1, le=10_000, description="the policy decides every this many bars (on a "
                                   "grid fixed in UTC time) and holds its position in between")
    FEE_BPS: float = Field(ge=0.0, le=100.0, description="exchange fee per side: per unit change of position, bps")
    SLIPPAGE_BPS: float = Field(ge=0.0, le=100.0, description="spread and slippage per unit change of position, bps")
    TURNOVER_PENALTY_BPS: float = Field(
        ge=0.0, le=100.0, description="training fitness only: extra cost per unit change of position, bps"
    )
    HOLDING_COST_BPS: float = Field(ge=0.0, le=100.0, description="reward shaping: cost per bar held long or short, bps")
    DRAWDOWN_PENALTY: float = Field(ge=0.0, le=10.0, description="reward shaping: weight of the episode's max drawdown")
    FITNESS: str = Field("return", description="training fitness per episode: return (log return, shaped) or sharpe")
    VALIDATION_FRACTION: float = Field(ge=0.05, le=0.5, description="share of the data for validation (selection)")
    TEST_FRACTION: float = Field(
        ge=0.0, le=0.4, description="newest share of the data held out: scored once at the end, never selected on"
    )
    VALIDATION_WINDOWS: int = Field(ge=1, le=64, description="validation windows; selection on the mean of their rewards")
    EARLY_STOP_PATIENCE: int = Field(
        ge=0, le=100_000, description="validations without a better score before training stops (0: never)"
    )
    MAX_GAP_BARS: int = Field(ge=1, le=100_000, description="a step of more bars than this is a gap: flat across it")
    EVAL_INTERVAL: int = Field(ge=1, le=100_000, description="validate the current policy every this many generations")
    MIN_CHECKPOINT_INTERVAL: int = Field(ge=1, le=100_000, description="generations between periodic checkpoints")
    CHECKPOINT_MIN_SECONDS: float = Field(
        ge=0.0, le=86_400.0, description="periodic checkpoints are at least this many seconds of training apart"
    )
    NOISE_TABLE_SIZE: int = Field(ge=1 << 16, le=1 << 28, description="floats in the shared ES noise table")
    STALL_FACTOR: float = Field(ge=2.0, le=10_000.0, description="a generation stalls past this x the median time")
    STALL_MIN_SECONDS: float = Field(ge=0.1, le=86_400.0, description="a generation never stalls sooner than this")
    EVALUATOR: str = Field(description="where the population is scored: local (this process) or ray (a Ray cluster; "
                           "the same numbers bit for bit)")
    RAY_WORKERS: int = Field(ge=0, le=100_000, description="Ray evaluation actors, one CPU each (0: one per CPU "
                             "of the cluster)")
    RAY_CHUNK_MEMBERS: int = Field(ge=1, le=4096, description="members per evaluation chunk, locally and on Ray "
                                   "alike (fixed shapes: the numbers cannot depend on how members are spread)")

    @field_validator("BUCKET", mode="before")
    @classmethod
    def _known_bucket(cls, value: Any) -> str:
        bucket = find_bucket(str(value))
        if bucket is None:
            raise ValueError("unknown bucket")
        return bucket.name

    @field_validator("TIMEFRAME", mode="before")
    @classmethod
    def _known_timeframe(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in TIMEFRAMES:
            raise ValueError("unknown timeframe")
        return text

    @field_validator(*CHOICES, mode="before")
    @classmethod
    def _known_choice(cls, value: Any, info: Any) -> str:
        text = str(value).strip().lower()
        if text not in CHOICES[info.field_name]:
            raise ValueError(f"unknown {info.field_name.lower().replace('_', ' ')}")
        return text

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true is not the number 1
            raise ValueError("a true/false value is not a number; give a number")
        return value

    @field_validator("ES_POPULATION")
    @classmethod
    def _population_even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even: members come in mirrored (+noise, -noise) pairs")
        return value

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None, **overrides: Any) -> TrainingConfig:
        """Preset of the named bucket (default Scalping) overridden by ``values`` and ``overrides``.

        Keys are case-insensitive and may use dashes. Raises ConfigValidationError listing every
        problem at once: unknown keys (with the closest known key), wrong types, out-of-range values.
        """
        given = {**(values or {}), **overrides}
        problems: list[ConfigProblem] = []
        normalized: dict[str, Any] = {}
        for raw_key, value in given.items():
            key = normalize_key(raw_key)
            if key not in KNOWN_KEYS:
                problems.append(_unknown_key_problem(str(raw_key), value))
            else:
                normalized[key] = value
        bucket = find_bucket(str(normalized.get("BUCKET", DEFAULT_BUCKET))) or BUCKETS[DEFAULT_BUCKET]
        merged = {**bucket.config(), **normalized}
        try:
            config = cls.model_validate(merged)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, merged))
            noise = noise_table_problem(merged, skip={p.key for p in problems})
            raise ConfigValidationError(problems + ([noise] if noise else [])) from None
        noise = noise_table_problem(config.to_dict())
        if problems or noise:
            raise ConfigValidationError(problems + ([noise] if noise else []))
        return config

    # -- use ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every key and value (JSON-serialisable)."""
        return self.model_dump()

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` applied (the bucket preset is not re-applied): the config was validated
        once, so only the changed keys are, each against its field's rules, and the noise table against the
        policy where a key of it changed. ConfigValidationError as `from_dict` raises it."""
        normalized = {normalize_key(k): v for k, v in changes.items()}
        unknown = [_unknown_key_problem(str(k), v) for k, v in changes.items() if normalize_key(k) not in KNOWN_KEYS]
        if unknown:
            raise ConfigValidationError(unknown)
        copy, merged = self.model_copy(), {**self.to_dict(), **normalized}
        problems: list[ConfigProblem] = []
        for key, value in normalized.items():
            try:  # pydantic's check of one field's assignment; the copy is not shared yet
                TrainingConfig.__pydantic_validator__.validate_assignment(copy, key, value)
            except ValidationError as exc:
                problems.extend(_problems_from(exc, merged))
        noise = noise_table_problem(copy.to_dict()) if not problems and NOISE_KEYS & set(normalized) else None
        if problems or noise:
            raise ConfigValidationError(problems + ([noise] if noise else []))
        return copy

    @classmethod
    def restored(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """The config a checkpoint holds, as it was validated when its training started (the checkpoint's
        sha256 is checked before): taken as it is when it names every key and only known ones, else (written
        by another version) validated as `from_dict` does."""
        if set(values) == set(KNOWN_KEYS):
            return cls.model_construct(**dict(values))
        return cls.from_dict(values)

    def overrides(self) -> dict[str, Any]:
        """Keys whose value differs from the bucket preset."""
        preset = BUCKETS[self.BUCKET].config()
        return {k: v for k, v in self.to_dict().items() if preset.get(k) != v}

    @property
    def generations(self) -> int:
        """ES generations to train (the key EPISODES, GENERATIONS by its shown name)."""
        return self.EPISODES

    @property
    def fee_rate(self) -> float:
        return self.FEE_BPS * 1e-4

    @property
    def cost_rate(self) -> float:
        """What a unit change of position costs on an exchange: fee plus slippage, as a fraction."""
        return (self.FEE_BPS + self.SLIPPAGE_BPS) * 1e-4

    @property
    def turnover_penalty_rate(self) -> float:
        return self.TURNOVER_PENALTY_BPS * 1e-4

    @property
    def holding_cost_rate(self) -> float:
        return self.HOLDING_COST_BPS * 1e-4


KNOWN_KEYS: tuple[str, ...] = tuple(TrainingConfig.model_fields)


NOISE_KEYS = frozenset({"NOISE_TABLE_SIZE", "HIDDEN_SIZE", "HIDDEN_LAYERS", "LOOKBACK", "FEATURES"})


def noise_table_problem(values: Mapping[str, Any], skip: frozenset[str] | set[str] = frozenset()) -> ConfigProblem | None:
    """NOISE_TABLE_SIZE too small for the policy HIDDEN_SIZE, HIDDEN_LAYERS and LOOKBACK make (each member's
    perturbation is a slice of the table as long as the parameter vector); None when it fits or when one
    of those keys is itself at fault (``skip``) or not a number yet."""
    keys = ("NOISE_TABLE_SIZE", "HIDDEN_SIZE", "HIDDEN_LAYERS", "LOOKBACK")
    if skip & NOISE_KEYS:
        return None
    try:
        table, hidden, layers, lookback = (int(values[k]) for k in keys)
    except (KeyError, TypeError, ValueError):
        return None
    params = policy_param_count(lookback, hidden, layers, str(values.get("FEATURES", "base")))
    if params <= table:
        return None
    return ConfigProblem(
        "NOISE_TABLE_SIZE", table,
        f"the noise table is smaller than the policy: HIDDEN_SIZE={hidden} with HIDDEN_LAYERS={layers} "
        f"(LOOKBACK={lookback}) has {params:,} parameters; raise NOISE_TABLE_SIZE to at least "
        f"{noise_table_size_for(params)} or lower HIDDEN_SIZE",
        allowed_range("NOISE_TABLE_SIZE"), kind=NOISE_TABLE_TOO_SMALL,
    )


NOISE_TABLE_TOO_SMALL = "noise_table_too_small"


def noise_table_size_for(params: int) -> int:
    """The smallest power of two that holds ``params`` floats (at least the table's minimum)."""
    low, _, _, _ = bounds("NOISE_TABLE_SIZE")
    return max(int(low or 1), 1 << max(0, params - 1).bit_length())


def normalize_key(key: Any) -> str:
    """``learning-rate`` and ``Learning_Rate`` both mean LEARNING_RATE; ``generations`` means EPISODES."""
    key = str(key).strip().upper().replace("-", "_")
    return KEY_ALIASES.get(key, key)


def shown_key(key: str) -> str:
    """The name a person is shown for ``key`` (GENERATIONS for EPISODES)."""
    return SHOWN_NAMES.get(key, key)


@dataclass(frozen=True)
class ConfigProblem:
    """One fault in a config: the key, the value given, what is wrong and what is allowed."""

    key: str
    value: Any
    message: str
    allowed: str = ""
    kind: str = ""  # pydantic's error type ("greater_than", "int_parsing", ...) or "unknown_key"

    def describe(self) -> str:
        where = f"{shown_key(self.key)}={self.value!r}" if self.key else repr(self.value)
        allowed = f" (allowed: {self.allowed})" if self.allowed else ""
        return f"{where}: {self.message}{allowed}"


def bounds(key: str) -> tuple[float | None, bool, float | None, bool]:
    """(low, low_inclusive, high, high_inclusive) of a numeric key; None where unbounded."""
    low = high = None
    low_inc = high_inc = True
    for meta in TrainingConfig.model_fields[key].metadata:
        if isinstance(meta, Ge):
            low, low_inc = meta.ge, True
        elif isinstance(meta, Gt):
            low, low_inc = meta.gt, False
        elif isinstance(meta, Le):
            high, high_inc = meta.le, True
        elif isinstance(meta, Lt):
            high, high_inc = meta.lt, False
    return low, low_inc, high, high_inc


def allowed_range(key: str) -> str:
    """Human-readable allowed values of ``key``, from the field's constraints."""
    if key == "BUCKET":
        return ", ".join(BUCKETS)
    if key == "TIMEFRAME":
        return ", ".join(TIMEFRAMES)
    if key in CHOICES:
        return ", ".join(CHOICES[key])
    field = TrainingConfig.model_fields[key]
    low, low_inc, high, high_inc = bounds(key)
    kind = field.annotation.__name__ if isinstance(field.annotation, type) else str(field.annotation)
    text = kind
    if low is not None:
        text = f"{low} {'<=' if low_inc else '<'} {text}"
    if high is not None:
        text = f"{text} {'<=' if high_inc else '<'} {high}"
    if key == "ES_POPULATION":
        text += ", even"
    return text


SYNONYM_OF = {alias: key for key, aliases in SYNONYMS.items() for alias in aliases}


def closest_key(raw_key: str) -> str | None:
    """The known key ``raw_key`` most likely means: a known synonym, else the nearest spelling."""
    key = normalize_key(raw_key).replace(" ", "_")
    if key in KNOWN_KEYS:
        return key
    if key in SYNONYM_OF:
        return SYNONYM_OF[key]
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.5)
    if close:
        return close[0]
    near = difflib.get_close_matches(key, list(SYNONYM_OF), n=1, cutoff=0.75)
    return SYNONYM_OF[near[0]] if near else None


def _unknown_key_problem(raw_key: str, value: Any) -> ConfigProblem:
    key = normalize_key(raw_key)
    if not key:
        return ConfigProblem(repr(raw_key), value, "the key is empty; write KEY=VALUE, e.g. SIGMA=0.05",
                             kind="unknown_key")
    if key in FLAG_NAMES:
        return ConfigProblem(raw_key, value, f"not a config key but a command-line setting: pass {FLAG_NAMES[key]} "
                             "instead", kind="unknown_key")
    close = closest_key(raw_key)
    hint = f"did you mean {shown_key(close)}?" if close else "see `btc-ai presets --keys` for the known keys"
    return ConfigProblem(raw_key, value, f"unknown key, {hint}", kind="unknown_key")


def _problems_from(exc: ValidationError, merged: Mapping[str, Any]) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else ""
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "finite_number":  # NaN is not "greater than" anything: say what it is
            value = merged.get(key, err.get("input"))
            message = "not a number (NaN)" if str(value).strip().lower() in ("nan", "+nan", "-nan") else \
                "infinite; give a finite number"
        problems.append(
            ConfigProblem(key, merged.get(key, err.get("input")), message, allowed_range(key) if key else "", err["type"])
        )
    return problems
