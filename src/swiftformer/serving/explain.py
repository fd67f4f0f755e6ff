"""``POST /explain``: one uploaded image → an overlay PNG of where the model looks (docs/explain.md).

The heatmap is computed by :func:`swiftformer.explain.explain_with_scores` on the server's *eager*
model (class activation maps need hooks and a backward pass, which the fused fast path that answers
``/predict`` does not have), one request at a time on a thread of its own. Only the methods that cost
about one forward and backward pass are offered: Score-CAM and Ablation-CAM run one forward pass per
channel of the layer, too much for a request.
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

from .. import explain as ex
from .errors import ServeError

if TYPE_CHECKING:
    import torch

    from .model import Classifier

# What a request may ask for (the others cost one forward pass per channel: see the module docstring).
SERVED_METHODS = tuple(m for m in ex.METHODS if m not in ex.PER_CHANNEL_METHODS)


class Explainer:
    """Overlay PNGs for one :class:`~swiftformer.serving.model.Classifier`, one at a time (the explanation
    adds and removes hooks on the shared eager model)."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self._lock = threading.Lock()

    def check(self, method: str, layer: str | None, target: str | None) -> tuple[str, list[str], int | None]:
        """``(method, stages, target index or None)`` of a request, or ServeError 400 with one line. Without
        ``layer`` the stages are the method's default (for ``attention`` every stage, averaged)."""
        model = self.classifier.model
        config = model.config
        if method not in SERVED_METHODS:
            slow = " (it runs one forward pass per channel: use swiftformer explain)" if method in ex.METHODS else ""
            raise ServeError(
                400, "bad_request", f"method {method!r} is not served{slow}; choose from {', '.join(SERVED_METHODS)}"
            )
        if method == "attention" and config.attention_variant != "l2":
            raise ServeError(
                400,
                "bad_request",
                f"method 'attention' needs an 'l2' attention model; this one is {config.attention_variant!r}, where every "
                "token weight is exactly 1: use gradcam",
            )
        try:
            stages = ex.resolve_layers(model, layer, method)
            index = None if target in (None, "") else ex.resolve_target(config, target)
        except ValueError as err:
            raise ServeError(400, "bad_request", str(err)) from None
        return method, stages, index

    def render(
        self, pixel_values: torch.Tensor, method: str, layer: list[str], target: int | None
    ) -> tuple[bytes, dict[str, str]]:
        """The overlay PNG of ``pixel_values`` (C, H, W) and response headers saying what it shows."""
        with self._lock:
            try:
                result = ex.explain_with_scores(
                    self.classifier.model, pixel_values[None], target=target, method=method, layer=layer
                )
            except ImportError as err:  # the grad-cam package is the `explain` extra
                raise ServeError(501, "not_implemented", str(err)) from None
        index, score = result.targets[0], result.scores[0]
        label = self.classifier.labels[index]
        caption = ex.caption_for(label, index, score, method, layer)
        picture = ex.overlay(ex.model_view(pixel_values, self.classifier.processor), result.maps[0], caption)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        headers = {
            "X-Explain-Method": method,
            "X-Explain-Layer": "+".join(layer),
            "X-Explain-Index": str(index),
            "X-Explain-Label": quote(label),  # percent-encoded UTF-8: headers are Latin-1
            "X-Explain-Score": f"{score:.6f}",
        }
        return buffer.getvalue(), headers
