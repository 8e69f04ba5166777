"""The workload of a drill: writers and readers per client, every request recorded.

For each client (ours, the baseline), ``writers`` tasks insert rows numbered
``(writer, seq)`` one request at a time, and ``readers`` tasks read; each
pauses ``pause`` seconds between requests. A request is one call of the
client's ``write`` / ``read``, which bounds itself with its deadline
(``asyncio.timeout``) and fills in a :class:`Request`.

Nothing can hang the drill: each request is also guarded from outside
(``deadline + guard`` seconds); a request still running then is cancelled a
second time and recorded as ``hung``. Stopping sets a flag and waits for the
requests in flight, so ``stop()`` returns within about ``deadline + guard``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

COMMITTED, FAILED, UNKNOWN, OK = "committed", "failed", "unknown", "ok"
WRITE, READ = "write", "read"


@dataclass
class Request:
    """One request and what became of it. Times are ``time.monotonic()`` seconds.

    ``outcome``: ``committed`` / ``failed`` (nothing stored: it failed before
    COMMIT was sent) / ``unknown`` (it failed while the COMMIT was in flight)
    for writes; ``ok`` / ``failed`` for reads. ``phase`` is where the request
    was when it failed. ``port`` / ``timeline`` / ``sysid``: the server that
    answered (for a write, the one where the row was inserted).
    """

    client: str
    kind: str
    worker: int
    seq: int
    start: float
    end: float = 0.0
    outcome: str = ""
    phase: str = "start"
    error: str | None = None
    error_type: type[BaseException] | None = field(default=None, repr=False)
    close_error: str | None = None
    message: str = ""
    # When each phase began (monotonic), e.g. {"resolve": t0, "execute": t1, "commit": t2}.
    phases: dict[str, float] = field(default_factory=dict)
    port: int | None = None
    timeline: int | None = None
    sysid: int | None = None
    hung: bool = False
    done_at: float = 0.0  # when COMMIT (or the read) returned, before the cleanup

    def enter(self, phase: str) -> None:
        """Note that the request now enters ``phase`` (for the error and the timings)."""
        self.phase = phase
        self.phases[phase] = time.monotonic()

    @property
    def latency(self) -> float:
        return self.end - self.start

    def landed(self, row: Any) -> None:
        """Record the server of a successful request from its ``(port, timeline, sysid)`` row."""
        self.port, self.timeline, self.sysid = (None if v is None else int(v) for v in row)
        self.done_at = time.monotonic()

    def fail(self, exc: BaseException) -> None:
        """Record ``exc``; a write failing in its commit phase has an unknown outcome."""
        if self.outcome in (COMMITTED, OK):
            self.close_error = error_name(exc)  # the work was done; only the cleanup failed
            return
        self.error = error_name(exc)
        self.error_type = type(exc)
        # The first line only: SQLAlchemy appends the SQL and its parameters.
        self.message = (str(exc).strip().splitlines() or [""])[0][:200]
        if self.kind == WRITE:
            self.outcome = UNKNOWN if self.phase == "commit" else FAILED
        else:
            self.outcome = FAILED


def error_name(exc: BaseException) -> str:
    """``Type`` or ``Type(DriverType)``: the class and the driver's own error class beneath."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "TimeoutError(deadline)"
    inner: BaseException | None = getattr(exc, "orig", None) or exc.__cause__
    seen = 0
    while inner is not None and seen < 4:  # the deepest driver error, e.g. asyncpg's
        deeper = getattr(inner, "__cause__", None)
        if deeper is None:
            break
        inner, seen = deeper, seen + 1
    if inner is not None and type(inner).__name__ != name:
        return f"{name}({type(inner).__name__})"
    return name


class LoopLag:
    """How late the workload's event loop wakes up: a busy client process shows here.

    A task sleeps ``step`` seconds again and again and records by how much
    each sleep overran. Cancel the task to stop it.
    """

    def __init__(self, step: float = 0.01) -> None:
        self.step = step
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.step)
            self.samples.append(time.monotonic() - started - self.step)


class Client(Protocol):
    """What a drill client offers: bounded requests, and a close that reports leaks."""

    name: str

    async def write(self, request: Request) -> None: ...
    async def read(self, request: Request) -> None: ...


class Workload:
    """Runs writers and readers for every client until :meth:`stop`."""

    def __init__(
        self,
        clients: list[Client],
        *,
        writers: int,
        readers: int,
        deadline: float,
        pause: float = 0.01,
        guard: float = 5.0,
    ) -> None:
        self.clients = clients
        self.writers = writers
        self.readers = readers
        self.deadline = deadline
        self.pause = pause
        self.guard = guard
        self.requests: list[Request] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for client in self.clients:
            for number in range(self.writers):
                self._spawn(client, WRITE, number)
            for number in range(self.readers):
                self._spawn(client, READ, number)

    def _spawn(self, client: Client, kind: str, number: int) -> None:
        name = f"drill-{client.name}-{kind}-{number}"
        self._tasks.append(asyncio.create_task(self._work(client, kind, number), name=name))

    async def _work(self, client: Client, kind: str, number: int) -> None:
        seq = 0
        while not self._stopping.is_set():
            seq += 1
            request = Request(client.name, kind, number, seq, time.monotonic())
            self.requests.append(request)
            call = client.write(request) if kind == WRITE else client.read(request)
            try:
                await asyncio.wait_for(call, self.deadline + self.guard)
            except (TimeoutError, asyncio.TimeoutError) as exc:
                request.hung = True
                request.fail(exc)
            except Exception as exc:  # a client must record its own errors; be safe anyway
                request.fail(exc)
            request.end = time.monotonic()
            await asyncio.sleep(self.pause)

    async def stop(self) -> None:
        """Stop starting requests; wait (bounded) for those in flight to end."""
        self._stopping.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.deadline + 2 * self.guard)
            for task in pending:  # cannot happen unless a guard itself hangs; never block
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"drill worker {task.get_name()} crashed") from (
                        task.exception()
                    )
        self._tasks = []
