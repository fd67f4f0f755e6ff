"""Key layouts of SwiftFormer checkpoints from the original repository, timm and transformers, and their reading.

Three key layouts are recognized (:func:`detect_format`), all holding the same network:

================  ===================================================  =================================
format            keys                                                 attention variant
================  ===================================================  =================================
``original``      ``patch_embed.0.weight``, ``network.0.0.dwconv.*``,  ``l2`` by default (see below)
                  ``network.0.2.attn.Proj.*``, ``dist_head.*``
``timm``          ``stem.0.weight``, ``stages.0.blocks.0.dwconv.*``,    ``l2``
                  ``stages.1.downsample.proj.*``, ``head_dist.*``
``transformers``  ``swiftformer.patch_embed.patch_embedding.0.*``      ``config.json``'s, else
                  (this library's and transformers' own names)         ``softmax`` (transformers')
================  ===================================================  =================================

The original repository (``Amshaker/SwiftFormer``) had two releases whose checkpoints have the same
keys and shapes but were trained with different attention: the first (March 2023) applied a softmax
over a size-1 axis (our ``"softmax"`` variant, as transformers), the second (July 2023, the files its
README links today) L2-normalizes the token weights (``"l2"``). Nothing in a state dict tells them
apart, so original checkpoints are converted as ``"l2"`` unless ``attention_variant="softmax"`` is
passed for a first-release file. timm follows the second release and computes exactly our ``"l2"``
maths (same normalizations, scale ``1/sqrt(C)``, ``(C, 1, 1)`` layer scales, final BatchNorm, mean of
the two heads in eval), so its tensors are renamed, never changed.

Everything else is read from the tensors: the number of stages and blocks (``depths``), the widths
(``embed_dims``), the MLP ratio (from the hidden width of the MLPs), the downsampling layers and their
kernel, ``num_labels``, and whether the blocks have layer scales. Conversion maps every key or fails
with one :class:`~swiftformer.errors.CheckpointError` listing the keys that did not map and the ones
that are missing::

    from swiftformer.convert import convert_checkpoint
    convert_checkpoint("SwiftFormer_XS_ckpt.pth", "swiftformer-xs")     # then from_pretrained("swiftformer-xs")
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .architecture import BASE_PREFIX
from .checkpoints import _PICKLE_SUFFIXES, find_weights_file, read_checkpoint, unwrap_checkpoint

if TYPE_CHECKING:
    import torch

FORMATS = ("original", "timm", "transformers")

FORMAT_NAMES = {
    "original": "original repository (Amshaker/SwiftFormer)",
    "timm": "timm (swiftformer_*)",
    "transformers": "transformers / swiftformer (native keys)",
}

# The attention each source computes when nothing else says (see the module docstring).
DEFAULT_ATTENTION_VARIANTS = {"original": "l2", "timm": "l2", "transformers": "softmax"}

# Evaluation preprocessing of each source, as SwiftFormerImageProcessor fields (ImageNet mean/std, the
# processor's defaults). timm: pretrained_cfg of swiftformer_* (224, crop_pct 0.95, bicubic). Original
# repository: util/datasets.py build_transform, which main.py --eval uses: Resize(256) bicubic +
# CenterCrop(224), i.e. crop_pct 224/256.
SOURCE_PREPROCESSING: dict[str, dict[str, Any]] = {
    "timm": {"size": {"shortest_edge": 224}, "crop_pct": 0.95, "resample": "bicubic"},
    "original": {"size": {"shortest_edge": 224}, "crop_pct": 0.875, "resample": "bicubic"},
}

# Sub-module renames inside blocks: original/timm name → ours (transformers').
_BLOCK_RENAMES = (
    (r"\.dwconv\.", ".depth_wise_conv."),
    (r"\.pwconv1\.", ".point_wise_conv1."),
    (r"\.pwconv2\.", ".point_wise_conv2."),
    (r"\.attn\.Proj\.", ".attn.proj."),
    (r"\.(layer_scale(?:_[12])?)\.gamma$", r".\1"),  # timm's LayerScale2d holds the (C, 1, 1) tensor as .gamma
)
_HEAD_KEY = re.compile(r"(norm|head|dist_head)\.(weight|bias|running_mean|running_var|num_batches_tracked)")


def _weights_in_folder(folder: Path) -> Path:
    """``model.safetensors`` / ``pytorch_model.bin``, else the folder's only weights file."""
    with contextlib.suppress(FileNotFoundError):
        return find_weights_file(folder)
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in (*_PICKLE_SUFFIXES, ".safetensors")]
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise FileNotFoundError(
            f"{folder} has no model.safetensors or pytorch_model.bin, and not exactly one other "
            f"weights file (.safetensors, .pth, .pt, .bin, .ckpt) to convert: found {found}."
        )
    return files[0]


def load_checkpoint(
    src: str | os.PathLike, ema: bool = False
) -> tuple[dict[str, torch.Tensor], str | os.PathLike | None]:
    """Read the state dict of a file (``.pth``/``.pt``/``.bin``/``.ckpt`` pickle or ``.safetensors``), a
    folder or a hub id. Returns it with the folder or hub id, if any (where ``config.json`` may be).

    Pickles are opened with ``torch.load(weights_only=True)`` only: nothing in them runs.
    """
    path = Path(os.path.expanduser(os.fspath(src)))
    folder: str | os.PathLike | None = None
    if path.is_dir():
        folder, path = path, _weights_in_folder(path)
    elif not path.exists():
        path, folder = find_weights_file(src), src  # a hub id (or a clear FileNotFoundError)
    return unwrap_checkpoint(read_checkpoint(path), ema=ema, source=str(path)), folder


def _format_of_key(key: str) -> str | None:
    if key.startswith((BASE_PREFIX, "patch_embed.patch_embedding.", "encoder.network.")):
        return "transformers"
    if key.startswith(("stem.", "stages.", "head_dist.")):
        return "timm"
    if key.startswith(("patch_embed.", "network.", "dist_head.")):
        return "original"
    return None


def detect_format(state_dict: dict[str, torch.Tensor]) -> str:
    """``"original"``, ``"timm"`` or ``"transformers"``, from the key names (the most common wins).

    Raises:
        CheckpointError: no key looks like any of them.
    """
    counts = dict.fromkeys(FORMATS, 0)
    for key in state_dict:
        fmt = _format_of_key(key)
        if fmt is not None:
            counts[fmt] += 1
    best = max(FORMATS, key=lambda fmt: counts[fmt])
    if counts[best] == 0:
        sample = ", ".join(list(state_dict)[:8]) or "(empty)"
        raise CheckpointError(
            "Not a SwiftFormer checkpoint: no key of the original repository (patch_embed.0.*, network.*), "
            f"timm (stem.*, stages.*) or transformers (swiftformer.*) layout. First keys: {sample}"
        )
    return best


def _rename_block(rest: str) -> str:
    rest = "." + rest
    for pattern, replacement in _BLOCK_RENAMES:
        rest = re.sub(pattern, replacement, rest)
    return rest[1:]


def _original_key(key: str) -> str | None:
    """Original repository name → ours. ``network`` is laid out as ours already: each stage (a Sequential
    of blocks), then the downsampling ``Embedding`` (``proj``, ``norm``) to the next stage, if any."""
    if m := re.fullmatch(r"patch_embed\.(\d+)\.(\w+)", key):
        return f"{BASE_PREFIX}patch_embed.patch_embedding.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"network\.(\d+)\.(\d+)\.(.+)", key):
        return f"{BASE_PREFIX}encoder.network.{m[1]}.blocks.{m[2]}.{_rename_block(m[3])}"
    if m := re.fullmatch(r"network\.(\d+)\.((?:proj|norm)\.\w+)", key):
        return f"{BASE_PREFIX}encoder.network.{m[1]}.{m[2]}"
    if _HEAD_KEY.fullmatch(key):
        return key
    return None


def _timm_network_indices(keys: list[str]) -> tuple[dict[int, int], dict[int, int]]:
    """Our ``encoder.network`` index of each timm stage, and of each timm ``stages.i.downsample``.

    timm puts the downsampling at the start of stage i (i >= 1); we keep it as its own entry between
    stage i - 1 and stage i. A stage-0 downsample (from the stem) has no counterpart, so it stays unmapped.
    """
    stages = sorted({int(m[1]) for k in keys if (m := re.match(r"stages\.(\d+)\.", k))})
    downsampled = {int(m[1]) for k in keys if (m := re.match(r"stages\.(\d+)\.downsample\.", k))}
    stage_index, downsample_index, position = {}, {}, 0
    for i in range(stages[-1] + 1 if stages else 0):
        if i in downsampled and i > 0:
            downsample_index[i] = position
            position += 1
        stage_index[i] = position
        position += 1
    return stage_index, downsample_index


def _timm_key(key: str, stage_index: dict[int, int], downsample_index: dict[int, int]) -> str | None:
    if m := re.fullmatch(r"stem\.(\d+)\.(\w+)", key):
        return f"{BASE_PREFIX}patch_embed.patch_embedding.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", key):
        return f"{BASE_PREFIX}encoder.network.{stage_index[int(m[1])]}.blocks.{m[2]}.{_rename_block(m[3])}"
    if (m := re.fullmatch(r"stages\.(\d+)\.downsample\.((?:proj|norm)\.\w+)", key)) and int(m[1]) in downsample_index:
        return f"{BASE_PREFIX}encoder.network.{downsample_index[int(m[1])]}.{m[2]}"
    if key.startswith("head_dist."):
        key = "dist_head." + key.removeprefix("head_dist.")
    if _HEAD_KEY.fullmatch(key):
        return key
    return None


def _native_key(key: str) -> str | None:
    if key.startswith(BASE_PREFIX) or _HEAD_KEY.fullmatch(key):
        return key
    if key.startswith(("patch_embed.", "encoder.")):  # a base model's keys (SwiftFormerModel)
        return BASE_PREFIX + key
    return None


def rename_keys(
    state_dict: dict[str, torch.Tensor], fmt: str
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Rename a ``fmt`` state dict to our (classifier) key names; tensors are shared, not copied.

    Returns ``(renamed, sources, unmapped)``: the renamed tensors, our name → the source's name, and
    the source keys that match no rule.
    """
    if fmt == "timm":
        indices = _timm_network_indices(list(state_dict))

        def to_ours(key: str) -> str | None:
            return _timm_key(key, *indices)

    elif fmt == "original":
        to_ours = _original_key
    elif fmt == "transformers":
        to_ours = _native_key
    else:
        raise ValueError(f"Unknown checkpoint format {fmt!r}; expected one of {', '.join(FORMATS)}")
    renamed, sources, unmapped = {}, {}, []
    for key, value in state_dict.items():
        new = to_ours(key)
        if new is None or new in renamed:
            unmapped.append(key)
        else:
            renamed[new], sources[new] = value, key
    return renamed, sources, unmapped
