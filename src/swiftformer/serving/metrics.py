"""Prometheus metrics of one server (its own registry, so several servers can share a process)."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    """The counters, histograms and gauges ``GET /metrics`` shows (names in docs/serving.md)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch_size: int, model_name: str = "") -> None:
        self.registry = registry = CollectorRegistry()
        # which process answered (Ray Serve: which replica), for scrapes that reach several
        Info("swiftformer_server", "The serving process", registry=registry).info(
            {"pid": str(os.getpid()), "model": model_name}
        )
        self.requests = Counter(
            "swiftformer_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=registry
        )
        self.errors = Counter("swiftformer_errors", "Refused or failed requests by kind", ["kind"], registry=registry)
        self.latency = Histogram(
            "swiftformer_request_latency_seconds",
            "Time from request to response by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # one bucket per batch size up to 32, so that the histogram tells the sizes apart
        sizes = list(range(1, max_batch_size + 1))
        if max_batch_size > 32:
            sizes = sorted({2**i for i in range(max_batch_size.bit_length())} | {max_batch_size})
        self.batch_size = Histogram(
            "swiftformer_batch_size", "Images per forward pass (before padding)", buckets=sizes, registry=registry
        )
        self.inference = Histogram(
            "swiftformer_inference_seconds",
            "Time of one forward pass (a batch)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.images = Counter("swiftformer_images", "Images classified", registry=registry)
        self.queue_depth = Gauge("swiftformer_queue_depth", "Images waiting for the model worker", registry=registry)
        self.in_flight = Gauge(
            "swiftformer_images_in_flight",
            "Images admitted and not yet answered (limit: the server's max_queue)",
            registry=registry,
        )
        # The model thread's time: idle fraction over a window = 1 - rate(busy) (docs/serving.md, "Metrics")
        self.model_busy = Counter(
            "swiftformer_model_busy_seconds",
            "Seconds the model thread spent running batches (stacking, forward pass, handing out results)",
            registry=registry,
        )
        self.model_waiting_for_decode = Counter(
            "swiftformer_model_waiting_for_decode_seconds",
            "Seconds the model thread waited for images while admitted ones were still being decoded",
            registry=registry,
        )
        self.decode_threads = Gauge(
            "swiftformer_decode_threads", "Threads decoding and preprocessing uploads", registry=registry
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.images.inc(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
