"""The architecture a state dict holds, read from its tensor shapes; names of the published variants.

Used to convert foreign checkpoints (nothing but the tensors says what network they are) and to tell
a user, when weights do not fit a model, what the file holds instead.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..configuration import VARIANTS, SwiftFormerConfig
from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch

BASE_PREFIX = "swiftformer."  # the base model's keys inside a classifier (transformers' base_model_prefix)


def _mlp_ratio(pairs: list[tuple[int, int]]) -> float:
    """The ratio r with ``int(dim * r) == hidden`` for every (dim, hidden) pair (as the models size
    their MLPs); an integer when one fits."""
    candidates = []
    for dim, hidden in sorted(pairs, reverse=True):
        candidates += [round(hidden / dim), round(hidden / dim, 6), hidden / dim]
    for ratio in candidates:
        if ratio > 0 and all(int(dim * ratio) == hidden for dim, hidden in pairs):
            return ratio
    return candidates[0] if candidates else 4  # inconsistent: the shape check lists the mismatches


def imagenet_labels() -> dict[int, str] | None:
    """ImageNet-1k class names (``0: "tench, Tinca tinca"``, as the hub configs), from timm if installed."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return None
    info = ImageNetInfo()
    return {i: info.index_to_description(i) for i in range(info.num_classes())}


def infer_config(state_dict: dict[str, torch.Tensor], **fields) -> SwiftFormerConfig:
    """The config of a state dict with our key names, read from its shapes; ``fields`` set the rest
    (e.g. ``attention_variant``). 1000 classes get the ImageNet-1k labels when timm is installed.

    Raises:
        CheckpointError: the stem or the stages cannot be found at all.
    """
    stem = state_dict.get(f"{BASE_PREFIX}patch_embed.patch_embedding.0.weight")
    blocks: dict[int, set[int]] = {}
    embeddings: dict[int, torch.Tensor] = {}
    widths: dict[int, int] = {}
    hidden: list[tuple[int, int]] = []
    for key, value in state_dict.items():
        if m := re.fullmatch(rf"{re.escape(BASE_PREFIX)}encoder\.network\.(\d+)\.blocks\.(\d+)\.(.+)", key):
            j, rest = int(m[1]), m[3]
            blocks.setdefault(j, set()).add(int(m[2]))
            if rest.endswith("depth_wise_conv.weight"):
                widths[j] = value.shape[0]
            if rest in ("point_wise_conv1.weight", "linear.fc1.weight") and value.ndim == 4:
                hidden.append((value.shape[1], value.shape[0]))
        elif m := re.fullmatch(rf"{re.escape(BASE_PREFIX)}encoder\.network\.(\d+)\.proj\.weight", key):
            embeddings[int(m[1])] = value
    if stem is None or stem.ndim != 4 or not blocks:
        raise CheckpointError(
            "Cannot read the architecture: the checkpoint has no stem convolution "
            f"({BASE_PREFIX}patch_embed.patch_embedding.0.weight / patch_embed.0.weight / stem.0.weight) or no stage blocks."
        )

    stages = sorted(blocks)
    depths = [max(blocks[j]) + 1 for j in stages]
    embed_dims = [widths.get(j, 0) for j in stages]
    first_width = state_dict.get(f"{BASE_PREFIX}patch_embed.patch_embedding.3.weight")
    if embed_dims[0] == 0 and first_width is not None:
        embed_dims[0] = first_width.shape[0]
    for i, width in enumerate(embed_dims):  # a stage without any depth-wise conv: take the incoming width
        if width == 0:
            embed_dims[i] = embed_dims[i - 1] if i else stem.shape[0] * 2
    # Our network has stage, [downsample], stage, ...: downsamples[i] says whether one follows stage i.
    downsamples = [stages[i] + 1 in embeddings for i in range(len(stages) - 1)] + [True]
    kernel = next(iter(embeddings.values())).shape[-1] if embeddings else 3

    config = {
        "num_channels": stem.shape[1],
        "depths": depths,
        "embed_dims": embed_dims,
        "mlp_ratio": _mlp_ratio(hidden),
        "downsamples": downsamples,
        "down_patch_size": kernel,
        "down_stride": 2,
        "down_pad": kernel // 2,
        "use_layer_scale": any(k.endswith(".layer_scale_1") for k in state_dict),
    }
    head = state_dict.get("head.weight")
    num_labels = head.shape[0] if head is not None and head.ndim == 2 else 0
    labels = imagenet_labels() if num_labels == 1000 else None
    if labels is not None:
        config["id2label"] = labels
    else:
        config["num_labels"] = num_labels
    return SwiftFormerConfig(**{**config, **fields})


def variant_of(config: SwiftFormerConfig) -> str | None:
    """``"xs"``, ``"s"``, ``"l1"`` or ``"l3"`` when the architecture is a published one, else None."""
    for name, spec in VARIANTS.items():
        if config.depths == spec["depths"] and config.embed_dims == spec["embed_dims"] and config.mlp_ratio == 4:
            return name
    return None


def describe_architecture(config: SwiftFormerConfig) -> str:
    """E.g. ``"SwiftFormer-XS (depths 3-3-6-4, widths 48-56-112-220)"``."""
    name = variant_of(config)
    shape = f"depths {'-'.join(map(str, config.depths))}, widths {'-'.join(map(str, config.embed_dims))}"
    if config.mlp_ratio != 4:
        shape += f", mlp_ratio {config.mlp_ratio:g}"
    return f"SwiftFormer-{name.upper()} ({shape})" if name else f"custom ({shape})"
