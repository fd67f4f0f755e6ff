"""``swiftformer serve --ray``: the same FastAPI app on Ray Serve replicas (``pip install .[ray]``).

Each replica loads the model, optimizes it and warms it up in its constructor (Ray routes to a replica
only once that returns), then builds the app of :mod:`swiftformer.serving.app` around itself
(``__serve_build_asgi_app__``). Batching is Ray's: ``@serve.batch`` collects the images of the
concurrent requests a replica receives, up to ``max_batch_size`` or ``max_wait_ms``, and one forward
pass runs them on a worker thread. Ray's proxy refuses requests past ``max_queued_requests``
(= ``max_queue``) with 503.

Replicas are a fixed number, or with :class:`~swiftformer.serving.settings.RayAutoscaling` as many as the load
needs between a minimum and a maximum: Ray's autoscaler aims at ``max_batch_size`` requests held per replica
(running and queued), about one full batch each.

Differences from the single-process server: one model (``settings.models[0]``; no versions, no
load/unload: the repository routes answer 501); ``/metrics`` is the answering replica's own (Ray Serve's
metrics cover the whole application); ``swiftformer_queue_depth`` stays 0 (Ray holds the queue).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .errors import ServeError
from .settings import ModelSettings, RayAutoscaling, ServeSettings

with warnings.catch_warnings():  # Ray Serve's config models warn of pydantic 2 deprecations, a page of them
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray import serve

logger = logging.getLogger("swiftformer.serving")

APP_NAME = "swiftformer"


@serve.ingress()
class SwiftFormerReplica:
    """One Ray Serve replica: the model, its metrics, the app's backend interface (see ``app.py``)."""

    def __init__(self, settings: ServeSettings, num_threads: int = 1) -> None:
        from .metrics import ServeMetrics
        from .model import load_classifier

        torch.set_num_threads(max(1, num_threads))
        self.settings = settings
        model = settings.models[0]
        self.metrics = ServeMetrics(settings.max_batch_size, (model.display_name,)).for_model(model.display_name)
        self.classifier = load_classifier(model, hub=settings.hub, max_batch_size=settings.max_batch_size)
        self.classifier.warm_up()  # before Ray reports the replica healthy
        # The ignores: ray types @serve.batch's result as the plain method, without the setters it adds.
        self._classify_one.set_max_batch_size(settings.max_batch_size)  # type: ignore[attr-defined]
        self._classify_one.set_batch_wait_timeout_s(settings.max_wait_ms / 1000)  # type: ignore[attr-defined]
        self.ready = True

    def __serve_build_asgi_app__(self) -> Any:
        from .app import create_app
        from .repository import ModelRepository, ServedModel

        name = self.settings.models[0].display_name
        repository = ModelRepository(self.metrics.server, default=name)  # no loader: a fixed model
        repository.add([ServedModel(name, 1, self, self.settings.models[0])])
        return create_app(repository, self.settings)

    def check_health(self) -> None:  # Ray Serve's health check
        if not self.ready:
            raise RuntimeError("not ready")

    # ------------------------------------------------------------------ the app's backend interface
    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.ready = False

    @contextmanager
    def admission(self, n: int) -> Iterator[None]:
        if n > self.settings.max_queue:
            raise ServeError(
                413,
                "too_many_images",
                f"{n} images in one request, over the server's max_queue ({self.settings.max_queue})",
            )
        self.metrics.in_flight.inc(n)
        try:
            yield
        finally:
            self.metrics.in_flight.dec(n)

    async def classify(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(await asyncio.gather(*(self._classify_one(p) for p in pixels)))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # both set from the settings in __init__
    async def _classify_one(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        start = time.perf_counter()
        logits = await asyncio.to_thread(self._forward, pixels)
        elapsed = time.perf_counter() - start
        self.metrics.observe_batch(len(pixels), elapsed)
        self.metrics.model_busy.inc(elapsed)
        return logits

    def _forward(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits per image; images of one size run as one batch (sizes differ only without a fixed
        processor output size)."""
        out: list[torch.Tensor | None] = [None] * len(pixels)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(pixels):
            groups.setdefault(tuple(p.shape), []).append(i)
        for indices in groups.values():
            logits = self.classifier.forward(torch.stack([pixels[i] for i in indices]))
            for i, row in zip(indices, logits):
                out[i] = row.clone()
        return out  # type: ignore[return-value]


def application(
    settings: ServeSettings,
    replicas: int = 1,
    num_cpus_per_replica: float = 1.0,
    autoscaling: RayAutoscaling | None = None,
) -> Any:
    """The Ray Serve application (``serve.run`` it): ``replicas`` replicas, or with ``autoscaling`` between its
    ``min_replicas`` and ``max_replicas`` (``replicas`` is then unused)."""
    if autoscaling is None:
        scaling: dict[str, Any] = {"num_replicas": replicas}
    else:
        scaling = {"autoscaling_config": autoscaling.ray_config(settings.max_batch_size)}
    deployment = serve.deployment(
        SwiftFormerReplica,
        name="SwiftFormer",
        **scaling,
        ray_actor_options={"num_cpus": num_cpus_per_replica},
        # above the autoscaling target (max_batch_size), so that a replica's load can show past it
        max_ongoing_requests=max(settings.max_batch_size * 2, 8),
        max_queued_requests=settings.max_queue,
        health_check_period_s=5,
    )
    # The ignore: ray types serve.deployment(cls, ...) as its decorator form, not the Deployment it returns.
    return deployment.bind(settings, max(1, int(num_cpus_per_replica)))  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> Any:
    """Ray Serve's application builder, for the config file that ``serve run``, ``serve deploy`` and KubeRay's
    ``RayService`` take (``import_path: swiftformer.serving.ray_serve:app_builder``; example in
    ``examples/serve_config.yaml``).

    ``args``: the fields of :class:`ServeSettings` but ``models`` (host and port come from the file's
    ``http_options``, not from here), the one model's ``model`` (required), ``model_name``, ``precision``,
    ``backend`` and ``compile``, plus ``num_cpus_per_replica`` and either ``replicas`` (a fixed number) or
    ``autoscale`` (a mapping of the fields of :class:`RayAutoscaling`: ``min_replicas``, ``max_replicas``, and
    optionally ``upscale_delay_s``, ``downscale_delay_s``, ``look_back_period_s``).

    Raises:
        ValueError: an unknown key or a bad value, named.
    """
    args = dict(args or {})
    if "replicas" in args and "autoscale" in args:
        raise ValueError("swiftformer serve config: give either replicas or autoscale, not both")
    replicas, cpus = args.pop("replicas", 1), args.pop("num_cpus_per_replica", 1.0)
    autoscaling = _autoscaling_arg(args.pop("autoscale", None))
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"swiftformer serve config: replicas must be a positive integer, got {replicas!r}")
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
        raise ValueError(f"swiftformer serve config: num_cpus_per_replica must be positive, got {cpus!r}")
    model_keys = {
        "model": "path",
        "model_name": "name",
        "precision": "precision",
        "backend": "backend",
        "compile": "compile",
    }
    fields = (set(ServeSettings.__dataclass_fields__) - {"host", "port", "models"}) | set(model_keys)
    unknown = sorted(set(args) - fields)
    if unknown:
        raise ValueError(f"swiftformer serve config: unknown keys {unknown}; known: {sorted(fields)}")
    if "model" not in args:
        raise ValueError("swiftformer serve config: 'model' (a folder or hub id) is required")
    model = ModelSettings(**{model_keys[key]: args.pop(key) for key in list(args) if key in model_keys})
    return application(ServeSettings(models=(model,), **args), replicas, float(cpus), autoscaling)


def _autoscaling_arg(value: Any) -> RayAutoscaling | None:
    """The config file's ``autoscale`` mapping as :class:`RayAutoscaling` (None: absent)."""
    if value is None:
        return None
    known = sorted(RayAutoscaling.__dataclass_fields__)
    if not isinstance(value, dict):
        raise ValueError(f"swiftformer serve config: autoscale must be a mapping of {known}, got {value!r}")
    unknown, missing = sorted(set(value) - set(known)), sorted({"min_replicas", "max_replicas"} - set(value))
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing {missing}"
        raise ValueError(f"swiftformer serve config: autoscale: {problem}; known: {known}")
    try:
        return RayAutoscaling(**value)
    except ValueError as error:
        raise ValueError(f"swiftformer serve config: autoscale: {error}") from None


def run_on_ray(
    settings: ServeSettings,
    replicas: int = 1,
    num_cpus_per_replica: float = 1.0,
    blocking: bool = False,
    autoscaling: RayAutoscaling | None = None,
) -> Any:
    """Start Serve's HTTP proxy on ``settings.host``/``port`` in the connected Ray cluster and deploy;
    returns once every replica is warmed up (``ray.init`` first). With ``autoscaling``, ``replicas`` is unused."""
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = application(settings, replicas, num_cpus_per_replica, autoscaling)
    return serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)


def serve_on_ray(
    settings: ServeSettings,
    *,
    address: str | None = None,
    replicas: int = 1,
    num_cpus_per_replica: float = 1.0,
    autoscaling: RayAutoscaling | None = None,
) -> int:
    """``swiftformer serve --ray``: connect to (or start) Ray, deploy, serve until SIGTERM / Ctrl-C."""
    import ray

    from .server import _log_to_stderr

    _log_to_stderr("info")
    stop = threading.Event()
    previous: dict = {}
    try:
        if address is None and not os.environ.get("RAY_ADDRESS"):
            # a new local instance (not one found by `ray start`'s file), node address loopback, no
            # dashboard; Ray's own services still listen on all interfaces (docs/serving.md#ray-serve)
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, log_to_driver=True)
        # after ray.init, which installs its own SIGTERM handler in the driver; a signal during the
        # deployment below stops the server once it is up
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        run_on_ray(settings, replicas, num_cpus_per_replica, autoscaling=autoscaling)
        if autoscaling is None:
            scaling = f"{replicas} Ray Serve replica(s)"
        else:
            scaling = (
                f"{autoscaling.min_replicas} to {autoscaling.max_replicas} Ray Serve replicas "
                f"(autoscaling to {settings.max_batch_size} requests each)"
            )
        logger.info("model %s on http://%s:%d with %s", settings.models[0].label, settings.host, settings.port, scaling)
        while not stop.wait(1.0):  # a timeout, so that the signal handler runs promptly
            pass
        logger.info("shutting down: Ray Serve drains the requests in flight")
        serve.delete(APP_NAME)  # replicas finish their requests (graceful_shutdown_timeout_s)
        serve.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if ray.is_initialized():
            ray.shutdown()
    return 0
