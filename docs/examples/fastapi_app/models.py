"""The one table of the example: ``example (id serial primary key, text text not null)``."""

from __future__ import annotations

from sqlalchemy import Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["BaseTable", "ExampleTable"]


class BaseTable(DeclarativeBase):
    """Declarative base of the example's tables."""


class ExampleTable(BaseTable):
    """Just a table for the examples: every route writes rows with a telling ``text``."""

    __tablename__ = "example"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
