"""The probe login: a login of its own for the probes, and the grants it needs.

Probes connect to every host they are given, including hosts a DCS names,
so they should not carry the application's password nor its rights to
write. ``ClusterResolver(..., probe_user=, probe_password=)``, the URL's
``?probe_user=...&probe_password=...`` and ``from_patroni(probe_user=...)``
give the probes that login; :func:`for_probes` turns connection options into
the probes' (everything else, TLS included, is shared). One form for all
three (two keywords named like the URL parameters) rather than an object of
its own: the URL can only carry strings, and ``user=`` / ``password=`` are
keywords already.

What each column of the probe query needs (measured on PostgreSQL 15):

- a plain ``CREATE ROLE probe LOGIN``: every column the resolver uses, since
  PostgreSQL grants EXECUTE on these functions, SELECT on
  ``pg_stat_wal_receiver`` and CONNECT on databases to PUBLIC;
- a standby's timeline (``received_tli``, shown by the CLI, unused by the
  resolver) is NULL without ``pg_read_all_stats`` (or ``pg_monitor``);
- ``pg_control_system()`` revoked: the system identifier is unknown (the
  prober then probes without it, so foreign hosts cannot be told apart);
- any other function, the view, or CONNECT revoked: the probe fails with
  :attr:`~topology.errors.Reason.MISSING_GRANT` naming the GRANT to run.

Which grant is missing is read from the catalog (``has_function_privilege``
and friends, run on the connection that was refused), after a SQLSTATE
42501 insufficient_privilege: never from the words of a message. At
connect, 42501 means the database's CONNECT privilege (asyncpg gives that
SQLSTATE; libpq, under psycopg, reports connection failures as text only).

Timeouts: :func:`lacking_grants` runs one query and bounds nothing itself
(the prober wraps it in the probe's deadline); :func:`check_grants` bounds
its connect, its query and its close by ``timeout`` each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from topology.errors import ProbeError, Reason, classify, redact
from topology.hosts import ConnectOptions, HostAddress
from topology.probing.drivers import ProbeConnection, ProbeDriver

__all__ = [
    "Grant",
    "GrantReport",
    "check_grants",
    "connect_denied",
    "for_probes",
    "lacking_grants",
    "missing_grant",
]


@dataclass(frozen=True, slots=True)
class Grant:
    """One privilege the probe uses: how to test it, how to give it, what lacks without it.

    ``required``: the probe query fails without it; otherwise ``effect``
    says what degrades. ``statement`` has ``{role}`` (and ``{database}``)
    placeholders.
    """

    name: str
    test: str
    statement: str
    required: bool
    effect: str

    def grant(self, role: str, database: str = "") -> str:
        """The GRANT to run (as a superuser) for ``role``."""
        return self.statement.format(role=quote_ident(role), database=quote_ident(database))


def _execute(signature: str, required: bool = True, effect: str = "the probe fails") -> Grant:
    return Grant(
        f"EXECUTE on pg_catalog.{signature}",
        f"pg_catalog.has_function_privilege('pg_catalog.{signature}', 'EXECUTE')",
        f"GRANT EXECUTE ON FUNCTION pg_catalog.{signature} TO {{role}}",
        required,
        effect,
    )


# Every function and relation of topology.probing.result's probe queries (a test
# checks the list against the query text), then the optional ones.
GRANTS: tuple[Grant, ...] = (
    _execute("pg_is_in_recovery()"),
    _execute("pg_current_wal_lsn()"),
    _execute("pg_last_wal_replay_lsn()"),
    _execute("pg_last_wal_receive_lsn()"),
    _execute("pg_last_xact_replay_timestamp()"),
    _execute("pg_walfile_name(pg_catalog.pg_lsn)"),
    _execute("pg_wal_lsn_diff(pg_catalog.pg_lsn, pg_catalog.pg_lsn)"),
    _execute("substr(pg_catalog.text, pg_catalog.int4, pg_catalog.int4)"),
    _execute('concat("any")'),
    _execute("now()"),
    Grant(
        "SELECT on pg_catalog.pg_stat_wal_receiver",
        "pg_catalog.has_table_privilege('pg_catalog.pg_stat_wal_receiver', 'SELECT')",
        "GRANT SELECT ON pg_catalog.pg_stat_wal_receiver TO {role}",
        True,
        "the probe fails",
    ),
    _execute(
        "pg_control_system()",
        required=False,
        effect="the system identifier is unknown: hosts of another cluster are not told apart",
    ),
    Grant(
        "membership in pg_read_all_stats",
        "pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')",
        "GRANT pg_read_all_stats TO {role}",
        False,
        "a standby's timeline is unknown (the CLI shows none; the resolver does not use it)",
    ),
)
IDENTITY = GRANTS[-2]
GRANTS_QUERY = "SELECT " + ", ".join(grant.test for grant in GRANTS)
CONNECT = Grant(
    "CONNECT on the database",
    "",
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    True,
    "no connection",
)


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier: bare when plainly lower-case, else double-quoted."""
    if name.isidentifier() and name.isascii() and name == name.lower():
        return name
    return '"' + name.replace('"', '""') + '"'


def for_probes(options: ConnectOptions) -> ConnectOptions:
    """The options the probes connect with: the probe login when one is set."""
    if options.probe_user is None:
        return options
    return options.replace(
        user=options.probe_user,
        password=options.probe_password,
        probe_user=None,
        probe_password=None,
    )


async def lacking_grants(conn: ProbeConnection) -> tuple[Grant, ...]:
    """The grants of :data:`GRANTS` the connection's login lacks (one query; unbounded)."""
    row = await conn.fetch_row(GRANTS_QUERY)
    return tuple(grant for grant, held in zip(GRANTS, row, strict=True) if not held)


def missing_grant(host: str, lacking: Sequence[Grant], options: ConnectOptions) -> ProbeError:
    """A MISSING_GRANT error naming the GRANT statement(s) the required ones need."""
    role = options.user or "the probe login"
    required = [grant.grant(role, options.database or "") for grant in lacking if grant.required]
    return ProbeError(host, Reason.MISSING_GRANT, "; ".join(required) + " (run as a superuser)")


def connect_denied(error: ProbeError, options: ConnectOptions) -> ProbeError:
    """``error`` of a connect, turned into MISSING_GRANT (CONNECT) if the server said 42501."""
    if error.reason is not Reason.PERMISSION_DENIED:
        return error
    return missing_grant(error.host, (CONNECT,), options)


@dataclass(frozen=True, slots=True)
class GrantReport:
    """What one host said of the login: the grants it lacks, or why it could not tell."""

    host: str
    user: str | None
    lacking: tuple[Grant, ...] = ()
    error: ProbeError | None = None

    @property
    def complete(self) -> bool:
        """True when the login holds every grant, optional ones included."""
        return self.error is None and not self.lacking


async def check_grants(
    address: HostAddress, options: ConnectOptions, driver: ProbeDriver, timeout: float
) -> GrantReport:
    """Connect as the probes do and list the grants the login lacks; never raises but
    on cancellation. The connect, the query and the close are each bounded by ``timeout``."""
    options = for_probes(options)
    host = str(address)
    try:
        conn = await asyncio.wait_for(driver.connect(address, options, timeout), timeout)
    except Exception as exc:  # every failure is reported, classified
        error = ProbeError(host, classify(exc), _detail(exc, options))
        return GrantReport(host, options.user, error=connect_denied(error, options))
    try:
        lacking = await asyncio.wait_for(lacking_grants(conn), timeout)
    except Exception as exc:
        return GrantReport(
            host, options.user, error=ProbeError(host, classify(exc), _detail(exc, options))
        )
    finally:
        try:
            await asyncio.wait_for(conn.close(), timeout)
        except Exception:  # a polite close that fails: tear the socket down
            conn.terminate()
            conn.release()
    return GrantReport(host, options.user, lacking)


def _detail(exc: BaseException, options: ConnectOptions) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(text, [options.password, options.sslpassword])
