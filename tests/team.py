"""The team server for tests (PostgreSQL + proxied artifacts + basic auth, skipped with the reason where
PostgreSQL is absent) and the check that a session's record is complete and exact."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli_env

from btc_ai.tracking.team_server import PostgresCluster, TeamMlflowServer, postgres_missing, team_deployment

USERS = {"alice": "abc@def-Pw-7Qz81kX", "bob": "bob-Pw-3Lm92vY"}  # an "@" in a password: parsed to the last "@"


@dataclass
class Team:
    server: TeamMlflowServer
    database: PostgresCluster

    @property
    def url(self) -> str:
        return self.server.url

    def env(self, folder: Path, user: str | None = "alice", password: str | None = None) -> dict[str, str]:
        """A `btc-ai` subprocess's environment: this server, ``user``'s login, a journal in ``folder``."""
        env = cli_env(folder)
        env["MLFLOW_TRACKING_URI"] = self.url
        env["BTC_AI_JOURNAL_DIR"] = str(folder / "journal")
        if user is not None:
            env["MLFLOW_TRACKING_USERNAME"] = user
            env["MLFLOW_TRACKING_PASSWORD"] = password or USERS[user]
        return env

    def client(self, user: str = "alice"):
        """An MlflowClient logged in as ``user`` (the login variables of this process, for its calls)."""
        from mlflow import MlflowClient

        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, USERS[user]
        return MlflowClient(self.url)


def team_server(folder: Path) -> Iterator[Team]:
    """Start PostgreSQL and the server (users alice and bob, READ by default), yield, stop both."""
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    try:
        with team_deployment(folder, USERS) as server:
            yield Team(server, server.database)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

@dataclass
class Exactness:
    lost: list[int]
    doubled: list[int]
    checkpoints_missing: list[str]
    running: list[str]
    status: str
    attempts: int

    @property
    def exact(self) -> bool:
        return not (self.lost or self.doubled or self.checkpoints_missing or self.running)


def session_exactness(client, session_id: str, generations: int) -> Exactness:
    """Every generation's metrics once across the session's attempts, every committed checkpoint (its
    sha256 tag) stored, no run left RUNNING."""
    session = client.get_run(session_id)
    children = client.search_runs([session.info.experiment_id], f"tags.`mlflow.parentRunId` = '{session_id}'")
    attempts = [r for r in children if r.data.tags.get("btc_ai.kind") == "attempt"]
    steps: collections.Counter[int] = collections.Counter()
    missing = []
    for attempt in attempts:
        steps.update(m.step for m in client.get_metric_history(attempt.info.run_id, "fitness/mean"))
        stored = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(attempt.info.run_id, "checkpoints")}
        missing += [f"{attempt.info.run_id}:{key}" for key in attempt.data.tags
                    if key.startswith("btc_ai.checkpoint.") and key.removeprefix("btc_ai.checkpoint.") + ".pt"
                    not in stored]
    running = [r.info.run_id for r in [session, *children] if r.info.status == "RUNNING"]
    return Exactness(lost=sorted(set(range(1, generations + 1)) - set(steps)),
                     doubled=sorted(s for s, n in steps.items() if n > 1), checkpoints_missing=missing,
                     running=running, status=session.data.tags.get("btc_ai.status", ""), attempts=len(attempts))
