"""Does Patroni's DCS agree with the database? Comparing one DCS read with one SQL round.

:func:`compare` sets what the DCS says of each member (leader key, member
role and state) beside what SQL says of the same ``host:port``, and lists
each disagreement as a :class:`Finding`:

* ``dcs_unreachable``: the DCS could not be read (the reason per endpoint);
* ``no_leader``: the DCS names no leader;
* ``leader_not_writable``: the DCS's leader is not the host SQL finds
  writable (or the leader key names a member without an address);
* ``role_differs``: a member's DCS role (primary / replica) is not SQL's;
* ``member_unreachable``: a member the DCS lists as running that SQL cannot
  reach (a member the DCS itself lists as stopped, SQL down, agrees);
* ``not_in_dcs``: a host probed (given on the command line) that the DCS
  does not list;
* ``not_trusted``: a member outside the trust rule (``--dcs-allow``), so not
  probed with the credentials: the DCS names a host you did not expect;
* ``not_probed``: a trusted member beyond the first :data:`MAX_PROBED`.

The SQL probe stays the proof, as in the resolver: a finding says the two
differ, never which is right. Pure functions, no I/O. Text that the DCS
controls (member names, roles, states) is shown escaped and cut short, and
never decides more than the comparison it feeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from topology.dcs import DcsMember, DcsView
from topology.probe._dcs_read import DcsReading
from topology.probing.snapshot import HostState, Role, Snapshot

__all__ = [
    "EXIT_DCS_UNREACHABLE",
    "EXIT_DISAGREE",
    "MAX_PROBED",
    "Agreement",
    "Finding",
    "MemberCheck",
    "compare",
    "safe",
]

MAX_PROBED = 64
"""Members probed at most: how many the DCS lists is not ours to choose."""
EXIT_DISAGREE = 3
EXIT_DCS_UNREACHABLE = 4
_PRIMARY_ROLES = frozenset({"leader", "primary", "master"})
# standby_leader: the leader of a standby cluster, in recovery like a replica.
_REPLICA_ROLES = frozenset({"replica", "sync_standby", "quorum_standby", "standby_leader"})
# Patroni states of a member whose PostgreSQL is meant to answer.
_RUNNING_STATES = frozenset({"running", "streaming", "in archive recovery", ""})
_TEXT_LIMIT = 64


def safe(text: str) -> str:
    """DCS-controlled text, printable and at most 64 characters."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= _TEXT_LIMIT else shown[: _TEXT_LIMIT - 3] + "..."


@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement: a stable ``kind``, the host it is about, and words."""

    kind: str
    text: str
    host: str | None = None


@dataclass(frozen=True, slots=True)
class MemberCheck:
    """One DCS member beside SQL: ``sql_role`` is None when it was not probed."""

    member: DcsMember
    leader: bool
    sql_role: Role | None
    agrees: bool | None  # None: not probed (outside the trust rule)
    note: str = ""


@dataclass(frozen=True, slots=True)
class Agreement:
    """The DCS read, each member's check, the hosts it does not list, and the findings."""

    reading: DcsReading
    members: tuple[MemberCheck, ...]
    unlisted: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def agrees(self) -> bool | None:
        """True when nothing disagrees, False when something does, None without a view."""
        if self.reading.view is None:
            return None
        return not self.findings

    @property
    def exit_code(self) -> int:
        if self.reading.view is None:
            return EXIT_DCS_UNREACHABLE
        return EXIT_DISAGREE if self.findings else 0


def _sql_words(state: HostState | None) -> str:
    if state is None:
        return "not probed"
    if state.role is Role.DOWN and state.error is not None:
        return f"down ({state.error.reason.words})"
    return state.role.words


def _expected(role: str) -> Role | None:
    lowered = role.lower()
    if lowered in _PRIMARY_ROLES:
        return Role.PRIMARY
    if lowered in _REPLICA_ROLES:
        return Role.REPLICA
    return None  # a role we do not know: only up / down is compared


def _unprobed(member: DcsMember, leader: bool, trusted: bool) -> tuple[MemberCheck, Finding]:
    where = f"member {safe(member.name)} ({member.host})"
    if trusted:  # beyond the cap on members probed: a store listing thousands
        text = f"{where} is not probed: the DCS lists more than {MAX_PROBED} members"
        return MemberCheck(member, leader, None, None, "not probed"), Finding(
            "not_probed", text, member.host
        )
    text = f"{where} is outside the trusted hosts (--dcs-allow): not probed"
    return MemberCheck(member, leader, None, None, "not trusted"), Finding(
        "not_trusted", text, member.host
    )


def _check_member(
    member: DcsMember, state: HostState, leader: bool
) -> tuple[MemberCheck, Finding | None]:
    where = f"member {safe(member.name)} ({member.host})"
    if not state.up:
        running = member.state.lower() in _RUNNING_STATES
        note = f"DCS: {safe(member.state) or 'listed'}, SQL: {_sql_words(state)}"
        if not running:
            return MemberCheck(member, leader, state.role, True, note), None
        text = f"{where} is listed by the DCS but SQL cannot reach it: {_sql_words(state)}"
        return MemberCheck(member, leader, state.role, False, note), Finding(
            "member_unreachable", text, member.host
        )
    expected = _expected(member.role)
    if expected is None or state.role is expected:
        return MemberCheck(member, leader, state.role, True), None
    note = f"DCS: {safe(member.role)}, SQL: {state.role.words}"
    text = f"{where} is {safe(member.role)} in the DCS but {state.role.words} in SQL"
    return MemberCheck(member, leader, state.role, False, note), Finding(
        "role_differs", text, member.host
    )


def _leader_finding(reading: DcsReading, snapshot: Snapshot) -> Finding | None:
    view = reading.view
    assert view is not None
    if view.leader is None and not view.members:
        text = f"the DCS names no leader and no member ({reading.source}: is the scope right?)"
        return Finding("no_leader", text)
    if view.leader is None:
        return Finding("no_leader", "the DCS names no leader")
    writable = snapshot.primary or "no host"
    name = safe(view.leader)
    host = view.leader_host
    if host is None:
        text = f"DCS leader {name} has no member key (no address); SQL finds {writable} writable"
        return Finding("leader_not_writable", text)
    if snapshot.primary == host:
        return None
    states = {state.host: state for state in snapshot.hosts}
    said = _sql_words(states.get(host))
    text = f"DCS leader {name} ({host}) is not writable (SQL: {said}); "
    text += f"SQL finds {writable} writable"
    return Finding("leader_not_writable", text, host)


def _members(
    view: DcsView,
    states: dict[str, HostState],
    trusted: Callable[[str], bool],
    leader: Finding | None,
) -> tuple[list[MemberCheck], list[Finding]]:
    """Each member's check and finding; the leader's own row defers to the leader finding."""
    checks, findings = [], []
    for member in view.members:
        is_leader = member.name == view.leader
        state = states.get(member.host) if trusted(member.host) else None
        finding: Finding | None
        if state is None:
            check, finding = _unprobed(member, is_leader, trusted(member.host))
        else:
            check, finding = _check_member(member, state, is_leader)
        if is_leader and leader is not None and state is not None:
            # The leader finding already says what SQL thinks of this host.
            check = MemberCheck(member, True, check.sql_role, False, check.note or "not writable")
            finding = None
        checks.append(check)
        if finding is not None:
            findings.append(finding)
    return checks, findings


def compare(reading: DcsReading, snapshot: Snapshot, trusted: Callable[[str], bool]) -> Agreement:
    """The DCS read beside the SQL round (see the module docstring).

    ``trusted(host)``: whether that member was probed (the trust rule).
    """
    view = reading.view
    if view is None:
        error = reading.error or "no answer"
        unreachable = Finding("dcs_unreachable", f"the DCS could not be read: {error}")
        return Agreement(reading, (), (), (unreachable,))
    states = {state.host: state for state in snapshot.hosts}
    leader = _leader_finding(reading, snapshot)
    checks, findings = _members(view, states, trusted, leader)
    if leader is not None:
        findings.insert(0, leader)
    listed = set(view.hosts)
    unlisted = tuple(state.host for state in snapshot.hosts if state.host not in listed)
    for host in unlisted:
        words = _sql_words(states[host])
        text = f"{host} is probed but the DCS does not list it (SQL: {words})"
        findings.append(Finding("not_in_dcs", text, host))
    return Agreement(reading, tuple(checks), unlisted, tuple(findings))
