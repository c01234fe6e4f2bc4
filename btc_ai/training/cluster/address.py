"""`--ray-address`: which cluster a training evaluates on, read and checked without importing Ray."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

from btc_ai.domain.errors import UserInputError

_LOCAL = re.compile(r"^local:(?P<workers>\d+)$")
_CLIENT = re.compile(r"^ray://(?P<host>[\w.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")
MAX_LOCAL_WORKERS = 256
INSTALL_HINT = "pip install -e '.[cluster]' (or make setup, which installs it)"


@dataclass(frozen=True)
class RayAddress:
    """A parsed ``--ray-address``: ``local`` (start a cluster of ``workers`` here, ours to stop), ``auto``
    (join the cluster `ray start` runs on this machine) or ``client`` (a Ray Client URL)."""

    kind: str
    text: str
    workers: int = 0

    @property
    def owned(self) -> bool:
        """Whether this process starts (and so must stop) the cluster."""
        return self.kind == "local"


def parse_ray_address(text: str) -> RayAddress:
    """``local:N``, ``auto`` or ``ray://host:port``; UserInputError naming the forms otherwise."""
    value = (text or "").strip()
    if value == "auto":
        return RayAddress("auto", value)
    local = _LOCAL.match(value)
    if local:
        workers = int(local["workers"])
        if not 1 <= workers <= MAX_LOCAL_WORKERS:
            raise UserInputError(f"--ray-address {text}: a local cluster needs 1 to {MAX_LOCAL_WORKERS} workers; "
                                 "write e.g. local:2")
        return RayAddress("local", value, workers)
    client = _CLIENT.match(value)
    if client and 0 < int(client["port"]) < 65536:
        return RayAddress("client", value)
    raise UserInputError(f"--ray-address {text!r} is not one of auto, ray://HOST:PORT or local:N; write e.g. "
                         "--ray-address local:2 (a cluster of 2 workers started here) or auto (the cluster of "
                         "`ray start` on this machine)")


def ray_installed() -> bool:
    """Whether Ray can be imported (found without importing it)."""
    return importlib.util.find_spec("ray") is not None


def require_ray(what: str = "--evaluator ray") -> None:
    """UserInputError naming the fix when Ray is not installed."""
    if not ray_installed():
        raise UserInputError(f"{what} needs Ray, which is not installed here; install the cluster extra: "
                             f"{INSTALL_HINT}, or train with --evaluator local")
