"""FastAPI spellings of the session middleware, a session dependency, and the app lifespan.

Importing this module imports FastAPI. Two ways to give requests a context:

* the middleware (``add_fastapi_http_db_session_middleware(app)``): sees
  every response's status, including ``Response`` objects a handler
  returns, and commits before the status line leaves;
* the dependency (``DBSession(connect)``): for apps that prefer
  dependencies; see :func:`db_session_dependency` for its exact rules.

``db_lifespan(connects, resolvers)`` (from :mod:`ctxdb.lifespan`) starts the
resolvers and closes everything within a bounded time on shutdown.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

from fastapi import Depends, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from ._context import init_db_session_ctx, is_context_initiated
from ._dispatch import (
    add_fastapi_http_db_session_middleware,
    fastapi_db_session_middleware,
    fastapi_http_db_session_middleware,
)
from ._lifecycle import (
    BeforeCommitCallback,
    reset_db_session_ctx,
    rollback_all_sessions,
    settle_by_status,
)
from .connect import DBConnect
from .lifespan import db_lifespan
from .session import db_session

__all__ = [
    "DBSession",
    "add_fastapi_http_db_session_middleware",
    "db_lifespan",
    "db_session_dependency",
    "fastapi_db_session_middleware",
    "fastapi_http_db_session_middleware",
]

SessionDependency = Callable[[HTTPConnection, Response], AsyncIterator[AsyncSession]]


def db_session_dependency(
    connect: DBConnect, before_commit: BeforeCommitCallback | None = None
) -> SessionDependency:
    """A ``yield`` dependency giving the context's session for ``connect``.

    Use it through :func:`DBSession`, which declares it with
    ``scope="function"``: its exit then runs after the endpoint returned and
    *before* the response is sent. (With FastAPI's default ``"request"``
    scope, FastAPI >= 0.118 runs the exit after the response was sent: a
    failed commit could no longer change a 200.)

    Rules, when the dependency opened the context (no middleware did):

    * the endpoint raised (``HTTPException`` included): roll back;
    * it returned: commit if the status known to the dependency is < 400,
      else roll back. That status is the one set on the injected
      ``Response`` parameter, else the route's ``status_code``, else 200.
      A ``Response`` object *returned* by the endpoint is invisible to a
      dependency: returning ``JSONResponse(..., status_code=404)`` commits.
      Raise ``HTTPException`` instead, or use the middleware;
    * the commit failed: the error propagates, FastAPI answers 500, and
      nothing was stored;
    * the context is reset and its sessions closed in every case.

    When a context is already open (the middleware, another ``DBSession``
    of the same request, a test context), it only yields the session: the
    owner of the context settles it. Any number of ``DBSession`` for
    different DBConnects may serve one request; the first opens the context.
    """

    async def dependency(
        connection: HTTPConnection, response: Response
    ) -> AsyncIterator[AsyncSession]:
        if is_context_initiated():
            yield await db_session(connect)
            return
        token = init_db_session_ctx()
        try:
            try:
                yield await db_session(connect)
            except BaseException:
                await rollback_all_sessions()
                raise
            await settle_by_status(_status(connection, response), before_commit)
        finally:
            await reset_db_session_ctx(token)

    return dependency


def _status(connection: HTTPConnection, response: Response) -> int:
    # FastAPI's injected Response starts with status_code None (not set).
    status: int | None = getattr(response, "status_code", None)
    if status is None:
        status = getattr(connection.scope.get("route"), "status_code", None)
    return int(status) if status is not None else HTTPStatus.OK


def DBSession(connect: DBConnect, before_commit: BeforeCommitCallback | None = None) -> Any:
    """``Depends(db_session_dependency(connect), scope="function")``; needs FastAPI >= 0.121.

    Example::

        Session = Annotated[AsyncSession, DBSession(master)]

        @app.post("/notes")
        async def add(text: str, session: Session) -> dict[str, int]:
            ...
    """
    if "scope" not in inspect.signature(Depends).parameters:
        raise RuntimeError(
            "DBSession needs FastAPI >= 0.121 (Depends(scope='function')): older versions "
            "run a dependency's exit after the response was sent; use the middleware"
        )
    return Depends(db_session_dependency(connect, before_commit), scope="function")
