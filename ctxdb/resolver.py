"""The resolver contract: how DBConnect asks "which host now?", and what else it may use.

ctxdb knows nothing of how hosts are found. A *resolver* is any object
that can be called and awaited to get a host string (``"host:port"``,
``"[v6addr]:port"`` or a bare host): the :class:`Resolver` protocol. It may
also offer any of these capabilities, each a runtime-checkable protocol
that ``DBConnect`` checks once, when it is constructed:

:class:`ReportsFailures` -- ``report_failure(host, exc) -> None``
    told at once (synchronously, from the failing request) when an engine
    sees its host fail: lost connection, admin shutdown, read-only
    transaction. Must not block or raise.
:class:`AnnouncesHosts` -- ``add_listener(callback) -> unsubscribe``
    ``callback(host_or_None)`` is called (synchronously, from the event
    loop) when the resolver's answer changes, so DBConnect can move new
    connections before the next session asks.
:class:`HasCandidates` -- ``candidates() -> Collection[str]``
    the hosts that may become the answer next (a primary resolver: its
    replicas). A primary-following DBConnect keeps one spare connection
    open to each, so the first session after a promotion needs no connect.
:class:`DeclaresExclusivity` -- ``exclusive: bool``
    ``True`` (what a resolver that does not say is taken to mean) means
    only the host last returned is valid, like a primary: one pool whose
    connections follow it. ``False`` (a replica picker) keeps an engine per
    host and switches between them freely.
:class:`ReadsYourWrites` -- ``at_least(lsn, max_wait) -> Awaitable[str]``
    a host that has replayed the WAL position ``lsn`` (or the primary),
    waiting at most ``max_wait`` seconds; used for a context that wrote
    (see :mod:`ctxdb.read_your_writes`).
:class:`ReadsYourWritesInCluster`
    a ``ReadsYourWrites`` resolver that also has a ``system_identifier``
    attribute (its cluster) declares by it that ``at_least`` takes
    ``system_identifier=``: it is told the cluster of the position, so it
    can ignore a position from another or a re-initialised cluster.

Resolvers satisfy these structurally: a resolver library never imports
ctxdb (``topology``'s ``cluster.master`` and ``cluster.replica`` do not).

Example (the upstream "who is master?" pattern as a resolver)::

    async def get_master() -> str:
        return await my_directory.lookup("master")

    master = DBConnect(resolver=get_master, url="postgresql+asyncpg://app@/db")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ._lsn import format_lsn
from ._token import Position
from .engine_url import engine_url

__all__ = [
    "AnnouncesHosts",
    "Capabilities",
    "DeclaresExclusivity",
    "HasCandidates",
    "ReadsYourWrites",
    "ReadsYourWritesInCluster",
    "ReportsFailures",
    "Resolver",
    "engine_creator_from_url",
    "split_host",
]

HostListener = Callable[[str | None], None]


@runtime_checkable
class Resolver(Protocol):
    """Called and awaited: the host new sessions should use now."""

    def __call__(self) -> Awaitable[str]: ...


@runtime_checkable
class ReportsFailures(Protocol):
    """Told, synchronously and without blocking, that ``host`` failed with ``exc``."""

    def report_failure(self, host: str, exc: BaseException) -> None: ...


@runtime_checkable
class AnnouncesHosts(Protocol):
    """Calls ``callback(host_or_None)`` when its answer changes; returns an unsubscribe."""

    def add_listener(self, callback: HostListener) -> Callable[[], None]: ...


@runtime_checkable
class HasCandidates(Protocol):
    """Names the hosts that may become the answer next."""

    def candidates(self) -> Collection[str]: ...


@runtime_checkable
class DeclaresExclusivity(Protocol):
    """Says whether only its last answer is valid (a primary) or any may be (replicas)."""

    exclusive: bool


@runtime_checkable
class ReadsYourWrites(Protocol):
    """A host that replayed the WAL position ``lsn``, waiting at most ``max_wait`` seconds."""

    def at_least(self, lsn: str, max_wait: float) -> Awaitable[str]: ...


@runtime_checkable
class ReadsYourWritesInCluster(ReadsYourWrites, Protocol):
    """``ReadsYourWrites`` that names its cluster, so it takes ``system_identifier=``."""

    @property
    def system_identifier(self) -> int | None: ...

    def at_least(
        self, lsn: str, max_wait: float, system_identifier: int | None = None
    ) -> Awaitable[str]: ...


AfterWrite = Callable[[Position], Awaitable[str]]


@dataclass(frozen=True)
class Capabilities:
    """What a resolver offers, found once (``Capabilities.of``) with ``isinstance``."""

    exclusive: bool = True
    report_failure: Callable[[str, BaseException], None] | None = None
    add_listener: Callable[[HostListener], Callable[[], None]] | None = None
    candidates: Callable[[], Collection[str]] | None = None
    after_write: AfterWrite | None = None

    @classmethod
    def of(cls, resolver: object, read_your_writes_wait: float) -> Capabilities:
        """The capabilities of ``resolver`` (``None``: a DBConnect with a fixed host)."""
        if resolver is None:
            return cls()
        return cls(
            exclusive=(
                bool(resolver.exclusive) if isinstance(resolver, DeclaresExclusivity) else True
            ),
            report_failure=(
                resolver.report_failure if isinstance(resolver, ReportsFailures) else None
            ),
            add_listener=resolver.add_listener if isinstance(resolver, AnnouncesHosts) else None,
            candidates=resolver.candidates if isinstance(resolver, HasCandidates) else None,
            after_write=_after_write(resolver, read_your_writes_wait),
        )


def _after_write(resolver: object, max_wait: float) -> AfterWrite | None:
    """How to find a host for a context that wrote, or None if ``resolver`` cannot.

    ``max_wait`` bounds the wait for a replica to catch up (the resolver
    enforces it).
    """
    if isinstance(resolver, ReadsYourWritesInCluster):
        in_cluster = resolver

        async def resolve_in_cluster(position: Position) -> str:
            lsn = format_lsn(position.lsn)
            if position.system_identifier is None:
                return await in_cluster.at_least(lsn, max_wait)
            return await in_cluster.at_least(
                lsn, max_wait, system_identifier=position.system_identifier
            )

        return resolve_in_cluster
    if isinstance(resolver, ReadsYourWrites):
        plain = resolver

        async def resolve(position: Position) -> str:
            return await plain.at_least(format_lsn(position.lsn), max_wait)

        return resolve
    return None


def split_host(host: str) -> tuple[str, int | None]:
    """Split a host string: ``"h:5432"``, ``"[::1]:5433"`` or a bare ``"h"`` (port None)."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        address, _, port = host.partition(":")
    else:
        address, port = host, ""
    if port and not port.isdigit():
        raise ValueError(f"bad port in host {host!r}")
    return address, int(port) if port else None


def engine_creator_from_url(
    url: str, engine_kwargs: dict[str, Any] | None = None
) -> Callable[[str], AsyncEngine]:
    """An ``engine_creator`` that puts each host into ``url`` (host and port).

    ``url`` may be a libpq multi-host URL with libpq's connection parameters
    (TLS, ``options``...), for asyncpg as for psycopg: see ``ctxdb.engine_url``.
    """
    kwargs = dict(engine_kwargs or {})
    base, connect_args = engine_url(url, kwargs.pop("connect_args", None))
    if connect_args:
        kwargs["connect_args"] = connect_args

    def create(host: str) -> AsyncEngine:
        address, port = split_host(host)
        return create_async_engine(base.set(host=address, port=port or base.port), **kwargs)

    return create
