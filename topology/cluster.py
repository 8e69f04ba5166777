"""ClusterResolver: follow the primary and the replicas of a PostgreSQL cluster.

A cluster is composed of named collaborators, one module each:

* ``_source``, a :class:`~topology.probing._probe_loop.ProbeLoop`: rounds of SQL probes;
* ``_steering`` (:mod:`topology._steering`): the loop's owner, and failure reports;
* ``_publisher`` (:mod:`topology.view._publisher`): the frozen view, read without a lock;
* ``_dcs_mode`` (:mod:`topology.dcs._aware`), with a DCS: what the store's news changes;
* ``_runner`` (:mod:`topology._running`): start, refresh, wait, close;
* ``master`` and ``replica`` (:mod:`topology.view.roles`): awaitable callables
  returning a host string, reading the cluster only as a
  :class:`~topology.view.ViewSource`.

Following a failover: ``report_failure(host, exc)`` takes the host off the
fast path, starts one round (coalesced with any others) and keeps rounds at
``fast_interval`` until a primary is known again; ``master()`` waits for one
at most ``wait_timeout`` s, then raises :class:`NoPrimaryError` with every
host's reason. Lifecycle: ``async with cluster``, or ``start()`` and
``close(timeout)`` (for good); a resolver call starts it. Background tasks
are supervised (:mod:`topology._supervise`; ``stats().tasks``). Not
thread-safe, except ``report_failure``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from topology._lifecycle import Lifecycle
from topology._running import Runner
from topology._settings import check_identifier, checked_driver, merge_options
from topology._steering import Steering
from topology._supervise import Supervisor, TaskHealth
from topology.dcs import DcsWatch
from topology.dcs._aware import DcsMode
from topology.dcs._trust import guard_dcs
from topology.dcs.patroni_config import PatroniConfig
from topology.errors import ConfigurationError
from topology.hosts import ConnectOptions, HostAddress, parse_hosts, parse_url
from topology.pace import DcsPace
from topology.probing._probe_loop import ProbeLoop
from topology.probing.drivers import ProbeDriver
from topology.probing.prober import HostProber
from topology.probing.snapshot import Role, Snapshot
from topology.settings import DcsTrust, ReplicaPolicy, Timing, gather
from topology.trace import Tracer, guarded
from topology.view import ClusterView
from topology.view._announce import CALLBACK_TASKS, Announcer
from topology.view._publisher import ANNOUNCER, Publisher
from topology.view.caught_up import CHECKS, CaughtUpFinder, CaughtUpStats
from topology.view.roles import MasterResolver, ReplicaResolver

__all__ = ["ClusterResolver", "ClusterStats"]

log = logging.getLogger("topology")


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
    tasks: tuple[TaskHealth, ...] = ()
    """The supervised background tasks: alive, restarts, last error (topology._supervise)."""


class ClusterResolver:
    """Probes ``hosts`` and resolves the primary (``master``) and a replica (``replica``).

    ``hosts``: a comma-separated string or an iterable of ``host[:port]``
    strings or :class:`HostAddress`. ``options``: connection settings, with
    ``user`` / ``password`` / ``database`` and any other :class:`ConnectOptions`
    field given as keywords taking precedence (``sslmode``, ``sslrootcert``,
    ``sslcert``, ``sslkey``, ``sslpassword``, ``sslcrl``, ``options``,
    ``channel_binding``, ``connect_timeout``, ``application_name``).
    ``probe_user`` / ``probe_password``: the probes' own login (least
    privilege: see :mod:`topology.probing._probe_login`); the engines never see it.

    Settings (:mod:`topology.settings`, frozen values with their defaults):
    ``timing`` (:class:`~topology.settings.Timing`: the intervals, the burst,
    the promotion watch, ``probe_timeout``, ``wait_timeout``; presets
    ``Timing.DEFAULT``, ``Timing.EAGER``, ``Timing.FLEET``), ``replicas``
    (:class:`~topology.settings.ReplicaPolicy`), and with a DCS ``dcs_pace``
    (:class:`~topology.pace.DcsPace`) and ``trust``
    (:class:`~topology.settings.DcsTrust`). The old keywords (``interval=``,
    ``max_lag_bytes=``, ``dcs_allow=``, ...) still work, with a
    ``DeprecationWarning``.

    Observability: ``tracer`` (:mod:`topology.trace`; OpenTelemetry: :mod:`topology.otel`)
    hears of probes, role changes, failovers and reads after writes; None costs nothing.

    Identity: ``system_identifier`` pins the cluster; a host reporting another
    one is excluded as foreign. Without it, it is learned (see
    :mod:`topology.probing._identity`).

    DCS: ``dcs`` (a :class:`topology.dcs.DcsWatch`; see :meth:`from_patroni`
    and :mod:`topology.dcs._aware`) adds the members it lists to ``hosts``
    (which may then be empty) and hurries rounds when it names a new leader.
    ``trust`` (:class:`~topology.settings.DcsTrust`) says which members
    receive the credentials; with none chosen, ``ConfigurationError``.

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
        timing: Timing = Timing.DEFAULT,
        replicas: ReplicaPolicy | None = None,
        dcs: DcsWatch | None = None,
        dcs_pace: DcsPace | None = None,
        trust: DcsTrust | None = None,
        system_identifier: int | None = None,
        tracer: Tracer | None = None,
        **connect_options: Any,
    ) -> None:
        given = gather(connect_options, timing, replicas, trust, dcs_pace)
        self.timing, self.dcs_pace = given.timing, given.dcs_pace
        check_identifier(system_identifier)
        empty = isinstance(hosts, (str, tuple, list)) and not hosts
        addresses = () if dcs is not None and empty else parse_hosts(hosts)
        self.options = merge_options(options, user, password, database, connect_options)
        self.driver = checked_driver(driver, self.options)
        self._timed(given.timing, dcs is not None)
        self.picker = given.replicas.picker()
        self._tracer = tracer = guarded(tracer)
        supervisor = Supervisor(tracer, (self.options.password, self.options.sslpassword))
        supervisor.register(ANNOUNCER, CALLBACK_TASKS, CHECKS)
        self._announcer = Announcer(self.picker, tracer, supervisor.died)
        names = [str(address) for address in addresses]
        # Everything readers see, replaced as a whole (see topology.view).
        self._publisher = Publisher(names, self.pace, self._announcer, self.stale_after, supervisor)
        self._steering = steering = Steering(self._publisher)
        self._source = steering.steer(self._probe_loop(addresses, system_identifier))
        self._caught_up = CaughtUpFinder(
            self.options, self.driver, self.probe_timeout, tracer, supervisor
        )
        mode = None if dcs is None else self._dcs_mode_for(dcs, given.trust)
        self._dcs_mode = steering.dcs = mode
        self._lifecycle = Lifecycle(supervisor)
        self._runner = Runner(self._lifecycle, steering, self._source, self._caught_up, self.timing)
        self.master = MasterResolver(self)
        self.replica = ReplicaResolver(self, self.picker, self._caught_up)

    def _dcs_mode_for(self, dcs: DcsWatch, trust: DcsTrust) -> DcsMode:
        """Follow ``dcs``, behind the trust model (topology.dcs._trust: it translates,
        then filters the members it names)."""
        guarded_dcs = guard_dcs(dcs, trust.addresses, trust.allow, self.hosts, self.options)
        return DcsMode(
            guarded_dcs, self._publisher, self._source, self._caught_up, self._prober,
            pace=self.dcs_pace, burst_window=self.burst_window, tracer=self._tracer,
        )  # fmt: skip

    def _timed(self, timing: Timing, with_dcs: bool) -> None:
        """The timing's values as attributes (read by tests, tools and the docs' examples)."""
        self.interval, self.fast_interval = timing.interval, timing.fast_interval
        self.burst_window = timing.burst_window
        self.promotion_watch = float(timing.promotion_watch)
        self.probe_timeout = float(timing.probe_timeout)
        self.wait_timeout = float(timing.wait_timeout)
        self.dcs_interval = float(self.dcs_pace.interval)
        self.pace = timing.pace()
        self.stale_after = timing.staleness(self.dcs_pace if with_dcs else None)

    def _probe_loop(
        self, addresses: Sequence[HostAddress], system_identifier: int | None
    ) -> ProbeLoop:
        """The topology source: SQL probes of every host, each round, steered."""
        return ProbeLoop(
            [self._prober(address) for address in addresses], self._steering,
            patience=self.fast_interval, slow_after=self.probe_timeout / 4,
            system_identifier=system_identifier, tracer=self._tracer,
            watch_step=self.promotion_watch,
        )  # fmt: skip

    def _prober(self, address: HostAddress) -> HostProber:
        retries = self.timing.retries
        return HostProber(
            address, self.options, self.driver, timeout=self.probe_timeout, retries=retries
        )

    @classmethod
    def from_patroni(
        cls,
        *,
        config: str | os.PathLike[str] | PatroniConfig | None = None,
        etcd: str | Sequence[str] | None = None,
        scope: str | None = None,
        namespace: str | None = None,
        rest: str | Sequence[str] | None = None,
        hosts: str | Iterable[str | HostAddress] = (),
        dcs_allow: str | Iterable[str] | None = None,
        dcs_timeout: float = 1.0,
        dcs_check_interval: float = 3.0,
        **kwargs: Any,
    ) -> ClusterResolver:
        """Follow a Patroni cluster through its DCS (see :mod:`topology.dcs.patroni`).

        ``config``: a Patroni YAML file's path or a
        :class:`~topology.dcs.patroni_config.PatroniConfig` (scope, namespace,
        etcd endpoints, TLS files, credentials, or the REST API), instead of
        ``etcd`` (v3 endpoints, ``"https://h1:2379,..."``) with ``scope``
        and ``namespace`` (default ``/service``), or ``rest`` (members' REST
        endpoints, polled every ``dcs_check_interval`` s). ``hosts``: static
        hosts probed besides the DCS's members. ``kwargs``: the
        constructor's. Needs the ``[patroni]`` extra (ImportError naming it).

        What the DCS is trusted with: the members it names receive the
        credentials only if trusted. Choose one (else ``ConfigurationError``):
        ``hosts`` (members on these hosts, any port), ``dcs_allow`` (host
        names and/or CIDR networks, e.g. ``"10.0.0.0/8"``; ``"*"`` trusts
        whatever the DCS names), or ``sslmode="verify-full"`` (every server
        proves its name with a certificate). A member outside is never
        probed: it is logged once at WARNING and kept out of the view.
        """
        from topology.dcs.patroni import patroni_watch

        watch = patroni_watch(
            config=config, etcd=etcd, scope=scope, namespace=namespace, rest=rest,
            timeout=dcs_timeout, check_interval=dcs_check_interval,
        )  # fmt: skip
        if dcs_allow is not None:
            trust = kwargs.pop("trust", None) or DcsTrust()
            kwargs["trust"] = dataclasses.replace(trust, allow=dcs_allow)
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
        hosts = ",".join(p.host for p in self._source.probers) or "no hosts yet"
        if self._dcs_mode is not None:
            hosts += f", dcs={self._dcs_mode.follower.watch.describe()}"
        return (
            f"ClusterResolver({hosts}, driver={self.driver.name}, "
            f"primary={self.view.snapshot.primary}, {state})"
        )

    # --- running (topology._running) --------------------------------------------
    @property
    def view(self) -> ClusterView:
        """The :class:`~topology.view.ClusterView` last published; never waits."""
        return self._publisher.view

    @property
    def hosts(self) -> tuple[HostAddress, ...]:
        """The hosts probed now (with a DCS: the static ones, then its members)."""
        return tuple(prober.address for prober in self._source.probers)

    @property
    def running(self) -> bool:
        return self._runner.running

    async def start(self) -> None:
        """Start the loop and wait for the first snapshot (at most ``wait_timeout``)."""
        await self._runner.ensure_started(time.monotonic() + self.wait_timeout)

    async def ensure_started(self, deadline: float) -> None:
        """Start on this event loop unless it runs there; wait (until ``deadline``, a
        monotonic time) for a first snapshot. :class:`ResolverClosedError` once closed."""
        await self._runner.ensure_started(deadline)

    async def refresh(self, timeout: float | None = None) -> Snapshot:
        """Probe now: return the complete snapshot of a round started after this call.

        Coalesced with every other refresh and failure report (single flight).
        Starts the cluster if needed. Waits at most ``timeout`` seconds
        (default: ``wait_timeout + probe_timeout``), then returns the latest
        snapshot, complete or not.
        """
        return await self._runner.refresh(timeout)

    async def next_view(self, deadline: float) -> ClusterView:
        """The view after the next publication, or at ``deadline`` (monotonic) at the
        latest; starts the cluster if stopped, :class:`ResolverClosedError` once closed."""
        return await self._runner.next_view(deadline)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and close every probe connection, within about ``timeout`` s.

        Connections that do not close politely in time are terminated. For
        good: later calls raise :class:`ResolverClosedError`. Idempotent;
        safe without a start.
        """
        await self._runner.close(timeout)

    # --- reading ---------------------------------------------------------------
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
        dcs = None if self._dcs_mode is None else self._dcs_mode.follower
        return ClusterStats(
            rounds=source.rounds,
            probes=source.probes,
            probe_failures=source.probe_failures,
            role_changes=self._announcer.role_changes,
            failure_reports=self._steering.failure_reports,
            last_round_at=self._publisher.last_round_at,
            last_round_duration=source.last_round_duration,
            running=self.running,
            dcs_answers=None if dcs is None else dcs.healthy,
            dcs_outages=0 if dcs is None else dcs.outages,
            dcs_views=0 if dcs is None else dcs.views,
            tasks=self._lifecycle.supervisor.health(),
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
        keeps rounds fast until a primary is known again. A no-op once closed.
        """
        try:
            self._lifecycle.call(self._steering.failure, host, exc)
        except Exception:
            log.exception("report_failure(%s) failed; ignored", host)

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
