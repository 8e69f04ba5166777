"""The protocol through which DBConnect asks "which host now?", and URL engines.

ctxdb knows nothing of how hosts are found. A *resolver* is any object
that can be called and awaited to get a host string (``"host:port"``,
``"[v6addr]:port"`` or a bare host). It may also offer:

``report_failure(host, exc) -> None``
    told at once (synchronously, from the failing request) when an engine
    sees its host fail: lost connection, admin shutdown, read-only
    transaction. Must not block or raise.
``add_listener(callback) -> unsubscribe``
    ``callback(host_or_None)`` is called (synchronously, from the event
    loop) when the resolver's answer changes, so DBConnect can swap engines
    before the next session asks.
``candidates() -> Collection[str]``
    the hosts that may become the answer next (a primary resolver: its
    replicas). A primary-following DBConnect keeps one spare connection
    open to each, so the first session after a promotion needs no connect.
``exclusive: bool``
    ``True`` (the default for resolvers that do not say) means only the
    host last returned is valid, like a primary: a new answer retires the
    old engine and cuts the connections still checked out to the old host.
    ``False`` (a replica picker) keeps an engine per host and switches
    between them freely.

Example (the upstream "who is master?" pattern as a resolver)::

    async def get_master() -> str:
        return await my_directory.lookup("master")

    master = DBConnect(resolver=get_master, url="postgresql+asyncpg://app@/db")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ._engine_url import engine_url

__all__ = ["Resolver", "engine_creator_from_url", "split_host"]


class Resolver(Protocol):
    def __call__(self) -> Awaitable[str]: ...


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
    (TLS, ``options``...), for asyncpg as for psycopg: see ``ctxdb._engine_url``.
    """
    kwargs = dict(engine_kwargs or {})
    base, connect_args = engine_url(url, kwargs.pop("connect_args", None))
    if connect_args:
        kwargs["connect_args"] = connect_args

    def create(host: str) -> AsyncEngine:
        address, port = split_host(host)
        return create_async_engine(base.set(host=address, port=port or base.port), **kwargs)

    return create
