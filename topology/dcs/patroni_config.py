"""Where Patroni's DCS is and how to reach it: etcd v3 or the REST API, TLS files, credentials.

The frozen dataclasses here are what ``ClusterResolver.from_patroni(config=...)``
takes; :meth:`PatroniConfig.load` builds one from a Patroni YAML file, the
same file (or an app-side copy of it) that Patroni itself reads:

* ``scope`` (required) and ``namespace`` (default ``/service``);
* ``etcd3:`` ``hosts`` (a list or a comma-separated string of ``host:port``),
  ``host``, ``url``; ``protocol`` (``http`` or ``https``; ``https`` when a
  TLS file is given and no protocol is); ``cacert``, ``cert``, ``key``;
  ``username``, ``password``;
* without ``etcd3:``: the member's ``restapi.connect_address`` as a REST
  endpoint (https when ``restapi.certfile`` is set), with the client TLS files
  of Patroni's ``ctl:`` section (``cacert``, ``certfile``, ``keyfile``).

Other DCS sections (``etcd:``, the v2 API; ``consul:``, ``zookeeper:``,
``kubernetes:``, ``raft:``, ``exhibitor:``) are refused by name, with a
:class:`~topology.errors.ConfigurationError`. So are a missing file, YAML that
does not parse, a missing scope, a key without its certificate, a TLS file
that does not exist, a user name without a password.

Secrets: ``EtcdConfig.password`` is never in a repr, a str or an error. A YAML
error is reported by line and column only (PyYAML's own message quotes the
file, which may hold the password). Loading reads one local file: no network,
no timeout needed. PyYAML is imported by :meth:`PatroniConfig.load` only
(``pip install 'ctxdb-topology[patroni]'``).

Example::

    config = PatroniConfig.load("/etc/patroni/app.yml")
    cluster = ClusterResolver.from_patroni(config=config, dcs_allow="10.0.0.0/24",
                                           user="app", password=secret, database="app")
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from topology.errors import ConfigurationError

__all__ = [
    "EXTRA_HINT",
    "EtcdConfig",
    "PatroniConfig",
    "RestConfig",
    "TlsFiles",
    "parse_endpoints",
    "redacted",
]

EXTRA_HINT = "pip install 'ctxdb-topology[patroni]'"
"""How to install what the DCS sources need (httpx, PyYAML)."""

_UNSUPPORTED = {
    "etcd": "etcd: (the etcd v2 API) is not supported: use Patroni's etcd3: section",
    "consul": "consul: is not supported (only etcd3:, or Patroni's REST API)",
    "zookeeper": "zookeeper: is not supported (only etcd3:, or Patroni's REST API)",
    "exhibitor": "exhibitor: is not supported (only etcd3:, or Patroni's REST API)",
    "kubernetes": "kubernetes: is not supported (only etcd3:, or Patroni's REST API)",
    "raft": "raft: is not supported (only etcd3:, or Patroni's REST API)",
}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for a TLS client: the CA to verify the server, our certificate and its key.

    ``cacert`` None: the system's CAs. ``key`` None with a ``cert``: the key is
    in the ``cert`` file. A ``key`` without a ``cert`` is refused.
    """

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.key and not self.cert:
            raise ConfigurationError("a TLS key was given without its certificate (cert)")

    @property
    def any(self) -> bool:
        """Whether any file is set (a TLS setting the user means us to use)."""
        return bool(self.cacert or self.cert or self.key)


def redacted(url: str) -> str:
    """``url`` without its user name and password (``http://***@host:2379``)."""
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def _endpoint(url: str, default_port: int, what: str) -> str:
    shown_url = redacted(url)  # an endpoint's credentials never reach a message
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"{what} endpoint {shown_url!r}: only http:// and https://")
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"{what} endpoint {shown_url!r}: credentials in the URL are not supported "
            "(give username/password)"
        )
    try:
        port = parts.port or default_port
        host = parts.hostname
    except ValueError as exc:
        raise ConfigurationError(f"{what} endpoint {shown_url!r}: bad port") from exc
    if not host:
        raise ConfigurationError(f"{what} endpoint {shown_url!r}: no host")
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def parse_endpoints(
    endpoints: str | Sequence[str], default_port: int = 2379, what: str = "etcd"
) -> list[str]:
    """Base URLs from ``"https://h1:2379,h2:2379"`` or a list; ConfigurationError if bad or empty.

    Without a scheme: ``http://``; without a port: ``default_port``.
    """
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    parsed = [_endpoint(item.strip(), default_port, what) for item in items if item.strip()]
    if not parsed:
        raise ConfigurationError(f"no {what} endpoint given")
    return parsed


def _check_urls(urls: tuple[str, ...], tls: TlsFiles, what: str) -> None:
    """Each URL http(s)://host[:port] without credentials; TLS files only with https."""
    for url in parse_endpoints(urls, what=what):
        if tls.any and url.startswith("http://"):
            raise ConfigurationError(
                f"{what} endpoint {url!r} is http:// but TLS files are given: use https://"
            )


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    """etcd v3 endpoints (``https://h1:2379``...), client TLS files and credentials.

    ``username`` and ``password`` go together (etcd's ``/v3/auth/authenticate``);
    the password is never shown (repr, str, errors).
    """

    endpoints: tuple[str, ...]
    tls: TlsFiles = TlsFiles()
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.endpoints, str):
            object.__setattr__(self, "endpoints", _split(self.endpoints))
        else:
            object.__setattr__(self, "endpoints", tuple(self.endpoints))
        _check_urls(self.endpoints, self.tls, "etcd")
        if bool(self.username) != bool(self.password):
            raise ConfigurationError("etcd username and password go together: give both or none")


@dataclass(frozen=True, slots=True)
class RestConfig:
    """Patroni REST API endpoints (``https://h1:8008``...) and client TLS files."""

    endpoints: tuple[str, ...]
    tls: TlsFiles = TlsFiles()

    def __post_init__(self) -> None:
        if isinstance(self.endpoints, str):
            object.__setattr__(self, "endpoints", _split(self.endpoints))
        else:
            object.__setattr__(self, "endpoints", tuple(self.endpoints))
        _check_urls(self.endpoints, self.tls, "Patroni REST")


@dataclass(frozen=True, slots=True)
class PatroniConfig:
    """Patroni's ``scope``/``namespace`` and where its DCS is (etcd, else the REST API)."""

    scope: str
    namespace: str = "/service"
    etcd: EtcdConfig | None = None
    rest: RestConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scope, str) or not self.scope or "/" in self.scope:
            raise ConfigurationError(f"Patroni scope {self.scope!r}: a non-empty name without '/'")
        if self.etcd is None and self.rest is None:
            raise ConfigurationError("a Patroni configuration needs etcd3: or a REST API endpoint")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PatroniConfig:
        """Read a Patroni YAML file (see the module docstring); ConfigurationError when unusable."""
        shown = os.fspath(path)
        document = _read_yaml(shown)
        try:
            return _from_document(document)
        except ConfigurationError as exc:
            raise ConfigurationError(f"Patroni configuration {shown!r}: {exc}") from None


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _read_yaml(path: str) -> Mapping[str, Any]:
    try:  # imported by name: PyYAML ships no type hints, and is needed only here
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise ConfigurationError(
            f"reading a Patroni YAML file needs PyYAML: {EXTRA_HINT}"
        ) from None
    try:
        with open(path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigurationError(f"Patroni configuration {path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"Patroni configuration {path!r}: cannot be read ({type(exc).__name__})"
        ) from None
    except yaml.YAMLError as exc:  # its message quotes the file: the position only
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"Patroni configuration {path!r}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"Patroni configuration {path!r}: not a YAML mapping")
    return document


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name}: is not a mapping")
    return value


def _text(section: Mapping[str, Any], name: str, where: str) -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigurationError(f"{where}.{name} is not a string")
    return str(value)


def _file(section: Mapping[str, Any], name: str, where: str) -> str | None:
    path = _text(section, name, where)
    if path is not None and not os.path.isfile(path):
        raise ConfigurationError(f"{where}.{name}: no such file {path!r}")
    return path


def _from_document(document: Mapping[str, Any]) -> PatroniConfig:
    for name, words in _UNSUPPORTED.items():
        if name in document and "etcd3" not in document:
            raise ConfigurationError(words)
    scope = _text(document, "scope", "")
    if scope is None:
        raise ConfigurationError("no scope: (Patroni's cluster name) is set")
    namespace = _text(document, "namespace", "") or "/service"
    if "etcd3" in document:
        return PatroniConfig(scope, namespace, etcd=_etcd3(_section(document, "etcd3")))
    return PatroniConfig(scope, namespace, rest=_rest(document))


def _hosts(section: Mapping[str, Any]) -> list[str]:
    """``hosts`` (list or comma string), ``host``, ``url``: in that order of preference."""
    hosts = section.get("hosts")
    if isinstance(hosts, str):
        return list(_split(hosts))
    if isinstance(hosts, Iterable) and not isinstance(hosts, (bytes, dict)):
        return [str(item).strip() for item in hosts if str(item).strip()]
    if hosts is not None:
        raise ConfigurationError("etcd3.hosts is neither a list nor a comma-separated string")
    for name in ("host", "url"):
        value = _text(section, name, "etcd3")
        if value:
            return list(_split(value))
    for name in ("proxy", "srv", "srv_suffix"):
        if section.get(name):
            raise ConfigurationError(f"etcd3.{name} is not supported: list the etcd3.hosts")
    raise ConfigurationError("etcd3: has no hosts, host or url")


def _etcd3(section: Mapping[str, Any]) -> EtcdConfig:
    tls = TlsFiles(
        _file(section, "cacert", "etcd3"),
        _file(section, "cert", "etcd3"),
        _file(section, "key", "etcd3"),
    )
    protocol = _text(section, "protocol", "etcd3") or ("https" if tls.any else "http")
    if protocol not in ("http", "https"):
        raise ConfigurationError(f"etcd3.protocol {protocol[:20]!r}: http or https")
    endpoints = tuple(item if "://" in item else f"{protocol}://{item}" for item in _hosts(section))
    username = _text(section, "username", "etcd3") or _text(section, "user", "etcd3")
    password = section.get("password")
    if password is not None and not isinstance(password, (str, int)):
        raise ConfigurationError("etcd3.password is not a string")
    return EtcdConfig(endpoints, tls, username, str(password) if password else None)


def _rest(document: Mapping[str, Any]) -> RestConfig:
    restapi = _section(document, "restapi")
    address = _text(restapi, "connect_address", "restapi")
    if address is None:
        raise ConfigurationError("no etcd3: section, and no restapi.connect_address either")
    scheme = "https" if restapi.get("certfile") else "http"
    ctl = _section(document, "ctl")
    tls = TlsFiles(
        _file(ctl, "cacert", "ctl"), _file(ctl, "certfile", "ctl"), _file(ctl, "keyfile", "ctl")
    )
    url = address if "://" in address else f"{scheme}://{address}"
    return RestConfig((url,), tls)
