"""The root ``conftest.py`` of the upstream tree that ``tests/ctxdb/test_dropin.py`` runs.

It is copied, not imported: upstream's examples and tests (context-async-sqlalchemy
2.1.9, renamed to ctxdb) run in a pytest process of their own, with this file as
the conftest of their root directory. It does two things and changes no upstream
file:

* every SQLAlchemy connection goes to the server named by ``CTXDB_UPSTREAM_PG_URL``
  (upstream hard-codes ``127.0.0.1:6432``, user ``krylosov-aa``, database ``test``;
  our server has a free port of its own), by rewriting the DBAPI connect arguments
  in SQLAlchemy's ``do_connect`` event;
* importing ``context_async_sqlalchemy`` fails, so an import the rename missed
  cannot silently reach the upstream package installed in the same venv.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

UPSTREAM = "context_async_sqlalchemy"
_target = make_url(os.environ["CTXDB_UPSTREAM_PG_URL"])


class _NoUpstream(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == UPSTREAM or fullname.startswith(UPSTREAM + "."):
            raise ImportError(f"{fullname} was imported: the rename to ctxdb missed it")
        return None


sys.meta_path.insert(0, _NoUpstream())


@event.listens_for(Engine, "do_connect")
def _to_test_server(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    cparams.update(
        host=_target.host,
        port=_target.port,
        user=_target.username,
        password=_target.password,
        database=_target.database,
    )
