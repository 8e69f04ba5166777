"""libpq's password file (``~/.pgpass`` / ``PGPASSFILE``), matched the way libpq does.

Each line is ``hostname:port:database:username:password``. A field that is
exactly ``*`` matches anything; ``\\:`` and ``\\\\`` escape a colon and a
backslash (so an IPv6 host is written ``\\:\\:1``); lines starting with
``#`` are comments; the first matching line wins. As in libpq, the file is
ignored (with a warning) when it is not a plain file or when group or others
may read it (mode wider than 0600), an empty database or user never matches,
and an empty host matches ``localhost``.

Reading is synchronous and small: the file is read once per lookup, with no
network and no wait.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["PgpassEntry", "default_path", "lookup", "match_line", "parse_line"]

PgpassEntry = tuple[str, str, str, str, str]
DEFAULT_HOST = "localhost"


def _field(text: str, start: int) -> tuple[str, bool, int]:
    """Read one field from ``start``: (de-escaped value, was a lone ``*``, next start)."""
    if text.startswith("*:", start):
        return "*", True, start + 2
    value: list[str] = []
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            value.append(text[i + 1])
            i += 2
            continue
        if char == ":":
            return "".join(value), False, i + 1
        value.append(char)
        i += 1
    return "".join(value), False, -1  # no colon: the line ends inside this field


def _password(text: str, start: int) -> str:
    """The last field: de-escaped up to the first unescaped colon (libpq ignores the rest)."""
    value: list[str] = []
    i = start
    while i < len(text) and text[i] != ":":
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        value.append(text[i])
        i += 1
    return "".join(value)


def parse_line(line: str) -> tuple[list[tuple[str, bool]], str] | None:
    """Split a line into four (value, is_wildcard) key fields and the password.

    Returns None for comments, blank lines and lines with fewer than five fields.
    """
    line = line.rstrip("\r\n")
    if not line or line.startswith("#"):
        return None
    fields: list[tuple[str, bool]] = []
    position = 0
    for _ in range(4):
        value, wildcard, position = _field(line, position)
        if position < 0:
            return None
        fields.append((value, wildcard))
    return fields, _password(line, position)


def match_line(line: str, host: str, port: str, database: str, user: str) -> str | None:
    """The password of ``line`` when it matches host, port, database and user, else None."""
    parsed = parse_line(line)
    if parsed is None:
        return None
    fields, password = parsed
    for (value, wildcard), wanted in zip(fields, (host, port, database, user), strict=True):
        if not wildcard and value != wanted:
            return None
    return password


def default_path(env: Mapping[str, str], passfile: str | None = None) -> Path | None:
    """The password file libpq would read: ``passfile``, ``PGPASSFILE``, else ``~/.pgpass``."""
    if passfile:
        return Path(passfile).expanduser()
    if env.get("PGPASSFILE"):
        return Path(env["PGPASSFILE"]).expanduser()
    home = env.get("HOME")
    if home:
        return Path(home) / ".pgpass"
    try:
        return Path.home() / ".pgpass"
    except (KeyError, RuntimeError):  # no home directory known for this user
        return None


def _usable(path: Path, warn: Callable[[str], None]) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False  # a missing or unreadable file is silently ignored, as in libpq
    if not stat.S_ISREG(info.st_mode):
        warn(f'password file "{path}" is not a plain file')
        return False
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(
            f'password file "{path}" has group or world access; '
            "permissions should be u=rw (0600) or less"
        )
        return False
    return True


def lookup(
    path: Path | None,
    host: str,
    port: int,
    database: str | None,
    user: str | None,
    warn: Callable[[str], None] = lambda message: None,
) -> str | None:
    """The password for this connection from the file at ``path``, or None.

    ``warn`` receives libpq's warnings (insecure or odd file), never a password.
    """
    if path is None or not database or not user:
        return None
    if not _usable(path, warn):
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.split("\n"):  # libpq splits on newlines only
        password = match_line(line, host or DEFAULT_HOST, str(port), database, user)
        if password is not None:
            return password
    return None
