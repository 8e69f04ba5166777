"""What the CLI probes and how it logs in: hosts and per-host connection options.

Sources, in libpq's order of precedence: the command line (host arguments or
a URL, ``--user``, ``--dbname``), then the libpq environment (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGDATABASE``, ``PGPASSWORD``, ``PGPASSFILE``,
``PGSSLMODE``, ``PGSSLROOTCERT``, ``PGSSLCERT``, ``PGSSLKEY``, ``PGSSLCRL``,
``PGOPTIONS``, ``PGCHANNELBINDING``, ``PGCONNECT_TIMEOUT``, ``PGAPPNAME``), then
libpq's defaults (host ``localhost``, port 5432, the operating-system user,
a database named like the user). The password comes from the URL, else ``PGPASSWORD``, else
the password file, looked up per host as libpq does.

Pure apart from reading the password file; raises
:class:`~topology.errors.ConfigurationError` (never holding a password) on
bad input.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from topology.errors import ConfigurationError
from topology.hosts import (
    DEFAULT_PORT,
    ConnectOptions,
    HostAddress,
    parse_host_lists,
    parse_hosts,
    parse_url,
)
from topology.probe import pgpass
from topology.probing._probe_login import for_probes

__all__ = ["Target", "resolve_target"]

APPLICATION_NAME = "topology-probe"
_ENV_OPTIONS = (
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("options", "PGOPTIONS"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("application_name", "PGAPPNAME"),
)


@dataclass(frozen=True)
class Target:
    """Hosts to probe, the options for each (same order), and every secret in play.

    ``secrets`` lists the passwords (``sslpassword`` too) so that output can
    be scrubbed of them;
    it is left out of ``repr``.
    """

    hosts: tuple[HostAddress, ...]
    options: tuple[ConnectOptions, ...]
    password_source: str
    secrets: tuple[str, ...] = ()
    common: ConnectOptions = field(default_factory=ConnectOptions)  # all but the password

    def __repr__(self) -> str:
        return f"Target({', '.join(map(str, self.hosts))}, password from {self.password_source})"


def _default_port(env: Mapping[str, str]) -> int:
    text = env.get("PGPORT", "").strip()
    if not text:
        return DEFAULT_PORT
    if "," in text:
        raise ConfigurationError("PGPORT holds a list: give hosts with their ports (name:port)")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(f"invalid PGPORT {text!r}: expected 1-65535")
    return int(text)


def _hosts_and_options(
    hosts: Sequence[str], url: str | None, env: Mapping[str, str], default_hosts: bool
) -> tuple[tuple[HostAddress, ...], ConnectOptions]:
    if url is not None:
        if hosts:
            raise ConfigurationError("give either hosts or a URL, not both")
        return parse_url(url)
    if hosts:
        return parse_hosts(list(hosts), _default_port(env)), ConnectOptions()
    if not default_hosts:  # a DCS names the hosts: no PGHOST, no localhost
        return (), ConnectOptions()
    if env.get("PGHOST", "").strip():
        return parse_host_lists(env["PGHOST"], env.get("PGPORT") or None), ConnectOptions()
    return (HostAddress("localhost", _default_port(env)),), ConnectOptions()


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a bare container)
        return None


def _connect_timeout(env: Mapping[str, str]) -> float | None:
    text = env.get("PGCONNECT_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigurationError(f"invalid PGCONNECT_TIMEOUT {text!r}: expected seconds") from None
    return None if seconds <= 0 else seconds  # libpq: 0 or less means no limit


def resolve_target(
    hosts: Sequence[str],
    url: str | None,
    env: Mapping[str, str],
    *,
    user: str | None = None,
    database: str | None = None,
    warn: Callable[[str], None] = lambda message: None,
    extra: Sequence[HostAddress] = (),
    default_hosts: bool = True,
) -> Target:
    """Combine the command line and the environment (see the module docstring).

    ``extra``: more hosts (a DCS's members), after the given ones, each once.
    ``default_hosts=False``: no PGHOST / localhost when no host is given.
    """
    addresses, options = _hosts_and_options(hosts, url, env, default_hosts)
    if extra:
        addresses = tuple(dict.fromkeys((*addresses, *extra)))
    options = for_probes(options)  # a URL's probe_user: the CLI is a probe too
    changes: dict[str, object] = {
        "user": user or options.user or env.get("PGUSER") or _os_user(),
    }
    changes["database"] = database or options.database or env.get("PGDATABASE") or changes["user"]
    for name, variable in _ENV_OPTIONS:
        if getattr(options, name) is None and env.get(variable):
            changes[name] = env[variable]
    if options.connect_timeout is None:
        changes["connect_timeout"] = _connect_timeout(env)
    if options.application_name is None and "application_name" not in changes:
        changes["application_name"] = APPLICATION_NAME
    options = options.replace(**changes)
    return _with_passwords(addresses, options, env, warn)


def _with_passwords(
    addresses: tuple[HostAddress, ...],
    options: ConnectOptions,
    env: Mapping[str, str],
    warn: Callable[[str], None],
) -> Target:
    """Each host's password: the URL's, else PGPASSWORD, else the password file's."""
    key_secret = (options.sslpassword,) if options.sslpassword else ()
    if options.password is not None:
        secrets = (options.password, *key_secret)
        return Target(addresses, (options,) * len(addresses), "URL", secrets, options)
    if env.get("PGPASSWORD"):
        password = env["PGPASSWORD"]
        shared = options.replace(password=password)
        secrets = (password, *key_secret)
        return Target(addresses, (shared,) * len(addresses), "PGPASSWORD", secrets, options)
    passfile = dict(options.extra).get("passfile")
    path = pgpass.default_path(env, passfile)
    per_host: list[ConnectOptions] = []
    warnings: set[str] = set()

    def warn_once(message: str) -> None:
        if message not in warnings:
            warnings.add(message)
            warn(message)

    for address in addresses:
        found = pgpass.lookup(
            path, address.host, address.port, options.database, options.user, warn_once
        )
        per_host.append(options if found is None else options.replace(password=found))
    secrets = tuple(sorted({o.password for o in per_host if o.password}))
    source = "password file" if secrets else "none"
    return Target(addresses, tuple(per_host), source, secrets + key_secret, options)
