"""topology: find the PostgreSQL primary and replicas among candidate hosts."""

__all__: list[str] = []
