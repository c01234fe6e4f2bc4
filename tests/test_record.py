"""The MLflow record of a session stays what it was: tags, params, metrics (with their steps) and artifacts
of the reference training, IDs and times aside, equal the record kept in tests/data/session_record.json."""

from __future__ import annotations

import json

import pytest
from session_record import RECORD_FILE, reference_training, session_record


@pytest.mark.slow
def test_a_sessions_record_matches_the_reference_record(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_PLOTS", "on")  # the reference is a default training: its plots are in the record
    uri, session_id = reference_training(tmp_path)
    expected = json.loads(RECORD_FILE.read_text())
    assert session_record(uri, session_id) == expected
