"""Which code a benchmark or drill figure was measured on.

:func:`measured_commit` names the checked-out commit, marked ``+changes``
when the measured code (``ctxdb/``, ``topology/``, ``compose/``) differs from
it, so a figure says which code produced it. Git runs with a 5 s timeout;
outside a git checkout (an sdist) the answer is None.

Example::

    doc["commit"] = measured_commit()  # "5ffda6f", "5ffda6f+changes" or None
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["measured_commit"]

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ("ctxdb", "topology", "compose")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def measured_commit() -> str | None:
    """HEAD's short hash, ``+changes`` when the measured code differs from it."""
    head = _git("rev-parse", "--short", "HEAD")
    if head is None:
        return None
    changed = _git("status", "--porcelain", "--", *MEASURED)
    return f"{head}+changes" if changed else head
