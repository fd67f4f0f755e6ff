"""Exact reparameterization: a trained classifier folded into fewer, larger operations.

:func:`fuse` turns a :class:`~swiftformer.SwiftFormerForImageClassification` into a :class:`FusedSwiftFormer`
whose forward takes ``pixel_values`` (B, 3, H, W) and returns logits (B, num_labels), computing the same
function:

* every BatchNorm is folded into a neighbouring convolution or linear layer: after the stem and
  downsampling convs and the depth-wise convs (into the conv before it), before each MLP (into the
  following 1×1 conv), and the classifier's (through the average pool into the heads);
* every layer scale is folded into the weights of the layer that produces its branch;
* ``head`` and ``dist_head`` become one linear layer (their mean);
* the attention's query and key projections become one matrix product; under the ``softmax``
  variant, whose token weights are all 1, the dead ``w_g`` path is dropped;
* the token-wise linear layers run as 1×1 convs on the channels-last feature map, so oneDNN fuses
  the GELU and residual adds into them and no layout changes are needed.

All of this is exact in real arithmetic; in float32 the logits stay within about 1e-6 relative of the
eager model (the tests require 1e-5). Every backend (:mod:`.inductor`, :mod:`.runtimes`) and every export
format runs this module; :func:`bn_scale_shift` is the one BatchNorm folding of the package (the batch
runner's fused features use it too).

The shapes the fused model is exported at (:func:`export_dims`) live here too, as both the int8 path of
:mod:`.inductor` and the runtimes of :mod:`.runtimes` export it.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import SwiftFormerConfig
from ..modeling import (
    SwiftFormerConvEncoder,
    SwiftFormerEmbeddings,
    SwiftFormerEncoderBlock,
    SwiftFormerForImageClassification,
    SwiftFormerStage,
    require_floating_pixels,
)

MAX_DIM = 4096  # the largest batch, height and width of the exported (dynamic) graphs


# ------------------------------------------------------------------------------ folding helpers
def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """BN(x) = scale * x + shift, per channel (C,), with the running statistics (eval mode)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_bn_after_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv then BN → one conv (output channels rescaled)."""
    scale, shift = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    fused.weight.data = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused


def _fold_bn_before_pointwise(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """BN then a 1×1 conv → one 1×1 conv (input channels rescaled, bias absorbs the shift)."""
    scale, shift = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    weight = conv.weight[:, :, 0, 0]  # (out, in)
    fused.weight.data = (weight * scale).reshape_as(conv.weight)
    fused.bias = nn.Parameter((conv.bias if conv.bias is not None else 0) + weight @ shift)
    return fused


def _scale_output(layer: nn.Conv2d | nn.Linear, scale: torch.Tensor) -> nn.Module:
    """layer (with a bias) then a per-output-channel scale → one layer."""
    assert layer.bias is not None  # every layer folded here has one
    fused = copy.deepcopy(layer)
    scale = scale.reshape(-1)
    fused.weight.data = layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    fused.bias = nn.Parameter(layer.bias * scale)
    return fused


def pointwise_conv(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A 1×1 conv with copies of ``weight`` ((out, in) or (out, in, 1, 1)) and ``bias`` ((out,) or None):
    a linear layer over the channels of a (B, C, H, W) map."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    conv.weight.data = weight.detach().reshape(weight.shape[0], weight.shape[1], 1, 1).clone()
    if bias is not None:
        conv.bias = nn.Parameter(bias.detach().clone())
    return conv


# ------------------------------------------------------------------------------ fused modules
class FusedConvEncoder(nn.Module):
    """x + pw2(act(pw1(dw(x)))) with BN folded into dw and the layer scale into pw2. NCHW in and out."""

    def __init__(self, block: SwiftFormerConvEncoder) -> None:
        super().__init__()
        self.dw = _fold_bn_after_conv(block.depth_wise_conv, block.norm)
        self.pw1 = block.point_wise_conv1
        self.act = block.act
        self.pw2 = _scale_output(block.point_wise_conv2, block.layer_scale.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.act(self.pw1(self.dw(x))))


class FusedEncoderBlock(nn.Module):
    """Local representation, additive attention and MLP with every BN and layer scale folded in.

    Every token-wise linear layer runs as a 1×1 conv on the channels-last (B, C, H, W) map: oneDNN then
    fuses the GELU and the residual adds into the convs, as in the ConvEncoders (faster than linear layers
    with a separate GELU: docs/performance.md).
    """

    def __init__(self, block: SwiftFormerEncoderBlock) -> None:
        super().__init__()
        self.local = FusedConvEncoder(block.local_representation)
        attn = block.attn
        dim = attn.to_query.in_features
        self.dim = dim
        self.l2 = attn.variant == "l2"
        self.qk = pointwise_conv(  # query and key projections in one product
            torch.cat([attn.to_query.weight, attn.to_key.weight]), torch.cat([attn.to_query.bias, attn.to_key.bias])
        )
        # (1, C, 1, 1): the token weights are the query's products with w_g (scaled) over channels
        self.w_g = nn.Parameter(
            (attn.w_g.detach() * attn.scale_factor).reshape(1, dim, 1, 1).clone(), requires_grad=False
        )
        self.proj = pointwise_conv(attn.proj.weight, attn.proj.bias)
        # without layer scales (use_layer_scale=False) the branches are added unscaled
        scale1 = block.layer_scale_1.detach() if block.layer_scale_1 is not None else torch.ones(dim)
        scale2 = block.layer_scale_2.detach() if block.layer_scale_2 is not None else torch.ones(dim)
        self.final = _scale_output(pointwise_conv(attn.final.weight, attn.final.bias), scale1)
        mlp = block.linear
        self.fc1 = _fold_bn_before_pointwise(mlp.norm1, mlp.fc1)
        self.act = mlp.act
        self.fc2 = _scale_output(mlp.fc2, scale2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local(x)  # (B, C, H, W)
        query, key = self.qk(x).split(self.dim, dim=1)
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)  # per token, over channels
        if self.l2:
            scores = (query * self.w_g).sum(dim=1, keepdim=True)  # (B, 1, H, W)
            weights = F.normalize(scores.flatten(1), dim=1).view_as(scores)  # over the H × W tokens
            global_query = (weights * query).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        else:  # token weights are exactly 1
            global_query = query.sum(dim=(2, 3), keepdim=True)
        x = x + self.final(self.proj(global_query * key) + query)
        return x + self.fc2(self.act(self.fc1(x)))


class FusedSwiftFormer(nn.Module):
    """The reparameterized classifier: ``forward(pixel_values) -> logits`` (B, num_labels)."""

    def __init__(self, model: SwiftFormerForImageClassification) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval()  # fused layers reuse some modules: never share them with the caller
        conv1, bn1, _, conv2, bn2, _ = model.swiftformer.patch_embed.patch_embedding  # (conv, BN, ReLU) × 2
        layers: list[nn.Module] = [
            _fold_bn_after_conv(cast(nn.Conv2d, conv1), cast(nn.BatchNorm2d, bn1)),
            nn.ReLU(),
            _fold_bn_after_conv(cast(nn.Conv2d, conv2), cast(nn.BatchNorm2d, bn2)),
            nn.ReLU(),
        ]
        self.first_stage_end = 0  # features[:first_stage_end] = the stem and the first stage
        for module in model.swiftformer.encoder.network:
            if isinstance(module, SwiftFormerStage):
                for block in module.blocks:
                    layers.append(
                        FusedEncoderBlock(block)
                        if isinstance(block, SwiftFormerEncoderBlock)
                        else FusedConvEncoder(cast(SwiftFormerConvEncoder, block))
                    )
                self.first_stage_end = self.first_stage_end or len(layers)
            elif isinstance(module, SwiftFormerEmbeddings):
                layers.append(_fold_bn_after_conv(module.proj, module.norm))
        self.features = nn.Sequential(*layers)
        self.num_channels: int = model.config.num_channels
        # BN → mean over positions → (head + dist_head) / 2: BN commutes with the mean, so it folds
        # into the averaged heads.
        scale, shift = bn_scale_shift(model.norm)
        head, dist_head = model.head, model.dist_head
        assert isinstance(head, nn.Linear) and isinstance(dist_head, nn.Linear)  # num_labels > 0: checked by fuse
        weight = (head.weight + dist_head.weight) / 2
        bias = (head.bias + dist_head.bias) / 2
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        self.head.weight.data = (weight * scale).detach().clone()
        self.head.bias.data = (bias + weight @ shift).detach().clone()
        self.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.features(pixel_values.contiguous(memory_format=torch.channels_last))
        return self.head(x.mean(dim=(2, 3)))


def fuse(model: SwiftFormerForImageClassification) -> FusedSwiftFormer:
    """The exact reparameterization alone (no compilation), in channels-last memory format.

    Raises:
        TypeError: ``model`` is not a :class:`~swiftformer.SwiftFormerForImageClassification`.
        ValueError: the model has no classification heads (``num_labels == 0``).
    """
    if not isinstance(model, SwiftFormerForImageClassification):
        raise TypeError(f"expected a SwiftFormerForImageClassification, got {type(model).__name__}")
    if model.config.num_labels == 0:
        raise ValueError("optimize_for_inference needs a model with classification heads (num_labels > 0)")
    if model.dtype != torch.float32:  # e.g. a model cast to bf16: fold in float32, `precision` decides the rest
        model = copy.deepcopy(model).float()
    with torch.no_grad():
        return FusedSwiftFormer(model).to(memory_format=torch.channels_last).eval()


def check_pixel_values(pixel_values: Any, channels: int) -> None:
    """One clear error for anything but a floating-point (B, channels, H, W) tensor."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != channels:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a tensor of shape (B, {channels}, H, W), got {shape}")
    require_floating_pixels(pixel_values)


# ------------------------------------------------------------------------------ exported shapes
def min_spatial_size(config: SwiftFormerConfig) -> int:
    """The smallest height/width whose last stage is at least 2×2 (a 1×1 map specializes exported graphs)."""
    for size in range(8, MAX_DIM + 1):
        if min(config.stage_shapes(size, size)[-1]) >= 2:
            return size
    return MAX_DIM + 1


def export_dims(config: SwiftFormerConfig, size: tuple[int, int], spatial: bool) -> dict[int, Any]:
    """``torch.export`` dynamic dims of ``pixel_values``: the batch, and height and width when ``spatial``
    and ``size`` is not below :func:`min_spatial_size` (smaller inputs export with static H, W)."""
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=MAX_DIM)}
    low = min_spatial_size(config)
    if spatial and min(size) >= low:
        dims[2] = torch.export.Dim("height", min=low, max=MAX_DIM)
        dims[3] = torch.export.Dim("width", min=low, max=MAX_DIM)
    return dims
