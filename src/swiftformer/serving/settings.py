"""What a server is started with: the model, where to listen, batching and input limits; Ray Serve autoscaling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..hardware import process_cores

# What `swiftformer predict` offers; optimize_for_inference checks the combination (e.g. no bf16 on onnxruntime).
SERVE_PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("auto", "inductor", "openvino", "onnxruntime")
# How often Ray Serve's proxy and replicas report their load to its autoscaler (its default metrics_interval_s).
RAY_METRICS_INTERVAL_S = 10.0


@dataclass(frozen=True)
class RayAutoscaling:
    """Ray Serve autoscaling for ``swiftformer serve --ray --autoscale MIN,MAX`` (docs/serving.md, "Autoscaling").

    Ray keeps the requests each replica holds (running and queued, averaged over ``look_back_period_s``) near
    a target; the target is the replica's ``max_batch_size`` (:meth:`ray_config`), so a replica is kept about
    one full batch busy: a smaller target would split batches over more replicas, a larger one would queue
    requests behind a full batch before adding a replica.

    Attributes:
        min_replicas: Replicas kept while idle, at least 1 (also how many start). No scaling to zero: a
            replica's start loads, optimizes and warms up the model, and the readiness probe
            (``/v2/health/ready``) is answered by a replica.
        max_replicas: The most replicas under load, at least ``min_replicas``.
        upscale_delay_s: How long Ray must want more replicas before it starts them.
        downscale_delay_s: How long Ray must want fewer replicas before it stops one.
        look_back_period_s: The window the load is averaged over; more than the 10 s at which Ray's proxy
            and replicas report it.
    """

    min_replicas: int
    max_replicas: int
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 60.0
    look_back_period_s: float = 15.0

    def __post_init__(self) -> None:
        for name in ("min_replicas", "max_replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("upscale_delay_s", "downscale_delay_s", "look_back_period_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds, at least 0, got {value!r}")
        if self.min_replicas < 1:
            raise ValueError(
                f"min_replicas must be at least 1, got {self.min_replicas} (no scaling to zero: "
                "a replica's start loads and warms up the model, and a replica answers the readiness probe)"
            )
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be at least min_replicas ({self.min_replicas})")
        if not self.look_back_period_s > RAY_METRICS_INTERVAL_S:
            raise ValueError(
                f"look_back_period_s must be more than {RAY_METRICS_INTERVAL_S:g} (how often Ray reports the load), "
                f"got {self.look_back_period_s}"
            )

    def ray_config(self, max_batch_size: int) -> dict[str, Any]:
        """Ray Serve's ``autoscaling_config`` for replicas that batch up to ``max_batch_size`` images."""
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": max_batch_size,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }


@dataclass(frozen=True)
class ServeSettings:
    """The options of ``swiftformer serve`` (docs/cli.md, docs/serving.md).

    Attributes:
        model: A model folder or hub id (or a variant name such as ``"xs"``: random weights).
        model_name: The name in ``/v2/models/{name}``; default the last part of ``model``.
        hub: ``from_pretrained`` hub options (revision, cache_dir, local_files_only).
        precision, backend, compile: Passed to :func:`swiftformer.inference.optimize_for_inference`.
        max_batch_size: The most images in one forward pass. With ``compile``, batches are padded to the
            next power of two (or to ``max_batch_size``); those sizes are warmed up before the server reports ready.
        max_wait_ms: How long the first image of a batch waits for more to arrive (only while more admitted
            images are still being decoded).
        max_queue: The most images admitted and not yet answered; past it requests get 503.
        max_upload_mb: The largest request body (all files of a request together); past it 413.
        max_image_pixels: The largest width × height an image header may claim; past it 413, before
            decoding.
        decode_threads: Threads that decode and preprocess uploads, beside the one model thread (and its
            torch threads). Default: the cores this process may run on (its affinity mask: ``taskset``,
            cpusets), so that decoding keeps up with the model while images are queued (``--decode-threads``).
        default_top_k: Labels per image when the request does not say.
        fast_decode: Decode JPEG uploads at the reduced scale the model's resize needs (several times faster
            for photos; top-1 the same within the bound in docs/preprocessing.md); False: every pixel,
            bit-identical to transformers (``--exact-decode``). Shown in the model metadata as ``decode``.
        max_inflight_mb: Request bodies held at once (by Content-Length before reading; chunked bodies as they
            arrive); past it 503 with Retry-After, before the body is read.
        max_connections: Open connections; past it the oldest connection without a request in progress
            is closed, or, when every one has one, the new one is answered 503.
        header_timeout: Seconds a connection may take to send a request's headers (from its opening or
            the previous response); then closed.
        body_timeout: Seconds a request may take to send its body; then 408 and closed.
        allowed_hosts: ``Host`` header names answered besides the loopback names and ``host``; ``"*"``: any.
    """

    model: str
    model_name: str | None = None
    hub: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    precision: str = "auto"
    backend: str = "auto"
    compile: bool = False
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_upload_mb: float = 20.0
    max_image_pixels: int = 50_000_000
    decode_threads: int = field(default_factory=process_cores)
    default_top_k: int = 5
    fast_decode: bool = True
    max_inflight_mb: float = 100.0
    max_connections: int = 256
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        hosts = self.allowed_hosts
        if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) and h.strip() for h in hosts):
            raise ValueError(f"allowed_hosts must be a list of host names, got {hosts!r}")
        object.__setattr__(self, "allowed_hosts", tuple(hosts))  # a Serve config file gives a list
        checks = [
            (
                self.precision in SERVE_PRECISIONS,
                f"precision must be one of {', '.join(SERVE_PRECISIONS)}, got {self.precision!r}",
            ),
            (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"),
            (
                not (self.compile and self.backend in ("openvino", "onnxruntime")),
                f"compile is for the inductor backend; {self.backend} compiles the model itself",
            ),
            (self.max_batch_size >= 1, f"max_batch_size must be at least 1, got {self.max_batch_size}"),
            (self.max_wait_ms >= 0, f"max_wait_ms must be at least 0, got {self.max_wait_ms}"),
            (self.max_queue >= 1, f"max_queue must be at least 1, got {self.max_queue}"),
            (self.max_upload_mb > 0, f"max_upload_mb must be positive, got {self.max_upload_mb}"),
            (self.max_image_pixels >= 1, f"max_image_pixels must be at least 1, got {self.max_image_pixels}"),
            (self.decode_threads >= 1, f"decode_threads must be at least 1, got {self.decode_threads}"),
            (self.default_top_k >= 1, f"default_top_k must be at least 1, got {self.default_top_k}"),
            (0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}"),
            (self.max_inflight_mb >= self.max_upload_mb, "max_inflight_mb must be at least max_upload_mb"),
            (self.max_connections >= 1, f"max_connections must be at least 1, got {self.max_connections}"),
            (self.header_timeout > 0 and self.body_timeout > 0, "header_timeout and body_timeout must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def name(self) -> str:
        """The model's name in the v2 protocol: ``model_name``, or the last part of ``model``."""
        if self.model_name:
            return self.model_name
        return PurePosixPath(self.model.replace("\\", "/").rstrip("/")).name or "model"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
