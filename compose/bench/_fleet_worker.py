"""One process of the fleet benchmark: ``python -m compose.bench._fleet_worker``.

Runs ``count`` :class:`~topology.ClusterResolver` on one event loop, as
``count`` application processes would each run one. The first line of
stdin is the JSON configuration (``mode``: ``"sql"`` for
``ClusterResolver(hosts)`` or ``"dcs"`` for a resolver fed by
:class:`~topology.dcs.patroni.PatroniEtcd`; ``count``, ``hosts``, ``etcd`` (an https URL),
``app_config`` (the cluster's app-side Patroni YAML: TLS files, etcd user),
``scope``, ``namespace``, ``app``; optional ``dcs_pace``: fields of
:class:`~topology.pace.DcsPace`, the library's defaults otherwise); the password comes in the
``BENCH_PGPASSWORD`` environment variable, never on the command line.

Then one JSON command per stdin line, one JSON answer per stdout line:

- ``{"cmd": "start", "offset": O, "step": S}``: start resolver ``i`` at
  ``O + i * S`` seconds from now, then wait until each names a primary (5 s
  at most each, concurrently); answers whom they name;
- ``{"cmd": "sample"}``: counters now: probes, etcd requests, the CPU
  seconds of this process (``resource.getrusage``) and ``time.time()``;
- ``{"cmd": "follow", "host": H, "since": T}``: per resolver, the first
  wall-clock time at or after ``T`` when its primary became ``H``, or null;
- ``{"cmd": "stop"}``: close every resolver (5 s each at most, concurrently)
  and exit.

Times are ``time.time()``: the parent compares them with its own, and
wall-clock is the one clock these processes surely share. A primary change
is stamped in the resolver's listener, which runs on the event loop right
after the resolver publishes it. Stdin closed (the parent died) stops the
worker as ``stop`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import resource
import sys
import time
from collections import Counter
from typing import Any

from topology import ClusterResolver, DcsTrust, Role
from topology.dcs.patroni import PatroniEtcd
from topology.dcs.patroni_config import PatroniConfig
from topology.pace import DcsPace


class Fleet:
    """The resolvers of this process and when each named which primary."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.mode = str(config["mode"])
        self.watches: list[PatroniEtcd] = []
        self.resolvers = [self._resolver(config) for _ in range(int(config["count"]))]
        # Per resolver: (time.time(), primary or None), every change in order.
        self.changes: list[list[tuple[float, str | None]]] = [[] for _ in self.resolvers]
        for index, resolver in enumerate(self.resolvers):
            resolver.listen(Role.PRIMARY, self._recorder(index))

    def _resolver(self, config: dict[str, Any]) -> ClusterResolver:
        common: dict[str, Any] = {
            "user": "postgres",
            "password": os.environ.get("BENCH_PGPASSWORD", ""),
            "database": "postgres",
            "application_name": str(config["app"]),
        }
        if self.mode == "sql":
            return ClusterResolver(list(config["hosts"]), **common)
        # What ClusterResolver.from_patroni builds, with a handle on the watch
        # kept here to read its request counter.
        # The cluster's app-side Patroni YAML (TLS, etcd user app), etcd reached
        # through the bench's forwarder (TLS end to end: it only relays bytes).
        loaded = PatroniConfig.load(str(config["app_config"]))
        assert loaded.etcd is not None
        etcd = dataclasses.replace(loaded.etcd, endpoints=(str(config["etcd"]),))
        watch = PatroniEtcd(etcd, loaded.scope, namespace=loaded.namespace)
        self.watches.append(watch)
        # The bench's cluster runs on loopback: its members are trusted there only.
        pace = DcsPace(**{k: float(v) for k, v in dict(config.get("dcs_pace") or {}).items()})
        return ClusterResolver(
            (), dcs=watch, trust=DcsTrust(allow="127.0.0.0/8"), dcs_pace=pace, **common
        )

    def _recorder(self, index: int) -> Any:
        def record(host: str | None) -> None:
            self.changes[index].append((time.time(), host))

        return record

    async def start(self, offset: float, step: float) -> dict[str, Any]:
        """Start resolver ``i`` at ``offset + i * step`` s from now, as a fleet's processes
        start at different moments (resolvers started together keep probing together)."""
        began = time.monotonic()

        async def start_one(index: int, resolver: ClusterResolver) -> None:
            await asyncio.sleep(max(began + offset + index * step - time.monotonic(), 0))
            await resolver.start()

        starts = (start_one(i, r) for i, r in enumerate(self.resolvers))
        await asyncio.gather(*starts, return_exceptions=True)
        # start() may return before a DCS-fed resolver knows any host (its first
        # snapshot can be an empty round): master() waits for a primary (5 s at most).
        await asyncio.gather(*(r.master() for r in self.resolvers), return_exceptions=True)
        primaries = Counter(str(r.view.snapshot.primary) for r in self.resolvers)
        return {"started": len(self.resolvers), "primaries": dict(primaries)}

    def sample(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = [r.stats() for r in self.resolvers]
        return {
            "t": time.time(),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "probes": sum(s.probes for s in stats),
            "rounds": sum(s.rounds for s in stats),
            "probe_failures": sum(s.probe_failures for s in stats),
            "etcd_requests": sum(w.requests for w in self.watches),
            "dcs_answering": sum(bool(s.dcs_answers) for s in stats),
            "dcs_outages": sum(s.dcs_outages for s in stats),
            "primaries": dict(Counter(str(r.view.snapshot.primary) for r in self.resolvers)),
        }

    def follow(self, host: str, since: float) -> dict[str, Any]:
        firsts: list[float | None] = []
        for changes in self.changes:
            firsts.append(next((t for t, h in changes if t >= since and h == host), None))
        return {"firsts": firsts}

    async def stop(self) -> dict[str, Any]:
        await asyncio.gather(*(r.close() for r in self.resolvers), return_exceptions=True)
        return {"stopped": len(self.resolvers)}


async def serve() -> None:
    """Answer commands until ``stop`` or the end of stdin."""
    read = sys.stdin.readline
    fleet = Fleet(json.loads(await asyncio.to_thread(read)))
    try:
        while True:
            line = await asyncio.to_thread(read)
            if not line:
                return
            command = json.loads(line)
            name = command["cmd"]
            if name == "start":
                answer = await fleet.start(float(command["offset"]), float(command["step"]))
            elif name == "sample":
                answer = fleet.sample()
            elif name == "follow":
                answer = fleet.follow(str(command["host"]), float(command["since"]))
            elif name == "stop":
                break
            else:
                answer = {"error": f"unknown command {name!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        answer = await fleet.stop()
    with contextlib.suppress(BrokenPipeError):  # the parent may be gone
        print(json.dumps(answer), flush=True)


def main() -> int:
    # Warnings on failover are expected; BENCH_FLEET_LOG=INFO shows the resolvers' story.
    level = os.environ.get("BENCH_FLEET_LOG", "ERROR")
    logging.basicConfig(level=level, format="%(created).3f %(process)d %(message)s")
    for chatty in ("httpx", "httpcore"):  # DEBUG: the resolvers' story, not every HTTP byte
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLogger().level))
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
