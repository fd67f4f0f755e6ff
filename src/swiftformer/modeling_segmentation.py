"""SwiftFormer for semantic segmentation: the paper's Semantic FPN head over :class:`SwiftFormerBackbone`.

The network (Kirillov et al., "Panoptic Feature Pyramid Networks", 2019; the head of the paper's ADE20K
results, Table 3)::

    pixel_values (B, 3, H, W)
    └─ backbone: the four stages, each through its own BatchNorm      → C_i × H/2^(i+1) × W/2^(i+1), i = 1..4
    └─ FPN: lateral 1×1 convs, top-down nearest-neighbour sum, 3×3 convs → fpn_channels at 1/4 … 1/32
    └─ head, per level i: max(1, i-1) × (3×3 conv-GN-ReLU, 2× bilinear upsampling for levels below 1/4)
                                                                     → decoder_channels at 1/4, summed
    └─ dropout, 1×1 classifier                                        → (B, num_labels, H/4, W/4)
    → logits, bilinearly upsampled to the input                       → (B, num_labels, H, W)

State-dict keys: ``backbone.swiftformer.…`` (the classifier's ``swiftformer.…`` under ``backbone.``),
``backbone.hidden_states_norms.…``, ``decode_head.…``. ``from_pretrained`` of a classifier, base-model or
backbone folder loads the backbone and leaves the head (and the output norms a classifier lacks) freshly
initialized, listing them in a logged warning and in the loading info.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import SwiftFormerSegmentationConfig
from .io.files import read_json
from .io.hub import CONFIG_NAME
from .modeling import SwiftFormerBackbone
from .modeling_utils import SwiftFormerPreTrainedModel
from .outputs import SemanticSegmenterOutput

__all__ = ["SwiftFormerForSemanticSegmentation", "SwiftFormerSemanticFPNHead", "is_segmentation_folder"]

logger = logging.getLogger("swiftformer.modeling")

SEGMENTATION_ARCHITECTURE = "SwiftFormerForSemanticSegmentation"


class SwiftFormerFPN(nn.Module):
    """Feature pyramid (Lin et al. 2017): maps (B, C_i, h_i, w_i), finest first → (B, channels, h_i, w_i) each.

    Each map's 1×1 lateral conv, plus the coarser level's sum upsampled (nearest) to its size, then a 3×3 conv.
    """

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, channels, kernel_size=1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size=3, padding=1) for _ in in_channels)

    def forward(self, features: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]  # (B, channels, h_i, w_i)
        for i in range(len(laterals) - 1, 0, -1):  # top-down: the coarsest level flows into the finer ones
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class SwiftFormerConvGNReLU(nn.Sequential):
    """3×3 conv (no bias), GroupNorm, ReLU: (B, C_in, h, w) → (B, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(num_groups, out_channels),
            nn.ReLU(),
        )


class SwiftFormerSemanticFPNHead(nn.Module):
    """FPN, then per level a stack of conv-GN-ReLU (+ 2× upsampling) to the finest level's scale, summed,
    then a 1×1 classifier: feature maps, finest (1/4) first → logits (B, num_labels, h_0, w_0)."""

    def __init__(self, config: SwiftFormerSegmentationConfig, in_channels: list[int]) -> None:
        super().__init__()
        self.fpn = SwiftFormerFPN(in_channels, config.fpn_channels)
        channels, groups = config.decoder_channels, config.decoder_num_groups
        self.scale_heads = nn.ModuleList()
        for level in range(len(in_channels)):
            layers: list[nn.Module] = []
            for k in range(max(1, level)):  # level i is 2^i times coarser than level 0: i upsamplings
                layers.append(SwiftFormerConvGNReLU(config.fpn_channels if k == 0 else channels, channels, groups))
                if level > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(config.classifier_dropout)
        self.classifier = nn.Conv2d(channels, config.num_labels, kernel_size=1)

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        pyramid = self.fpn(features)  # (B, fpn_channels, h_i, w_i)
        out = self.scale_heads[0](pyramid[0])  # (B, decoder_channels, h_0, w_0)
        for head, x in zip(self.scale_heads[1:], pyramid[1:]):
            # The resize absorbs odd sizes (a 2× upsampled 1/8 map of an input 100 px high is 26, not 25, rows).
            out = out + F.interpolate(head(x), size=out.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(out))  # (B, num_labels, h_0, w_0)


class SwiftFormerForSemanticSegmentation(SwiftFormerPreTrainedModel):
    """SwiftFormer with a Semantic FPN head: (B, 3, H, W) → per-pixel logits (B, num_labels, H, W).

    ``config`` is a :class:`~swiftformer.configuration.SwiftFormerSegmentationConfig` (the backbone's fields,
    the head's widths, ``semantic_loss_ignore_index``). ``forward(pixel_values, labels)`` with ``labels``
    (B, H, W) class indices also returns the cross-entropy ``loss`` over the labelled pixels.
    """

    # mypy compares the two config classes' constructors (the head's fields are extra arguments): a subclass all the same.
    config_class = SwiftFormerSegmentationConfig  # type: ignore[assignment]
    base_model_prefix = "backbone"
    config: SwiftFormerSegmentationConfig

    def __init__(self, config: SwiftFormerSegmentationConfig) -> None:
        super().__init__(config)
        self.backbone = SwiftFormerBackbone(config)
        self.decode_head = SwiftFormerSemanticFPNHead(config, self.backbone.channels)
        self.post_init()

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SemanticSegmenterOutput | tuple[Any, ...]:
        """(B, 3, H, W) → ``logits`` (B, num_labels, H, W) at the input's resolution; with ``labels``
        (B, H, W) int64 class indices (``semantic_loss_ignore_index`` for unlabelled pixels), ``loss``."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.backbone(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.decode_head(outputs.feature_maps)  # (B, num_labels, H/4, W/4)
        logits = F.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        loss = self.loss(logits, labels) if labels is not None else None
        if not return_dict:
            output = (logits,) if outputs.hidden_states is None else (logits, outputs.hidden_states)
            return output if loss is None else (loss, *output)
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``logits`` (B, K, H, W) against ``labels`` (B, H, W) over the labelled pixels."""
        ignore = self.config.semantic_loss_ignore_index
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            raise ValueError(
                f"labels must be an integer tensor of class indices, got {getattr(labels, 'dtype', labels)}"
            )
        if labels.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"labels {tuple(labels.shape)} must be (B, H, W) = {(logits.shape[0], *logits.shape[2:])}, the input's size"
            )
        labels = labels.to(logits.device, torch.long)
        if not torch.compiler.is_compiling():
            bad = labels[(labels != ignore) & ((labels < 0) | (labels >= self.num_labels))]
            if bad.numel():
                raise ValueError(
                    f"labels must be class indices in [0, {self.num_labels}) or {ignore} (ignored), "
                    f"got {bad.unique().tolist()[:10]}"
                )
        return F.cross_entropy(logits.float(), labels, ignore_index=ignore)

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
        """Load a segmentation checkpoint, or a classifier, base-model or backbone checkpoint into the backbone.

        From the latter the head (``decode_head``) and the output norms it lacks start freshly initialized,
        named in a logged warning and in ``info["missing_keys"]``.
        """
        if any(k.startswith(("backbone.", "decode_head.")) for k in state_dict):
            super().load_checkpoint_state_dict(state_dict, source, ignore_mismatched_sizes, strict=strict, info=info)
            return
        backbone_info: dict[str, Any] = {}
        self.backbone.load_checkpoint_state_dict(
            state_dict, source, ignore_mismatched_sizes, strict=strict, info=backbone_info
        )
        head = [k for k in self.state_dict() if k.startswith("decode_head.")]
        logger.warning(
            "%s holds no segmentation head: decode_head (%d tensors: FPN, scale heads, classifier) is newly "
            "initialized.",
            source,
            len(head),
        )
        if info is not None:
            info.update(
                missing_keys={f"backbone.{k}" for k in backbone_info.get("missing_keys", ())} | set(head),
                unexpected_keys={f"backbone.{k}" for k in backbone_info.get("unexpected_keys", ())},
                mismatched_keys=set(backbone_info.get("mismatched_keys", ())),
                error_msgs=[],
            )


def is_segmentation_folder(ref: str | os.PathLike) -> bool:
    """Whether the local model folder ``ref`` holds a :class:`SwiftFormerForSemanticSegmentation` (by its
    ``config.json``: the class that saved it, or the head's fields). False for anything else (hub ids too)."""
    path = Path(ref) / CONFIG_NAME
    if not path.is_file():
        return False
    try:
        config = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and (
        SEGMENTATION_ARCHITECTURE in (config.get("architectures") or []) or "fpn_channels" in config
    )
