"""The Ray evaluator on a real in-process cluster (a head with no CPU, two one-CPU worker nodes): the same
parameters as the local evaluator bit for bit, with a worker killed or a node removed mid-generation, a
lost cluster repaired to the local evaluator, resume across evaluators, and no Ray process left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import TINY

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from btc_ai.recovery import TrainingRecoverySystem  # noqa: E402
from btc_ai.tracking.run_model import TAG_CLUSTER_EVENT  # noqa: E402
from btc_ai.tracking.tracker import Tracker  # noqa: E402
from btc_ai.training.cluster.connection import loopback_only  # noqa: E402
from btc_ai.training.cluster.evaluator import RayEvaluator  # noqa: E402
from btc_ai.training.cluster.processes import alive, descendants  # noqa: E402
from btc_ai.training.loop import TrainingCallbacks, train_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one cluster at a time, in one test process

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
    return _local_sha(candles, CONFIG["EPISODES"])


def _local_sha(candles, episodes: int) -> str:
    _, metrics, _, _ = train_model({**CONFIG, "EPISODES": episodes}, candles)
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
    # members are re-evaluated a whole chunk at a time (a late or lost chunk sent again): 16 members, chunks of 4
    reevaluated = [row["cluster/reevaluated_members"] for row in metrics["history"]]
    assert all(n == int(n) and int(n) % CONFIG["RAY_CHUNK_MEMBERS"] == 0 for n in reevaluated), reevaluated
    # what the members did comes back from the workers with their fitness: the same numbers as locally
    _, local, _, _ = train_model(CONFIG, candles)
    activity = ("population/never_trade_share", "population/exposure", "centre/exposure", "centre/turnover")
    assert [[row[k] for k in activity] for row in metrics["history"]] == \
        [[row[k] for k in activity] for row in local["history"]]


def test_a_worker_killed_mid_generation_is_re_evaluated_and_changes_nothing(cluster, candles, local_sha) -> None:
    ensure_two_nodes(cluster)
    actors: list[list[str]] = []

    class Seen(Events):
        def on_generation(self, generation: int, metrics) -> None:
            super().on_generation(generation, metrics)
            actors.append([w.handle._actor_id.hex() for w in evaluator[0].workers])

    seen, evaluator = Seen(), []

    def kill_in_generation_3(inner: RayEvaluator) -> None:
        evaluator.append(inner)
        inner.faults[2] = "kill"  # the first chunk sent in generation 3: its worker SIGKILLs itself
        # generations as long as real ones: Ray restarts it meanwhile. Four of them: a restart imports torch,
        # and once, on a loaded machine, it outlasted two and the rejoin below was never seen
        for generation in range(3, 7):
            inner.faults[generation] = "slow"

    metrics = _ray_training(candles, kill_in_generation_3, seen, RAY_WORKERS=2, EPISODES=8)
    assert metrics["final_params_sha256"] == _local_sha(candles, 8)
    reevaluated = {row["generation"]: row["cluster/reevaluated_members"] for row in metrics["history"]}
    assert reevaluated[3] >= CONFIG["RAY_CHUNK_MEMBERS"]
    assert any("generation 3: worker" in e and "lost" in e for e in seen.events), seen.events
    # the worker Ray restarted is the one that rejoins: its actor is kept, not replaced by a fresh one (which
    # would throw Ray's half-done restart away and start over)
    assert any("rejoined" in e for e in seen.events), seen.events
    assert all(ids == actors[0] for ids in actors), actors


def test_a_node_removed_mid_generation_is_re_evaluated_and_changes_nothing(cluster, candles, local_sha) -> None:
    ensure_two_nodes(cluster)
    seen = Events()

    def remove_a_node_in_generation_2(evaluator: RayEvaluator) -> None:
        evaluator.faults[1] = "slow"  # generation 2's chunks are still running when the node goes

        def remove(generation: int) -> None:
            if generation == 1:
                cluster.remove_node(next(iter(cluster.worker_nodes)), allow_graceful=False)
        evaluator.on_dispatch = remove

    metrics = _ray_training(candles, remove_a_node_in_generation_2, seen, RAY_WORKERS=2)
    assert metrics["final_params_sha256"] == local_sha
    rows = {row["generation"]: row for row in metrics["history"]}
    assert rows[2]["cluster/reevaluated_members"] > 0
    assert rows[2]["cluster/live_workers"] == 1.0
    assert any("generation 2: worker" in e for e in seen.events), seen.events


def test_the_stall_watchdog_ends_a_generation_that_waits_on_the_cluster(cluster, candles) -> None:
    from btc_ai.domain.errors import TrainingStalledError

    ensure_two_nodes(cluster)

    def stall_generation_2(evaluator: RayEvaluator) -> None:
        evaluator.faults[1] = "slow"  # every chunk of generation 2 takes 1.5 s: past a 0.5 s deadline

    with pytest.raises(TrainingStalledError, match="generation 2"):
        _ray_training(candles, stall_generation_2, STALL_MIN_SECONDS=0.5, STALL_FACTOR=2.0)


def _system(tmp_path, name: str) -> tuple[TrainingRecoverySystem, Tracker]:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment=name)
    return TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", max_retries=2, tracker=tracker,
                                  sleep=lambda seconds: None), tracker


def test_resume_across_evaluators_ends_bit_identical(cluster, candles, local_sha, tmp_path) -> None:
    ensure_two_nodes(cluster)
    # a session started locally, resumed from the store on the cluster
    system, _ = _system(tmp_path, "resume")
    started = system.train(train_model, system.validated({**CONFIG, "EPISODES": 3}), candles)
    resumed = system.train(train_model, None, candles, recovery_state=started.session_run_id,
                           overrides={"EPISODES": CONFIG["EPISODES"], "EVALUATOR": "ray"})
    assert (started.outcome, resumed.outcome) == ("completed", "completed")
    assert resumed.metrics["final_params_sha256"] == local_sha
    # ... and the other way: a checkpoint written on the cluster, continued in this process
    train_model({**CONFIG, "EPISODES": 3, "EVALUATOR": "ray"}, candles, save_path=tmp_path / "ck")
    _, metrics, _, _ = train_model(dict(CONFIG), candles, recovery_state=tmp_path / "ck" / "gen-000003.pt")
    assert metrics["final_params_sha256"] == local_sha


def test_all_workers_lost_is_repaired_by_continuing_on_the_local_evaluator(cluster, candles, local_sha,
                                                                           tmp_path) -> None:
    ensure_two_nodes(cluster)

    def lose_every_node_in_generation_3(inner):
        if isinstance(inner, RayEvaluator):
            def remove(generation: int) -> None:
                if generation == 2:
                    for node in list(cluster.worker_nodes):
                        cluster.remove_node(node, allow_graceful=False)
            inner.faults[2] = "slow"
            inner.on_dispatch = remove
        return inner

    def training(*args, **kwargs):
        return train_model(*args, wrap_evaluator=lose_every_node_in_generation_3, **kwargs)

    system, tracker = _system(tmp_path, "lost")
    try:
        result = system.train(training, system.validated({**CONFIG, "EVALUATOR": "ray", "RAY_WORKERS": 2}), candles)
    finally:
        ensure_two_nodes(cluster)
    assert result.outcome == "completed", result.error
    assert result.metrics["final_params_sha256"] == local_sha
    client = tracker.client
    runs = client.search_runs([tracker.experiment_id], f"tags.`btc_ai.session` = '{result.session_run_id}'")
    repairs = [r for r in runs if r.data.tags["btc_ai.kind"] == "repair" and r.data.tags["btc_ai.triggered_by"]
               != "validation"]
    assert [r.data.tags["btc_ai.repair_rule"] for r in repairs] == ["continue_on_local_evaluator"]
    assert repairs[0].data.tags["btc_ai.triggered_by"] == "ClusterLostError"
    assert repairs[0].data.params["EVALUATOR.after"] == "local"
    attempts = sorted((r for r in client.search_runs([tracker.experiment_id],
                                                     f"tags.`mlflow.parentRunId` = '{result.session_run_id}'")
                       if r.data.tags["btc_ai.kind"] == "attempt"), key=lambda r: int(r.data.tags["btc_ai.attempt"]))
    assert [a.data.tags["btc_ai.outcome"] for a in attempts] == ["recoverable_error", "success"]
    assert "lost" in attempts[0].data.tags[TAG_CLUSTER_EVENT]
    assert attempts[0].data.params["EVALUATOR"] == "ray" and attempts[1].data.params["EVALUATOR"] == "local"


def test_the_cli_starts_and_stops_its_own_local_cluster_leaving_no_process(tmp_path) -> None:
    code = ("import sys; from btc_ai.cli import main; from btc_ai.training.cluster.processes import descendants; "
            "rc = main(sys.argv[1:]); left = descendants(); print('LEFT', sorted(left)); sys.exit(rc or bool(left))")
    flags = ["--episodes", "3", "--es-population", "8", "--hidden-size", "8", "--max-steps-per-episode", "64",
             "--set", "EPISODES_PER_EVAL=2", "--set", "NOISE_TABLE_SIZE=65536", "--set", "RAY_CHUNK_MEMBERS=4"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([sys.executable, "-c", code, "train", "--quiet", "--evaluator", "ray", "--ray-address",
                          "local:2", "--checkpoint-dir", str(tmp_path / "ck"), *flags],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "LEFT []" in out.stdout
