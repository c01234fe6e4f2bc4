"""`make server` a second time in the same folder: the team server starts on its own run's database and
admin login, not on what an earlier run left in ``basic_auth.ini``. Real PostgreSQL and `mlflow server`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from team import USERS

from btc_ai.tracking.team_server import postgres_missing, team_deployment

pytestmark = pytest.mark.slow


def test_a_second_team_server_in_one_folder_uses_its_own_database_and_admin(tmp_path: Path) -> None:
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    folder = tmp_path / "team-server"
    for _ in range(2):  # each with a new PostgreSQL cluster (a new port) and a new admin password, as make server
        with team_deployment(folder, {"alice": USERS["alice"]}) as server:  # creating alice needs the admin login
            config = (folder / "basic_auth.ini").read_text()
            assert f":{server.database.port}/mlflow_auth" in config and server.admin_password in config
            assert stat.S_IMODE((folder / "basic_auth.ini").stat().st_mode) == 0o600
