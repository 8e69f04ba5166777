"""Three-member Patroni + etcd cluster on loopback: ``python -m compose.patroni VERB``.

Verbs (see compose/README.md)::

    up [--base-port N] [--sync]  start etcd + 3 members, wait for 1 leader + 2 streaming
    down                         stop everything recorded (even after a crash), delete data
    status [--json]              roles, states, timelines and lag from Patroni's /cluster
    url                          the multi-host URL (password masked)
    switchover [--to MEMBER]     planned switchover; waits for a new writable leader
    failover --to MEMBER         manual failover to MEMBER
    crash-leader [--fast]        kill -9 the leader's Patroni + PostgreSQL (--fast: delete
                                 the leader key so a replica takes over without the 20 s ttl)
    freeze-leader [--postgres-only] [--fast]
                                 SIGSTOP the leader (Patroni + PostgreSQL, or PostgreSQL only)
    thaw                         SIGCONT whatever freeze-leader stopped
    heal                         thaw, restart crashed members, wait until healthy
    sync on|off                  switch Patroni's synchronous_mode at run time
    render-docker                regenerate compose/patroni/docker/*.yml from the template

State (PIDs, layout, passwords in a 0600 file, data) lives in ``--state-dir``
(default ``$CTXDB_CLUSTER_STATE_DIR`` or ``compose/.state``). Passwords are
never printed: set ``$CTXDB_CLUSTER_PASSWORD`` before ``up`` to choose the
superuser's, or read ``STATE_DIR/secrets.json`` (root only). Run it from
the repository's root (``compose`` is not installed). Each verb blocks until
done or until ``--timeout`` seconds per wait have passed (exit status 1 and
a one-line error then).

The same as a library: :func:`compose.patroni.native_cluster` and
:func:`compose.patroni.attach`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from compose.patroni._cluster import Cluster
from compose.patroni._config import BASE_PORT_ENV, SUPERUSER, Layout, write_docker_configs
from compose.patroni._rest import ClusterError
from compose.patroni._state import attach, default_state_dir, native_cluster
from compose.pg import MissingBinariesError


# --- command line ------------------------------------------------------------------
def _print_status(cluster: Cluster, as_json: bool) -> None:
    members = cluster.members()
    if as_json:
        print(json.dumps([m.__dict__ for m in members], indent=1))
        return
    print(f"{'member':<9} {'host':<17} {'role':<13} {'state':<10} {'TL':>3} lag")
    for m in members:
        lag = "" if m.lag is None else m.lag
        print(f"{m.name:<9} {m.host:<17} {m.role:<13} {m.state:<10} {m.timeline or '':>3} {lag}")
    for name in sorted(cluster.frozen):
        print(f"{name} is frozen (SIGSTOP): 'thaw' resumes it")


def _print_hosts(cluster: Cluster) -> None:
    lay = cluster.layout
    print("hosts:      " + " ".join(cluster.hosts()))
    print("url:        " + cluster.url(target_session_attrs="read-write"))
    print(
        f"user:       {SUPERUSER} (password: ${'{'}CTXDB_CLUSTER_PASSWORD{'}'} if it was set at up,"
    )
    print("            else in the state directory's secrets.json, mode 0600)")
    print(f"etcd:       {cluster.etcd_url()}" + (" (TLS + auth)" if lay.etcd_tls else ""))
    if lay.etcd_tls:
        # The path only: the file holds the app user's password (mode 0600).
        print(f"app config: {cluster.app_config_path} (from_patroni(config=...), etcd user app)")
    rest = " ".join(f"{m}=127.0.0.1:{lay.rest_port(m)}" for m in lay.members)
    print(f"patroni:    {rest}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compose.patroni", description="Patroni + etcd cluster on loopback"
    )
    parser.add_argument("--state-dir", type=Path, default=None, help="default compose/.state")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per wait")
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up")
    up.add_argument(
        "--base-port", type=int, default=None, help=f"default ${BASE_PORT_ENV} or 25400"
    )
    up.add_argument("--sync", action="store_true", help="Patroni synchronous_mode: true")
    verbs.add_parser("down")
    status = verbs.add_parser("status")
    status.add_argument("--json", action="store_true")
    verbs.add_parser("url")
    switch = verbs.add_parser("switchover")
    switch.add_argument("--to", default=None, help="candidate member, e.g. member2")
    failover = verbs.add_parser("failover")
    failover.add_argument("--to", required=True)
    crash = verbs.add_parser("crash-leader")
    crash.add_argument("--fast", action="store_true", help="delete the leader key at once")
    freeze = verbs.add_parser("freeze-leader")
    freeze.add_argument("--postgres-only", action="store_true")
    freeze.add_argument(
        "--fast", action="store_true", help="delete the leader key at once, wait for a new leader"
    )
    verbs.add_parser("thaw")
    verbs.add_parser("heal")
    sync = verbs.add_parser("sync")
    sync.add_argument("mode", choices=["on", "off"])
    verbs.add_parser("render-docker")
    return parser


def _run(args: argparse.Namespace, state_dir: Path) -> int:
    if args.verb == "render-docker":
        for path in write_docker_configs():
            print(f"wrote {path}")
        return 0
    started = time.monotonic()
    if args.verb == "up":
        layout = Layout.from_env(args.base_port, synchronous_mode=args.sync)
        cluster = native_cluster(state_dir, layout)
        leader = cluster.up(args.timeout)
        print(f"cluster up in {time.monotonic() - started:.1f}s, leader {leader.name}")
        _print_status(cluster, False)
        _print_hosts(cluster)
        return 0
    attached = attach(state_dir)
    if attached is None:
        print(f"no cluster recorded in {state_dir}")
        return 0 if args.verb == "down" else 1
    cluster = attached
    if args.verb == "down":
        cluster.down()
        print(f"stopped and removed in {time.monotonic() - started:.1f}s")
        return 0
    return _drill(cluster, args, started)


def _drill(cluster: Cluster, args: argparse.Namespace, started: float) -> int:
    verb, timeout = args.verb, args.timeout
    if verb == "status":
        _print_status(cluster, args.json)
    elif verb == "url":
        _print_hosts(cluster)
    elif verb == "switchover":
        new = cluster.switchover(args.to, timeout)
        print(
            f"new leader {new.name} ({new.host}) writable after {time.monotonic() - started:.2f}s"
        )
    elif verb == "failover":
        new = cluster.failover(args.to, timeout)
        print(
            f"new leader {new.name} ({new.host}) writable after {time.monotonic() - started:.2f}s"
        )
    elif verb == "crash-leader":
        old, new = cluster.crash_leader(fast=args.fast, timeout=timeout)
        print(f"killed {old.name}; new leader {new.name} ({new.host}) writable after "
              f"{time.monotonic() - started:.2f}s; 'heal' restarts {old.name}")  # fmt: skip
    elif verb == "freeze-leader":
        frozen = cluster.freeze_leader(with_patroni=not args.postgres_only, fast=args.fast)
        print(f"froze {frozen.name} ({frozen.host}) in {time.monotonic() - started:.2f}s")
        if args.fast:
            new = cluster.wait_new_leader(frozen.name, timeout)
            elapsed = time.monotonic() - started
            print(f"new leader {new.name} ({new.host}) writable after {elapsed:.2f}s")
    elif verb == "thaw":
        cluster.thaw()
        print("thawed")
    elif verb == "heal":
        leader = cluster.heal(timeout)
        print(f"healthy after {time.monotonic() - started:.1f}s, leader {leader.name}")
    elif verb == "sync":
        cluster.set_synchronous(args.mode == "on", timeout)
        print(f"synchronous_mode {args.mode}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir = (args.state_dir or default_state_dir()).resolve()
    try:
        return _run(args, state_dir)
    except (ClusterError, MissingBinariesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
