"""Output containers with transformers' names and access patterns.

``out.logits``, ``out["logits"]``, ``out[0]`` (the first field that is not ``None``) and
``out.to_tuple()`` all work, as with transformers' ``ModelOutput``. They hold framework tensors of any
kind, so the Keras models use them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class ModelOutput:
    """Base of the output dataclasses: attribute, key and index access; ``None`` fields are skipped."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


@dataclass
class BaseModelOutputWithNoAttention(ModelOutput):
    """Output of :class:`~swiftformer.SwiftFormerModel`.

    Attributes:
        last_hidden_state: (B, C_last, H/32, W/32) feature map of the last stage (for the default
            four downsampling stages).
        hidden_states: When requested, a tuple of NCHW feature maps: the stem's output, then the output
            of each stage and of each downsampling layer between stages, in order (exactly as
            transformers returns them; 8 entries for four stages).
    """

    last_hidden_state: Any = None
    hidden_states: tuple[Any, ...] | None = None


@dataclass
class ImageClassifierOutputWithNoAttention(ModelOutput):
    """Output of :class:`~swiftformer.SwiftFormerForImageClassification`.

    Attributes:
        loss: Scalar loss when ``labels`` were given.
        logits: (B, num_labels), the mean of the two heads, as in transformers.
        hidden_states: As in :class:`BaseModelOutputWithNoAttention`.
        cls_logits: (B, num_labels) from ``head``, the classification head.
        distillation_logits: (B, num_labels) from ``dist_head``, the distillation head (DeiT-style
            hard distillation trains it against a teacher's predictions).
    """

    loss: Any = None
    logits: Any = None
    hidden_states: tuple[Any, ...] | None = None
    cls_logits: Any = None
    distillation_logits: Any = None


@dataclass
class BackboneOutput(ModelOutput):
    """Output of :class:`~swiftformer.SwiftFormerBackbone` (transformers' ``BackboneOutput`` fields).

    Attributes:
        feature_maps: One NCHW map per entry of ``config.out_features``, in ``stage_names`` order:
            ``"stem"`` and ``"stage1"`` (B, C1, H/4, W/4), ``"stage2"`` (B, C2, H/8, W/8), ``"stage3"``
            (B, C3, H/16, W/16), ``"stage4"`` (B, C4, H/32, W/32) for the default config (each size
            rounded up), after the optional per-map BatchNorm (``config.backbone_norm``).
        hidden_states: When requested, the same tuple as :class:`BaseModelOutputWithNoAttention`'s
            (the stem's output, then every stage and downsampling layer's output; not normalized).
    """

    feature_maps: tuple[Any, ...] | None = None
    hidden_states: tuple[Any, ...] | None = None
