"""Who may call what: API keys, the admin key, and which routes need which (docs/serving.md, "Access control
and TLS").

A key travels as ``Authorization: Bearer KEY`` (HTTP) or as the ``authorization`` metadata ``Bearer KEY`` (gRPC)
and is compared in constant time with every configured key (``hmac.compare_digest``), so neither the answer nor
its timing says which key, or how much of one, matched. No key is ever written to a log line or an error.

Routes fall in four groups, by path (so that a route added later is covered by its path, not by remembering to
decorate it):

* **open** — the demo page ``/`` and ``/openapi.json``: never a key (the page asks for one itself);
* **health** — ``/v2/health/*``, ``/v2/models/{name}[/versions/{v}]/ready``, ``/v2`` (server metadata) and
  ``/metrics``: open unless ``protect_health``;
* **admin** — ``/v2/repository/...``: an admin key; 403 when the server has none;
* **everything else** (``/predict``, ``/explain``, ``/v2/models/...`` metadata and infer, …): an API key when
  the server has any.

This module imports no web framework: the settings use it, and so do the HTTP layer (:class:`AccessGuard`) and
the gRPC interceptor (``grpc.py``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any

from .metrics import endpoint_label

logger = logging.getLogger("swiftformer.serving")

API_KEYS_ENV, ADMIN_KEYS_ENV = "SWIFTFORMER_API_KEYS", "SWIFTFORMER_ADMIN_KEYS"
REALM = 'Bearer realm="swiftformer"'
_KEY = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an HTTP header and gRPC metadata carry as they are
_HEALTH = re.compile(r"/v2|/v2/health/(live|ready)|/v2/models/[^/]+(/versions/[^/]+)?/ready|/metrics")
_OPEN = ("/", "/openapi.json")


class Access(Enum):
    OPEN = "open"
    HEALTH = "health"
    INFERENCE = "inference"
    ADMIN = "admin"


def route_access(path: str) -> Access:
    """The group of an HTTP path (see the module docstring)."""
    path = path.rstrip("/") or "/"
    if path in _OPEN:
        return Access.OPEN
    if _HEALTH.fullmatch(path):
        return Access.HEALTH
    if path == "/v2/repository" or path.startswith("/v2/repository/"):
        return Access.ADMIN
    return Access.INFERENCE


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to listen on) is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def check_keys(keys: Iterable[str], what: str) -> tuple[str, ...]:
    """``keys`` as a tuple, or ValueError naming which one is unusable (never showing it)."""
    if isinstance(keys, str):
        raise ValueError(f"{what} must be a list of keys, not one string")
    keys = tuple(keys)
    for number, key in enumerate(keys, 1):
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(
                f"{what}: key #{number} is empty or has a character other than visible ASCII (no spaces), "
                "which an Authorization header cannot carry"
            )
    return keys


def read_key_file(path: str | Path) -> list[str]:
    """The keys of a file, one a line (blank lines and ``#`` comments skipped); OSError or ValueError in one line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise ValueError(f"cannot read the key file {path}: {reason}") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"the key file {path} holds no key (one a line)")
    return keys


def keys_from_env(name: str, environ: dict[str, str] | None = None) -> list[str]:
    """The keys of environment variable ``name``: separated by commas or whitespace."""
    value = (os.environ if environ is None else environ).get(name, "")
    return [key for key in re.split(r"[,\s]+", value) if key]


def gather_keys(keys: Iterable[str], files: Iterable[str | Path], env: str) -> tuple[str, ...]:
    """The keys given directly, those of each file (:func:`read_key_file`) and those of the environment variable
    ``env`` (:func:`keys_from_env`), each once, in that order."""
    gathered = [*keys, *(key for path in files for key in read_key_file(path)), *keys_from_env(env)]
    return tuple(dict.fromkeys(gathered))


class KeyCheck:
    """The server's keys and the question "may a request with this ``Authorization`` value reach this group?"."""

    def __init__(self, api_keys: Iterable[str], admin_keys: Iterable[str], protect_health: bool) -> None:
        self.admin_keys = [key.encode() for key in admin_keys]
        # An admin key opens every route; the other routes need a key only on a server with API keys (admin keys
        # alone guard the repository routes and leave inference open, as a server without keys is).
        self.keys_required = bool(list(api_keys))
        self.api_keys = [key.encode() for key in api_keys] + self.admin_keys
        self.protect_health = protect_health

    def problem(self, access: Access, authorization: str | None) -> tuple[int, str, str] | None:
        """None when allowed; else (HTTP status, kind, message) — 401 ``unauthorized`` (no or a wrong key) or
        403 ``forbidden`` (an admin route on a server without an admin key)."""
        if access is Access.OPEN or (access is Access.HEALTH and not self.protect_health):
            return None
        if access is Access.ADMIN and not self.admin_keys:
            return 403, "forbidden", "repository routes are disabled: the server has no admin key"
        if access is not Access.ADMIN and not self.keys_required:
            return None
        keys = self.admin_keys if access is Access.ADMIN else self.api_keys
        what = "an admin key" if access is Access.ADMIN else "an API key"
        presented = _bearer(authorization)
        if presented is None:
            return 401, "unauthorized", f"this route needs {what}, sent as 'Authorization: Bearer KEY'"
        if not _matches(presented, keys):
            return 401, "unauthorized", f"the key sent is not {what} of this server"
        return None


def _bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("latin-1", "replace")


def _matches(presented: bytes, keys: list[bytes]) -> bool:
    """Constant time: every key is compared (no early exit), each with ``hmac.compare_digest``."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found


class AccessGuard:
    """Pure ASGI middleware: each HTTP request's path decides the key it needs (:func:`route_access`); a request
    without it is answered 401 (``WWW-Authenticate: Bearer``) or 403 before anything else reads it, as JSON
    ``{"error", "kind"}``, and the connection is closed (its body unread). Counted in
    ``swiftformer_errors_total{kind}``."""

    def __init__(self, app: Any, *, check: KeyCheck, metrics: Any = None, routes: list[Any] | None = None) -> None:
        self.app, self.check, self.metrics, self.routes = app, check, metrics, routes or []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        authorization = next(
            (value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"authorization"), None
        )
        problem = self.check.problem(route_access(scope["path"]), authorization)
        if problem is None:
            return await self.app(scope, receive, send)
        status, kind, message = problem
        if self.metrics is not None:  # counted and timed as every other response
            self.metrics.count_error(kind)
            self.metrics.requests.labels(endpoint_label(scope, self.routes), str(status), "").inc()
        body = json.dumps({"error": message, "kind": kind}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-process-time-ms", f"{(time.perf_counter() - start) * 1000:.2f}".encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", REALM.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
