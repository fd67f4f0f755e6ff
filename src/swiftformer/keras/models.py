"""SwiftFormer in Keras 3: TFSwiftFormerModel and TFSwiftFormerForImageClassification.

The same network as :mod:`swiftformer.modeling` and the same interface as transformers' TF classes:
NCHW ``pixel_values`` in, NCHW ``last_hidden_state`` / ``hidden_states`` out, ``logits`` the mean of
``head`` and ``dist_head``. Written with ``keras.ops`` only, so it runs on any Keras 3 backend
(TensorFlow, JAX); a few TensorFlow kernels are picked when the backend is TensorFlow, for speed.

Layout and speed. The input is transposed to NHWC once at entry and everything runs channels-last
(the fast layout of CPU convolutions); outputs are transposed back. The 1×1 convolutions are 2-D matrix
products on the ``(B·H·W, C)`` token rows (a free reshape in NHWC), which TensorFlow fuses with their
bias, GELU and residual add; the attention works on the same rows. In inference every BatchNorm and
layer scale is folded into the neighbouring convolution or matrix product (computed from the variables
on each call, so the weights stay trainable and exact), and an eager TensorFlow call runs as a cached
graph (:meth:`TFSwiftFormerPreTrainedModel._run_forward`).

Weights. Every variable has the name and layout of the PyTorch state dict (:meth:`state_items` of
each layer is the one mapping table): :meth:`~TFSwiftFormerPreTrainedModel.from_pretrained` reads
PyTorch folders (``model.safetensors`` or ``pytorch_model.bin``) and the reference TF port's
``tf_model.h5``; :meth:`~TFSwiftFormerPreTrainedModel.save_pretrained` writes a PyTorch folder.

Needs the ``tf`` extra: ``pip install 'swiftformer[tf]'`` (``pip install '.[tf]'`` in a checkout).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..configuration import SwiftFormerConfig
from ..errors import CheckpointError
from ..io.checkpoints import match_state_dict, write_model_folder  # torch-free
from ..io.files import atomic_write
from ..io.hub import SAFE_WEIGHTS_NAME, WEIGHTS_NAME, resolve_file
from ..outputs import BaseModelOutputWithNoAttention, ImageClassifierOutputWithNoAttention, ModelOutput

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install '.[tf]'  (or: pip install 'swiftformer[tf]')"
TF_WEIGHTS_NAME = "tf_model.h5"  # the reference TF port's weights file


def _import_keras():
    # In one process, importing torch._dynamo (triton) *after* TensorFlow segfaults (torch 2.14 + TF 2.21):
    # when torch is already in use and TensorFlow is not loaded yet, load dynamo first.
    if "torch" in sys.modules and "tensorflow" not in sys.modules and "torch._dynamo" not in sys.modules:
        with contextlib.suppress(Exception):  # best effort: torch builds without dynamo
            import torch._dynamo  # noqa: F401
    try:
        import keras
    except ImportError as err:
        raise ImportError(
            f"swiftformer's TensorFlow/Keras models need Keras 3 and a backend (TensorFlow or JAX): {INSTALL_HINT}. "
            f"({err})"
        ) from None
    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(f"swiftformer's Keras models need Keras 3, found keras {keras.__version__}: {INSTALL_HINT}")
    return keras


keras = _import_keras()
ops = keras.ops
BACKEND = keras.backend.backend()

if BACKEND == "tensorflow":
    import tensorflow as tf

    try:  # XLA compiles depth-wise convolutions into a very slow loop on CPU: detect it (internal API)
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _xla_context
    except ImportError:  # pragma: no cover - moved in some TF version: assume no XLA
        _xla_context = None

    def _in_xla() -> bool:
        if _xla_context is None or tf.executing_eagerly():
            return False
        return bool(_xla_context(tf.compat.v1.get_default_graph()))

    def _bias_add(x, bias):
        return tf.nn.bias_add(x, bias)  # BiasAdd: fused with the MatMul / Conv2D before it by grappler

    def _conv2d(x, kernel, stride: tuple[int, int], pad: tuple[int, int]):
        padding = "VALID" if pad == (0, 0) else [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]]
        return tf.nn.conv2d(x, kernel, strides=(1, *stride, 1), padding=padding)

else:

    def _in_xla() -> bool:
        return BACKEND == "jax"  # JAX always compiles with XLA

    def _bias_add(x, bias):
        return x + bias

    def _conv2d(x, kernel, stride: tuple[int, int], pad: tuple[int, int]):
        if pad != (0, 0):
            x = ops.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
        return ops.conv(x, kernel, strides=stride, padding="valid")


def _depthwise_conv3x3(x, kernel):
    """3×3 depth-wise convolution, stride 1, zero padding 1; ``kernel`` is (3, 3, C, 1).

    Under XLA (``jit_compile=True``, and the JAX backend) as nine shifted multiply-adds, which XLA fuses
    into one loop: its own depth-wise convolution is ~25x slower on CPU. Elsewhere the native kernel.
    """
    if not _in_xla():
        return ops.depthwise_conv(x, kernel, 1, "same")
    shape = ops.shape(x)
    padded = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = None
    for i in range(3):
        for j in range(3):
            term = ops.slice(padded, (0, i, j, 0), shape) * kernel[i, j, :, 0]
            out = term if out is None else out + term
    return out


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _activation(name: str):
    """The Keras function for a config's ``hidden_act`` (the same maths as :func:`modeling.build_activation`)."""
    if name == "gelu":
        return lambda x: ops.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: ops.gelu(x, approximate=True)
    if name == "relu":
        return ops.relu
    if name == "selu":
        return ops.selu
    if name in ("silu", "swish"):
        return ops.silu
    raise ValueError(f"Unsupported hidden_act {name!r}")


def _gelu(x):
    return ops.gelu(x, approximate=False)


def _linear(x, kernel, bias=None, activation=None, residual=None):
    """``activation(x @ kernel + bias) + residual`` on 2-D (N, C) tensors: MatMul + BiasAdd + activation is
    a pattern TensorFlow's grappler fuses into one oneDNN kernel (3.5x faster than a 1×1 Conv2D + GELU)."""
    y = ops.matmul(x, kernel)
    if bias is not None:
        y = _bias_add(y, bias)
    if activation is not None:
        y = activation(y)
    return y if residual is None else y + residual


def _dense(x, kernel, bias=None, activation=None):
    """``x @ kernel (+ bias)`` over the last axis of a (..., C) tensor, as one 2-D matrix product."""
    shape = ops.shape(x)
    y = _linear(ops.reshape(x, (-1, shape[-1])), kernel, bias, activation)
    return ops.reshape(y, (*shape[:-1], kernel.shape[-1]))


def _l2_normalize(x, axis):
    """``x / max(‖x‖, 1e-12)`` as torch.nn.functional.normalize."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-24))


# ---------------------------------------------------------------------------------------------------
# The mapping table: every layer lists (PyTorch name, variable, kind); kinds convert layouts both ways.
# ---------------------------------------------------------------------------------------------------

# kind: (Keras array -> PyTorch array, PyTorch array -> Keras array)
_LAYOUTS = {
    "conv": (lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0)),  # HWIO <-> OIHW
    "dwconv": (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)),  # (kh,kw,C,1) <-> (C,1,kh,kw)
    "pwconv": (lambda a: a.T[:, :, None, None], lambda a: a[:, :, 0, 0].T),  # (I,O) <-> (O,I,1,1)
    "linear": (lambda a: a.T, lambda a: a.T),  # (I,O) <-> (O,I)
    "vector": (lambda a: a, lambda a: a),
    "scale": (lambda a: a[:, None, None], lambda a: a[:, 0, 0]),  # (C,) <-> (C,1,1)
}


def _pt_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_LAYOUTS[kind][0](np.empty(shape, dtype=np.uint8)).shape)


class _StateMixin:
    """Layers list their weights under the PyTorch module's names: ``[(name, variable, kind), ...]``.

    ``variable`` is ``None`` for BatchNorm's ``num_batches_tracked``, which is written (as 0) so saved
    files have exactly PyTorch's keys, and ignored when loading (as PyTorch's loader does).
    """

    def state_items(self, prefix: str) -> list[tuple[str, Any, str]]:
        raise NotImplementedError


def _bn_items(bn, prefix: str) -> list[tuple[str, Any, str]]:
    return [
        (prefix + "weight", bn.gamma, "vector"),
        (prefix + "bias", bn.beta, "vector"),
        (prefix + "running_mean", bn.moving_mean, "vector"),
        (prefix + "running_var", bn.moving_variance, "vector"),
        (prefix + "num_batches_tracked", None, "count"),
    ]


def _init(kind: str, value: float = 0.0):
    """A numpy initializer (seeded by ``keras.utils.set_random_seed``, which seeds numpy): building a model
    then runs no backend ops, which under JAX would each be compiled separately (~20x slower builds).
    ``trunc_normal``: std 0.02 cut at ±2 std, like PyTorch's init here; ``normal``: std 1; ``constant``."""

    def initialize(shape, dtype=None):
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


class _BatchNorm(keras.layers.Layer):
    """BatchNorm over the last axis with PyTorch's semantics: in training, batch statistics, and the
    running ones updated with momentum 0.1 and the *unbiased* batch variance (as torch); in inference,
    the running statistics (and the callers fold them into the neighbouring conv or matrix product)."""

    def __init__(self, channels: int, eps: float, momentum: float = 0.1, **kwargs) -> None:
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

    def call(self, x, training=False):
        if not training:
            scale, shift = _bn_fold(self)
            return x * scale + shift
        axes = tuple(range(len(x.shape) - 1))
        mean = ops.mean(x, axis=axes)
        var = ops.mean(ops.square(x - mean), axis=axes)  # biased: what normalizes the batch
        count = ops.cast(ops.size(x), x.dtype) / x.shape[-1]
        unbiased = ops.stop_gradient(var * count / ops.maximum(count - 1.0, 1.0))
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * (1.0 - m) + ops.stop_gradient(mean) * m)
        self.moving_variance.assign(self.moving_variance * (1.0 - m) + unbiased * m)
        return (x - mean) * (ops.rsqrt(var + self.epsilon) * self.gamma) + self.beta


def _batch_norm(channels: int, eps: float, name: str) -> _BatchNorm:
    return _BatchNorm(channels, eps, name=name)


def _bn_fold(bn):
    """Inference BatchNorm as ``x * scale + shift``."""
    scale = bn.gamma * ops.rsqrt(bn.moving_variance + bn.epsilon)
    return scale, bn.beta - bn.moving_mean * scale


class _DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zero the residual branch of a random subset of samples, scaling
    the kept ones by ``1 / (1 - rate)``. Identity in inference."""

    def __init__(self, rate: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator()
        self.built = True

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        noise = keras.random.uniform(
            (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1), seed=self.seed_generator, dtype=x.dtype
        )
        return x * ops.floor(keep + noise) / keep


class _ConvBN(_StateMixin, keras.layers.Layer):
    """Conv (PyTorch padding semantics) + BatchNorm (+ ReLU): the stem's halves and the downsamplers."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size,
        stride,
        pad,
        eps: float,
        relu: bool,
        conv_name: str,
        norm_name: str,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.stride, self.pad, self.relu = _pair(stride), _pair(pad), relu
        self.conv_name, self.norm_name = conv_name, norm_name
        kh, kw = _pair(kernel_size)
        self.kernel = self.add_weight(shape=(kh, kw, in_ch, out_ch), initializer=_init("trunc_normal"), name="kernel")
        self.bias = self.add_weight(shape=(out_ch,), initializer=_init("constant", 0.0), name="bias")
        self.norm = _batch_norm(out_ch, eps, "norm")
        self.built = True

    def call(self, x, training=False):
        if training:
            x = self.norm(_bias_add(_conv2d(x, self.kernel, self.stride, self.pad), self.bias), training=True)
        else:
            scale, shift = _bn_fold(self.norm)
            x = _bias_add(_conv2d(x, self.kernel * scale, self.stride, self.pad), self.bias * scale + shift)
        return ops.relu(x) if self.relu else x

    def state_items(self, prefix):
        return [
            (f"{prefix}{self.conv_name}.weight", self.kernel, "conv"),
            (f"{prefix}{self.conv_name}.bias", self.bias, "vector"),
            *_bn_items(self.norm, f"{prefix}{self.norm_name}."),
        ]


class TFSwiftFormerPatchEmbedding(_StateMixin, keras.layers.Layer):
    """The stem: (B, H, W, C_in) → (B, ⌈H/4⌉, ⌈W/4⌉, C1), two stride-2 conv-BN-ReLU."""

    def __init__(self, config: SwiftFormerConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        out_chs, eps = config.embed_dims[0], config.batch_norm_eps
        self.first = _ConvBN(config.num_channels, out_chs // 2, 3, 2, 1, eps, True, "0", "1", name="first")
        self.second = _ConvBN(out_chs // 2, out_chs, 3, 2, 1, eps, True, "3", "4", name="second")
        self.built = True

    def call(self, x, training=False):
        return self.second(self.first(x, training=training), training=training)

    def state_items(self, prefix):
        return self.first.state_items(prefix + "patch_embedding.") + self.second.state_items(
            prefix + "patch_embedding."
        )


class TFSwiftFormerEmbeddings(_ConvBN):
    """Downsampling between stages i and i+1: conv(down_patch_size, down_stride, down_pad) + BN."""

    def __init__(self, config: SwiftFormerConfig, index: int, **kwargs) -> None:
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
        **kwargs,
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

    def call(self, x, training=False):
        shape = ops.shape(x)
        if training:
            y = _bias_add(_depthwise_conv3x3(x, self.dw_kernel), self.dw_bias)
            y = ops.reshape(self.norm(y, training=True), (-1, self.dim))
            y = _linear(_linear(y, self.pw1_kernel, self.pw1_bias, _gelu), self.pw2_kernel, self.pw2_bias)
            y = ops.reshape(y * self.layer_scale, shape)
            if self.dropout is not None:
                y = self.dropout(y, training=True)
            if self.drop_path is not None:
                y = self.drop_path(y, training=True)
            return x + y
        scale, shift = _bn_fold(self.norm)  # BN into the depth-wise conv, layer scale into the projection
        y = _bias_add(_depthwise_conv3x3(x, self.dw_kernel * scale[:, None]), self.dw_bias * scale + shift)
        y = _linear(ops.reshape(y, (-1, self.dim)), self.pw1_kernel, self.pw1_bias, _gelu)
        y = _linear(
            y,
            self.pw2_kernel * self.layer_scale,
            self.pw2_bias * self.layer_scale,
            residual=ops.reshape(x, (-1, self.dim)),
        )
        return ops.reshape(y, shape)

    def state_items(self, prefix):
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


class TFSwiftFormerEfficientAdditiveAttention(_StateMixin, keras.layers.Layer):
    """Efficient additive attention on tokens given as a (B·N, C) matrix of ``batch`` images.

    q, k = normalize(W_q x), normalize(W_k x); α from q·w_g/√C ("softmax": softmax over a size-1 axis,
    so α ≡ 1; "l2": L2-normalized over the tokens); g = Σ α q; out = final(proj(g ⊙ k) + q).
    """

    def __init__(self, config: SwiftFormerConfig, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        self.variant = config.attention_variant
        self.scale_factor = dim**-0.5
        for name in ("to_query", "to_key", "proj", "final"):
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

    def call(self, tokens, batch, out_scale=None, residual=None):
        """``out_scale`` (C,) multiplies the output (a layer scale, folded into ``final``); ``residual`` is added."""
        dim = self.dim
        query = _l2_normalize(_linear(tokens, self.to_query_kernel, self.to_query_bias), -1)  # (B·N, C)
        key = _l2_normalize(_linear(tokens, self.to_key_kernel, self.to_key_bias), -1)
        scores = ops.reshape(_linear(query, self.w_g), (batch, -1, 1)) * self.scale_factor  # (B, N, 1)
        if self.variant == "softmax":
            weights = ops.exp(scores - scores)  # a softmax over the size-1 axis: all ones (NaN stays NaN)
        else:
            weights = _l2_normalize(scores, 1)  # over the tokens
        global_query = ops.sum(weights * ops.reshape(query, (batch, -1, dim)), axis=1, keepdims=True)  # (B, 1, C)
        mixed = ops.reshape(global_query * ops.reshape(key, (batch, -1, dim)), (-1, dim))
        out = _linear(mixed, self.proj_kernel, self.proj_bias, residual=query)
        if out_scale is None:
            return _linear(out, self.final_kernel, self.final_bias, residual=residual)
        return _linear(out, self.final_kernel * out_scale, self.final_bias * out_scale, residual=residual)

    def state_items(self, prefix):
        items = []
        for name in ("to_query", "to_key"):
            items += [
                (f"{prefix}{name}.weight", getattr(self, f"{name}_kernel"), "linear"),
                (f"{prefix}{name}.bias", getattr(self, f"{name}_bias"), "vector"),
            ]
        items.append((prefix + "w_g", self.w_g, "vector"))
        for name in ("proj", "final"):
            items += [
                (f"{prefix}{name}.weight", getattr(self, f"{name}_kernel"), "linear"),
                (f"{prefix}{name}.bias", getattr(self, f"{name}_bias"), "vector"),
            ]
        return items


class TFSwiftFormerMlp(_StateMixin, keras.layers.Layer):
    """BN then a 1×1-conv MLP with ``hidden_act``: (B, H, W, C) → same, hidden width ``int(C * mlp_ratio)``."""

    def __init__(self, config: SwiftFormerConfig, dim: int, **kwargs) -> None:
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

    def call(self, x, training=False, out_scale=None):
        """(B, H, W, C) → (B, H, W, C), times ``out_scale`` (C,) if given."""
        shape = ops.shape(x)
        if not training:
            return ops.reshape(self.inference_2d(ops.reshape(x, (-1, self.dim)), out_scale), shape)
        y = _linear(ops.reshape(self.norm1(x, training=True), (-1, self.dim)), self.fc1_kernel, self.fc1_bias, self.act)
        if self.drop is not None:
            y = self.drop(y, training=True)
        y = _linear(y, self.fc2_kernel, self.fc2_bias)
        if self.drop is not None:
            y = self.drop(y, training=True)
        y = ops.reshape(y, shape)
        return y if out_scale is None else y * out_scale

    def inference_2d(self, x, out_scale=None, residual=None):
        """Inference on (N, C) tokens, BN folded into fc1 and ``out_scale`` into fc2; plus ``residual``."""
        scale, shift = _bn_fold(self.norm1)  # (x s + t) W + b = x (s W) + (t W + b)
        fc1_bias = self.fc1_bias + ops.matmul(shift[None, :], self.fc1_kernel)[0]
        y = _linear(x, self.fc1_kernel * scale[:, None], fc1_bias, self.act)
        if out_scale is None:
            return _linear(y, self.fc2_kernel, self.fc2_bias, residual=residual)
        return _linear(y, self.fc2_kernel * out_scale, self.fc2_bias * out_scale, residual=residual)

    def state_items(self, prefix):
        return [
            *_bn_items(self.norm1, prefix + "norm1."),
            (prefix + "fc1.weight", self.fc1_kernel, "pwconv"),
            (prefix + "fc1.bias", self.fc1_bias, "vector"),
            (prefix + "fc2.weight", self.fc2_kernel, "pwconv"),
            (prefix + "fc2.bias", self.fc2_bias, "vector"),
        ]


class TFSwiftFormerEncoderBlock(_StateMixin, keras.layers.Layer):
    """Local representation, then additive-attention and MLP residual branches: (B, H, W, C) → same."""

    def __init__(self, config: SwiftFormerConfig, dim: int, drop_path: float = 0.0, **kwargs) -> None:
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

    def call(self, x, training=False):
        x = self.local_representation(x, training=training)
        shape = ops.shape(x)
        scale_1 = self.layer_scale_1 if self.use_layer_scale else None
        scale_2 = self.layer_scale_2 if self.use_layer_scale else None
        tokens = ops.reshape(x, (-1, self.dim))  # NHWC: the (B·H·W, C) tokens are a free reshape
        if not training:  # layer scales folded, residual adds fused into the last matrix products
            tokens = self.attn(tokens, batch=shape[0], out_scale=scale_1, residual=tokens)
            return ops.reshape(self.linear.inference_2d(tokens, out_scale=scale_2, residual=tokens), shape)
        attn = ops.reshape(self.attn(tokens, batch=shape[0], out_scale=scale_1), shape)
        if self.drop_path is not None:
            attn = self.drop_path(attn, training=True)
        x = x + attn
        mlp = self.linear(x, training=True, out_scale=scale_2)
        if self.drop_path is not None:
            mlp = self.drop_path(mlp, training=True)
        return x + mlp

    def state_items(self, prefix):
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

    def __init__(self, config: SwiftFormerConfig, index: int, **kwargs) -> None:
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

    def call(self, x, training=False):
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def state_items(self, prefix):
        return [item for j, block in enumerate(self.blocks) for item in block.state_items(f"{prefix}blocks.{j}.")]


class TFSwiftFormerBackbone(_StateMixin, keras.layers.Layer):
    """Stem and encoder on NHWC tensors: returns the last map and (optionally) every intermediate one."""

    def __init__(self, config: SwiftFormerConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.patch_embed = TFSwiftFormerPatchEmbedding(config, name="patch_embed")
        self.network = []
        for i in range(config.num_stages):
            self.network.append(TFSwiftFormerStage(config, i, name=f"network_{len(self.network)}"))
            if i < config.num_stages - 1 and (
                config.downsamples[i] or config.embed_dims[i] != config.embed_dims[i + 1]
            ):
                self.network.append(TFSwiftFormerEmbeddings(config, i, name=f"network_{len(self.network)}"))
        self.built = True

    def call(self, x, output_hidden_states=False, training=False):
        x = self.patch_embed(x, training=training)
        hidden_states = [x] if output_hidden_states else None
        for module in self.network:
            x = module(x, training=training)
            if hidden_states is not None:
                hidden_states.append(x)
        return x, hidden_states

    def state_items(self, prefix):
        items = self.patch_embed.state_items(prefix + "patch_embed.")
        for i, module in enumerate(self.network):
            items += module.state_items(f"{prefix}encoder.network.{i}.")
        return items


def _nchw(x):
    return ops.transpose(x, (0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------------
# Output containers as tree nodes, so Keras' predict() and JAX transformations carry them through.
# ---------------------------------------------------------------------------------------------------


def _register_outputs_as_tree_nodes() -> None:
    def flatten(out):
        names = tuple(out.keys())  # the fields that are not None
        return [getattr(out, n) for n in names], names

    for cls in (BaseModelOutputWithNoAttention, ImageClassifierOutputWithNoAttention):

        def unflatten(names, children, cls=cls):
            return cls(**dict(zip(names, children)))

        try:
            import optree

            optree.register_pytree_node(cls, flatten, unflatten, namespace="keras")
        except (ImportError, ValueError):  # not installed, or registered already
            pass
        if BACKEND == "jax":
            import jax

            try:
                jax.tree_util.register_pytree_node(cls, flatten, unflatten)
            except ValueError:
                pass


_register_outputs_as_tree_nodes()


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {flags: tf.function}; not on the model,
# so Keras and SavedModel tracking never see these functions


def _inference_forward(model_ref, output_hidden_states: bool, pixels):
    return model_ref()._forward(pixels, output_hidden_states, False)


class TFSwiftFormerPreTrainedModel(keras.Model):
    """Common base: the config, input checks, PyTorch-layout weights in and out, Keras training hooks."""

    config_class = SwiftFormerConfig
    base_model_prefix = "swiftformer"
    main_input_name = "pixel_values"

    def __init__(self, config: SwiftFormerConfig, **kwargs) -> None:
        if not isinstance(config, SwiftFormerConfig):
            raise TypeError(f"config must be a SwiftFormerConfig, got {type(config).__name__}")
        super().__init__(**kwargs)
        self.config = config

    # -------------------------------------------------------------- Keras plumbing
    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None):
        config = dict(config)
        return cls(SwiftFormerConfig.from_dict(config.pop("config")), **config)

    def build(self, input_shape=None):  # every layer is built at construction
        self.built = True

    # -------------------------------------------------------------- the forward pass
    def _forward(self, x, output_hidden_states: bool, training: bool):
        """NHWC pixels → a tuple of output tensors (defined by each model)."""
        raise NotImplementedError

    def _run_forward(self, x, output_hidden_states: bool, training: bool):
        """:meth:`_forward`; an eager TensorFlow inference call runs it as a graph (``tf.function``, traced
        once per flag and relaxed input shape), which is 4-8x faster than op by op and computes the same.
        ``model.run_eagerly = True`` keeps every op eager (for debugging)."""
        if BACKEND != "tensorflow" or training or self.run_eagerly or not tf.executing_eagerly():
            return self._forward(x, output_hidden_states, training)
        cache = _GRAPHS.setdefault(self, {})
        if output_hidden_states not in cache:
            # A weak reference: a strong one in the cached value would keep the model alive. A partial, not a
            # lambda: TF keys its "frequent retracing" warning on the code object, shared by every model.
            cache[output_hidden_states] = tf.function(
                functools.partial(_inference_forward, weakref.ref(self), output_hidden_states), reduce_retracing=True
            )
        return cache[output_hidden_states](x)

    # -------------------------------------------------------------- input checks
    def _prepare_pixel_values(self, pixel_values):
        channels = self.config.num_channels
        if hasattr(pixel_values, "detach") and hasattr(pixel_values, "numpy"):  # a torch tensor
            pixel_values = pixel_values.detach().cpu().numpy()
        if not (ops.is_tensor(pixel_values) or isinstance(pixel_values, np.ndarray) or hasattr(pixel_values, "shape")):
            raise TypeError(
                f"pixel_values must be a tensor or array of shape (batch, {channels}, height, width), got "
                f"{type(pixel_values).__name__} (use SwiftFormerImageProcessor to turn images into arrays)"
            )
        shape = tuple(pixel_values.shape)
        if len(shape) != 4 or (shape[1] is not None and shape[1] != channels):
            raise ValueError(f"pixel_values must have shape (batch, {channels}, height, width), got {shape}")
        dtype = keras.backend.standardize_dtype(pixel_values.dtype)
        if "float" not in dtype:
            raise ValueError(
                f"pixel_values must be a floating-point tensor, got {dtype} "
                f"(normalize images with SwiftFormerImageProcessor first)"
            )
        height, width = shape[2], shape[3]
        if height is not None and width is not None and min(self.stage_shapes(height, width)[-1]) < 1:
            raise ValueError(f"pixel_values of {height}x{width} is too small for this model's downsampling")
        x = ops.convert_to_tensor(pixel_values)
        if dtype != self.compute_dtype:
            x = ops.cast(x, self.compute_dtype)
        return ops.transpose(x, (0, 2, 3, 1))  # NCHW → NHWC, once

    def stage_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size (h, w) of each stage's output for an input of ``height`` × ``width``."""
        return self.config.stage_shapes(height, width)

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Parameters as PyTorch counts them (BatchNorm's running statistics are buffers, not parameters)."""
        if only_trainable:
            return int(sum(np.prod(v.shape) for v in self.trainable_variables))
        return int(
            sum(
                np.prod(v.shape)
                for name, v, _ in self.state_items()
                if v is not None and not name.endswith(("running_mean", "running_var"))
            )
        )

    # -------------------------------------------------------------- the mapping table
    def state_items(self) -> list[tuple[str, Any, str]]:
        """``[(PyTorch state-dict name, Keras variable or None, layout kind), ...]`` for the whole model."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, in PyTorch's names, layouts and key set."""
        out = {}
        for name, variable, kind in self.state_items():
            if variable is None:
                out[name] = np.zeros((), dtype=np.int64)
            else:
                out[name] = np.ascontiguousarray(_LAYOUTS[kind][0](np.asarray(ops.convert_to_numpy(variable))))
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Any], source: str = "state dict", ignore_mismatched_sizes: bool = False
    ) -> None:
        """Load a PyTorch-layout state dict (numpy arrays or torch tensors) of either class.

        The same rules as the PyTorch models' ``load_checkpoint_state_dict``: a classifier checkpoint
        loads into the base model (heads dropped); a base-model checkpoint into a classifier keeps fresh
        heads (logged); ``num_batches_tracked`` is ignored; anything else that does not match raises one
        :class:`~swiftformer.CheckpointError` listing every problem.
        """
        items = self.state_items()
        own = {name: (variable, kind) for name, variable, kind in items if variable is not None}
        ignored = {name for name, variable, _ in items if variable is None}
        expected = {k: _pt_shape(kind, tuple(variable.shape)) for k, (variable, kind) in own.items()}
        state_dict = match_state_dict(
            dict(state_dict),
            expected,
            base_prefix=self.base_model_prefix,
            owner=type(self).__name__,
            source=source,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            optional=lambda key: key.endswith("num_batches_tracked") or key in ignored,
        )
        for name, value in state_dict.items():
            if name in own:
                variable, kind = own[name]
                array = _to_numpy(value)
                variable.assign(_LAYOUTS[kind][1](array).astype(keras.backend.standardize_dtype(variable.dtype)))

    # -------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) in PyTorch layout.

        The folder loads with :meth:`from_pretrained` here, with the PyTorch classes'
        ``from_pretrained`` (``SwiftFormerForImageClassification`` for a classifier) and with
        transformers. Each file is written atomically.
        """
        state = self.state_dict()

        def write_weights(target: Path) -> None:
            if safe_serialization:
                from safetensors.numpy import save

                with atomic_write(target, "wb") as handle:
                    handle.write(save(state, metadata={"format": "pt"}))
            else:
                import torch

                from ..io.checkpoints import save_state_dict_file

                save_state_dict_file({k: torch.from_numpy(v) for k, v in state.items()}, target)

        architecture = type(self).__name__.removeprefix("TF")  # the PyTorch class the file is laid out for
        return write_model_folder(save_directory, self.config, architecture, write_weights, safe_serialization)

    # -------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        config: SwiftFormerConfig | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        ignore_mismatched_sizes: bool = False,
        **config_overrides: Any,
    ):
        """Load a model folder or hub id saved by this library (either framework) or by transformers.

        Weights are read from ``model.safetensors``, else ``pytorch_model.bin`` (PyTorch layout, via
        :func:`swiftformer.weights.load_state_dict_file`), else the reference TF port's
        ``tf_model.h5``. Arguments as the PyTorch ``from_pretrained``.

        Raises:
            CheckpointError: corrupt files, or keys missing / unexpected / of the wrong shape (all
                listed in one message).
            OSError: the folder or hub repository cannot be found or reached.
        """
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
        if config is None:
            config = SwiftFormerConfig.from_pretrained(name_or_path, **hub, **config_overrides)
        elif config_overrides:
            config = SwiftFormerConfig.from_dict(config.to_dict(), **config_overrides)
        path = None
        for filename in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, TF_WEIGHTS_NAME):
            path = resolve_file(name_or_path, filename, missing_ok=True, **hub)
            if path is not None:
                break
        if path is None:
            raise FileNotFoundError(
                f"{os.fspath(name_or_path)!r} has none of {SAFE_WEIGHTS_NAME}, {WEIGHTS_NAME}, {TF_WEIGHTS_NAME}."
            )
        model = cls(config)
        model.load_state_dict(
            read_weights_file(path), source=str(path), ignore_mismatched_sizes=ignore_mismatched_sizes
        )
        return model

    # -------------------------------------------------------------- Keras training hooks
    def _primary_output(self, y_pred):
        raise NotImplementedError

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, self._primary_output(y_pred), sample_weight)

    def predict_step(self, *args, **kwargs):
        """``predict()`` returns a dict of the output's fields (``{"logits": ..., ...}``) on every backend."""
        out = super().predict_step(*args, **kwargs)
        if BACKEND == "jax":  # (outputs, non_trainable_variables)
            return _as_dict(out[0]), out[1]
        return _as_dict(out)


def _as_dict(out):
    return dict(out.items()) if isinstance(out, ModelOutput) else out


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


@keras.saving.register_keras_serializable(package="swiftformer")
class TFSwiftFormerModel(TFSwiftFormerPreTrainedModel):
    """The SwiftFormer backbone without a head, in Keras 3.

    ``model(pixel_values)`` with pixel_values (B, C, H, W) returns ``last_hidden_state`` (B, C4, h, w)
    and, with ``output_hidden_states=True``, ``hidden_states`` (NCHW; see
    :class:`~swiftformer.outputs.BaseModelOutputWithNoAttention`).
    """

    def __init__(self, config: SwiftFormerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.swiftformer = TFSwiftFormerBackbone(config, name="swiftformer")
        self.built = True

    def call(self, pixel_values, output_hidden_states=None, return_dict=None, training=None):
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        x = self._prepare_pixel_values(pixel_values)
        last, hidden = self._run_forward(x, bool(output_hidden_states), bool(training))
        hidden = hidden if output_hidden_states else None
        if not return_dict:
            return (last,) if hidden is None else (last, hidden)
        return BaseModelOutputWithNoAttention(last_hidden_state=last, hidden_states=hidden)

    def _forward(self, x, output_hidden_states, training):
        last, hidden = self.swiftformer(x, output_hidden_states=output_hidden_states, training=training)
        return _nchw(last), tuple(_nchw(h) for h in hidden or ())

    def state_items(self):
        return self.swiftformer.state_items("")

    def _primary_output(self, y_pred):
        return y_pred.last_hidden_state if isinstance(y_pred, ModelOutput) else y_pred

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, self._primary_output(y_pred), sample_weight, training)


@keras.saving.register_keras_serializable(package="swiftformer")
class TFSwiftFormerForImageClassification(TFSwiftFormerPreTrainedModel):
    """SwiftFormer with BatchNorm, global average pooling and two linear heads, in Keras 3.

    ``logits`` (B, num_labels) is the mean of ``head`` and ``dist_head`` (also returned separately as
    ``cls_logits`` and ``distillation_logits``). With ``labels``, ``loss`` follows
    ``config.problem_type`` or is inferred as the PyTorch model does: one label → regression (MSE);
    integer labels → single-label cross-entropy (-100 ignored); otherwise multi-label BCE on multi-hot
    labels. ``model.compile(optimizer=...)`` without a ``loss`` makes ``fit`` use that same loss.
    """

    def __init__(self, config: SwiftFormerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        dim = config.embed_dims[-1]
        self.swiftformer = TFSwiftFormerBackbone(config, name="swiftformer")
        self.norm = _batch_norm(dim, config.batch_norm_eps, "norm")
        if config.num_labels > 0:
            self.head_kernel = self.add_weight(
                shape=(dim, config.num_labels), initializer=_init("trunc_normal"), name="head_kernel"
            )
            self.head_bias = self.add_weight(
                shape=(config.num_labels,), initializer=_init("constant", 0.0), name="head_bias"
            )
            self.dist_head_kernel = self.add_weight(
                shape=(dim, config.num_labels), initializer=_init("trunc_normal"), name="dist_head_kernel"
            )
            self.dist_head_bias = self.add_weight(
                shape=(config.num_labels,), initializer=_init("constant", 0.0), name="dist_head_bias"
            )
        self.built = True

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def forward_head(self, last_hidden_state_nhwc, training=False):
        """(B, h, w, C4) → (cls_logits, distillation_logits), each (B, num_labels)."""
        if training:
            pooled = ops.mean(self.norm(last_hidden_state_nhwc, training=True), axis=(1, 2))
        else:  # BN is affine per channel, so it commutes with the mean
            scale, shift = _bn_fold(self.norm)
            pooled = ops.mean(last_hidden_state_nhwc, axis=(1, 2)) * scale + shift
        if self.config.num_labels == 0:
            return pooled, pooled
        return (
            _bias_add(ops.matmul(pooled, self.head_kernel), self.head_bias),
            _bias_add(ops.matmul(pooled, self.dist_head_kernel), self.dist_head_bias),
        )

    def call(self, pixel_values, labels=None, output_hidden_states=None, return_dict=None, training=None):
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        x = self._prepare_pixel_values(pixel_values)
        cls_logits, distillation_logits, hidden = self._run_forward(x, bool(output_hidden_states), bool(training))
        hidden = hidden if output_hidden_states else None
        logits = (cls_logits + distillation_logits) / 2
        loss = self.loss_for(logits, labels) if labels is not None else None
        if not return_dict:  # the reference's tuple: (loss?, logits, hidden_states?)
            output = (logits,) + ((hidden,) if hidden is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutputWithNoAttention(
            loss=loss,
            logits=logits,
            hidden_states=hidden,
            cls_logits=cls_logits,
            distillation_logits=distillation_logits,
        )

    def _forward(self, x, output_hidden_states, training):
        last, hidden = self.swiftformer(x, output_hidden_states=output_hidden_states, training=training)
        cls_logits, distillation_logits = self.forward_head(last, training=training)
        return cls_logits, distillation_logits, tuple(_nchw(h) for h in hidden or ())

    def state_items(self):
        items = self.swiftformer.state_items("swiftformer.") + _bn_items(self.norm, "norm.")
        if self.config.num_labels > 0:
            items += [
                ("head.weight", self.head_kernel, "linear"),
                ("head.bias", self.head_bias, "vector"),
                ("dist_head.weight", self.dist_head_kernel, "linear"),
                ("dist_head.bias", self.dist_head_bias, "vector"),
            ]
        return items

    # -------------------------------------------------------------- the loss
    def problem_type_for(self, labels) -> str:
        """``config.problem_type``, or the one inferred from ``num_labels`` and the label dtype."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.num_labels == 1:
            return "regression"
        if "int" in keras.backend.standardize_dtype(labels.dtype):
            return "single_label_classification"
        return "multi_label_classification"

    def loss_for(self, logits, labels):
        """The loss of ``logits`` (B, num_labels) against ``labels`` by :meth:`problem_type_for`."""
        if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
            labels = np.asarray(labels)
        batch = logits.shape[0]
        if len(labels.shape) == 0 or (batch is not None and labels.shape[0] is not None and labels.shape[0] != batch):
            raise ValueError(f"labels {tuple(labels.shape)} must have the batch size {batch} first")
        problem_type = self.problem_type_for(labels)
        if problem_type == "regression":
            labels = ops.cast(labels, logits.dtype)
            if self.num_labels == 1:
                return ops.mean(ops.square(ops.reshape(logits, (-1,)) - ops.reshape(labels, (-1,))))
            return ops.mean(ops.square(logits - labels))
        if problem_type == "single_label_classification":
            if "int" not in keras.backend.standardize_dtype(labels.dtype):
                raise ValueError(f"single-label classification needs integer class indices, got {labels.dtype} labels")
            if len(labels.shape) > 1 and any(d is not None and d != 1 for d in labels.shape[1:]):
                raise ValueError(
                    f"single-label classification needs labels of shape ({batch},), got {tuple(labels.shape)}"
                )
            concrete = _concrete(labels)
            if concrete is not None:
                flat = concrete.reshape(-1)
                bad = flat[(flat != -100) & ((flat < 0) | (flat >= self.num_labels))]  # -100: ignored, as in torch
                if bad.size:
                    raise ValueError(f"labels must be class indices in [0, {self.num_labels}), got {bad.tolist()[:10]}")
            flat = ops.reshape(ops.cast(labels, "int32"), (-1,))
            keep = ops.not_equal(flat, -100)
            per_sample = ops.sparse_categorical_crossentropy(ops.where(keep, flat, 0), logits, from_logits=True)
            keep = ops.cast(keep, logits.dtype)
            return ops.sum(per_sample * keep) / ops.sum(keep)  # the mean over non-ignored samples (NaN if none)
        if tuple(labels.shape) != tuple(logits.shape) and None not in tuple(labels.shape) + tuple(logits.shape):
            raise ValueError(
                f"multi-label classification needs multi-hot labels of shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        labels = ops.cast(labels, logits.dtype)
        # BCE with logits, stable: max(z, 0) - z y + log(1 + exp(-|z|))
        return ops.mean(ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits))))

    # -------------------------------------------------------------- Keras training hooks
    def _primary_output(self, y_pred):
        return y_pred.logits if isinstance(y_pred, ModelOutput) else y_pred

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """With a ``loss`` given to ``compile``, that loss on ``logits``; otherwise the built-in loss."""
        logits = self._primary_output(y_pred)
        if self._compile_loss is not None:
            return super().compute_loss(x, y, logits, sample_weight, training)
        if y is None:
            raise ValueError("fit()/evaluate() without a compiled loss need labels: yield (pixel_values, labels) pairs")
        if sample_weight is not None:
            raise ValueError("sample_weight needs an explicit loss: compile(loss=...) with a Keras loss")
        loss = self.loss_for(logits, y)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss


def _concrete(value) -> np.ndarray | None:
    """The value as numpy when it is concrete (eager), ``None`` inside a traced graph."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(ops.convert_to_numpy(value))
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------------
# Weight files
# ---------------------------------------------------------------------------------------------------


def read_weights_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A PyTorch-layout state dict (numpy) from ``.safetensors``, a PyTorch pickle or a reference ``.h5``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"Cannot read {path}: not a valid safetensors file, corrupt or truncated ({err})."
            ) from None
    if path.suffix == ".h5":
        return read_reference_h5(path)
    from ..io.checkpoints import load_state_dict_file  # a PyTorch pickle: needs torch (a core dependency)

    return {k: v.detach().cpu().numpy() for k, v in load_state_dict_file(path).items()}


def reference_name_to_pt(name: str, shape: tuple[int, ...]) -> tuple[str, Any]:
    """transformers' TF naming → PyTorch name, and the layout conversion of that weight.

    ``swiftformer/encoder/network_._0/blocks_._1/attn/to_query/kernel`` →
    ``swiftformer.encoder.network.0.blocks.1.attn.to_query.weight`` (``_._`` marks a list index; Keras'
    kernel/gamma/beta/moving_* are PyTorch's weight/bias/running_*). Kernels are HWIO (depth-wise:
    a grouped conv, (kh, kw, 1, C)) or (in, out); layer scales are (C,).
    """
    parts = name.replace("_._", "/").split("/")
    last = {
        "kernel": "weight",
        "gamma": "weight",
        "beta": "bias",
        "moving_mean": "running_mean",
        "moving_variance": "running_var",
    }.get(parts[-1], parts[-1])
    pt_name = ".".join([*parts[:-1], last])
    if parts[-1] == "kernel" and len(shape) == 4:
        return pt_name, lambda a: a.transpose(3, 2, 0, 1)  # HWIO (or (kh,kw,1,C)) → OIHW (or (C,1,kh,kw))
    if parts[-1] == "kernel" and len(shape) == 2:
        return pt_name, lambda a: a.T
    if last.startswith("layer_scale") and len(shape) == 1:
        return pt_name, lambda a: a.reshape(-1, 1, 1)
    return pt_name, lambda a: a


def read_reference_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The weights of a ``tf_model.h5`` saved by transformers' TFSwiftFormer* classes, as a PyTorch-layout
    state dict (a base-model file gives base-model names)."""
    try:
        import h5py
    except ImportError:
        raise ImportError(f"Reading {path} needs h5py: {INSTALL_HINT}") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise CheckpointError(f"Cannot read {path}: not a valid HDF5 file, corrupt or truncated ({err}).") from None
    state: dict[str, np.ndarray] = {}
    with handle:
        root = handle.get("model_weights", handle)
        layer_names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", [])]
        if not layer_names:
            raise CheckpointError(
                f"{path} is not a Keras 2 weights file (no layer_names): not saved by transformers' TF port?"
            )
        for layer in layer_names:
            group = root[layer]
            for weight_name in group.attrs.get("weight_names", []):
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else str(weight_name)
                array = np.asarray(group[weight_name])
                parts = weight_name.split(":")[0].split("/")
                if layer in parts:  # drop the model's own scope ("tf_swift_former_for_image_classification/")
                    parts = parts[parts.index(layer) :]
                pt_name, convert = reference_name_to_pt("/".join(parts), array.shape)
                state[pt_name] = np.ascontiguousarray(convert(array))
    if set(layer_names) == {"swiftformer"}:  # a TFSwiftFormerModel file: base-model names
        state = {k.removeprefix("swiftformer."): v for k, v in state.items()}
    return state


__all__ = [
    "TFSwiftFormerForImageClassification",
    "TFSwiftFormerModel",
    "TFSwiftFormerPreTrainedModel",
    "read_reference_h5",
    "read_weights_file",
]
