"""Real PostgreSQL on one machine, outside the two packages: one folder per concept.

- :mod:`compose.pg`: native servers, streaming replication, black holes
  (``python -m compose.pg``);
- :mod:`compose.patroni`: the Patroni + etcd cluster, its native and Docker
  runtimes (``python -m compose.patroni VERB``; templates in ``compose/patroni/``);
- :mod:`compose.drill`: the failover drills (``python -m compose.drill SCENARIO...``);
- :mod:`compose.bench`: the benchmarks (``make bench``);
- :mod:`compose.demo`: ``make demo``.

Run the commands from the repository's root. ``ctxdb`` and ``topology`` never
import anything from here; the tests use it through each folder's ``__init__``.
"""

__all__: list[str] = []
