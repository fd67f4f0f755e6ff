"""What a server is started with: its models, where to listen, batching and input limits; Ray Serve autoscaling."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..hardware import process_cores
from .auth import check_keys, is_loopback

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
class ModelSettings:
    """One model of a server (``--model [NAME[@VERSION]=]PATH[,precision=P][,backend=B][,compile]``).

    Attributes:
        path: A model folder, a folder of numbered version folders (``PATH/1/``, ``PATH/2/``: Triton's layout),
            a hub id, or a variant name such as ``"xs"`` (random weights).
        name: The name in ``/v2/models/{name}`` and ``/predict?model=``; default the last part of ``path``.
        version: This folder's version number; None: the numbered subfolders' numbers, else 1.
        precision, backend, compile: Passed to :func:`swiftformer.inference.optimize_for_inference`.
    """

    path: str
    name: str | None = None
    version: int | None = None
    precision: str = "auto"
    backend: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a model needs a folder, hub id or variant name")
        if not NAME_PATTERN.fullmatch(self.display_name):
            raise ValueError(
                f"model name {self.display_name!r}: use letters, digits, '.', '_' and '-' (at most 64 characters)"
                + ("" if self.name else "; name it with NAME=PATH")
            )
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
            (self.version is None or self.version >= 1, f"a model version is a number from 1, got {self.version}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"model {self.label}: {message}")

    @property
    def label(self) -> str:
        """``name`` as the messages show it (``name@version`` when the version is given)."""
        return self.display_name + (f"@{self.version}" if self.version is not None else "")

    @property
    def display_name(self) -> str:
        """The model's name: ``name``, or the last part of ``path``."""
        if self.name:
            return self.name
        return PurePosixPath(self.path.replace("\\", "/").rstrip("/")).name or "model"


# What a model name may be: it goes into URL paths, metric labels and log lines.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ServeSettings:
    """The options of ``swiftformer serve`` (docs/cli.md, docs/serving.md).

    Attributes:
        models: The models served (at least one; two of one name only with different versions). The first is
            the default of ``/predict`` and ``/explain``.
        hub: ``from_pretrained`` hub options (revision, cache_dir, local_files_only), for every model.
        model_workers: Threads running every model's forward passes (one pool for all models). None: the cores
            this process may run on divided by torch's threads per forward pass, at least 1.
        max_batch_size: The most images in one forward pass. With ``compile``, batches are padded to the
            next power of two (or to ``max_batch_size``); those sizes are warmed up before the server reports ready.
        max_wait_ms: How long the first image of a batch waits for more to arrive (only while more admitted
            images are still being decoded).
        max_queue: The most images admitted and not yet answered; past it requests get 503.
        max_upload_mb: The largest request body (all files of a request together); past it 413.
        max_image_pixels: The largest width × height an image header may claim; past it 413, before
            decoding.
        decode_threads: Threads that decode and preprocess uploads, beside the model workers (and their
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
        grpc_port: The port of the v2 gRPC service beside HTTP (0: a free one, logged); None: no gRPC.
        api_keys: Keys accepted as ``Authorization: Bearer KEY`` (gRPC: ``authorization`` metadata) on every
            route but the page, health and metrics; empty: no key needed (docs/serving.md, "Access control").
        admin_keys: Keys for ``/v2/repository/...`` (which answer 403 without any); they pass as API keys too.
        protect_health: Health, server metadata and ``/metrics`` need a key too.
        ssl_certfile, ssl_keyfile: PEM certificate (chain) and private key: HTTPS, and gRPC over TLS.
        insecure: Listen on a non-loopback ``host`` without API keys (else refused before anything starts).
    """

    models: tuple[ModelSettings, ...]
    hub: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    model_workers: int | None = None
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
    grpc_port: int | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never in a log line or an error
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    protect_health: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        hosts = self.allowed_hosts
        if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) and h.strip() for h in hosts):
            raise ValueError(f"allowed_hosts must be a list of host names, got {hosts!r}")
        object.__setattr__(self, "allowed_hosts", tuple(hosts))  # a Serve config file gives a list
        object.__setattr__(self, "api_keys", check_keys(self.api_keys, "api_keys"))
        object.__setattr__(self, "admin_keys", check_keys(self.admin_keys, "admin_keys"))
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise ValueError("a server needs at least one model")
        check_unique_names(self.models)
        checks = [
            (
                self.model_workers is None or self.model_workers >= 1,
                f"model_workers must be at least 1, got {self.model_workers}",
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
            (
                self.grpc_port is None or 0 <= self.grpc_port <= 65535,
                f"grpc_port must be in 0..65535, got {self.grpc_port}",
            ),
            (
                (self.ssl_certfile is None) == (self.ssl_keyfile is None),
                "ssl_certfile and ssl_keyfile go together: TLS needs the certificate and its private key",
            ),
            (
                is_loopback(self.host) or bool(self.api_keys) or self.insecure,
                f"refusing to listen on {self.host} (beyond this machine) without an API key: set api_keys=KEY, "
                "or insecure=True to let anyone who reaches the port use the model",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def default_model(self) -> str:
        """The model of ``/predict`` and ``/explain`` without ``?model=``: the first given."""
        return self.models[0].display_name

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def check_unique_names(models: tuple[ModelSettings, ...]) -> None:
    """ValueError naming the first name given twice: a name is given once, or once per explicit version."""
    seen: dict[str, list[ModelSettings]] = {}
    for model in models:
        for other in seen.setdefault(model.display_name, []):
            if other.version is None or model.version is None or other.version == model.version:
                raise ValueError(
                    f"two models named {model.label!r} ({other.path} and {model.path}): give one another name "
                    "(NAME=PATH) or each its own version (NAME@VERSION=PATH)"
                )
        seen[model.display_name].append(model)
