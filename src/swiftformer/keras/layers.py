"""The Keras layers of SwiftFormer, in the order of :mod:`swiftformer.modeling`: stem, downsampler,
ConvEncoder, MLP, additive attention, encoder block, stage.

Every layer works on channels-last tensors, (B, H, W, C), with the maths of its PyTorch namesake. Two
things differ from a literal port, both for speed on CPU:

* The 1×1 convolutions are 2-D matrix products on the ``(B·H·W, C)`` token rows (a free reshape in
  NHWC), which TensorFlow fuses with their bias, activation and residual add; the attention works on
  the same rows.
* In inference (``training=False``) every BatchNorm and layer scale is folded into the neighbouring
  convolution or matrix product. The folding is computed from the variables on each call, so the
  variables stay the trainable PyTorch ones and the results stay exact.

Each layer lists its variables under the PyTorch module's names (:meth:`_StateMixin.state_items`), the
table :mod:`swiftformer.keras.weights` loads and saves through. Variables are created in ``__init__``
with numpy initializers, so building a model runs no backend ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..configuration import SwiftFormerConfig
from .ops import (
    Tensor,
    _activation,
    _bias_add,
    _conv2d,
    _depthwise_conv3x3,
    _gelu,
    _l2_normalize,
    _linear,
    _pair,
    keras,
    ops,
)

if TYPE_CHECKING:
    from .weights import StateItem


def _init(kind: str, value: float = 0.0) -> Callable[..., np.ndarray]:
    """A numpy initializer (seeded by ``keras.utils.set_random_seed``, which seeds numpy): building a model
    then runs no backend ops, which under JAX would each be compiled separately (~20x slower builds).
    ``trunc_normal``: std 0.02 cut at ±2 std, like PyTorch's init here; ``normal``: std 1; ``constant``."""

    def initialize(shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        shape = tuple(int(d) for d in shape)
        if kind == "trunc_normal":
            values = np.random.standard_normal(shape)
            bad = np.abs(values) > 2
            while bad.any():
                values[bad] = np.random.standard_normal(int(bad.sum()))
                bad = np.abs(values) > 2
            values *= 0.02
        elif kind == "normal":
            values = np.random.standard_normal(shape)
        else:
            values = np.full(shape, value)
        return values.astype(keras.backend.standardize_dtype(dtype or "float32"))

    return initialize


class _StateMixin:
    """Layers list their weights under the PyTorch module's names: ``[(name, variable, kind), ...]``.

    ``variable`` is ``None`` for BatchNorm's ``num_batches_tracked``, which is written (as 0) so saved
    files have exactly PyTorch's keys, and ignored when loading (as PyTorch's loader does).
    """

    def state_items(self, prefix: str) -> list[StateItem]:
        raise NotImplementedError


def _bn_items(bn: _BatchNorm, prefix: str) -> list[StateItem]:
    return [
        (prefix + "weight", bn.gamma, "vector"),
        (prefix + "bias", bn.beta, "vector"),
        (prefix + "running_mean", bn.moving_mean, "vector"),
        (prefix + "running_var", bn.moving_variance, "vector"),
        (prefix + "num_batches_tracked", None, "count"),
    ]


class _BatchNorm(keras.layers.Layer):
    """BatchNorm over the last axis with PyTorch's semantics: in training, batch statistics, and the
    running ones updated with momentum 0.1 and the *unbiased* batch variance (as torch); in inference,
    the running statistics (and the callers fold them into the neighbouring conv or matrix product)."""

    def __init__(self, channels: int, eps: float, momentum: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon, self.momentum = float(eps), float(momentum)
        self.gamma = self.add_weight(shape=(channels,), initializer=_init("constant", 1.0), name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer=_init("constant", 0.0), name="beta")
        self.moving_mean = self.add_weight(
            shape=(channels,), initializer=_init("constant", 0.0), trainable=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=(channels,), initializer=_init("constant", 1.0), trainable=False, name="moving_variance"
        )
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        # x: (..., C) → (..., C)
        if not training:
            scale, shift = _bn_fold(self)
            return x * scale + shift
        axes = tuple(range(len(x.shape) - 1))
        mean = ops.mean(x, axis=axes)  # (C,)
        var = ops.mean(ops.square(x - mean), axis=axes)  # biased: what normalizes the batch
        count = ops.cast(ops.size(x), x.dtype) / x.shape[-1]
        unbiased = ops.stop_gradient(var * count / ops.maximum(count - 1.0, 1.0))
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * (1.0 - m) + ops.stop_gradient(mean) * m)
        self.moving_variance.assign(self.moving_variance * (1.0 - m) + unbiased * m)
        return (x - mean) * (ops.rsqrt(var + self.epsilon) * self.gamma) + self.beta


def _batch_norm(channels: int, eps: float, name: str) -> _BatchNorm:
    return _BatchNorm(channels, eps, name=name)


def _bn_fold(bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """Inference BatchNorm as ``x * scale + shift``, both (C,)."""
    scale = bn.gamma * ops.rsqrt(bn.moving_variance + bn.epsilon)
    return scale, bn.beta - bn.moving_mean * scale


class _DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zero the residual branch of a random subset of samples, scaling
    the kept ones by ``1 / (1 - rate)``. Identity in inference."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator()
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        # x: (B, ...) → (B, ...), one keep/drop draw per sample
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        noise = keras.random.uniform(
            (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1), seed=self.seed_generator, dtype=x.dtype
        )
        return x * ops.floor(keep + noise) / keep


class _ConvBN(_StateMixin, keras.layers.Layer):
    """Conv (PyTorch padding semantics) + BatchNorm (+ ReLU): the stem's halves and the downsamplers.

    ``conv_name`` / ``norm_name`` are the PyTorch submodule names (``"0"``/``"1"`` in the stem's
    ``nn.Sequential``, ``"proj"``/``"norm"`` in a downsampler), so one class serves both tables.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | list[int],
        stride: int | list[int],
        pad: int | list[int],
        eps: float,
        relu: bool,
        conv_name: str,
        norm_name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stride, self.pad, self.relu = _pair(stride), _pair(pad), relu
        self.conv_name, self.norm_name = conv_name, norm_name
        kh, kw = _pair(kernel_size)
        self.kernel = self.add_weight(shape=(kh, kw, in_ch, out_ch), initializer=_init("trunc_normal"), name="kernel")
        self.bias = self.add_weight(shape=(out_ch,), initializer=_init("constant", 0.0), name="bias")
        self.norm = _batch_norm(out_ch, eps, "norm")
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        # x: (B, H, W, in_ch) → (B, H', W', out_ch), H' = (H + 2·pad - k) // stride + 1
        if training:
            x = self.norm(_bias_add(_conv2d(x, self.kernel, self.stride, self.pad), self.bias), training=True)
        else:
            scale, shift = _bn_fold(self.norm)
            x = _bias_add(_conv2d(x, self.kernel * scale, self.stride, self.pad), self.bias * scale + shift)
        return ops.relu(x) if self.relu else x

    def state_items(self, prefix: str) -> list[StateItem]:
        return [
            (f"{prefix}{self.conv_name}.weight", self.kernel, "conv"),
            (f"{prefix}{self.conv_name}.bias", self.bias, "vector"),
            *_bn_items(self.norm, f"{prefix}{self.norm_name}."),
        ]


class TFSwiftFormerPatchEmbedding(_StateMixin, keras.layers.Layer):
    """The stem: (B, H, W, C_in) → (B, ⌈H/4⌉, ⌈W/4⌉, C1), two stride-2 conv-BN-ReLU."""

    def __init__(self, config: SwiftFormerConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        out_chs, eps = config.embed_dims[0], config.batch_norm_eps
        self.first = _ConvBN(config.num_channels, out_chs // 2, 3, 2, 1, eps, True, "0", "1", name="first")
        self.second = _ConvBN(out_chs // 2, out_chs, 3, 2, 1, eps, True, "3", "4", name="second")
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        # (B, H, W, C_in) → (B, ⌈H/2⌉, ⌈W/2⌉, C1/2) → (B, ⌈H/4⌉, ⌈W/4⌉, C1)
        return self.second(self.first(x, training=training), training=training)

    def state_items(self, prefix: str) -> list[StateItem]:
        return self.first.state_items(prefix + "patch_embedding.") + self.second.state_items(
            prefix + "patch_embedding."
        )


class TFSwiftFormerEmbeddings(_ConvBN):
    """Downsampling between stages i and i+1: conv(down_patch_size, down_stride, down_pad) + BN,
    (B, H, W, C_i) → (B, H', W', C_{i+1})."""

    def __init__(self, config: SwiftFormerConfig, index: int, **kwargs: Any) -> None:
        super().__init__(
            config.embed_dims[index],
            config.embed_dims[index + 1],
            config.down_patch_size,
            config.down_stride,
            config.down_pad,
            config.batch_norm_eps,
            False,
            "proj",
            "norm",
            **kwargs,
        )


class TFSwiftFormerConvEncoder(_StateMixin, keras.layers.Layer):
    """3×3 depth-wise conv, BN, 1×1 expand, GELU, 1×1 project, layer scale, residual: (B, H, W, C) → same.

    Also the encoder block's local representation (``hidden_dim == dim``). In training, the branch gets
    element-wise dropout (``drop_conv_encoder_rate``) and stochastic depth, as in the PyTorch model.
    """

    def __init__(
        self,
        config: SwiftFormerConfig,
        dim: int,
        hidden_dim: int,
        drop_rate: float = 0.0,
        drop_path: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        self.dw_kernel = self.add_weight(
            shape=(3, 3, dim, 1), initializer=_init("trunc_normal"), name="depth_wise_kernel"
        )
        self.dw_bias = self.add_weight(shape=(dim,), initializer=_init("constant", 0.0), name="depth_wise_bias")
        self.norm = _batch_norm(dim, config.batch_norm_eps, "norm")
        self.pw1_kernel = self.add_weight(shape=(dim, hidden_dim), initializer=_init("trunc_normal"), name="pw1_kernel")
        self.pw1_bias = self.add_weight(shape=(hidden_dim,), initializer=_init("constant", 0.0), name="pw1_bias")
        self.pw2_kernel = self.add_weight(shape=(hidden_dim, dim), initializer=_init("trunc_normal"), name="pw2_kernel")
        self.pw2_bias = self.add_weight(shape=(dim,), initializer=_init("constant", 0.0), name="pw2_bias")
        self.layer_scale = self.add_weight(shape=(dim,), initializer=_init("constant", 1.0), name="layer_scale")
        self.dropout = keras.layers.Dropout(drop_rate) if drop_rate > 0 else None
        self.drop_path = _DropPath(drop_path) if drop_path > 0 else None
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        shape = ops.shape(x)  # (B, H, W, C)
        if training:
            y = _bias_add(_depthwise_conv3x3(x, self.dw_kernel), self.dw_bias)  # (B, H, W, C)
            y = ops.reshape(self.norm(y, training=True), (-1, self.dim))  # (B·H·W, C)
            y = _linear(_linear(y, self.pw1_kernel, self.pw1_bias, _gelu), self.pw2_kernel, self.pw2_bias)
            y = ops.reshape(y * self.layer_scale, shape)  # (B, H, W, C)
            if self.dropout is not None:
                y = self.dropout(y, training=True)
            if self.drop_path is not None:
                y = self.drop_path(y, training=True)
            return x + y
        scale, shift = _bn_fold(self.norm)  # BN into the depth-wise conv, layer scale into the projection
        y = _bias_add(_depthwise_conv3x3(x, self.dw_kernel * scale[:, None]), self.dw_bias * scale + shift)
        y = _linear(ops.reshape(y, (-1, self.dim)), self.pw1_kernel, self.pw1_bias, _gelu)  # (B·H·W, hidden)
        y = _linear(
            y,
            self.pw2_kernel * self.layer_scale,
            self.pw2_bias * self.layer_scale,
            residual=ops.reshape(x, (-1, self.dim)),
        )  # (B·H·W, C)
        return ops.reshape(y, shape)

    def state_items(self, prefix: str) -> list[StateItem]:
        return [
            (prefix + "depth_wise_conv.weight", self.dw_kernel, "dwconv"),
            (prefix + "depth_wise_conv.bias", self.dw_bias, "vector"),
            *_bn_items(self.norm, prefix + "norm."),
            (prefix + "point_wise_conv1.weight", self.pw1_kernel, "pwconv"),
            (prefix + "point_wise_conv1.bias", self.pw1_bias, "vector"),
            (prefix + "point_wise_conv2.weight", self.pw2_kernel, "pwconv"),
            (prefix + "point_wise_conv2.bias", self.pw2_bias, "vector"),
            (prefix + "layer_scale", self.layer_scale, "scale"),
        ]


class TFSwiftFormerMlp(_StateMixin, keras.layers.Layer):
    """BN then a 1×1-conv MLP with ``hidden_act``: (B, H, W, C) → same, hidden width ``int(C * mlp_ratio)``."""

    def __init__(self, config: SwiftFormerConfig, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        hidden = int(dim * config.mlp_ratio)
        self.act = _activation(config.hidden_act)
        self.norm1 = _batch_norm(dim, config.batch_norm_eps, "norm1")
        self.fc1_kernel = self.add_weight(shape=(dim, hidden), initializer=_init("trunc_normal"), name="fc1_kernel")
        self.fc1_bias = self.add_weight(shape=(hidden,), initializer=_init("constant", 0.0), name="fc1_bias")
        self.fc2_kernel = self.add_weight(shape=(hidden, dim), initializer=_init("trunc_normal"), name="fc2_kernel")
        self.fc2_bias = self.add_weight(shape=(dim,), initializer=_init("constant", 0.0), name="fc2_bias")
        self.drop = keras.layers.Dropout(config.drop_mlp_rate) if config.drop_mlp_rate > 0 else None
        self.built = True

    def call(self, x: Tensor, training: bool = False, out_scale: Tensor | None = None) -> Tensor:
        """(B, H, W, C) → (B, H, W, C), times ``out_scale`` (C,) if given."""
        shape = ops.shape(x)
        if not training:
            return ops.reshape(self.inference_2d(ops.reshape(x, (-1, self.dim)), out_scale), shape)
        y = _linear(ops.reshape(self.norm1(x, training=True), (-1, self.dim)), self.fc1_kernel, self.fc1_bias, self.act)
        if self.drop is not None:  # (B·H·W, hidden)
            y = self.drop(y, training=True)
        y = _linear(y, self.fc2_kernel, self.fc2_bias)  # (B·H·W, C)
        if self.drop is not None:
            y = self.drop(y, training=True)
        y = ops.reshape(y, shape)
        return y if out_scale is None else y * out_scale

    def inference_2d(self, x: Tensor, out_scale: Tensor | None = None, residual: Tensor | None = None) -> Tensor:
        """Inference on (N, C) tokens, BN folded into fc1 and ``out_scale`` into fc2; plus ``residual``."""
        scale, shift = _bn_fold(self.norm1)  # (x s + t) W + b = x (s W) + (t W + b)
        fc1_bias = self.fc1_bias + ops.matmul(shift[None, :], self.fc1_kernel)[0]
        y = _linear(x, self.fc1_kernel * scale[:, None], fc1_bias, self.act)  # (N, hidden)
        if out_scale is None:
            return _linear(y, self.fc2_kernel, self.fc2_bias, residual=residual)
        return _linear(y, self.fc2_kernel * out_scale, self.fc2_bias * out_scale, residual=residual)

    def state_items(self, prefix: str) -> list[StateItem]:
        return [
            *_bn_items(self.norm1, prefix + "norm1."),
            (prefix + "fc1.weight", self.fc1_kernel, "pwconv"),
            (prefix + "fc1.bias", self.fc1_bias, "vector"),
            (prefix + "fc2.weight", self.fc2_kernel, "pwconv"),
            (prefix + "fc2.bias", self.fc2_bias, "vector"),
        ]


class TFSwiftFormerEfficientAdditiveAttention(_StateMixin, keras.layers.Layer):
    """Efficient additive attention on tokens given as a (B·N, C) matrix of ``batch`` images.

    q, k = normalize(W_q x), normalize(W_k x); α from q·w_g/√C ("softmax": softmax over a size-1 axis,
    so α ≡ 1; "l2": L2-normalized over the tokens); g = Σ α q; out = final(proj(g ⊙ k) + q).
    """

    _LINEARS = ("to_query", "to_key", "proj", "final")  # the (C, C) projections, in PyTorch's order

    def __init__(self, config: SwiftFormerConfig, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        self.variant = config.attention_variant
        self.scale_factor = dim**-0.5
        for name in self._LINEARS:
            setattr(
                self,
                f"{name}_kernel",
                self.add_weight(shape=(dim, dim), initializer=_init("trunc_normal"), name=f"{name}_kernel"),
            )
            setattr(
                self,
                f"{name}_bias",
                self.add_weight(shape=(dim,), initializer=_init("constant", 0.0), name=f"{name}_bias"),
            )
        self.w_g = self.add_weight(shape=(dim, 1), initializer=_init("normal"), name="w_g")
        self.built = True

    def call(
        self, tokens: Tensor, batch: int | Tensor, out_scale: Tensor | None = None, residual: Tensor | None = None
    ) -> Tensor:
        """(B·N, C) → (B·N, C); ``out_scale`` (C,) multiplies the output (a layer scale, folded into ``final``);
        ``residual`` is added."""
        dim = self.dim
        query = _l2_normalize(_linear(tokens, self.to_query_kernel, self.to_query_bias), -1)  # (B·N, C)
        key = _l2_normalize(_linear(tokens, self.to_key_kernel, self.to_key_bias), -1)
        scores = ops.reshape(_linear(query, self.w_g), (batch, -1, 1)) * self.scale_factor  # (B, N, 1)
        if self.variant == "softmax":
            weights = ops.exp(scores - scores)  # a softmax over the size-1 axis: all ones (NaN stays NaN)
        else:
            weights = _l2_normalize(scores, 1)  # over the tokens
        global_query = ops.sum(weights * ops.reshape(query, (batch, -1, dim)), axis=1, keepdims=True)  # (B, 1, C)
        mixed = ops.reshape(global_query * ops.reshape(key, (batch, -1, dim)), (-1, dim))  # (B·N, C)
        out = _linear(mixed, self.proj_kernel, self.proj_bias, residual=query)
        if out_scale is None:
            return _linear(out, self.final_kernel, self.final_bias, residual=residual)
        return _linear(out, self.final_kernel * out_scale, self.final_bias * out_scale, residual=residual)

    def state_items(self, prefix: str) -> list[StateItem]:
        items: list[StateItem] = []
        for name in self._LINEARS:
            items += [
                (f"{prefix}{name}.weight", getattr(self, f"{name}_kernel"), "linear"),
                (f"{prefix}{name}.bias", getattr(self, f"{name}_bias"), "vector"),
            ]
            if name == "to_key":  # w_g sits between to_key and proj in PyTorch's state dict
                items.append((prefix + "w_g", self.w_g, "vector"))
        return items


class TFSwiftFormerEncoderBlock(_StateMixin, keras.layers.Layer):
    """Local representation, then additive-attention and MLP residual branches: (B, H, W, C) → same."""

    def __init__(self, config: SwiftFormerConfig, dim: int, drop_path: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        self.local_representation = TFSwiftFormerConvEncoder(config, dim, dim, name="local_representation")
        self.attn = TFSwiftFormerEfficientAdditiveAttention(config, dim, name="attn")
        self.linear = TFSwiftFormerMlp(config, dim, name="linear")
        self.drop_path = _DropPath(drop_path) if drop_path > 0 else None
        self.use_layer_scale = config.use_layer_scale
        if self.use_layer_scale:
            init = _init("constant", float(config.layer_scale_init_value))
            self.layer_scale_1 = self.add_weight(shape=(dim,), initializer=init, name="layer_scale_1")
            self.layer_scale_2 = self.add_weight(shape=(dim,), initializer=init, name="layer_scale_2")
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        x = self.local_representation(x, training=training)
        shape = ops.shape(x)  # (B, H, W, C)
        scale_1 = self.layer_scale_1 if self.use_layer_scale else None
        scale_2 = self.layer_scale_2 if self.use_layer_scale else None
        tokens = ops.reshape(x, (-1, self.dim))  # NHWC: the (B·H·W, C) tokens are a free reshape
        if not training:  # layer scales folded, residual adds fused into the last matrix products
            tokens = self.attn(tokens, batch=shape[0], out_scale=scale_1, residual=tokens)
            return ops.reshape(self.linear.inference_2d(tokens, out_scale=scale_2, residual=tokens), shape)
        attn = ops.reshape(self.attn(tokens, batch=shape[0], out_scale=scale_1), shape)  # (B, H, W, C)
        if self.drop_path is not None:
            attn = self.drop_path(attn, training=True)
        x = x + attn
        mlp = self.linear(x, training=True, out_scale=scale_2)  # (B, H, W, C)
        if self.drop_path is not None:
            mlp = self.drop_path(mlp, training=True)
        return x + mlp

    def state_items(self, prefix: str) -> list[StateItem]:
        items = (
            self.local_representation.state_items(prefix + "local_representation.")
            + self.attn.state_items(prefix + "attn.")
            + self.linear.state_items(prefix + "linear.")
        )
        if self.use_layer_scale:
            items += [
                (prefix + "layer_scale_1", self.layer_scale_1, "scale"),
                (prefix + "layer_scale_2", self.layer_scale_2, "scale"),
            ]
        return items


class TFSwiftFormerStage(_StateMixin, keras.layers.Layer):
    """``depth - 1`` ConvEncoders then one EncoderBlock; stochastic depth on the linear schedule."""

    def __init__(self, config: SwiftFormerConfig, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dim, depth = config.embed_dims[index], config.depths[index]
        first, total = sum(config.depths[:index]), sum(config.depths)
        self.blocks = []
        for block_idx in range(depth):
            rate = config.drop_path_rate * (first + block_idx) / max(total - 1, 1)  # as modeling.py
            if block_idx == depth - 1:
                self.blocks.append(TFSwiftFormerEncoderBlock(config, dim, drop_path=rate, name=f"blocks_{block_idx}"))
            else:
                self.blocks.append(
                    TFSwiftFormerConvEncoder(
                        config,
                        dim,
                        int(config.mlp_ratio * dim),
                        config.drop_conv_encoder_rate,
                        drop_path=rate,
                        name=f"blocks_{block_idx}",
                    )
                )
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        # (B, H, W, C) → (B, H, W, C): every block keeps the shape
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def state_items(self, prefix: str) -> list[StateItem]:
        return [item for j, block in enumerate(self.blocks) for item in block.state_items(f"{prefix}blocks.{j}.")]
