"""The README's failover figures, rendered from ``docs/performance.json``.

``make bench`` rewrites the block between the two markers in README.md;
``tests/docs/test_docs.py`` checks that the README holds exactly what this
renders from the committed JSON, so no figure there is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

START = "<!-- figures: rendered from docs/performance.json by make bench; do not edit -->"
END = "<!-- /figures -->"
PLAIN = "asyncpg multi-host"


def _ms(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _worst(summary: dict[str, Any]) -> str:
    """The worst follow time, or how many followed at all within the cap."""
    if summary["followed"] < summary["n"]:
        return f"{summary['followed']}/{summary['n']} followed within {summary['cap_s']:g} s"
    return _ms(summary["max_ms"])


def figures(doc: dict[str, Any]) -> str:
    """The Markdown table (with its markers) for the README, from a performance.json."""
    bench = doc["benchmarks"]
    follow, load = bench["follow"]["data"], bench["load"]["data"]["median"]
    ours, plain = follow["stopped/ours"], follow[f"stopped/{PLAIN}"]
    frozen = follow["frozen/ours"]
    hot = bench["hotpath"]["data"]["10"]["ratio"]["median"]
    rows = [
        ("stopped primary, median follow time", _ms(ours["median_ms"]), _ms(plain["median_ms"])),
        ("stopped primary, worst follow time", _ms(ours["max_ms"]), _ms(plain["max_ms"])),
        ("frozen primary, worst follow time", _worst(frozen), _worst(follow[f"frozen/{PLAIN}"])),
        (
            "1,000 requests through a failover: retried",
            f"{load['ours']['retried']:.0f}",
            f"{load['baseline']['retried']:.0f}",
        ),
        (
            "1,000 requests through a failover: p50 latency",
            _ms(load["ours"]["p50_ms"]),
            _ms(load["baseline"]["p50_ms"]),
        ),
        ("hot path at concurrency 10 (ratio to hand-written)", f"{hot:.3f}x", "1.000x"),
    ]
    lines = [
        START,
        "",
        f"| measure | ours | plain SQLAlchemy + {PLAIN} URL |",
        "| --- | --- | --- |",
        *(f"| {what} | {a} | {b} |" for what, a, b in rows),
        "",
        f"Measured side by side in one run of `make bench` ({doc['meta'].get('date', '')});"
        " details and method in [docs/performance.md](docs/performance.md).",
        "",
        END,
    ]
    return "\n".join(lines)


def block_of(readme: str) -> str:
    """The figures block as it stands in ``readme`` (markers included)."""
    start, end = readme.index(START), readme.index(END) + len(END)
    return readme[start:end]


def rewrite(readme_path: Path, json_path: Path) -> None:
    """Replace the README's figures block with one rendered from ``json_path``."""
    readme = readme_path.read_text()
    doc = json.loads(json_path.read_text())
    readme_path.write_text(readme.replace(block_of(readme), figures(doc)))
