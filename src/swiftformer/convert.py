"""Convert SwiftFormer checkpoints of the original repository, timm or transformers into model folders.

The key layouts and how each is recognized are in :mod:`swiftformer.io.foreign`; the architecture is
read from the tensor shapes (:mod:`swiftformer.io.architecture`). This module checks the renamed
tensors against the model they are for and writes a normal model folder::

    from swiftformer.convert import convert_checkpoint
    convert_checkpoint("SwiftFormer_XS_ckpt.pth", "swiftformer-xs")     # then from_pretrained("swiftformer-xs")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configuration import SwiftFormerConfig, variant_key
from .errors import CheckpointError
from .image_processing import SwiftFormerImageProcessor
from .io.architecture import BASE_PREFIX, describe_architecture, imagenet_labels, infer_config, variant_of
from .io.checkpoints import refuse_integer_weights, unwrap_checkpoint
from .io.files import check_target, staging
from .io.foreign import (
    DEFAULT_ATTENTION_VARIANTS,
    FORMAT_NAMES,
    FORMATS,
    SOURCE_PREPROCESSING,
    detect_format,
    load_checkpoint,
    rename_keys,
)
from .io.hub import CONFIG_NAME, PREPROCESSOR_NAME, resolve_file
from .modeling import SwiftFormerForImageClassification, SwiftFormerModel

__all__ = [
    "DEFAULT_ATTENTION_VARIANTS",
    "FORMATS",
    "FORMAT_NAMES",
    "SOURCE_PREPROCESSING",
    "ConversionResult",
    "convert_checkpoint",
    "convert_state_dict",
    "describe_architecture",
    "detect_format",
    "imagenet_labels",
    "infer_config",
    "load_checkpoint",
    "rename_keys",
    "unwrap_checkpoint",
    "variant_of",
]


@dataclass
class ConversionResult:
    """What :func:`convert_checkpoint` found and wrote."""

    output_dir: Path
    source: str
    source_format: str  # one of FORMATS
    config: SwiftFormerConfig = field(repr=False)
    variant: str | None = None  # "xs", "s", "l1", "l3", or None for another architecture
    attention_source: str = "default"  # "default", "override" or "config.json"
    architecture: str = "SwiftFormerForImageClassification"  # or SwiftFormerModel (backbone checkpoints)
    labels: str = ""  # where the class names came from
    notes: list[str] = field(default_factory=list)

    @property
    def attention_variant(self) -> str:
        return self.config.attention_variant

    @property
    def num_labels(self) -> int:
        return self.config.num_labels


def _listed(what: str, keys: list[str], limit: int = 20) -> str:
    return f"{what} ({len(keys)}): " + ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")


def convert_state_dict(
    state_dict: dict[str, torch.Tensor],
    fmt: str | None = None,
    *,
    attention_variant: str | None = None,
    variant: str | None = None,
    config: SwiftFormerConfig | None = None,
    notes: list[str] | None = None,
) -> tuple[dict[str, torch.Tensor], SwiftFormerConfig]:
    """Map a state dict of any :data:`FORMATS` to ours, with the config it implies.

    Args:
        state_dict: The source tensors (unwrapped: see :func:`unwrap_checkpoint`).
        fmt: The source format; detected from the keys when None.
        attention_variant: ``"softmax"`` or ``"l2"``; default :data:`DEFAULT_ATTENTION_VARIANTS` of the
            format (or ``config``'s).
        variant: ``"xs"``, ``"s"``, ``"l1"`` or ``"l3"`` to require that architecture.
        config: Use this config (e.g. a folder's ``config.json``) instead of reading one from the shapes.
        notes: Where to append remarks on filled-in tensors.

    Returns:
        ``(state_dict, config)``: a complete state dict of ``SwiftFormerForImageClassification(config)``
        (``swiftformer.``-prefixed keys), or of ``SwiftFormerModel(config)`` when the source has no
        final norm and heads (backbone checkpoints).

    Raises:
        CheckpointError: listing the source keys that did not map, the missing keys and shape
            mismatches; or when the architecture is not ``variant``.
    """
    fmt = fmt or detect_format(state_dict)
    notes = [] if notes is None else notes
    renamed, sources, unmapped = rename_keys(state_dict, fmt)
    if config is None:
        chosen = attention_variant or DEFAULT_ATTENTION_VARIANTS[fmt]
        config = infer_config(renamed, attention_variant=chosen)
    elif attention_variant is not None:
        config = SwiftFormerConfig.from_dict(config.to_dict(), attention_variant=attention_variant)
    if variant is not None:
        key = variant_key(variant, strict=True)
        if variant_of(config) != key:
            requested = describe_architecture(SwiftFormerConfig.from_variant(key))
            raise CheckpointError(f"The checkpoint is {describe_architecture(config)}, not {requested} as requested.")

    backbone_only = not any(k.startswith(("norm.", "head.", "dist_head.")) for k in renamed)
    with torch.device("meta"):  # names and shapes only
        model = SwiftFormerModel(config) if backbone_only else SwiftFormerForImageClassification(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if backbone_only:  # SwiftFormerModel's keys carry no prefix
        renamed = {k.removeprefix(BASE_PREFIX): v for k, v in renamed.items()}
        sources = {k.removeprefix(BASE_PREFIX): v for k, v in sources.items()}

    if "dist_head.weight" in expected and "dist_head.weight" not in renamed and "head.weight" in renamed:
        # Trained without distillation: logits = head; (head + head) / 2 is exactly that.
        renamed.update({f"dist_{k}": v for k, v in renamed.items() if k in ("head.weight", "head.bias")})
        notes.append("the source has no distillation head; dist_head is a copy of head (same logits)")
    if not config.use_layer_scale:  # timm drops the conv blocks' layer scales then; ours are fixed ones
        filled = [k for k in expected if k.endswith(".layer_scale") and k not in renamed]
        for key in filled:
            renamed[key] = torch.ones(expected[key])
        if filled:
            notes.append(f"{len(filled)} conv-block layer scales absent from the source were set to 1")

    def optional(key: str) -> bool:  # BatchNorm step counters: unused in eval, absent from some sources
        return key.endswith("num_batches_tracked")

    unexpected = unmapped + [sources[k] for k in renamed if k not in expected and not optional(k)]
    missing = [k for k in expected if renamed.get(k) is None and not optional(k)]
    mismatched = [
        f"{sources.get(k, k)}: {tuple(v.shape)} where {k} needs {expected[k]}"
        for k, v in renamed.items()
        if k in expected and v is not None and tuple(v.shape) != expected[k]
    ]
    if unexpected or missing or mismatched:
        problems = [_listed("keys that did not map", unexpected)] if unexpected else []
        problems += [_listed("missing keys", missing)] if missing else []
        problems += [_listed("shape mismatches", mismatched)] if mismatched else []
        raise CheckpointError(
            f"Cannot convert this {FORMAT_NAMES[fmt]} checkpoint to {type(model).__name__} with "
            f"{describe_architecture(config)}:\n  " + "\n  ".join(problems)
        )
    for key, shape in expected.items():  # BatchNorm step counters the source did not store: unused in eval
        if key not in renamed:
            renamed[key] = torch.zeros(shape, dtype=torch.long)
    return {k: v for k, v in renamed.items() if k in expected}, config


def convert_checkpoint(
    src: str | os.PathLike,
    output_dir: str | os.PathLike,
    attention_variant: str | None = None,
    variant: str | None = None,
    *,
    ema: bool = False,
    safe_serialization: bool = True,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert a checkpoint of the original repository, timm or transformers into a model folder.

    Args:
        src: A ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors`` file (a bare state dict or a
            training checkpoint with a ``model``/``state_dict``/... entry), a folder, or a hub id.
        output_dir: Folder to write ``config.json``, ``model.safetensors`` and
            ``preprocessor_config.json`` into; it must not exist or be empty, unless ``overwrite``. The
            folder is written beside it and moved into place complete.
        attention_variant: ``"softmax"`` or ``"l2"``. Default: ``"l2"`` for original-repository
            checkpoints (the current release; pass ``"softmax"`` for first-release files of March 2023)
            and timm; a native folder's ``config.json`` value, else ``"softmax"``.
        variant: ``"xs"``, ``"s"``, ``"l1"`` or ``"l3"`` to require that architecture (it is always
            read from the shapes).
        ema: Take the EMA weights (``model_ema`` / ``state_dict_ema``) of a training checkpoint.
        safe_serialization: Write ``model.safetensors`` (default) or ``pytorch_model.bin``.
        overwrite: Replace what ``output_dir`` holds (atomically: the old folder goes only once the new
            one is complete).

    Returns:
        A :class:`ConversionResult` (``output_dir``, detected format, variant, config, notes).

    Raises:
        CheckpointError: unknown or partial state dicts (listing the keys that did not map and the
            missing ones), corrupt files, or an architecture other than ``variant``.
        FileNotFoundError / OSError: ``src`` cannot be found or read.
        FileExistsError: ``output_dir`` holds something and ``overwrite`` is false (nothing is read or written).
    """
    check_target(
        output_dir,
        "output folder",
        overwrite,
        hint="pass overwrite=True to replace it, or choose another output_dir",
    )
    state_dict, folder = load_checkpoint(src, ema=ema)
    fmt = detect_format(state_dict)
    folder_config: SwiftFormerConfig | None = None
    processor: SwiftFormerImageProcessor | None = None
    notes: list[str] = []
    if fmt == "transformers" and folder is not None:  # a model folder: keep its config and preprocessing
        if resolve_file(folder, CONFIG_NAME, missing_ok=True) is not None:
            folder_config = SwiftFormerConfig.from_pretrained(folder)
        if resolve_file(folder, PREPROCESSOR_NAME, missing_ok=True) is not None:
            processor = SwiftFormerImageProcessor.from_pretrained(folder)
    our_state_dict, config = convert_state_dict(
        state_dict, fmt, attention_variant=attention_variant, variant=variant, config=folder_config, notes=notes
    )
    if processor is None:
        processor = SwiftFormerImageProcessor(**SOURCE_PREPROCESSING.get(fmt, {}))

    backbone_only = "norm.weight" not in our_state_dict
    model_class = SwiftFormerModel if backbone_only else SwiftFormerForImageClassification
    with torch.device("meta"):  # no weight init: every tensor comes from the checkpoint
        model = model_class(config)
    floating = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    integer = [k for k, v in our_state_dict.items() if k in floating and not v.is_floating_point()]
    refuse_integer_weights(integer, model_class.__name__, os.fspath(src))
    our_state_dict = {k: v.float() if v.is_floating_point() else v for k, v in our_state_dict.items()}
    model.load_state_dict(our_state_dict, strict=True, assign=True)
    with staging(output_dir) as staged:  # complete before it replaces anything
        model.save_pretrained(staged, safe_serialization=safe_serialization)
        processor.save_pretrained(staged)
    return ConversionResult(
        output_dir=Path(output_dir),
        source=os.fspath(src),
        source_format=fmt,
        config=config,
        variant=variant_of(config),
        attention_source="override" if attention_variant else "config.json" if folder_config else "default",
        architecture=model_class.__name__,
        labels=_label_source(config, from_folder=folder_config is not None),
        notes=notes,
    )


def _label_source(config: SwiftFormerConfig, from_folder: bool) -> str:
    if from_folder:
        return "from config.json"
    if all(name == f"LABEL_{i}" for i, name in config.id2label.items()):
        hint = " (install timm for the ImageNet-1k names)" if config.num_labels == 1000 else ""
        return "generic names LABEL_i" + hint
    return "ImageNet-1k names"
