"""Dynamic batching on threads: images of concurrent requests run as one forward pass.

Requests (on the event loop) put one item per image into a deque and await a
:class:`concurrent.futures.Future` each. One model worker thread takes the first waiting image, waits
until ``max_batch_size`` images are there or ``max_wait_ms`` has passed since that first image
arrived, whichever comes first, and runs them as one batch (images of one input size only; others
wait for the next batch). It waits only while more images are on their way (admitted, still being
decoded): a lone request runs at once instead of paying ``max_wait_ms``. Decoding and preprocessing
happen before, in the server's decode thread pool, so they overlap with the forward pass of the batch
before.

Admission is separate from queueing: a request first reserves its images against ``max_queue``
(images admitted and not yet answered), so a full server refuses it before decoding anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .errors import ServeError

if TYPE_CHECKING:
    from .metrics import ServeMetrics
    from .model import Classifier

logger = logging.getLogger("swiftformer.serving")

RETRY_AFTER_SECONDS = 1

# Images the current request has submitted, set by ``admission`` (requests run as asyncio tasks, each in its
# own context): what admission must not count as still on its way when the request ends.
_submitted_by_request: ContextVar[list[int] | None] = ContextVar("swiftformer_submitted", default=None)


@dataclass
class _Item:
    pixels: torch.Tensor  # (C, H, W)
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """The model worker thread and its queue. ``start()`` warms the model up on the worker thread and
    then marks the batcher ready; ``stop()`` answers everything queued, then ends the thread."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.classifier = classifier
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._admitted = 0
        self._on_the_way = 0  # admitted images not submitted yet (being decoded): worth waiting for
        self._draining = False  # no new requests, no waiting for full batches
        self._stopping = False  # the worker ends once the queue is empty
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.failure: BaseException | None = None  # why warming up failed

    # --------------------------------------------------------------------------- request side
    @contextmanager
    def admission(self, n: int) -> Iterator[None]:
        """Reserve ``n`` images against ``max_queue`` for the ``with`` block.

        Raises ServeError: 503 ``not_ready`` (warming up or failed), ``shutting_down``, ``queue_full``
        (with ``Retry-After``); 413 ``too_many_images`` when ``n`` alone is over ``max_queue``."""
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if n > self.max_queue:
            raise ServeError(
                413, "too_many_images", f"{n} images in one request, over the server's max_queue ({self.max_queue})"
            )
        with self._cond:
            if self._draining:
                raise ServeError(503, "shutting_down", "the server is shutting down", retry)
            if not self.ready.is_set():
                why = f"the model failed to warm up: {self.failure}" if self.failure else "the model is warming up"
                raise ServeError(503, "not_ready", why, retry)
            if self._admitted + n > self.max_queue:
                raise ServeError(
                    503,
                    "queue_full",
                    f"the server is busy: {self._admitted} images queued or running, its max_queue is {self.max_queue}",
                    retry,
                )
            self._admitted += n
            self._on_the_way += n
            self._gauge()
        submitted = [0]
        token = _submitted_by_request.set(submitted)
        try:
            yield
        finally:
            _submitted_by_request.reset(token)
            with self._cond:
                self._admitted -= n
                self._on_the_way = max(0, self._on_the_way - (n - min(submitted[0], n)))  # never came (bad image)
                self._gauge()
                self._cond.notify_all()

    def submit(self, pixels: list[torch.Tensor]) -> list[Future]:
        """Queue images (each (C, H, W) float32); a future of its logits (num_labels,) per image."""
        items = [_Item(p) for p in pixels]
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                raise ServeError(503, "shutting_down", "the model worker is not running")
            self._items.extend(items)
            submitted = _submitted_by_request.get()
            if submitted is not None:  # under admission: these are no longer on their way
                arrived = min(len(items), self._on_the_way)
                submitted[0] += arrived
                self._on_the_way -= arrived
            self._gauge()
            self._cond.notify_all()
        return [item.future for item in items]

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def queued(self) -> int:
        return len(self._items)

    # --------------------------------------------------------------------------- worker side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="swiftformer-model", daemon=True)
        self._thread.start()

    def drain(self) -> None:
        """Refuse new requests (503 ``shutting_down``) and stop waiting for batches to fill: what is
        queued or still arriving from admitted requests runs at once. Safe in a signal handler."""
        self._draining = True  # a plain store: no lock is taken in a signal handler
        threading.Thread(target=self._wake, name="swiftformer-drain", daemon=True).start()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Refuse new requests, run what is queued, end the worker."""
        with self._cond:
            self._draining = self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def taking_requests(self) -> bool:
        return self.ready.is_set() and not self._draining

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._items))
            self.metrics.in_flight.set(self._admitted)

    def _run(self) -> None:
        try:
            self.classifier.warm_up()
        except BaseException as err:  # reported by /v2/health/ready and every request
            self.failure = err
            logger.exception("warming up the model failed")
            return
        self.ready.set()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _wait(self, timeout: float | None = None) -> None:
        """Wait on the condition (its lock held); the time counts as waiting for decoding when admitted
        images were still on their way when the wait began."""
        starved = self._on_the_way > 0
        start = time.perf_counter()
        self._cond.wait(timeout)
        if starved and self.metrics is not None:
            self.metrics.model_waiting_for_decode.inc(time.perf_counter() - start)

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._items and not self._stopping:
                self._wait()
            if not self._items:
                return None  # stopping, nothing left
            deadline = self._items[0].arrived + self.max_wait
            while len(self._items) < self.max_batch_size and self._on_the_way > 0 and not self._draining:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wait(remaining)
            shape = self._items[0].pixels.shape
            batch: list[_Item] = []
            rest: deque[_Item] = deque()
            while self._items:
                item = self._items.popleft()
                (batch if len(batch) < self.max_batch_size and item.pixels.shape == shape else rest).append(item)
            self._items = rest
            self._gauge()
            return batch

    def _run_batch(self, batch: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            logits = self.classifier.forward(torch.stack([item.pixels for item in batch]))
        except Exception as err:
            logger.exception("forward pass of a batch of %d failed", len(batch))
            self._busy(start)
            for item in batch:
                item.future.set_exception(err)
            return
        if self.metrics is not None:
            self.metrics.observe_batch(len(batch), time.perf_counter() - start)
        rows = [row.clone() for row in logits]
        self._busy(start)  # before any answer: a client that has its answer sees its batch counted
        for item, row in zip(batch, rows):
            item.future.set_result(row)

    def _busy(self, start: float) -> None:
        if self.metrics is not None:
            self.metrics.model_busy.inc(time.perf_counter() - start)


class BatchingBackend:
    """What the app needs from a model (see ``app.Backend``), served by a :class:`DynamicBatcher`."""

    def __init__(self, classifier: Classifier, *, max_batch_size, max_wait_ms, max_queue, metrics) -> None:
        self.classifier, self.metrics = classifier, metrics
        self.batcher = DynamicBatcher(
            classifier, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue, metrics=metrics
        )

    @property
    def ready(self) -> bool:
        return self.batcher.taking_requests

    def start(self) -> None:
        self.batcher.start()

    def drain(self) -> None:
        self.batcher.drain()

    def stop(self) -> None:
        self.batcher.stop()

    def admission(self, n: int):
        return self.batcher.admission(n)

    async def classify(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        import asyncio

        futures = self.batcher.submit(pixels)
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
