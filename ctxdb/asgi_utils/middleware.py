"""Upstream's module path ``context_async_sqlalchemy.asgi_utils.middleware``: see ``ctxdb.asgi``."""

from ..asgi import ASGIApp, ASGIHTTPDBSessionMiddleware, Message, Receive, Scope, Send

__all__ = ["ASGIApp", "ASGIHTTPDBSessionMiddleware", "Message", "Receive", "Scope", "Send"]
