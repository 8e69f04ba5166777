"""topology's layout: one-way imports, a leaf result module, a CLI apart from the engine.

Static checks over the source (``ast``), TYPE_CHECKING imports included,
plus the frozen view a cluster publishes (no server needed: nothing here
connects).
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import topology
from topology import ClusterResolver
from topology.view import ClusterView

PACKAGE = Path(topology.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The topology modules ``path`` imports, wherever the import stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name in known}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, known) - {name} for name, path in known.items()}


def test_no_import_circle_in_topology() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            assert state.get(other) != 1, " -> ".join([*trail, name, other])
            if other not in state:
                visit(other, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def _in_cli(name: str) -> bool:
    return name == "topology.probe" or name.startswith("topology.probe.")


def test_results_are_a_leaf_and_the_engine_never_needs_the_cli() -> None:
    graph = _graph()
    assert graph["topology.result"] <= {"topology.errors"}
    for name, imported in graph.items():
        if not _in_cli(name):
            cli = {other for other in imported if _in_cli(other)}
            assert not cli, f"{name} imports the CLI package: {cli}"


def test_role_resolvers_know_the_view_protocol_not_the_cluster() -> None:
    assert "topology.cluster" not in _graph()["topology.roles"]


def test_importing_topology_loads_no_cli_module() -> None:
    code = (
        "import sys, topology\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['topology', 'probe']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_a_failure_report_publishes_a_new_frozen_view() -> None:
    cluster = ClusterResolver(["127.0.0.1:1", "127.0.0.1:2"], user="app")
    before = cluster.view
    assert isinstance(before, ClusterView)
    assert before.suspects == frozenset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.primary = "127.0.0.1:1"  # type: ignore[misc]
    cluster.report_failure("127.0.0.1:2")  # not started: handled at once, on this thread
    after = cluster.view
    assert after is not before
    assert before.suspects == frozenset()
    assert after.suspects == {"127.0.0.1:2"}
    assert after.snapshot is before.snapshot
    assert cluster.master.candidates() == ()  # read through the view: no replica known yet
