"""Showing an :class:`~topology.probe._agree.Agreement`: the headline, the member table, JSON.

The headline is the run's first line and answers the on-call engineer's
first question, "does Patroni agree with the database?": ``DCS AGREES``,
``DCS DISAGREES`` (each finding in words) or ``DCS UNREACHABLE`` (the
reason per endpoint). Pure functions: no I/O.
"""

from __future__ import annotations

from typing import Any

from topology.probe._agree import Agreement, MemberCheck, safe

__all__ = ["dcs_json", "headline", "member_table"]


def headline(agreement: Agreement) -> str:
    """One line: whether the DCS agrees with SQL, and if not, every finding."""
    reading = agreement.reading
    view = reading.view
    if view is None:
        return f"DCS UNREACHABLE: {reading.source}: {reading.error or 'no answer'}"
    if agreement.findings:
        return "DCS DISAGREES: " + "; ".join(finding.text for finding in agreement.findings)
    leader = safe(view.leader or "")
    count = len(agreement.members)
    return (
        f"DCS AGREES: leader {leader} ({view.leader_host}) is the writable host; "
        f"{count}/{count} members agree ({reading.source})"
    )


def _sql_cell(check: MemberCheck) -> str:
    return "not probed" if check.sql_role is None else check.sql_role.words


def _agrees_cell(check: MemberCheck) -> str:
    return {True: "yes", False: "NO", None: "-"}[check.agrees]


def member_table(agreement: Agreement) -> list[str]:
    """The DCS's members beside SQL, one line each (none without a view)."""
    if agreement.reading.view is None:
        return []
    rows = [("MEMBER", "HOST", "DCS ROLE", "DCS STATE", "SQL ROLE", "AGREES", "NOTE")]
    for check in agreement.members:
        member = check.member
        name = safe(member.name) + (" *" if check.leader else "")
        role, state = safe(member.role) or "-", safe(member.state) or "-"
        rows.append(
            (name, member.host, role, state, _sql_cell(check), _agrees_cell(check), check.note)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
    lines.append("(* the DCS's leader)")
    return lines


def _member_json(check: MemberCheck) -> dict[str, Any]:
    member = check.member
    return {
        "name": member.name,
        "host": member.host,
        "role": member.role,
        "state": member.state,
        "leader": check.leader,
        "sql_role": None if check.sql_role is None else check.sql_role.value,
        "agrees": check.agrees,
        "note": check.note or None,
    }


def dcs_json(agreement: Agreement) -> dict[str, Any]:
    """The ``dcs`` object of the JSON document (see docs/probe-cli.md)."""
    reading = agreement.reading
    view = reading.view
    return {
        "source": reading.source,
        "error": reading.error,
        "agrees": agreement.agrees,
        "exit_code": agreement.exit_code,
        "leader": None if view is None else view.leader,
        "leader_host": None if view is None else view.leader_host,
        "revision": None if view is None else view.revision,
        "members": [_member_json(check) for check in agreement.members],
        "unlisted": list(agreement.unlisted),
        "findings": [{"kind": f.kind, "host": f.host, "text": f.text} for f in agreement.findings],
        "summary": headline(agreement),
    }
