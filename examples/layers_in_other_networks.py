"""SwiftFormer's efficient additive attention and ConvEncoder dropped into three other networks.

    python examples/layers_in_other_networks.py

1. ``TinyUNet``: a UNet whose bottleneck is ConvEncoder + attention on the (B, C, H, W) map, the
   global context a plain UNet lacks, at a cost linear in H·W.
2. ``AttentionNeck``: a YOLO-style neck (top-down fusion of three backbone levels) with an attention
   block on each fused map, any size.
3. ``TokenClassifier``: attention on a token sequence (B, N, C), e.g. embedded patches or time steps.

Each is built, run forward and backward on random data, and its output shape printed. Tested by
``tests/test_layers.py``, which runs this script.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swiftformer.layers import ConvEncoder, EfficientAdditiveAttention


class GlobalContext(nn.Module):
    """x + attention(x) on a feature map: a residual (B, C, H, W) → (B, C, H, W) block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local = ConvEncoder(channels, 2 * channels)
        self.attn = EfficientAdditiveAttention(channels, layout="BCHW", variant="l2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local(x)  # (B, C, H, W)
        return x + self.attn(x)  # (B, C, H, W)


class TinyUNet(nn.Module):
    """(B, 3, H, W) → (B, num_classes, H, W) for H, W divisible by 4."""

    def __init__(self, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.bottleneck = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), GlobalContext(4 * width)
        )
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.up1 = nn.ConvTranspose2d(4 * width, width, 2, stride=2)
        self.head = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.down1(x)  # (B, w, H, W)
        skip2 = self.down2(skip1)  # (B, 2w, H/2, W/2)
        x = self.bottleneck(skip2)  # (B, 4w, H/4, W/4)
        x = torch.cat([self.up2(x), skip2], dim=1)  # (B, 4w, H/2, W/2)
        x = torch.cat([self.up1(x), skip1], dim=1)  # (B, 2w, H, W)
        return self.head(x)  # (B, num_classes, H, W)


class AttentionNeck(nn.Module):
    """Top-down fusion of (P3, P4, P5) maps, each fused map then given global context: three (B, C, h_i, w_i) out."""

    def __init__(self, in_channels: tuple[int, int, int] = (32, 64, 128), channels: int = 32) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.context = nn.ModuleList(GlobalContext(channels) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]  # (B, C, h_i, w_i)
        fused = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):  # P5 → P4 → P3
            fused.insert(0, lateral + F.interpolate(fused[0], size=lateral.shape[-2:], mode="nearest"))
        return [block(x) for block, x in zip(self.context, fused)]


class TokenClassifier(nn.Module):
    """(B, N, C) tokens → (B, num_classes): two pre-norm attention blocks, then mean pooling."""

    def __init__(self, dim: int = 24, num_classes: int = 5) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.attns = nn.ModuleList(EfficientAdditiveAttention(dim, key_dim=2 * dim) for _ in range(2))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for norm, attn in zip(self.norms, self.attns):
            tokens = tokens + attn(norm(tokens))  # (B, N, C)
        return self.head(tokens.mean(dim=1))  # (B, num_classes)


def main() -> None:
    torch.manual_seed(0)
    unet = TinyUNet()
    masks = unet(torch.randn(2, 3, 36, 52))
    masks.mean().backward()
    print(f"TinyUNet          (2, 3, 36, 52) → {tuple(masks.shape)}")

    neck = AttentionNeck()
    maps = neck([torch.randn(2, 32, 40, 40), torch.randn(2, 64, 20, 20), torch.randn(2, 128, 10, 10)])
    sum(m.mean() for m in maps).backward()
    print(f"AttentionNeck     P3/P4/P5 → {[tuple(m.shape) for m in maps]}")

    classifier = TokenClassifier()
    logits = classifier(torch.randn(4, 77, 24))
    logits.logsumexp(dim=-1).mean().backward()
    print(f"TokenClassifier   (4, 77, 24) → {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
