"""One run with a DCS: read it once, probe its trusted members and the given hosts, compare.

:func:`plan_dcs` checks everything that can be wrong before any network
call (the DCS settings, the trust rule: a member receives the credentials
only if its host was given on the command line, is in ``--dcs-allow``, or
``sslmode=verify-full`` makes every server prove its name), and raises
:class:`~topology.errors.ConfigurationError` (a usage error, exit 64).
:func:`run_dcs` then reads the DCS (at most one ``--timeout`` per endpoint
plus 1 s), probes every host in one concurrent round (about ``--timeout``),
and prints the agreement first. Exit status: 2 when SQL finds no primary or
a split brain, else 3 when the DCS and the database disagree, 4 when the
DCS could not be read, else SQL's 0 or 1. When no host could be probed at
all (an unreachable DCS and no host given), the DCS's status alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from topology.dcs._trust import TrustRule, dcs_trust
from topology.errors import ConfigurationError
from topology.hosts import parse_host
from topology.probe._agree import MAX_PROBED, Agreement, compare
from topology.probe._dcs_read import DcsSource, build_watch, read_deadline, read_once
from topology.probe._dcs_render import dcs_json, headline, member_table
from topology.probe._render import Verdict, document, judge, summary, table
from topology.probe._session import ProbeSession
from topology.probe._target import Target, resolve_target
from topology.probe.args import Arguments
from topology.probing.snapshot import Snapshot

if TYPE_CHECKING:
    from topology.probe._output import Output

__all__ = ["DcsPlan", "plan_dcs", "run_dcs"]


@dataclass(frozen=True)
class DcsPlan:
    """The DCS to read, the trust rule for its members, and the hosts given."""

    source: DcsSource
    trust: TrustRule
    given: Target
    warn: Callable[[str], None]  # once per message: the hosts given are looked up twice


def plan_dcs(args: Arguments, env: Mapping[str, str], warn: Callable[[str], None]) -> DcsPlan:
    """Check the DCS settings and the trust rule; ConfigurationError when they do not hold."""
    assert args.dcs is not None
    warned: set[str] = set()

    def warn_once(message: str) -> None:
        if message not in warned:
            warned.add(message)
            warn(message)

    given = resolve_target(
        args.hosts, args.url, env, user=args.user, database=args.dbname, warn=warn_once,
        default_hosts=False,
    )  # fmt: skip
    try:
        trust = dcs_trust(given.hosts, args.dcs.allow, given.common)
    except ConfigurationError:
        if args.dcs.allow is not None:
            raise  # a bad --dcs-allow entry: its own words
        raise ConfigurationError(
            "the DCS names the hosts that receive your credentials: say which to trust, "
            'with HOST arguments, --dcs-allow (names and/or CIDR networks; "*" trusts '
            "whatever the DCS names), or PGSSLMODE=verify-full"
        ) from None
    return DcsPlan(build_watch(args.dcs, env, args.timeout), trust, given, warn_once)


def exit_status(verdict: Verdict, agreement: Agreement, probed: bool) -> int:
    """See the module docstring: SQL's 2 first, then the DCS's 3 or 4, then SQL's 0 or 1."""
    if not probed:
        return agreement.exit_code
    if verdict.exit_code == 2:
        return 2
    return agreement.exit_code or verdict.exit_code


async def _probe(args: Arguments, target: Target) -> Snapshot:
    if not target.hosts:
        return Snapshot.empty(())
    session = ProbeSession(target.hosts, target.options, args.driver, timeout=args.timeout)
    try:
        return await session.round()
    finally:
        await session.close()


async def run_dcs(args: Arguments, env: Mapping[str, str], plan: DcsPlan, output: Output) -> int:
    """Read the DCS once, probe, print the agreement first; the exit status."""
    reading = await read_once(plan.source.watch, read_deadline(plan.source, args.timeout))
    members = () if reading.view is None else reading.view.members
    trusted = [m.host for m in members if plan.trust.trusts(m.host)]
    extra = [parse_host(host) for host in dict.fromkeys(trusted)][:MAX_PROBED]
    target = resolve_target(
        args.hosts, args.url, env, user=args.user, database=args.dbname,
        warn=plan.warn, extra=extra, default_hosts=False,
    )  # fmt: skip
    output.add_secrets(target.secrets)
    snapshot = await _probe(args, target)
    agreement = compare(reading, snapshot, plan.trust.trusts)
    verdict = judge(snapshot, args.lag)
    status = exit_status(verdict, agreement, bool(target.hosts))
    if args.json:
        doc = document(snapshot, verdict, args.lag, at=time.time())
        doc["exit_code"] = status
        # Right after the exit status: the first thing a reader of the document meets.
        head = {key: doc.pop(key) for key in ("schema", "time", "status", "exit_code")}
        output.line(json.dumps({**head, "dcs": dcs_json(agreement), **doc}, indent=2))
        return status
    output.line(headline(agreement))
    if reading.view is not None:
        output.line()
        for text in member_table(agreement):
            output.line(text)
    output.line()
    if target.hosts:
        for text in table(snapshot, args.lag):
            output.line(text)
        output.line("SQL: " + summary(verdict))
    else:
        output.line("SQL: no host to probe (none given, none read from the DCS)")
    return status
