"""The README's "Start in 60 seconds" block, run verbatim against a primary and two replicas.

The block is taken from README.md as it stands and run in a fresh interpreter
with only ``DATABASE_URL`` set, the way its text tells a reader to run it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from compose.pg import ReplicatedCluster
from tests.support.paths import REPO_ROOT

_SECTION = re.compile(r"^## Start in 60 seconds\n(?P<body>.*?)^## ", re.M | re.S)
_PYTHON = re.compile(r"^```python\n(?P<code>.*?)^```$", re.M | re.S)


def start_block() -> str:
    section = _SECTION.search((REPO_ROOT / "README.md").read_text())
    assert section, "README.md has no '## Start in 60 seconds' section"
    blocks = _PYTHON.findall(section.group("body"))
    assert len(blocks) == 1, "the start section must hold exactly one python block"
    return str(blocks[0])


def test_the_start_block_names_the_primary(replicated: ReplicatedCluster) -> None:
    url = replicated.url(driver="postgresql+asyncpg")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["DATABASE_URL"] = url
    ran = subprocess.run(
        [sys.executable, "-c", start_block()],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"port {replicated.primary.port}, the primary"
    assert replicated.password not in ran.stdout + ran.stderr
