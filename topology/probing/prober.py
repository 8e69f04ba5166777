"""Probe one host: one persistent connection, one query, one bounded result.

The probe engine: :class:`HostProber` is what the cluster's background loop
and the diagnostics CLI (:mod:`topology.probe`) both use; :func:`probe_once`
probes a list of hosts once. The drivers are in :mod:`topology.probing.drivers`, the
query and its :class:`~topology.probing.result.ProbeResult` in :mod:`topology.probing.result`.

Timeouts: :meth:`HostProber.probe` returns within ``timeout`` seconds plus a
small grace (:data:`topology.probing._deadline.ABANDON_GRACE`), whatever the
host does. Every await runs in a child task watched with that deadline; when
the deadline passes, the connection is *terminated* (its socket torn down
without waiting for the server) and the child task cancelled, never politely
closed: a frozen host would never answer a polite close.

Retries: tenacity retries transient failures (a reused connection found
dead, too many connections, server starting up or shutting down) with a
short exponential backoff, only while the next attempt still fits in the
deadline. Permanent failures (authentication, a missing database, TLS or
configuration errors) are never retried; the host is then held (not
contacted again) for ``hold`` seconds, doubling up to ``max_hold``, and
probes return the last failure meanwhile.

Identity: the probe reads the host's system identifier too; a login that may
not run ``pg_control_system()`` (revoked by an administrator) makes the
prober log one WARNING and probe without it from then on (the result's
``system_identifier`` is then None), rather than fail the host.

Concurrency: one probe at a time per HostProber (the resolver's rounds never
overlap); :meth:`terminate` may be called at any time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_exponential

from topology.errors import ConfigurationError, ProbeError, Reason, classify, redact
from topology.errors import _sqlstate as sqlstate
from topology.hosts import ConnectOptions, HostAddress
from topology.probing._deadline import (
    StopAfter,
    StopAtDeadline,
    abandon,
    bounded,
    close_within,
    where,
)
from topology.probing._knock import knock
from topology.probing._probe_login import (
    IDENTITY,
    connect_denied,
    for_probes,
    lacking_grants,
    missing_grant,
)
from topology.probing._watch import ARM_STATEMENT, watch_statement
from topology.probing.drivers import ProbeConnection, ProbeDriver, get_driver
from topology.probing.result import (
    ANONYMOUS_PROBE_QUERY,
    PROBE_QUERY,
    ProbeResult,
    result_from_row,
)

__all__ = ["HostProber", "probe_once"]

# Named after the package the engine lived in: log filters set up for it keep working.
log = logging.getLogger("topology.probe")
T = TypeVar("T")
# A watch failing so says the host is unwell (as its probe would), not that it refuses watches.
_UNWELL = frozenset({Reason.CONNECTION_LOST, Reason.CONNECTION_REFUSED, Reason.TIMED_OUT})
# serialization_failure (a recovery conflict on a standby), query_canceled (statement_timeout).
_ENDS_A_WATCH = frozenset({"40001", "57014"})


async def _watched(conn: ProbeConnection, statement: str) -> None:
    """Run the watch; the server cancelling it (40001, 57014) only ends it early."""
    try:
        await conn.execute(statement)
    except Exception as exc:
        if sqlstate(exc) not in _ENDS_A_WATCH:
            raise


class HostProber:
    """Probes one host; see the module docstring for timeouts and retries."""

    def __init__(
        self,
        address: HostAddress,
        options: ConnectOptions,
        driver: str | ProbeDriver = "asyncpg",
        *,
        timeout: float = 1.0,
        retries: int = 2,
        backoff: float = 0.01,
        hold: float = 5.0,
        max_hold: float = 60.0,
    ) -> None:
        if not timeout > 0:
            raise ConfigurationError(f"probe timeout must be > 0 seconds, not {timeout!r}")
        if retries < 0:
            raise ConfigurationError(f"retries must be >= 0, not {retries!r}")
        self.address = address
        self.host = str(address)
        self.options = for_probes(options)  # the probe login, when the options name one
        self.driver = get_driver(driver)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.hold = hold
        self.max_hold = max_hold
        self.connects = 0  # connection attempts made, for stats and tests
        self._conn: ProbeConnection | None = None
        self._held_until = 0.0
        self._hold_next = hold
        self._last_failure: ProbeResult | None = None
        self._reused_lost = False
        self._query = PROBE_QUERY
        self._logged_unexpected = False
        self._watchable = True
        self._armed: ProbeConnection | None = None  # the connection set up for watches
        self._refused = False  # the last connect was refused: knock first

    def __repr__(self) -> str:
        state = "connected" if self._conn is not None else "idle"
        return f"HostProber({self.host}, {self.driver.name}, {state})"

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def held(self) -> bool:
        """True while a permanent failure keeps this host from being contacted."""
        return time.monotonic() < self._held_until

    async def probe(self, retries: int | None = None) -> ProbeResult:
        """Probe once (with bounded retries); never raises except on cancellation.

        A row that is not what PostgreSQL answers is the host's
        ``Reason.MALFORMED_ANSWER``; any other exception that escaped the
        driver's wrapping (a driver's bug) is classified like a driver error
        (typically ``Reason.UNEXPECTED``) and logged once per prober at
        WARNING with its traceback.

        ``retries`` overrides the prober's own count for this probe (0: one
        attempt, as the probe loop asks during a failover, when it probes
        again within milliseconds anyway). A pooled connection found dead is
        always replaced once at once, whatever the count.
        """
        if self.held and self._last_failure is not None:
            return self._last_failure
        deadline = time.monotonic() + self.timeout
        attempts = 0
        allowed = (self.retries if retries is None else retries) + 1
        retrying = AsyncRetrying(
            stop=StopAfter(allowed, lambda: self._reused_lost) | StopAtDeadline(deadline),
            wait=self._wait,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, ProbeError) and exc.reason.retryable
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await self._attempt(deadline, attempts)
        except ProbeError as error:
            return self._failed(error, attempts)
        except Exception as exc:
            # Never raise: a bug of a driver (or of ours) is this host's error,
            # not the end of the round that probes every other host.
            return self._failed(self._unexpected(exc), attempts)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _unexpected(self, exc: Exception) -> ProbeError:
        """``exc`` escaped every classification: drop the connection, log once, type it."""
        self._drop()
        if not self._logged_unexpected:
            self._logged_unexpected = True
            log.warning(
                "probe %s raised %s: counted as this host's failure (logged once)",
                self.host,
                type(exc).__name__,
                exc_info=exc,
            )
        return self._error(exc)

    def _wait(self, state: RetryCallState) -> float:
        if self._reused_lost:  # a pooled connection died idle: reconnect at once
            return 0.0
        return float(wait_exponential(multiplier=self.backoff, max=self.timeout / 4)(state))

    def _failed(self, error: ProbeError, attempts: int) -> ProbeResult:
        result = ProbeResult(host=self.host, error=error, checked_at=time.time(), attempts=attempts)
        if error.permanent:
            self._held_until = time.monotonic() + self._hold_next
            self._hold_next = min(self._hold_next * 2, self.max_hold)
            self._last_failure = result
        log.debug("probe %s failed after %d attempt(s): %s", self.host, attempts, error)
        return result

    async def _attempt(self, deadline: float, attempts: int) -> ProbeResult:
        conn = self._conn
        self._reused_lost = False
        reused = conn is not None
        if conn is None:
            conn = await self._connect(deadline)
        try:
            row, latency = await self._fetch(conn, deadline)
        except ProbeError as error:
            self._drop()
            self._reused_lost = reused and error.reason is Reason.CONNECTION_LOST
            raise
        result = result_from_row(self.host, row, latency, time.time(), attempts)
        self._held_until = 0.0
        self._hold_next = self.hold
        self._last_failure = None
        log.debug(
            "probe %s: %s lsn=%s tl=%s latency=%.2fms",
            self.host,
            "replica" if result.in_recovery else "primary",
            result.lsn,
            result.timeline,
            latency * 1000,
        )
        return result

    async def _fetch(self, conn: ProbeConnection, deadline: float) -> tuple[Sequence[Any], float]:
        try:
            return await self._bounded(self._timed_fetch(conn), deadline, conn, "query")
        except ProbeError as error:
            if error.reason is not Reason.PERMISSION_DENIED:
                raise
            # 42501: the catalog says which grant is missing (never the message).
            lacking = await self._bounded(lacking_grants(conn), deadline, conn, "grants")
            if any(grant.required for grant in lacking):
                raise missing_grant(self.host, lacking, self.options) from None
            if self._query is not PROBE_QUERY or IDENTITY not in lacking:
                raise  # a 42501 the catalog does not explain: reported as it came
            log.warning(
                "probe %s: this login may not read pg_control_system() (to allow it: %s):"
                " the host's system identifier stays unknown, so it is never excluded as foreign",
                self.host,
                IDENTITY.grant(self.options.user or "the probe login"),
            )
        self._query = ANONYMOUS_PROBE_QUERY  # an autocommit connection survives the error
        return await self._bounded(self._timed_fetch(conn), deadline, conn, "query")

    async def _timed_fetch(self, conn: ProbeConnection) -> tuple[Sequence[Any], float]:
        start = time.perf_counter()
        row = await conn.fetch_row(self._query)
        return row, time.perf_counter() - start

    async def watch(self, seconds: float, step: float) -> ProbeResult | None:
        """Wait up to ``seconds`` for the host to leave recovery, then probe it.

        Runs on the open probe connection (see :mod:`topology.probing._watch`), checking
        every ``step`` s on the server; bounded by ``seconds`` plus the probe
        timeout (then the connection is terminated). Returns the probe's result,
        or None when no watch ran: no connection open, a driver without
        ``execute``, or a host that refused the statement once (logged at
        WARNING; this prober never watches again). A watch cancelled by the
        server (a recovery conflict, a ``statement_timeout``) just probes at
        once. Cancelling this terminates the connection.
        """
        conn = self._conn
        if conn is None or not self._watchable or self.held or not hasattr(conn, "execute"):
            return None
        deadline = time.monotonic() + seconds + self.timeout
        try:
            if self._armed is not conn:
                await self._bounded(conn.execute(ARM_STATEMENT), deadline, conn, "watch")
                self._armed = conn
            statement = watch_statement(seconds, step)
            await self._bounded(_watched(conn, statement), deadline, conn, "watch")
        except ProbeError as error:
            if error.reason.retryable or error.reason in _UNWELL:
                self._drop()
                return self._failed(error, 1)
            self._watchable = False
            log.warning(
                "probe %s: the promotion watch failed (%s): this host is probed at each round only",
                self.host,
                error,
            )
        return await self.probe(retries=0)

    async def _connect(self, deadline: float) -> ProbeConnection:
        limit = deadline
        if self.options.connect_timeout is not None:
            limit = min(deadline, time.monotonic() + self.options.connect_timeout)
        self.connects += 1
        try:
            if self._refused:  # cheap while it goes on refusing (topology.probing._knock)
                await self._bounded(knock(self.address), limit, None, "connect")
            remaining = max(limit - time.monotonic(), 0.0)
            conn = await self._bounded(
                self.driver.connect(self.address, self.options, remaining), limit, None, "connect"
            )
        except ProbeError as error:
            self._refused = error.reason is Reason.CONNECTION_REFUSED
            raise connect_denied(error, self.options) from None
        self._refused = False
        self._conn = conn
        return conn

    async def _bounded(
        self,
        awaitable: Awaitable[T],
        deadline: float,
        conn: ProbeConnection | None,
        what: str,
    ) -> T:
        """Await ``awaitable`` until ``deadline`` (:func:`topology.probing._deadline.bounded`)."""
        return await bounded(
            awaitable,
            deadline,
            what,
            self.host,
            functools.partial(self._abandon, conn),
            self._error,
        )

    async def _abandon(self, conn: ProbeConnection | None, task: asyncio.Task[Any]) -> None:
        if conn is not None and conn is self._conn:
            self._conn = None
        await abandon(task, conn)

    def _error(self, exc: BaseException) -> ProbeError:
        detail = redact(
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            [self.options.password, self.options.sslpassword],
        )
        if not detail:
            detail = type(exc).__name__
        reason = classify(exc)
        if reason is Reason.UNEXPECTED:
            # Nothing we know: say what and where, so the report can be acted on.
            detail = f"{type(exc).__name__}: {detail}{where(exc)}"
        return ProbeError(self.host, reason, detail)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
            conn.release()

    def terminate(self) -> None:
        """Abandon the probe connection now (no wait, no error)."""
        self._drop()

    async def close(self, timeout: float = 1.0) -> None:
        """Close the probe connection politely within ``timeout``, else terminate it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_within(conn, timeout)


async def probe_once(
    hosts: Iterable[HostAddress],
    options: ConnectOptions,
    driver: str | ProbeDriver = "asyncpg",
    *,
    timeout: float = 1.0,
    retries: int = 2,
) -> list[ProbeResult]:
    """Probe every host concurrently, once, and close the connections.

    Returns one result per host, in order, within about ``timeout`` seconds
    plus the bounded close (at most ``timeout`` more for a host that stops
    answering between the probe and the close).

    Example::

        results = await probe_once(parse_hosts("db1,db2"), ConnectOptions(user="app"))
    """
    probers = [
        HostProber(address, options, driver, timeout=timeout, retries=retries) for address in hosts
    ]
    try:
        return list(await asyncio.gather(*(prober.probe() for prober in probers)))
    finally:
        await asyncio.gather(*(prober.close(timeout) for prober in probers))
