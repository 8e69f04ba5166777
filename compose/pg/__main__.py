"""``python -m compose.pg``: build a replicated cluster, run one failover drill, print timings.

Starts a primary and ``--replicas`` streaming replicas on 127.0.0.1 (free
ports, or ``--base-port``, ``--base-port + 1``, ...), kills the primary,
promotes a replica, rejoins the old primary, then repeats without repointing
and lets :meth:`~compose.pg.ReplicatedCluster.reset` repair it. Every step
is bounded by the cluster's own timeouts; everything is destroyed at the end,
also on an error.

Example::

    python -m compose.pg --replicas 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from compose.pg._replicated import ReplicatedCluster


def main(argv: Sequence[str] | None = None) -> int:
    """Build a cluster, run one failover drill, print the timings, destroy it all."""
    parser = argparse.ArgumentParser(prog="python -m compose.pg", description=main.__doc__)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--base-port", type=int, help="ports base, base+1, ... (default: free)")
    args = parser.parse_args(argv)
    with ReplicatedCluster.build(args.replicas, base_port=args.base_port) as cluster:
        print("built:", ", ".join(f"{n.name}={n.host}" for n in cluster.nodes))
        old = cluster.primary
        cluster.stop(old, mode="immediate")
        cluster.promote(cluster.replicas[0])
        print(f"promoted {cluster.primary.name}; rejoin of {old.name}:", cluster.rejoin(old))
        cluster.stop(cluster.primary, mode="immediate")
        cluster.promote(cluster.replicas[0], repoint=False)
        print("reset after an unfinished failover:", cluster.reset())
        for name, seconds in cluster.timings.items():
            print(f"{name:>12}: {seconds * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
