"""Everything the CLI writes: scrubbed of every known password and anything shaped like one.

:class:`Output` writes to the given streams; it replaces each secret it was
told of (also as it looks escaped in JSON or quoted in a URL), URL userinfo
passwords and ``password=`` values with ``***``. Not thread-safe: the CLI
writes from its event loop's thread only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import quote

from topology.errors import redact

__all__ = ["PROG", "Output"]

PROG = "topology.probe"
# user:password@ up to the last "@" before the first "/", as parse_url reads it (a
# password may hold "?", "#" and "@").
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


class Output:
    """Writes scrubbed text to stdout and stderr; see the module docstring."""

    def __init__(self, out: TextIO, err: TextIO, secrets: Iterable[str] = ()) -> None:
        self.out = out
        self.err = err
        self.secrets: set[str] = set()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Scrub these from now on, also as they look escaped in JSON or quoted in a URL."""
        for secret in secrets:
            if secret:
                self.secrets.update({secret, json.dumps(secret)[1:-1], quote(secret, safe="")})

    def scrub(self, text: str) -> str:
        text = _URL_PASSWORD.sub(r"\1***@", text)
        text = _KEYWORD_PASSWORD.sub(r"\1***", text)
        # Longest first, so that a secret containing another is replaced whole.
        ordered = sorted(self.secrets, key=len, reverse=True)
        return redact(text, ordered)

    def write(self, text: str) -> None:
        self.out.write(self.scrub(text))
        self.out.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def error(self, text: str) -> None:
        self.err.write(self.scrub(f"{PROG}: {text}".splitlines()[0]) + "\n")
        self.err.flush()
