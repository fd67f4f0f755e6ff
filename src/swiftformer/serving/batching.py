"""Dynamic batching on threads: images of concurrent requests run as one forward pass.

Requests (on the event loop) put one item per image into their model's deque and await a
:class:`concurrent.futures.Future` each. The server's model workers (:class:`ModelWorkers`, one thread
pool for every model) run each model's batches: when a model has images queued, one task of it is on the
pool; the task takes the first waiting image, waits until ``max_batch_size`` images are there or
``max_wait_ms`` has passed since that first image arrived, whichever comes first, runs them as one batch
(images of one input size only; others wait for the next batch), and, if more are queued, puts itself at
the back of the pool's queue, so that models take turns. It waits only while more images are on their
way (admitted, still being decoded): a lone request runs at once instead of paying ``max_wait_ms``.
Decoding and preprocessing happen before, in the server's decode thread pool, so they overlap with the
forward pass of the batch before.

Admission is separate from queueing: a request first reserves its images against ``max_queue``
(images admitted and not yet answered), so a full server refuses it before decoding anything.

A request whose client goes away is cancelled: its images still in the queue are dropped before a
batch is formed (:meth:`DynamicBatcher.cancel`) and counted in ``swiftformer_cancelled_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .errors import ServeError

if TYPE_CHECKING:
    from .metrics import ModelMetrics
    from .model import Classifier

logger = logging.getLogger("swiftformer.serving")

RETRY_AFTER_SECONDS = 1

# Images the current request has submitted, set by ``admission`` (requests run as asyncio tasks, each in its
# own context): what admission must not count as still on its way when the request ends.
_submitted_by_request: ContextVar[list[int] | None] = ContextVar("swiftformer_submitted", default=None)


class ModelWorkers:
    """The threads that run every model's warm-up and batches: one pool for the server, so that several
    models share the cores instead of each keeping a busy thread of its own."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="swiftformer-model")

    def submit(self, task) -> None:
        self._pool.submit(task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Item:
    pixels: torch.Tensor  # (C, H, W)
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """One model's queue, its batches run on the shared :class:`ModelWorkers` (a pool of one thread of its own
    when none is given). ``start()`` warms the model up on a worker and then marks the batcher ready;
    ``stop()`` answers everything queued, then refuses new images."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: ModelMetrics | None = None,
        workers: ModelWorkers | None = None,
    ) -> None:
        self.classifier = classifier
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self._own_workers = workers is None
        self.workers = workers or ModelWorkers(1)
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._admitted = 0
        self._on_the_way = 0  # admitted images not submitted yet (being decoded): worth waiting for
        self._draining = False  # no new requests, no waiting for full batches
        self._scheduled = False  # a task of this batcher is on the workers (queued or running)
        self._running = False  # started and not stopped: submit takes images
        self._reported = (0, 0)  # the queue length and admitted images last added to the gauges
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
                why = "the server is shutting down, or the model is being unloaded"
                raise ServeError(503, "shutting_down", why, retry)
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
            if not self._running:
                raise ServeError(503, "shutting_down", "the model is not running (stopped or unloaded)")
            self._items.extend(items)
            submitted = _submitted_by_request.get()
            if submitted is not None:  # under admission: these are no longer on their way
                arrived = min(len(items), self._on_the_way)
                submitted[0] += arrived
                self._on_the_way -= arrived
            self._gauge()
            self._schedule()
            self._cond.notify_all()
        return [item.future for item in items]

    def cancel(self, futures: list[Future]) -> int:
        """Drop the images of ``futures`` that are still queued (their client went away); the number dropped.
        Images already in a batch are run and their results thrown away."""
        wanted = set(map(id, futures))
        with self._cond:
            kept = deque(item for item in self._items if id(item.future) not in wanted)
            dropped = len(self._items) - len(kept)
            self._items = kept
            self._gauge()
        for future in futures:
            future.cancel()  # those still pending: a batch formed later skips them too
        if dropped and self.metrics is not None:
            self.metrics.cancelled.inc(dropped)
        return dropped

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def queued(self) -> int:
        return len(self._items)

    # --------------------------------------------------------------------------- worker side
    def start(self) -> None:
        """Warm the model up on a worker; then take requests."""
        with self._cond:
            self._running = True
            self._scheduled = True
        self.workers.submit(self._warm_up)

    def drain(self) -> None:
        """Refuse new requests (503 ``shutting_down``) and stop waiting for batches to fill: what is
        queued or still arriving from admitted requests runs at once. Safe in a signal handler."""
        self._draining = True  # a plain store: no lock is taken in a signal handler
        threading.Thread(target=self._wake, name="swiftformer-drain", daemon=True).start()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Refuse new requests, run what is queued (at most ``timeout`` seconds), then take no more images."""
        with self._cond:
            self._drain_while(lambda: self._scheduled, _deadline(timeout))
            self._running = False
        if self._own_workers:
            self.workers.shutdown()

    def retire(self, timeout: float | None = 60.0) -> None:
        """Unload: refuse new requests, let the admitted ones finish (at most ``timeout`` seconds), stop."""
        deadline = _deadline(timeout)
        with self._cond:
            self._drain_while(lambda: self._admitted > 0, deadline)
        self.stop(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _drain_while(self, busy: Callable[[], bool], deadline: float | None) -> None:
        """Refuse new requests and wait (the lock held) while ``busy()``, until the ``deadline`` (monotonic
        seconds; None: no limit)."""
        self._draining = True
        self._cond.notify_all()
        while busy() and (deadline is None or time.monotonic() < deadline):
            self._cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def taking_requests(self) -> bool:
        return self.ready.is_set() and not self._draining

    def _gauge(self) -> None:
        """Move the model's gauges by this batcher's change (the versions of a model share its series)."""
        if self.metrics is not None:
            queued, admitted = len(self._items), self._admitted
            self.metrics.queue_depth.inc(queued - self._reported[0])
            self.metrics.in_flight.inc(admitted - self._reported[1])
            self._reported = (queued, admitted)

    def _schedule(self) -> None:
        """Put a task of this batcher on the workers unless one is there (the lock held)."""
        if not self._scheduled and self._items and self.ready.is_set():
            self._scheduled = True
            self.workers.submit(self._work)

    def _warm_up(self) -> None:
        try:
            self.classifier.warm_up()
        except BaseException as err:  # reported by /v2/health/ready and every request
            self.failure = err
            logger.exception("warming up the model failed")
        else:
            self.ready.set()
        with self._cond:
            self._scheduled = False
            self._schedule()
            self._cond.notify_all()

    def _work(self) -> None:
        """One batch, then back in the workers' queue if more images wait (models take turns)."""
        batch: list[_Item] = []
        try:
            batch = self._next_batch()
            if batch:
                self._run_batch(batch)
        finally:
            with self._cond:
                self._scheduled = False
                self._schedule()
                self._cond.notify_all()

    def _wait(self, timeout: float | None = None) -> None:
        """Wait on the condition (its lock held); the time counts as waiting for decoding when admitted
        images were still on their way when the wait began."""
        starved = self._on_the_way > 0
        start = time.perf_counter()
        self._cond.wait(timeout)
        if starved and self.metrics is not None:
            self.metrics.model_waiting_for_decode.inc(time.perf_counter() - start)

    def _next_batch(self) -> list[_Item]:
        with self._cond:
            if not self._items:
                return []
            deadline = self._items[0].arrived + self.max_wait
            while len(self._items) < self.max_batch_size and self._on_the_way > 0 and not self._draining:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wait(remaining)
            if not self._items:  # all cancelled while waiting
                return []
            shape = self._items[0].pixels.shape
            batch: list[_Item] = []
            rest: deque[_Item] = deque()
            while self._items:
                item = self._items.popleft()
                if len(batch) < self.max_batch_size and item.pixels.shape == shape:
                    if item.future.set_running_or_notify_cancel():  # False: cancelled, not yet dropped by cancel()
                        batch.append(item)
                else:
                    rest.append(item)
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
    """What the app needs from a model (see ``app.py``), served by a :class:`DynamicBatcher`."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: ModelMetrics,
        workers: ModelWorkers | None = None,
    ) -> None:
        self.classifier, self.metrics = classifier, metrics
        self.batcher = DynamicBatcher(
            classifier,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            metrics=metrics,
            workers=workers,
        )

    @property
    def ready(self) -> bool:
        return self.batcher.taking_requests

    @property
    def failure(self) -> BaseException | None:
        return self.batcher.failure

    def start(self) -> None:
        self.batcher.start()

    def wait_ready(self, timeout: float) -> bool:
        """Block until warmed up (True) or failed or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        while not self.batcher.ready.wait(0.05):
            if self.batcher.failure is not None or time.monotonic() > deadline:
                return False
        return True

    def drain(self) -> None:
        self.batcher.drain()

    def stop(self) -> None:
        self.batcher.stop()

    def retire(self) -> None:
        self.batcher.retire()

    def admission(self, n: int):
        return self.batcher.admission(n)

    async def classify(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits per image; cancelled (the client went away): the images still queued are dropped."""
        import asyncio

        futures = self.batcher.submit(pixels)
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        except asyncio.CancelledError:
            self.batcher.cancel(futures)
            raise


def _deadline(timeout: float | None) -> float | None:
    """The monotonic time ``timeout`` seconds from now (None: no limit)."""
    return None if timeout is None else time.monotonic() + timeout
