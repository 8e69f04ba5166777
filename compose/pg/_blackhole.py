"""A TCP listener that accepts connections and never answers: a black-holed host.

A stopped server refuses connections at once; a host behind a dropping
firewall, or a frozen machine, lets the TCP handshake complete (or hang) and
then says nothing. Clients must bound that case with their own timeouts, and
this listener lets tests reproduce it on 127.0.0.1 without root-only tricks.

Example::

    with BlackHole() as hole:          # or BlackHole(port=node.port) after stopping node
        connect(host="127.0.0.1", port=hole.port, timeout=1)   # times out

Concurrency: one background daemon thread accepts connections and drains
(discards) whatever the peers send, so a client never sees a full send buffer
or a reset. ``stop()`` closes the listener and every accepted socket, then
joins the thread (bounded by ``timeout``); it is idempotent and safe to call
from any thread. A stopped BlackHole can be started again (on the same
port when one was requested, else on a new free port).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

_HOST = "127.0.0.1"


class BlackHole:
    """Listen on ``127.0.0.1:port`` (a free port when ``port`` is None), accept, stay silent."""

    def __init__(self, port: int | None = None) -> None:
        self._requested_port = port
        self.port: int = 0
        self._listener: socket.socket | None = None
        self._selector: selectors.DefaultSelector | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._peers: set[socket.socket] = set()
        self.accepted = 0

    @property
    def host(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def open_connections(self) -> int:
        return len(self._peers)

    def start(self) -> BlackHole:
        """Bind and start accepting; raises OSError when the port is taken."""
        if self._thread is not None:
            raise RuntimeError("BlackHole already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR lets us take over the port of a server just stopped
            # (its old connections may sit in TIME_WAIT).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((_HOST, self._requested_port or 0))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._wake = socket.socketpair()
        self._stopping.clear()
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake[0], selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(
            target=self._serve,
            args=(listener, self._selector),
            name=f"blackhole-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def _serve(self, listener: socket.socket, selector: selectors.BaseSelector) -> None:
        while not self._stopping.is_set():
            for key, _ in selector.select(timeout=1.0):
                if key.data == "wake":
                    return
                if key.data == "accept":
                    self._accept(listener, selector)
                else:
                    self._drain(key.fileobj, selector)  # type: ignore[arg-type]

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                peer, _ = listener.accept()
                peer.setblocking(False)
                self._peers.add(peer)
                selector.register(peer, selectors.EVENT_READ, "peer")
                self.accepted += 1

    def _drain(self, peer: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            data = peer.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client gave up: forget it
            selector.unregister(peer)
            self._peers.discard(peer)
            peer.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every accepted connection; wait for the thread."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        assert self._wake is not None
        with contextlib.suppress(OSError):
            self._wake[1].send(b"x")
        if thread is not threading.current_thread():
            thread.join(timeout)
        for peer in list(self._peers):
            peer.close()
        self._peers.clear()
        if self._listener is not None:
            self._listener.close()
        if self._selector is not None:
            self._selector.close()
        for end in self._wake:
            end.close()
        self._wake = None
        self._thread = None
        self._listener = None
        self._selector = None

    def __enter__(self) -> BlackHole:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "listening" if self.running else "stopped"
        return f"BlackHole({self.host}, {state}, {len(self._peers)} open)"
