"""The MLflow UI in a real browser: `mlflow server` over a store that a short training with one injected
recoverable error just wrote, driven by Playwright with the system's Chromium (nothing downloads a browser).

Checks what a user looks for after a failure: the session with its attempts and the repair nested under it,
the attempts compared on ``fitness/mean``, and the artifacts (checkpoints, error report, model, history,
plots). A screenshot after each step goes to ``test-output/ui/`` (also on failure). Run it with ``make e2e``;
``make test`` runs it too where Chromium is installed and says why it skips where it is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, btc_ai_cmd, cli_env, tiny_flags

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("ui_e2e")]  # a training, `mlflow server` and a
# browser, once: in one test process

SHOTS = ROOT / "test-output" / "ui"
NO_CHROMIUM = "Chromium not installed: apt-get install chromium (CI installs it); run make e2e"
TIMEOUT_MS = 10_000  # the UI gets this long to show each thing it is asked for
# the tiny config with the preset's checkpoint time floor and noise table
TRAIN = ["train", *tiny_flags(EPISODES=8, CHECKPOINT_MIN_SECONDS=None, NOISE_TABLE_SIZE=None)]
FAULT = "ValueError@3"  # recoverable: attempt 1 fails in generation 3, a repair run, attempt 2 finishes


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if path is None:
        pytest.skip(NO_CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not importable: make setup installs it (the dev extra); run make e2e")
    return path


@dataclass
class Store:
    root: Path
    experiment_id: str
    session: Any
    attempts: list[Any]  # by attempt number
    repair: Any
    client: Any
    n_runs: int
    url: str  # the mlflow server's

    @property
    def failed(self) -> Any:
        (failed,) = [a for a in self.attempts if a.data.tags["btc_ai.outcome"] == "recoverable_error"]
        return failed

    def artifacts(self, run: Any, path: str | None = None) -> set[str]:
        return {a.path.rsplit("/", 1)[-1] for a in self.client.list_artifacts(run.info.run_id, path)}


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def store(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A real short training through the CLI with one injected recoverable error, and `mlflow server` over its
    store (started as soon as the training has created the store: the two start-ups overlap)."""
    root = tmp_path_factory.mktemp("ui")
    env = {**cli_env(root), "BTC_AI_FAULT": FAULT, "BTC_AI_PLOTS": "on"}  # the UI shows the session's plots
    training = subprocess.Popen(btc_ai_cmd(*TRAIN), cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    out = []
    assert training.stdout is not None
    for line in training.stdout:
        out.append(line)
        if line.startswith("session run "):
            break
    server = _start_server(root)
    try:
        rest, err = training.communicate(timeout=180)
        assert training.returncode == 0, "".join(out) + rest + err
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("btc-ai")
        runs = client.search_runs([experiment.experiment_id])
        by_kind: dict[str, list[Any]] = {}
        for run in runs:
            by_kind.setdefault(run.data.tags["btc_ai.kind"], []).append(run)
        (session,) = by_kind["session"]
        (repair,) = by_kind["repair"]
        attempts = sorted(by_kind["attempt"], key=lambda r: int(r.data.tags["btc_ai.attempt"]))
        assert len(attempts) == 2
        url = _wait_for_health(server, root)
        yield Store(root, experiment.experiment_id, session, attempts, repair, client, len(runs), url)
    finally:
        if training.poll() is None:
            training.kill()
            training.wait()
        _stop_server(server)


@pytest.fixture(scope="module")
def server(store: Store) -> str:
    return store.url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(root: Path) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1 over the store in ``root``, with the store arguments of `make ui`."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers: faster start, fewer processes
    with open(root / "mlflow-server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", "sqlite:///mlruns/mlflow.db",
             "--default-artifact-root", "./mlruns/artifacts", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return proc


def _wait_for_health(proc: subprocess.Popen, root: Path, seconds: float = 60) -> str:
    url: str = proc.url  # type: ignore[attr-defined]
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (root / "mlflow-server.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"mlflow server did not answer {url}/health (exit code {proc.poll()}):\n{tail}")
        time.sleep(0.2)


def _stop_server(proc: subprocess.Popen) -> None:
    """The server and the uvicorn worker it started: its own process group, SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def page(chromium: str, server: str, pytestconfig: pytest.Config) -> Iterator[Any]:
    """One headless Chromium page for the module (the UI keeps its view settings in localStorage)."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(TIMEOUT_MS)
            # the context's timeout covers actions only: every expect() took Playwright's own 5 s, which a
            # metric page (a plotly chart) overran on two busy cores (test_attempts_compare_on_fitness_mean)
            expect.set_options(timeout=TIMEOUT_MS)
            page = context.new_page()
            _settle(page, server)
            yield page
        finally:
            browser.close()
    shots = sorted(p.name for p in SHOTS.glob("*.png"))
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():  # shown even with output captured
        print(f"\nUI screenshots in {SHOTS}/: {', '.join(shots) or 'none'}")


@contextmanager
def shot(page: Any, name: str) -> Iterator[None]:
    """A screenshot of the step, whether it passed or not."""
    path = SHOTS / f"{name}.png"
    try:
        yield
    except BaseException:
        with suppress(Exception):  # the step's own error is the one to report
            page.screenshot(path=str(path))
            print(f"screenshot of the failure: {path}")
        raise
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


def _settle(page: Any, server: str) -> None:
    """First visit: put the UI in its model-training views and close the assistant panel that opens itself
    (a third of the page in every screenshot otherwise). Both are remembered in the browser's localStorage."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    _open(page, f"{server}/#/experiments")
    model_training = page.get_by_role("button", name="Model training", exact=True)
    if model_training.count():  # MLflow 3 opens GenAI views first; this is a model-training experiment
        model_training.click()
    close = page.get_by_role("button", name="Close", exact=True)
    try:
        close.wait_for(timeout=5000)
        close.click()
    except PlaywrightTimeout:  # cosmetic only: an MLflow without the panel
        pass


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_role("link", name="btc-ai", exact=True).first.wait_for()  # the experiment's name: the app is up


def _in_view(header: Any) -> bool:
    """A column header inside the grid's visible part (rendered is not enough: the grid renders columns
    beyond its right edge too)."""
    return bool(header.count()) and header.first.evaluate(
        "h => { const r = h.getBoundingClientRect(), v = h.closest('.ag-header-viewport').getBoundingClientRect();"
        " return r.width > 0 && r.left >= v.left - 1 && r.right <= v.right + 1; }")


def _name_cell(page: Any, link: Any) -> Any:
    return page.get_by_role("row").filter(has=link).get_by_role("gridcell").filter(has=link)


def test_session_shows_its_attempts_and_the_repair_nested_under_it(page, server, store) -> None:
    from playwright.sync_api import expect

    _open(page, f"{server}/#/experiments/{store.experiment_id}/runs")

    def link(run: Any) -> Any:
        return page.get_by_role("link", name=run.info.run_name, exact=True)

    session, failed = link(store.session), link(store.failed)
    with shot(page, "01-runs-collapsed"):
        expect(session).to_be_visible()
        expect(session).to_have_attribute("href", re.compile(f"/runs/{store.session.info.run_id}$"))
        for attempt in store.attempts:  # children, not top-level rows: hidden until the session is expanded
            expect(link(attempt)).to_have_count(0)
        expect(page.get_by_text(f"{store.n_runs} matching runs", exact=True)).to_be_visible()
    with shot(page, "02-runs-nested"):
        _name_cell(page, session).get_by_role("button").click()  # the expand (+) button of the session row
        for attempt in store.attempts:
            expect(link(attempt)).to_be_visible()
            expect(link(attempt)).to_have_attribute("href", re.compile(f"/runs/{attempt.info.run_id}$"))
        expect(link(store.repair)).to_have_count(0)  # under the failed attempt, not under the session
        _name_cell(page, failed).get_by_role("button").click()
        expect(link(store.repair)).to_be_visible()
        expect(link(store.repair)).to_have_attribute("href", re.compile(f"/runs/{store.repair.info.run_id}$"))
        x = {name: link(run).bounding_box()["x"]
             for name, run in [("session", store.session), ("attempt", store.failed), ("repair", store.repair)]}
        assert x["session"] < x["attempt"] < x["repair"], f"not indented as a tree: {x}"


def test_attempts_compare_on_fitness_mean(page, server, store) -> None:
    from playwright.sync_api import expect

    ids = [a.info.run_id for a in store.attempts]
    runs, experiments = json.dumps(ids, separators=(",", ":")), json.dumps([store.experiment_id])
    _open(page, f"{server}/#/compare-runs?runs={runs}&experiments={experiments}")
    with shot(page, "03-compare-attempts"):
        expect(page.get_by_role("heading", name=f"Comparing {len(ids)} Runs from 1 Experiment")).to_be_visible()
        for attempt in store.attempts:
            expect(page.get_by_role("link", name=attempt.info.run_id, exact=True)).to_be_visible()
        metric = page.get_by_role("link", name="fitness/mean", exact=True)  # the Metrics table's row
        expect(metric).to_be_visible()
        metric.scroll_into_view_if_needed()
    with shot(page, "04-compare-fitness-mean"):
        metric.click()  # the metric across the compared runs: a chart by step and a latest/min/max table
        for attempt in store.attempts:
            expect(page.get_by_text(f"{attempt.info.run_name} (fitness/mean)", exact=True)).to_be_visible()
            last = max(store.client.get_metric_history(attempt.info.run_id, "fitness/mean"), key=lambda m: m.step)
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=attempt.info.run_name, exact=True))
            latest = row.get_by_role("cell").nth(1)
            expect(latest).to_contain_text(f"(step={last.step})")
            assert float(latest.inner_text().split()[0]) == pytest.approx(last.value, rel=1e-6)


def _artifact(page: Any, name: str) -> Any:
    return page.get_by_test_id("artifact-tree-node").and_(page.get_by_label(name, exact=True))


def _listed(artifact: Any) -> None:
    """Shown in the artifact tree, not only present: the tree animates folders open (children clipped until
    done) and re-runs it when a file is selected, so wait until the node is wholly in view."""
    from playwright.sync_api import expect

    expect(artifact).to_be_in_viewport(ratio=1)


def test_failed_attempt_lists_its_error_report_and_checkpoints(page, server, store) -> None:
    from playwright.sync_api import expect

    failed = store.failed
    checkpoints = store.artifacts(failed, "checkpoints")
    assert any(re.fullmatch(r"(emergency-)?gen-\d{6}\.pt", c) for c in checkpoints), checkpoints
    _open(page, f"{server}/#/experiments/{store.experiment_id}/runs/{failed.info.run_id}/artifacts")
    names = ["checkpoints", *sorted(checkpoints), "error_report.json", "error_report.md"]
    with shot(page, "05-failed-attempt-artifacts"):
        expect(page.get_by_text(failed.info.run_name, exact=True).first).to_be_visible()
        _listed(_artifact(page, "checkpoints"))
        _artifact(page, "checkpoints").click()
        _artifact(page, "error_report.md").click()  # the preview renders the markdown report
        error = failed.data.tags["btc_ai.error_type"]
        expect(page.get_by_role("heading", name=f"Attempt 1 failed: {error}")).to_be_visible()
        for name in names:  # gen-NNNNNN.pt and emergency-gen-NNNNNN.pt inside checkpoints/
            _listed(_artifact(page, name))


def test_session_lists_history_and_plots(page, server, store) -> None:
    from playwright.sync_api import expect

    session = store.session
    _open(page, f"{server}/#/experiments/{store.experiment_id}/runs/{session.info.run_id}/artifacts")
    with shot(page, "06-session-artifacts"):
        expect(page.get_by_text(session.info.run_name, exact=True).first).to_be_visible()
        _artifact(page, "performance_history.csv").click()  # previewed as a table
        expect(page.get_by_role("columnheader", name="fitness/mean")).to_be_visible()
        _listed(_artifact(page, "performance_history.csv"))
    assert "models" not in store.artifacts(session)  # the model is a logged model of its own (the Models tab)
    plots = store.artifacts(session, "plots")
    with shot(page, "07-session-plots"):
        _listed(_artifact(page, "plots"))
        _artifact(page, "plots").click()
        _artifact(page, "fitness_history.png").click()
        expect(page.get_by_role("img", name=re.compile(r"fitness_history\.png$"))).to_be_visible()
        for name in sorted(plots):
            _listed(_artifact(page, name))
    assert {"fitness_history.png", "equity_curve.png"} <= plots, plots


def test_models_tab_lists_the_best_policy_with_its_test_figures(page, server, store) -> None:
    from playwright.sync_api import expect

    model_id = store.session.data.tags["btc_ai.model_id"]
    model = store.client.get_logged_model(model_id)
    figures = {m.key: m.value for m in model.metrics}
    assert {"test/total_return", "test/sharpe", "best/validation_sharpe"} <= set(figures)
    _open(page, f"{server}/#/experiments/{store.experiment_id}/models")
    listed = page.get_by_role("link", name=model.name, exact=True).first
    with shot(page, "08-models-tab"):
        expect(listed).to_be_visible()
    with shot(page, "08b-models-tab-test-figures"):
        # the figures are columns of the list, right of the model's attributes: walked to with the arrow keys
        # from the model's Status cell, as a user does (the grid scrolls its header and rows together)
        page.locator('[role="gridcell"][col-id="status"]').first.click()
        headers = {key: page.get_by_role("columnheader", name=key, exact=True) for key in ("test/sharpe",
                                                                                         "test/total_return")}
        for _ in range(200):
            if all(_in_view(header) for header in headers.values()):
                break
            page.keyboard.press("ArrowRight")
        for key, header in headers.items():
            assert _in_view(header), f"{key} is not a column of the Models tab's list"
            column = header.get_attribute("aria-colindex")
            cell = page.get_by_role("row").filter(has=page.locator(f'[role="gridcell"][aria-colindex="{column}"]'))
            shown = cell.locator(f'[role="gridcell"][aria-colindex="{column}"]').first.inner_text()
            assert float(shown) == pytest.approx(figures[key], rel=1e-12), (key, shown)
    page.get_by_role("link", name=model.name, exact=True).first.click()
    with shot(page, "09-logged-model"):
        expect(page.get_by_text(model_id).first).to_be_visible()
        for key in ("test/total_return", "test/sharpe"):
            expect(page.get_by_text(key, exact=True).first).to_be_visible()
