"""topology's layout: one-way imports, a leaf result module, a CLI apart from the engine.

Static checks over the source (``ast``), TYPE_CHECKING imports included,
plus the frozen view a cluster publishes (no server needed: nothing here
connects).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
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
    assert graph["topology.probing.result"] <= {"topology.errors"}
    for name, imported in graph.items():
        if not _in_cli(name):
            cli = {other for other in imported if _in_cli(other)}
            assert not cli, f"{name} imports the CLI package: {cli}"


def test_role_resolvers_know_the_view_protocol_not_the_cluster() -> None:
    assert "topology.cluster" not in _graph()["topology.view.roles"]


# The parts of the flow, lowest first (docs/concepts.md): a module may import
# from its own part and the parts below it, never from one above.
BASE = {"errors", "hosts", "trace", "otel", "pace", "_within", "_supervise"}
PARTS = ("base", "probing", "view", "dcs", "cluster", "cli")
# Old public paths of modules that moved into a part: re-exports only.
SHIMS = {
    "drivers": "probing.drivers",
    "result": "probing.result",
    "prober": "probing.prober",
    "snapshot": "probing.snapshot",
    "lag": "probing.lag",
    "roles": "view.roles",
    "picker": "view.picker",
    "caught_up": "view.caught_up",
    "patroni": "dcs.patroni",
    "patroni_config": "dcs.patroni_config",
}


def _part(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__init__":
        return "cluster"  # the package's face
    if parts[1] in ("probing", "view", "dcs"):
        return parts[1]
    if parts[1] == "probe":
        return "cli"
    if parts[1] in BASE:
        return "base"
    if parts[1] in SHIMS:
        return "shim"
    return "cluster"  # cluster, resolver, settings, the lifecycle


def test_no_part_imports_from_a_part_above_it() -> None:
    rank = {part: index for index, part in enumerate(PARTS)}
    wrong = []
    for name, imported in _graph().items():
        if _part(name) == "shim":
            continue
        for other in imported:
            if _part(other) == "shim":
                wrong.append(f"{name} imports the old path {other}")
            elif rank[_part(other)] > rank[_part(name)]:
                wrong.append(f"{name} ({_part(name)}) imports {other} ({_part(other)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_each_top_level_module_is_a_face_a_shared_base_or_a_shim() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")}
    whole = {
        "__init__", "cluster", "resolver", "settings", "_settings", "_running", "_lifecycle",
        "_steering",
    }  # fmt: skip
    assert top == BASE | whole | set(SHIMS), sorted(top ^ (BASE | whole | set(SHIMS)))
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == {
        "probing",
        "view",
        "dcs",
        "probe",
    }


@pytest.mark.parametrize(("old", "new"), sorted(SHIMS.items()))
def test_an_old_path_only_re_exports_its_new_home(old: str, new: str) -> None:
    tree = ast.parse((PACKAGE / f"{old}.py").read_text())
    body = [node for node in tree.body if not isinstance(node, ast.Expr)]  # the docstring
    assert body, old
    for node in body:
        assert isinstance(node, ast.ImportFrom), ast.dump(node)
        assert node.module == f"topology.{new}", node.module
    old_module = importlib.import_module(f"topology.{old}")
    new_module = importlib.import_module(f"topology.{new}")
    assert old_module.__all__ == new_module.__all__
    for name in new_module.__all__:
        assert getattr(old_module, name) is getattr(new_module, name)


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


def test_the_cluster_is_composed_of_collaborators_not_mixins() -> None:
    assert ClusterResolver.__mro__ == (ClusterResolver, object)
    cluster = ClusterResolver(["127.0.0.1:1"], user="app")
    loop = cluster._source
    assert loop._owner is cluster._steering
    assert cluster._steering.publisher is cluster._publisher
    assert cluster.view is cluster._publisher.view
    assert cluster._dcs_mode is None
    assert cluster._steering.dcs is None
