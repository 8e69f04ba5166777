"""Host lists and libpq multi-host URLs.

Accepted host forms: ``name``, ``name:port``, ``192.0.2.1:5433``,
``[2001:db8::1]:5433``, ``[::1]`` and a bare IPv6 address such as ``::1``
(a bare IPv6 address takes the default port: use brackets to give one).
The default port is 5432. Lists are comma-separated strings or iterables;
duplicates are dropped, the first occurrence keeps its place.

URLs follow libpq: ``postgresql://user:pw@h1:5432,h2,[::1]:5433/db?sslmode=require``
(``postgres://`` and SQLAlchemy's ``postgresql+driver://`` are accepted too);
``host=`` / ``port=`` query parameters override the hosts of the authority,
as in libpq. The user and password end at the last ``@`` before the first
``/``: a password may hold ``?``, ``#`` and ``@`` unescaped, but a ``/`` must
be written ``%2F``. Known connection options are validated; other query
parameters are kept in :attr:`ConnectOptions.extra` untouched. The same URL
can be given to ``ctxdb.DBConnect(url=...)``, which reads the same libpq
parameters for its engines.

Bad input raises :class:`~topology.errors.ConfigurationError` (a
``ValueError``) whose message names the bad part, never the password.
Unix-domain socket directories are refused: topology probes TCP hosts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from topology.errors import ConfigurationError

__all__ = [
    "CHANNEL_BINDINGS",
    "DEFAULT_PORT",
    "SSLMODES",
    "TARGET_SESSION_ATTRS",
    "ConnectOptions",
    "HostAddress",
    "parse_host",
    "parse_host_lists",
    "parse_hosts",
    "parse_url",
]

DEFAULT_PORT = 5432
SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
TARGET_SESSION_ATTRS = frozenset(
    {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
)
CHANNEL_BINDINGS = frozenset({"disable", "prefer", "require"})
# A quoted value in an error message: 'text' or "text", as repr() writes it.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
_SCHEME = re.compile(r"^(?:postgres|postgresql)(?:\+[A-Za-z0-9_]+)?://", re.IGNORECASE)


@dataclass(frozen=True, slots=True, order=True)
class HostAddress:
    """A TCP host and port. ``str()`` gives ``host:port`` (``[v6]:port`` for IPv6)."""

    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        _check_port(self.port, self.host)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_PORT) -> HostAddress:
        """Parse one host (see the module docstring for the forms)."""
        return parse_host(text, default_port)


def _check_port(port: object, host: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(f"invalid port {port!r} for host {host!r}: expected 1-65535")
    return port


def _parse_port(text: str, host: str) -> int:
    # ASCII only: str.isdigit() also accepts "²" (int() refuses it) and other scripts'
    # digits; five digits at most, since int() refuses strings past 4300 digits.
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 0 < int(text) < 65536:
        raise ConfigurationError(f"invalid port {text!r} for host {host!r}: expected 1-65535")
    return int(text)


def _check_name(name: str, original: str) -> str:
    if name.startswith("/") or name.startswith("@"):
        raise ConfigurationError(
            f"Unix-domain socket {name!r} is not supported: give TCP hosts (name:port)"
        )
    if not _HOSTNAME.fullmatch(name) or ".." in name:  # match() would let "h\n" through
        raise ConfigurationError(f"invalid host name {original!r}")
    return name


def _check_ipv6(address: str, original: str) -> str:
    # ipaddress takes any text as a zone ("::1%<anything>"); an interface name or index
    # is all a zone can be, and anything else would end up in logs and host lists.
    _, percent, zone = address.partition("%")
    try:
        ipaddress.IPv6Address(address)
        if percent and not _ZONE.fullmatch(zone):
            raise ValueError(zone)
    except ValueError:
        raise ConfigurationError(f"invalid IPv6 address in {original!r}") from None
    return address


def parse_host(text: str, default_port: int = DEFAULT_PORT) -> HostAddress:
    """Parse ``name``, ``name:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    if not isinstance(text, str):
        raise ConfigurationError(f"a host must be a string, not {type(text).__name__}")
    original = text
    text = text.strip()
    if not text:
        raise ConfigurationError("empty host in the host list")
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ConfigurationError(f"missing ']' in host {original!r}")
        address = _check_ipv6(address, original)
        if not rest:
            return HostAddress(address, _check_port(default_port, address))
        if not rest.startswith(":"):
            raise ConfigurationError(f"unexpected {rest!r} after ']' in host {original!r}")
        return HostAddress(address, _parse_port(rest[1:], address))
    if text.count(":") > 1:
        return HostAddress(_check_ipv6(text, original), _check_port(default_port, text))
    name, colon, port = text.partition(":")
    name = _check_name(name, original)
    if colon:
        return HostAddress(name, _parse_port(port, name))
    return HostAddress(name, _check_port(default_port, name))


def parse_hosts(
    spec: str | HostAddress | Iterable[str | HostAddress], default_port: int = DEFAULT_PORT
) -> tuple[HostAddress, ...]:
    """Parse a comma-separated string or an iterable of hosts; at least one host."""
    if isinstance(spec, HostAddress):
        items: list[str | HostAddress] = [spec]
    elif isinstance(spec, str):
        items = list(_split_hosts(spec))
    else:
        items = []
        for item in spec:
            items.extend(_split_hosts(item) if isinstance(item, str) else [item])
    result: dict[HostAddress, None] = {}
    for item in items:
        address = item if isinstance(item, HostAddress) else parse_host(item, default_port)
        result.setdefault(address, None)
    if not result:
        raise ConfigurationError("no host given")
    return tuple(result)


def _split_hosts(text: str) -> list[str]:
    # A bare IPv6 address has no comma, so commas always separate hosts.
    parts = text.split(",")
    if len(parts) > 1 and any(not part.strip() for part in parts):
        raise ConfigurationError("empty host in the host list")
    return parts


def parse_host_lists(hosts: str, ports: str | None = None) -> tuple[HostAddress, ...]:
    """Parse libpq-style ``PGHOST`` / ``PGPORT`` values (``host=`` / ``port=``).

    ``ports`` holds one port for every host or one per host; an empty entry
    means the default port. Hosts may not carry their own ``:port`` here
    (libpq does not allow it either), except bracketed IPv6 literals.
    """
    names = [name.strip() for name in hosts.split(",")]
    if not any(names):
        raise ConfigurationError("no host given")
    if not all(names):
        raise ConfigurationError("empty host in the host list")
    port_items = [p.strip() for p in ports.split(",")] if ports else [""]
    if len(port_items) == 1:
        port_items *= len(names)
    if len(port_items) != len(names):
        raise ConfigurationError(
            f"{len(names)} hosts but {len(port_items)} ports: give one port or one per host"
        )
    result: dict[HostAddress, None] = {}
    for name, port_text in zip(names, port_items, strict=True):
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        if bare.count(":") == 1:
            raise ConfigurationError(
                f"invalid host name {name!r}: give ports in the port list (PGPORT, port=)"
            )
        host = _check_ipv6(bare, name) if ":" in bare else _check_name(bare, name)
        port = _parse_port(port_text, host) if port_text else DEFAULT_PORT
        result.setdefault(HostAddress(host, port), None)
    return tuple(result)


@dataclass(frozen=True)
class ConnectOptions:
    """Connection settings shared by the probes (and, through the same URL, the engines).

    libpq's meanings: ``connect_timeout`` is in seconds (the probe timeout
    still bounds every wait); ``sslpassword`` decrypts the ``sslkey``;
    ``sslcrl`` is a revocation list; ``options`` holds server settings
    (``-c statement_timeout=5s``), sent at connect; ``channel_binding``
    (psycopg only: asyncpg never binds channels). ``probe_user`` and
    ``probe_password`` are the probes' own login (see ``docs/topology.md``,
    "The probe login"): probes connect with it instead of ``user`` and
    ``password``. ``password``, ``sslpassword`` and ``probe_password`` are
    left out of ``repr``.

    ``target_session_attrs`` is refused unless ``any``: the probes connect
    to every host whatever its role, and the roles are served by
    ``cluster.master`` and ``cluster.replica`` instead.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    connect_timeout: float | None = None
    application_name: str | None = None
    target_session_attrs: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    sslpassword: str | None = field(default=None, repr=False)
    sslcrl: str | None = None
    options: str | None = None
    channel_binding: str | None = None
    # The probes' own login (topology.probing._probe_login); the engines never use it.
    probe_user: str | None = None
    probe_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sslmode is not None and self.sslmode not in SSLMODES:
            raise ConfigurationError(
                f"invalid sslmode {self.sslmode!r}: expected one of {', '.join(sorted(SSLMODES))}"
            )
        _check_target_session_attrs(self.target_session_attrs)
        if self.probe_password is not None and self.probe_user is None:
            raise ConfigurationError("probe_password is set without probe_user")
        binding = self.channel_binding
        if binding is not None and binding not in CHANNEL_BINDINGS:
            raise ConfigurationError(
                f"invalid channel_binding {binding!r}: "
                f"expected one of {', '.join(sorted(CHANNEL_BINDINGS))}"
            )
        timeout = self.connect_timeout
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ConfigurationError(f"invalid connect_timeout {timeout!r}: expected seconds > 0")

    def replace(self, **changes: object) -> ConnectOptions:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _check_target_session_attrs(attrs: str | None) -> None:
    if attrs is not None and attrs not in TARGET_SESSION_ATTRS:
        raise ConfigurationError(
            f"invalid target_session_attrs {attrs!r}: "
            f"expected one of {', '.join(sorted(TARGET_SESSION_ATTRS))}"
        )
    if attrs not in (None, "any"):
        # Silently probing every host anyway would mislead: say where the role is chosen.
        raise ConfigurationError(
            f"target_session_attrs={attrs} is not used by topology, which probes every host: "
            "take the primary from cluster.master (read-write, primary) and a replica from "
            "cluster.replica (read-only, standby, prefer-standby), and leave it out of the URL"
        )


_OPTION_ALIASES = {"dbname": "database", "ssl": "sslmode"}
_OPTION_FIELDS = frozenset(
    f.name for f in dataclasses.fields(ConnectOptions) if f.name not in ("extra",)
)


def _options_from_query(query: Mapping[str, str], base: dict[str, object]) -> ConnectOptions:
    extra: list[tuple[str, str]] = []
    for key, value in query.items():
        name = _OPTION_ALIASES.get(key, key)
        if key == "ssl" and value not in SSLMODES:
            extra.append((key, value))  # a driver-specific flag, e.g. asyncpg's ssl=true
        elif name == "connect_timeout":
            try:
                seconds = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"invalid connect_timeout {value!r}: expected seconds > 0"
                ) from None
            base[name] = None if seconds == 0 else seconds  # libpq: 0 means no limit
        elif name in _OPTION_FIELDS:
            base[name] = value
        else:
            extra.append((key, value))
    return ConnectOptions(**base, extra=tuple(extra))  # type: ignore[arg-type]


def parse_url(url: str) -> tuple[tuple[HostAddress, ...], ConnectOptions]:
    """Parse a libpq (multi-host) URL into hosts and connection options."""
    if not isinstance(url, str) or not _SCHEME.match(url):
        raise ConfigurationError(
            "a URL must start with postgresql:// or postgres:// (optionally postgresql+driver://)"
        )
    rest = url.split("://", 1)[1]
    head, _, tail = rest.partition("/")
    try:
        return _parse_rest(rest)
    except ConfigurationError as error:
        if "@" in head or "@" not in tail:
            raise
        # No credentials before the first '/' but an '@' after it: an unescaped '/' in
        # the password may have cut the URL there, so the message may quote a piece of
        # the password as a host or a port. Keep the reason, drop every quoted value.
        raise ConfigurationError(
            f"{_QUOTED.sub('<...>', str(error))} (a '/' in a password must be written %2F)"
        ) from None


def _parse_rest(rest: str) -> tuple[tuple[HostAddress, ...], ConnectOptions]:
    userinfo, rest = _split_credentials(rest)
    rest = rest.partition("#")[0]
    rest, _, query_text = rest.partition("?")
    hostpart, slash, path = rest.partition("/")
    base: dict[str, object] = {}
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        if user:
            base["user"] = unquote(user)
        if colon:
            base["password"] = unquote(password)
    if slash and path:
        base["database"] = unquote(path)
    try:
        pairs = parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text))
    except ValueError:
        raise ConfigurationError("malformed query string in the URL") from None
    query = {key: value for key, value in pairs}
    host_text = query.pop("host", None)
    port_text = query.pop("port", None)
    if host_text is not None or port_text is not None:
        hosts = _query_hosts(host_text, port_text, hostpart)
    else:
        hosts = parse_hosts(_unquote_hosts(hostpart)) if hostpart else ()
    if not hosts:
        raise ConfigurationError("the URL names no host: give at least one (h1:5432,h2)")
    return hosts, _options_from_query(query, base)


def _split_credentials(rest: str) -> tuple[str | None, str]:
    """``user:password`` (None without an ``@``) and what follows it in the URL.

    As in libpq, the credentials end at an ``@`` before the first ``/``, so a
    password may hold ``?`` and ``#`` unescaped; the last such ``@`` counts, so
    it may hold ``@`` too. A ``/`` in it must be written ``%2F``: a path with an
    ``@`` is refused, since the hosts or the database name would otherwise be
    read from the password (an ``@`` in a database name is written ``%40``).
    """
    head, slash, tail = rest.partition("/")
    userinfo, at, hostpart = head.rpartition("@")
    # Also with credentials before the '/': a password holding '@h/' would
    # otherwise end in the database name (and in every repr of the options).
    if "@" in tail.partition("?")[0].partition("#")[0]:
        raise ConfigurationError(
            "the URL has an '@' after its first '/': write a '/' in the user name or "
            "password as %2F (and an '@' in the database name as %40)"
        )
    if at:
        return userinfo, hostpart + slash + tail
    return None, rest


def _unquote_hosts(hostpart: str) -> list[str]:
    parts = hostpart.split(",")
    if any(not part for part in parts):
        raise ConfigurationError("empty host in the host list")
    return [unquote(part) for part in parts]


def _query_hosts(
    host_text: str | None, port_text: str | None, hostpart: str
) -> tuple[HostAddress, ...]:
    if host_text is None:
        # Only port= given: apply it to the hosts of the authority, which may not carry ports.
        names = ",".join(str(h.host) for h in parse_hosts(_unquote_hosts(hostpart)))
        if not hostpart:
            raise ConfigurationError("the URL names no host: give at least one (h1:5432,h2)")
        return parse_host_lists(names, port_text)
    return parse_host_lists(host_text, port_text)
