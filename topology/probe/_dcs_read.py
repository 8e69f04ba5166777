"""Reading Patroni's DCS once for the CLI: which watch, and its first view or loss.

:func:`build_watch` turns the DCS options (:class:`~topology.probe.args.DcsArgs`)
into the same :class:`~topology.dcs.DcsWatch` a resolver follows
(:func:`topology.dcs.patroni.patroni_watch`); :func:`read_once` runs that watch's
public ``run(on_view, on_lost)`` until its first view or its first loss and
cancels it, within a deadline: the CLI never waits on the DCS for more than
``deadline`` seconds (plus a bounded 0.5 s for the cancelled watch to let go
of its sockets). The watch tries each endpoint in turn, ``timeout`` seconds
each, so :func:`read_deadline` allows one timeout per endpoint.

Secrets: the DCS password is read from the environment
(:data:`PASSWORD_ENV`) or the Patroni YAML, never from the command line;
:class:`DcsSource` lists it among its ``secrets`` so the output scrubs it,
and leaves it out of its ``repr``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from topology.dcs import DcsView, DcsWatch
from topology.dcs.patroni_config import EtcdConfig, PatroniConfig, RestConfig, TlsFiles
from topology.errors import ConfigurationError
from topology.probe.args import DcsArgs

__all__ = ["PASSWORD_ENV", "DcsReading", "DcsSource", "build_watch", "read_deadline", "read_once"]

PASSWORD_ENV = "TOPOLOGY_DCS_PASSWORD"
_READ_SLACK = 1.0  # beyond one timeout per endpoint: the watch's own bookkeeping
_CANCEL_GRACE = 0.5  # a cancelled watch closes its sockets at once; this is ample
# The CLI reads once: a re-read every hour is never reached, and so never costs a request.
_NEVER = 3600.0


@dataclass(frozen=True)
class DcsSource:
    """The watch to read, how many endpoints it may try, and the secrets in play."""

    watch: DcsWatch
    endpoints: int
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class DcsReading:
    """What one read of the DCS gave: a view, or why there is none (``error``)."""

    source: str
    view: DcsView | None = None
    error: str | None = None


def _split(urls: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in urls.split(",") if item.strip())


def _tls(dcs: DcsArgs, base: TlsFiles) -> TlsFiles:
    """The YAML's TLS files, each replaced by its command-line option when given."""
    return TlsFiles(dcs.cacert or base.cacert, dcs.cert or base.cert, dcs.key or base.key)


def _etcd(dcs: DcsArgs, base: EtcdConfig, password: str | None) -> EtcdConfig:
    """``--dcs-user`` logs in with ``$TOPOLOGY_DCS_PASSWORD``; else the YAML's user with its
    password (the environment's when the YAML holds none)."""
    tls = _tls(dcs, base.tls)
    if dcs.user:
        if not password:
            raise ConfigurationError(f"--dcs-user needs the password in ${PASSWORD_ENV}")
        return EtcdConfig(base.endpoints, tls, dcs.user, password)
    secret = (base.password or password) if base.username else None
    return EtcdConfig(base.endpoints, tls, base.username, secret)


def _config(dcs: DcsArgs, password: str | None) -> PatroniConfig:
    """The DCS settings: the YAML's (``--patroni-config``) or the options', options winning."""
    if dcs.config is not None:
        loaded = PatroniConfig.load(dcs.config)
        scope = dcs.scope or loaded.scope
        namespace = dcs.namespace or loaded.namespace
        if loaded.etcd is not None:
            return PatroniConfig(scope, namespace, etcd=_etcd(dcs, loaded.etcd, password))
        assert loaded.rest is not None  # PatroniConfig refuses neither
        rest = RestConfig(loaded.rest.endpoints, _tls(dcs, loaded.rest.tls))
        return PatroniConfig(scope, namespace, rest=rest)
    if dcs.etcd is not None:
        assert dcs.scope is not None  # parse_args requires it
        etcd = _etcd(dcs, EtcdConfig(_split(dcs.etcd)), password)
        return PatroniConfig(dcs.scope, dcs.namespace or "/service", etcd=etcd)
    assert dcs.rest is not None
    # The REST API needs no scope: every member answers for its own cluster.
    return PatroniConfig("-", rest=RestConfig(_split(dcs.rest), _tls(dcs, TlsFiles())))


def build_watch(dcs: DcsArgs, env: Mapping[str, str], timeout: float) -> DcsSource:
    """The watch ``dcs`` describes, each call bounded by ``timeout`` per endpoint.

    Raises :class:`ConfigurationError` (no secret in it) for a bad setting or
    an unusable Patroni YAML.
    """
    # Imported here: the DCS sources need the [patroni] extra, a run without a DCS does not.
    from topology.dcs.patroni import watch_from_config

    config = _config(dcs, env.get(PASSWORD_ENV) or None)
    secrets = tuple(
        secret for secret in (env.get(PASSWORD_ENV), config.etcd and config.etcd.password) if secret
    )
    watch = watch_from_config(config, timeout=timeout, check_interval=_NEVER)
    place = config.etcd or config.rest
    assert place is not None
    return DcsSource(watch, max(1, len(place.endpoints)), secrets)


def read_deadline(source: DcsSource, timeout: float) -> float:
    """How long :func:`read_once` may wait: one ``timeout`` per endpoint, plus slack."""
    return timeout * source.endpoints + _READ_SLACK


async def read_once(watch: DcsWatch, deadline: float) -> DcsReading:
    """The watch's first view, or its first loss, within ``deadline`` seconds.

    The watch runs in a task of its own and is cancelled (and given
    0.5 s to let go) as soon as either comes, or at the deadline.
    Never raises but CancelledError.
    """
    loop = asyncio.get_running_loop()
    first: asyncio.Future[DcsView | str] = loop.create_future()

    def settle(value: DcsView | str) -> None:
        if not first.done():
            first.set_result(value)

    task = asyncio.ensure_future(watch.run(settle, settle))
    try:
        await asyncio.wait((first, task), timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        await asyncio.wait((task,), timeout=_CANCEL_GRACE)
    source = watch.describe()
    if first.done():
        value = first.result()
        if isinstance(value, DcsView):
            return DcsReading(source, view=value)
        return DcsReading(source, error=value)
    if task.done() and not task.cancelled() and task.exception() is not None:
        return DcsReading(source, error=f"the DCS watch failed ({type(task.exception()).__name__})")
    return DcsReading(source, error=f"no answer within {deadline:g} s")
