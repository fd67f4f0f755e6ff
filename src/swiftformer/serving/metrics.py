"""Prometheus metrics of one server (its own registry, so several servers can share a process).

Every metric has a ``model`` label: the model a request or a batch was for, or ``""`` for what belongs to no
one model (health checks, ``/metrics``, the page, the decode pool, connection-level refusals, requests naming
no known model). :meth:`ServeMetrics.for_model` gives one model's view, which the batcher and the model side use.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    """The counters, histograms and gauges ``GET /metrics`` shows (names in docs/serving.md)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch_size: int, model_names: tuple[str, ...] = ()) -> None:
        self.registry = registry = CollectorRegistry()
        # which process answered (Ray Serve: which replica) and the models it started with
        Info("swiftformer_server", "The serving process", registry=registry).info(
            {"pid": str(os.getpid()), "model": ",".join(model_names)}
        )
        self.requests = Counter(
            "swiftformer_requests",
            "HTTP requests by endpoint, status and model",
            ["endpoint", "status", "model"],
            registry=registry,
        )
        self.errors = Counter(
            "swiftformer_errors", "Refused or failed requests by kind and model", ["kind", "model"], registry=registry
        )
        self.latency = Histogram(
            "swiftformer_request_latency_seconds",
            "Time from request to response by endpoint and model",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # one bucket per batch size up to 32, so that the histogram tells the sizes apart
        sizes = list(range(1, max_batch_size + 1))
        if max_batch_size > 32:
            sizes = sorted({2**i for i in range(max_batch_size.bit_length())} | {max_batch_size})
        self.batch_size = Histogram(
            "swiftformer_batch_size",
            "Images per forward pass (before padding)",
            ["model"],
            buckets=sizes,
            registry=registry,
        )
        self.inference = Histogram(
            "swiftformer_inference_seconds",
            "Time of one forward pass (a batch)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.images = Counter("swiftformer_images", "Images classified", ["model"], registry=registry)
        self.queue_depth = Gauge(
            "swiftformer_queue_depth", "Images waiting for the model workers", ["model"], registry=registry
        )
        self.in_flight = Gauge(
            "swiftformer_images_in_flight",
            "Images admitted and not yet answered (limit: the server's max_queue, per model)",
            ["model"],
            registry=registry,
        )
        # The model's time on the workers: idle fraction over a window = 1 - rate(busy) (docs/serving.md, "Metrics")
        self.model_busy = Counter(
            "swiftformer_model_busy_seconds",
            "Seconds the model workers spent running the model's batches (stacking, forward pass, handing out results)",
            ["model"],
            registry=registry,
        )
        self.model_waiting_for_decode = Counter(
            "swiftformer_model_waiting_for_decode_seconds",
            "Seconds a model worker waited for the model's images while admitted ones were still being decoded",
            ["model"],
            registry=registry,
        )
        self.cancelled = Counter(
            "swiftformer_cancelled",
            "Images dropped before they reached the model (waiting to be decoded, or in the queue): their client "
            "disconnected",
            ["model"],
            registry=registry,
        )
        self.decode_threads = Gauge(
            "swiftformer_decode_threads",
            "Threads decoding and preprocessing uploads (shared: model is empty)",
            ["model"],
            registry=registry,
        )

    def for_model(self, name: str) -> ModelMetrics:
        """The metrics of model ``name`` (the same attribute names, the label bound)."""
        return ModelMetrics(self, name)

    def count_error(self, kind: str, model: str = "") -> None:
        self.errors.labels(kind=kind, model=model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelMetrics:
    """One model's series of :class:`ServeMetrics` (what a batcher or a Ray replica records into)."""

    def __init__(self, server: ServeMetrics, name: str) -> None:
        self.server, self.name = server, name
        labelled: dict[str, Any] = {
            attribute: getattr(server, attribute).labels(model=name)
            for attribute in (
                "batch_size",
                "inference",
                "images",
                "queue_depth",
                "in_flight",
                "model_busy",
                "model_waiting_for_decode",
                "cancelled",
            )
        }
        self.batch_size, self.inference, self.images = labelled["batch_size"], labelled["inference"], labelled["images"]
        self.queue_depth, self.in_flight = labelled["queue_depth"], labelled["in_flight"]
        self.model_busy, self.model_waiting_for_decode = labelled["model_busy"], labelled["model_waiting_for_decode"]
        self.cancelled = labelled["cancelled"]

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.images.inc(size)


def endpoint_label(scope: MutableMapping[str, Any], routes: list[Any]) -> str:
    """The route a request is counted under: its path template (``/v2/models/{model_name}/infer``), also for a
    request refused before routing (a missing key, a size or queue limit), matched against ``routes`` here;
    ``unmatched`` when no route takes it (a label per raw path would let clients grow the metrics)."""
    route = scope.get("route")
    if route is None:
        from starlette.routing import Match

        route = next((r for r in routes if r.matches(scope)[0] == Match.FULL), None)
    return getattr(route, "path", None) or "unmatched"
