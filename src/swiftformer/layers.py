"""SwiftFormer's building blocks as standalone layers, for use in any network.

* :class:`EfficientAdditiveAttention` — the paper's efficient additive attention (Shaker et al., ICCV 2023,
  arXiv 2303.15446, §3.2), linear in the number of tokens; on tokens (B, N, C) or on a feature map
  (B, C, H, W) with ``layout="BCHW"``.
* :class:`ConvEncoder` — the inverted-residual conv block of the conv stages (3×3 depth-wise conv, BN,
  1×1 expand, GELU, 1×1 project, layer-scaled residual); on feature maps (B, C, H, W) only: it needs
  the spatial neighbourhood.
* :class:`DropPath` and :func:`layer_scale`, the two residual-branch helpers both blocks use.

:mod:`swiftformer.modeling` builds the network from these classes, so the layers here are the ones
the published checkpoints load into (same parameter names: ``to_query``, ``to_key``, ``w_g``,
``proj``, ``final``; ``depth_wise_conv``, ``norm``, ``point_wise_conv1``/``2``, ``layer_scale``).
This module imports only torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ATTENTION_LAYOUTS", "ATTENTION_VARIANTS", "ConvEncoder", "DropPath", "EfficientAdditiveAttention"]

# How the token weights α are computed (configuration.ATTENTION_VARIANTS names the same two for models).
ATTENTION_VARIANTS = ("softmax", "l2")
ATTENTION_LAYOUTS = ("BNC", "BCHW")


def layer_scale(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Per-channel layer scale: ``scale * x`` for ``x`` (B, C, H, W) and ``scale`` (C, 1, 1), or ``x``
    itself when the block has none (``scale`` is None: ``use_layer_scale=False``).

    A function rather than a LayerScale module, so that the scales stay parameters of the block itself,
    under the checkpoints' keys (``layer_scale``, ``layer_scale_1``, ``layer_scale_2``; a module would
    add ``.weight``), and a block without layer scale has no such keys, as in transformers.
    """
    return x if scale is None else scale * x


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples.

    Kept samples are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged. Identity in eval.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) → (B, ...): each sample kept (and rescaled) or zeroed as a whole."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)  # (B, 1, ..., 1)
        return x * mask / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class EfficientAdditiveAttention(nn.Module):
    """Efficient additive attention: global context in O(N·C), no N × N attention matrix.

    In the paper's words (§3.2): the input x is projected into a query Q and a key K (here also
    L2-normalized per token over channels). The query is multiplied by a learnable vector w_a (``w_g``)
    and scaled by 1/√d to give one attention weight α_i per token; the global query q is the
    α-weighted sum of the query tokens. The key-value interaction of self-attention is replaced by an
    element-wise product of q with every key token followed by a linear transformation T (``proj``); the
    normalized query is added back, and a final linear layer (``final``) gives the output::

        Q, K = normalize(x W_q), normalize(x W_k)      (B, N, D)   unit length over channels, per token
        α    = weights(Q w_g / √D)                     (B, N, 1)   one weight per token
        q    = Σ_n α_n Q_n                             (B, 1, D)   the global query
        out  = final(proj(q ⊙ K) + Q)                  (B, N, C_out)

    ``variant`` picks ``weights``, the two attentions SwiftFormer checkpoints exist for:

    * ``"softmax"`` — a softmax over the size-1 last axis, as transformers' port and the first original
      release compute it: every α is exactly 1, so q is the plain sum of the query tokens and ``w_g`` has
      no effect. The hub checkpoints (MBZUAI/swiftformer-*) were trained so.
    * ``"l2"`` — α L2-normalized over the token axis, as the original repository has since July 2023
      (commit 670dea3) and timm. Since a positive scale cancels under that normalization, the 1/√D only
      matters in the degenerate case of near-zero scores.

    Args:
        dim: Channels C of the input.
        key_dim: Width D of the query, key and global query (default ``dim``). The original code's
            ``token_dim * num_heads``; its ``num_heads`` only widens the projections (there is one global
            query, no heads), so it is a ``key_dim`` here.
        out_dim: Channels of the output (default ``dim``, so that it can be a residual branch).
        variant: ``"l2"`` (default, the current original) or ``"softmax"`` (transformers, the hub checkpoints).
        layout: ``"BNC"`` — tokens (B, N, C) in and out; ``"BCHW"`` — a feature map (B, C, H, W) in and
            (B, C_out, H, W) out, attended over its H·W positions (flattened to tokens and back).
        normalize: L2-normalize query and key per token (default). ``False`` is the original first
            release's ``CoreMLConversion`` switch, which dropped them for Apple's Neural Engine (an
            untrained-for change: the published checkpoints expect ``True``).

    Any N ≥ 1 works; there are no position embeddings.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int | None = None,
        out_dim: int | None = None,
        *,
        variant: str = "l2",
        layout: str = "BNC",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if variant not in ATTENTION_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(ATTENTION_VARIANTS)}, got {variant!r}")
        if layout not in ATTENTION_LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(ATTENTION_LAYOUTS)}, got {layout!r}")
        key_dim = dim if key_dim is None else key_dim
        out_dim = dim if out_dim is None else out_dim
        self.dim, self.key_dim, self.out_dim = dim, key_dim, out_dim
        self.variant, self.layout, self.normalize = variant, layout, normalize
        self.to_query = nn.Linear(dim, key_dim)
        self.to_key = nn.Linear(dim, key_dim)
        self.w_g = nn.Parameter(torch.randn(key_dim, 1))
        self.scale_factor = key_dim**-0.5
        self.proj = nn.Linear(key_dim, key_dim)
        self.final = nn.Linear(key_dim, out_dim)

    def reset_parameters(self) -> None:
        """``w_g`` back to a standard normal draw (the linear layers keep their own initialization)."""
        nn.init.normal_(self.w_g)

    def extra_repr(self) -> str:
        extra = "" if self.normalize else ", normalize=False"
        return f"dim={self.dim}, key_dim={self.key_dim}, out_dim={self.out_dim}, variant={self.variant!r}, layout={self.layout!r}{extra}"

    def token_weights(self, query: torch.Tensor) -> torch.Tensor:
        """α (B, N, 1) from the normalized query (B, N, D): all ones for ``"softmax"``, L2-normalized over the
        N tokens for ``"l2"``."""
        scores = (query @ self.w_g) * self.scale_factor  # (B, N, 1)
        if self.variant == "softmax":
            return scores.softmax(dim=-1)  # over a size-1 axis: all ones (NaN stays NaN, as in the reference)
        return F.normalize(scores, dim=1)  # over tokens

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """The attention on tokens: (B, N, C) → (B, N, C_out), whatever ``layout`` is."""
        query, key = self.to_query(tokens), self.to_key(tokens)  # (B, N, D)
        if self.normalize:
            query, key = F.normalize(query, dim=-1), F.normalize(key, dim=-1)
        global_query = (self.token_weights(query) * query).sum(dim=1, keepdim=True)  # (B, 1, D)
        out = self.proj(global_query * key) + query  # (B, N, D)
        return self.final(out)  # (B, N, C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (B, N, C_out) with ``layout="BNC"``; (B, C, H, W) → (B, C_out, H, W) with ``"BCHW"``."""
        if self.layout == "BNC":
            self._check_input(x, ndim=3, channel_axis=-1, shape="(B, N, C)")
            return self.attend(x)
        self._check_input(x, ndim=4, channel_axis=1, shape="(B, C, H, W)")
        batch_size, channels, height, width = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(batch_size, height * width, channels)  # (B, N, C), N = H·W
        out = self.attend(tokens)  # (B, N, C_out)
        # a channels-last view of the result, as the input usually is in training and inference: no copy
        return out.reshape(batch_size, height, width, self.out_dim).permute(0, 3, 1, 2)  # (B, C_out, H, W)

    def _check_input(self, x: torch.Tensor, ndim: int, channel_axis: int, shape: str) -> None:
        if x.ndim != ndim or x.shape[channel_axis] != self.dim:
            raise ValueError(
                f"EfficientAdditiveAttention(layout={self.layout!r}) expects {shape} with C={self.dim}, "
                f"got a tensor of shape {tuple(x.shape)}"
            )


class ConvEncoder(nn.Module):
    """The conv stages' block: x + drop_path(layer_scale · pw2(GELU(pw1(BN(dw3×3(x)))))).

    A 3×3 depth-wise convolution mixes each channel's spatial neighbourhood, BatchNorm, then a 1×1
    expansion to ``hidden_dim``, GELU and a 1×1 projection back; the branch is scaled per channel
    (``layer_scale``, (C, 1, 1), initialized to ``layer_scale_init_value``) and added to the input.
    In SwiftFormer it also serves as the encoder block's local representation (``hidden_dim == dim``).

    Feature maps only: (B, C, H, W) → (B, C, H, W), any H, W ≥ 1 (padding keeps the size).

    Args:
        dim: Channels C.
        hidden_dim: Width of the 1×1 expansion (default ``4 * dim``, SwiftFormer's ``mlp_ratio``).
        kernel_size: Of the depth-wise convolution (odd; 3 in SwiftFormer).
        drop_rate: Element-wise dropout on the branch (transformers' ``drop_conv_encoder_rate``).
        drop_path: Stochastic-depth rate of the branch.
        layer_scale_init_value: Initial layer scale (1.0 in SwiftFormer's conv blocks).
        eps: The BatchNorm's epsilon.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        *,
        kernel_size: int = 3,
        drop_rate: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (the block keeps the spatial size), got {kernel_size}")
        hidden_dim = 4 * dim if hidden_dim is None else hidden_dim
        self.layer_scale_init_value = float(layer_scale_init_value)
        self.depth_wise_conv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.BatchNorm2d(dim, eps=eps)
        self.point_wise_conv1 = nn.Conv2d(dim, hidden_dim, kernel_size=1)
        self.act = nn.GELU()
        self.point_wise_conv2 = nn.Conv2d(hidden_dim, dim, kernel_size=1)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), self.layer_scale_init_value))

    def reset_parameters(self) -> None:
        """The layer scale back to its initial value (the convolutions and the BatchNorm keep their own)."""
        nn.init.constant_(self.layer_scale, self.layer_scale_init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.depth_wise_conv.in_channels:
            raise ValueError(
                f"ConvEncoder expects (B, C, H, W) with C={self.depth_wise_conv.in_channels}, "
                f"got a tensor of shape {tuple(x.shape)}"
            )
        branch = self.depth_wise_conv(x)  # (B, C, H, W)
        branch = self.norm(branch)
        branch = self.point_wise_conv1(branch)  # (B, hidden_dim, H, W)
        branch = self.act(branch)
        branch = self.point_wise_conv2(branch)  # (B, C, H, W)
        branch = layer_scale(branch, self.layer_scale)
        branch = self.dropout(branch)
        return x + self.drop_path(branch)
