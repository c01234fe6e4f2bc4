"""The Ray evaluator on a real in-process cluster (a head with no CPU, two one-CPU worker nodes): the same
parameters as the local evaluator bit for bit, with a worker killed or a node removed mid-generation, a
lost cluster repaired to the local evaluator, resume across evaluators, and no Ray process left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from btc_ai.recovery import TrainingRecoverySystem  # noqa: E402
from btc_ai.tracking.run_model import TAG_CLUSTER_EVENT  # noqa: E402
from btc_ai.tracking.store import Tracker  # noqa: E402
from btc_ai.training.cluster.connection import loopback_only  # noqa: E402
from btc_ai.training.cluster.evaluator import RayEvaluator  # noqa: E402
from btc_ai.training.cluster.processes import alive, descendants  # noqa: E402
from btc_ai.training.loop import TrainingCallbacks, train_model  # noqa: E402

pytestmark = pytest.mark.slow

CONFIG = {**TINY, "EPISODES": 5, "ES_POPULATION": 16, "RAY_CHUNK_MEMBERS": 4, "STALL_MIN_SECONDS": 8.0}
NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
FAST_FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                          "health_check_initial_delay_ms": 0}


class Events(TrainingCallbacks):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.metrics: list[dict] = []

    def on_event(self, generation: int, event: str) -> None:
        self.events.append(event)

    def on_generation(self, generation: int, metrics) -> None:
        self.metrics.append(dict(metrics))


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    loopback_only()
    before = descendants()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "node_ip_address": "127.0.0.1",
        "_system_config": FAST_FAILURE_DETECTION})
    for _ in range(2):  # one after the other: two nodes starting at once compete for 2 cores
        cluster.add_node(**NODE)
    ray.init(address=cluster.address, log_to_driver=False)
    started = descendants() - before
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    started |= descendants() - before
    assert not alive(started), f"Ray processes left behind: {sorted(alive(started))}"


def ensure_two_nodes(cluster) -> None:
    while len(cluster.worker_nodes) < 2:
        cluster.add_node(**NODE)
    cluster.wait_for_nodes()


@pytest.fixture(scope="module")
def local_sha(candles) -> str:
    _, metrics, _, _ = train_model(dict(CONFIG), candles)
    return metrics["final_params_sha256"]


def _ray_training(candles, hook=None, callbacks=None, **overrides):
    def wrap(inner):
        assert isinstance(inner, RayEvaluator)
        if hook is not None:
            hook(inner)
        return inner

    config = {**CONFIG, "EVALUATOR": "ray", **overrides}
    _, metrics, _, _ = train_model(config, candles, callbacks=callbacks, wrap_evaluator=wrap)
    return metrics


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_parameters_are_bit_identical_to_local_with_any_number_of_workers(cluster, candles, local_sha,
                                                                             workers) -> None:
    ensure_two_nodes(cluster)
    metrics = _ray_training(candles, RAY_WORKERS=workers)
    assert metrics["final_params_sha256"] == local_sha
    assert {row["cluster/live_workers"] for row in metrics["history"]} == {float(workers)}
    assert all(row["cluster/reevaluated_members"] == 0 for row in metrics["history"])
