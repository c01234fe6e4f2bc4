"""The house keeps its floors: read from the source of every module (imports inside functions included),
no module imports a higher floor, mlflow is imported by the tracking floor alone, tenacity by recovery
alone, ray by the cluster evaluator's two modules alone, optuna by the search's desk modules alone, no import circle
(counting the imports inside functions and behind ``if TYPE_CHECKING:``, which only hide one), no module over 400
lines, no tag name spelled out anywhere but in the run model, and MLflow's private names and SQL schema nowhere but in
`tracking/mlflow_internals.py`."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
from conftest import ROOT

from btc_ai.tracking.run_model import names

PACKAGE = ROOT / "btc_ai"
FLOORS = ["domain", "training", "tracking", "recovery", "desk", "cli"]  # lowest first
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    """The floor of a btc_ai module: the package root (its version, names loaded on first use) is below
    every floor, `python -m btc_ai` is the face."""
    parts = module.split(".")
    if module == "btc_ai":
        return 0
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else len(FLOORS) - 1


def _modules() -> dict[str, Path]:
    return {_module(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def _tree(path: Path) -> ast.Module:
    """The parsed source of ``path``, once per test process (every check here walks the whole package)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path, module: str, *, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (relative imports resolved); with ``top_level_only``, only those run at
    import time outside ``if TYPE_CHECKING:``."""
    tree = _tree(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level, and inside module-level try/if blocks that are not TYPE_CHECKING
        nodes = []
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", []) +
                             [h for handler in getattr(node, "handlers", []) for h in handler.body])
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def test_no_module_imports_a_higher_floor() -> None:
    modules = _modules()
    assert len(modules) > 40  # the walk really found the package
    wrong = []
    for module, path in modules.items():
        for imported in _imports(path, module):
            if imported in modules and _floor(imported) > _floor(module):
                wrong.append(f"{module} ({FLOORS[_floor(module)]}) imports {imported} ({FLOORS[_floor(imported)]})")
    assert not wrong, "\n".join(wrong)


def test_mlflow_only_in_tracking_and_tenacity_only_in_recovery() -> None:
    wrong = []
    for module, path in _modules().items():
        roots = {name.split(".")[0] for name in _imports(path, module)}
        if "mlflow" in roots and not module.startswith("btc_ai.tracking"):
            wrong.append(f"{module} imports mlflow")
        if "tenacity" in roots and not module.startswith("btc_ai.recovery"):
            wrong.append(f"{module} imports tenacity")
    assert not wrong, "\n".join(wrong)


RAY_MODULES = {"btc_ai.training.cluster.connection", "btc_ai.training.cluster.evaluator",
               "btc_ai.training.cluster.tasks"}
# Optuna is a library like mlflow: the study lives in the desk (the search), its numbers go through the run model
OPTUNA_MODULES = {"btc_ai.desk.search", "btc_ai.desk.search_trial", "btc_ai.desk.search_report"}


def test_ray_only_in_the_cluster_evaluator() -> None:
    users = {module for module, path in _modules().items()
             if "ray" in {name.split(".")[0] for name in _imports(path, module)}}
    assert users == RAY_MODULES


def test_optuna_only_in_the_search_desk() -> None:
    users = {module for module, path in _modules().items()
             if "optuna" in {name.split(".")[0] for name in _imports(path, module)}}
    assert users == OPTUNA_MODULES


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of other btc_ai modules, wherever they sit: at module level, inside a function (put
    there to keep start-up fast) or behind ``if TYPE_CHECKING:`` — a circle through either is still a circle.
    An edge from a module to a package above it is none: `from pkg import submodule` needs pkg half-built."""
    return {m: {i for i in _imports(p, m) if i in modules and i != m and not m.startswith(i + ".")}
            for m, p in modules.items()}


def test_no_import_circle_and_no_module_over_400_lines() -> None:
    modules = _modules()
    graph = import_graph(modules)

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [c for m in modules if (c := cycle_from(m))]
    assert not circles, " -> ".join(circles[0])
    long = {m: n for m, p in modules.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_tag_names_are_spelled_out_only_in_the_run_model() -> None:
    tags = {value for key, value in vars(names).items() if key.startswith("TAG_") and isinstance(value, str)}
    assert {"btc_ai.kind", "btc_ai.status", "mlflow.parentRunId", "btc_ai.repair_rule"} <= tags
    home = PACKAGE / "tracking" / "run_model"
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(home):
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno} {tag}" for tag in tags if tag in node.value]
    assert not wrong, "\n".join(wrong)


# -- MLflow's internals: one door (btc_ai.tracking.mlflow_internals) ----------------------------------------

INTERNALS = "btc_ai.tracking.mlflow_internals"
# a statement on a table (FROM/JOIN/INTO/UPDATE <table>): SQLite's own catalogue is no one's schema
_SQL_VERB = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b")
_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+[\"`\[]?(\{|\w+)")
_SQLITE_OWN = {"sqlite_master", "sqlite_schema", "sqlite_temp_master"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def mlflow_internals_used(source: str) -> list[str]:
    """Where ``source`` touches MLflow's internals: a private name of mlflow (imported, or an attribute of
    something imported from mlflow, also through getattr/setattr), MLflow's store layer (`mlflow.store`,
    not its public API), or SQL on a table (MLflow's schema: btc_ai opens no database of its own)."""
    tree = ast.parse(source)
    bound: set[str] = set()  # names this module binds to mlflow's modules and objects
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mlflow":
                    bound.add(alias.asname or "mlflow")
                    if any(_private(p) for p in alias.name.split(".")) or alias.name.startswith("mlflow.store"):
                        found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "mlflow":
            module = node.module or ""
            names = [alias.name for alias in node.names]
            bound.update(alias.asname or alias.name for alias in node.names)
            if any(_private(p) for p in [*module.split("."), *names]) or module.startswith("mlflow.store") or \
                    (module == "mlflow" and "store" in names):
                found.append(f"{node.lineno}: from {module} import {', '.join(names)}")

    def rooted_in_mlflow(node: ast.AST) -> bool:
        while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id in bound

    def private_access(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return _private(node.attr) and rooted_in_mlflow(node.value)
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 and \
            isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) and \
            _private(node.args[1].value) and rooted_in_mlflow(node.args[0])

    for node in ast.walk(tree):
        if private_access(node):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        text = None
        if isinstance(node, ast.JoinedStr):  # an f-string: a placeholder counts as a table name
            text = "".join(v.value if isinstance(v, ast.Constant) else "{" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        if text and (("PRAGMA table_info" in text) or (_SQL_VERB.search(text) and any(
                table not in _SQLITE_OWN for table in _SQL_TABLE.findall(text)))):
            found.append(f"{node.lineno}: SQL {text[:60]!r}")
    return sorted(set(found), key=lambda f: int(f.split(":")[0]))


def test_mlflow_internals_are_touched_by_one_module_alone() -> None:
    modules = _modules()
    assert INTERNALS in modules
    wrong = [f"{path.relative_to(ROOT)}:{where}" for module, path in modules.items() if module != INTERNALS
             for where in mlflow_internals_used(path.read_text(encoding="utf-8"))]
    assert not wrong, ("MLflow's private names and schema belong in btc_ai/tracking/mlflow_internals.py "
                       "(docs/mlflow-internals.md):\n" + "\n".join(wrong))
    assert mlflow_internals_used(modules[INTERNALS].read_text(encoding="utf-8"))  # the check sees what is there


@pytest.mark.parametrize("source", [
    "from mlflow.store.db.utils import _get_latest_schema_revision",
    "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore",
    "import mlflow.utils._spark_utils",
    "from mlflow.utils import requirements_utils\nrequirements_utils._MODULES_TO_PACKAGES = {}",
    "import mlflow\nx = mlflow.utils.requirements_utils._MODULES_TO_PACKAGES",
    "from mlflow import MlflowClient as C\nC('x')._tracking_client.store",
    "import mlflow as m\ngetattr(m.tracking, '_tracking_service')",
    "db.execute('SELECT value FROM tags WHERE run_uuid = ?', (r,))",
    "db.execute(\"UPDATE runs SET status = 'KILLED'\")",
    "db.execute(f'SELECT {cols} FROM {table}')",
    "db.execute('DELETE FROM latest_metrics')",
    "db.execute('PRAGMA table_info(runs)')",
])
def test_the_internals_check_sees_each_way_in(source: str) -> None:
    assert mlflow_internals_used(source), source


@pytest.mark.parametrize("source", [
    "from mlflow import MlflowClient\nMlflowClient('x').get_run('r')",
    "from mlflow.entities import Metric\nself._client = Metric",
    "db.execute('SELECT name FROM sqlite_master WHERE type = \"table\"')",
    "db.execute('PRAGMA wal_checkpoint(TRUNCATE)')",
    "print('select a run from the list')",
])
def test_the_internals_check_passes_public_use(source: str) -> None:
    assert not mlflow_internals_used(source), source
