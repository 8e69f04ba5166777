"""The app-side Patroni YAML of a cluster: what an application needs to follow it.

Written next to the cluster's state (``STATE_DIR/app-patroni.yml``, mode
0600: it holds the ``app`` user's etcd password) in the shape of Patroni's
own configuration, so ``ClusterResolver.from_patroni(config=path)`` (and
``python -m topology.probe``) read it like a member's ``patroni.yml``::

    scope: "ctxdb"
    namespace: "/service/"
    etcd3:
      hosts: "127.0.0.1:25400"
      protocol: "https"
      cacert: ".../pki/ca.crt"
      cert: ".../pki/client-app.crt"     # the app's own client certificate
      key: ".../pki/client-app.key"
      username: "app"                    # read-only on the namespace
      password: "..."

On a plain-http etcd (``Layout.etcd_tls`` False) only ``hosts`` and
``protocol: http`` are in ``etcd3``. Standard library only: every scalar is
written as a JSON string, which is a valid YAML double-quoted scalar.
Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from compose.etcd import TlsEtcd
from compose.patroni._config import Layout

APP_CONFIG_NAME = "app-patroni.yml"
APP_USER = "app"


def app_config_text(layout: Layout, etcd: TlsEtcd | None, etcd_host: str) -> str:
    """The YAML text (see the module docstring); ``etcd`` None: a plain-http etcd."""
    q = json.dumps
    lines = [
        f"# App-side Patroni settings of cluster {layout.scope!r}: for clients, not for members.",
        f"scope: {q(layout.scope)}",
        f"namespace: {q(layout.namespace)}",
        "etcd3:",
        f"  hosts: {q(etcd_host)}",
        f"  protocol: {q('https' if etcd is not None else 'http')}",
    ]
    if etcd is not None:
        pair = etcd.client_cert(APP_USER)
        lines += [
            f"  cacert: {q(str(etcd.ca))}",
            f"  cert: {q(str(pair.cert))}",
            f"  key: {q(str(pair.key))}",
            f"  username: {q(APP_USER)}",
            f"  password: {q(etcd.password(APP_USER))}",
        ]
    return "\n".join(lines) + "\n"


def write_app_config(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the first byte on; returns ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)
    return path
