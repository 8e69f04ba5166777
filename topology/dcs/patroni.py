"""Patroni's view of its cluster: from etcd v3 (:class:`PatroniEtcd`) or its REST API.

Patroni (with ``etcd3:`` in its configuration) keeps, under
``<namespace>/<scope>/``:

* ``leader``: the name of the member holding the leader lock;
* ``members/<name>``: JSON with the member's ``conn_url``
  (``postgres://host:port/db``), ``role``, ``state`` and WAL position;
* ``config``, ``history``, ``status``, ``sync`` ...: ignored here.

:class:`PatroniEtcd` reads that prefix once, then watches it (push: etcd
sends each change as it commits) through :class:`topology.dcs._etcd.EtcdGateway`.
Every ``check_interval`` seconds it also reads the prefix again: the read
proves the store still answers (a frozen etcd keeps the watch's socket open
and silent) and repairs anything a broken watch missed. A change the read
saw that the watch has still not delivered one interval later ends the
watch, and a new one starts (during a failover the watch is often a moment
behind a read: that alone is no reason to reconnect).

Timeouts: each etcd request gets ``timeout`` seconds per endpoint; a lost
store is reported within ``check_interval + timeout`` seconds, and retried
with a backoff of 50 ms doubling up to 2 s (refused credentials: every 10 s).
TLS and etcd authentication come from an :class:`EtcdConfig`
(:mod:`topology.dcs.patroni_config`, or a Patroni YAML: ``from_patroni(config=path)``).
Cancelling ``run()`` closes the source's pooled connections.

:class:`PatroniRest` is for apps that cannot reach the DCS: it asks
Patroni's REST API (``GET /cluster`` on any member) every ``interval``
seconds. That is polling, not push: a leader change is seen up to
``interval`` later, and every process adds one request per interval to
Patroni, so prefer etcd for a fleet (it lives in :mod:`topology.dcs._patroni_rest`;
import it from here).

Example::

    cluster = ClusterResolver.from_patroni(config="/etc/patroni/app.yml",
        dcs_allow="10.0.0.0/24", user="app", password=secret, database="app")

Hostile peers: whatever an endpoint does wrong (closes without answering,
sends something that is not HTTP, too much, too slowly, or JSON of the wrong
shape) is that endpoint's reason; the next endpoint is asked, and when none
answers, ``on_lost`` says why for each. ``run()`` never ends but by
cancellation. Every answer is read within :class:`topology.dcs._http.HttpLimits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from topology.dcs import DcsMember, DcsView
from topology.dcs._claim_keys import parse_writable, topology_key
from topology.dcs._etcd import AuthFailed, EtcdEvent, EtcdGateway
from topology.dcs._http import HttpLimits, Unreachable
from topology.dcs._patroni_rest import REST_LIMITS, PatroniRest, view_from_cluster
from topology.dcs.patroni_config import EtcdConfig, PatroniConfig
from topology.errors import ConfigurationError
from topology.hosts import DEFAULT_PORT, HostAddress

__all__ = [
    "REST_LIMITS",
    "HttpLimits",
    "PatroniEtcd",
    "PatroniRest",
    "member_from_json",
    "patroni_watch",
    "view_from_cluster",
    "watch_from_config",
]

log = logging.getLogger("topology")
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0
_AUTH_RETRY = 10.0  # refused credentials stay refused until someone changes them: no hot loop


def member_from_json(name: str, value: str) -> DcsMember | None:
    """A member from its key's JSON value; None when it has no usable ``conn_url``."""
    try:
        data = json.loads(value)
        url = urlsplit(str(data["conn_url"]))
        if not url.hostname:
            return None
        host = str(HostAddress(url.hostname, url.port or DEFAULT_PORT))
    except (ValueError, KeyError, TypeError, RecursionError, ConfigurationError):
        return None  # RecursionError: a value nested too deep to parse
    return DcsMember(name, host, str(data.get("role", "")), str(data.get("state", "")))


class _WatchBroke(Exception):
    """The watch stream ended or failed; a read decides whether the store is lost."""


class PatroniEtcd:
    """A :class:`topology.dcs.DcsWatch` over Patroni's keys in etcd v3.

    ``etcd``: endpoints, ``"http://h1:2379,http://h2:2379"`` or a list;
    ``scope``: Patroni's ``scope``; ``namespace``: Patroni's ``namespace``
    (default ``/service``); ``limits``: the caps on one etcd answer (default
    :class:`topology.dcs._http.HttpLimits`: 8 MiB for a range). Counters (for
    measurements): ``views``, ``outages``, and the gateway's ``requests``.
    """

    def __init__(
        self,
        etcd: str | Sequence[str] | EtcdConfig,
        scope: str,
        *,
        namespace: str = "/service",
        timeout: float = 1.0,
        check_interval: float = 3.0,
        limits: HttpLimits | None = None,
    ) -> None:
        if not scope or "/" in scope:
            raise ConfigurationError(f"Patroni scope {scope!r}: a non-empty name without '/'")
        if check_interval <= 0 or timeout <= 0:
            raise ConfigurationError("timeout and check_interval must be positive")
        self.scope = scope
        self.prefix = f"{'/' + namespace.strip('/') if namespace.strip('/') else ''}/{scope}/"
        self.gateway = EtcdGateway(etcd, timeout=timeout, limits=limits)
        self.check_interval = float(check_interval)
        self.views = 0
        self.outages = 0
        self._keys: dict[str, str] = {}
        self._revision = 0
        self._term = 0  # the leader key's create_revision
        self._watched = 0  # the highest revision the watch stream itself delivered
        self._newest = 0  # the highest mod_revision among the keys of the last read

    def describe(self) -> str:
        return f"Patroni scope {self.scope!r} in etcd {self.gateway.endpoints} ({self.prefix})"

    def __repr__(self) -> str:
        return f"PatroniEtcd({self.describe()})"

    @property
    def requests(self) -> int:
        return self.gateway.requests

    def has_key(self, key: str) -> bool:
        """Whether ``key`` is among the keys read or watched so far (no network)."""
        return key in self._keys

    def view(self) -> DcsView:
        """The view of the keys read so far (no network)."""
        leader = self._keys.get(self.prefix + "leader")
        members_prefix = self.prefix + "members/"
        members = []
        for key, value in sorted(self._keys.items()):
            if key.startswith(members_prefix):
                member = member_from_json(key[len(members_prefix) :], value)
                if member is not None:
                    members.append(member)
        term = self._term if leader else 0
        writable = parse_writable(self._keys.get(topology_key(self.prefix, "writable", term)), term)
        return DcsView(
            leader.strip() if leader else None, tuple(members), self._revision, term, writable
        )

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        """Read, then watch and check, until cancelled (see :class:`topology.dcs.DcsWatch`).

        Only a failed *read* counts as the store lost: a watch that breaks
        (a restarted etcd member, a proxy's idle timeout, a compacted
        revision) is followed by a read at once, which decides.
        """
        try:
            await self._run(on_view, on_lost)
        finally:  # cancelled: the pooled connections go with it
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(self.gateway.aclose(), 1.0))

    async def _run(
        self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]
    ) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            watching_since = None
            try:
                await self._read(on_view)
                watching_since = time.monotonic()
                await self._follow(on_view)
            except _WatchBroke as exc:
                log.debug("etcd watch of %s broke (%s): reading again", self.prefix, exc)
                assert watching_since is not None
                if time.monotonic() - watching_since > _BACKOFF_MAX:
                    backoff = _BACKOFF_FIRST
                    continue  # it had lived: read again at once
                # A watch that breaks as soon as it starts must not spin.
            except AuthFailed as exc:
                self.outages += 1
                on_lost(f"etcd authentication failed: {exc}")
                backoff = _AUTH_RETRY
            except Unreachable as exc:
                self.outages += 1
                on_lost(str(exc))
            except Exception as exc:  # a malformed answer: report it, start over
                self.outages += 1
                log.debug("etcd watch of %s failed", self.prefix, exc_info=True)
                on_lost(f"unexpected answer from etcd ({type(exc).__name__})")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX) if backoff < _AUTH_RETRY else _BACKOFF_FIRST

    async def _read(self, on_view: Callable[[DcsView], None]) -> None:
        revision, events = await self.gateway.range_prefix(self.prefix)
        self._keys = {event.key: event.value or "" for event in events}
        self._revision = revision
        self._newest = max((event.revision for event in events), default=0)
        leader = self.prefix + "leader"
        self._term = next((e.created for e in events if e.key == leader), 0)
        self.views += 1
        on_view(self.view())

    async def _follow(self, on_view: Callable[[DcsView], None]) -> None:
        """Watch and check side by side; the first to fail ends both."""
        watch = asyncio.ensure_future(self._watch(on_view))
        check = asyncio.ensure_future(self._check(on_view))
        watch.set_name(f"topology-etcd-watch-{self.scope}")
        check.set_name(f"topology-etcd-check-{self.scope}")
        try:
            done, _ = await asyncio.wait((watch, check), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, check):
                task.cancel()
            await asyncio.wait((watch, check))
        for task in done:
            task.result()  # raises what ended it

    async def _watch(self, on_view: Callable[[DcsView], None]) -> None:
        try:
            async for _, events in self.gateway.watch_prefix(self.prefix, self._revision + 1):
                self._watched = max([self._watched, *(event.revision for event in events)])
                if self._apply(events):
                    self.views += 1
                    on_view(self.view())
        except Unreachable as exc:
            raise _WatchBroke(str(exc)) from exc

    def _apply(self, events: list[EtcdEvent]) -> bool:
        changed = False
        for event in events:
            if event.revision <= self._revision:
                continue  # already in a read made since
            changed = True
            if event.key == self.prefix + "leader":
                self._term = event.created  # 0 once deleted
            if event.value is None:
                self._keys.pop(event.key, None)
            else:
                self._keys[event.key] = event.value
        if changed:
            self._revision = max(event.revision for event in events)
        return changed

    async def _check(self, on_view: Callable[[DcsView], None]) -> None:
        owed = 0  # a revision a read saw before the watch delivered it
        while True:
            await asyncio.sleep(self.check_interval)
            if owed > self._watched:
                # A whole interval later the watch has still not delivered what
                # the read saw: it may hang on an etcd member cut off from its
                # peers. Watch again (where the read goes).
                raise _WatchBroke("the watch had not delivered a change a read saw")
            watched = self.view()
            await self._read(on_view)
            # During a failover a read often sees a change whose watch event is
            # still on its way: breaking the watch for that would reconnect a
            # whole fleet at the worst moment. The watch gets one interval.
            owed = 0 if self.view().same_cluster_as(watched) else self._newest


def patroni_watch(
    *,
    config: str | os.PathLike[str] | PatroniConfig | None = None,
    etcd: str | Sequence[str] | None = None,
    scope: str | None = None,
    namespace: str | None = None,
    rest: str | Sequence[str] | None = None,
    timeout: float = 1.0,
    check_interval: float = 3.0,
) -> PatroniEtcd | PatroniRest:
    """The watch for ``ClusterResolver.from_patroni``: from ``config`` (a Patroni YAML path or
    a :class:`PatroniConfig`), or etcd (with a scope), or the REST API."""
    if config is not None:
        if etcd is not None or scope is not None or namespace is not None or rest is not None:
            raise ConfigurationError(
                "from_patroni: give either config= or etcd=/scope=/namespace=/rest=, not both"
            )
        loaded = config if isinstance(config, PatroniConfig) else PatroniConfig.load(config)
        return watch_from_config(loaded, timeout=timeout, check_interval=check_interval)
    if (etcd is None) == (rest is None):
        raise ConfigurationError("give either etcd= (with scope=) or rest=, not both or neither")
    if etcd is not None:
        if scope is None:
            raise ConfigurationError("etcd= needs Patroni's scope= (its 'scope:' setting)")
        return PatroniEtcd(
            etcd, scope, namespace=namespace or "/service", timeout=timeout,
            check_interval=check_interval,
        )  # fmt: skip
    assert rest is not None
    return PatroniRest(rest, timeout=timeout, interval=check_interval)


def watch_from_config(
    config: PatroniConfig, *, timeout: float = 1.0, check_interval: float = 3.0
) -> PatroniEtcd | PatroniRest:
    """The watch a :class:`PatroniConfig` describes: etcd when it has one, else the REST API."""
    if config.etcd is not None:
        return PatroniEtcd(
            config.etcd,
            config.scope,
            namespace=config.namespace,
            timeout=timeout,
            check_interval=check_interval,
        )
    assert config.rest is not None  # PatroniConfig refuses neither
    return PatroniRest(config.rest, timeout=timeout, interval=check_interval)
