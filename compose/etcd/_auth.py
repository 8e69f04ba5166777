"""etcd's users and roles, created with ``etcdctl`` before authentication is enabled.

- ``root`` (role ``root``): needed by etcd to enable auth; the launcher's admin.
- role ``patroni``: readwrite on the cluster prefix (e.g. ``/service/``);
  user ``patroni`` has it.
- role ``app``: read-only on the same prefix; user ``app`` has it (what an
  application following Patroni needs, and no more), plus readwrite on
  ``<prefix><scope>/topology/`` for each scope given: where one process
  of a fleet tells the others it confirmed a new leader
  (:mod:`topology.dcs._claim`); it cannot touch Patroni's own keys.

Passwords reach ``etcdctl`` through its stdin (``user add NAME
--interactive=false``) and the root credentials through ``ETCDCTL_USER`` in
its environment: never through argv, which every local user can read in
/proc. Each ``etcdctl`` call is bounded by ``ETCDCTL_TIMEOUT``; errors carry
etcdctl's stderr, which never holds a password.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from compose.etcd._pki import Pki

ETCDCTL = "/usr/bin/etcdctl"
ETCDCTL_TIMEOUT = 20.0
ROLES = {"patroni": "readwrite", "app": "read"}


class AuthSetupError(RuntimeError):
    """etcdctl refused a step of the user and role setup."""


def _etcdctl(
    endpoint: str, pki: Pki, args: list[str], *, stdin: str = "", root: str | None = None
) -> None:
    client = pki.client("root")
    env = {"PATH": "/usr/bin:/bin", "ETCDCTL_API": "3", "HOME": os.environ.get("HOME", "/")}
    if root is not None:
        env["ETCDCTL_USER"] = f"root:{root}"
    argv = [ETCDCTL, f"--endpoints={endpoint}", f"--cacert={pki.ca}", f"--cert={client.cert}",
            f"--key={client.key}", "--dial-timeout=3s", "--command-timeout=5s", *args]  # fmt: skip
    try:
        result = subprocess.run(
            argv, input=stdin + "\n", capture_output=True, text=True, env=env,
            timeout=ETCDCTL_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AuthSetupError(f"etcdctl {args[:2]} did not finish in {ETCDCTL_TIMEOUT}s") from exc
    if result.returncode != 0:
        raise AuthSetupError(f"etcdctl {args[:2]} failed: {result.stderr.strip()[-500:]}")


def enable_auth(
    endpoint: str,
    pki: Pki,
    passwords: Mapping[str, str],
    prefix: str,
    scopes: Sequence[str] = (),
) -> None:
    """Create root, the ``patroni`` and ``app`` roles and users on ``prefix``; enable auth.

    ``scopes``: Patroni scopes whose ``topology/`` keys role ``app`` may write.

    ``passwords`` maps ``root``, ``patroni`` and ``app`` to their passwords.
    Run once on a fresh etcd (a second run fails: the users exist).
    """

    def run(*args: str, stdin: str = "") -> None:
        _etcdctl(endpoint, pki, list(args), stdin=stdin)

    for user in ("root", *ROLES):
        run("user", "add", user, "--interactive=false", stdin=passwords[user])
    run("user", "grant-role", "root", "root")
    for role, permission in ROLES.items():
        run("role", "add", role)
        run("role", "grant-permission", role, permission, prefix, "--prefix=true")
        run("user", "grant-role", role, role)
    for scope in scopes:
        run("role", "grant-permission", "app", "readwrite", f"{prefix}{scope}/topology/",
            "--prefix=true")  # fmt: skip
    run("auth", "enable")


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)
