"""The two probe drivers (asyncpg, psycopg) behind one tiny interface.

A driver opens a :class:`ProbeConnection`; a probe connection runs one query
and returns its single row, and can be *terminated*: its socket is torn
down at once without waiting for the server, which is how a probe abandons
a frozen or black-holed host. Neither driver is imported before it is used
(both are optional dependencies).

Parameters: every connection parameter the URL gives (the
:class:`ConnectOptions` fields and the others, kept in ``extra``) is either
honoured by the probe or refused with a :class:`ConfigurationError` naming
it and the driver, never dropped in silence: the probes send the same
password as the engines, so they must authenticate and encrypt the same way.
psycopg hands every one to libpq (which refuses those it does not know);
asyncpg honours ``sslnegotiation``, ``ssl_min_protocol_version``,
``ssl_max_protocol_version``, ``krbsrvname``, ``gsslib``, ``passfile`` and
``service`` (through its libpq-style DSN) and ``gssencmode=disable/prefer``
(it never encrypts with GSSAPI), and refuses the others (``require_auth``,
``gssencmode=require``, ``keepalives``...). asyncpg's spelling ``ssl=true``
means ``sslmode=verify-full`` (what asyncpg does with ``ssl=True``),
``ssl=false`` means ``disable``; both drivers take it. Only the parameters
of an engine's dialect (``prepared_statement_cache_size``,
``prepare_threshold``), which say nothing about where or how to connect,
are left to the engines.

Timeouts: the drivers bound nothing themselves except where noted; the
caller (:mod:`topology.probing.prober`) wraps every await in its deadline.
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
from topology.hosts import SSLMODES, ConnectOptions, HostAddress

__all__ = ["DRIVERS", "ProbeConnection", "ProbeDriver", "get_driver", "probe_settings"]


class ProbeConnection(Protocol):
    """One open connection to one host, used by a single task at a time."""

    async def fetch_row(self, query: str) -> Sequence[Any]:
        """Run ``query`` and return its only row (unbounded: the caller bounds it)."""

    async def execute(self, statement: str) -> None:
        """Run ``statement``, which returns no row (unbounded: the caller bounds it).

        Optional for a driver of one's own: without it, no promotion watch
        (:mod:`topology.probing._watch`) runs on its connections.
        """

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
        if row is None:
            raise RuntimeError("the probe query returned no row")
        return tuple(row)

    async def execute(self, statement: str) -> None:
        await self._conn.execute(statement)  # no arguments: the simple query protocol

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


_UNREADABLE_KEY = (
    "could not load the client certificate or key (sslcert, sslkey): a wrong or "
    "missing sslpassword for an encrypted key, or not a PEM file ({})"
)
_SSL_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl")
_LIBPQ_SETTINGS = (*_SSL_PARAMETERS, "options")
# asyncpg's ssl=<bool>, as SQLAlchemy users write it: ssl=True is verify-full there.
_SSL_WORDS = {
    **dict.fromkeys(("true", "1", "yes", "on"), "verify-full"),
    **dict.fromkeys(("false", "0", "no", "off"), "disable"),
}
# Options of an engine's SQLAlchemy dialect, not of the connection: nothing to honour.
_ENGINE_ONLY = frozenset({"prepared_statement_cache_size", "prepare_threshold"})
# Given by topology itself (the host probed, the fields of ConnectOptions):
# as an extra they would contradict it.
_RESERVED = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "user",
        "password",
        "dbname",
        "database",
        "application_name",
        "connect_timeout",
        "channel_binding",
        "target_session_attrs",
        *_LIBPQ_SETTINGS,
    }
)
# What asyncpg's DSN parser takes besides _LIBPQ_SETTINGS (asyncpg.connect_utils).
_ASYNCPG_EXTRA = frozenset(
    {
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "passfile",
        "service",
    }
)
_NAME_CHARS = 64


def _sslmode_of(value: str) -> str:
    mode = value if value in SSLMODES else _SSL_WORDS.get(value.strip().lower())
    if mode is None:
        raise ConfigurationError(
            "invalid ssl value: expected true or false (asyncpg's spelling) or an sslmode "
            f"({', '.join(sorted(SSLMODES))})"
        )
    return mode


def probe_settings(options: ConnectOptions) -> dict[str, str]:
    """libpq's settings of ``options`` besides the host, the login and the timeouts.

    The TLS fields and ``options``, then every extra parameter but the
    dialect-only ones, with ``ssl=<bool>`` (asyncpg's spelling) turned into
    its ``sslmode``. Raises :class:`ConfigurationError` for a parameter given
    twice or in a way that contradicts another. Pure; never holds a value in
    an error message (a parameter may be a secret).
    """
    settings = {
        key: str(value) for key in _LIBPQ_SETTINGS if (value := getattr(options, key)) is not None
    }
    for key, value in options.extra:
        name = key[:_NAME_CHARS]
        if key in _ENGINE_ONLY:
            continue
        if key == "ssl":
            mode = _sslmode_of(value)
            if settings.setdefault("sslmode", mode) != mode:
                raise ConfigurationError(
                    "the connection settings give ssl and sslmode, which disagree: keep sslmode"
                )
        elif key in _RESERVED or key in settings:
            raise ConfigurationError(
                f"the connection parameter {name} is given twice, or where topology sets it"
                " itself: give it once, as a ConnectOptions field where there is one"
            )
        else:
            settings[key] = value
    return settings


class AsyncpgDriver:
    """asyncpg: TLS settings and ``options`` go through a query-only DSN, parsed like libpq.

    asyncpg builds the SSL context from it (``verify-full`` checks the host
    name, ``sslpassword`` decrypts the key) and sends ``options`` in the
    startup packet. It never uses channel binding: :meth:`check` refuses
    ``channel_binding=prefer/require``.
    """

    name = "asyncpg"

    def check(self, options: ConnectOptions) -> dict[str, str]:
        """The DSN settings for ``options``; ConfigurationError for one it cannot honour."""
        if options.channel_binding not in (None, "disable"):
            raise ConfigurationError(
                f"channel_binding={options.channel_binding} cannot be honoured by asyncpg, "
                "which never uses channel binding: probe with driver='psycopg', "
                "or set channel_binding=disable"
            )
        settings = probe_settings(options)
        for key, value in settings.items():
            if key in _LIBPQ_SETTINGS or key in _ASYNCPG_EXTRA:
                continue
            if key == "gssencmode" and value in ("disable", "prefer"):
                continue  # asyncpg never encrypts with GSSAPI: prefer falls back, as libpq may
            shown = f"{key[:_NAME_CHARS]}=require" if key == "gssencmode" else key[:_NAME_CHARS]
            raise ConfigurationError(
                f"asyncpg probes cannot honour {shown}; use the psycopg probe driver"
                " (driver='psycopg') or remove it"
            )
        return {key: value for key, value in settings.items() if key != "gssencmode"}

    async def connect(
        self, address: HostAddress, options: ConnectOptions, timeout: float
    ) -> ProbeConnection:
        import asyncpg  # type: ignore[import-untyped]

        dsn = self.check(options)
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
            raise ssl.SSLError(exc.errno, _UNREADABLE_KEY.format(exc)) from exc
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

    async def execute(self, statement: str) -> None:
        await self._conn.execute(statement)

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


class PsycopgDriver:
    """psycopg 3 (async), autocommit so a probe never leaves a transaction open.

    Every connection setting goes to libpq, which honours them all
    (:meth:`check` refuses those this libpq does not know).
    """

    name = "psycopg"

    def check(self, options: ConnectOptions) -> dict[str, str]:
        """The libpq settings for ``options``; :class:`ConfigurationError` for one libpq lacks."""
        settings = probe_settings(options)
        extra = {key: value for key, value in settings.items() if key not in _LIBPQ_SETTINGS}
        if extra:
            from psycopg import ProgrammingError
            from psycopg.conninfo import make_conninfo

            for key, value in extra.items():
                try:
                    make_conninfo("", **{key: value})  # libpq's own parser: no connection
                except ProgrammingError:
                    raise ConfigurationError(
                        f"psycopg probes cannot honour {key[:_NAME_CHARS]}: this libpq does not"
                        " know it; remove it"
                    ) from None
        return settings

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
        for key in ("user", "password", "channel_binding"):
            value = getattr(options, key)
            if value is not None:
                params[key] = value
        params.update(self.check(options))
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
