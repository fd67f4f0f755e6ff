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
from functools import partial
from typing import Any

from .settings import ModelSettings, ServeSettings

logger = logging.getLogger("swiftformer.serving")

GRACEFUL_SHUTDOWN_SECONDS = 30


def build_app(settings: ServeSettings) -> Any:
    """The FastAPI app of ``settings``, every model loaded and optimized; they warm up when it starts.

    Raises:
        ValueError: a model cannot be loaded, named (the command prints it as one line).
    """
    from .app import create_app
    from .batching import ModelWorkers
    from .metrics import ServeMetrics
    from .repository import ModelRepository

    check_tls_files(settings)  # before the models load: a wrong path or a busy port is one line at once
    check_grpc_port(settings)
    metrics = ServeMetrics(settings.max_batch_size, tuple(m.display_name for m in settings.models))
    workers = ModelWorkers(settings.model_workers or default_model_workers())
    loader = partial(load_versions, settings, metrics, workers)
    repository = ModelRepository(metrics, default=settings.default_model, loader=loader, on_close=workers.shutdown)
    by_name: dict[str, list[Any]] = {}  # NAME@1=... and NAME@2=... are versions of one model
    for model in settings.models:
        try:
            by_name.setdefault(model.display_name, []).extend(loader(model))
        except (OSError, ValueError) as err:
            workers.shutdown()
            raise ValueError(f"model {model.label} ({model.path}): {err}") from None
    for loaded in by_name.values():
        repository.add(loaded)
    return create_app(repository, settings)


def default_model_workers() -> int:
    """The model workers' threads: as many forward passes at once as the cores hold, each using torch's
    intra-op threads (usually every core, so 1)."""
    import torch

    from ..hardware import process_cores

    return max(1, process_cores() // max(1, torch.get_num_threads()))


def load_versions(settings: ServeSettings, metrics: Any, workers: Any, model: ModelSettings) -> list[Any]:
    """Every version of ``model`` as a served model with a batcher of its own on the shared ``workers``
    (built, not started: the repository starts them)."""
    from .batching import BatchingBackend
    from .model import load_classifier
    from .repository import ServedModel, model_versions

    served = []
    for version, path in model_versions(model).items():
        classifier = load_classifier(model, path, hub=settings.hub, max_batch_size=settings.max_batch_size)
        backend = BatchingBackend(
            classifier,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            metrics=metrics.for_model(model.display_name),
            workers=workers,
        )
        served.append(ServedModel(model.display_name, version, backend, model))
    return served


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
            app.state.repository.drain()
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
            metrics=app.state.repository.metrics,
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
        "model%s %s on %s://%s:%d (ready after warm-up; %s; %s)",
        "s" if len(settings.models) > 1 else "",
        ", ".join(model.label for model in settings.models),
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
