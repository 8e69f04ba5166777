"""The benchmarks run (``python -m compose.bench --quick``) and write complete output.

Asserts the shape of what ``make bench`` produces, never a timing: every
benchmark is present and did not fail, every table row of the JSON is in
the Markdown, every target has a verdict, every number is finite, and the
plots exist. The quick mode takes some tens of seconds (one cluster, tiny
counts), so it runs once for the whole module.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compose.bench.run import BENCHMARKS
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.cluster

ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def bench_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "compose.bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return []


def test_json_has_every_benchmark_complete(bench_output: Path) -> None:
    doc = json.loads((bench_output / "performance.json").read_text())
    assert doc["meta"]["quick"] is True
    assert set(doc["benchmarks"]) == set(BENCHMARKS)
    for name, result in doc["benchmarks"].items():
        assert "error" not in result, (name, result.get("error"))
        assert result["rows"], name
        assert all(len(row) == len(result["columns"]) for row in result["rows"]), name
        assert result["verdicts"], name
        for verdict in result["verdicts"]:
            assert isinstance(verdict["met"], bool)
        values = numbers(result["data"])
        assert values, name
        assert all(math.isfinite(v) for v in values), name


def test_markdown_has_every_row_and_target(bench_output: Path) -> None:
    doc = json.loads((bench_output / "performance.json").read_text())
    md = (bench_output / "performance.md").read_text()
    for result in doc["benchmarks"].values():
        assert f"## {result['title']}" in md
        assert "| " + " | ".join(result["columns"]) + " |" in md
        for row in result["rows"]:
            assert "| " + " | ".join(str(c) for c in row) + " |" in md
        for verdict in result["verdicts"]:
            assert verdict["target"] in md


def test_plots_are_written(bench_output: Path) -> None:
    doc = json.loads((bench_output / "performance.json").read_text())
    plots = [r["plot"] for r in doc["benchmarks"].values() if r.get("plot")]
    assert plots
    for plot in plots:
        assert (bench_output / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
