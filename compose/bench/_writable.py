"""The oracle: the first commit on the new primary, by a subprocess (no ctxdb, no topology).

``python -m compose.bench._writable PORT TIMEOUT`` (password in the
``BENCH_PGPASSWORD`` environment variable, never on the command line)
opens one plain psycopg connection to the standby at ``127.0.0.1:PORT``
*before* the fault (a standby's session survives its promotion), prints
``ready``, then tries an INSERT into ``bench_follow`` in autocommit every
``STEP`` seconds. A server in recovery refuses it: the first commit is the
first moment any client could commit there, the limit every client's follow
time is measured from. A process of its own, so that its loop shares no
event loop with the clients it is the yardstick of. It prints that moment
as ``time.monotonic()`` (one clock for every process on Linux) and exits 0;
exits 1 after ``TIMEOUT`` seconds without one. A connection lost meanwhile
is reopened (bounded by ``connect_timeout``).
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

STEP = 0.0005
INSERT = "INSERT INTO bench_follow (port) VALUES (inet_server_port())"


def _connect(port: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname="postgres",
        password=os.environ.get("BENCH_PGPASSWORD", ""),
        autocommit=True,
        connect_timeout=2,
        application_name="bench-writable-poller",
    )


def main(argv: list[str]) -> int:
    port, timeout = int(argv[0]), float(argv[1])
    conn = _connect(port)
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn.execute(INSERT)
            print(f"{time.monotonic():.6f}", flush=True)
            conn.close()
            return 0
        except psycopg.OperationalError:
            conn.close()
            time.sleep(STEP)
            try:
                conn = _connect(port)
            except psycopg.OperationalError:
                continue
        except psycopg.Error:
            time.sleep(STEP)  # still in recovery
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
