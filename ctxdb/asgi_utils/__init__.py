"""Upstream's module path ``context_async_sqlalchemy.asgi_utils``: see ``ctxdb.asgi``."""

from ..asgi import ASGIHTTPDBSessionMiddleware

__all__ = ["ASGIHTTPDBSessionMiddleware"]
