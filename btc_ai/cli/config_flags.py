"""The config of a training command from its flags (a JSON file, ``--set KEY=VALUE``, the named flags),
validated once, here: `btc-ai train` and `btc-ai walk-forward` pass the result on as it is."""

from __future__ import annotations

import argparse
import json
from typing import Any

from btc_ai.cli.common import flag
from btc_ai.domain.config import allowed_range, normalize_key, shown_key
from btc_ai.domain.config_file import read_config_file
from btc_ai.domain.errors import ConfigValidationError, UserInputError
from btc_ai.domain.presets import BUCKETS, DEFAULT_BUCKET, find_bucket

# Original flags of the training script, mapped to config keys (each also takes the dash form); the
# generations flag also answers to the seed's --episodes.
CONFIG_FLAGS = {
    "bucket": ("BUCKET", str),
    "hidden_size": ("HIDDEN_SIZE", int),
    "learning_rate": ("LEARNING_RATE", float),
    "es_population": ("ES_POPULATION", int),
    "generations": ("EPISODES", int),
    "seed": ("SEED", int),
    "min_checkpoint_interval": ("MIN_CHECKPOINT_INTERVAL", int),
    "max_steps_per_episode": ("MAX_STEPS_PER_EPISODE", int),
    "sigma": ("SIGMA", float),
}
FLAG_ALIASES = {"generations": ("--episodes",)}


def add_config_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """--config, the named config flags (but ``skip``) and --set."""
    flag(parser, "config", metavar="FILE", help="JSON object of config keys (flags win over it)")
    for name, (key, kind) in CONFIG_FLAGS.items():
        if name not in skip:
            add_config_flag(parser, name, type=kind, metavar=shown_key(key), help=f"{shown_key(key)} ({allowed_range(key)})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (repeatable)")


def add_config_flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """A config flag in its dash and underscore forms, and its old names (--episodes for --generations)."""
    dashed = name.replace("_", "-")
    names = [f"--{dashed}", *([f"--{name}"] if dashed != name else []), *FLAG_ALIASES.get(name, ())]
    parser.add_argument(*names, dest=name, **kwargs)


def given_flags(args: argparse.Namespace) -> list[str]:
    """The config flags given on the command line (as --names)."""
    return [f"--{name}" for name in [*CONFIG_FLAGS, "config"] if getattr(args, name, None) is not None] + \
        (["--set"] if args.set else [])


def given_keys(args: argparse.Namespace) -> set[str]:
    """The config keys the user named in --set or the config file, beyond the named flags."""
    keys = {normalize_key(text.split("=", 1)[0]) for text in args.set}
    if args.config:
        keys |= {normalize_key(k) for k in read_config_file(args.config)}
    return keys


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    """The command's `ValidatedConfig`: the config file, then --set, then the named flags, then ``extra`` (the
    evaluator flags), over the bucket's preset — validated and repaired once, here (out-of-range counts are
    clamped, each clamp a repair the session records; real values out of range are refused with the range).

    Problems no repair can fix (unknown keys, wrong types, unknown bucket) are reported in one line.
    """
    # the recovery floor loads pandas and torch: imported when a command runs, so `btc-ai --help` stays fast
    from btc_ai.recovery.validation import validated_config

    values = _values_from_args(args)
    values.update(extra or {})
    # Flags override the bucket preset by design: what they leave out is not "missing". The noise table is
    # the exception: left out, it is sized to the policy (a repair), so the preset's size is not passed on.
    given = {normalize_key(k): v for k, v in values.items()}
    bucket = find_bucket(str(given.get("BUCKET", DEFAULT_BUCKET))) or BUCKETS[DEFAULT_BUCKET]
    preset = {k: v for k, v in bucket.config().items() if k != "NOISE_TABLE_SIZE"}
    try:
        return validated_config({**preset, **given})
    except ConfigValidationError as exc:  # the same error, with where to look added
        raise UserInputError(f"{exc}; fix these values (see `btc-ai presets --keys`)") from None


def _values_from_args(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.config is not None and not args.config.strip():
        raise UserInputError("--config is empty; give a JSON file of config keys, or drop --config")
    if args.config:
        try:
            values.update(read_config_file(args.config))
        except FileNotFoundError:
            raise UserInputError(f"config file {args.config} does not exist{tilde(args.config)}; check the --config "
                                 "path") from None
        except json.JSONDecodeError as exc:
            if not exc.doc.strip():
                raise UserInputError(f"config file {args.config} is empty; write a JSON object of config keys, "
                                     "e.g. {\"SIGMA\": 0.05}, or drop --config") from None
            raise UserInputError(f"config file {args.config} is not valid JSON (line {exc.lineno}, column "
                                 f"{exc.colno}: {exc.msg}); fix the file or drop --config") from None
        except ConfigValidationError:  # not an object of keys
            raise UserInputError(f"config file {args.config} must hold a JSON object of config keys, "
                                 "e.g. {\"SIGMA\": 0.05}") from None
    for text in args.set:
        key, value = _parse_assignment(text)
        values[key] = value
    for name, (key, _) in CONFIG_FLAGS.items():
        if getattr(args, name, None) is not None:
            values[key] = getattr(args, name)
    return values


def _parse_assignment(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserInputError(f"--set {text!r} is not KEY=VALUE; write e.g. --set SIGMA=0.05")
    key, value = text.split("=", 1)
    if not key.strip():
        raise UserInputError(f"--set {text!r}: the key before '=' is empty; write KEY=VALUE, e.g. --set SIGMA=0.05")
    if not value.strip():
        raise UserInputError(f"--set {text!r}: {key.strip()} has no value after '='; write e.g. --set SIGMA=0.05")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def tilde(path: str) -> str:
    """A quoted ``~`` reaches us unexpanded: say so where it explains a missing file."""
    return " (a ~ in quotes is not expanded: write $HOME or the full path)" if path.startswith("~") else ""
