"""The cluster controller: roles, health and the drills, over Patroni's REST API.

:class:`Cluster` reads the topology from Patroni (``GET /cluster``), asks it
for switchovers, and leaves process work (start, kill, freeze) to a runtime:
:class:`~compose.patroni._native.NativeRuntime` here, or the Docker ones in
``compose/patroni/_docker.py`` and ``_compose.py``. Both publish the same ports on 127.0.0.1, so
every host this class returns is ``127.0.0.1:PORT``.

Blocking and synchronous; every wait has a timeout and raises ClusterError
when it passes. One controller per cluster at a time (not thread-safe).
Passwords never appear in reprs, messages or printed URLs.
"""

from __future__ import annotations

import json
import secrets as token
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from compose.etcd import EtcdError, EtcdGateway
from compose.patroni._config import SUPERUSER, Layout
from compose.patroni._rest import ClusterError, http_json, psql_value

SYNC_STABLE = 1.5  # seconds the synchronous standby assignment must hold still

STREAMING_ROLES = ("replica", "sync_standby", "quorum_standby")
PASSWORD_ENV = "CTXDB_CLUSTER_PASSWORD"
REPL_PASSWORD_ENV = "CTXDB_CLUSTER_REPL_PASSWORD"


@dataclass(frozen=True)
class Secrets:
    """Superuser and replication passwords (masked in repr)."""

    superuser: str = field(repr=False)
    replication: str = field(repr=False)

    @classmethod
    def generate(cls, env: dict[str, str] | None = None) -> Secrets:
        """From $CTXDB_CLUSTER_PASSWORD / $CTXDB_CLUSTER_REPL_PASSWORD, else random."""
        env = env or {}
        return cls(
            env.get(PASSWORD_ENV) or token.token_urlsafe(18),
            env.get(REPL_PASSWORD_ENV) or token.token_urlsafe(18),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps({"superuser": self.superuser, "replication": self.replication}))

    @classmethod
    def load(cls, path: Path) -> Secrets:
        data = json.loads(path.read_text())
        return cls(data["superuser"], data["replication"])

    def patroni_env(self) -> dict[str, str]:
        return {
            "PATRONI_SUPERUSER_PASSWORD": self.superuser,
            "PATRONI_REPLICATION_PASSWORD": self.replication,
            "PATRONI_REWIND_PASSWORD": self.superuser,
        }


class Runtime(Protocol):
    """Process operations a cluster backend provides."""

    layout: Layout

    def start(self, timeout: float = 30) -> None: ...
    def stop(self, timeout: float = 20, *, keep_data: bool = False) -> None: ...
    def member_running(self, member: str) -> bool: ...
    def start_member(self, member: str) -> None: ...
    def kill_member(self, member: str) -> None: ...
    def freeze_member(self, member: str, *, patroni: bool) -> list[Any]: ...
    def thaw(self) -> None: ...
    def dcs_gateway(self, user: str = "patroni") -> EtcdGateway: ...
    @property
    def app_config_path(self) -> Path | None: ...


@dataclass(frozen=True)
class Member:
    """One member as Patroni reports it; ``host`` is where clients connect."""

    name: str
    role: str
    state: str
    host: str
    port: int
    timeline: int | None
    lag: int | str | None

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"


class Cluster:
    """A three-member Patroni cluster and its drills."""

    def __init__(self, runtime: Runtime, secrets: Secrets, bin_dir: Path) -> None:
        self.runtime = runtime
        self.secrets = secrets
        self.bin_dir = bin_dir
        self.frozen: set[str] = set()
        self.synchronous = runtime.layout.synchronous_mode

    def __repr__(self) -> str:
        return f"Cluster(scope={self.layout.scope!r}, hosts={self.hosts()})"

    @property
    def layout(self) -> Layout:
        return self.runtime.layout

    # --- addresses -----------------------------------------------------------------
    def hosts(self) -> list[str]:
        return self.layout.hosts()

    def etcd_url(self) -> str:
        """etcd's client endpoint as this host reaches it (https with TLS), where Patroni
        keeps its leader and members (``layout.namespace`` / ``layout.scope``); Docker
        publishes the same port."""
        return self.runtime.dcs_gateway().endpoint

    @property
    def app_config_path(self) -> Path:
        """The app-side Patroni YAML (scope, namespace, etcd3 with TLS files and the
        read-only ``app`` user): ``ClusterResolver.from_patroni(config=...)`` reads it."""
        path = self.runtime.app_config_path
        if path is None or not path.is_file():
            raise ClusterError(f"this cluster has no app-side Patroni YAML ({path})")
        return path

    def dcs_gateway(self, user: str = "patroni") -> EtcdGateway:
        """A blocking client of the cluster's etcd as ``user`` (``patroni``: readwrite,
        ``app``: read-only, ``root``); anonymous on a plain etcd."""
        return self.runtime.dcs_gateway(user)

    def delete_leader_key(self) -> None:
        """Delete Patroni's leader key, as its lease expiry would (2 s per call at most)."""
        try:
            self.dcs_gateway().delete(self.layout.leader_key())
        except (EtcdError, OSError) as exc:
            raise ClusterError(f"could not delete the leader key: {exc}") from exc

    def url(self, *, masked: bool = True, driver: str = "postgresql", **params: str) -> str:
        """Multi-host libpq URL of the superuser; the password is ``***`` unless unmasked."""
        password = "***" if masked else quote(self.secrets.superuser, safe="")
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{driver}://{SUPERUSER}:{password}@{','.join(self.hosts())}/postgres" + (
            f"?{query}" if query else ""
        )

    # --- observing -------------------------------------------------------------------
    def members(self, timeout: float = 1.0) -> list[Member]:
        """Members from the first Patroni that answers ``GET /cluster`` (frozen ones skipped)."""
        return [self._member(m) for m in self._cluster_members(timeout)]

    def dcs_hosts(self, timeout: float = 1.0) -> list[str]:
        """``host:port`` of each member as Patroni publishes it in the DCS (its
        ``connect_address``): where a client that follows the DCS connects. Native:
        ``127.0.0.1:PORT``; Docker: the service names (``member1:25411``)."""
        return [f"{m['host']}:{m['port']}" for m in self._cluster_members(timeout)]

    def _cluster_members(self, timeout: float) -> list[dict[str, Any]]:
        errors = []
        for name in self.layout.members:
            if name in self.frozen:
                continue
            url = f"http://127.0.0.1:{self.layout.rest_port(name)}/cluster"
            try:
                status, body = http_json(url, timeout=timeout)
            except OSError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if status == 200 and isinstance(body, dict):
                return list(body.get("members", []))
            errors.append(f"{name}: HTTP {status}")
        raise ClusterError("no Patroni REST API answered: " + "; ".join(errors))

    def _member(self, raw: dict[str, Any]) -> Member:
        name = str(raw["name"])
        # Docker reports container names as hosts; clients use the published port.
        port = self.layout.pg_port(name) if name in self.layout.members else int(raw["port"])
        return Member(
            name=name,
            role=str(raw.get("role", "?")),
            state=str(raw.get("state", "?")),
            host=f"127.0.0.1:{port}",
            port=port,
            timeline=raw.get("timeline"),
            lag=raw.get("lag", raw.get("receive_lag")),
        )

    def leader(self) -> Member:
        leaders = [m for m in self.members() if m.is_leader]
        if len(leaders) != 1:
            raise ClusterError(f"expected one leader, found {[m.name for m in leaders]}")
        return leaders[0]

    def replicas(self) -> list[Member]:
        return [m for m in self.members() if m.role in STREAMING_ROLES]

    def writable(self, member: Member | str, timeout: float = 3.0) -> bool:
        """True when the member commits a transaction with an XID (a real write)."""
        port = member.port if isinstance(member, Member) else self.layout.pg_port(member)
        value = psql_value(
            self.bin_dir, port, self.secrets.superuser, "select txid_current()",
            user=SUPERUSER, timeout=timeout,
        )  # fmt: skip
        return value is not None and value.isdigit()

    def healthy(self) -> Member | None:
        """The leader when 1 writable leader + all others streaming on its timeline."""
        try:
            view = self.members()
        except ClusterError:
            return None
        leaders = [m for m in view if m.is_leader and m.state == "running"]
        if len(view) != self.layout.size or len(leaders) != 1:
            return None
        leader = leaders[0]
        streaming = [
            m
            for m in view
            if m.role in STREAMING_ROLES
            and m.state == "streaming"
            and m.timeline == leader.timeline
        ]
        if len(streaming) != self.layout.size - 1:
            return None
        if self.synchronous and not any(m.role == "sync_standby" for m in streaming):
            return None
        return leader if self.writable(leader) else None

    def wait_healthy(self, timeout: float = 90) -> Member:
        """Wait for 1 writable leader + streaming replicas; return the leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.healthy()
            if leader is not None:
                return leader
            time.sleep(0.1)
        raise ClusterError(f"cluster not healthy after {timeout}s: {self._describe()}")

    def wait_new_leader(self, old: str, timeout: float = 60) -> Member:
        """Wait until a member other than ``old`` leads and accepts writes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                view = self.members(timeout=0.5)
            except ClusterError:
                view = []
            for member in view:
                if member.is_leader and member.name != old and self.writable(member, 1.0):
                    return member
            time.sleep(0.02)
        raise ClusterError(f"no new writable leader after {timeout}s: {self._describe()}")

    def _describe(self) -> str:
        try:
            return ", ".join(f"{m.name}={m.role}/{m.state}/tl{m.timeline}" for m in self.members())
        except ClusterError as exc:
            return str(exc)

    # --- drills ----------------------------------------------------------------------
    def switchover(self, candidate: str | None = None, timeout: float = 60) -> Member:
        """Planned switchover through the REST API; returns the new writable leader."""
        leader = self.leader()
        payload = {"leader": leader.name, **({"candidate": candidate} if candidate else {})}
        self._post(leader.name, "/switchover", payload, timeout)
        return self.wait_new_leader(leader.name, timeout)

    def failover(self, candidate: str, timeout: float = 60) -> Member:
        """Manual failover to ``candidate`` (works without a healthy leader)."""
        old = next((m.name for m in self.members() if m.is_leader), "")
        self._post(candidate, "/failover", {"candidate": candidate}, timeout)
        return self.wait_new_leader(old, timeout)

    def _post(self, member: str, path: str, payload: object, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.layout.rest_port(member)}{path}"
        status, body = http_json(url, method="POST", payload=payload, timeout=timeout)
        if status != 200:
            raise ClusterError(f"POST {path} refused: HTTP {status}: {body}")

    def crash_leader(self, *, fast: bool = True, timeout: float = 60) -> tuple[Member, Member]:
        """SIGKILL the leader's Patroni and PostgreSQL; return (crashed, new leader).

        ``fast`` deletes the leader key in etcd right after the kill, as its
        lease expiry would after the ttl (20 s): a replica takes over at once.
        The crashed member stays down until :meth:`heal` or :meth:`start_member`.
        """
        leader = self.leader()
        self.runtime.kill_member(leader.name)
        if fast:
            self.delete_leader_key()
        return leader, self.wait_new_leader(leader.name, timeout)

    def freeze_leader(self, *, with_patroni: bool = True, fast: bool = False) -> Member:
        """SIGSTOP the leader's PostgreSQL, and its Patroni unless ``with_patroni`` is False.

        With Patroni frozen too (a paused host), the others take over once the
        leader key expires (ttl), or at once with ``fast``; thawed, the old
        leader finds it lost the key and rejoins as a replica. With PostgreSQL
        frozen alone, Patroni's own queries hang: clients see a hung primary.
        """
        if fast and not with_patroni:
            raise ClusterError("fast needs with_patroni: a live Patroni would re-take the key")
        leader = self.leader()
        self.runtime.freeze_member(leader.name, patroni=with_patroni)
        if with_patroni:
            self.frozen.add(leader.name)
        if fast:
            self.delete_leader_key()
        return leader

    def thaw(self) -> None:
        self.runtime.thaw()
        self.frozen.clear()

    def start_member(self, member: str) -> None:
        self.runtime.start_member(member)

    def heal(self, timeout: float = 90) -> Member:
        """Thaw, restart every member whose Patroni is down, wait until healthy."""
        self.thaw()
        for member in self.layout.members:
            if not self.runtime.member_running(member):
                self.runtime.start_member(member)
        return self.wait_healthy(timeout)

    def set_synchronous(self, enabled: bool, timeout: float = 30) -> None:
        """Turn Patroni's synchronous_mode on or off (PATCH /config) and wait until it holds.

        Returns once Patroni's named synchronous standby and the leader's
        ``pg_stat_replication`` agree (or neither has one) for
        ``SYNC_STABLE`` seconds: PATCH answers earlier, and a leader that
        crashes while Patroni still reassigns the standby leaves no member
        allowed to take over.
        """
        leader = self.leader()
        url = f"http://127.0.0.1:{self.layout.rest_port(leader.name)}/config"
        status, body = http_json(
            url, method="PATCH", payload={"synchronous_mode": enabled}, timeout=timeout
        )
        if status != 200:
            raise ClusterError(f"PATCH /config refused: HTTP {status}: {body}")
        self.synchronous = enabled
        self.wait_healthy(timeout)
        self.wait_synchronous(enabled, timeout)

    def wait_synchronous(self, enabled: bool, timeout: float = 60.0) -> str | None:
        """Wait until synchronous replication is ``enabled`` (or off) and stable; the standby."""
        deadline = time.monotonic() + timeout
        seen, since = None, 0.0
        while time.monotonic() < deadline:
            state = self._sync_state()
            if state is not None and (state[1] is not None) == enabled:
                if state != seen:
                    seen, since = state, time.monotonic()
                elif time.monotonic() - since >= SYNC_STABLE:
                    return state[1]
            else:
                seen = None
            time.sleep(0.1)
        raise ClusterError(
            f"synchronous mode {'on' if enabled else 'off'} not stable after {timeout}s"
        )

    def _sync_state(self) -> tuple[str, str | None] | None:
        """(leader, synchronous standby or None) when Patroni and PostgreSQL agree, else None."""
        try:
            members = self.members()
        except ClusterError:
            return None
        leaders = [m for m in members if m.is_leader]
        named = [m.name for m in members if m.role == "sync_standby"]
        if len(leaders) != 1 or len(named) > 1:
            return None
        acking = psql_value(
            self.bin_dir, leaders[0].port, self.secrets.superuser,
            "SELECT coalesce(string_agg(application_name, ','), '') FROM pg_stat_replication "
            "WHERE sync_state = 'sync'", user=SUPERUSER, timeout=2.0,
        )  # fmt: skip
        if acking is None or acking != (named[0] if named else ""):
            return None
        return leaders[0].name, (named[0] if named else None)

    # --- lifecycle ---------------------------------------------------------------------
    def up(self, timeout: float = 90) -> Member:
        """Start every process and wait until healthy; return the leader."""
        self.runtime.start()
        return self.wait_healthy(timeout)

    def down(self) -> None:
        self.frozen.clear()
        self.runtime.stop()
