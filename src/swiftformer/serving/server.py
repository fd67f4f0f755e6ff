"""Run the app with uvicorn: load and optimize the model, listen, warm up, serve until SIGTERM/Ctrl-C.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for the requests in flight; then
the app's shutdown answers whatever is still queued and ends the model worker; then :func:`serve`
returns 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
from typing import Any

from .settings import ServeSettings

logger = logging.getLogger("swiftformer.serving")

GRACEFUL_SHUTDOWN_SECONDS = 30


def build_app(settings: ServeSettings) -> Any:
    """The FastAPI app of ``settings``, its model loaded and optimized; it warms up when it starts."""
    from .app import create_app
    from .batching import BatchingBackend
    from .metrics import ServeMetrics
    from .model import load_classifier

    check_tls_files(settings)  # before the model loads: a wrong path or a busy port is one line at once
    check_grpc_port(settings)
    classifier = load_classifier(settings)
    backend = BatchingBackend(
        classifier,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        metrics=ServeMetrics(settings.max_batch_size, settings.name),
    )
    return create_app(backend, settings)


def check_tls_files(settings: ServeSettings) -> None:
    """ValueError in one line unless ``ssl_certfile`` and ``ssl_keyfile`` are readable PEM files that belong
    together (what uvicorn and gRPC would otherwise report as a stack trace once the model had loaded)."""
    if not settings.ssl_certfile or not settings.ssl_keyfile:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    except OSError as err:  # ssl.SSLError is one: not PEM, or a key of another certificate
        reason = getattr(err, "reason", None) or err.strerror or str(err)
        raise ValueError(
            f"cannot use the TLS certificate {settings.ssl_certfile} with the key {settings.ssl_keyfile}: {reason}"
        ) from None


def check_grpc_port(settings: ServeSettings) -> None:
    """OSError in one line when ``grpc_port`` cannot be bound on ``host`` (in use, not an address of this machine):
    the gRPC server binds it only once the app starts, where a failure would be a traceback."""
    if not settings.grpc_port:
        return
    host = settings.host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: a port in TIME_WAIT is free
        try:
            probe.bind((host, settings.grpc_port))
        except OSError as err:
            raise OSError(f"cannot listen for gRPC on {settings.host}:{settings.grpc_port}: {err.strerror}") from None


def uvicorn_server(app: Any, settings: ServeSettings, log_level: str = "info") -> Any:
    """A ``uvicorn.Server`` for ``app`` (``run()`` it, or ``serve()`` it in a thread; :func:`shut_down`
    stops it as SIGTERM does)."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from .limits import guarded_protocol

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Requests in flight may wait for a batch to fill (max_wait_ms); uvicorn waits for them
            # before the app's shutdown, so the batcher must stop waiting now.
            drain = getattr(getattr(app.state, "backend", None), "drain", None)
            if drain is not None:
                drain()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        access_log=False,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        http=guarded_protocol(
            AutoHTTPProtocol,
            max_connections=settings.max_connections,
            header_timeout=settings.header_timeout,
            metrics=getattr(getattr(app.state, "backend", None), "metrics", None),
        ),
    )
    return Server(config)


def shut_down(server: Any) -> None:
    """Stop a server started by :func:`uvicorn_server` from another thread, as SIGTERM would."""
    import signal as signals

    server.handle_exit(signals.SIGTERM, None)


def serve(settings: ServeSettings, log_level: str = "info") -> int:
    """Serve until SIGTERM or Ctrl-C; 0 after a clean shutdown."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"swiftformer serve needs the serve extra ({err.name} is missing): pip install .[serve]"
        ) from None
    _log_to_stderr(log_level)
    app = build_app(settings)
    server = uvicorn_server(app, settings, log_level)
    logger.info(
        "model %s on %s://%s:%d (ready after warm-up; %s; %s)",
        settings.name,
        "https" if settings.ssl_certfile else "http",
        settings.host,
        settings.port,
        "fast JPEG decode" if settings.fast_decode else "exact decode",
        f"{len(settings.api_keys)} API key(s)" if settings.api_keys else "no API key",
    )
    # uvicorn re-raises the signal that stopped it once it is done; ours turns that into a return.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


class _Stopped(Exception):
    pass


def _stopped(signum: int, frame: Any) -> None:
    raise _Stopped


def _log_to_stderr(level: str) -> None:
    log = logging.getLogger("swiftformer.serving")
    log.setLevel(level.upper())
    if not any(isinstance(h, logging.StreamHandler) for h in log.handlers + logging.getLogger("swiftformer").handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
