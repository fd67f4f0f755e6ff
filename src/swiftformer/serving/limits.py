"""What bounds the server's resources before it spends them: the ``Host`` allow-list, the budget of request
bytes in flight, and the connection-level limits (how many connections, how long a request's headers may
take) that uvicorn does not offer as such.

The request-level checks run in ``app._Guard`` (an ASGI middleware, before any body is read); the
connection-level ones in :func:`guarded_protocol`, a subclass of uvicorn's HTTP protocol that
:func:`swiftformer.serving.server.uvicorn_server` installs.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .errors import ServeError

logger = logging.getLogger("swiftformer.serving")

RETRY_AFTER = {"Retry-After": "1"}
CLOSE = {"Connection": "close"}  # an unread body is dropped with the connection
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MAX_HEADER_BYTES = 64 * 1024  # a request's line and headers; past it 431 and closed


# ------------------------------------------------------------------------------ Host
def allowed_hosts(host: str, extra: tuple[str, ...] | list[str]) -> frozenset[str] | None:
    """The host names a ``Host`` header may carry (lower case, IPv6 in brackets): the loopback names, the bound
    address (unless it is a wildcard) and ``extra``; None when ``extra`` holds ``"*"`` (any)."""
    if "*" in extra:
        return None
    names = {*LOOPBACK_NAMES, *(_bracketed(name) for name in extra)}
    if host not in ("", "0.0.0.0", "::"):
        names.add(_bracketed(host))
    return frozenset(names)


def _bracketed(name: str) -> str:
    name = name.strip().lower()
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def host_name(header: str) -> str:
    """The name of a ``Host`` header without its port, lower case: ``[::1]:8000`` → ``[::1]``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.split(":", 1)[0]


def check_host(headers: list[tuple[bytes, bytes]], allowed: frozenset[str] | None) -> None:
    """Raise ServeError 400 ``bad_host`` unless the request's ``Host`` is one of ``allowed`` (a page in a browser
    reaching a loopback server by DNS rebinding sends its own name)."""
    if allowed is None:
        return
    values = [value for name, value in headers if name == b"host"]
    name = host_name(values[0].decode("latin-1")) if len(values) == 1 else ""
    if name not in allowed:
        shown = json.dumps(values[0].decode("latin-1"))[1:-1][:100] if values else ""
        raise ServeError(
            400,
            "bad_host",
            f"Host '{shown}' is not served here (allowed: {', '.join(sorted(allowed))}; the server's "
            "allowed_hosts adds names)"
            if values
            else "the request has no single Host header",
        )


# ------------------------------------------------------------------------------ bytes in flight
class ByteBudget:
    """Request body bytes held at once, against ``limit``; used on the event loop only (no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, n: int) -> None:
        """Reserve ``n`` more bytes or raise ServeError 503 ``busy`` (with Retry-After, closing the connection)."""
        if n <= 0:
            return
        if self.used + n > self.limit:
            raise ServeError(
                503,
                "busy",
                f"the server is busy: {self.used / 2**20:.1f} MB of request bodies in flight, its max_inflight_mb "
                f"is {self.limit / 2**20:g}",
                {**RETRY_AFTER, **CLOSE},
            )
        self.used += n

    def give_back(self, n: int) -> None:
        self.used = max(0, self.used - n)


# ------------------------------------------------------------------------------ connections
def _raw_response(status: int, reason: str, kind: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message, "kind": kind}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


def guarded_protocol(base: type, *, max_connections: int, header_timeout: float, metrics: Any = None) -> type:
    """A subclass of uvicorn's HTTP protocol class ``base`` (httptools or h11) that bounds connections.

    * **Header deadline.** A request's line and headers must arrive within ``header_timeout`` seconds of the
      connection opening or of the previous response; else the connection is closed (408 when part of a
      request had come). More than :data:`MAX_HEADER_BYTES` of them: 431 and closed.
    * **Not HTTP** (a request uvicorn's parser refuses): 400 as JSON, not uvicorn's plain text.
    * **Connection limit.** Past ``max_connections`` open connections, the oldest one with no request in
      progress (idle, or still sending its headers) is closed to make room; when every connection has a
      request in progress, the new connection's request is answered 503 (JSON, ``Retry-After``) and closed.
    """

    class Guarded(base):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._opened = time.monotonic()
            self._pending = 0  # bytes received towards headers not yet complete
            self._deadline: Any = None
            self._metrics = metrics
            self._arm()
            if len(self.connections) > max_connections and not _evict(self.connections, self):
                self.app = _refuse  # read the request line and headers, answer 503, close (uvicorn's own path)
                _count(self, "busy")
                logger.warning("connection limit (max_connections %d) reached: a request was refused", max_connections)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            _count_header_bytes(self, len(data))

        def send_400_response(self, msg: str) -> None:  # uvicorn's answer to what is not HTTP: as JSON
            message = f"not a valid HTTP/1.1 request ({msg.rstrip('.').lower()})"
            self.transport.write(_raw_response(400, "Bad Request", "bad_request", message))
            self.transport.close()
            _count(self, "bad_request")

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._pending = 0
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(header_timeout, self._header_timeout)

        def _header_timeout(self) -> None:
            self._deadline = None
            _close_if_headers_late(self, header_timeout)

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def _count_header_bytes(protocol: Any, n: int) -> None:
    """Count bytes towards a request's headers; past :data:`MAX_HEADER_BYTES`, 431 and close."""
    if _in_progress(protocol):
        protocol._pending = 0
        return
    protocol._pending += n
    if protocol._pending > MAX_HEADER_BYTES and not protocol.transport.is_closing():
        message = f"the request's headers are over {MAX_HEADER_BYTES // 1024} KB"
        protocol.transport.write(_raw_response(431, "Request Header Fields Too Large", "bad_request", message))
        protocol.transport.close()
        _count(protocol, "bad_request")


def _close_if_headers_late(protocol: Any, header_timeout: float) -> None:
    """At the header deadline: close the connection unless a request is being served (its body has the app's
    body_timeout); 408 first when part of a request had come."""
    if _in_progress(protocol) or protocol.transport.is_closing():
        return
    if protocol._pending:
        message = f"the request's headers did not arrive within the server's header_timeout ({header_timeout:g} s)"
        protocol.transport.write(_raw_response(408, "Request Timeout", "timeout", message))
        _count(protocol, "timeout")
    protocol.transport.close()


def _count(protocol: Any, kind: str) -> None:
    """Count a refusal made below the app in ``swiftformer_errors_total{kind}`` (of no model)."""
    if protocol._metrics is not None:
        protocol._metrics.count_error(kind)


def _in_progress(protocol: Any) -> bool:
    cycle = getattr(protocol, "cycle", None)
    return cycle is not None and not cycle.response_complete


def _evict(connections: set[Any], newcomer: Any) -> bool:
    """Close the oldest connection without a request in progress (not ``newcomer``); whether there was one."""
    idle = [
        c
        for c in connections
        if c is not newcomer and not _in_progress(c) and not c.transport.is_closing() and hasattr(c, "_opened")
    ]
    if not idle:
        return False
    oldest = min(idle, key=lambda c: c._opened)
    oldest.transport.close()
    return True


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    error = ServeError(
        503, "busy", "the server has too many connections with requests in progress; try again", RETRY_AFTER
    )
    body = json.dumps({"error": error.message, "kind": error.kind}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
