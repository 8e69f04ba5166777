"""The two probe drivers (asyncpg, psycopg) behind one tiny interface.

A driver opens a :class:`ProbeConnection`; a probe connection runs one query
and returns its single row, and can be *terminated*: its socket is torn
down at once without waiting for the server, which is how a probe abandons
a frozen or black-holed host. Neither driver is imported before it is used
(both are optional dependencies).

Timeouts: the drivers bound nothing themselves except where noted; the
caller (:mod:`topology.prober`) wraps every await in its deadline.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

from topology.errors import ConfigurationError
from topology.hosts import ConnectOptions, HostAddress

__all__ = ["DRIVERS", "ProbeConnection", "ProbeDriver", "get_driver"]


class ProbeConnection(Protocol):
    """One open connection to one host, used by a single task at a time."""

    async def fetch_row(self, query: str) -> Sequence[Any]:
        """Run ``query`` and return its only row (unbounded: the caller bounds it)."""

    def terminate(self) -> None:
        """Tear the socket down now, without a word to the server; never blocks or raises."""

    async def close(self) -> None:
        """Polite close (sends Terminate); the caller bounds it and terminates on timeout."""

    def release(self) -> None:
        """Free client-side resources after :meth:`terminate`, once no query is pending."""

    @property
    def is_closed(self) -> bool: ...


class ProbeDriver(Protocol):
    """Opens probe connections. ``name`` is ``asyncpg`` or ``psycopg``."""

    name: str

    async def connect(
        self, address: HostAddress, options: ConnectOptions, timeout: float
    ) -> ProbeConnection:
        """Open a connection in autocommit mode; ``timeout`` is a hint, the caller bounds it."""


class _AsyncpgConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch_row(self, query: str) -> Sequence[Any]:
        row = await self._conn.fetchrow(query)
        return tuple(row)

    def terminate(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.terminate()

    async def close(self) -> None:
        await self._conn.close(timeout=None)

    def release(self) -> None:
        self.terminate()

    @property
    def is_closed(self) -> bool:
        return bool(self._conn.is_closed())


_LIBPQ_SETTINGS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "options",
)


class AsyncpgDriver:
    """asyncpg: TLS settings and ``options`` go through a query-only DSN, parsed like libpq.

    asyncpg builds the SSL context from it (``verify-full`` checks the host
    name, ``sslpassword`` decrypts the key) and sends ``options`` in the
    startup packet. It never uses channel binding: :meth:`check` refuses
    ``channel_binding=prefer/require``.
    """

    name = "asyncpg"

    def check(self, options: ConnectOptions) -> None:
        """Raise :class:`ConfigurationError` for a setting asyncpg cannot honour."""
        if options.channel_binding not in (None, "disable"):
            raise ConfigurationError(
                f"channel_binding={options.channel_binding} cannot be honoured by asyncpg, "
                "which never uses channel binding: probe with driver='psycopg', "
                "or set channel_binding=disable"
            )

    async def connect(
        self, address: HostAddress, options: ConnectOptions, timeout: float
    ) -> ProbeConnection:
        import asyncpg  # type: ignore[import-untyped]

        self.check(options)
        dsn = {
            key: value for key in _LIBPQ_SETTINGS if (value := getattr(options, key)) is not None
        }
        settings = {"application_name": options.application_name or "topology-probe"}
        try:
            conn = await asyncpg.connect(
                dsn=f"postgresql://?{urlencode(dsn)}" if dsn else None,
                host=address.host,
                port=address.port,
                user=options.user,
                password=options.password,
                database=options.database,
                timeout=max(timeout, 0.001),
                server_settings=settings,
                command_timeout=None,
            )
        except ssl.SSLError as exc:
            if "PEM lib" not in str(exc):  # OpenSSL's only words for a key it cannot load
                raise
            raise ssl.SSLError(
                exc.errno,
                "could not load the client certificate or key (sslcert, sslkey): a wrong or "
                f"missing sslpassword for an encrypted key, or not a PEM file ({exc})",
            ) from exc
        return _AsyncpgConnection(conn)


class _PsycopgConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch_row(self, query: str) -> Sequence[Any]:
        cursor = await self._conn.execute(query)
        row = await cursor.fetchone()
        if row is None:
            raise RuntimeError("the probe query returned no row")
        return tuple(row)

    def terminate(self) -> None:
        # shutdown() on a duplicate of the socket wakes any pending read with
        # EOF at once; the libpq handle is freed later by release(), when no
        # coroutine still watches its file descriptor.
        with contextlib.suppress(Exception):
            fd = self._conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    async def close(self) -> None:
        await self._conn.close()

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.pgconn.finish()

    @property
    def is_closed(self) -> bool:
        return bool(self._conn.closed)


_PSYCOPG_PARAMS = (
    "user",
    "password",
    *_LIBPQ_SETTINGS,
    "channel_binding",
)


class PsycopgDriver:
    """psycopg 3 (async), autocommit so a probe never leaves a transaction open.

    Every connection setting goes to libpq, which honours them all.
    """

    name = "psycopg"

    def check(self, options: ConnectOptions) -> None:
        """libpq takes every setting of :class:`ConnectOptions`: nothing to refuse."""

    async def connect(
        self, address: HostAddress, options: ConnectOptions, timeout: float
    ) -> ProbeConnection:
        import psycopg

        params: dict[str, Any] = {
            "host": address.host,
            "port": address.port,
            "application_name": options.application_name or "topology-probe",
            # libpq's own minimum is 2 s; the caller's deadline is the real bound.
            "connect_timeout": max(2, math.ceil(timeout)),
        }
        for key in _PSYCOPG_PARAMS:
            value = getattr(options, key)
            if value is not None:
                params[key] = value
        if options.database is not None:
            params["dbname"] = options.database
        conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
        return _PsycopgConnection(conn)


DRIVERS: dict[str, type[AsyncpgDriver] | type[PsycopgDriver]] = {
    "asyncpg": AsyncpgDriver,
    "psycopg": PsycopgDriver,
}


def get_driver(driver: str | ProbeDriver) -> ProbeDriver:
    """Return a driver instance for ``"asyncpg"`` / ``"psycopg"`` or pass one through."""
    if not isinstance(driver, str):
        return driver
    try:
        return DRIVERS[driver]()
    except KeyError:
        raise ConfigurationError(
            f"unknown probe driver {driver!r}: expected one of {', '.join(sorted(DRIVERS))}"
        ) from None
