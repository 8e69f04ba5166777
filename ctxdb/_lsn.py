"""PostgreSQL LSN text: ``"16/B374D848"`` <-> bytes since ``0/0``."""

from __future__ import annotations

import re

__all__ = ["format_lsn", "parse_lsn"]

_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> bytes since 0/0; ``ValueError`` if it is not one."""
    # Hex digits only: int(..., 16) alone also takes a sign, '_' and blanks ("-1/0").
    if not _LSN.fullmatch(text.strip()):
        raise ValueError(f"not a PostgreSQL LSN: {text!r}")
    high, _, low = text.strip().partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
