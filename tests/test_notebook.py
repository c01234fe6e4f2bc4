"""notebooks/compare_attempts.ipynb executed headless against a store made here; any cell error fails."""

from __future__ import annotations

import sys
import time

import pytest
from conftest import ROOT, TINY

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = ROOT / "notebooks" / "compare_attempts.ipynb"

pytestmark = pytest.mark.slow  # a training, then a kernel


@pytest.fixture
def store_with_a_session(tmp_path, monkeypatch) -> tuple[str, str]:
    """A store in tmp_path with one session of two attempts (one recoverable error) on the built-in data."""
    from btc_ai.recovery import TrainingRecoverySystem
    from btc_ai.tracking.tracker import Tracker
    from btc_ai.training.faults import inject_fault
    from btc_ai.training.loop import train_model

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    tracker = Tracker(uri)
    system = TrainingRecoverySystem(checkpoint_dir=tmp_path / "ck", max_retries=2, tracker=tracker,
                                    sleep=lambda s: None)
    model, metrics, _, _ = system.start_training_with_recovery(
        inject_fault(train_model, "ValueError@3:LEARNING_RATE"), {**TINY, "LEARNING_RATE": 0.05}, None)
    assert model is not None, metrics.get("error")
    return uri, system.session_run_id


def test_compare_attempts_notebook_runs_clean_against_a_fresh_store(store_with_a_session, monkeypatch) -> None:
    uri, session_id = store_with_a_session
    # the kernel inherits this process's environment: its store, and the session as the parameter
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BTC_AI_SESSION", session_id)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit it cleared"
    started = time.perf_counter()
    # kernel "python3" is ipykernel's own spec (argv "python"), which jupyter_client starts with sys.executable
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first cell that fails
    elapsed = time.perf_counter() - started
    print(f"notebook executed in {elapsed:.1f} s")

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    # the kernel runs this interpreter (the venv's) and this checkout
    assert f"btc_ai 0.1.0 from {ROOT / 'btc_ai'} (kernel: {sys.executable})" in text, text
    assert f"session {session_id}" in text and "2 attempts" in text
    tables = [out["data"]["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    attempts = next(html for html in tables if "recoverable_error" in html)
    assert "success" in attempts and "clamp_offending_value" in attempts and "ValueError: injected" in attempts
    assert attempts.split("<tbody>")[1].count("<tr>") == 2
    repairs = next(html for html in tables if "triggered by" in html)
    assert "clamp_offending_value" in repairs and "LEARNING_RATE" in repairs and "<td>0.05</td>" in repairs
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2  # the fitness curves and the model's equity curve
    assert "on the validation span (logged at training:" in text
    assert elapsed < 60, f"the notebook took {elapsed:.0f} s (target: under 60 s)"


def test_the_notebook_against_no_store_says_so_in_one_line_and_creates_nothing(tmp_path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("BTC_AI_SESSION", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert f"no session: there is no btc_ai session on {uri}" in text
    assert not (tmp_path / "mlruns").exists()  # nothing created
