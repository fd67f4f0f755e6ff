"""SwiftFormer in PyTorch: SwiftFormerModel, SwiftFormerForImageClassification and SwiftFormerBackbone.

The network (Shaker et al., ICCV 2023, arXiv 2303.15446)::

    pixel_values (B, 3, H, W)
    └─ patch_embed: two stride-2 3×3 conv + BN + ReLU            → (B, C1, H/4, W/4)
    └─ encoder.network, for each stage i:
         stage i: (depth_i - 1) × ConvEncoder, then 1 × EncoderBlock (same shape in and out)
         embeddings between stages: stride-2 3×3 conv + BN       → (B, C_{i+1}, H_i/2, W_i/2)
    → last_hidden_state (B, C4, H/32, W/32)
    classifier: BN → global average pool → (head + dist_head) / 2 → logits (B, num_labels)

The file reads top-down: the layers, the encoder, then the three models. Their common base
:class:`~swiftformer.modeling_utils.SwiftFormerPreTrainedModel` (config, weight init, ``from_pretrained`` /
``save_pretrained``, input checks, ``gradient_checkpointing_enable()``) lives in :mod:`swiftformer.modeling_utils`
and is importable from here too.

Module attributes carry the names of transformers' state-dict keys (``swiftformer.encoder.network.0
.blocks.2.attn.to_query.weight`` ...), so transformers checkpoints load with ``strict=True`` and no
renaming. Eval-mode outputs equal transformers' for every config it accepts (tested on perturbed
weights). Training-time differences, which follow the paper rather than the port, are documented on
:class:`SwiftFormerConvEncoder`.

:class:`SwiftFormerBackbone` returns multi-scale feature maps for detection and segmentation
(transformers' backbone API); ``forward_features``/``forward_intermediates``/``feature_info`` follow
timm's conventions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import SwiftFormerConfig, variant_key
from .io.checkpoints import BACKBONE_NORMS
from .layers import ConvEncoder, DropPath, EfficientAdditiveAttention, layer_scale
from .modeling_utils import (
    SwiftFormerPreTrainedModel,
    check_forward_kwargs,
    checkpoint_block,
    require_floating_pixels,
    take_stage_indices,
)
from .outputs import BackboneOutput, BaseModelOutputWithNoAttention, ImageClassifierOutputWithNoAttention

__all__ = [
    "SwiftFormerBackbone",
    "SwiftFormerForImageClassification",
    "SwiftFormerModel",
    "SwiftFormerPreTrainedModel",
    "load_model",
    "require_floating_pixels",  # re-exported: inference checks raw pixels with it
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Layers (the reusable blocks, EfficientAdditiveAttention and ConvEncoder, are in swiftformer.layers)
# ---------------------------------------------------------------------------------------------------


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def build_activation(name: str) -> nn.Module:
    """The activation modules transformers maps these names to (``ACT2CLS``)."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")  # gelu_new is the same tanh approximation, written out
    if name == "relu":
        return nn.ReLU()
    if name == "selu":
        return nn.SELU()
    if name in ("silu", "swish"):
        return nn.SiLU()
    raise ValueError(f"Unsupported hidden_act {name!r}")


class SwiftFormerPatchEmbedding(nn.Module):
    """The stem: (B, C_in, H, W) → (B, C1, ⌈H/4⌉, ⌈W/4⌉), two stride-2 conv-BN-ReLU."""

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__()
        out_chs = config.embed_dims[0]
        eps = config.batch_norm_eps
        self.patch_embedding = nn.Sequential(
            nn.Conv2d(config.num_channels, out_chs // 2, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(out_chs // 2, eps=eps),
            nn.ReLU(),
            nn.Conv2d(out_chs // 2, out_chs, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(out_chs, eps=eps),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embedding(x)  # (B, C1, H/4, W/4)


class SwiftFormerEmbeddings(nn.Module):
    """Downsampling between stages i and i+1: conv(k=down_patch_size, s=down_stride) + BN.

    (B, C_i, H, W) → (B, C_{i+1}, H', W'), H' = ⌊(H + 2·pad − k) / s⌋ + 1 (H/2 for the defaults).
    """

    def __init__(self, config: SwiftFormerConfig, index: int) -> None:
        super().__init__()
        in_chs, out_chs = config.embed_dims[index], config.embed_dims[index + 1]
        self.proj = nn.Conv2d(
            in_chs,
            out_chs,
            kernel_size=_pair(config.down_patch_size),
            stride=_pair(config.down_stride),
            padding=_pair(config.down_pad),
        )
        self.norm = nn.BatchNorm2d(out_chs, eps=config.batch_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, C_{i+1}, H', W')
        return self.norm(x)


class SwiftFormerConvEncoder(ConvEncoder):
    """:class:`~swiftformer.layers.ConvEncoder` built from a config: (B, C, H, W) → (B, C, H, W).

    Also serves as the encoder block's local representation (``hidden_dim == dim``, no dropout), which
    has the same structure and state-dict keys.

    Training-time regularization follows the paper, not transformers' port: the residual branch gets
    **stochastic depth** at the block's rate of the linear schedule (``drop_path``), as the original
    code's schedule intends, while transformers applies element-wise dropout there. The config's
    ``drop_conv_encoder_rate`` is still honoured as element-wise dropout on the branch (default 0), so
    configs written for transformers mean the same thing. Both are identities in eval mode.
    """

    def __init__(
        self, config: SwiftFormerConfig, dim: int, hidden_dim: int, drop_rate: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__(dim, hidden_dim, drop_rate=drop_rate, drop_path=drop_path, eps=config.batch_norm_eps)


class SwiftFormerMlp(nn.Module):
    """BN then a 1×1-conv MLP: (B, C, H, W) → (B, C, H, W), hidden width ``int(C * mlp_ratio)``."""

    def __init__(self, config: SwiftFormerConfig, in_features: int) -> None:
        super().__init__()
        hidden_features = int(in_features * config.mlp_ratio)
        self.norm1 = nn.BatchNorm2d(in_features, eps=config.batch_norm_eps)
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = build_activation(config.hidden_act)
        self.fc2 = nn.Conv2d(hidden_features, in_features, 1)
        self.drop = nn.Dropout(config.drop_mlp_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)  # (B, C, H, W)
        x = self.fc1(x)  # (B, hidden, H, W)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)  # (B, C, H, W)
        return self.drop(x)


class SwiftFormerEfficientAdditiveAttention(EfficientAdditiveAttention):
    """:class:`~swiftformer.layers.EfficientAdditiveAttention` built from a config, on tokens: (B, N, C) →
    (B, N, C), linear in N.

    ``config.attention_variant`` picks the token weights: ``"softmax"`` (transformers and the hub
    checkpoints: every weight is 1, ``w_g`` has no effect) or ``"l2"`` (the original repository since
    July 2023 and timm).
    """

    def __init__(self, config: SwiftFormerConfig, dim: int) -> None:
        super().__init__(dim, variant=config.attention_variant, layout="BNC")


class SwiftFormerEncoderBlock(nn.Module):
    """Local representation, then additive attention and MLP residual branches: (B, C, H, W) → same.

    With ``config.use_layer_scale`` each branch is scaled per channel by ``layer_scale_1`` /
    ``layer_scale_2`` (C, 1, 1), initialized to ``layer_scale_init_value``; without, both are None (no
    parameters, no state-dict keys) and the branches are added unscaled.
    """

    layer_scale_1: nn.Parameter | None  # registered in __init__ under the checkpoints' keys
    layer_scale_2: nn.Parameter | None

    def __init__(self, config: SwiftFormerConfig, dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.local_representation = SwiftFormerConvEncoder(config, dim, hidden_dim=dim)
        self.attn = SwiftFormerEfficientAdditiveAttention(config, dim)
        self.linear = SwiftFormerMlp(config, in_features=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.use_layer_scale = config.use_layer_scale
        self.layer_scale_init_value = float(config.layer_scale_init_value)
        for name in ("layer_scale_1", "layer_scale_2"):  # on the block itself: the checkpoints' keys
            scale = nn.Parameter(torch.full((dim, 1, 1), self.layer_scale_init_value)) if self.use_layer_scale else None
            self.register_parameter(name, scale)

    def reset_parameters(self) -> None:
        """The layer scales back to ``layer_scale_init_value`` (the block's own parameters)."""
        for scale in (self.layer_scale_1, self.layer_scale_2):
            if scale is not None:
                nn.init.constant_(scale, self.layer_scale_init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)  # (B, C, H, W)
        batch_size, channels, height, width = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(batch_size, height * width, channels)  # (B, N, C), N = H·W
        attn = self.attn(tokens)  # (B, N, C)
        attn = attn.reshape(batch_size, height, width, channels).permute(0, 3, 1, 2)  # (B, C, H, W)
        x = x + self.drop_path(layer_scale(attn, self.layer_scale_1))
        mlp = self.linear(x)  # (B, C, H, W)
        x = x + self.drop_path(layer_scale(mlp, self.layer_scale_2))
        return x


class SwiftFormerStage(nn.Module):
    """``depth - 1`` ConvEncoders then one EncoderBlock, all at one resolution and width.

    With gradient checkpointing on (set by ``SwiftFormerPreTrainedModel.gradient_checkpointing_enable``)
    and in training, each block runs through :func:`~swiftformer.modeling_utils.checkpoint_block`.
    """

    def __init__(self, config: SwiftFormerConfig, index: int) -> None:
        super().__init__()
        dim, depth = config.embed_dims[index], config.depths[index]
        first = sum(config.depths[:index])
        total = sum(config.depths)
        blocks: list[nn.Module] = []
        for block_idx in range(depth):
            # Stochastic depth grows linearly over all blocks of the network (paper, original code).
            rate = config.drop_path_rate * (first + block_idx) / max(total - 1, 1)
            if block_idx == depth - 1:
                blocks.append(SwiftFormerEncoderBlock(config, dim, drop_path=rate))
            else:
                blocks.append(
                    SwiftFormerConvEncoder(
                        config, dim, int(config.mlp_ratio * dim), config.drop_conv_encoder_rate, drop_path=rate
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.gradient_checkpointing = False
        self.checkpoint_kwargs: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint_block(block, x, **self.checkpoint_kwargs) if checkpointing else block(x)  # (B, C, H, W)
        return x


# ---------------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------------


class SwiftFormerEncoder(nn.Module):
    """The stages, with a downsampling :class:`SwiftFormerEmbeddings` between consecutive stages
    wherever ``downsamples[i]`` is set or the widths differ (``network`` holds both, in order)."""

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__()
        network: list[nn.Module] = []
        for i in range(config.num_stages):
            network.append(SwiftFormerStage(config, i))
            if i < config.num_stages - 1 and (
                config.downsamples[i] or config.embed_dims[i] != config.embed_dims[i + 1]
            ):
                network.append(SwiftFormerEmbeddings(config, i))
        self.network = nn.ModuleList(network)
        # Position of each stage in ``network``: stage i's output is ``hidden_states[1 + stage_indices[i]]``.
        self.stage_indices = [j for j, module in enumerate(network) if isinstance(module, SwiftFormerStage)]

    def forward(
        self, x: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(B, C1, H/4, W/4) → (last stage's output (B, C4, H/32, W/32), hidden_states or None).

        ``hidden_states``: the input, then the output of every entry of ``network`` (stages and downsamplings).
        """
        hidden_states: tuple[torch.Tensor, ...] | None = (x,) if output_hidden_states else None
        for module in self.network:
            x = module(x)  # (B, C_i, H_i, W_i)
            if hidden_states is not None:
                hidden_states = (*hidden_states, x)
        return x, hidden_states


def _stage_reductions(config: SwiftFormerConfig) -> list[int | tuple[int, int]]:
    """Nominal stride of each stage's output: 4 after the stem, times ``down_stride`` at each downsampling
    (an int, or (height, width) when ``down_stride`` differs per axis). Sizes are ⌈H / stride⌉ for the
    default 3×3 / stride 2 / padding 1 downsampling; ``config.stage_shapes`` gives them exactly."""
    (sh, sw), rh, rw = _pair(config.down_stride), 4, 4
    reductions: list[int | tuple[int, int]] = []
    for i in range(config.num_stages):
        if i > 0 and (config.downsamples[i - 1] or config.embed_dims[i - 1] != config.embed_dims[i]):
            rh, rw = rh * sh, rw * sw
        reductions.append(rh if rh == rw else (rh, rw))
    return reductions


def _stage_feature_info(config: SwiftFormerConfig, stage_indices: list[int], prefix: str) -> list[dict[str, Any]]:
    """timm's ``feature_info`` of the stage outputs: channels, stride and the module that produces each."""
    return [
        {"num_chs": channels, "reduction": reduction, "module": f"{prefix}encoder.network.{j}"}
        for channels, reduction, j in zip(config.embed_dims, _stage_reductions(config), stage_indices)
    ]


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


class SwiftFormerModel(SwiftFormerPreTrainedModel):
    """The SwiftFormer backbone without a head.

    ``forward(pixel_values)`` with pixel_values (B, C, H, W) returns ``last_hidden_state``
    (B, C4, H/32, W/32) and, with ``output_hidden_states=True``, ``hidden_states`` (see
    :class:`~swiftformer.outputs.BaseModelOutputWithNoAttention`).
    """

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__(config)
        self.patch_embed = SwiftFormerPatchEmbedding(config)
        self.encoder = SwiftFormerEncoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithNoAttention | tuple[torch.Tensor, ...]:
        """(B, C, H, W) → ``last_hidden_state`` (B, C4, H/32, W/32), plus ``hidden_states`` (the stem's output,
        then every entry of ``encoder.network``'s) with ``output_hidden_states``; a tuple with ``return_dict=False``.
        transformers' generic keywords with nothing to do here (``output_attentions``, ``head_mask``,
        ``interpolate_pos_encoding``) are accepted and ignored, as transformers' SwiftFormer does."""
        check_forward_kwargs(kwargs)
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        self._check_pixel_values(pixel_values)

        x = self.patch_embed(pixel_values)  # (B, C1, H/4, W/4)
        last_hidden_state, hidden_states = self.encoder(x, output_hidden_states)  # (B, C4, H/32, W/32)
        if not return_dict:
            return (last_hidden_state,) if hidden_states is None else (last_hidden_state, hidden_states)
        return BaseModelOutputWithNoAttention(last_hidden_state=last_hidden_state, hidden_states=hidden_states)

    # -------------------------------------------------------------- timm-style feature extraction
    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's description of the stage outputs: ``[{"num_chs": C_i, "reduction": stride_i, "module":
        "encoder.network.j"}, ...]``, one per stage (XS: 48/4, 56/8, 112/16, 220/32)."""
        return _stage_feature_info(self.config, self.encoder.stage_indices, prefix="")

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → the last stage's output (B, C_N, h_N, w_N), i.e. ``last_hidden_state``."""
        self._check_pixel_values(pixel_values)
        x = self.patch_embed(pixel_values)  # (B, C1, H/4, W/4)
        last_hidden_state, _ = self.encoder(x)  # (B, C4, H/32, W/32)
        return last_hidden_state

    def forward_intermediates(
        self,
        pixel_values: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the outputs of selected stages, each taken after the stage's
        blocks and before the next downsampling layer.

        Args:
            pixel_values: (B, C, H, W).
            indices: Stages to return, numbered 0..N-1 (timm's numbering; the stem is not among them):
                None → all, an int n → the last n, a list → those (negative count from the end).
            norm: Not available here: the final BatchNorm belongs to the classifier (see
                :meth:`SwiftFormerForImageClassification.forward_intermediates`).
            stop_early: Stop after the last selected stage instead of running the whole network.
            output_fmt: ``"NCHW"`` only.
            intermediates_only: Return only the list of intermediates.

        Returns:
            ``(final, intermediates)``: ``final`` is the output of the last stage that ran (with
            ``stop_early``, the last selected one), ``intermediates`` a list of (B, C_i, h_i, w_i) in stage
            order; or only ``intermediates``.
        """
        if norm:
            raise ValueError(
                "SwiftFormerModel has no final norm (it belongs to SwiftFormerForImageClassification); use norm=False"
            )
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take = take_stage_indices(self.config.num_stages, indices)
        self._check_pixel_values(pixel_values)
        x = self.patch_embed(pixel_values)  # (B, C1, H/4, W/4)
        intermediates, stage = [], -1
        for module in self.encoder.network:
            if stop_early and stage == take[-1]:
                break
            x = module(x)  # (B, C_i, h_i, w_i)
            if isinstance(module, SwiftFormerStage):
                stage += 1
                if stage in take:
                    intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)


class SwiftFormerForImageClassification(SwiftFormerPreTrainedModel):
    """SwiftFormer with BatchNorm, global average pooling, and two linear heads (class and distillation).

    ``logits`` (B, num_labels) is the mean of ``head`` and ``dist_head``, as in transformers; the two
    are also returned separately as ``cls_logits`` and ``distillation_logits`` for DeiT-style
    distillation training. With ``labels``, the loss follows ``config.problem_type``, or is inferred
    as transformers does: one label → regression (MSE); integer labels → single-label cross-entropy;
    otherwise multi-label (BCE with logits on multi-hot float labels). Unlike transformers, the
    inferred type is not written back into the config.
    """

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__(config)
        dim = config.embed_dims[-1]
        self.swiftformer = SwiftFormerModel(config)
        self.norm = nn.BatchNorm2d(dim, eps=config.batch_norm_eps)
        self.head = nn.Linear(dim, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.dist_head = nn.Linear(dim, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def forward_head(self, last_hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C4, h, w) → (cls_logits, distillation_logits), each (B, num_labels)."""
        x = self.norm(last_hidden_state)  # (B, C4, h, w)
        pooled = x.flatten(2).mean(-1)  # (B, C4)
        return self.head(pooled), self.dist_head(pooled)  # (B, num_labels) each

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """As :attr:`SwiftFormerModel.feature_info`, with module names from this model (``swiftformer.…``)."""
        return _stage_feature_info(self.config, self.swiftformer.encoder.stage_indices, prefix="swiftformer.")

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C4, h, w), the last stage's output *before* ``norm``, so that
        ``forward_head(forward_features(x))`` gives the two logits (timm's forward_features includes the norm)."""
        return self.swiftformer.forward_features(pixel_values)

    def forward_intermediates(
        self,
        pixel_values: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`SwiftFormerModel.forward_intermediates`; ``norm=True`` passes the last stage's map,
        when selected, through the classifier's BatchNorm ``norm`` (as timm does with its final norm).
        ``final`` is, like :meth:`forward_features`, before ``norm``."""
        final, intermediates = cast(
            "tuple[torch.Tensor, list[torch.Tensor]]",  # the pair: intermediates_only is False
            self.swiftformer.forward_intermediates(pixel_values, indices, stop_early=stop_early, output_fmt=output_fmt),
        )
        if norm and self.config.num_stages - 1 in take_stage_indices(self.config.num_stages, indices):
            intermediates[-1] = self.norm(intermediates[-1])
        return intermediates if intermediates_only else (final, intermediates)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> ImageClassifierOutputWithNoAttention | tuple[torch.Tensor, ...]:
        """(B, C, H, W) → ``logits`` (B, num_labels) and both heads' logits; with ``labels`` ((B,) class
        indices, (B, num_labels) multi-hot or regression targets), also ``loss`` (see :meth:`loss`). Keywords as
        :meth:`SwiftFormerModel.forward`."""
        check_forward_kwargs(kwargs)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.swiftformer(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        cls_logits, distillation_logits = self.forward_head(outputs.last_hidden_state)
        logits = (cls_logits + distillation_logits) / 2
        loss = self.loss(logits, labels) if labels is not None else None

        if not return_dict:  # the reference's tuple: (loss?, logits, hidden_states?)
            output = (logits,) if outputs.hidden_states is None else (logits, outputs.hidden_states)
            return output if loss is None else (loss, *output)
        return ImageClassifierOutputWithNoAttention(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            cls_logits=cls_logits,
            distillation_logits=distillation_logits,
        )

    def problem_type_for(self, labels: torch.Tensor) -> str:
        """``config.problem_type``, or the one transformers infers from ``num_labels`` and the label dtype."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` (B, num_labels) against ``labels`` by :meth:`problem_type_for`."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.ndim == 0 or labels.shape[0] != logits.shape[0]:
            raise ValueError(f"labels {tuple(labels.shape)} must have the batch size {logits.shape[0]} first")
        labels = labels.to(logits.device)
        problem_type = self.problem_type_for(labels)
        if problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if problem_type == "single_label_classification":
            if self.num_labels < 2:  # cross-entropy over one class is 0 whatever the weights: nothing would train
                raise ValueError(
                    "single-label classification needs num_labels > 1 (use 'regression' for one output), got "
                    f"num_labels={self.num_labels}"
                )
            if labels.is_floating_point():
                raise ValueError(f"single-label classification needs integer class indices, got {labels.dtype} labels")
            flat = labels.reshape(-1)
            if flat.numel() != logits.shape[0]:
                raise ValueError(
                    f"single-label classification needs labels of shape ({logits.shape[0]},), got {tuple(labels.shape)}"
                )
            if not torch.compiler.is_compiling():
                bad = flat[(flat != -100) & ((flat < 0) | (flat >= self.num_labels))]  # -100: ignored, as in torch
                if bad.numel():
                    raise ValueError(f"labels must be class indices in [0, {self.num_labels}), got {bad.tolist()[:10]}")
            return F.cross_entropy(logits.reshape(-1, self.num_labels), flat)
        if labels.shape != logits.shape:
            raise ValueError(
                f"multi-label classification needs multi-hot labels of shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class SwiftFormerBackbone(SwiftFormerPreTrainedModel):
    """SwiftFormer as a multi-scale feature extractor for detection and segmentation heads.

    Follows transformers' backbone API (``BackboneMixin``): ``forward(pixel_values)`` with pixel_values
    (B, C, H, W) returns :class:`~swiftformer.outputs.BackboneOutput` whose ``feature_maps`` holds one map
    per name in :attr:`out_features`, chosen from :attr:`stage_names` by ``config.out_features`` or
    ``config.out_indices`` (default: the last stage only)::

        name     the tensor                                         channels        size
        stem     output of the stem (patch_embed)                   embed_dims[0]   ⌈H/4⌉  × ⌈W/4⌉
        stage1   output of stage 1's blocks                         embed_dims[0]   ⌈H/4⌉  × ⌈W/4⌉
        stage2   output of stage 2's blocks (after downsampling)    embed_dims[1]   ⌈H/8⌉  × ⌈W/8⌉
        stage3   ...                                                embed_dims[2]   ⌈H/16⌉ × ⌈W/16⌉
        stage4   ... = SwiftFormerModel's last_hidden_state         embed_dims[3]   ⌈H/32⌉ × ⌈W/32⌉

    (sizes for the default downsampling; ``config.stage_shapes(H, W)`` gives them for any config). A
    stage's map is taken after its blocks and before the next downsampling layer, as in the original
    repository's detection/segmentation backbone (``fork_feat``), which also normalizes each map with
    its own BatchNorm: ``config.backbone_norm=True`` (``hidden_states_norms.<name>``).

    The weights live under ``swiftformer.`` as in the classifier, so ``from_pretrained`` loads any
    classifier, base-model or backbone folder (a classifier's ``norm``/``head``/``dist_head`` are
    ignored). The selection is fixed at construction; pick it with
    ``SwiftFormerBackbone.from_pretrained(path, out_features=["stage1", "stage2", "stage3", "stage4"])``
    (or ``out_indices=[1, 2, 3, 4]``: index 0 is the stem, unlike timm's stage numbering in
    :meth:`SwiftFormerModel.forward_intermediates`).
    """

    has_attentions = False

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__(config)
        self.swiftformer = SwiftFormerModel(config)
        self._out_features, self._out_indices = config.out_features, config.out_indices
        self.hidden_states_norms = nn.ModuleDict(
            {
                name: nn.BatchNorm2d(channels, eps=config.batch_norm_eps) if config.backbone_norm else nn.Identity()
                for name, channels in zip(self._out_features, self.channels)
            }
        )
        self.post_init()

    # -------------------------------------------------------------- transformers' backbone attributes
    @property
    def stage_names(self) -> list[str]:
        """``["stem", "stage1", ..., "stageN"]``."""
        return self.config.stage_names

    @property
    def out_features(self) -> list[str]:
        """Names of the returned feature maps, in order."""
        return list(self._out_features)

    @property
    def out_indices(self) -> list[int]:
        """Indices into :attr:`stage_names` of the returned feature maps."""
        return list(self._out_indices)

    @property
    def out_feature_channels(self) -> dict[str, int]:
        """Channels of every entry of :attr:`stage_names`, returned or not."""
        dims = self.config.embed_dims
        return dict(zip(self.stage_names, [dims[0], *dims]))

    @property
    def channels(self) -> list[int]:
        """Channels of each returned feature map (e.g. ``in_channels_list`` of an FPN)."""
        return [self.out_feature_channels[name] for name in self._out_features]

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm-style description of each returned map: ``num_chs``, ``reduction`` (stride) and ``module``."""
        stem = {"num_chs": self.config.embed_dims[0], "reduction": 4, "module": "patch_embed"}
        every = [stem, *self.swiftformer.feature_info]  # by stage_names
        info = []
        for i, name in zip(self._out_indices, self._out_features):
            normed = not isinstance(self.hidden_states_norms[name], nn.Identity)
            module = f"{BACKBONE_NORMS}{name}" if normed else f"swiftformer.{every[i]['module']}"
            info.append({**every[i], "module": module})
        return info

    # -------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BackboneOutput | tuple[Any, ...]:
        """(B, C, H, W) → ``feature_maps``, a tuple of (B, C_i, h_i, w_i), one per :attr:`out_features`.

        With ``output_hidden_states``, also ``hidden_states`` as :class:`SwiftFormerModel` returns them.
        ``return_dict=False`` gives ``(feature_maps,)`` or ``(feature_maps, hidden_states)``.
        """
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict

        hidden_states = self.swiftformer(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        # By stage_names: the stem's output, then each stage's (hidden_states[0] is the stem's output).
        stage_maps = [hidden_states[0], *(hidden_states[1 + j] for j in self.swiftformer.encoder.stage_indices)]
        feature_maps = tuple(
            self.hidden_states_norms[name](stage_maps[i]) for i, name in zip(self._out_indices, self._out_features)
        )
        hidden_states = hidden_states if output_hidden_states else None
        if not return_dict:
            return (feature_maps,) if hidden_states is None else (feature_maps, hidden_states)
        return BackboneOutput(feature_maps=feature_maps, hidden_states=hidden_states)

    # -------------------------------------------------------------- loading
    def load_checkpoint_state_dict(
        self,
        state_dict: dict[str, torch.Tensor],
        source: str = "state dict",
        ignore_mismatched_sizes: bool = False,
        *,
        strict: bool = True,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Load a backbone, classifier or base-model checkpoint (transformers layout).

        The network loads under ``swiftformer.``; a classifier's ``norm``, ``head`` and ``dist_head`` are
        ignored. The output norms (``backbone_norm``) load from a backbone checkpoint that has them and
        otherwise stay freshly initialized (a logged warning); saved norms of maps this backbone does not
        return are ignored. Anything else that does not match raises one :class:`CheckpointError`.
        """
        prefix = self.base_model_prefix + "."
        if not any(k.startswith(prefix) for k in state_dict):  # a base-model checkpoint
            state_dict = {k if k.startswith(BACKBONE_NORMS) else prefix + k: v for k, v in state_dict.items()}
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if not k.startswith(("norm.", "head.", "dist_head."))
            and (k in expected or not k.startswith(BACKBONE_NORMS))
        }
        fresh = [k for k in expected if k.startswith(BACKBONE_NORMS) and k not in state_dict]
        if any(not k.endswith("num_batches_tracked") for k in fresh):
            names = sorted({k.removeprefix(BACKBONE_NORMS).split(".")[0] for k in fresh})
            logger.warning("%s holds no output norms for %s; they are newly initialized.", source, names)
        expected = {k: shape for k, shape in expected.items() if k not in fresh}
        self._load_matching(state_dict, expected, source, ignore_mismatched_sizes, strict=strict, info=info)
        if info is not None:
            info["missing_keys"] |= set(fresh)


def load_model(ref: str, hub: dict[str, Any] | None = None) -> SwiftFormerForImageClassification:
    """A classifier in eval mode from a folder or hub id (:meth:`~SwiftFormerPreTrainedModel.from_pretrained`
    with the ``hub`` options), or from a variant name (``"xs"``, ``"swiftformer-l3"``: random weights, seed 0,
    1000 labels) for benchmarks and exports.

    A folder of the variant's name wins over the variant (``xs/`` is a folder, not SwiftFormer-XS).
    """
    key = None if Path(ref).exists() else variant_key(ref)
    if key is not None:
        torch.manual_seed(0)
        return SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(key, num_labels=1000)).eval()
    return SwiftFormerForImageClassification.from_pretrained(ref, **(hub or {})).eval()
