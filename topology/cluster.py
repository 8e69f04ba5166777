"""ClusterResolver: follow the primary and the replicas of a PostgreSQL cluster.

The SQL probe loop (:mod:`topology.probing._probe_loop`) probes
every host each ``interval`` seconds; each :class:`Snapshot` is published as
one frozen :class:`~topology.view.ClusterView` (:mod:`topology.view._publisher`)
and announced (:mod:`topology.view._announce`). Readers read the current view:
no lock, no network while it is fresh. ``cluster.master`` and
``cluster.replica`` (:mod:`topology.view.roles`, reading the cluster only as a
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

Lifecycle (:mod:`topology._lifecycle`): ``async with cluster`` or ``await
cluster.start()`` / ``await cluster.close()``; a resolver call before
``start()`` starts the cluster (once, however many callers; again on another
event loop if the first one is gone). Its background tasks are supervised
(:mod:`topology._supervise`): one that dies is logged once at ERROR and
restarted with a backoff; ``stats().tasks`` shows them. ``close(timeout)``
stops the tasks and closes every probe connection within about ``timeout``
seconds (terminating those that do not close in time), for good: any later
call raises :class:`ResolverClosedError`. Not thread-safe, except
``report_failure``, which may be called from any thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from topology._lifecycle import Lifecycle
from topology._running import Running
from topology._settings import check_identifier, checked_driver, merge_options
from topology._supervise import Supervisor, TaskHealth
from topology.dcs import DcsWatch
from topology.dcs._trust import guard_dcs
from topology.dcs.patroni_config import PatroniConfig
from topology.errors import ConfigurationError, classify
from topology.hosts import ConnectOptions, HostAddress, parse_hosts, parse_url
from topology.pace import DcsPace, Pace
from topology.probing._probe_loop import ProbeLoop
from topology.probing.drivers import ProbeDriver
from topology.probing.prober import HostProber
from topology.probing.snapshot import Role, Snapshot
from topology.settings import DcsTrust, ReplicaPolicy, Timing, gather
from topology.trace import Tracer, guarded
from topology.view._announce import CALLBACK_TASKS, Announcer
from topology.view._publisher import ANNOUNCER
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


class ClusterResolver(Running):
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

    Identity: ``system_identifier`` pins the cluster (``SELECT
    system_identifier FROM pg_control_system()`` on any member); a host
    reporting another one is excluded as foreign. Without it the identifier
    is learned from the hosts and kept, and adopted anew only when the whole
    cluster was re-initialised (see :mod:`topology.probing._identity`); read it as
    :attr:`system_identifier`.

    DCS: ``dcs`` (a :class:`topology.dcs.DcsWatch`; see :meth:`from_patroni`)
    adds the members it lists to ``hosts`` (which may then be empty), starts a
    round the moment it names a new leader, and follows a leader whose own
    member key says primary + running at once (SQL confirms it; a failure
    report wins). It probes at ``dcs_pace``'s slower pace, without keeping
    connections; when the store stops answering: one WARNING, then SQL
    probing every ``dcs_pace.lost_interval`` s. ``trust``
    (:class:`~topology.settings.DcsTrust`, :mod:`topology.dcs._trust`) says
    which members receive the credentials and rewrites their addresses;
    with no trust chosen, ``ConfigurationError``; an untrusted member is
    logged once at WARNING and left out.

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
        self.hosts = () if dcs is not None and empty else parse_hosts(hosts)
        self.options = merge_options(options, user, password, database, connect_options)
        self.driver = checked_driver(driver, self.options)
        self._timed(given.timing, dcs is not None)
        if dcs is not None:
            self._dcs_paced(False)  # until the store answers (see topology.dcs._aware)
        self.picker = given.replicas.picker()
        self._names = tuple(str(address) for address in self.hosts)
        self._tracer = tracer = guarded(tracer)
        supervisor = Supervisor(tracer, (self.options.password, self.options.sslpassword))
        supervisor.register(ANNOUNCER, CALLBACK_TASKS, CHECKS)
        announcer = Announcer(self.picker, tracer, supervisor.died)
        # Everything readers see, replaced as a whole (see topology.view).
        super().__init__(self._names, self.pace, announcer, self.stale_after, supervisor)
        self._lifecycle = Lifecycle(supervisor)
        self._dcs_answers = False
        if dcs is not None:  # the trust model (topology.dcs._trust) translates, then filters
            dcs = guard_dcs(dcs, given.trust.addresses, given.trust.allow, self.hosts, self.options)
        self._dcs = None if dcs is None else self._follower(dcs, None)
        self._source = self._probe_source(given.timing.retries, system_identifier)
        self._failure_reports = 0
        self._caught_up = CaughtUpFinder(
            self.options, self.driver, self.probe_timeout, tracer, supervisor
        )
        self.master = MasterResolver(self)
        self.replica = ReplicaResolver(self, self.picker, self._caught_up)

    def _timed(self, timing: Timing, with_dcs: bool) -> None:
        """The timing's values as the attributes the loop and the DCS mode read."""
        self.interval = timing.interval
        self.fast_interval = timing.fast_interval
        self.burst_window = timing.burst_window
        self.promotion_watch = float(timing.promotion_watch)
        self.probe_timeout = float(timing.probe_timeout)
        self.wait_timeout = float(timing.wait_timeout)
        self.dcs_interval = float(self.dcs_pace.interval)
        self._retries = timing.retries
        self.pace = Pace(
            interval=self.interval,
            fast_interval=self.fast_interval,
            burst_interval=timing.burst_interval,
            burst_window=self.burst_window,
        )
        slowest = (
            max(self.interval, self.dcs_interval, self.dcs_pace.lost_interval)
            if with_dcs
            else self.interval
        )
        self.stale_after = timing.stale_after or 3 * slowest + 2 * self.probe_timeout

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
            watch_step=self.promotion_watch,
        )

    def _prober(self, address: HostAddress) -> HostProber:
        return HostProber(
            address, self.options, self.driver, timeout=self.probe_timeout, retries=self._retries
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
        hosts = ",".join(self._names) or "no hosts yet"
        if self._dcs is not None:
            hosts += f", dcs={self._dcs.watch.describe()}"
        return (
            f"ClusterResolver({hosts}, driver={self.driver.name}, "
            f"primary={self.view.snapshot.primary}, {state})"
        )

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
            tasks=self._supervisor.health(),
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
            self._lifecycle.call(self._failure, host, exc)
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
