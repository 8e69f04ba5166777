"""The size limits of issue 24 over both packages: no module above 400 lines, no function above 50.

It stands at the top of tests/, not under tests/ctxdb/ or tests/topology/ (which
mirror one package each), because it is one rule for the source of both
packages. Static: it reads the files (``ast``), imports nothing of them and
needs no server.

A function's length runs from its ``def`` line to its last line: decorators
are not counted, its docstring and any nested function are. A failure lists
every offender, longest first, so one run shows all that is left to split.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO_ROOT

PACKAGES = ("ctxdb", "topology")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py"))


def _shown(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length)`` of every function and method in ``path``."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert child.end_lineno is not None
                length = child.end_lineno - child.lineno + 1
                found.append((name.rstrip("."), child.lineno, length))
            visit(child, name)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return found


def _listed(offenders: list[tuple[int, str]], limit: int, what: str) -> str:
    rows = "\n".join(f"  {length:4d}  {where}" for length, where in sorted(offenders, reverse=True))
    return f"{len(offenders)} {what} over {limit} lines:\n{rows}"


def test_the_limits_see_both_packages() -> None:
    shown = {_shown(path).split("/")[0] for path in _sources()}
    assert shown == set(PACKAGES)


def test_no_module_is_over_400_lines() -> None:
    offenders = []
    for path in _sources():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            offenders.append((lines, _shown(path)))
    assert not offenders, _listed(offenders, MAX_MODULE_LINES, "modules")


def test_no_function_is_over_50_lines() -> None:
    offenders = []
    for path in _sources():
        for name, line, length in _functions(path):
            if length > MAX_FUNCTION_LINES:
                offenders.append((length, f"{_shown(path)}:{line} {name}"))
    assert not offenders, _listed(offenders, MAX_FUNCTION_LINES, "functions")
