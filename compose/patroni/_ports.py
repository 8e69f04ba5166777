"""A block of cluster ports that no other process on this machine is about to take.

Scanning for a free block and then starting the cluster leaves a window in
which another process (a second test worker, a drill, a benchmark, another
session) finds the same block free. So a block is first *reserved*: an
exclusive ``flock`` on a file named after it, held until this process exits
(the kernel drops it even after a SIGKILL), and only then checked for
listeners. Reserved blocks are never handed out twice, by this process
either.

Example::

    base = reserve_base(26400)
    layout = Layout(base_port=base)
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from compose.patroni._config import Layout
from compose.patroni._procs import port_taken

__all__ = ["reserve_base"]

_HELD: list[int] = []  # the lock files' descriptors, open for this process's lifetime


def _lock_dir() -> Path:
    directory = Path(tempfile.gettempdir()) / "ctxdb-port-blocks"
    directory.mkdir(exist_ok=True)
    # Shared by every user that runs the suite here: anyone may create a lock file.
    if directory.stat().st_uid == os.geteuid():
        directory.chmod(0o1777)
    return directory


def reserve_base(first: int, last: int = 32000, step: int = 40) -> int:
    """The first base port in ``first..last`` whose block is free and reserved here.

    ``RuntimeError`` when every block is taken or reserved.
    """
    directory = _lock_dir()
    for base in range(first, last, step):
        fd = os.open(directory / f"{base}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if any(port_taken(port) for port in Layout(base_port=base).ports().values()):
            os.close(fd)  # closing drops the lock
            continue
        _HELD.append(fd)
        return base
    raise RuntimeError(f"no free block of cluster ports in {first}..{last}")
