"""The host side of a native PostgreSQL server: binaries, the server user, ports, spawning.

PostgreSQL refuses to run as root, so when this runs as root every server
command runs as an unprivileged user (Debian's ``postgres`` when it exists,
otherwise a system user ``ctxdb-pg`` created on first use). Ports are
checked on 127.0.0.1 only. Every helper is blocking and thread-safe;
:func:`spawn` starts a child from one long-lived launcher thread so that a
parent-death signal outlives the caller's thread.

Example::

    bin_dir = find_bin_dir()          # MissingBinariesError when not installed
    port = free_port()
    assert port_is_free(port)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

FALLBACK_SERVER_USER = "ctxdb-pg"
_PR_SET_PDEATHSIG = 1


class MissingBinariesError(RuntimeError):
    """PostgreSQL server binaries are not installed."""


def find_bin_dir() -> Path:
    """Return the directory holding ``initdb`` and ``postgres``.

    ``PG_BIN_DIR`` wins; otherwise the newest ``/usr/lib/postgresql/*/bin``.
    """
    override = os.environ.get("PG_BIN_DIR")
    candidates = [Path(override)] if override else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise MissingBinariesError(
        "PostgreSQL server binaries (initdb, postgres) not found: "
        "install them with 'apt-get install postgresql' or set PG_BIN_DIR"
    )


class UserKwargs(TypedDict, total=False):
    """The ``subprocess`` keyword arguments that run a child as another user."""

    user: int
    group: int
    extra_groups: list[int]


@dataclass(frozen=True)
class ServerUser:
    """The unprivileged account that runs the servers."""

    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> UserKwargs:
        if self.is_self:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        """Hand ``path`` (recursively) to this user."""
        if self.is_self:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)


def server_user() -> ServerUser:
    """Return the account servers run as, creating one when running as root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    name = os.environ.get("PG_SERVER_USER")
    for candidate in ([name] if name else []) + ["postgres", FALLBACK_SERVER_USER]:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(candidate)
            return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", FALLBACK_SERVER_USER],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(FALLBACK_SERVER_USER)
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``.

    SO_REUSEADDR, as the postmaster itself sets it: connections of a server just
    stopped linger in TIME_WAIT and must not make its port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just reported free (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def set_parent_death_signal() -> None:
    # Runs in the child after setuid: the kernel keeps PDEATHSIG across exec.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_LAUNCHER: ThreadPoolExecutor | None = None
_LAUNCHER_LOCK = threading.Lock()


def spawn(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``start`` (a Popen) in a thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so a
    server started from a short-lived thread (``asyncio.to_thread``, a closed
    event loop's executor) would be SIGKILLed as soon as that thread ends.
    """
    global _LAUNCHER
    if threading.current_thread() is threading.main_thread():
        return start()
    with _LAUNCHER_LOCK:
        if _LAUNCHER is None:
            _LAUNCHER = ThreadPoolExecutor(1, thread_name_prefix="pgserver-launcher")
    return _LAUNCHER.submit(start).result(timeout=30)
