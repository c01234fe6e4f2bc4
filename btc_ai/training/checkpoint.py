"""The resumable training state and its checkpoint files: atomic writes, sha256, safe loads."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from btc_ai.domain.errors import CheckpointError
from btc_ai.domain.es import ESState

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainingState:
    """Everything needed to continue a training exactly where it stopped."""

    config: dict[str, Any]
    es: ESState
    data_fingerprint: str
    elapsed_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def generation(self) -> int:
        return self.es.generation

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint payload, only tensors and plain Python values (safe for weights_only loads).

        Keys: ``format_version``, ``generation``, ``config`` (effective config), ``params``, ``adam_m``,
        ``adam_v`` (ES state), ``best_params``, ``best_reward``, ``best_generation``,
        ``data_fingerprint``, ``elapsed_time``, ``extra``.
        """
        es = self.es
        return {
            "format_version": FORMAT_VERSION,
            "generation": es.generation,
            "config": dict(self.config),
            "params": torch.from_numpy(np.array(es.params)),
            "adam_m": torch.from_numpy(np.array(es.m)),
            "adam_v": torch.from_numpy(np.array(es.v)),
            "best_params": None if es.best_params is None else torch.from_numpy(np.array(es.best_params)),
            "best_reward": float(es.best_reward),
            "best_generation": int(es.best_generation),
            "data_fingerprint": self.data_fingerprint,
            "elapsed_time": float(self.elapsed_time),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainingState:
        """Inverse of :meth:`to_dict`; CheckpointError when a key is missing or the version is unknown."""
        try:
            version = payload["format_version"]
            if version != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint format {version} is not supported (this btc_ai reads {FORMAT_VERSION})")
            best = payload["best_params"]
            es = ESState(
                params=payload["params"].numpy(),
                m=payload["adam_m"].numpy(),
                v=payload["adam_v"].numpy(),
                generation=int(payload["generation"]),
                best_params=None if best is None else best.numpy(),
                best_reward=float(payload["best_reward"]),
                best_generation=int(payload["best_generation"]),
            )
            return cls(
                config=dict(payload["config"]),
                es=es,
                data_fingerprint=str(payload["data_fingerprint"]),
                elapsed_time=float(payload["elapsed_time"]),
                extra=dict(payload.get("extra") or {}),
            )
        except (KeyError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"checkpoint is missing or mangles a field: {exc}") from exc


def checkpoint_name(generation: int, *, emergency: bool = False) -> str:
    """``gen-000005.pt`` or ``emergency-gen-000005.pt`` (docs/design.md's artifact names)."""
    return f"{'emergency-' if emergency else ''}gen-{generation:06d}.pt"


def save_checkpoint(state: TrainingState, path: str | Path) -> str:
    """Write ``state`` atomically (temporary file, fsync, rename) and return its sha256.

    A crash at any moment leaves either the old file or the complete new one, never half of one.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    data = buffer.getvalue()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        # same type (PermissionError stays unrecoverable as such), but the message names the folder
        raise type(exc)(exc.errno, f"cannot write checkpoint {path.name} in {path.parent}: {exc.strerror or exc}",
                        str(path.parent)) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> TrainingState:
    """Read a checkpoint without executing anything in it (``weights_only``); verify its hash if given."""
    data = Path(path).read_bytes()
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CheckpointError(f"checkpoint {path} does not match its recorded sha256 (corrupted or truncated)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the file cannot be trusted
        raise CheckpointError(f"checkpoint {path} cannot be read safely: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict")
    return TrainingState.from_dict(payload)
