"""Patroni's REST API as a DCS source: :class:`PatroniRest` polls ``GET /cluster``.

What it is for, and what polling costs a fleet: see :mod:`topology.dcs.patroni`
(which exports everything here). :func:`view_from_cluster` turns one
``/cluster`` answer into a :class:`~topology.dcs.DcsView`; :class:`PatroniRest`
asks the members in turn, the one that answered last first, every
``interval`` seconds, each answer within :data:`REST_LIMITS`.
Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from topology.dcs import DcsMember, DcsView
from topology.dcs._http import Endpoints, HttpClient, Unreachable, shown, why
from topology.dcs._http_body import BadAnswer, HttpError, HttpLimits
from topology.dcs.patroni_config import RestConfig, TlsFiles, parse_endpoints
from topology.errors import ConfigurationError
from topology.hosts import DEFAULT_PORT, HostAddress

__all__ = ["REST_LIMITS", "PatroniRest", "view_from_cluster"]

log = logging.getLogger("topology")

REST_LIMITS = HttpLimits(body=1024 * 1024, chunk=1024 * 1024)
"""A ``/cluster`` answer is a few hundred bytes per member: 1 MiB is thousands of members."""

_LEADER_ROLES = frozenset({"leader", "standby_leader", "primary", "master"})


def view_from_cluster(document: object, revision: int) -> DcsView:
    """A view from Patroni's ``GET /cluster`` answer; BadAnswer (a ValueError) when it is not one.

    Members without a usable address (still starting, or not objects) are left out.
    """
    if not isinstance(document, dict) or not isinstance(document.get("members"), list):
        raise BadAnswer(f"not a Patroni /cluster answer ({type(document).__name__})")
    members, leader = [], None
    for item in document["members"]:
        try:
            host = str(HostAddress(str(item["host"]), int(item.get("port") or DEFAULT_PORT)))
            name = str(item["name"])
        except (KeyError, TypeError, ValueError, ConfigurationError):
            continue  # a member without an address yet (still starting)
        role = str(item.get("role", ""))
        members.append(DcsMember(name, host, role, str(item.get("state", ""))))
        if role in _LEADER_ROLES:
            leader = name
    return DcsView(leader, tuple(sorted(members, key=lambda m: m.name)), revision)


class PatroniRest:
    """A :class:`topology.dcs.DcsWatch` polling Patroni's REST API (:mod:`topology.dcs.patroni`).

    ``urls``: members' REST endpoints, ``"http://h1:8008,http://h2:8008"``;
    each poll asks the one that answered last first, the others after it,
    each within ``timeout`` seconds. ``limits``: the caps on one answer
    (default :data:`REST_LIMITS`: a ``/cluster`` answer up to 1 MiB).
    """

    def __init__(
        self,
        urls: str | Sequence[str] | RestConfig,
        *,
        timeout: float = 1.0,
        interval: float = 1.0,
        limits: HttpLimits | None = None,
    ) -> None:
        if timeout <= 0 or interval <= 0:
            raise ConfigurationError("timeout and interval must be positive")
        tls = urls.tls if isinstance(urls, RestConfig) else TlsFiles()
        if isinstance(urls, RestConfig):
            urls = urls.endpoints
        self.endpoints = Endpoints(parse_endpoints(urls, default_port=8008, what="Patroni REST"))
        self.limits = limits or REST_LIMITS
        self.timeout = float(timeout)
        self.client = HttpClient(tls, timeout=self.timeout, limits=self.limits)
        self.interval = float(interval)
        self.requests = 0
        self.views = 0
        self.outages = 0

    def describe(self) -> str:
        return f"Patroni REST API {self.endpoints}"

    def __repr__(self) -> str:
        return f"PatroniRest({self.describe()})"

    async def poll(self) -> DcsView:
        """Ask the members in turn for ``/cluster``; Unreachable when none answers.

        Whatever a member does wrong (refuses, closes without answering,
        stalls, sends too much, sends JSON that is not a ``/cluster`` answer)
        becomes its reason, and the next member is asked. Each within
        ``timeout`` seconds, connect included.
        """
        reasons: dict[str, str] = {}
        for index, url in self.endpoints.in_turn():
            self.requests += 1
            try:
                status, document = await self.client.request_json("GET", f"{url}/cluster")
                if status != 200:
                    raise HttpError(f"HTTP {status}")
                view = view_from_cluster(document, self.views + 1)
            except Exception as exc:  # any peer's failure: its reason, then the next one
                if not isinstance(exc, (OSError, asyncio.TimeoutError, HttpError, ValueError)):
                    log.debug("unexpected failure of a Patroni REST call", exc_info=exc)
                reasons[shown(url)] = why(exc)
                continue
            self.endpoints.answered(index)
            return view
        raise Unreachable("Patroni REST /cluster", reasons, what="Patroni REST")

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        """Poll every ``interval`` s until cancelled (see :class:`topology.dcs.DcsWatch`).

        Never raises but CancelledError: a poll that fails in a way
        :meth:`poll` did not foresee is reported through ``on_lost`` too.
        Cancelled, it closes its pooled connections.
        """
        try:
            await self._poll_forever(on_view, on_lost)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(self.client.aclose(), 1.0))

    async def _poll_forever(
        self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]
    ) -> None:
        while True:
            try:
                view = await self.poll()
            except Unreachable as exc:
                self.outages += 1
                on_lost(str(exc))
            except Exception as exc:  # belt and braces: no answer may end the follower
                self.outages += 1
                log.debug("Patroni REST poll failed", exc_info=True)
                on_lost(f"unexpected failure polling Patroni REST ({type(exc).__name__})")
            else:
                self.views += 1
                on_view(view)
            await asyncio.sleep(self.interval)
