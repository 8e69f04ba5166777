"""The DCS sources' HTTP client: httpx, pooled, TLS, every wait and every byte bounded.

Why httpx (compared with aiohttp for this job, issue 22):

* TLS with a CA and a client certificate: both take an ``ssl.SSLContext``;
  equal. IPv6: both bracket the ``Host`` header; equal.
* Keep-alive pooling: both; httpx's pool is per client, sized by
  ``httpx.Limits``, and drops a connection the server closed before reuse.
* Per-phase timeouts: httpx has connect/read/write/pool (``httpx.Timeout``);
  aiohttp has total/connect/sock_read, and its read timeout cannot be lifted
  for an idle stream either. Both need our own idle logic for the watch.
* Streaming the watch: both iterate a body as it arrives (``aiter_raw``,
  ``content.iter_any``); httpx's raw iterator skips content decoding, so a
  compressed bomb cannot grow past the caps.
* Caps: aiohttp bounds a status/header line (8190 bytes) and the header
  count is unbounded until its field size; httpx's h11 refuses a head over
  100 KiB while reading it. Neither caps a body or a streamed line: that is
  :mod:`topology.dcs._http_body` either way. httpx does not show chunk
  boundaries, so ``HttpLimits.chunk`` folds into ``body``/``line``.
* Maintenance: both maintained; httpx is pure Python (h11, httpcore, anyio,
  ~1 MB) where aiohttp builds C extensions; aiohttp is already an optional
  extra here (ctxdb.aiohttp), but not one a DCS user should need.

Chosen: httpx. :class:`HttpClient` is one pooled ``httpx.AsyncClient`` per
source (keep-alive: a range every few seconds reuses one connection), owned
by that source and closed by :meth:`HttpClient.aclose` (the sources call it
when their ``run()`` is cancelled); it is created again on first use after.

Timeouts: :meth:`HttpClient.request_json` (connect + request + the whole
answer) ends within ``timeout`` seconds; every read within it too.
Cancelled, it lets the request end first (within ``timeout``): httpcore
leaks the socket of a connection cut during its TLS handshake.
:meth:`HttpClient.open_stream` bounds the connect and the response head by
``timeout``; the body is then a :class:`topology.dcs._http_stream.Stream`, read
as it arrives (its own module says how long it may wait). Cancelling any
call closes what it opened.

Errors: every failure becomes one of :mod:`topology.dcs._http_body`'s typed
:class:`HttpError` s naming the endpoint (``host:port``): :class:`TooLarge`,
:class:`BadAnswer`, :class:`ReadTimeout`, :class:`TlsError`; or an
``OSError`` (refused, reset) / ``asyncio.TimeoutError``. Request headers
(an etcd token) never appear in one. httpx logs each request at INFO on its
own ``httpx`` logger: see docs/topology.md. Not thread-safe: one event loop.

Example::

    client = HttpClient(TlsFiles(cacert="ca.pem"), timeout=1.0)
    status, document = await client.request_json("GET", "https://h:8008/cluster")
    await client.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from topology.dcs.patroni_config import EXTRA_HINT, TlsFiles

try:
    import httpx
except ImportError as exc:  # the [patroni] extra is not installed
    raise ImportError(f"the Patroni DCS sources need httpx: {EXTRA_HINT}") from exc

from topology._within import within
from topology.dcs._http_body import (
    BadAnswer,
    Disconnected,
    HttpError,
    HttpLimits,
    ReadTimeout,
    TlsError,
    TooLarge,
    declared_length,
    loads,
    mapped,
    read_whole,
    ssl_context,
)
from topology.dcs._http_sockets import TrackedBackend, tracked_transport
from topology.dcs._http_stream import Stream

# The share of a call's deadline that httpx's connect phase may use (see _phases).
_CONNECT_SHARE = 0.8

__all__ = [
    "BadAnswer",
    "Disconnected",
    "Endpoints",
    "HttpClient",
    "HttpError",
    "HttpLimits",
    "ReadTimeout",
    "Stream",
    "TlsError",
    "TooLarge",
    "Unreachable",
    "why",
]

_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


class Endpoints:
    """Base URLs (``https://host:port``) tried in turn, the one that answered last first.

    Not thread-safe: one event loop. Example::

        for index, url in endpoints.in_turn():
            ...  # on an answer: endpoints.answered(index)
    """

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self._first = 0

    def __str__(self) -> str:
        return ",".join(shown(url) for url in self.items)

    def in_turn(self) -> list[tuple[int, str]]:
        count = len(self.items)
        indexes = [(self._first + step) % count for step in range(count)]
        return [(i, self.items[i]) for i in indexes]

    def answered(self, index: int) -> None:
        self._first = index


def shown(url: str) -> str:
    """``host:port`` of a base URL (what messages name an endpoint by)."""
    return url.partition("://")[2].partition("/")[0]


class HttpClient:
    """One pooled, owned httpx client for one source (see the module docstring)."""

    def __init__(
        self, tls: TlsFiles | None = None, *, timeout: float, limits: HttpLimits | None = None
    ) -> None:
        self.tls = tls or TlsFiles()
        self.timeout = float(timeout)
        self.limits = limits or HttpLimits()
        self._context = ssl_context(self.tls)  # loaded once: a bad file fails at construction
        self._client: httpx.AsyncClient | None = None
        self._sockets = TrackedBackend()

    def _pool(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            limits = httpx.Limits(
                max_connections=8, max_keepalive_connections=2, keepalive_expiry=30.0
            )
            self._client = httpx.AsyncClient(
                transport=tracked_transport(self._sockets, verify=self._context, limits=limits),
                trust_env=False,  # no proxy or netrc from the environment: the URLs given
                follow_redirects=False,
                timeout=_phases(self.timeout),
                headers=_HEADERS,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pool's connections (idempotent; a later call opens a new pool)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        await self._sockets.aclose()  # any that httpcore lost track of (a cancelled call)

    async def request_json(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """The status and the JSON document (None when empty), all within ``timeout``.

        A non-JSON answer to an error status gives ``(status, None)``.
        """
        endpoint = shown(url)
        call = asyncio.ensure_future(
            within(self._retried(method, url, body, headers, endpoint), self.timeout)
        )
        call.add_done_callback(_retrieved)
        try:
            return await asyncio.shield(call)
        except asyncio.TimeoutError:
            raise ReadTimeout(
                f"{endpoint}: no whole answer in time (timeout {self.timeout:g} s)"
            ) from None
        except asyncio.CancelledError:
            # Our caller is cancelled (its owner closes). Cut from outside during
            # a TLS handshake, httpcore leaks the socket (a ResourceWarning seen
            # in CI): the call ends by itself within ``timeout``; wait for it.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({call})
            raise

    async def _retried(
        self,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str] | None,
        endpoint: str,
    ) -> tuple[int, Any]:
        """Once more on a fresh connection when a pooled one was closed before answering.

        A kept-alive connection the server closed as we reused it (its idle
        timeout, a restart) is no news about the server: ask again, once.
        """
        try:
            return await self._request_json(method, url, body, headers, endpoint)
        except Disconnected:
            return await self._request_json(method, url, body, headers, endpoint)

    async def _request_json(
        self,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str] | None,
        endpoint: str,
    ) -> tuple[int, Any]:
        request = self._pool().build_request(method, url, json=body, headers=headers)
        with self._no_client_cert_hint(url):
            response = await _send(self._pool(), request, endpoint, self.limits)
        try:
            length = declared_length(response.headers, endpoint)
            if length is not None and length > self.limits.body:
                raise TooLarge(endpoint, "body", self.limits.body)
            with mapped(endpoint, "body"):
                data = await read_whole(response.aiter_raw(), endpoint, self.limits)
        except HttpError:
            if response.status_code == 200:
                raise
            return response.status_code, None  # an error page: its status says enough
        finally:
            await response.aclose()
        if not data.strip():
            return response.status_code, None
        try:
            return response.status_code, loads(data, endpoint)
        except BadAnswer:
            if response.status_code == 200:
                raise
            return response.status_code, None

    async def open_stream(
        self, method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Stream:
        """Send a request; the answer's head within ``timeout``, its body a :class:`Stream`.

        The caller closes the stream (:meth:`Stream.aclose`).
        """
        endpoint = shown(url)
        client = self._pool()
        # No read timeout on the body: an idle watch is silent (Stream.json_lines bounds a message).
        timeout = _phases(self.timeout, read=None)
        request = client.build_request(method, url, json=body, headers=headers, timeout=timeout)
        opening = asyncio.ensure_future(_send(client, request, endpoint, self.limits))
        try:
            done, _ = await asyncio.wait({opening}, timeout=self.timeout)
        except BaseException:
            await _settle(opening)
            raise
        if not done:
            await _settle(opening)
            raise ReadTimeout(f"{endpoint}: no answer in time (timeout {self.timeout:g} s)")
        with self._no_client_cert_hint(url):
            return Stream(opening.result(), endpoint, self.limits)

    @contextlib.contextmanager
    def _no_client_cert_hint(self, url: str) -> Iterator[None]:
        """A TLS server that drops us before answering, when we have no client certificate.

        A server requiring one (etcd's ``--client-cert-auth``) ends the
        handshake with an alert that arrives as a reset, a broken pipe or
        (TLS 1.3, read after the handshake) the alert itself: say what is
        most likely missing, as a :class:`TlsError`.
        """
        try:
            yield
        except (
            ConnectionResetError,
            BrokenPipeError,
            ConnectionAbortedError,
            Disconnected,
            TlsError,
        ) as exc:
            if not url.startswith("https://") or self.tls.cert:
                raise
            if isinstance(exc, TlsError) and not exc.alert:
                raise  # the handshake itself failed: its own words say why
            raise TlsError(
                f"{exc} (no client certificate was given: the server may require one; set cert/key)"
            ) from None


def _retrieved(call: asyncio.Future[Any]) -> None:
    """Mark a call's outcome seen: a caller cancelled before it ended never reads it."""
    if not call.cancelled():
        call.exception()


async def _settle(task: asyncio.Future[httpx.Response]) -> None:
    """Cancel ``task`` and close the response it may have got as it was cancelled."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait({task}, timeout=1.0)
    if task.done() and not task.cancelled() and task.exception() is None:
        await task.result().aclose()


def _phases(total: float, **overrides: float | None) -> httpx.Timeout:
    """httpx's own per-phase timeouts, the connect (TCP + TLS handshake) shorter than ``total``.

    Our deadline around a call is ``total``; httpx must give up on a stalled
    handshake first, because a request cancelled from outside during the TLS
    handshake leaks its socket in httpcore (a ResourceWarning), while httpx's
    own timeout closes it.
    """
    return httpx.Timeout(total, connect=total * _CONNECT_SHARE, **overrides)


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, endpoint: str, limits: HttpLimits
) -> httpx.Response:
    """Send ``request``; the response with its head checked against ``limits``, body unread."""
    with mapped(endpoint, "head"):
        response = await client.send(request, stream=True)
    try:
        _check_head(response, endpoint, limits)
    except BaseException:
        await response.aclose()
        raise
    return response


def _check_head(response: httpx.Response, endpoint: str, limits: HttpLimits) -> None:
    raw = response.headers.raw
    if len(raw) > limits.header_count:
        raise TooLarge(endpoint, "header_count", limits.header_count, unit="headers")
    if sum(len(name) + len(value) + 4 for name, value in raw) > limits.header_bytes:
        raise TooLarge(endpoint, "header_bytes", limits.header_bytes)
    if len(response.reason_phrase) + 15 > limits.status_line:
        raise TooLarge(endpoint, "status_line", limits.status_line)


class Unreachable(Exception):
    """No endpoint answered (etcd, Patroni REST); ``reasons`` maps each endpoint tried to why."""

    def __init__(self, call: str, reasons: dict[str, str], what: str = "etcd") -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{endpoint}: {words}" for endpoint, words in reasons.items())
        super().__init__(f"{what} {call}: no endpoint answered ({detail})")


def why(exc: BaseException) -> str:
    """Why a call failed, in a few words (no secrets: no request header is ever in one).

    A peer's text appears only inside our errors' messages, repr-escaped and cut short.
    """
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, Unreachable):
        return "; ".join(exc.reasons.values())
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
