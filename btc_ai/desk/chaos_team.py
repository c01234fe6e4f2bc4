"""chaos's server scenarios on the team deployment (docs/team-server.md): `mlflow server` over
PostgreSQL with proxied artifacts and basic authentication, started once per chaos run in its scratch
folder (PostgreSQL as an unprivileged user on 127.0.0.1) and shared by these scenarios. Where PostgreSQL
is not installed they are reported as skipped, with the reason, never as passed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from btc_ai.desk.chaos import CLI_FLAGS, Outcome, Scratch, logged_in, outage_mid_training, run_cli
from btc_ai.tracking.run_model import RunModel
from btc_ai.tracking.team_server import TeamMlflowServer, postgres_missing, team_deployment
from btc_ai.tracking.tracker import Tracker

USER = "chaos"


@dataclass
class TeamDeployment:
    server: TeamMlflowServer
    password: str

    def env(self, scratch: Scratch, password: str | None = None) -> dict[str, str]:
        return {**scratch.env(), "MLFLOW_TRACKING_URI": self.server.url, "MLFLOW_TRACKING_USERNAME": USER,
                "MLFLOW_TRACKING_PASSWORD": password or self.password}


def _deployment(scratch: Scratch) -> TeamDeployment | str:
    """The run's team deployment, started by the first scenario that needs it; or why it cannot be."""
    if "team" not in scratch.shared:
        reason = postgres_missing()
        if reason:
            scratch.shared["team"] = reason
            return reason
        password = secrets.token_urlsafe(12)
        server = scratch.stack.enter_context(team_deployment(scratch.root.parent / "team-server", {USER: password}))
        scratch.shared["team"] = TeamDeployment(server, password)
    return scratch.shared["team"]


def _team(name: str, classification: str,
          body: Callable[[Scratch, TeamDeployment], Outcome]) -> Callable[[Scratch], Outcome]:
    def scenario(scratch: Scratch) -> Outcome:
        team = _deployment(scratch)
        if isinstance(team, str):
            return Outcome(name, classification, 0, "-", "not run", 0.0, False, team, skipped=True)
        return body(scratch, team)

    return scenario


def _server_lost(scratch: Scratch, team: TeamDeployment) -> Outcome:
    """The team's `mlflow server` killed mid-training (PostgreSQL and the artifact store stay) and started again."""
    return outage_mid_training(scratch, "team server lost", team.server.url, team.server.stop,
                               lambda: team.server.start(timeout=180), team.env(scratch))


def _database_lost(scratch: Scratch, team: TeamDeployment) -> Outcome:
    """PostgreSQL stopped under a running `mlflow server` and started again: the server answers errors meanwhile,
    which the training must take for an outage (journal, replay), not for a failed request."""
    database = team.server.database
    return outage_mid_training(scratch, "team database lost", team.server.url,
                               lambda: database.stop(remove=False), database.serve, team.env(scratch))


def _login_refused(scratch: Scratch, team: TeamDeployment) -> Outcome:
    """A wrong password: one line naming the server and what to set, exit 2, nothing created or journaled, and
    the password printed nowhere."""
    tick = time.perf_counter()
    wrong = "wrong-" + secrets.token_urlsafe(9)
    env = team.env(scratch, password=wrong)
    with logged_in(team.env(scratch)):
        runs = RunModel(Tracker(team.server.url))
        before = len(runs.sessions())
    result = run_cli(scratch, "train", *CLI_FLAGS, env=env, timeout=120)
    with logged_in(team.env(scratch)):
        after = len(runs.sessions())
        runs.tracker.close()
    lines = result.stderr.strip().splitlines()
    journal = scratch.root / "mlruns" / "journal"
    problems = [text for text, bad in (
        (f"exit {result.returncode}", result.returncode != 2),
        (f"{len(lines)} lines on stderr", len(lines) != 1),
        ("the password was printed", wrong in result.stdout + result.stderr),
        (f"{after - before} session(s) created", after != before),
        ("journaled", journal.exists() and any(p.is_file() for p in journal.rglob("*"))),
        ("does not say what to set", "MLFLOW_TRACKING_PASSWORD" not in result.stderr)) if bad]
    return Outcome("team login refused", "bad input", 0, "-", f"exit {result.returncode}",
                   time.perf_counter() - tick, not problems, "; ".join(problems))


def team_scenarios() -> dict[str, Callable[[Scratch], Outcome]]:
    return {"team-server-lost": _team("team server lost", "outage (journaled)", _server_lost),
            "team-database-lost": _team("team database lost", "outage (journaled)", _database_lost),
            "team-login-refused": _team("team login refused", "bad input", _login_refused)}
