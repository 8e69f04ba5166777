"""Processes of a native cluster: spawn, identify, signal and stop them by PID.

A PID alone can be reused by an unrelated process once ours has died, so
every process is recorded as ``(pid, start time in clock ticks)``, read from
``/proc/PID/stat``; a record whose start time no longer matches is dead. This
lets ``down`` run safely long after a crash or a reboot.

Patroni starts the postmaster in a process of its own that is reparented to
init, so a member's PostgreSQL is found through ``postmaster.pid`` and its
backends through their parent PID, never through Patroni's children.

Every function is synchronous and bounded: waits take an explicit timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compose.pg import ServerUser, port_is_free

_PR_SET_PDEATHSIG = 1
# Children this process spawned: kept so they are reaped (no zombie, no
# ResourceWarning from Popen.__del__) once they exit.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


@dataclass(frozen=True)
class Proc:
    """A process identified by PID and start time (immune to PID reuse)."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        fields = _stat_fields(pid)
        if fields is None:
            return None
        return cls(pid, int(fields[19]))

    def alive(self) -> bool:
        """True while the process runs (a zombie or a reused PID is dead)."""
        fields = _stat_fields(self.pid)
        return fields is not None and fields[0] != "Z" and int(fields[19]) == self.start

    def stopped(self) -> bool:
        """True while the process is stopped by a signal (SIGSTOP)."""
        fields = _stat_fields(self.pid)
        return fields is not None and fields[0] == "T" and int(fields[19]) == self.start

    def send(self, signum: int) -> bool:
        """Send ``signum`` if this very process still runs; False when it is gone."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def to_json(self) -> list[int]:
        return [self.pid, self.start]

    @classmethod
    def from_json(cls, value: Iterable[int]) -> Proc:
        pid, start = value
        return cls(int(pid), int(start))


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (one /proc scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def postmaster(data_dir: Path) -> Proc | None:
    """The running postmaster of ``data_dir`` according to its postmaster.pid."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    proc = Proc.of(pid)
    if proc is None or not proc.alive():
        return None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    # A stale postmaster.pid may name a reused PID: require our data directory.
    if not any(arg.rstrip(b"/") == bytes(data_dir).rstrip(b"/") for arg in cmdline):
        return None
    return proc


def postgres_family(data_dir: Path) -> list[Proc]:
    """The postmaster of ``data_dir`` and every backend it forked."""
    head = postmaster(data_dir)
    if head is None:
        return []
    family = [head]
    for pid in children(head.pid):
        proc = Proc.of(pid)
        if proc is not None:
            family.append(proc)
    return family


def _parent_death_signal(signum: int) -> Callable[[], None]:
    def arm() -> None:
        # Runs in the child after setuid; the kernel keeps it across exec.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)

    return arm


def as_user(user: ServerUser) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a child as ``user``."""
    return dict(user.popen_kwargs())


def spawn(
    argv: list[str],
    *,
    user: ServerUser,
    log: Path,
    cwd: Path,
    env: Mapping[str, str],
    die_signal: int | None = None,
) -> Proc:
    """Start ``argv`` as ``user`` in a new session, output appended to ``log``.

    ``die_signal`` (e.g. SIGTERM) is delivered to the process when the thread
    that spawned it exits: use it only from a thread that lives as long as
    the cluster (the main thread of a test session), never from a worker.
    """
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=None if die_signal is None else _parent_death_signal(die_signal),
            **as_user(user),
        )
    _CHILDREN[popen.pid] = popen
    proc = Proc.of(popen.pid)
    if proc is None:  # exited at once; report through its log
        popen.wait(5)
        raise RuntimeError(f"{argv[0]} exited immediately; see {log}")
    return proc


def reap() -> None:
    """Collect the exit status of every child of ours that has exited."""
    for pid, popen in list(_CHILDREN.items()):
        if popen.poll() is not None:
            del _CHILDREN[pid]


def wait_gone(procs: Iterable[Proc], timeout: float) -> list[Proc]:
    """Wait up to ``timeout`` s for ``procs`` to exit; return those still alive."""
    alive = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        reap()
        alive = [p for p in alive if p.alive()]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_now(procs: Iterable[Proc], timeout: float = 10) -> None:
    """SIGKILL ``procs`` at once (a host dying) and wait until they are gone."""
    procs = list(procs)
    for proc in procs:
        proc.send(signal.SIGKILL)
    left = wait_gone(procs, timeout)
    if left:
        raise RuntimeError(f"processes survived SIGKILL: {[p.pid for p in left]}")


def terminate(procs: Iterable[Proc], signum: int, timeout: float) -> None:
    """Resume ``procs``, send ``signum``, SIGKILL whatever is left after ``timeout``."""
    procs = [p for p in procs if p.alive()]
    for proc in procs:
        proc.send(signal.SIGCONT)
        proc.send(signum)
    left = wait_gone(procs, timeout)
    if left:
        kill_now(left)


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when a socket listens on ``host:port`` (TIME_WAIT leftovers do not count)."""
    return not port_is_free(port, host)


def pid_alive(pid: int) -> bool:
    proc = Proc.of(pid)
    return proc is not None and proc.alive()


def thaw(procs: Iterable[Proc]) -> None:
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.send(signal.SIGCONT)
