"""PostgreSQL LSN text: ``"16/B374D848"`` <-> bytes since ``0/0``."""

from __future__ import annotations

__all__ = ["format_lsn", "parse_lsn"]


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> bytes since 0/0; ``ValueError`` if it is not one."""
    high, sep, low = text.strip().partition("/")
    try:
        if not sep or not high or not low or len(high) > 8 or len(low) > 8:
            raise ValueError
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        raise ValueError(f"not a PostgreSQL LSN: {text!r}") from None


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
