"""``make demo`` (``python -m compose.demo``): ctxdb in the example FastAPI app.

Part one runs the requests of :data:`compose.demo.__main__.STEPS` through
``docs/examples/fastapi_app`` on a throwaway PostgreSQL and shows what each
left in the table; part two (:func:`run_failover_demo`) has the app follow a
primary that crashes, on a throwaway replicated cluster. Both are bounded by
``DEMO_TIMEOUT`` and stop every server they start, also on Ctrl-C.

Example::

    python -m compose.demo        # exit status 0 when every request did what it should
"""

from __future__ import annotations

from compose.demo._example import load_example_app
from compose.demo._failover import run_failover_demo

__all__ = ["load_example_app", "run_failover_demo"]
