"""A session's MLflow record, IDs and times aside: what a refactoring must leave exactly as it was.

``session_record`` reads every run of a session (the session, its attempts, their repair runs), their
tags, params, metric keys with their steps, and artifact paths, plus the registered versions, and
replaces what differs between two identical trainings (run IDs, times, hashes, hosts, paths) by
stable placeholders. ``tests/data/session_record.json`` holds the record of the reference training
(``python tests/session_record.py`` writes it anew, on purpose only).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

RECORD_FILE = Path(__file__).parent / "data" / "session_record.json"
# The reference training: one recoverable error that blames a key, so the record holds a failed attempt,
# its error report and emergency checkpoint, a repair run and a second, successful attempt.
FAULT = "ValueError@3:LEARNING_RATE"
CONFIG = {"EPISODES": 6, "ES_POPULATION": 8, "HIDDEN_SIZE": 8, "MAX_STEPS_PER_EPISODE": 64, "EPISODES_PER_EVAL": 2,
          "EVAL_INTERVAL": 2, "MIN_CHECKPOINT_INTERVAL": 2, "CHECKPOINT_MIN_SECONDS": 0.0,
          "NOISE_TABLE_SIZE": 1 << 16, "LEARNING_RATE": 0.05, "SIGMA": 0.1, "BUCKET": "Scalping"}
# Tag values that differ between two identical trainings.
VOLATILE_TAGS = {"btc_ai.lease.owner", "btc_ai.lease.heartbeat", "mlflow.btc_ai.client_key", "mlflow.user",
                 "mlflow.source.name", "mlflow.source.type", "btc_ai.data_source", "btc_ai.model_id",
                 "btc_ai.final_params_sha256", "btc_ai.data_fingerprint", "mlflow.note.content", "btc_ai.model_path",
                 "btc_ai.model_params_sha256"}
_TIME = re.compile(r"\d{8}-\d{6}")  # a session's name holds its start time
_MODEL_DIR = re.compile(r"^models/[0-9a-f]{16}/")  # a logged model's folder is named by its parameters
_MODEL_ID = re.compile(r"models:/m-[0-9a-f]{32}")
_MODEL_NAME = re.compile(r"^policy-[0-9a-f]{16}$")
VOLATILE_PARAMS = {"config_file"}
_HEX = re.compile(r"\b[0-9a-f]{32}\b")
_SHA = re.compile(r"^[0-9a-f]{64}$")


class _Ids:
    """Run IDs as ``<run N>`` in order of first sight."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        return _HEX.sub(lambda m: self.seen.setdefault(m.group(0), f"<run {len(self.seen) + 1}>"), text)


def _artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out: list[str] = []
    for item in client.list_artifacts(run_id, path):
        out.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return sorted(out)


def _run(client: Any, run: Any, ids: _Ids) -> dict[str, Any]:
    tags = {}
    for key, value in sorted(run.data.tags.items()):
        if key.startswith("mlflow.source.git."):  # only where the main script is in a git checkout
            continue
        if key.startswith("btc_ai.checkpoint.") or _SHA.match(value):
            value = "<sha256>"
        elif key in VOLATILE_TAGS:
            value = "<volatile>" if value else ""
        tags[key] = _TIME.sub("<time>", ids(value))
    metrics = {key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
               for key in sorted(run.data.metrics)}
    params = {k: ("<volatile>" if k in VOLATILE_PARAMS else v) for k, v in sorted(run.data.params.items())}
    artifacts = [_MODEL_DIR.sub("models/<params sha256>/", path) for path in _artifacts(client, run.info.run_id)]
    return {"status": run.info.status, "tags": tags, "params": params, "metrics": metrics, "artifacts": artifacts}


def session_record(tracking_uri: str, session_id: str) -> dict[str, Any]:
    """The normalised record of one session, read with a bare MlflowClient."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ids = _Ids()
    ids(session_id)
    session = client.get_run(session_id)
    runs = client.search_runs([session.info.experiment_id], order_by=["attribute.start_time ASC"])
    children = [r for r in runs if r.info.run_id != session_id and session_id in
                (r.data.tags.get("mlflow.parentRunId"), r.data.tags.get("btc_ai.session"))]
    attempts = sorted((r for r in children if r.data.tags.get("btc_ai.kind") == "attempt"),
                      key=lambda r: int(r.data.tags["btc_ai.attempt"]))
    for attempt in attempts:
        ids(attempt.info.run_id)
    repairs = [r for r in children if r.data.tags.get("btc_ai.kind") == "repair"]
    record = {"session": _run(client, session, ids), "attempts": [_run(client, r, ids) for r in attempts],
              "repairs": [_run(client, r, ids) for r in repairs]}
    versions = client.search_model_versions(f"run_id = '{session_id}'")
    record["model_versions"] = [{"name": v.name, "tags": sorted(v.tags), "aliases": sorted(v.aliases),
                                 "source": _MODEL_ID.sub("models:/<model_id>", v.source)} for v in versions]
    # a logged model's ID and name (its parameters' sha256) differ between two identical trainings
    models = client.search_logged_models([session.info.experiment_id], f"source_run_id = '{session_id}'")
    record["logged_models"] = [{"name": _MODEL_NAME.sub("policy-<params sha256>", m.name), "status": str(m.status),
                                "params": sorted(m.params), "tags": sorted(m.tags),
                                "metrics": sorted(f"{x.key}@{x.step}" for x in m.metrics)} for m in models]
    return record


def reference_training(tmp_path: Path) -> tuple[str, str]:
    """Train the reference session into a new store under ``tmp_path``; (tracking URI, session run ID)."""
    from btc_ai import TrainingRecoverySystem, train_model
    from btc_ai.domain.synthetic import synthetic_candles
    from btc_ai.training.faults import inject_fault

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir(parents=True, exist_ok=True)
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", max_retries=2, tracking_uri=uri,
                                    experiment="record", sleep=lambda s: None)
    model, metrics, _, _ = system.start_training_with_recovery(inject_fault(train_model, FAULT), dict(CONFIG),
                                                               synthetic_candles(6048, seed=3))
    assert model is not None, metrics
    return uri, system.session_run_id


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        uri, session = reference_training(Path(tmp))
        RECORD_FILE.parent.mkdir(exist_ok=True)
        RECORD_FILE.write_text(json.dumps(session_record(uri, session), indent=1, sort_keys=True) + "\n")
        print(f"wrote {RECORD_FILE}", file=sys.stderr)
