"""libpq connection parameters in an engine URL, made to work with asyncpg and psycopg.

One URL, written in libpq's spelling, serves every engine a DBConnect
builds, whichever driver it names::

    postgresql+asyncpg://app:pw@db1:5432,db2:5432/app?sslmode=verify-full
        &sslrootcert=/etc/ssl/db-ca.pem&sslcert=/etc/ssl/app.crt&sslkey=/etc/ssl/app.key
        &sslpassword=...&options=-c%20statement_timeout%3D5s

* The host list of the authority may name several hosts (a libpq
  multi-host URL, the same one a ``topology.ClusterResolver`` takes): it is
  left out here, since DBConnect puts one host into each engine it builds.
* psycopg hands every parameter to libpq, which honours them all;
  ``sslpassword`` moves to ``connect_args`` so that it never shows in the
  engine's URL (SQLAlchemy prints the query string, hiding only the password).
* asyncpg takes none of them as keywords. The TLS settings (``sslmode``,
  ``sslrootcert``, ``sslcert``, ``sslkey``, ``sslpassword``, ``sslcrl``) and
  ``options`` / ``application_name`` go into a query-only ``dsn``, which
  asyncpg parses like libpq at every connect: ``verify-full`` checks the host
  name, ``verify-ca`` does not, ``sslpassword`` decrypts the client key, and
  ``options`` is sent in the startup packet as libpq does. ``connect_timeout``
  becomes asyncpg's ``timeout``; ``target_session_attrs`` asyncpg takes as is.
  asyncpg never uses channel binding, so ``channel_binding=require`` or
  ``prefer`` is refused (``disable`` is what it does anyway).

Pure: reads no file and opens no connection. Bad values raise ``ValueError``
at once (when the DBConnect is made), never holding a password.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import URL, make_url

__all__ = ["engine_url"]

# libpq's TLS parameters, then two more (topology.drivers lists the same names:
# the packages never import each other).
_SSL_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl")
_ASYNCPG_DSN = (*_SSL_PARAMETERS, "options", "application_name")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_CHANNEL_BINDING = ("disable", "prefer", "require")


def _without_host_list(url: str) -> str:
    """``url`` without the hosts of its authority when it names more than one."""
    scheme, sep, rest = url.partition("://")
    query_at = rest.find("?")
    userinfo_end = rest.rfind("@", 0, query_at if query_at >= 0 else len(rest)) + 1
    ends = [i for i in (rest.find("/", userinfo_end), rest.find("?", userinfo_end)) if i >= 0]
    host_end = min(ends) if ends else len(rest)
    if "," not in rest[userinfo_end:host_end]:
        return url
    return scheme + sep + rest[:userinfo_end] + rest[host_end:]


def _single(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    if isinstance(value, tuple):
        raise ValueError(f"the engine URL gives {key} more than once")
    return value


def _check(url: URL) -> None:
    sslmode = _single(url, "sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        raise ValueError(f"invalid sslmode {sslmode!r}: expected one of {', '.join(_SSLMODES)}")
    binding = _single(url, "channel_binding")
    if binding is not None and binding not in _CHANNEL_BINDING:
        raise ValueError(
            f"invalid channel_binding {binding!r}: expected one of {', '.join(_CHANNEL_BINDING)}"
        )


def _for_asyncpg(url: URL) -> tuple[URL, dict[str, Any]]:
    if "ssl" in url.query and "sslmode" in url.query:
        raise ValueError("the engine URL gives both ssl and sslmode: keep sslmode")
    binding = _single(url, "channel_binding")
    if binding not in (None, "disable"):
        raise ValueError(
            f"channel_binding={binding} cannot be honoured by asyncpg, which never uses "
            "channel binding: use postgresql+psycopg:// for it, or channel_binding=disable"
        )
    args: dict[str, Any] = {}
    dsn = {key: _single(url, key) for key in _ASYNCPG_DSN if key in url.query}
    if dsn:
        # asyncpg merges a query-only DSN with the host, port and user given
        # as keywords, and builds the SSL context from it at every connect.
        args["dsn"] = "postgresql://?" + urlencode(dsn)
        if "sslcert" in dsn or "sslkey" in dsn:
            args["async_creator_fn"] = _connect_explaining_key_errors
    timeout = _single(url, "connect_timeout")
    if timeout is not None:
        try:
            seconds = float(timeout)
        except ValueError:
            raise ValueError(f"invalid connect_timeout {timeout!r}: expected seconds") from None
        if seconds > 0:  # libpq: 0 or less means no limit
            args["timeout"] = seconds
    dropped = (*_ASYNCPG_DSN, "channel_binding", "connect_timeout")
    return url.difference_update_query(dropped), args


async def _connect_explaining_key_errors(*args: Any, **kwargs: Any) -> Any:
    """asyncpg.connect, with OpenSSL's bare "PEM lib" turned into words a person can act on."""
    import asyncpg  # type: ignore[import-untyped]  # only engines that use it get here

    try:
        return await asyncpg.connect(*args, **kwargs)
    except ssl.SSLError as exc:
        if "PEM lib" not in str(exc):  # OpenSSL's only words for a key it cannot load
            raise
        raise ssl.SSLError(exc.errno, _UNREADABLE_KEY.format(exc)) from exc


_UNREADABLE_KEY = (
    "could not load the client certificate or key (sslcert, sslkey): a wrong or "
    "missing sslpassword for an encrypted key, or not a PEM file ({})"
)


def engine_url(url: str, connect_args: dict[str, Any] | None = None) -> tuple[URL, dict[str, Any]]:
    """The engine URL for ``url`` and the ``connect_args`` to build engines with.

    ``connect_args`` given by the user win over those derived from the URL.

    Example::

        base, args = engine_url("postgresql+asyncpg://app@db1,db2/app?sslmode=verify-full")
        engine = create_async_engine(base.set(host="db1"), connect_args=args)
    """
    base = make_url(_without_host_list(url))  # validates now, not at the first request
    base = base.difference_update_query(("host", "port"))  # DBConnect gives each engine its host
    # topology's probe login: not the engines', and SQLAlchemy prints the query string.
    base = base.difference_update_query(("probe_user", "probe_password"))
    _check(base)
    driver = base.get_driver_name()
    derived: dict[str, Any] = {}
    if driver == "asyncpg":
        base, derived = _for_asyncpg(base)
    elif driver.startswith("psycopg") and "sslpassword" in base.query:
        derived["sslpassword"] = _single(base, "sslpassword")
        base = base.difference_update_query(("sslpassword",))
    return base, {**derived, **(connect_args or {})}
