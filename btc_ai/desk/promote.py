"""`btc-ai promote`: move an alias (``champion`` by default) to a model version by hand. A version the
promotion gate rejected moves only with ``--force`` and a reason; who, when and why stay on the version."""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass

from btc_ai.domain.errors import UserInputError
from btc_ai.tracking.run_model import (
    ALIAS_CHAMPION,
    LATEST,
    VERSION_TAG_PROMOTED_BY,
    VERSION_TAG_PROMOTION,
    ModelVersionRecord,
    RunModel,
)


@dataclass(frozen=True)
class Promotion:
    version: ModelVersionRecord
    alias: str
    forced: bool
    note: str


def promote(runs: RunModel, ref: str, *, alias: str = ALIAS_CHAMPION, force: bool = False,
            reason: str | None = None) -> Promotion:
    """Point ``alias`` of the version ``ref`` names at it; refuses (UserInputError) a version the gate
    rejected unless ``force`` with a ``reason``."""
    if alias.lower() == LATEST:
        raise UserInputError("'latest' is MLflow's own name for the newest version (models:/<name>/latest); "
                             "pick another alias, e.g. --alias champion")
    if force and not (reason and reason.strip()):
        raise UserInputError("--force needs --reason TEXT: why this version, which the gate did not pass, moves")
    version = runs.model_version(ref)
    verdict = version.tags.get(VERSION_TAG_PROMOTION, "")
    if not force and not verdict.startswith("passed"):
        why = verdict or "it carries no verdict of the promotion gate"
        raise UserInputError(f"{version.uri} did not pass the promotion gate ({why}); to move @{alias} anyway: "
                             f"btc-ai promote {ref} --alias {alias} --force --reason TEXT")
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    note = f"@{alias} moved by {who} at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    note += f", forced: {reason.strip()}" if force and reason else f": {reason.strip()}" if reason else ""
    runs.set_alias(version, alias, {VERSION_TAG_PROMOTED_BY: note[:5000]})
    return Promotion(version, alias, force, note)
