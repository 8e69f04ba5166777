"""ctxdb is a drop-in for context-async-sqlalchemy 2.1.9, checked against the release itself.

The release's files are vendored, unchanged, in
``tests/data/context_async_sqlalchemy-2.1.9`` (see its ``SOURCE.md``).

* The public surface of upstream's package (every module path, every public
  name, every parameter name, kind and default, async or not) is read from
  its source with ``ast`` and compared with ctxdb's under the renamed path.
  A future rename or a dropped keyword in ctxdb fails here.
* Upstream's own ``examples/`` and ``tests/`` are copied to a temporary
  directory, renamed with the shell command of ``docs/migration.md`` and
  nothing else, and run with pytest, in a process of their own, against a
  real PostgreSQL started by our fixtures. Only a root ``conftest.py`` is
  added (``tests/support/upstream_conftest.py``): it points their
  hard-coded server address at ours and forbids importing the upstream
  package, which is also installed in this venv.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncSession

from compose.pg import PostgresNode
from ctxdb import get_db_session_from_context, put_db_session_to_context, run_in_new_ctx
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
UPSTREAM = ROOT / "tests" / "data" / "context_async_sqlalchemy-2.1.9"
PACKAGE = "context_async_sqlalchemy"
MIGRATION = ROOT / "docs" / "migration.md"
REDIRECT_CONFTEST = ROOT / "tests" / "support" / "upstream_conftest.py"
SUITE_TIMEOUT = 240
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
_NO_DEFAULT = object()


# --- upstream's public surface, from its source ---------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    kind: inspect._ParameterKind
    default: Any = _NO_DEFAULT


def _module_name(path: Path) -> str:
    parts = path.relative_to(UPSTREAM).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def upstream_modules() -> dict[str, ast.Module]:
    files = sorted((UPSTREAM / PACKAGE).rglob("*.py"))
    return {_module_name(path): ast.parse(path.read_text()) for path in files}


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


def _bound_names(tree: ast.Module) -> dict[str, ast.AST]:
    """Names a module defines at top level (not the ones it imports), public ones only."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return {name: node for name, node in names.items() if not name.startswith("_")}


def upstream_surface() -> list[tuple[str, str, ast.AST | None]]:
    """(module, name, definition) for every public name of every upstream module.

    A name a package re-exports through ``__all__`` carries the definition
    from the module that defines it.
    """
    modules = upstream_modules()
    defined = {name: node for tree in modules.values() for name, node in _bound_names(tree).items()}
    surface = []
    for module, tree in modules.items():
        names = set(_bound_names(tree)) | set(_declared_all(tree) or [])
        surface += [(module, name, defined.get(name)) for name in sorted(names)]
    return surface


def _ast_params(func: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[Param]:
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [_NO_DEFAULT] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [Param(a.arg, kind, d) for a, d in zip(positional, defaults, strict=True)]
    if args.vararg:
        params.append(Param(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        default = _NO_DEFAULT if d is None else ast.literal_eval(d)
        params.append(Param(a.arg, inspect.Parameter.KEYWORD_ONLY, default))
    if args.kwarg:
        params.append(Param(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return params[1:] if method else params


def _ast_style(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    decorators = {ast.unparse(d).rsplit(".", 1)[-1] for d in func.decorator_list}
    if "asynccontextmanager" in decorators:
        return "async context manager"
    return "coroutine function" if isinstance(func, ast.AsyncFunctionDef) else "function"


# --- comparing with ctxdb ---------------------------------------------------------------
def _style(obj: Any) -> str:
    if inspect.iscoroutinefunction(obj):
        return "coroutine function"
    if inspect.isasyncgenfunction(getattr(obj, "__wrapped__", None)):
        return "async context manager"
    return "function"


def _signature_problems(where: str, upstream: list[Param], ours: inspect.Signature) -> list[str]:
    """Every call upstream's signature allows must work the same on ours."""
    params = list(ours.parameters.values())
    by_name = {p.name: p for p in params}
    positional = [p for p in params if p.kind <= inspect.Parameter.POSITIONAL_OR_KEYWORD]
    problems = []
    for index, want in enumerate(upstream):
        if want.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if not any(p.kind == want.kind for p in params):
                problems.append(f"{where}: no {want.kind.description} parameter")
            continue
        have = by_name.get(want.name)
        if have is None:
            problems.append(f"{where}: no parameter {want.name!r}")
            continue
        if want.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
            # upstream's positional parameters come first: index is the position
            if have.kind != want.kind or positional.index(have) != index:
                problems.append(f"{where}: {want.name!r} is not positional argument {index}")
        elif have.kind not in (want.kind, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            problems.append(f"{where}: {want.name!r} cannot be passed by keyword")
        if want.default is not _NO_DEFAULT and have.default != want.default:
            problems.append(f"{where}: {want.name!r} defaults to {have.default!r}")
    known = {p.name for p in upstream}
    problems += [
        f"{where}: extra parameter {p.name!r} has no default"
        for p in params
        if p.name not in known
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    return problems


def _self_attributes(tree: ast.AST) -> set[str]:
    """Public attributes assigned as ``self.x = ...`` anywhere in ``tree``."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and not node.attr.startswith("_")
    }


def _function_problems(
    where: str, node: ast.FunctionDef | ast.AsyncFunctionDef, obj: Any, method: bool = False
) -> list[str]:
    if _style(obj) != _ast_style(node):
        return [f"{where}: a {_style(obj)}, upstream's is a {_ast_style(node)}"]
    signature = inspect.signature(obj)
    if method:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return _signature_problems(where, _ast_params(node, method=method), signature)


def _assigned_attributes(cls: type) -> set[str]:
    """Instance attributes that ``cls`` or one of its bases assigns in its source."""
    found: set[str] = set()
    for klass in cls.__mro__[:-1]:
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # built in, or no source file
            continue
        found |= _self_attributes(ast.parse(textwrap.dedent(source)))
    return found


def _class_problems(where: str, node: ast.ClassDef, cls: Any) -> list[str]:
    if not inspect.isclass(cls):
        return [f"{where}: not a class"]
    problems = []
    for item in node.body:
        if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if item.name.startswith("_") and item.name not in ("__init__", "__call__"):
            continue
        method = getattr(cls, item.name, None)
        if method is None:
            problems.append(f"{where}.{item.name}: missing")
            continue
        problems += _function_problems(f"{where}.{item.name}", item, method, method=True)
        if item.name == "__init__":
            ours = _assigned_attributes(cls)
            problems += [
                f"{where}: no attribute {attr!r}"
                for attr in sorted(_self_attributes(item))
                if not hasattr(cls, attr) and attr not in ours
            ]
    return problems


SURFACE = upstream_surface()


@pytest.mark.parametrize(
    ("module", "name", "definition"),
    SURFACE,
    ids=[f"{module}:{name}" for module, name, _ in SURFACE],
)
def test_every_upstream_name_is_importable_with_the_same_parameters(
    module: str, name: str, definition: ast.AST | None
) -> None:
    """``from context_async_sqlalchemy.X import Y`` works as ``from ctxdb.X import Y``."""
    ours = importlib.import_module(module.replace(PACKAGE, "ctxdb", 1))
    assert hasattr(ours, name), f"ctxdb{module[len(PACKAGE) :]} has no {name!r}"
    obj = getattr(ours, name)
    where = f"{ours.__name__}:{name}"
    problems: list[str] = []
    if isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        problems = _function_problems(where, definition, obj)
    elif isinstance(definition, ast.ClassDef):
        problems = _class_problems(where, definition, obj)
    assert problems == []


@pytest.mark.parametrize(
    "module", sorted(m for m, tree in upstream_modules().items() if _declared_all(tree) is not None)
)
def test_star_imports_give_at_least_upstreams_names(module: str) -> None:
    declared = _declared_all(upstream_modules()[module]) or []
    ours = importlib.import_module(module.replace(PACKAGE, "ctxdb", 1))
    assert set(declared) - set(getattr(ours, "__all__", ())) == set()


def test_the_surface_read_from_upstream_is_complete() -> None:
    """The parser sees what the release has: guards the comparison against reading nothing."""
    modules = {module for module, _, _ in SURFACE}
    assert modules == set(upstream_modules())
    defined = [d for _, _, d in SURFACE if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert {d.name for d in defined} >= {"put_db_session_to_context", "run_in_new_ctx"}


async def test_put_db_session_to_context_takes_upstreams_keyword_and_ours() -> None:
    key = "a DBConnect's context_key"  # a DBConnect or its key: the key needs no server

    async def put(**kwargs: Any) -> AsyncSession | None:
        put_db_session_to_context(**kwargs)
        return get_db_session_from_context(key)

    for keyword in ("connection", "connect"):
        session = AsyncSession()
        assert await run_in_new_ctx(put, **{keyword: key, "session": session}) is session
    with pytest.raises(TypeError, match="both connection= and connect="):
        await run_in_new_ctx(put, connection=key, connect=key, session=AsyncSession())


# --- upstream's own examples and tests, renamed, on a real server -----------------------
def documented_rename() -> str:
    """The one shell block of docs/migration.md that renames the imports."""
    blocks = [b for b in _SH_BLOCK.findall(MIGRATION.read_text()) if "sed " in b]
    assert len(blocks) == 1, "docs/migration.md must show exactly one rename command"
    return blocks[0]


def upstream_schema() -> str:
    """The table upstream's CI creates before its tests (its workflow's psql -c)."""
    workflow = yaml.safe_load((UPSTREAM / ".github" / "workflows" / "tests.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    script = next(step["run"] for step in steps if "psql" in step.get("run", ""))
    match = re.search(r'-c "(.*?)"', script, re.S)
    assert match is not None, "upstream's workflow no longer creates its schema with psql -c"
    return match.group(1)


@pytest.fixture
def upstream_database(pg_server: PostgresNode) -> Iterator[str]:
    """A database of its own on pg_server with upstream's schema; its URL."""
    name = f"upstream_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            with psycopg.connect(pg_server.conninfo(name), autocommit=True) as conn:
                conn.execute(upstream_schema().encode())
            yield pg_server.url("postgresql", name)
        finally:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def _renamed_copy(where: Path) -> Path:
    tree = where / "upstream"
    tree.mkdir()
    for part in ("examples", "tests"):
        shutil.copytree(UPSTREAM / part, tree / part)
    shutil.copy(UPSTREAM / "pyproject.toml", tree)  # its pytest settings (asyncio_mode=auto)
    subprocess.run(
        ["bash", "-eo", "pipefail", "-c", documented_rename()],
        cwd=tree,
        check=True,
        timeout=60,
    )
    # After the rename, never before: this file names the upstream package.
    shutil.copy(REDIRECT_CONFTEST, tree / "conftest.py")
    return tree


def test_upstream_examples_and_tests_pass_after_the_documented_rename(
    tmp_path: Path, upstream_database: str
) -> None:
    tree = _renamed_copy(tmp_path)
    left = [p for p in tree.rglob("*.py") if PACKAGE in p.read_text() and p.name != "conftest.py"]
    assert left == [], "the documented rename left upstream's name in these files"
    report = tmp_path / "junit.xml"
    env = {**os.environ, "CTXDB_UPSTREAM_PG_URL": upstream_database}
    env.pop("PYTEST_ADDOPTS", None)  # our options are not upstream's: run it as its CI does
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0
    assert counts == {**counts, "failures": 0, "errors": 0, "skipped": 0}
    ran = {case.get("classname") for case in suite.iter("testcase")}
    modules = {
        ".".join(p.relative_to(UPSTREAM).with_suffix("").parts)
        for part in ("examples", "tests")
        for p in (UPSTREAM / part).rglob("test_*.py")
    }
    assert modules - ran == set(), "some of upstream's test modules did not run"
