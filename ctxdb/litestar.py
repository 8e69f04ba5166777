"""Litestar: the session middleware as a plugin, a session dependency, and the lifespan.

Importing this module imports Litestar. ``CtxDBPlugin`` adds, to the app it
is given to:

* the pure ASGI session middleware (:mod:`ctxdb.asgi`) as the outermost
  user middleware: the transaction is committed (status < 400) or rolled
  back (status >= 400) *before* the status line leaves, a failed commit is
  answered with a plain 500, work done while streaming or in background
  tasks is committed when the response ends, and a WebSocket connection
  gets one context committed at every message (docs/websockets.md);
* a lifespan manager (entered before any other, left after all others)
  that starts the given resolvers and closes the given DBConnects and
  resolvers within ``close_timeout + grace`` seconds on shutdown.

Litestar turns a handler's exception into a response inside the
middleware stack (its exception handlers run between the route handler and
user middleware), so the middleware does not see the exception: it sees
the 4xx/5xx status the exception became, and rolls back. An exception
handler that answers an exception with a status < 400 therefore commits,
exactly as if the handler had returned that response.

Example::

    app = Litestar(
        route_handlers=[...],
        plugins=[CtxDBPlugin(connects=[master], resolvers=[cluster])],
        dependencies={"session": provide_db_session(master)},
    )
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPlugin
from litestar.types import ASGIApp
from sqlalchemy.ext.asyncio import AsyncSession

from ._lifecycle import BeforeCommitCallback
from .asgi import ASGIHTTPDBSessionMiddleware
from .connect import DBConnect
from .lifespan import Lifecycle, ManagedResolver, db_lifespan
from .session import db_session

__all__ = ["CtxDBPlugin", "db_lifespan", "db_session_middleware", "provide_db_session"]


def db_session_middleware(before_commit: BeforeCommitCallback | None = None) -> DefineMiddleware:
    """The session middleware alone, for ``Litestar(middleware=[...])`` or a router."""
    # Our ASGI types are the generic MutableMapping ones, not Litestar's TypedDicts.
    factory = cast("Callable[..., ASGIApp]", ASGIHTTPDBSessionMiddleware)
    return DefineMiddleware(factory, before_commit=before_commit)


def provide_db_session(connect: DBConnect) -> Provide:
    """A dependency giving the request's session for ``connect`` (the middleware owns it).

    Raises ``ContextNotInitiatedError`` when no middleware opened a context.
    """

    async def session() -> AsyncSession:
        return await db_session(connect)

    return Provide(session)


class CtxDBPlugin(InitPlugin):
    """Adds the session middleware and the lifespan; see the module docstring.

    ``timeouts``: ``start_timeout``, ``close_timeout``, ``grace`` (see
    :class:`ctxdb.lifespan.Lifecycle`).
    """

    __slots__ = ("before_commit", "connects", "resolvers", "timeouts")

    def __init__(
        self,
        connects: Iterable[DBConnect] = (),
        resolvers: Iterable[ManagedResolver] = (),
        *,
        before_commit: BeforeCommitCallback | None = None,
        **timeouts: float,
    ) -> None:
        self.connects = tuple(connects)
        self.resolvers = tuple(resolvers)
        self.before_commit = before_commit
        self.timeouts = timeouts

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, db_session_middleware(self.before_commit))
        if self.connects or self.resolvers:
            lifecycle = Lifecycle(self.connects, self.resolvers, **self.timeouts)
            app_config.lifespan.insert(0, lifecycle.lifespan)
        return app_config
