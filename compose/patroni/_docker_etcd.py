"""The Docker flavour's TLS + auth etcd as the host sees it: files, passwords, clients.

``compose/docker-compose.yml`` runs two one-shot services around etcd
(``compose/patroni/docker/etcd-tls.sh``): ``etcd-certs`` makes the CA, the
server certificate (``etcd``, ``localhost``, ``127.0.0.1``) and the client
certificates (root, patroni, app) into ``compose/.state/docker-etcd/pki``
(bind-mounted, so the host reads the CA and the app's certificate), and
``etcd-auth`` creates the users and roles with ``etcdctl`` and enables auth.
The passwords are the user's: ``$CTXDB_ETCD_ROOT_PASSWORD``,
``$CTXDB_ETCD_PATRONI_PASSWORD`` and ``$CTXDB_ETCD_APP_PASSWORD``, passed to
the containers through their environment only.

Nothing here starts a container or waits on the network.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from compose.etcd import USERS, TlsEtcd
from compose.patroni._appconfig import APP_CONFIG_NAME, app_config_text, write_app_config
from compose.patroni._config import COMPOSE_DIR, Layout

DOCKER_ETCD_DIR = COMPOSE_DIR / ".state" / "docker-etcd"
ETCD_PASSWORD_ENV = {user: f"CTXDB_ETCD_{user.upper()}_PASSWORD" for user in USERS}


def generate_etcd_passwords() -> dict[str, str]:
    """Fresh random passwords of the etcd users, by user name."""
    return {user: secrets.token_urlsafe(18) for user in USERS}


def etcd_passwords_from(env: Mapping[str, str]) -> dict[str, str]:
    """The etcd users' passwords from ``$CTXDB_ETCD_*_PASSWORD`` (missing ones are empty)."""
    return {user: env.get(name, "") for user, name in ETCD_PASSWORD_ENV.items()}


def docker_etcd(layout: Layout, passwords: Mapping[str, str]) -> TlsEtcd:
    """The Docker cluster's etcd seen from the host (its published client port)."""
    return TlsEtcd(
        DOCKER_ETCD_DIR, layout.etcd_client_port, layout.etcd_peer_port,
        layout.etcd_metrics_port, prefix=layout.namespace, passwords=dict(passwords),
    )  # fmt: skip


def write_docker_app_config(directory: Path, layout: Layout, etcd: TlsEtcd) -> Path:
    """The app-side Patroni YAML of the Docker cluster in ``directory`` (mode 0600)."""
    text = app_config_text(layout, etcd, f"127.0.0.1:{layout.etcd_client_port}")
    return write_app_config(directory / APP_CONFIG_NAME, text)
