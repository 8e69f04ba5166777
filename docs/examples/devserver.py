"""A throwaway PostgreSQL for trying ctxdb out: start it, print its URL, wait for Ctrl-C.

For a machine with no PostgreSQL you could connect to (``make demo``
already installed the server binaries). The server listens on 127.0.0.1
only, on a free port (``--port`` to choose one), as an unprivileged user
when run as root, with its data in a temporary directory; Ctrl-C or
SIGTERM stops it and removes the directory.

Its password is the one in ``PGPASSWORD``: it is never printed, and the
printed URL carries none (asyncpg and psycopg read ``PGPASSWORD`` as libpq
does)::

    export PGPASSWORD=choose-one
    .venv/bin/python docs/examples/devserver.py
    # DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:54321/postgres
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make compose/ importable
    sys.path.insert(0, str(ROOT))

from compose.pg import MissingBinariesError, PostgresNode  # noqa: E402

DRIVER = "postgresql+asyncpg"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)
    password = os.environ.get("PGPASSWORD")
    if not password:
        print("set PGPASSWORD to the password the server should have", file=sys.stderr)
        return 64
    signal.signal(signal.SIGTERM, _interrupt)
    node: PostgresNode | None = None
    try:
        node = PostgresNode.create("devserver", args.port)
        node.init(password=password)
        node.start()
        print(f"DATABASE_URL={DRIVER}://postgres@127.0.0.1:{node.port}/postgres", flush=True)
        print("PostgreSQL is running; Ctrl-C stops it and deletes its data.", flush=True)
        threading.Event().wait()  # until a signal
    except MissingBinariesError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the cleanup short (stop is bounded by its timeouts).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            node.destroy()
            print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
