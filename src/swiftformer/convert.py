"""Convert SwiftFormer checkpoints of the original repository and of timm into model folders.

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
with one :class:`~swiftformer.hub.CheckpointError` listing the keys that did not map and the ones
that are missing::

    from swiftformer.convert import convert_checkpoint
    convert_checkpoint("SwiftFormer_XS_ckpt.pth", "swiftformer-xs")     # then from_pretrained("swiftformer-xs")
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configuration import VARIANTS, SwiftFormerConfig
from .hub import CONFIG_NAME, PREPROCESSOR_NAME, CheckpointError, resolve_file
from .image_processing import SwiftFormerImageProcessor
from .weights import find_weights_file, load_state_dict_file

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
SOURCE_PREPROCESSING = {
    "timm": {"size": {"shortest_edge": 224}, "crop_pct": 0.95, "resample": "bicubic"},
    "original": {"size": {"shortest_edge": 224}, "crop_pct": 0.875, "resample": "bicubic"},
}

_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPERS = ("model", "state_dict", "model_state_dict", "module")  # training scripts' checkpoint dicts
_EMA_WRAPPERS = ("model_ema", "state_dict_ema", "ema")  # DeiT/original main.py, timm train.py

# Sub-module renames inside blocks: original/timm name → ours (transformers').
_BLOCK_RENAMES = (
    (r"\.dwconv\.", ".depth_wise_conv."),
    (r"\.pwconv1\.", ".point_wise_conv1."),
    (r"\.pwconv2\.", ".point_wise_conv2."),
    (r"\.attn\.Proj\.", ".attn.proj."),
    (r"\.(layer_scale(?:_[12])?)\.gamma$", r".\1"),  # timm's LayerScale2d holds the (C, 1, 1) tensor as .gamma
)
_HEAD_KEY = re.compile(r"(norm|head|dist_head)\.(weight|bias|running_mean|running_var|num_batches_tracked)")
_PREFIX = "swiftformer."


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


# ---------------------------------------------------------------------------------------------------
# Reading sources
# ---------------------------------------------------------------------------------------------------


def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)``; also lets through the ``argparse.Namespace`` that training
    scripts (the original ``main.py``, timm's ``train.py``) store as ``args``: plain data, no code."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allow_args = safe_globals([argparse.Namespace]) if safe_globals else contextlib.nullcontext()
    try:
        with allow_args:
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - let the library's loader classify and explain the failure
        return load_state_dict_file(path)


def _is_state_dict(value: object) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def unwrap_checkpoint(data: object, ema: bool = False, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: the checkpoint itself, or its ``model`` /
    ``state_dict`` / ... entry (``model_ema`` / ``state_dict_ema`` with ``ema=True``, or when it is the
    only one). A DDP ``module.`` prefix is removed."""
    if _is_state_dict(data) and not ema:
        state_dict = data
    elif isinstance(data, dict):
        order = _EMA_WRAPPERS + _WRAPPERS if ema else _WRAPPERS + _EMA_WRAPPERS
        found = [key for key in order if _is_state_dict(data.get(key))]
        if ema and not any(key in _EMA_WRAPPERS for key in found):
            entries = (
                "it is a plain state dict" if _is_state_dict(data) else f"its entries are {sorted(map(str, data))}"
            )
            raise CheckpointError(f"{source} holds no EMA weights (none of {', '.join(_EMA_WRAPPERS)}); {entries}.")
        if not found:
            raise CheckpointError(
                f"{source} holds no state dict: expected a mapping of names to tensors, or one "
                f"under {', '.join(_WRAPPERS + _EMA_WRAPPERS)}; found entries {sorted(map(str, data))[:20]}."
            )
        state_dict = data[found[0]]
    else:
        raise CheckpointError(f"{source} does not hold a state dict (found a {type(data).__name__}).")
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


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
    folder = None
    if path.is_dir():
        folder, path = path, _weights_in_folder(path)
    elif not path.exists():
        path, folder = find_weights_file(src), src  # a hub id (or a clear FileNotFoundError)
    if path.suffix == ".safetensors":
        return unwrap_checkpoint(load_state_dict_file(path), ema=ema, source=str(path)), folder
    return unwrap_checkpoint(_torch_load(path), ema=ema, source=str(path)), folder


# ---------------------------------------------------------------------------------------------------
# Key mapping
# ---------------------------------------------------------------------------------------------------


def _format_of_key(key: str) -> str | None:
    if key.startswith((_PREFIX, "patch_embed.patch_embedding.", "encoder.network.")):
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
    counts = {fmt: 0 for fmt in FORMATS}
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
        return f"{_PREFIX}patch_embed.patch_embedding.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"network\.(\d+)\.(\d+)\.(.+)", key):
        return f"{_PREFIX}encoder.network.{m[1]}.blocks.{m[2]}.{_rename_block(m[3])}"
    if m := re.fullmatch(r"network\.(\d+)\.((?:proj|norm)\.\w+)", key):
        return f"{_PREFIX}encoder.network.{m[1]}.{m[2]}"
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
        return f"{_PREFIX}patch_embed.patch_embedding.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", key):
        return f"{_PREFIX}encoder.network.{stage_index[int(m[1])]}.blocks.{m[2]}.{_rename_block(m[3])}"
    if (m := re.fullmatch(r"stages\.(\d+)\.downsample\.((?:proj|norm)\.\w+)", key)) and int(m[1]) in downsample_index:
        return f"{_PREFIX}encoder.network.{downsample_index[int(m[1])]}.{m[2]}"
    if key.startswith("head_dist."):
        key = "dist_head." + key.removeprefix("head_dist.")
    if _HEAD_KEY.fullmatch(key):
        return key
    return None


def _native_key(key: str) -> str | None:
    if key.startswith(_PREFIX) or _HEAD_KEY.fullmatch(key):
        return key
    if key.startswith(("patch_embed.", "encoder.")):  # a base model's keys (SwiftFormerModel)
        return _PREFIX + key
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
        to_ours = lambda key: _timm_key(key, *indices)
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


# ---------------------------------------------------------------------------------------------------
# Config from shapes
# ---------------------------------------------------------------------------------------------------


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
    stem = state_dict.get(f"{_PREFIX}patch_embed.patch_embedding.0.weight")
    blocks: dict[int, set[int]] = {}
    embeddings: dict[int, torch.Tensor] = {}
    widths: dict[int, int] = {}
    hidden: list[tuple[int, int]] = []
    for key, value in state_dict.items():
        if m := re.fullmatch(rf"{re.escape(_PREFIX)}encoder\.network\.(\d+)\.blocks\.(\d+)\.(.+)", key):
            j, rest = int(m[1]), m[3]
            blocks.setdefault(j, set()).add(int(m[2]))
            if rest.endswith("depth_wise_conv.weight"):
                widths[j] = value.shape[0]
            if rest in ("point_wise_conv1.weight", "linear.fc1.weight") and value.ndim == 4:
                hidden.append((value.shape[1], value.shape[0]))
        elif m := re.fullmatch(rf"{re.escape(_PREFIX)}encoder\.network\.(\d+)\.proj\.weight", key):
            embeddings[int(m[1])] = value
    if stem is None or stem.ndim != 4 or not blocks:
        raise CheckpointError(
            "Cannot read the architecture: the checkpoint has no stem convolution "
            f"({_PREFIX}patch_embed.patch_embedding.0.weight / patch_embed.0.weight / stem.0.weight) or no stage blocks."
        )

    stages = sorted(blocks)
    depths = [max(blocks[j]) + 1 for j in stages]
    embed_dims = [widths.get(j, 0) for j in stages]
    first_width = state_dict.get(f"{_PREFIX}patch_embed.patch_embedding.3.weight")
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


# ---------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------


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
    from .modeling import SwiftFormerForImageClassification, SwiftFormerModel

    fmt = fmt or detect_format(state_dict)
    notes = [] if notes is None else notes
    renamed, sources, unmapped = rename_keys(state_dict, fmt)
    if config is None:
        chosen = attention_variant or DEFAULT_ATTENTION_VARIANTS[fmt]
        config = infer_config(renamed, attention_variant=chosen)
    elif attention_variant is not None:
        config = SwiftFormerConfig.from_dict(config.to_dict(), attention_variant=attention_variant)
    if variant is not None:
        key = variant.lower().replace("swiftformer", "").strip("-_ ")
        if key not in VARIANTS:
            raise ValueError(f"Unknown SwiftFormer variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if variant_of(config) != key:
            requested = describe_architecture(SwiftFormerConfig.from_variant(key))
            raise CheckpointError(f"The checkpoint is {describe_architecture(config)}, not {requested} as requested.")

    backbone_only = not any(k.startswith(("norm.", "head.", "dist_head.")) for k in renamed)
    with torch.device("meta"):  # names and shapes only
        model = SwiftFormerModel(config) if backbone_only else SwiftFormerForImageClassification(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if backbone_only:  # SwiftFormerModel's keys carry no prefix
        renamed = {k.removeprefix(_PREFIX): v for k, v in renamed.items()}
        sources = {k.removeprefix(_PREFIX): v for k, v in sources.items()}

    if "dist_head.weight" in expected and "dist_head.weight" not in renamed and "head.weight" in renamed:
        # Trained without distillation: logits = head; (head + head) / 2 is exactly that.
        renamed["dist_head.weight"], renamed["dist_head.bias"] = renamed["head.weight"], renamed.get("head.bias")
        notes.append("the source has no distillation head; dist_head is a copy of head (same logits)")
    if not config.use_layer_scale:  # timm drops the conv blocks' layer scales then; ours are fixed ones
        filled = [k for k in expected if k.endswith(".layer_scale") and k not in renamed]
        for key in filled:
            renamed[key] = torch.ones(expected[key])
        if filled:
            notes.append(f"{len(filled)} conv-block layer scales absent from the source were set to 1")

    optional = lambda key: key.endswith("num_batches_tracked")
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
) -> ConversionResult:
    """Convert a checkpoint of the original repository, timm or transformers into a model folder.

    Args:
        src: A ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors`` file (a bare state dict or a
            training checkpoint with a ``model``/``state_dict``/... entry), a folder, or a hub id.
        output_dir: Folder to write ``config.json``, ``model.safetensors`` and
            ``preprocessor_config.json`` into (created if needed; each file is written atomically).
        attention_variant: ``"softmax"`` or ``"l2"``. Default: ``"l2"`` for original-repository
            checkpoints (the current release; pass ``"softmax"`` for first-release files of March 2023)
            and timm; a native folder's ``config.json`` value, else ``"softmax"``.
        variant: ``"xs"``, ``"s"``, ``"l1"`` or ``"l3"`` to require that architecture (it is always
            read from the shapes).
        ema: Take the EMA weights (``model_ema`` / ``state_dict_ema``) of a training checkpoint.
        safe_serialization: Write ``model.safetensors`` (default) or ``pytorch_model.bin``.

    Returns:
        A :class:`ConversionResult` (``output_dir``, detected format, variant, config, notes).

    Raises:
        CheckpointError: unknown or partial state dicts (listing the keys that did not map and the
            missing ones), corrupt files, or an architecture other than ``variant``.
        FileNotFoundError / OSError: ``src`` cannot be found or read.
    """
    from .modeling import SwiftFormerForImageClassification, SwiftFormerModel

    state_dict, folder = load_checkpoint(src, ema=ema)
    fmt = detect_format(state_dict)
    folder_config, processor, notes = None, None, []
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
    our_state_dict = {k: v.float() if v.is_floating_point() else v for k, v in our_state_dict.items()}
    model.load_state_dict(our_state_dict, strict=True, assign=True)
    model.save_pretrained(output_dir, safe_serialization=safe_serialization)
    processor.save_pretrained(output_dir)
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
