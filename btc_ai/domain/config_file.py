"""Config files: the one reader of a JSON object of config keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btc_ai.domain.config import ConfigProblem, normalize_key
from btc_ai.domain.errors import ConfigValidationError, UserInputError
from btc_ai.domain.files import read_regular_file


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object of config keys in ``path`` (the one reader of config files).

    Text as the data reader takes it: UTF-8 with or without a BOM, or UTF-16/32 (JSON's own detection).
    A malformed file raises json.JSONDecodeError (recoverable in a training: the backup config is used),
    a missing one FileNotFoundError, one that holds no object ConfigValidationError; everything else is a
    one-line UserInputError naming the file: a folder, a pipe, an unreadable file, text
    in another encoding, a key given twice.
    """
    raw = read_regular_file(path, "config file")
    try:
        data = json.loads(raw, object_pairs_hook=_reject_repeated_keys)
    except UnicodeDecodeError:
        raise UserInputError(f"config file {path} is not UTF-8 text (nor UTF-16 with a byte-order mark); save "
                             "it as UTF-8") from None
    except _RepeatedKey as exc:
        raise UserInputError(f"config file {path}: {exc.key} is given {len(exc.values)} times ("
                             f"{', '.join(map(repr, exc.values))}; keys are case-insensitive); keep one") from None
    if not isinstance(data, dict):
        raise ConfigValidationError(
            [ConfigProblem("", type(data).__name__, f"{path} must hold a JSON object of config keys", "{...}")]
        )
    return data


class _RepeatedKey(ValueError):
    def __init__(self, key: str, values: list[Any]) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys (as config keys: any case, dashes) are each given once."""
    seen: dict[str, list[Any]] = {}
    for key, value in pairs:
        seen.setdefault(normalize_key(key), []).append(value)
    for key, values in seen.items():
        if len(values) > 1:
            raise _RepeatedKey(key, values)
    return dict(pairs)
