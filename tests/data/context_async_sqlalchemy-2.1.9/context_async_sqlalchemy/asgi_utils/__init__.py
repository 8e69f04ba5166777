from .middleware import ASGIHTTPDBSessionMiddleware

__all__ = [
    "ASGIHTTPDBSessionMiddleware",
]
