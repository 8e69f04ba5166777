"""The directory a replicated cluster lives in, and the sweep of those a killed run left.

Each cluster owns one ``ctxdb-replicated-*`` directory holding its nodes'
directories and an ``owner.json`` naming the Python process that built it.
When that process was SIGKILLed, its servers died with it (PR_SET_PDEATHSIG)
but its directories stayed: the next build removes every such directory whose
owner is gone, after SIGKILLing any postmaster still running from it. A
directory whose owner runs (another test session) is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

PREFIX = "ctxdb-replicated-"
OWNER_FILE = "owner.json"
# A directory without an owner file yet may be one being created right now.
_UNCLAIMED_GRACE_S = 600


def default_parent() -> Path | None:
    """``$CTXDB_REPLICATED_DIR``, else /dev/shm when writable with 1 GiB free (a
    data directory copy takes ~0.05 s there against ~0.35 s on this kind of VM
    disk), else None (the temp directory)."""
    if override := os.environ.get("CTXDB_REPLICATED_DIR"):
        return Path(override)
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        stat = os.statvfs(shm)
        if os.access(shm, os.W_OK) and stat.f_bavail * stat.f_frsize >= 1 << 30:
            return shm
    return None


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def claim(parent: Path | None) -> Path:
    """Create a cluster directory owned by this process (traversable by the server user)."""
    work = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    work.chmod(0o711)
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid())}
    (work / OWNER_FILE).write_text(json.dumps(owner))
    return work


def _owner_alive(work: Path) -> bool:
    try:
        owner = json.loads((work / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return time.time() - work.stat().st_mtime < _UNCLAIMED_GRACE_S
    return bool(_start_time(int(owner["pid"])) == owner["start"])


def _kill_postmasters(work: Path) -> None:
    for pidfile in work.glob("*/data/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(pidfile.parent).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)


def sweep_stale(parent: Path | None) -> list[Path]:
    """Remove the cluster directories under ``parent`` whose owner process is gone."""
    removed = []
    for work in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        with contextlib.suppress(OSError):
            if work.is_dir() and not _owner_alive(work):
                _kill_postmasters(work)
                shutil.rmtree(work, ignore_errors=True)
                removed.append(work)
    return removed
