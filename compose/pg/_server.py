"""Native PostgreSQL servers on loopback, for the tests, the demo and the drills.

PostgreSQL refuses to run as root, so when this runs as root every server
command runs as an unprivileged user (Debian's ``postgres`` when it exists,
otherwise a system user ``ctxdb-pg`` created on first use). Every server
listens on 127.0.0.1 only, on a port that is checked to be free, and keeps
its Unix socket in a directory of its own.

Every started server is recorded in a module registry and stopped at
interpreter exit; servers started with ``die_with_parent=True`` also get
``PR_SET_PDEATHSIG`` so a SIGKILLed test run cannot leave one behind.

Example::

    node = PostgresNode.create("main")
    node.init(password="secret")
    node.start()
    print(node.url("postgresql+asyncpg"))
    node.destroy()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from compose.pg._host import (
    ServerUser,
    find_bin_dir,
    free_port,
    pid_alive,
    port_is_free,
    server_user,
    set_parent_death_signal,
    spawn,
)

SUPERUSER = "postgres"
_RUNNING: set[PostgresNode] = set()


def running_servers() -> list[PostgresNode]:
    """The servers this process started and has not stopped yet (a snapshot)."""
    return list(_RUNNING)


@atexit.register
def stop_all_servers() -> None:
    """Stop every server this process started and has not stopped yet."""
    for node in list(_RUNNING):
        with contextlib.suppress(Exception):
            node.stop(mode="immediate", timeout=10)


DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    "wal_log_hints": "on",
    "full_page_writes": "on",
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
    "fsync": "off",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_connections": "off",
    # Dynamic shared memory in files under the data directory: with the default
    # (posix), every SIGKILLed server leaks /dev/shm/PostgreSQL.* segments.
    "dynamic_shared_memory_type": "mmap",
}


@dataclass(eq=False)
class PostgresNode:
    """One PostgreSQL server in its own temporary directory.

    Blocking, synchronous helpers: call them from a thread or from a
    synchronous fixture, not from a running event loop that must stay live.
    """

    name: str
    port: int
    base_dir: Path
    user: ServerUser
    bin_dir: Path
    password: str = field(default="", repr=False)
    process: subprocess.Popen[bytes] | None = None
    die_with_parent: bool = True
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        name: str,
        port: int | None = None,
        *,
        die_with_parent: bool = True,
        parent: Path | None = None,
    ) -> PostgresNode:
        """Allocate a directory (under ``parent``, default the temp dir) and a free
        port (``port`` is checked when given)."""
        if port is None:
            port = free_port()
        elif not port_is_free(port):
            raise RuntimeError(f"port {port} on 127.0.0.1 is already in use")
        user = server_user()
        base = Path(tempfile.mkdtemp(prefix=f"ctxdb-pg-{name}-", dir=parent))
        (base / "socket").mkdir()
        user.give(base)
        return cls(name, port, base, user, find_bin_dir(), die_with_parent=die_with_parent)

    # --- paths and addresses -------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, driver: str = "postgresql", database: str = "postgres") -> str:
        """A SQLAlchemy/libpq URL with the superuser's password."""
        return (
            f"{driver}://{SUPERUSER}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    def conninfo(self, database: str = "postgres") -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database} "
            f"password={self.password} connect_timeout=5"
        )

    # --- running commands as the server user --------------------------------
    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "LC_ALL": "C", "PGTZ": "UTC"}
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=self.base_dir,
            **self.user.popen_kwargs(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def init(self, password: str, **settings: str) -> None:
        """initdb with scram passwords over TCP and trusted replication on loopback."""
        self.password = password
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(password + "\n")
        self.user.give(pwfile)
        self.run(
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--pwfile", str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        # First match wins: this line must precede initdb's scram replication rules.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("host replication all 127.0.0.1/32 trust\n" + hba.read_text())
        self.configure(**settings)

    def configure(self, **settings: str) -> None:
        """Write port, socket and ``settings`` into postgresql.auto.conf-like include."""
        merged = {**DEFAULT_SETTINGS, **self.settings, **settings}
        merged["port"] = str(self.port)
        merged["unix_socket_directories"] = f"'{self.socket_dir}'"
        self.settings = {k: v for k, v in merged.items() if k not in ("port",)}
        conf = self.data_dir / "postgresql.conf"
        lines = [
            line
            for line in conf.read_text().splitlines()
            if not line.startswith("include_if_exists = 'ctxdb.conf'")
        ]
        lines.append("include_if_exists = 'ctxdb.conf'")
        conf.write_text("\n".join(lines) + "\n")
        (self.data_dir / "ctxdb.conf").write_text(
            "".join(f"{key} = {value}\n" for key, value in merged.items())
        )
        self.user.give(self.data_dir)

    # --- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        """Start the postmaster and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} is already running")
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is already in use")
        log = self.log_file.open("ab")
        try:
            self.process = spawn(
                lambda: subprocess.Popen(
                    [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=self.base_dir,
                    env={"LC_ALL": "C", "PGTZ": "UTC"},
                    preexec_fn=set_parent_death_signal if self.die_with_parent else None,
                    **self.user.popen_kwargs(),
                )
            )
        finally:
            log.close()
        _RUNNING.add(self)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the server accepts TCP connections (a standby counts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            if self._accepts_connections():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
             "-t", "1"],
            capture_output=True,
            check=False,
        )  # fmt: skip
        return result.returncode == 0

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def family(self) -> list[int]:
        """PIDs of the postmaster and of its children.

        PostgreSQL children call setsid(), so a process-group signal would
        reach the postmaster alone; the family is found through /proc instead.
        """
        if self.process is None or self.process.poll() is not None:
            return []
        postmaster = self.process.pid
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    def signal_all(self, signum: int, pids: list[int] | None = None) -> None:
        """Send ``signum`` to the postmaster and every backend it started."""
        for pid in self.family() if pids is None else pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop the server: ``fast`` (SIGINT), ``immediate`` (SIGQUIT) or ``kill``.

        ``kill`` SIGKILLs the postmaster and every backend at once, like a host
        that dies. Always ends with no process of the server left: after
        ``timeout`` every one of them is SIGKILLed. A frozen server is thawed first.
        """
        if self.process is None:
            return
        signum = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "kill": signal.SIGKILL}[mode]
        family = self.family()
        if mode == "kill":
            self.signal_all(signal.SIGKILL, family)
        else:
            self.signal_all(signal.SIGCONT, family)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_all(signal.SIGKILL, family)
            self.process.wait(10)
        self._wait_gone(family, timeout=10)
        self.process = None
        _RUNNING.discard(self)

    @staticmethod
    def _wait_gone(pids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        alive = list(pids)
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if pid_alive(pid)]
            time.sleep(0.02 if alive else 0)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash)."""
        self.stop(mode="kill")

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections hang instead of failing."""
        self.signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_all(signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the server (if running) and remove its directory."""
        self.stop(mode="immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
