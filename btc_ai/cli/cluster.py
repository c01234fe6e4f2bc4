"""The cluster flags of `btc-ai train` and `btc-ai resume` (--evaluator, --ray-address): checked before
anything is created, and the Ray cluster the command evaluates on, opened around the training. Ray is imported
only when a command evaluates on it."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Mapping
from typing import Any

from btc_ai.cli.common import flag
from btc_ai.domain.errors import UserInputError

_RAY_ADDRESS_HELP = ("the Ray cluster to evaluate on (implies --evaluator ray): auto (the cluster `ray start` runs "
                     "here), ray://HOST:PORT (Ray Client), or local:N (start N one-CPU workers here for this "
                     "command, stopped at its end); default with --evaluator ray: local:<RAY_WORKERS or CPUs>")


def add_cluster_flags(parser: Any) -> None:
    flag(parser, "evaluator", choices=["local", "ray"], help="where the population is scored (EVALUATOR; the same "
         "numbers either way): local (this process) or ray (a Ray cluster, pip install -e '.[cluster]')")
    flag(parser, "ray_address", metavar="ADDRESS", help=_RAY_ADDRESS_HELP)


def evaluator_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """EVALUATOR from --evaluator (or ray, implied by --ray-address); checked before anything is created:
    Ray installed, an address Ray can be given."""
    evaluator = getattr(args, "evaluator", None)
    address = getattr(args, "ray_address", None)
    if address is not None:
        if evaluator == "local":
            raise UserInputError(f"--ray-address {address} names a cluster but --evaluator local trains in this "
                                 "process; drop one of them")
        evaluator = "ray"
    if evaluator != "ray":
        return {"EVALUATOR": evaluator} if evaluator else {}
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.training.cluster.address import parse_ray_address, require_ray

    require_ray()
    if address is not None:
        parse_ray_address(address)
    return {"EVALUATOR": "ray"}


def ray_cluster(args: argparse.Namespace, values: Mapping[str, Any] | None) -> Any:
    """The Ray cluster of this command when it evaluates on Ray (started here for local:N, and stopped at the
    end with every process it ran ended by PID); a do-nothing context otherwise (Ray is not imported)."""
    if (values or {}).get("EVALUATOR") != "ray":
        return contextlib.nullcontext()
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.training.cluster.address import require_ray

    require_ray("EVALUATOR=ray")
    from btc_ai.training.cluster.connection import RayConnection

    workers = (values or {}).get("RAY_WORKERS") or os.cpu_count() or 1
    return RayConnection(getattr(args, "ray_address", None) or f"local:{workers}")
