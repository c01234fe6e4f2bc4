"""The run model is the only writer: read from the source of every module, no code outside the tracking floor's
writer modules writes a run, tag, param, metric or artifact itself (it calls the run model's typed methods),
and no write names a tag, param, metric or artifact with a string literal (the names live in
`btc_ai/tracking/run_model/names.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "btc_ai"
# the store's own writes (MLflow's client and fluent API, `Tracker`'s): only the writer modules call them
WRITES = frozenset({
    "create_run", "start_run", "end_run", "set_terminated", "update_run", "set_status", "delete_run",
    "set_tag", "set_tags", "delete_tag", "delete_tags", "log_param", "log_params", "log_metric", "log_metrics",
    "log_values", "log_batch", "log_artifact", "log_artifacts", "log_dict", "log_text", "log_table_csv",
    "log_figure", "log_image", "log_table", "log_input", "log_inputs", "log_model", "delete_artifact",
    "register_model", "create_registered_model", "create_model_version", "set_registered_model_alias",
    "delete_registered_model_alias", "set_model_version_tag", "set_registered_model_tag",
})
RUN_MODEL = "btc_ai.tracking.run_model"
WRITER_MODULES = frozenset({  # below the run model: the store, its journaled operations, the attempt's writer
    "btc_ai.tracking.tracker", "btc_ai.tracking.operations", "btc_ai.tracking.writer", "btc_ai.tracking.attempt_logger",
    "btc_ai.tracking.registry", "btc_ai.tracking.logged_model",  # the journaled log_model write: the model, its version
})
NAMES_MODULE = f"{RUN_MODEL}.names"
NAME_ARGUMENT = {"set_tag": 1, "log_param": 1, "log_metric": 1, "delete_tag": 1,  # (run, name, value)
                 "log_dict": 2, "log_text": 2, "log_table_csv": 2, "log_artifact": 2, "log_artifacts": 2}
NAME_KEYWORDS = {"key", "artifact_file", "artifact_path"}
# store writes whose dicts are keyed by names (the other writes' dicts hold an artifact's content, an operation's args)
NAME_DICTS = {"create_run", "start_run", "set_tags", "log_params", "log_values", "log_batch"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _spelled_out(node: ast.AST | None) -> bool:
    """A name written as a literal: a string, or an f-string with literal text in it."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.Constant) for v in node.values)


def _receiver(call: ast.Call) -> str:
    return ast.unparse(call.func.value) if isinstance(call.func, ast.Attribute) else ""


def violations(source: str, module: str) -> list[str]:
    """Every write of ``module`` (its source) that bypasses the run model, or names what it writes literally."""
    if module == NAMES_MODULE:
        return []
    writer = module in WRITER_MODULES or module == RUN_MODEL or module.startswith(RUN_MODEL + ".")
    found = []
    tree = ast.parse(source)
    if not writer:  # called, or handed on as a bound method (``pool.submit(tracker.set_tags, ...)``)
        found += [f"{module}:{node.lineno} {ast.unparse(node)}: writes to the store itself (add a typed method to "
                  "the run model)" for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in WRITES]
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        method, where = call.func.attr, f"{module}:{call.lineno} {ast.unparse(call)[:90]}"
        store_write = method in WRITES
        at = NAME_ARGUMENT.get(method)
        named: list[ast.AST] = list(call.args[at:at + 1]) if store_write and at is not None else []
        named += [k.value for k in call.keywords if store_write and k.arg in NAME_KEYWORDS]
        # the dicts of a store write keyed by names, and of any call on the run model (``runs.x``, ``self.runs.x``)
        if method in NAME_DICTS or _receiver(call).split(".")[-1].endswith("runs"):
            named += _dict_keys(call)
        if any(_spelled_out(n) for n in named):
            found.append(f"{where}: a name spelled out (put it in {NAMES_MODULE})")
    return found


def _dict_keys(call: ast.Call) -> list[ast.AST]:
    keys: list[ast.AST] = []
    for value in [*call.args, *(k.value for k in call.keywords)]:
        if isinstance(value, ast.Dict):
            keys += [k for k in value.keys if k is not None]
        elif isinstance(value, ast.DictComp):
            keys.append(value.key)
    return keys


def test_only_the_run_model_writes_and_every_name_it_writes_is_in_names_py() -> None:
    modules = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    assert len(modules) > 40 and set(modules) >= WRITER_MODULES  # the walk found the package and the writers
    wrong = [v for module, path in modules.items() for v in violations(path.read_text(encoding="utf-8"), module)]
    assert not wrong, "\n".join(wrong)


def test_every_writer_module_still_writes() -> None:
    """The list of writers stays the list of modules that write (one that stops writing leaves it)."""
    def writes(module: str) -> bool:
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        return any(isinstance(node, ast.Attribute) and node.attr in WRITES for node in ast.walk(tree))

    assert [m for m in WRITER_MODULES if not writes(m)] == []


def test_the_check_finds_each_kind_of_violation() -> None:
    desk, writer = "btc_ai.desk.backtest", "btc_ai.tracking.run_model.runs"
    assert violations("runs.tracker.log_metric(run_id, METRIC, 1.0)", desk)  # a direct write, even with a constant
    assert violations("client.create_run(experiment_id)", desk)
    assert violations("pool.submit(runs.tracker.set_tags, run_id, tags)", desk)  # a write handed on
    assert violations("self.runs.tracker.log_dict(run_id, report, ARTIFACT)", "btc_ai.recovery.session")
    assert violations("self.tracker.set_tags(run_id, {'btc_ai.kind': kind})", writer)  # a literal tag name
    assert violations("self.tracker.log_values(run_id, {f'fold/{rule}_return': r for rule, r in x})", writer)
    assert violations("self.tracker.log_dict(run_id, data, 'backtest.json')", writer)  # a literal artifact name
    assert violations("self.tracker.log_artifact(run_id, path, artifact_path='plots')", writer)
    assert violations("runs.close_session(run_id, summary={'attempts': 2.0})", desk)  # a name handed to the model
    # writes through the run model with names from names.py, and a literal value, are what it should be
    assert not violations("runs.record_history(run_id, rows)\nruns.set_alias(v, a, {VERSION_TAG_PROMOTED_BY: 'x'})",
                          desk)
    assert not violations("self.tracker.set_tags(run_id, {TAG_STATUS: 'running', checkpoint_tag(stem): sha})", writer)
    assert not violations("self.tracker.log_values(run_id, {METRIC_WALK_FORWARD_PREFIX + k: v for k, v in x})",
                          writer)
