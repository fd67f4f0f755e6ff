"""Where a SwiftFormer classifier looks: class activation maps, and the model's own attention weights.

    from swiftformer import explain
    maps = explain(model, pixel_values, target=None, method="gradcam")   # (B, H, W) in [0, 1]

``maps[i]`` is a heatmap at the input's resolution (any H × W), normalized to [0, 1] per image, for
``target`` (None: each image's top class; a class index or label name; or one per image). Methods
(docs/explain.md):

* ``"gradcam"``, ``"gradcam++"``, ``"eigencam"``, ``"scorecam"``, ``"ablationcam"``: class activation maps
  computed by the ``grad-cam`` package (pytorch-grad-cam, ``pip install .[explain]``) on the output of
  one stage of the backbone, named as :attr:`SwiftFormerBackbone.stage_names` (``"stem"``,
  ``"stage1"`` ... ``"stage4"``); ``layer`` picks it, :data:`DEFAULT_LAYER` by default (Eigen-CAM: stage 2). Every stage
  ends in an additive-attention block whose global query mixes the whole image into each token, so
  the last stage localizes poorly; the default was chosen by the pointing game in docs/explain.md.
  Eigen-CAM is class-agnostic (the first principal component of the activations); Score-CAM and
  Ablation-CAM need no gradients but one forward pass per channel of the layer.
* ``"attention"``: the token weights α of the stage's additive attention (one per spatial position;
  the map is ``|α - mean(α)|``, their departure from average pooling), captured with forward hooks
  and upsampled to the image; by default the mean over every stage. On a plain background they single
  the object out; behind clutter far less reliably than Grad-CAM (docs/explain.md). Only ``"l2"`` attention
  models have them: in the ``"softmax"`` variant (transformers, the hub checkpoints) every weight is
  exactly 1, which is refused with one line rather than shown as a flat map.

Everything runs on the eager :class:`~swiftformer.modeling.SwiftFormerForImageClassification` (a
``torch.compile`` wrapper is unwrapped): the maps need forward hooks on the stage modules and a
backward pass through them, which the fused fast path of :mod:`swiftformer.inference` (BatchNorms
folded, heads merged, inductor graphs frozen for inference) does not have. The model is left as it
was: its train/eval mode, ``requires_grad`` flags and ``.grad`` are restored; parameters get no
gradients. Not thread-safe on one model (hooks are added and removed).

:func:`overlay` draws a map over the image with a colormap and a caption (pillow only);
:func:`model_view` turns ``pixel_values`` back into the picture the model saw.

This module is callable: ``from swiftformer import explain`` gives the module, and calling it calls
:func:`explain` (``from swiftformer.explain import explain`` is the same function).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from .io.files import atomic_write
from .modeling import (
    SwiftFormerBackbone,
    SwiftFormerEfficientAdditiveAttention,
    SwiftFormerForImageClassification,
    SwiftFormerModel,
)
from .modeling_utils import uncompiled

if TYPE_CHECKING:
    from .configuration import SwiftFormerConfig
    from .image_processing import SwiftFormerImageProcessor

__all__ = [
    "CAM_METHODS",
    "DEFAULT_LAYER",
    "METHODS",
    "METHOD_DEFAULT_LAYERS",
    "PER_CHANNEL_METHODS",
    "Explanation",
    "attention_maps",
    "caption_for",
    "check_available",
    "explain",
    "explain_with_scores",
    "label_of",
    "model_view",
    "overlay",
    "resolve_layers",
    "resolve_target",
    "save_overlay",
    "stage_modules",
]

CAM_METHODS = ("gradcam", "gradcam++", "eigencam", "scorecam", "ablationcam")
METHODS = (*CAM_METHODS, "attention")
GRADIENT_METHODS = ("gradcam", "gradcam++")
# One forward pass per channel of the stage (seconds per image, docs/explain.md "Cost"): run image by image, not
# served over HTTP.
PER_CHANNEL_METHODS = ("scorecam", "ablationcam")
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "attention": "attention",
}

# The stage whose output the CAMs are computed on when ``layer`` is not given: the stage that localizes best
# on every model and background in the pointing game (is the heatmap's maximum in the quadrant that holds the
# object?); the figures are the Grad-CAM table of docs/explain.md, "Which stage: the pointing game". Earlier
# stages can fail on some models, and the last is far worse: its tokens have all seen the whole image through
# the attention's global query. A model with fewer stages uses its last.
DEFAULT_LAYER = "stage3"
# Methods whose best stage in that measurement is another: Eigen-CAM (class-agnostic, and the sign of a
# principal component is arbitrary) points away from the object at stage 3 and at it from stage 2 (the
# Grad-CAM++ / Eigen-CAM table of the same section).
METHOD_DEFAULT_LAYERS = {"eigencam": "stage2"}

# Score-CAM / Ablation-CAM: images per forward pass over the masked or ablated copies of one image.
GRADIENT_FREE_BATCH = 16


@dataclass
class Explanation:
    """What :func:`explain_with_scores` returns.

    Attributes:
        maps: (B, H, W) float32 on the CPU, each in [0, 1], at the input's resolution.
        targets: The class each map explains (for ``"attention"``, whose weights do not depend on a
            class, and ``"eigencam"``, which is class-agnostic: the class asked for, or the top class).
        probabilities: (B, num_labels) softmax of the model's logits for the images.
        method: The method used.
        layers: The stage names the maps were computed on (averaged when several).
    """

    maps: torch.Tensor
    targets: list[int]
    probabilities: torch.Tensor
    method: str
    layers: list[str]

    @property
    def scores(self) -> list[float]:
        """The probability of each image's target class."""
        return [float(self.probabilities[i, t]) for i, t in enumerate(self.targets)]


# ---------------------------------------------------------------------------------------------------
# Models, layers and targets
# ---------------------------------------------------------------------------------------------------


def _classifier(model: Any) -> SwiftFormerForImageClassification:
    model = uncompiled(model)
    if isinstance(model, SwiftFormerForImageClassification):
        return model
    raise TypeError(
        "explain needs the eager SwiftFormerForImageClassification (from_pretrained, load_model), got "
        f"{type(model).__name__}: class activation maps hook the stage modules and back-propagate through "
        "them, which the fused/compiled fast path does not have"
    )


def _base_model(model: Any) -> SwiftFormerModel:
    model = uncompiled(model)
    if isinstance(model, (SwiftFormerForImageClassification, SwiftFormerBackbone)):
        return model.swiftformer
    if isinstance(model, SwiftFormerModel):
        return model
    raise TypeError(
        f"expected a SwiftFormer model (classifier, SwiftFormerModel or backbone), got {type(model).__name__}"
    )


def stage_modules(model: Any) -> dict[str, nn.Module]:
    """``{"stem": patch_embed, "stage1": encoder stage 1, ...}``: the modules whose outputs are the maps
    of :class:`~swiftformer.modeling.SwiftFormerBackbone`, by its ``stage_names``."""
    base = _base_model(model)
    stages = [base.encoder.network[j] for j in base.encoder.stage_indices]
    return dict(zip(base.config.stage_names, [base.patch_embed, *stages]))


def resolve_layers(model: Any, layer: str | Sequence[str] | None, method: str = "gradcam") -> list[str]:
    """The stage names ``layer`` selects (one name or several), checked against the model's stages;
    ``None`` → the method's measured default, :data:`DEFAULT_LAYER` or :data:`METHOD_DEFAULT_LAYERS` (the
    last stage on a model with fewer stages); for ``"attention"``, every stage (their maps are averaged).

    Raises:
        ValueError: A name that is not a stage of this model, or the stem for ``"attention"`` (it has
            no attention block).
    """
    names = list(_base_model(model).config.stage_names)
    choices = names[1:] if method == "attention" else names
    if layer is None and method == "attention":
        # The mean of every stage's map: the best of the same measurement (docs/explain.md).
        return choices
    if layer is None:
        default = METHOD_DEFAULT_LAYERS.get(method, DEFAULT_LAYER)
        return [default if default in names else names[-1]]
    layers = [layer] if isinstance(layer, str) else list(layer)
    if not layers:
        raise ValueError("layer must name at least one stage")
    for name in layers:
        if not isinstance(name, str) or name not in choices:
            why = "the stem has no attention block" if name == "stem" and method == "attention" else None
            raise ValueError(
                f"layer {name!r} is not a stage of this model{f' ({why})' if why else ''}; "
                f"choose from {', '.join(choices)}"
            )
    return layers


def label_of(config: SwiftFormerConfig, index: int) -> str:
    """The label of class ``index`` (its index as text when the model has no name for it)."""
    return str(config.id2label.get(index, index))


def resolve_target(config: SwiftFormerConfig, target: int | np.integer | str) -> int:
    """The class index of ``target``: an index, or a label name. A name is matched exactly, then without
    regard to case, also against each comma-separated synonym of a label (``"tabby cat"`` finds
    ``"tabby, tabby cat"``); a string of digits that is no label's name is an index.

    Raises:
        ValueError: Not among the labels nor a valid index (with the closest names), or a name that
            fits several labels (with their indices).
        TypeError: Neither an int nor a string.
    """
    num = config.num_labels
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer, str)):
        raise TypeError(f"target must be a class index or a label name, got {type(target).__name__}")
    if not isinstance(target, str):
        index = int(target)
        if not 0 <= index < num:
            raise ValueError(f"target index {index} is out of range: this model has {num} labels (0..{num - 1})")
        return index
    labels = {i: label_of(config, i) for i in range(num)}
    exact = [i for i, label in labels.items() if label == target]
    if len(exact) == 1:
        return exact[0]
    wanted = " ".join(target.split()).casefold()
    found = [
        i
        for i, label in labels.items()
        if wanted == " ".join(label.split()).casefold() or wanted in {p.strip().casefold() for p in label.split(",")}
    ]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        options = ", ".join(f"{i} ({labels[i]})" for i in found[:8])
        raise ValueError(f"target {target!r} fits several labels: {options}; give the index instead")
    if target.strip().isdigit():
        return resolve_target(config, int(target))
    names = sorted({p.strip() for label in labels.values() for p in label.split(",") if p.strip()})
    close = difflib.get_close_matches(target, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(repr(labels[i]) for i in range(min(num, 5))) + (", ..." if num > 5 else "")
    raise ValueError(
        f"target {target!r} is not among this model's {num} labels ({shown}) nor an index in 0..{num - 1}{hint}"
    )


def _targets(config: SwiftFormerConfig, target: Any, batch: int) -> list[int] | None:
    """One class index per image, or None (each image's top class)."""
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        target = target.tolist()
    if isinstance(target, (str, int, np.integer)):
        return [resolve_target(config, target)] * batch
    targets = list(target)
    if len(targets) != batch:
        raise ValueError(f"target has {len(targets)} entries for {batch} images; give one per image, or one for all")
    return [resolve_target(config, t) for t in targets]


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode, parameters frozen (no weight gradients), autograd on even inside inference_mode or
    no_grad; afterwards the mode, the flags and any ``.grad`` the parameters had are restored."""
    was_training = model.training
    params = list(model.parameters())
    state = [(p.requires_grad, p.grad) for p in params]
    model.eval()
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for p, (flag, grad) in zip(params, state):
            p.requires_grad_(flag)
            p.grad = grad
        model.train(was_training)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _prepared(model: ModuleT, pixel_values: torch.Tensor) -> tuple[ModuleT, torch.Tensor]:
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor (B, 3, H, W), got {type(pixel_values).__name__}")
    if pixel_values.ndim == 3:
        pixel_values = pixel_values[None]
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}"
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be a floating-point tensor, got {pixel_values.dtype} "
            "(normalize images with SwiftFormerImageProcessor first)"
        )
    param = next(model.parameters())
    if param.dtype != torch.float32:  # the maps are computed in float32 (numpy has no bfloat16)
        model = copy.deepcopy(model).float()
    with torch.inference_mode(False):  # an inference tensor cannot take part in autograd; its clone can
        x = pixel_values.detach().to(param.device, torch.float32).clone()
    return model, x


class _Logits(nn.Module):
    """The classifier as ``pixel_values -> logits``, the interface of the grad-cam package."""

    def __init__(self, model: SwiftFormerForImageClassification) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values, return_dict=True).logits


def _grad_cam() -> Any:
    try:
        import pytorch_grad_cam  # optional: the `explain` extra
        from pytorch_grad_cam.ablation_layer import AblationLayer
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as err:
        raise ImportError(
            f"class activation maps need the grad-cam package ({err.name} is missing): pip install .[explain]"
        ) from None
    return pytorch_grad_cam, AblationLayer, ClassifierOutputTarget


def check_available(method: str) -> None:
    """Raise the one-line ImportError of :func:`explain` now if ``method`` needs the grad-cam package and it
    is not installed (for callers that check everything before starting a long job)."""
    if method in CAM_METHODS:
        _grad_cam()


def _cam(
    model: SwiftFormerForImageClassification, x: torch.Tensor, targets: list[int] | None, method: str, layers: list[str]
) -> tuple[np.ndarray, torch.Tensor]:
    """(maps (B, H, W) in [0, 1], logits (B, num_labels)) by the grad-cam package."""
    gc, AblationLayer, ClassifierOutputTarget = _grad_cam()

    # The ignore: the base class comes from the optional package, imported when called; mypy cannot see it.
    class ZeroAblation(AblationLayer):  # type: ignore[misc, valid-type]
        """Ablation-CAM as its paper defines it (Desai & Ramaswamy, WACV 2020): an ablated channel is set
        to zero. The package's own layer sets it to (minimum - 1e7) whenever the activations can be
        negative, as SwiftFormer's stage outputs (residual sums, no final ReLU) always are."""

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            output = self.activations
            for i in range(output.size(0)):
                output[i, self.indices[i], :] = 0
            return output

    wrapper = _Logits(model)
    modules = [stage_modules(model)[name] for name in layers]
    if method == "gradcam":
        cam = gc.GradCAM(wrapper, modules)
    elif method == "gradcam++":
        cam = gc.GradCAMPlusPlus(wrapper, modules)
    elif method == "eigencam":
        cam = gc.EigenCAM(wrapper, modules)
    elif method == "scorecam":
        cam = gc.ScoreCAM(wrapper, modules)
        cam.batch_size = GRADIENT_FREE_BATCH
    else:
        ablation = ZeroAblation()
        cam = gc.AblationCAM(wrapper, modules, ablation_layer=ablation, batch_size=GRADIENT_FREE_BATCH)
    try:
        if method not in PER_CHANNEL_METHODS:  # one pass (forward, + backward for gradients) for the batch
            if method in GRADIENT_METHODS:
                x = x.requires_grad_(True)
            wanted = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
            maps = cam(input_tensor=x, targets=wanted)
            logits = cam.outputs.detach()
        else:  # one forward pass per channel and image: image by image, to bound the memory
            maps_list, logits_list = [], []
            for i in range(x.shape[0]):
                wanted = None if targets is None else [ClassifierOutputTarget(targets[i])]
                maps_list.append(cam(input_tensor=x[i : i + 1], targets=wanted))
                logits_list.append(cam.outputs.detach())
            maps, logits = np.concatenate(maps_list), torch.cat(logits_list)
    finally:
        cam.activations_and_grads.release()
        if method == "ablationcam":  # the package swaps the layer back only when a pass ends (not on Ctrl-C)
            from pytorch_grad_cam.utils.find_layers import replace_layer_recursive

            present = {id(m) for m in wrapper.modules()}
            for module in modules:  # the one swapped out, if a pass was cut short, goes back where the ablation is
                if id(module) not in present:
                    replace_layer_recursive(wrapper, ablation, module)
    return maps, logits


def _normalize(maps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) map of (B, H, W) scaled to [0, 1] (a constant map becomes zeros)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    return (maps - low) / (high - low).clamp_min(1e-12)


def _attention_weights(
    model: Any, pixel_values: torch.Tensor, layers: str | Sequence[str] | None = None
) -> tuple[dict[str, torch.Tensor], Any, tuple[int, int]]:
    """``({stage: α (B, h, w) as the block computed it}, the model's output, the input's (H, W))``."""
    base = _base_model(model)
    config = base.config
    if config.attention_variant != "l2":
        raise ValueError(
            f"method 'attention' needs a model with attention_variant 'l2'; this one is {config.attention_variant!r}, "
            "where every token weight is exactly 1 (nothing to show): use a CAM method such as gradcam"
        )
    names = list(config.stage_names[1:]) if layers is None else resolve_layers(model, layers, method="attention")
    module, x = _prepared(uncompiled(model), pixel_values)
    stages = stage_modules(module)
    flat: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, int]] = {}
    handles = []

    def weights_hook(name: str, attention: SwiftFormerEfficientAdditiveAttention) -> Any:
        def hook(_module: nn.Module, _inputs: Any, projected: torch.Tensor) -> None:
            query = F.normalize(projected, dim=-1)  # (B, N, C): as the block computes it from to_query's output
            flat[name] = attention.token_weights(query)[..., 0].detach()  # α (B, N), L2-normalized over the tokens

        return hook

    def shape_hook(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            shapes[name] = (output.shape[-2], output.shape[-1])

        return hook

    was_training = module.training
    try:
        for name in names:
            blocks = [m for m in stages[name].modules() if isinstance(m, SwiftFormerEfficientAdditiveAttention)]
            if not blocks:
                raise ValueError(f"stage {name} has no attention block")
            handles.append(blocks[-1].to_query.register_forward_hook(weights_hook(name, blocks[-1])))
            handles.append(stages[name].register_forward_hook(shape_hook(name)))
        module.eval()
        with torch.no_grad():
            output = module(x, return_dict=True)
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    alphas = {name: flat[name].reshape(x.shape[0], *shapes[name]).float() for name in names}
    return alphas, output, (x.shape[-2], x.shape[-1])


def attention_maps(
    model: Any, pixel_values: torch.Tensor, layers: str | Sequence[str] | None = None, *, upsample: bool = True
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The additive-attention token weights of each stage in ``layers`` (default: every stage).

    Each stage's attention block pools its queries into one global query with weights α over the
    tokens (one per position of the stage's h × w map); in the ``"l2"`` variant α is L2-normalized
    over the tokens. They are captured by a forward hook on each block's ``to_query`` layer (the
    model's own computation, unchanged). The map is ``|α - mean(α)|``, how far each position's weight
    departs from plain average pooling (the sign of α is that of the learned ``w_g``, arbitrary),
    upsampled bilinearly to the input and normalized to [0, 1] per image.

    Args:
        model: A SwiftFormer classifier, base model or backbone with ``attention_variant="l2"``.
        pixel_values: (B, 3, H, W).
        layers: A stage name or several (``"stage1"`` ...); default every stage.
        upsample: False keeps each map at its stage's h × w.

    Returns:
        ``({stage name: (B, H, W) float32 on the CPU}, logits (B, num_labels) or None for a model
        without a classifier)``.

    Raises:
        ValueError: A ``"softmax"`` model (every weight is exactly 1), or an unknown stage.
    """
    alphas, output, size = _attention_weights(model, pixel_values, layers)
    maps = {}
    for name, alpha in alphas.items():
        # g = mean(α) Σ q_n + Σ (α_n - mean(α)) q_n: the first term is plain average pooling, the same for
        # every position; where the attention singles positions out is the second. |α| itself points at the
        # object far less often (docs/explain.md).
        magnitude = (alpha - alpha.mean(dim=(1, 2), keepdim=True)).abs()[:, None]  # (B, 1, h, w)
        if upsample:
            magnitude = F.interpolate(magnitude, size=size, mode="bilinear", align_corners=False)
        maps[name] = _normalize(magnitude[:, 0]).cpu()
    logits = getattr(output, "logits", None)
    return maps, None if logits is None else logits.detach().float().cpu()


def explain_with_scores(
    model: Any,
    pixel_values: torch.Tensor,
    target: int | str | Sequence[int | str] | None = None,
    method: str = "gradcam",
    layer: str | Sequence[str] | None = None,
) -> Explanation:
    """:func:`explain`, with the class each map explains and the model's probabilities."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    classifier = _classifier(model)
    config = classifier.config
    layers = resolve_layers(classifier, layer, method)
    batch = pixel_values.shape[0] if isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4 else 1
    targets = _targets(config, target, batch)
    if method == "attention":
        by_stage, logits = attention_maps(classifier, pixel_values, layers)
        maps = _normalize(torch.stack(list(by_stage.values())).mean(0))
    else:
        module, x = _prepared(classifier, pixel_values)
        with _explaining(module):
            raw, logits = _cam(module, x, targets, method, layers)
        maps = torch.from_numpy(np.ascontiguousarray(raw)).float().clamp_(0, 1)
    assert logits is not None
    probabilities = logits.float().softmax(dim=-1).cpu()
    if targets is None:
        targets = probabilities.argmax(dim=-1).tolist()
    return Explanation(maps=maps.cpu(), targets=targets, probabilities=probabilities, method=method, layers=layers)


def explain(
    model: Any,
    pixel_values: torch.Tensor,
    target: int | str | Sequence[int | str] | None = None,
    method: str = "gradcam",
    layer: str | Sequence[str] | None = None,
) -> torch.Tensor:
    """Heatmaps of where ``model`` looks: (B, H, W) float32 on the CPU, each in [0, 1], at the resolution
    of ``pixel_values`` (B, 3, H, W) (preprocessed as for the model; any size).

    Args:
        model: A :class:`~swiftformer.modeling.SwiftFormerForImageClassification` (eager; either attention
            variant; a ``torch.compile`` wrapper is unwrapped). Left unchanged.
        pixel_values: (B, 3, H, W) float, or one image (3, H, W).
        target: The class to explain: None (each image's top class), a class index, a label name
            (:func:`resolve_target`), or a sequence with one of those per image.
        method: One of :data:`METHODS` (module docstring).
        layer: A stage name (``"stem"``, ``"stage1"`` ...) or several (their maps are averaged);
            default :data:`DEFAULT_LAYER` (Eigen-CAM: ``"stage2"``; ``"attention"``: every stage).

    Raises:
        ValueError: An unknown method, layer or target; ``"attention"`` on a ``"softmax"`` model.
        TypeError: Not an eager SwiftFormer classifier.
        ImportError: A CAM method without the grad-cam package (``pip install .[explain]``).
    """
    return explain_with_scores(model, pixel_values, target, method, layer).maps


# ---------------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------------

# Turbo (Google's rainbow colormap, as matplotlib has it) at 17 points, interpolated to 256 colors:
# within 9/255 of the full table.
_TURBO_ANCHORS = np.array(
    [
        [48, 18, 59], [63, 62, 156], [70, 105, 224], [67, 145, 254], [42, 185, 238], [24, 219, 197],
        [47, 241, 155], [105, 253, 102], [161, 253, 61], [203, 237, 52], [236, 209, 58], [253, 174, 53],
        [251, 129, 34], [236, 83, 15], [210, 49, 5], [172, 23, 1], [122, 4, 3],
    ],
    dtype=np.float64,
)  # fmt: skip
_STEPS = np.linspace(0.0, 1.0, 256)
COLORMAP = (
    np.stack(
        [np.interp(_STEPS, np.linspace(0.0, 1.0, len(_TURBO_ANCHORS)), _TURBO_ANCHORS[:, c]) for c in range(3)], axis=-1
    )
    .round()
    .astype(np.uint8)
)  # (256, 3)


def colorize(heatmap: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) values in [0, 1] → (H, W, 3) uint8 colors of :data:`COLORMAP`."""
    values = heatmap.numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    values = np.nan_to_num(values.astype(np.float64), nan=0.0)
    return COLORMAP[np.clip(np.rint(values * 255), 0, 255).astype(np.intp)]


def model_view(pixel_values: torch.Tensor, processor: SwiftFormerImageProcessor | None = None) -> Image.Image:
    """The RGB picture the model saw: ``pixel_values`` (3, H, W) with ``processor``'s normalization and
    rescaling undone (default: the ImageNet ones of :class:`~swiftformer.image_processing.SwiftFormerImageProcessor`)."""
    values = pixel_values.detach().float().cpu().numpy().astype(np.float64)  # (3, H, W)
    if processor is None:
        from .image_processing import SwiftFormerImageProcessor

        processor = SwiftFormerImageProcessor()
    if processor.do_normalize:
        values = values * np.array(processor.image_std)[:, None, None] + np.array(processor.image_mean)[:, None, None]
    if processor.do_rescale:
        values = values / processor.rescale_factor
    pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def caption_for(label: str, index: int, score: float, method: str, layers: str | Sequence[str]) -> str:
    """The two caption lines of an overlay: ``"tabby, tabby cat (281)  81.2 %"`` and ``"Grad-CAM at stage3"``."""
    where = layers if isinstance(layers, str) else " + ".join(layers)
    return f"{label} ({index})  {100 * score:.1f} %\n{METHOD_TITLES[method]} at {where}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def overlay(
    image: Image.Image,
    heatmap: np.ndarray | torch.Tensor,
    caption: str | None = None,
    *,
    alpha: float = 0.5,
    min_side: int = 256,
) -> Image.Image:
    """``heatmap`` (H, W) in [0, 1] in :data:`COLORMAP` colors over ``image``, blended with ``alpha``,
    and ``caption`` (one or more lines) written in a band under it. ``image`` is resized to the heatmap's size (it is
    usually :func:`model_view` of the same input); pictures smaller than ``min_side`` are enlarged."""
    heat = heatmap.numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {heat.shape}")
    height, width = heat.shape
    scale = max(1.0, min_side / min(height, width))
    size = (round(width * scale), round(height * scale))
    base = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    heat_image = Image.fromarray(np.ascontiguousarray(heat.astype(np.float32)), "F").resize(
        size, Image.Resampling.BILINEAR
    )
    colors = Image.fromarray(colorize(np.asarray(heat_image)), "RGB")
    picture = Image.blend(base, colors, alpha)
    if not caption:
        return picture
    font = _font(max(12, size[0] // 22))
    draw = ImageDraw.Draw(picture)
    _, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)
    line_height = bottom - top
    pad = max(4, line_height // 3)
    lines = caption.splitlines()
    band = len(lines) * line_height + (len(lines) - 1) * pad + 2 * pad
    framed = Image.new("RGB", (size[0], size[1] + band), (20, 20, 20))
    framed.paste(picture, (0, 0))
    draw = ImageDraw.Draw(framed)
    room = size[0] - 2 * pad
    for row, text in enumerate(lines):
        if draw.textlength(text, font=font) > room:  # shortened to fit the width
            while text and draw.textlength(text + "…", font=font) > room:
                text = text[:-1]
            text = text.rstrip() + "…"
        y = size[1] + pad + row * (line_height + pad) - top
        draw.text((pad, y), text, fill=(255, 255, 255), font=font)
    return framed


def save_overlay(
    base: str | os.PathLike, picture: Image.Image, heatmap: np.ndarray | torch.Tensor | None = None
) -> list[Path]:
    """Write ``picture`` (an :func:`overlay`) to ``base`` + ``.png`` and, when ``heatmap`` is given, the map
    itself to ``base`` + ``.npy`` ((H, W) float32); each atomically (a reader never sees half a file), the
    folder created if missing. Returns the files written. What the ``explain`` command and ``predict
    --explain`` write."""
    base = Path(base)
    png = base.with_name(base.name + ".png")
    with atomic_write(png) as handle:
        picture.save(handle, format="PNG")
    written = [png]
    if heatmap is not None:
        values = heatmap.numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
        raw = base.with_name(base.name + ".npy")
        with atomic_write(raw) as handle:
            np.save(handle, values.astype(np.float32, copy=False))
        written.append(raw)
    return written


# ``from swiftformer import explain`` gives this module (the package has no attribute of that name to
# shadow it); calling the module calls :func:`explain`.
class _CallableModule(types.ModuleType):
    def __call__(
        self,
        model: Any,
        pixel_values: torch.Tensor,
        target: int | str | Sequence[int | str] | None = None,
        method: str = "gradcam",
        layer: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        return explain(model, pixel_values, target, method, layer)


sys.modules[__name__].__class__ = _CallableModule
