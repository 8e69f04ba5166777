"""ClusterResolver: follow the primary and the replicas of a PostgreSQL cluster.

A topology source (:mod:`topology.source`: the SQL probe loop) probes
every host each ``interval`` seconds; each :class:`Snapshot` is published as
one frozen :class:`~topology.view.ClusterView` (:mod:`topology._publisher`)
and announced (:mod:`topology._announce`). Readers read the current view:
no lock, no network while it is fresh. ``cluster.master`` and
``cluster.replica`` (:mod:`topology.roles`, reading the cluster only as a
:class:`~topology.view.ViewSource`) are awaitable callables returning a host
string (``"host:port"``, ``"[v6]:port"``), which also offer
``report_failure`` and ``add_listener``.

Following a failover: ``report_failure(host, exc)`` (called by a session
layer when a connection fails or a primary turns read-only) takes the host
off the fast path, starts one immediate round (coalesced with any others)
and keeps rounds at ``fast_interval`` until a primary is known again.
``master()`` then waits for a snapshot with a primary, at most
``wait_timeout`` seconds, and raises :class:`NoPrimaryError` with every
host's reason. Listeners hear of every change of the resolved host, so
engines can be swapped and connections to a demoted host terminated at once.

Lifecycle: ``async with cluster`` or ``await cluster.start()`` /
``await cluster.close()``; a resolver call before ``start()`` starts the
cluster (once, however many callers). ``close(timeout)`` stops the loop and
closes every probe connection within about ``timeout`` seconds (terminating
those that do not close in time); the cluster may be started again, also on
another event loop. Not thread-safe, except ``report_failure``, which may be
called from any thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from topology._announce import Announcer
from topology._dcs_aware import DcsAware
from topology._probe_loop import ProbeLoop
from topology._settings import check_identifier, check_seconds, checked_driver, merge_options
from topology.caught_up import CaughtUpFinder, CaughtUpStats
from topology.dcs import AddressMap, DcsWatch
from topology.drivers import ProbeDriver
from topology.errors import ConfigurationError, classify
from topology.hosts import ConnectOptions, HostAddress, parse_hosts, parse_url
from topology.pace import Pace
from topology.picker import ReplicaPicker, Strategy
from topology.prober import HostProber
from topology.roles import MasterResolver, ReplicaResolver
from topology.snapshot import Role, Snapshot
from topology.trace import Tracer, guarded
from topology.view import ClusterView

__all__ = ["ClusterResolver", "ClusterStats"]

log = logging.getLogger("topology")
_CANCEL_GRACE = 0.5
# Slow DCS-mode rounds of processes started together must not stay in step.
_DCS_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """Counters since construction. Times: ``last_round_at`` wall-clock, durations seconds."""

    rounds: int
    probes: int
    probe_failures: int
    role_changes: int
    failure_reports: int
    last_round_at: float | None
    last_round_duration: float | None
    running: bool
    dcs_answers: bool | None = None
    """Whether the DCS answers now (None: no DCS given)."""
    dcs_outages: int = 0
    dcs_views: int = 0


class ClusterResolver(DcsAware):
    """Probes ``hosts`` and resolves the primary (``master``) and a replica (``replica``).

    ``hosts``: a comma-separated string or an iterable of ``host[:port]``
    strings or :class:`HostAddress`. ``options``: connection settings, with
    ``user`` / ``password`` / ``database`` and any other :class:`ConnectOptions`
    field given as keywords taking precedence (``sslmode``, ``sslrootcert``,
    ``sslcert``, ``sslkey``, ``sslpassword``, ``sslcrl``, ``options``,
    ``channel_binding``, ``connect_timeout``, ``application_name``).
    ``probe_user`` / ``probe_password``: the probes' own login (least
    privilege: see :mod:`topology._probe_login`); the engines never see it.

    Timing: ``interval`` between rounds when healthy; ``fast_interval`` while
    no primary is known or after a failure report, and ``burst_interval``
    (jittered) for the first ``burst_window`` seconds of such an episode
    (0 disables the burst; see :mod:`topology.pace`); ``probe_timeout`` bounds
    each host's probe (connect + query + retries); ``wait_timeout`` bounds
    how long a resolver call waits for a primary; a snapshot older than
    ``stale_after`` (default ``3 * interval + 2 * probe_timeout``) is not
    trusted by the fast path.

    Observability: ``tracer`` (:mod:`topology.trace`; OpenTelemetry: :mod:`topology.otel`)
    hears of probes, role changes, failovers and reads after writes; None costs nothing.

    Identity: ``system_identifier`` pins the cluster (``SELECT
    system_identifier FROM pg_control_system()`` on any member); a host
    reporting another one is excluded as foreign. Without it the identifier
    is learned from the hosts and kept, and adopted anew only when the whole
    cluster was re-initialised (see :mod:`topology._identity`); read it as
    :attr:`system_identifier`.

    DCS: ``dcs`` (a :class:`topology.dcs.DcsWatch`; see :meth:`from_patroni`)
    adds the members it lists to ``hosts`` (which may then be empty), starts a
    round the moment it names a new leader, and, while it answers and no
    failover is under way, probes every ``dcs_interval`` seconds instead of
    ``interval`` and closes the probe connections between rounds. When it
    stops answering: one WARNING, and SQL-only probing as without it.
    ``dcs_addresses`` (:data:`topology.dcs.AddressMap`) rewrites the members'
    addresses the DCS gives where they are not reachable from here (a Docker
    network's names, a NAT).

    Reading: ``cluster.view`` is the :class:`~topology.view.ClusterView` last
    published (never waits); ``cluster`` is the
    :class:`~topology.view.ViewSource` its ``master`` and ``replica`` read.
    """

    def __init__(
        self,
        hosts: str | HostAddress | Iterable[str | HostAddress],
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        options: ConnectOptions | None = None,
        driver: str | ProbeDriver = "asyncpg",
        interval: float = 1.0,
        fast_interval: float = 0.02,
        burst_interval: float = 0.002,
        burst_window: float = 3.0,
        probe_timeout: float = 1.0,
        wait_timeout: float = 5.0,
        retries: int = 2,
        replica_strategy: str | Strategy = Strategy.ROUND_ROBIN,
        max_lag_bytes: int | None = None,
        max_lag_seconds: float | None = None,
        fallback_to_primary: bool = True,
        stale_after: float | None = None,
        system_identifier: int | None = None,
        tracer: Tracer | None = None,
        dcs: DcsWatch | None = None,
        dcs_interval: float = 15.0,
        dcs_addresses: AddressMap | None = None,
        **connect_options: Any,
    ) -> None:
        check_seconds(
            interval=interval,
            dcs_interval=dcs_interval,
            fast_interval=fast_interval,
            burst_interval=burst_interval,
            probe_timeout=probe_timeout,
            wait_timeout=wait_timeout,
        )
        check_identifier(system_identifier)
        empty = isinstance(hosts, (str, tuple, list)) and not hosts
        self.hosts = () if dcs is not None and empty else parse_hosts(hosts)
        self.options = merge_options(options, user, password, database, connect_options)
        self.driver = checked_driver(driver, self.options)
        self.interval = float(interval)
        self.fast_interval = float(fast_interval)
        self.pace = Pace(
            interval=self.interval,
            fast_interval=self.fast_interval,
            burst_interval=float(burst_interval),
            burst_window=max(float(burst_window), 0.0),
            jitter=_DCS_JITTER if dcs is not None else 0.0,
        )
        self.probe_timeout = float(probe_timeout)
        self.wait_timeout = float(wait_timeout)
        self.dcs_interval = float(dcs_interval)
        slowest = max(self.interval, self.dcs_interval) if dcs is not None else self.interval
        self.stale_after = (
            float(stale_after) if stale_after else 3 * slowest + 2 * self.probe_timeout
        )
        self.picker = ReplicaPicker(
            replica_strategy,
            max_lag_bytes=max_lag_bytes,
            max_lag_seconds=max_lag_seconds,
            fallback_to_primary=fallback_to_primary,
        )
        self._names = tuple(str(address) for address in self.hosts)
        self._tracer = tracer = guarded(tracer)
        # Everything readers see, replaced as a whole (see topology.view).
        super().__init__(self._names, self.pace, Announcer(self.picker, tracer), self.stale_after)
        self._retries = retries
        self._dcs_answers = False
        self._dcs = None if dcs is None else self._follower(dcs, dcs_addresses)
        self._source = self._probe_source(retries, system_identifier)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._failure_reports = 0
        self._caught_up = CaughtUpFinder(self.options, self.driver, self.probe_timeout, tracer)
        self.master = MasterResolver(self)
        self.replica = ReplicaResolver(self, self.picker, self._caught_up)

    def _probe_source(self, retries: int, system_identifier: int | None) -> ProbeLoop:
        """The topology source: SQL probes of every host, each round."""
        return ProbeLoop(
            [self._prober(address) for address in self.hosts],
            current=lambda: self.view.snapshot,
            publish=self._publish,
            pause=self._pause,
            hurry=self._in_episode,
            early=self._worth_publishing_early,
            straggling=self._straggling,
            patience=self.fast_interval,
            slow_after=self.probe_timeout / 4,
            system_identifier=system_identifier,
            tracer=self._tracer,
            linger=self._keeps_connections,
            focus=self._focus_hosts,
        )

    def _prober(self, address: HostAddress) -> HostProber:
        return HostProber(
            address, self.options, self.driver, timeout=self.probe_timeout, retries=self._retries
        )

    @classmethod
    def from_patroni(
        cls,
        *,
        etcd: str | Sequence[str] | None = None,
        scope: str | None = None,
        namespace: str = "/service",
        rest: str | Sequence[str] | None = None,
        hosts: str | Iterable[str | HostAddress] = (),
        dcs_timeout: float = 1.0,
        dcs_check_interval: float = 3.0,
        **kwargs: Any,
    ) -> ClusterResolver:
        """Follow a Patroni cluster through its DCS (see :mod:`topology.patroni`).

        Either ``etcd`` (its v3 endpoints, ``"http://h1:2379,http://h2:2379"``)
        with Patroni's ``scope`` and ``namespace``, or ``rest`` (members' REST
        API endpoints, ``"http://h1:8008,..."``, polled every
        ``dcs_check_interval`` s). ``hosts``: static hosts probed besides the
        members the DCS lists. ``kwargs``: the constructor's.
        """
        from topology.patroni import patroni_watch

        watch = patroni_watch(
            etcd=etcd, scope=scope, namespace=namespace, rest=rest,
            timeout=dcs_timeout, check_interval=dcs_check_interval,
        )  # fmt: skip
        return cls(hosts, dcs=watch, **kwargs)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClusterResolver:
        """Build from a libpq multi-host URL (``postgresql://u:pw@h1:5432,h2/db?sslmode=...``).

        ``kwargs`` are the constructor's keywords; explicit ones win over the URL.
        """
        hosts, options = parse_url(url)
        base = kwargs.pop("options", None)
        if base is not None:
            raise ConfigurationError("from_url takes its options from the URL: pass keywords")
        return cls(hosts, options=options, **kwargs)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        hosts = ",".join(self._names) or "no hosts yet"
        if self._dcs is not None:
            hosts += f", dcs={self._dcs.watch.describe()}"
        return (
            f"ClusterResolver({hosts}, driver={self.driver.name}, "
            f"primary={self.view.snapshot.primary}, {state})"
        )

    # --- reading ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def snapshot(self) -> Snapshot:
        """The snapshot last published (never waits; ``round == 0`` before the first)."""
        return self.view.snapshot

    @property
    def system_identifier(self) -> int | None:
        """The cluster's identifier (pinned, else learned; None before any host told it).

        Changes only when the whole cluster was re-initialised, e.g. to tie a
        read-your-writes position to the cluster it came from. Never waits.
        """
        return self.view.snapshot.system_identifier

    def read_your_writes_stats(self) -> CaughtUpStats:
        """How ``replica.at_least()`` served reads so far: a copy, later reads do not change it."""
        return dataclasses.replace(self._caught_up.stats)

    def stats(self) -> ClusterStats:
        source = self._source
        return ClusterStats(
            rounds=source.rounds,
            probes=source.probes,
            probe_failures=source.probe_failures,
            role_changes=self._announcer.role_changes,
            failure_reports=self._failure_reports,
            last_round_at=self._last_round_at,
            last_round_duration=source.last_round_duration,
            running=self.running,
            dcs_answers=None if self._dcs is None else self._dcs.healthy,
            dcs_outages=0 if self._dcs is None else self._dcs.outages,
            dcs_views=0 if self._dcs is None else self._dcs.views,
        )

    def on_change(self, callback: Callable[[Snapshot, Snapshot], object]) -> Callable[[], None]:
        """Call ``callback(old, new)`` when the primary or a role changes; returns unsubscribe.

        Runs on the event loop right after publication; it must not block (an
        awaitable result runs in a tracked task). Exceptions are logged.
        """
        return self._announcer.on_change.add(callback)

    def listen(self, role: Role, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(host)`` when ``role``'s resolver would answer another host.

        ``role``: ``Role.PRIMARY`` (``master.add_listener``) or ``Role.REPLICA``
        (``replica.add_listener``); returns unsubscribe. Same rules as
        :meth:`on_change`.
        """
        return self._announcer.listen(role, callback)

    # --- failures ----------------------------------------------------------------
    def report_failure(self, host: str, exc: BaseException | None = None) -> None:
        """Report that ``host`` failed (lost connection, read-only, shutdown...).

        Sync, non-blocking, never raises; may be called from any thread.
        Takes the host off the fast path until a round started after this
        report has seen it, wakes the loop for one (coalesced) round and
        keeps rounds fast until a primary is known again.
        """
        try:
            loop = self._event_loop
            if loop is not None and threading.get_ident() != self._thread_id:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._failure, host, exc)
                return
            self._failure(host, exc)
        except Exception:
            log.exception("report_failure(%s) failed; ignored", host)

    def _failure(self, host: str, exc: BaseException | None, reason: str = "unspecified") -> None:
        self._failure_reports += 1
        if exc is not None:
            # The type and the reason only: an exception's text may hold SQL parameters.
            reason = classify(exc).words
            log.info("failure reported on %s: %s (%s)", host, reason, type(exc).__name__)
        self._suspect(host, host in self._names, reason)
        if self.running:
            self._source.wake()

    def _straggling(self, hosts: frozenset[str]) -> None:
        # A primary that has not answered within a quarter of the probe timeout
        # is treated as failing (a frozen host fails nothing by itself):
        # sessions stop going to it and the loop looks for a promotion.
        primary = self.view.snapshot.primary
        if primary is not None and primary in hosts and not self._is_suspect(primary):
            log.info("primary %s is slow to answer its probe: looking for another", primary)
            self._failure(primary, None, "slow probe")

    async def refresh(self, timeout: float | None = None) -> Snapshot:
        """Probe now: return the complete snapshot of a round started after this call.

        Coalesced with every other refresh and failure report (single flight).
        Starts the cluster if needed. Waits at most ``timeout`` seconds
        (default: ``wait_timeout + probe_timeout``), then returns the latest
        snapshot, complete or not.
        """
        limit = self.wait_timeout + self.probe_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        await self.ensure_started(deadline)
        target = self._source.rounds + 1  # the next round to start
        self._source.wake()
        while time.monotonic() < deadline:
            snapshot = self.view.snapshot
            if snapshot.complete and snapshot.round >= target:
                break
            await self._next_publication(deadline - time.monotonic())
        return self.view.snapshot

    async def next_view(self, deadline: float) -> ClusterView:
        """Wait for the next view to be published, until ``deadline`` (monotonic) at most.

        Starts the cluster first if it is not running (closed, or its task
        cancelled). Returns the view then current, new or not.
        """
        if not self.running:
            await self.ensure_started(deadline)
        await self._next_publication(deadline - time.monotonic())
        return self.view

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the loop and wait for the first snapshot (at most ``wait_timeout``)."""
        await self.ensure_started(time.monotonic() + self.wait_timeout)

    async def ensure_started(self, deadline: float) -> None:
        """Start the loop on this event loop unless it runs there; wait for a first snapshot.

        Waits until ``deadline`` (a :func:`time.monotonic` time) at most; a
        no-op when the cluster runs here and has published.
        """
        loop = asyncio.get_running_loop()
        if self._event_loop is not loop or not self.running:
            self._launch(loop)  # no await since the check: a single launch
        if self.view.snapshot.round == 0:
            await self._next_publication(deadline - time.monotonic())

    def _launch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._event_loop is not None and self._event_loop is not loop:
            # Started on another event loop that is gone or busy elsewhere: its
            # connections cannot be used from here; drop them without a word.
            self._source.terminate()
            self._forget_waiters()
        self._event_loop = loop
        self._thread_id = threading.get_ident()
        self._task = loop.create_task(self._run(), name="topology-cluster-loop")

    async def _run(self) -> None:
        follower: asyncio.Task[None] | None = None
        try:
            if self._dcs is not None:
                follower = self._dcs.start()
                if not self.hosts:  # nothing to probe before the DCS lists the members
                    await self._dcs.wait_first_view(self.probe_timeout)
            await self._source.run()
        finally:
            if follower is not None:
                follower.cancel()
                await asyncio.wait((follower,), timeout=_CANCEL_GRACE)
            self._stop_fast_path()
            if not self._closing:
                # Cancelled by someone else, typically asyncio.run() shutting its
                # loop down: drop the connections while that loop still runs.
                self._source.terminate()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and close every probe connection, within about ``timeout`` s.

        Connections that do not close politely in time are terminated. Safe
        to call twice, or without a start.
        """
        deadline = time.monotonic() + timeout
        task, self._task = self._task, None
        self._stop_fast_path()
        if task is not None and not task.done():
            self._closing = True
            task.cancel()
            try:
                if task.get_loop() is asyncio.get_running_loop():
                    budget = max(deadline - time.monotonic(), 0.0) / 2
                    await asyncio.wait((task,), timeout=budget)
            finally:
                self._closing = False
        await self._announcer.cancel_tasks(0.1)
        remaining = max(deadline - time.monotonic(), 0.01)
        await asyncio.gather(self._caught_up.close(remaining), self._source.close(remaining))
        await asyncio.sleep(0)  # transports closed above finish on the next iteration
        self._forget_waiters()

    async def __aenter__(self) -> ClusterResolver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
