"""The model side of the server: load, optimize, pad batches to warmed-up sizes, warm up."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import torch

from ..detection.config import dense_model_problem
from ..image_processing import SwiftFormerImageProcessor, load_processor
from ..inference import load_model, optimize_for_inference
from .images import output_size

if TYPE_CHECKING:
    from ..modeling import SwiftFormerForImageClassification
    from .settings import ModelSettings

logger = logging.getLogger("swiftformer.serving")


def batch_sizes(max_batch_size: int) -> list[int]:
    """The batch sizes the model runs at: the powers of two below ``max_batch_size``, and it.

    On compiled inductor (``compile=True``) a batch of n images is padded with zero images to the smallest of
    these ≥ n, so the model sees (and is warmed up on) log2(max) + 1 shapes instead of max: one compiled
    graph each. Padding costs compute only when batches are not full, i.e. when the server is not busy.
    Other backends take any batch size and are not padded (:meth:`Classifier.padded_size`).
    """
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


class Classifier:
    """A classifier for the server: ``forward(pixel_values (n, 3, H, W)) -> logits (n, num_labels)``
    float32, with n padded up to one of :func:`batch_sizes` on compiled inductor; labels; the processor's
    fixed input size; ``model``, the eager model, for ``POST /explain``.

    ``forward`` is meant for one thread at a time (the server's model worker)."""

    def __init__(
        self,
        model: SwiftFormerForImageClassification,
        processor: SwiftFormerImageProcessor,
        *,
        name: str,
        precision: str = "fp32",
        backend: str = "inductor",
        compile: bool = False,
        max_batch_size: int = 8,
    ) -> None:
        config = model.config
        self.name = name
        self.precision, self.backend, self.compile = precision, backend, compile
        self.processor = processor
        self.num_labels = config.num_labels
        self.num_channels = config.num_channels
        self.labels = [config.id2label.get(i, str(i)) for i in range(config.num_labels)]
        self.input_size = output_size(processor)  # None: images keep their own sizes
        image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        self.warm_up_size = self.input_size or (image_size, image_size)
        self.batch_sizes = batch_sizes(max_batch_size)
        self.module = optimize_for_inference(model, precision=precision, backend=backend, compile=compile)
        self.model = model  # the eager model (optimize_for_inference copies it): /explain hooks and back-propagates
        self.backends: dict[int, str] = {}  # batch size -> the backend that ran it (after the warm-up)

    def backend_for(self, n: int) -> str:
        """The backend a batch of ``n`` images runs on (``backend="auto"`` picks per batch size)."""
        backend_for = getattr(self.module, "backend_for", None)
        return backend_for(n) if backend_for else getattr(self.module, "backend", self.backend)

    def padded_size(self, n: int) -> int:
        """The batch size ``n`` images run at: padded up to one of :attr:`batch_sizes` (n itself past the
        largest) only where the backend is compiled inductor, which builds a graph per input shape. ONNX
        Runtime, OpenVINO and the uncompiled path take any batch size as it is: padding would only add
        compute (a batch of 3 run as 4)."""
        if not (self.compile and self.backend_for(n) == "inductor"):
            return n
        return next((size for size in self.batch_sizes if size >= n), n)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (n, num_labels) float32 of ``pixel_values`` (n, C, H, W) float32."""
        n = pixel_values.shape[0]
        padded = self.padded_size(n)
        if padded > n:
            filler = pixel_values.new_zeros((padded - n, *pixel_values.shape[1:]))
            pixel_values = torch.cat([pixel_values, filler])
        with torch.inference_mode():
            return self.module(pixel_values)[:n].float()

    def warm_up(self) -> float:
        """Run every batch size once at the processor's output size; the seconds it took."""
        start = time.perf_counter()
        height, width = self.warm_up_size
        for size in self.batch_sizes:
            self.forward(torch.zeros(size, self.num_channels, height, width))
        seconds = time.perf_counter() - start
        self.backends = {size: self.backend_for(size) for size in self.batch_sizes}
        logger.info(
            "warmed up on batch sizes %s at %d×%d in %.1f s (%s)",
            self.batch_sizes,
            height,
            width,
            seconds,
            getattr(self.module, "reason", f"{self.precision} on {self.backend}"),
        )
        return seconds

    def metadata(self) -> dict[str, Any]:
        """Facts about the model for the v2 model-metadata endpoint and the page."""
        return {
            "precision": getattr(self.module, "precision", self.precision),
            "backend": getattr(self.module, "backend", self.backend),
            "backends_by_batch_size": {str(size): name for size, name in self.backends.items()},
            "reason": getattr(self.module, "reason", ""),
            "compile": self.compile,
            "num_labels": self.num_labels,
            "input_size": list(self.input_size) if self.input_size else None,
            "batch_sizes": self.batch_sizes,
        }


def load_classifier(
    model: ModelSettings, path: str | None = None, *, hub: dict[str, Any] | None = None, max_batch_size: int = 8
) -> Classifier:
    """``model`` (or its version folder ``path``) loaded and optimized, not yet warmed up (that is the model
    workers').

    The path is a folder, a hub id, or a variant name (``"xs"``: random weights, ImageNet preprocessing; for
    trying the server out)."""
    path = path or model.path
    problem = dense_model_problem(path, "serve")
    if problem:
        raise ValueError(problem)
    loaded = load_model(path, hub or {})
    processor, note = load_processor(path, **(hub or {}))
    if note:
        logger.warning("%s", note)
    return Classifier(
        loaded,
        processor,
        name=model.display_name,
        precision=model.precision,
        backend=model.backend,
        compile=model.compile,
        max_batch_size=max_batch_size,
    )
