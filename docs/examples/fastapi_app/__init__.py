"""An example FastAPI application on ctxdb, one route per way of using context sessions.

Modelled on the workflows of upstream ``context-async-sqlalchemy``'s FastAPI
example. Every route inserts rows into ``ExampleTable`` and leaves the
commit or rollback to the middleware unless it says otherwise.

Example::

    from fastapi_app import create_app
    from fastapi_app.database import connect_from_env

    app = create_app(connect_from_env())   # CTXDB_EXAMPLE_URL=postgresql+asyncpg://...
"""

from .app import create_app, lifespan

__all__ = ["create_app", "lifespan"]
