"""The README and the docs/ pages against the code: every relative link and anchor resolves, every module path
(`btc_ai.x.y`), repo file path, `btc-ai` command and flag and `make` target they name exists, the README's
house table is the developer page's, and the site builds with `mkdocs build --strict`.

Docs rot silently: a module moves and a page still names it (`btc_ai.synthetic`, `btc_ai.data` and
`DESIGN.md` were named long after they were gone). These checks read the text, not the rendering, so they
run in the fast suite; the site build itself is slow."""

from __future__ import annotations

import argparse
import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PACKAGE = ROOT / "btc_ai"

FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
MODULE_PATH = re.compile(r"\bbtc_ai(?:\.[A-Za-z_]\w*)+")
# a path inside the repository: from a top-level folder, or a module path relative to btc_ai/
REPO_PATH = re.compile(r"(?<![\w./-])((?:btc_ai|tests|benchmarks|docs|notebooks|\.ci)/[\w./-]*"
                       r"|(?:domain|training|tracking|recovery|desk|cli)/[\w/-]*\.py)")
SHOUTED_FILE = re.compile(r"(?<![\w./-])([A-Z][A-Z_-]+\.md)\b")  # README.md, DESIGN.md: root files
COMMAND = re.compile(r"(?<![\w-])btc-ai\s+([a-z][a-z-]*)((?:\s+[^\s#]+)*)")
MAKE = re.compile(r"(?<![\w-])make\s+([a-z][\w-]*)")


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def prose(text: str) -> str:
    """The text without fenced code and code spans: where a link is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def code(text: str) -> list[str]:
    """Each line of fenced code and each code span: where a command, path or module name is written."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()[1:-1]]
    return lines + CODE_SPAN.findall(FENCE.sub("", text))


def heading_text(raw: str) -> str:
    return re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", raw)


def mkdocs_slug(text: str) -> str:
    """Python-Markdown's toc slug, which MkDocs uses for the site's anchors."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def github_slug(text: str) -> str:
    """GitHub's anchor for a heading, which the README's links use where GitHub renders it."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@functools.cache
def anchors(page: Path, slug_name: str) -> frozenset[str]:
    slug = mkdocs_slug if slug_name == "mkdocs" else github_slug
    found: set[str] = set()
    for _, raw in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base, n = slug(heading_text(raw)), 0
        name = base
        while name in found:  # a repeated heading gets a suffix: _1 on MkDocs, -1 on GitHub
            n += 1
            name = f"{base}_{n}" if slug_name == "mkdocs" else f"{base}-{n}"
        found.add(name)
    return frozenset(found)


def broken_links(page: Path) -> list[str]:
    problems = []
    slug_name = "github" if page.parent == ROOT else "mkdocs"
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{page_id(page)}: link {target!r}: {path} does not exist")
        elif page.parent == DOCS and not resolved.is_relative_to(DOCS):
            problems.append(f"{page_id(page)}: link {target!r} leaves docs/ (the site cannot follow it)")
        elif anchor and anchor not in anchors(resolved, slug_name):
            problems.append(f"{page_id(page)}: link {target!r}: no heading #{anchor} in {resolved.name}")
    return problems


@functools.cache
def defined_names(module: Path) -> frozenset[str]:
    """Top-level names of a module (and its classes' members, as Class.member), plus its string literals:
    `btc_ai/__init__` exports its names lazily from a dict of strings."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names.update(f"{node.name}.{member}" for member in _class_members(node))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    names.update(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return frozenset(names)


def _class_members(node: ast.ClassDef) -> list[str]:
    members = []
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members.append(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.append(item.target.id)
        elif isinstance(item, ast.Assign):
            members += [t.id for t in item.targets if isinstance(t, ast.Name)]
    return members


@functools.cache
def tag_names() -> frozenset[str]:
    """`btc_ai.kind`, `btc_ai.lease.owner`, ...: tag names look like module paths; the run model holds them."""
    names = defined_names(PACKAGE / "tracking" / "run_model" / "names.py")
    return frozenset(n for n in names if n.startswith("btc_ai."))


def module_path_exists(dotted: str) -> bool:
    """A module or package, a name defined in one (`btc_ai.recovery.state.RecoveryState.from_run`), or a tag."""
    if dotted in tag_names() or any(tag.startswith(dotted + ".") or (tag.endswith(".") and dotted.startswith(tag))
                                    for tag in tag_names()):  # a tag, a tag's prefix, or one of a prefix's tags
        return True
    parts = dotted.split(".")[1:]
    where = PACKAGE
    for i, part in enumerate(parts):
        if (where / part / "__init__.py").exists():
            where = where / part
            continue
        module = where / f"{part}.py"
        if module.exists():
            rest = parts[i + 1:]
            return not rest or ".".join(rest[:2]) in defined_names(module) or rest[0] in defined_names(module)
        return ".".join(parts[i:i + 2]) in defined_names(where / "__init__.py") or part in defined_names(
            where / "__init__.py")
    return True


def stale_names(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    problems = [f"{page_id(page)}: module path {name} names nothing in btc_ai (moved or renamed?)"
                for name in sorted(set(MODULE_PATH.findall(text))) if not module_path_exists(name)]
    for snippet in code(text):
        for path in REPO_PATH.findall(snippet):
            path = path.rstrip(".,:;")
            if "<" in path or "*" in path or "..." in path:
                continue
            full = ROOT / path if path.split("/")[0] in {"btc_ai", "tests", "benchmarks", "docs", "notebooks",
                                                         ".ci"} else PACKAGE / path
            if not full.exists():
                problems.append(f"{page_id(page)}: file {path} does not exist")
        problems += [f"{page_id(page)}: file {name} does not exist at the repository's root"
                     for name in SHOUTED_FILE.findall(snippet) if not (ROOT / name).exists()]
    return problems


@functools.cache
def cli_options() -> dict[str, frozenset[str]]:
    """Each command of `btc-ai` with every flag it (or a subcommand of it, as `data fetch`) takes."""
    from btc_ai.cli.main import build_parser

    def options(parser: argparse.ArgumentParser) -> set[str]:
        found = set()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    found |= options(child)
        return found

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: frozenset(options(child)) for name, child in commands.choices.items()}


@functools.cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return frozenset(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def unknown_commands(page: Path) -> list[str]:
    problems = []
    for snippet in code(page.read_text(encoding="utf-8")):
        for command, rest in COMMAND.findall(snippet):
            if command not in cli_options():
                problems.append(f"{page_id(page)}: `btc-ai {command}`: no such command ({', '.join(cli_options())})")
                continue
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                if flag not in cli_options()[command] and flag != "--version":
                    problems.append(f"{page_id(page)}: `btc-ai {command} {flag}`: {command} takes no {flag}")
        problems += [f"{page_id(page)}: `make {target}`: no such target in the Makefile"
                     for target in MAKE.findall(snippet) if target not in make_targets()]
    return problems


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_modules_and_files_exist(page):
    assert stale_names(page) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_commands_flags_and_make_targets_exist(page):
    assert unknown_commands(page) == []


CODE = sorted(path for folder in ("btc_ai", "tests", "benchmarks") for path in (ROOT / folder).rglob("*.py")
              if path.name != Path(__file__).name)  # this file names what is gone on purpose


def test_code_names_no_module_or_shouted_file_that_is_gone():
    """Docstrings and comments point at modules and files too (`btc_ai.data`, `DESIGN.md` outlived theirs)."""
    gone = []
    for source in [*CODE, ROOT / "Makefile", ROOT / "pyproject.toml", ROOT / ".ci" / "run"]:
        text = source.read_text(encoding="utf-8")
        gone += [f"{page_id(source)}: {name}" for name in sorted(set(MODULE_PATH.findall(text)))
                 if not module_path_exists(name)]
        gone += [f"{page_id(source)}: {name}" for name in SHOUTED_FILE.findall(text) if not (ROOT / name).exists()]
    assert gone == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    """Each check fails on the kind of reference it exists for (else a passing suite proves nothing)."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [x](missing.md), [y](#no-such-heading), [z](#title).\n"
                    "`btc_ai.synthetic.default_candles()` and `btc_ai.data.load_candles`, `btc_ai.kind`,\n"
                    "`btc_ai.domain.synthetic.default_candles`, `DESIGN.md`, `btc_ai/domain/nothing.py`,\n"
                    "`tracking/tracker.py`, `btc-ai frobnicate`, `btc-ai report RUN --nope`, `make nothing`.\n",
                    encoding="utf-8")
    found = broken_links(page) + stale_names(page) + unknown_commands(page)
    assert [problem.split(": ", 1)[1].split(" (")[0] for problem in found] == [
        "link 'missing.md': missing.md does not exist",
        "link '#no-such-heading': no heading #no-such-heading in page.md",
        "module path btc_ai.data.load_candles names nothing in btc_ai",
        "module path btc_ai.synthetic.default_candles names nothing in btc_ai",
        "file DESIGN.md does not exist at the repository's root",
        "file btc_ai/domain/nothing.py does not exist",
        "`btc-ai frobnicate`: no such command",
        "`btc-ai report --nope`: report takes no --nope",
        "`make nothing`: no such target in the Makefile",
    ]


def test_readme_house_table_is_the_developer_pages():
    def table(path: Path) -> list[str]:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("| ")
                and line.split("|")[1].strip() in {"floor", "domain", "training", "tracking", "recovery", "desk", "face"}]

    assert table(ROOT / "README.md") and table(ROOT / "README.md") == table(DOCS / "development.md")


def test_readme_stays_a_first_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.slow  # seconds of MkDocs; CI runs `make docs` anyway, the text checks above stay fast
@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is not installed (pip install -e '.[dev]')")
def test_site_builds_without_a_warning(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
