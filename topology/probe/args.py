"""Command-line arguments of ``python -m topology.probe``; bad ones raise :class:`UsageError`.

argparse would print a usage block and exit with status 2, which here
means "no primary": the parser raises instead, and the CLI prints one line
and exits with status 64 (EX_USAGE).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from topology.probe._render import LagLimit
from topology.probing.drivers import DRIVERS

__all__ = ["DEFAULT_MAX_LAG_BYTES", "Arguments", "DcsArgs", "UsageError", "parse_args", "parse_lag"]

DEFAULT_TIMEOUT = 1.0
DEFAULT_WATCH = 2.0
DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024  # one WAL segment
_SIZES = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_TIMES = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}
_LAG = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

DESCRIPTION = """\
Probe every PostgreSQL host once (or every few seconds with --watch) and show
its role (primary, replica, stale primary, foreign, down, unknown), round-trip
latency, replication lag and timeline, or why it could not be probed. All hosts
are probed concurrently: a run ends within about --timeout, however many hosts
are dead or black-holed."""

EPILOG = """\
hosts:
  name, name:port, IPv4[:port], [IPv6]:port, or one libpq URL such as
  postgresql://user@h1,h2:5433/db?sslmode=require (also given with --url).
  Without hosts: PGHOST / PGPORT (libpq lists), else localhost (with a DCS:
  only the members it lists).
  User and database: -U / -d, the URL, PGUSER / PGDATABASE, else the OS user.
  Password: the URL, else PGPASSWORD, else the password file (PGPASSFILE or
  ~/.pgpass, mode 0600, matched per host as libpq does). It is never printed.
  PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGSSLCRL, PGOPTIONS,
  PGCHANNELBINDING, PGCONNECT_TIMEOUT, PGAPPNAME apply as in libpq; a URL's
  sslpassword decrypts the key and is never printed either.

exit status:
  0   healthy: one primary, every host up, no replica lagging
  1   degraded: a host down or unknown, or a replica lagging
  2   no primary, or split brain (a stale primary still writable)
  3   with a DCS (--patroni-config, --etcd, --rest): the DCS and the database
      disagree (its leader is not the writable host, a member's role differs,
      a member SQL cannot reach, a probed host it does not list, no leader)
  4   with a DCS: the DCS could not be read (the reason per endpoint is shown)
  64  usage error (bad argument, host or URL)
  70  internal error
  With a DCS, 2 comes first, then 3 or 4, then 1.
  With --watch, Ctrl-C (or SIGTERM) ends the watch with status 0.
  With --check-grants: 0 the login holds every grant the probe uses, 1 only
  optional ones are missing, 2 a required one is missing or a host could not
  be checked (docs/topology.md, "The probe login").

DCS (Patroni's store): --patroni-config /etc/patroni.yml, or --etcd URLS
  --scope NAME [--namespace /service], or --rest URLS (Patroni's REST API).
  The DCS is read once (within --timeout per endpoint); its members are
  probed too, if trusted: a host given on the command line, one in
  --dcs-allow (names and/or CIDR networks, "*" for all), or every member
  under sslmode=verify-full. The first line says whether the DCS agrees
  with the database. The etcd password: $TOPOLOGY_DCS_PASSWORD for
  --dcs-user, else the YAML's (for its user); never from the command line,
  never printed.

JSON (--json): one document with schema "topology.probe/1"; with --watch,
one such document per line and round. See docs/probe-cli.md."""


@dataclass(frozen=True)
class DcsArgs:
    """Where the DCS is and how to log in to it (the password comes from the environment)."""

    config: str | None = None
    etcd: str | None = None
    scope: str | None = None
    namespace: str | None = None
    rest: str | None = None
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    allow: str | None = None


class UsageError(Exception):
    """A bad command line; the message is one line for the user."""


@dataclass(frozen=True)
class Arguments:
    hosts: tuple[str, ...]
    url: str | None
    user: str | None
    dbname: str | None
    timeout: float
    lag: LagLimit
    driver: str
    json: bool
    watch: float | None
    check_grants: bool = False
    dcs: DcsArgs | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):  # name the options, never echo their values
            names = [item.split("=", 1)[0] for item in message[len(prefix) :].split()]
            message = prefix + " ".join(names)
        raise UsageError(message)


def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} must be a number of seconds, not {text!r}") from None
    if not 0 < value < 86400 or value != value:
        raise UsageError(f"{what} must be between 0 and 86400 seconds, not {text!r}")
    return value


def parse_lag(texts: Sequence[str]) -> LagLimit:
    """``16MB``, ``1048576`` (bytes), ``500kB``, ``10s``, ``250ms``, ``2min``; one of each kind."""
    max_bytes: int | None = DEFAULT_MAX_LAG_BYTES
    max_seconds: float | None = None
    seen: set[str] = set()
    for text in texts:
        match = _LAG.match(text)
        unit = match.group(2).lower() if match else ""
        if match is None or (unit not in _SIZES and unit not in _TIMES):
            raise UsageError(
                f"--max-lag {text!r}: expected a size (16MB, 512kB, bytes) or a time (10s, 500ms)"
            )
        kind = "time" if unit in _TIMES else "size"
        if kind in seen:
            raise UsageError(f"--max-lag given twice as a {kind}")
        seen.add(kind)
        if kind == "time":
            max_seconds = float(match.group(1)) * _TIMES[unit]
        else:
            max_bytes = int(float(match.group(1)) * _SIZES[unit])
    return LagLimit(max_bytes, max_seconds)


def _normalize_watch(argv: Sequence[str]) -> list[str]:
    """``--watch`` takes an optional value: keep a following host from being taken for it."""
    result: list[str] = []
    items = list(argv)
    for i, item in enumerate(items):
        if item in ("--watch", "-w"):
            following = items[i + 1] if i + 1 < len(items) else None
            if following is None or not re.fullmatch(r"\d+(\.\d*)?|\.\d+", following):
                item = f"--watch={DEFAULT_WATCH}"
        result.append(item)
    return result


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m topology.probe",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_targets(parser)
    _add_run_options(parser)
    _add_dcs(parser)
    return parser


def _add_targets(parser: _Parser) -> None:
    """What to probe, and as whom."""
    add = parser.add_argument
    add("hosts", nargs="*", metavar="HOST", help="a host to probe, or one postgresql:// URL")
    add("--url", help="a libpq (multi-host) URL: postgresql://user@h1,h2:5433/db")
    add("-U", "--user", help="user name (default: the URL, PGUSER, else the OS user)")
    add("-d", "--dbname", help="database (default: the URL, PGDATABASE, else the user name)")


def _add_run_options(parser: _Parser) -> None:
    """How to probe (deadline, lag limit, driver), how to report, and how often."""
    add = parser.add_argument
    add(
        "--timeout",
        default=str(DEFAULT_TIMEOUT),
        metavar="SECONDS",
        help=f"deadline of each host's probe, and so of the whole run (default {DEFAULT_TIMEOUT})",
    )
    add(
        "--max-lag",
        action="append",
        default=[],
        metavar="LIMIT",
        help="a replica beyond it counts as lagging: a size (default 16MB) and/or a time "
        "(e.g. 10s); give the option once per kind",
    )
    add(
        "--driver",
        choices=sorted(DRIVERS),
        default="asyncpg",
        help="the probe driver (default asyncpg)",
    )
    add("--json", action="store_true", help="print JSON (schema topology.probe/1)")
    add(
        "--check-grants",
        action="store_true",
        help="say which grants the login lacks on each host, with the GRANT to run "
        "(exit 0: none, 1: optional ones, 2: required ones or a host unchecked)",
    )
    add(
        "-w",
        "--watch",
        nargs="?",
        const=str(DEFAULT_WATCH),
        default=None,
        metavar="SECONDS",
        help=f"probe every host again every SECONDS (default {DEFAULT_WATCH}) and redraw, "
        "until Ctrl-C; a slow host holds back only its own row",
    )


def _add_dcs(parser: _Parser) -> None:
    group = parser.add_argument_group("DCS (Patroni's store; the password: $TOPOLOGY_DCS_PASSWORD)")
    add = group.add_argument
    add("--patroni-config", metavar="PATH", help="a Patroni YAML: scope, namespace, etcd3, restapi")
    add("--etcd", metavar="URLS", help="etcd endpoints, http(s)://h1:2379,h2:2379 (with --scope)")
    add("--scope", help="Patroni's scope (its 'scope:' setting)")
    add("--namespace", help="Patroni's namespace (default /service)")
    add("--rest", metavar="URLS", help="Patroni REST API endpoints, http(s)://h1:8008,h2:8008")
    add("--dcs-cacert", metavar="PATH", help="CA bundle that signed the DCS's certificates")
    add("--dcs-cert", metavar="PATH", help="client certificate for the DCS")
    add("--dcs-key", metavar="PATH", help="client certificate's key for the DCS")
    add("--dcs-user", metavar="NAME", help="etcd user (password: $TOPOLOGY_DCS_PASSWORD)")
    add(
        "--dcs-allow",
        metavar="HOSTS",
        help='members that may be probed with your credentials: names, CIDR networks, or "*"',
    )


def _dcs_args(ns: argparse.Namespace) -> DcsArgs | None:
    dcs = DcsArgs(
        config=ns.patroni_config, etcd=ns.etcd, scope=ns.scope, namespace=ns.namespace,
        rest=ns.rest, cacert=ns.dcs_cacert, cert=ns.dcs_cert, key=ns.dcs_key,
        user=ns.dcs_user, allow=ns.dcs_allow,
    )  # fmt: skip
    sources = [name for name in ("config", "etcd", "rest") if getattr(dcs, name) is not None]
    if not sources:
        if dcs != DcsArgs():
            raise UsageError("DCS options need a DCS: --patroni-config, --etcd or --rest")
        return None
    if len(sources) > 1:
        raise UsageError("give one DCS: --patroni-config, --etcd or --rest")
    if dcs.etcd is not None and not dcs.scope:
        raise UsageError("--etcd needs Patroni's --scope")
    if dcs.rest is not None and (dcs.scope or dcs.namespace or dcs.user):
        raise UsageError("--rest takes no --scope, --namespace or --dcs-user")
    if dcs.key is not None and dcs.cert is None and dcs.config is None:
        raise UsageError("--dcs-key needs its --dcs-cert")
    return dcs


def parse_args(argv: Sequence[str]) -> Arguments:
    """Parse ``argv`` (without the program name); raises UsageError."""
    ns = _parser().parse_intermixed_args(_normalize_watch(argv))
    hosts = tuple(ns.hosts)
    url = ns.url
    urls = [h for h in hosts if "://" in h]
    if ns.check_grants and ns.watch is not None:
        raise UsageError("--check-grants and --watch do not go together")
    dcs = _dcs_args(ns)
    if dcs is not None and (ns.watch is not None or ns.check_grants):
        raise UsageError("a DCS (--patroni-config, --etcd, --rest) is read by a single run only")
    if urls:
        if url is not None or len(hosts) > 1:
            raise UsageError("give one URL alone, or hosts without a URL")
        url, hosts = urls[0], ()
    return Arguments(
        hosts=hosts,
        url=url,
        user=ns.user,
        dbname=ns.dbname,
        timeout=_seconds(ns.timeout, "--timeout"),
        lag=parse_lag(ns.max_lag),
        driver=ns.driver,
        json=ns.json,
        watch=None if ns.watch is None else _seconds(ns.watch, "--watch"),
        check_grants=ns.check_grants,
        dcs=dcs,
    )
