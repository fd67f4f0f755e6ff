"""Output containers with transformers' names and access patterns.

As transformers' ``ModelOutput``, each output is a dataclass and an ``OrderedDict`` of its fields that are not
``None``, in field order: ``out.logits``, ``out["logits"]``, ``out[0]`` (the first field that is not ``None``),
``out.to_tuple()``, ``dict(out)``, ``**out`` and ``isinstance(out, dict)`` all work, so code that walks mappings
(transformers' Trainer and tests, accelerate's device helpers) sees them as transformers' own. They hold
framework tensors of any kind, so the Keras models use them too. The PyTorch and Keras tree registrations
(``torch.export``, JAX, Keras' ``predict``) are in :mod:`swiftformer.modeling_utils` and
:mod:`swiftformer.keras.models`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, NoReturn


@dataclass
class ModelOutput(OrderedDict):
    """Base of the output dataclasses: attribute, key and index access; ``None`` fields are not keys.

    The attributes are the truth and the mapping follows them: setting a field (``out.loss = x`` or
    ``out["loss"] = x``) sets both and keeps the keys in field order; setting it to ``None`` removes the key.
    Keys are field names only, and the dict methods that would bypass the fields (``pop``, ``popitem``,
    ``setdefault``, ``update``, ``clear``, ``del out[k]``) raise ``TypeError``.

    Besides the fields as arguments, a class can be built as a ``dict`` is, from one mapping or one iterator
    of ``(name, value)`` pairs: ``type(out)(out)``, ``type(out)({"logits": x})``, ``type(out)(gen)``. Code
    that rebuilds mappings does so (``out.copy()``, accelerate, ``tf.nest`` and dm-tree).
    """

    def __post_init__(self) -> None:
        # The generated __init__ has set every field through __setattr__, so the mapping is complete; what is
        # left is the dict-like call: one mapping or one iterator of pairs in place of the first field.
        names = list(self.__dataclass_fields__)
        first = getattr(self, names[0]) if names else None
        if not isinstance(first, (Mapping, Iterator)) or any(getattr(self, n) is not None for n in names[1:]):
            return
        pairs = list(first.items() if isinstance(first, Mapping) else first)
        setattr(self, names[0], None)
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"{type(self).__name__} takes (name, value) pairs, got {type(pair).__name__}")
            self[pair[0]] = pair[1]

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name not in self.__dataclass_fields__:
            return
        if value is None:
            super().pop(name, None)
            return
        present = name in self
        super().__setitem__(name, value)  # a known key keeps its place; a new one goes last, then is moved
        if not present:
            names = list(self.__dataclass_fields__)
            for later in names[names.index(name) + 1 :]:
                if later in self:
                    self.move_to_end(later)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.__dataclass_fields__:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)  # KeyError for a field that is None, as in transformers
        return self.to_tuple()[key]

    def to_tuple(self) -> tuple[Any, ...]:
        """The values of the fields that are not ``None``, in field order."""
        return tuple(self.values())

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the fields (pickle, copy, deepcopy), not by OrderedDict's empty-then-fill protocol.
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__}'s keys are its fields that are not None: set a field instead")

    __delitem__ = pop = popitem = setdefault = update = clear = _refuse


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


@dataclass
class SemanticSegmenterOutput(ModelOutput):
    """Output of :class:`~swiftformer.SwiftFormerForSemanticSegmentation` (transformers' fields).

    Attributes:
        loss: Scalar cross-entropy over the labelled pixels when ``labels`` were given (pixels equal to
            ``config.semantic_loss_ignore_index`` are left out).
        logits: (B, num_labels, H, W), the class scores **at the input's resolution** (the head's 1/4-scale
            scores bilinearly upsampled), unlike transformers' segmenters, which return them at 1/4 scale.
        hidden_states: When requested, as in :class:`BaseModelOutputWithNoAttention`.
    """

    loss: Any = None
    logits: Any = None
    hidden_states: tuple[Any, ...] | None = None
