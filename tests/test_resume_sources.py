"""A resume trains what its session recorded, never a preset: a session interrupted while it is being created
is closed with its config on the store (killed before that, it is refused in one line), and a local
checkpoint path resumes the session it was written for (or is refused in one line)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

import pytest
from conftest import TINY, session_runs, store_uri, tiny_flags

from btc_ai.recovery import TrainingRecoverySystem
from btc_ai.recovery.signals import Interrupted, graceful_interrupts, interrupts_held
from btc_ai.recovery.state import RecoveryState
from btc_ai.tracking.run_model import BUILTIN_DATA, KIND_SESSION, RunModel
from btc_ai.tracking.tracker import Tracker


def test_a_signal_while_held_waits_for_the_block_to_end_then_interrupts() -> None:
    done = []
    with pytest.raises(Interrupted) as caught, graceful_interrupts(), interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a handler would have run by now
        done.append("the block ran to its end")
    assert done and caught.value.exit_code == 130


class _InterruptedAfterCreate(Tracker):
    """A real store on which a real SIGINT arrives the moment the session run exists, before its config."""

    def create_run(self, kind: str, **kwargs: Any) -> str:
        run_id = super().create_run(kind, **kwargs)
        if kind == KIND_SESSION:
            os.kill(os.getpid(), signal.SIGINT)
        return run_id


def test_ctrl_c_just_after_the_session_run_is_created_closes_it_with_its_config(tmp_path, candles) -> None:
    tracker = _InterruptedAfterCreate(store_uri(tmp_path))
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", tracker=tracker)
    with pytest.raises(Interrupted), graceful_interrupts(system.stop_event):
        system.train(config=system.validated({**TINY, "HIDDEN_SIZE": 12}), df=candles)
    runs = RunModel(tracker)
    session = runs.session(system.session_run_id)
    assert session.params["HIDDEN_SIZE"] == "12"  # on the store before the interrupt took effect
    assert (session.run_status, session.status) == ("KILLED", "interrupted") and not runs.attempts(session)
    state = RecoveryState.from_run(session.run_id, tracker)
    assert state.config.HIDDEN_SIZE == 12 and state.training_state is None  # a resume trains what was asked for


def test_a_session_killed_before_its_config_was_stored_is_refused_in_one_line(run_main, here) -> None:
    # what a SIGKILL between the creation of the session run and its params leaves
    session_id = RunModel(Tracker(store_uri(here))).open_session(
        name="killed", bucket="Scalping", data_source=BUILTIN_DATA, lease_owner="", heartbeat=0)
    code, out, err = run_main("resume", session_id)
    assert code == 2 and "no recorded config" in err and "btc-ai train" in err, err
    assert len(err.strip().splitlines()) == 1 and "gen " not in out


@pytest.mark.slow
def test_resume_of_a_local_checkpoint_path_resumes_its_session_with_its_config(run_main, here, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_FAULT", "PermissionError@5")  # unrecoverable: the training fails after gen-4
    code, _, _ = run_main("train", *tiny_flags(HIDDEN_SIZE=12))
    assert code == 1
    monkeypatch.delenv("BTC_AI_FAULT")
    (session,) = session_runs(store_uri(here))
    session_id = session.info.run_id
    path = f"checkpoints/{session_id}/gen-000004.pt"

    code, out, err = run_main("resume", path)
    assert code == 0, err
    assert f"checkpoint of session {session_id}" in out
    (again,) = session_runs(store_uri(here))  # the same session, no new one
    runs = RunModel(Tracker(store_uri(here)))
    _first, second = runs.attempts(again.info.run_id)
    assert second.params["HIDDEN_SIZE"] == "12" and second.start_generation == 4  # its config, not the preset's

    shutil.copy(path, here / "mine.pt")  # out of its session's folder: which session is unknown
    code, _, err = run_main("resume", "mine.pt")
    assert code == 2 and "not a session run ID" in err and len(err.strip().splitlines()) == 1

    # the Python API starts a new session from a local state: with the config the checkpoint holds
    result = TrainingRecoverySystem(checkpoint_dir=here / "ck", tracking_uri=store_uri(here)).train(
        recovery_state=str(here / "mine.pt"))
    assert result.outcome == "completed", result.error
    assert runs.session(result.session_run_id).params["HIDDEN_SIZE"] == "12"
