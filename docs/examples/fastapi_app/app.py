"""The application factory: middleware, lifespan and every example route."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ctxdb import DBConnect
from ctxdb.fastapi import add_fastapi_http_db_session_middleware

from .routes import atomic, concurrent, early, manual, rollback, simple

__all__ = ["create_app", "lifespan"]


def create_app(master: DBConnect, replica: DBConnect | None = None) -> FastAPI:
    """A new app whose routes use ``master`` (and ``replica`` for reads, default ``master``).

    The pure ASGI session middleware gives every request its own context:
    it commits when the status is < 400 before the status line is sent,
    rolls back otherwise or on an exception, and closes every session.
    """
    app = FastAPI(title="ctxdb example", lifespan=lifespan)
    app.state.master = master
    app.state.replica = replica if replica is not None else master
    add_fastapi_http_db_session_middleware(app)
    setup_routes(app)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close the engines when the application stops (each waits at most its dispose timeout)."""
    yield
    master: DBConnect = app.state.master
    replica: DBConnect = app.state.replica
    await master.close()
    if replica is not master:
        await replica.close()


def setup_routes(app: FastAPI) -> None:
    """All routes in one place; every one of them is a POST except the listing."""
    app.add_api_route("/rows", simple.list_rows, methods=["GET"])
    posts: dict[str, Callable[..., object]] = {
        "/simple_usage": simple.simple_usage,
        "/child_tasks": simple.child_tasks,
        "/atomic": atomic.atomic_base,
        "/atomic/{mode}": atomic.atomic_with_open_transaction,
        "/early_commit": early.early_commit,
        "/early_rollback": early.early_rollback,
        "/early_connection_close": early.early_connection_close,
        "/manual_commit": manual.manual_commit,
        "/manual_rollback": manual.manual_rollback,
        "/concurrent_queries": concurrent.concurrent_queries,
        "/multiple_sessions": concurrent.multiple_sessions,
        "/rollback/exception": rollback.by_exception,
        "/rollback/http_exception": rollback.by_http_exception,
        "/rollback/status_code": rollback.by_status_code,
    }
    for path, endpoint in posts.items():
        app.add_api_route(path, endpoint, methods=["POST"])
