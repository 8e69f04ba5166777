"""The drill timeline as a PNG: writes per 100 ms, our two clients beside the baseline.

One row per scenario, one column per client (ours, ours with Patroni's DCS,
the baseline). Commits are drawn upwards
(green), writes that failed before COMMIT (red) and those whose outcome is
unknown (orange) downwards. Vertical lines: the fault (t = 0), the moment
the independent poller saw the new primary accept writes, the thaw. Reads
the JSON-ready metrics only, so a plot can be redrawn from ``--json``.
matplotlib (the ``dev`` extra) is imported here only, with the Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compose.drill._metrics import BIN, CLIENTS

LABELS = {
    "ours": "ctxdb + topology (SQL probes)",
    "ours_dcs": "ctxdb + topology, Patroni DCS",
    "baseline": "baseline: multi-host URL + pre-ping",
}


def plot(scenarios: list[dict[str, Any]], path: Path) -> None:
    """Draw every scenario into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(scenarios)
    fig, axes = plt.subplots(
        rows, len(CLIENTS), figsize=(16, 2.3 * rows + 0.6), squeeze=False, sharex="row"
    )
    for row, s in enumerate(scenarios):
        top = max(max(s["clients"][c]["bins"]["committed"], default=0) for c in CLIENTS) or 1
        bottom = max(
            max(a + b for a, b in zip(s["clients"][c]["bins"]["failed"],
                                      s["clients"][c]["bins"]["unknown"], strict=True))
            if s["clients"][c]["bins"]["failed"] else 0
            for c in CLIENTS
        ) or 1  # fmt: skip
        for col, client in enumerate(CLIENTS):
            ax = axes[row][col]
            _draw(ax, s, client)
            ax.set_ylim(-bottom * 1.15, top * 1.15)
            if row == 0:
                ax.set_title(LABELS[client], fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{s['scenario']}\nwrites / 100 ms", fontsize=9)
            if row == rows - 1:
                ax.set_xlabel("seconds since the fault")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw(ax: Any, s: dict[str, Any], client: str) -> None:
    bins = s["clients"][client]["bins"]
    first = bins["first_bin"][0]
    xs = [(first + i) * BIN for i in range(len(bins["committed"]))]
    ax.bar(xs, bins["committed"], width=BIN, align="edge", color="#2e7d32", label="committed")
    failed = [-v for v in bins["failed"]]
    unknown = [-v for v in bins["unknown"]]
    ax.bar(xs, failed, width=BIN, align="edge", color="#c62828", label="failed (nothing stored)")
    ax.bar(xs, unknown, width=BIN, align="edge", bottom=failed, color="#ef6c00",
           label="outcome unknown")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.5)
    ax.axvline(0, color="#c62828", linestyle="-", linewidth=1.2, label="fault")
    if s["new_primary_writable"] is not None:
        ax.axvline(s["new_primary_writable"], color="#1565c0", linestyle="--", linewidth=1.2,
                   label="new primary writable (poller)")  # fmt: skip
    first_commit = s["clients"][client]["writes"]["first_commit_on_new_primary"]
    if first_commit is not None:
        ax.axvline(first_commit, color="#2e7d32", linestyle=":", linewidth=1.2,
                   label="first commit on the new primary")  # fmt: skip
    for mark in s["marks"]:
        if mark["kind"] == "thaw" and mark["t"] is not None:
            ax.axvline(mark["t"], color="#6a1b9a", linestyle="-.", linewidth=1, label="thaw")
    writes = s["clients"][client]["writes"]
    note = f"unavail. {_short(writes['unavailability'])}, follow {_short(writes['follow'])}"
    ax.text(0.99, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.tick_params(labelsize=8)


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"
