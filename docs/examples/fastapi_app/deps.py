"""FastAPI dependencies that hand a route the app's DBConnects.

The DBConnects live on ``app.state`` (set by ``create_app``), so one process
can run several apps on different databases, which the tests rely on.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import insert

from ctxdb import DBConnect, db_session

from .models import ExampleTable

__all__ = ["Master", "Replica", "insert_row"]


async def _master(request: Request) -> DBConnect:
    master: DBConnect = request.app.state.master
    return master


async def _replica(request: Request) -> DBConnect:
    replica: DBConnect = request.app.state.replica
    return replica


Master = Annotated[DBConnect, Depends(_master)]
Replica = Annotated[DBConnect, Depends(_replica)]


async def insert_row(connect: DBConnect, text: str) -> int:
    """Insert one row through the context session of ``connect``; return its id.

    The first call in a context opens the connection and the transaction;
    the middleware commits or rolls it back at the end of the request.
    """
    session = await db_session(connect)
    result = await session.execute(
        insert(ExampleTable).values(text=text).returning(ExampleTable.id)
    )
    return int(result.scalar_one())
