"""``--check-grants``: what the login lacks on each host, and the GRANT to run.

A face over :func:`topology.probing._probe_login.check_grants` (the same catalog
checks the prober runs after a 42501): one line per missing grant, or one
JSON document (schema ``topology.probe.grants/1``).

Exit status: 0 every grant held; 1 only optional ones lacking (the probe
works with less: see ``effect``); 2 a required one lacking, or a host that
could not be checked. Timeouts: hosts are checked concurrently, each within
``timeout`` per step (connect, query, close).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from topology.hosts import ConnectOptions, HostAddress
from topology.probing._probe_login import GrantReport, check_grants
from topology.probing.drivers import get_driver

__all__ = ["check_all", "exit_code", "grants_document", "grants_lines"]

SCHEMA = "topology.probe.grants/1"


async def check_all(
    hosts: Sequence[HostAddress], options: Sequence[ConnectOptions], driver: str, timeout: float
) -> list[GrantReport]:
    """One report per host, in order (concurrently; never raises but on cancellation)."""
    probe_driver = get_driver(driver)
    checks = (
        check_grants(h, o, probe_driver, timeout) for h, o in zip(hosts, options, strict=True)
    )
    return list(await asyncio.gather(*checks))


def exit_code(reports: Sequence[GrantReport]) -> int:
    if any(r.error is not None or any(g.required for g in r.lacking) for r in reports):
        return 2
    return 1 if any(r.lacking for r in reports) else 0


def grants_lines(reports: Sequence[GrantReport], database: str) -> list[str]:
    lines = []
    for report in reports:
        who = f"{report.host} (login {report.user})"
        if report.error is not None:
            lines.append(f"{report.host}: could not check: {report.error.reason.words}"
                         f" ({report.error.detail})")  # fmt: skip
        elif not report.lacking:
            lines.append(f"{who}: holds every grant the probe uses")
        for grant in report.lacking:
            kind = "required" if grant.required else f"optional, without it {grant.effect}"
            lines.append(f"{who}: lacks {grant.name} ({kind}): "
                         f"{grant.grant(report.user or '', database)}")  # fmt: skip
    return lines


def grants_document(reports: Sequence[GrantReport], database: str) -> dict[str, Any]:
    hosts = []
    for report in reports:
        error = report.error
        hosts.append({
            "host": report.host,
            "user": report.user,
            "complete": report.complete,
            "lacking": [
                {"grant": g.name, "required": g.required, "effect": g.effect,
                 "statement": g.grant(report.user or "", database)}
                for g in report.lacking
            ],
            "reason": None if error is None else error.reason.value,
            "detail": None if error is None else error.detail,
        })  # fmt: skip
    return {"schema": SCHEMA, "exit_code": exit_code(reports), "hosts": hosts}


def render(reports: Sequence[GrantReport], database: str, as_json: bool) -> list[str]:
    if as_json:
        return [json.dumps(grants_document(reports, database), indent=2)]
    return grants_lines(reports, database)
