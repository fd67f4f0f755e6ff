"""What a batch job computes per batch of ``pixel_values``: top-k classes (``predict``) or pooled features
(``embed``), as rows of :data:`~swiftformer.batch.output_files.COLUMN_KINDS` columns.

A :class:`JobSpec` is everything needed to build the model, its processor and the task: plain data, so
that Ray actors (or any other process) can rebuild the same task from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..image_processing import SwiftFormerImageProcessor, load_processor
from ..inference import bn_scale_shift, fuse, optimize_for_inference
from ..modeling import SwiftFormerForImageClassification

NON_FINITE_LOGITS = "the model's logits for this image are not finite (NaN or inf)"
NON_FINITE_FEATURES = "the model's features for this image are not finite (NaN or inf)"

PREDICT_COLUMNS = ("image", "label", "index", "score", "labels", "indices", "scores")
EMBED_COLUMNS = ("image", "embedding")


def image_features(model: SwiftFormerForImageClassification, pixel_values: torch.Tensor) -> torch.Tensor:
    """The classifier's head input, (B, embed_dims[-1]): the last stage's map through the final norm, then
    averaged over H × W."""
    hidden = model.swiftformer(pixel_values, return_dict=True).last_hidden_state  # (B, C, h, w)
    return model.norm(hidden).flatten(2).mean(-1)


class FusedFeatures(nn.Module):
    """:func:`image_features` on the reparameterized network (:func:`swiftformer.inference.fuse`): the fused
    stages, the mean over positions, then the final BatchNorm as a per-channel affine map
    (:func:`swiftformer.inference.bn_scale_shift`; it commutes with the mean). Equal to the eager features within
    float32 round-off, about twice as fast."""

    def __init__(self, model: SwiftFormerForImageClassification) -> None:
        super().__init__()
        self.features = fuse(model).features
        with torch.no_grad():
            scale, shift = bn_scale_shift(model.norm)
        self.register_buffer("scale", scale.float().clone())
        self.register_buffer("shift", shift.float().clone())
        self.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.features(pixel_values.contiguous(memory_format=torch.channels_last))
        return x.mean(dim=(2, 3)) * self.scale + self.shift


class ClassifyTask:
    """Top-k classes per image: ``label``/``index``/``score`` (the best), ``labels``/``indices``/``scores``
    (the top k, best first), with ``logits`` the raw logits; an image whose logits are not finite gets an
    error instead (NaN scores would be meaningless and are not JSON)."""

    def __init__(self, forward: Any, id2label: dict[int, str], top_k: int, logits: bool = False) -> None:
        self.forward, self.id2label, self.top_k, self.logits = forward, id2label, top_k, logits
        self.columns = [*PREDICT_COLUMNS, *(["logits"] if logits else []), "error"]

    def __call__(self, pixel_values: torch.Tensor) -> list[dict[str, Any] | str]:
        with torch.inference_mode():
            logits = self.forward(pixel_values).float()
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        scores, indices = logits.softmax(dim=-1).topk(min(self.top_k, logits.shape[-1]), dim=-1)
        raw = logits.tolist() if self.logits else None
        results: list[dict[str, Any] | str] = []
        for i, (ok, row_scores, row_indices) in enumerate(zip(finite, scores.tolist(), indices.tolist())):
            if not ok:
                results.append(NON_FINITE_LOGITS)
                continue
            labels = [self.id2label.get(j, str(j)) for j in row_indices]
            row = {
                "label": labels[0],
                "index": row_indices[0],
                "score": row_scores[0],
                "labels": labels,
                "indices": row_indices,
                "scores": row_scores,
            }
            if raw is not None:
                row["logits"] = raw[i]
            results.append(row)
        return results


class EmbedTask:
    """Pooled last-stage features per image (``embedding``, ``embed_dims[-1]`` floats), L2-normalized with
    ``normalize``; an image whose features are not finite gets an error instead."""

    def __init__(self, forward: Any, normalize: bool = False) -> None:
        self.forward, self.normalize = forward, normalize
        self.columns = [*EMBED_COLUMNS, "error"]

    def __call__(self, pixel_values: torch.Tensor) -> list[dict[str, Any] | str]:
        with torch.inference_mode():
            features = self.forward(pixel_values).float()
        finite = torch.isfinite(features).all(dim=-1).tolist()
        if self.normalize:
            features = F.normalize(features, dim=-1)
        return [{"embedding": row} if ok else NON_FINITE_FEATURES for ok, row in zip(finite, features.tolist())]


@dataclass(frozen=True)
class JobSpec:
    """A ``predict`` or ``embed`` job: the model and how to run it (plain data: picklable, for Ray actors).

    Args:
        kind: ``"predict"`` (top-k classes) or ``"embed"`` (pooled features).
        model: Model folder or hub id; ``hub``: ``from_pretrained``'s hub options.
        top_k, logits: ``predict``: classes per image (capped at ``num_labels``), add the raw logits.
        normalize: ``embed``: L2-normalize each embedding.
        optimize: Use the fast path (``predict``: :func:`~swiftformer.inference.optimize_for_inference` with
            ``precision``, ``backend``, ``compile``; ``embed``: :class:`FusedFeatures`, fp32). False: the model
            as loaded (eager fp32).
    """

    kind: Literal["predict", "embed"]
    model: str
    hub: dict[str, Any] = field(default_factory=dict)
    top_k: int = 5
    logits: bool = False
    normalize: bool = False
    optimize: bool = True
    precision: str = "auto"
    backend: str = "auto"
    compile: bool = False

    @property
    def columns(self) -> list[str]:
        """The output's columns (known without loading the model)."""
        if self.kind == "embed":
            return [*EMBED_COLUMNS, "error"]
        return [*PREDICT_COLUMNS, *(["logits"] if self.logits else []), "error"]

    def load(self) -> tuple[SwiftFormerForImageClassification, SwiftFormerImageProcessor, list[str]]:
        """(model in eval mode, processor, notes to show the user)."""
        model = SwiftFormerForImageClassification.from_pretrained(self.model, **self.hub).eval()
        processor, note = load_processor(self.model, **self.hub)
        return model, processor, [note] if note else []

    def build(self, model: SwiftFormerForImageClassification | None = None) -> tuple[Any, Any, list[str]]:
        """(task, processor, notes): the model loaded (or ``model``) and wrapped for this job. The notes say
        what the user should know (a missing preprocessor; which precision and backend run, and why)."""
        processor = None
        notes: list[str] = []
        if model is None:
            model, processor, notes = self.load()
        else:
            processor, note = load_processor(self.model, **self.hub)
            notes = [note] if note else []
        if self.kind == "embed":
            return EmbedTask(self.embedder(model), self.normalize), processor, notes
        forward: Callable[[torch.Tensor], torch.Tensor]
        if self.optimize:
            fast = optimize_for_inference(model, self.precision, compile=self.compile, backend=self.backend)
            notes.append(fast.reason)
            forward = fast
        else:
            forward = lambda x: model(x).logits  # noqa: E731
        top_k = max(1, min(self.top_k, model.config.num_labels))
        return ClassifyTask(forward, model.config.id2label, top_k, self.logits), processor, notes

    def embedder(self, model: SwiftFormerForImageClassification) -> Any:
        """``pixel_values -> (B, embed_dims[-1])`` for this job: :class:`FusedFeatures` on the fast path (a model
        with classification heads), :func:`image_features` otherwise."""
        if self.optimize and model.config.num_labels > 0:
            return FusedFeatures(model).eval()
        return lambda x: image_features(model, x)
