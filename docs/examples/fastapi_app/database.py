"""Database connection parameters, in upstream's ``create_engine(host)`` style.

The URL comes from the environment (``CTXDB_EXAMPLE_URL``, for example
``postgresql+asyncpg://app:secret@127.0.0.1:5432/app``). ``create_engine``
keeps everything of it but the host, which ``DBConnect`` passes in: that is
what lets ``DBConnect.change_host()`` move the application to another
server (a new primary after a failover) without touching anything else.

Example::

    master = connect_from_env()          # DBConnect on the URL's host
    app = create_app(master)
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ctxdb import DBConnect

__all__ = ["URL_ENV", "connect_from_env", "create_engine", "create_session_maker", "url_from_env"]

URL_ENV = "CTXDB_EXAMPLE_URL"
# Every network wait has a deadline: connecting, and the pool's wait for a free connection.
CONNECT_TIMEOUT_SECONDS = 5
POOL_TIMEOUT_SECONDS = 10


def url_from_env() -> URL:
    """The database URL from ``CTXDB_EXAMPLE_URL``; a clear error when it is unset."""
    raw = os.environ.get(URL_ENV)
    if not raw:
        raise RuntimeError(
            f"set {URL_ENV} to a SQLAlchemy URL, e.g. postgresql+asyncpg://user:pw@127.0.0.1/db"
        )
    return make_url(raw)


def _with_host(url: URL, host: str) -> URL:
    """``url`` pointing at ``host`` (``"10.0.0.5"`` or ``"10.0.0.5:5433"``)."""
    if host.count(":") > 1 and not host.startswith("["):
        return url.set(host=host)  # a bare IPv6 address
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return url.set(host=name.strip("[]"), port=int(port))
    return url.set(host=host.strip("[]"))


def _connect_args(url: URL) -> dict[str, object]:
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg":
        return {"timeout": CONNECT_TIMEOUT_SECONDS}
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


def create_engine(host: str) -> AsyncEngine:
    """An engine for ``host`` with the rest of the URL taken from the environment."""
    url = _with_host(url_from_env(), host)
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args=_connect_args(url),
    )


def create_session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session parameters: objects stay readable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def connect_from_env() -> DBConnect:
    """A DBConnect on the host (and port) of ``CTXDB_EXAMPLE_URL``.

    Connects nothing: the first session builds the engine.
    """
    url = url_from_env()
    host = url.host or "127.0.0.1"
    if url.port is not None:
        host = f"{host}:{url.port}"
    return DBConnect(
        engine_creator=create_engine,
        session_maker_creator=create_session_maker,
        host=host,
    )
