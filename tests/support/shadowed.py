"""``shadowed``: a login whose search_path runs a hostile schema before pg_catalog.

On ``pg_replicated`` (a primary and two streaming replicas) the fixture makes,
once per cluster build, a database ``shadowdb`` holding a schema ``evil``
with one impostor for every catalog function, view, type and operator the
statements of ctxdb and topology use, each giving a wrong value or a wrong
type (:data:`SHADOWS`), and a role ``shadowed`` with
``ALTER ROLE shadowed IN DATABASE shadowdb SET search_path = evil, pg_catalog``:
the configuration (an explicit ``pg_catalog`` after another schema) under
which PostgreSQL resolves unqualified names in ``evil`` first (CVE-2018-1058).
The role and database replicate, so every node serves the same login.

The role is no superuser: it has ``pg_read_all_stats`` (so a standby's
``received_tli`` is visible) and a table of its own (``public.shadow_writes``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from compose.pg import PostgresNode, ReplicatedCluster

__all__ = ["SHADOWS", "Shadowed"]

DATABASE = "shadowdb"
ROLE = "shadowed"
MIXED = "mixed"  # plain on the cluster, shadowed on pg_foreign
# Set once per test session: a rebuilt cluster gets the same password again.
PASSWORD = secrets.token_urlsafe(16)

# Each impostor gives what the catalog never would: the opposite recovery
# state, positions at 0/10 or FFFF/0, timeline 99, the year 2000, or a value
# of another type (text where a bigint or an LSN is due).
SHADOWS = """
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.pg_is_in_recovery() RETURNS pg_catalog.bool
    LANGUAGE sql AS 'SELECT NOT pg_catalog.pg_is_in_recovery()';
CREATE FUNCTION evil.pg_current_wal_lsn() RETURNS pg_catalog.pg_lsn
    LANGUAGE sql AS $$SELECT '0/10'::pg_catalog.pg_lsn$$;
CREATE FUNCTION evil.pg_last_wal_replay_lsn() RETURNS pg_catalog.pg_lsn
    LANGUAGE sql AS $$SELECT 'FFFF/0'::pg_catalog.pg_lsn$$;
CREATE FUNCTION evil.pg_last_wal_receive_lsn() RETURNS pg_catalog.pg_lsn
    LANGUAGE sql AS $$SELECT 'FFFF/0'::pg_catalog.pg_lsn$$;
CREATE FUNCTION evil.pg_current_wal_insert_lsn() RETURNS pg_catalog.text
    LANGUAGE sql AS $$SELECT 'not an lsn'::pg_catalog.text$$;
CREATE FUNCTION evil.pg_walfile_name(pg_catalog.pg_lsn) RETURNS pg_catalog.text
    LANGUAGE sql AS $$SELECT '000000630000000000000001'::pg_catalog.text$$;
CREATE FUNCTION evil.pg_control_system() RETURNS TABLE (system_identifier pg_catalog.text)
    LANGUAGE sql AS $$SELECT 'foreign'::pg_catalog.text$$;
CREATE FUNCTION evil.pg_last_xact_replay_timestamp() RETURNS pg_catalog.timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.now() RETURNS pg_catalog.timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.pg_wal_lsn_diff(pg_catalog.pg_lsn, pg_catalog.pg_lsn)
    RETURNS pg_catalog.numeric LANGUAGE sql AS 'SELECT -1::pg_catalog.numeric';
CREATE FUNCTION evil.substr(pg_catalog.text, pg_catalog.int4, pg_catalog.int4)
    RETURNS pg_catalog.text LANGUAGE sql AS $$SELECT '00000063'::pg_catalog.text$$;
CREATE FUNCTION evil.concat(pg_catalog.text, pg_catalog.text)
    RETURNS pg_catalog.text LANGUAGE sql AS $$SELECT 'x00000063'::pg_catalog.text$$;
CREATE FUNCTION evil.pg_sleep(pg_catalog.float8) RETURNS pg_catalog.void
    LANGUAGE sql AS 'SELECT NULL::pg_catalog.void';
CREATE FUNCTION evil.clock_timestamp() RETURNS pg_catalog.timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.make_interval(secs pg_catalog.float8) RETURNS pg_catalog.interval
    LANGUAGE sql AS $$SELECT '100 years'::pg_catalog.interval$$;
CREATE FUNCTION evil.timestamptz_pl_interval(pg_catalog.timestamptz, pg_catalog.interval)
    RETURNS pg_catalog.timestamptz LANGUAGE sql AS $$SELECT 'infinity'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.timestamptz_lt(pg_catalog.timestamptz, pg_catalog.timestamptz)
    RETURNS pg_catalog.bool LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_stat_get_wal_receiver() RETURNS TABLE (pid pg_catalog.int4)
    LANGUAGE sql AS 'SELECT NULL::pg_catalog.int4';
CREATE DOMAIN evil.bool AS pg_catalog.bool CHECK (VALUE IS NULL);
CREATE DOMAIN evil.timestamptz AS pg_catalog.timestamptz CHECK (false);
CREATE VIEW evil.pg_stat_wal_receiver AS SELECT 99::pg_catalog.int4 AS received_tli;
GRANT SELECT ON evil.pg_stat_wal_receiver TO PUBLIC;
CREATE OPERATOR evil.- (
    LEFTARG = pg_catalog.pg_lsn, RIGHTARG = pg_catalog.pg_lsn, FUNCTION = evil.pg_wal_lsn_diff);
CREATE OPERATOR evil.|| (
    LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = evil.concat);
CREATE DOMAIN evil.pg_lsn AS pg_catalog.text CHECK (VALUE = 'never');
CREATE DOMAIN evil.text AS pg_catalog.text CHECK (VALUE = 'never');
CREATE DOMAIN evil.int4 AS pg_catalog.int4 CHECK (VALUE = -1);
CREATE DOMAIN evil.int8 AS pg_catalog.int8 CHECK (VALUE = -1);
CREATE DOMAIN evil."bit" AS pg_catalog.bit(32) CHECK (false);
CREATE TABLE public.shadow_writes (id serial PRIMARY KEY, v pg_catalog.text);
"""

# The measurement: pg_control_system() alone, giving text for the bigint.
SHADOW_IDENTITY = """
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.pg_control_system() RETURNS TABLE (system_identifier pg_catalog.text)
    LANGUAGE sql AS $$SELECT 'foreign'::pg_catalog.text$$;
"""


@dataclass
class Shadowed:
    """The cluster and the hostile login's settings (``password`` is never printed)."""

    cluster: ReplicatedCluster
    user: str = ROLE
    database: str = DATABASE
    password: str = field(default=PASSWORD, repr=False)


def _with_password(statement: str) -> sql.Composed:
    return sql.SQL(statement).format(sql.Literal(PASSWORD))  # type: ignore[arg-type]


def _install(cluster: ReplicatedCluster) -> None:
    primary = cluster.primary
    if cluster.value(primary, "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)):
        cluster.query(primary, _with_password(f"ALTER ROLE {ROLE} PASSWORD {{}}"))
        return
    cluster.query(primary, f"DROP ROLE IF EXISTS {ROLE}")
    cluster.query(primary, _with_password(f"CREATE ROLE {ROLE} LOGIN PASSWORD {{}}"))
    # pg_read_all_stats: a standby's received_tli is NULL without it.
    cluster.query(primary, f"GRANT pg_read_all_stats TO {ROLE}")
    cluster.query(primary, f"CREATE DATABASE {DATABASE}")
    with cluster.connect(primary) as admin:
        admin.execute(
            f"ALTER ROLE {ROLE} IN DATABASE {DATABASE} SET search_path = evil, pg_catalog"
        )
    conninfo = primary.conninfo(DATABASE)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SHADOWS)  # type: ignore[arg-type]  # a literal of this module
        conn.execute(f"GRANT ALL ON public.shadow_writes, public.shadow_writes_id_seq TO {ROLE}")
    cluster.wait_caught_up()


@pytest.fixture
def shadowed(replicated: ReplicatedCluster) -> Shadowed:
    """The healthy cluster with the hostile login in place (made once per cluster build)."""
    _install(replicated)
    return Shadowed(replicated)


def _admin(node: PostgresNode, database: str, statements: list[sql.Composable]) -> None:
    with psycopg.connect(node.conninfo(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def shadowed_foreign(shadowed: Shadowed, pg_foreign: PostgresNode) -> Shadowed:
    """A login ``mixed`` (to ``shadowdb``) that is plain on the cluster and, on
    ``pg_foreign`` (another cluster), sees :data:`SHADOW_IDENTITY`: one hostile host
    beside a healthy cluster."""
    mixed = Shadowed(shadowed.cluster, user=MIXED)
    create = _with_password(f"CREATE ROLE {MIXED} LOGIN PASSWORD {{}}")
    primary = shadowed.cluster.primary
    if not shadowed.cluster.value(primary, "SELECT 1 FROM pg_roles WHERE rolname = %s", (MIXED,)):
        shadowed.cluster.query(primary, create)
        shadowed.cluster.wait_caught_up()
    with psycopg.connect(pg_foreign.conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (MIXED,)).fetchone():
            return mixed
    path = sql.SQL(f"ALTER ROLE {MIXED} IN DATABASE {DATABASE} SET search_path = evil, pg_catalog")
    _admin(pg_foreign, "postgres", [create, sql.SQL(f"CREATE DATABASE {DATABASE}"), path])
    _admin(pg_foreign, DATABASE, [sql.SQL(SHADOW_IDENTITY)])
    return mixed
