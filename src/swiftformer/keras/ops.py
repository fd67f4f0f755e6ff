"""Backend kernels of the Keras port: the few operations whose fastest form depends on the backend.

Everything else in :mod:`swiftformer.keras` is written with ``keras.ops`` and runs on any Keras 3 backend;
the functions here pick a TensorFlow kernel when the backend is TensorFlow (``tf.nn.bias_add`` and
``tf.nn.conv2d``, which grappler fuses with their neighbours) and a portable one otherwise. All of them
work on channels-last tensors: the models transpose NCHW inputs to NHWC once (the fast layout of CPU
convolutions), so a 1×1 convolution is a 2-D matrix product on the ``(B·H·W, C)`` token rows.

This is also the one module that imports Keras (:func:`_import_keras`): every other module of the
package imports it from here, so a missing Keras or TensorFlow is one clear ``ImportError`` naming
``pip install '.[tf]'``, whichever module is imported first.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

INSTALL_HINT = "pip install '.[tf]'  (or: pip install 'swiftformer[tf]')"

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array), a numpy array in eager code, or a KerasTensor


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

# _conv2d: an NHWC convolution (kernel HWIO) with PyTorch's padding, ``pad`` zeros on each side (Keras'
# "same" is asymmetric at stride 2); TensorFlow takes the padding inside its Conv2D, other backends pad first.
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

    def _bias_add(x: Tensor, bias: Tensor) -> Tensor:
        return tf.nn.bias_add(x, bias)  # BiasAdd: fused with the MatMul / Conv2D before it by grappler

    def _conv2d(x: Tensor, kernel: Tensor, stride: tuple[int, int], pad: tuple[int, int]) -> Tensor:
        padding = "VALID" if pad == (0, 0) else [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]]
        return tf.nn.conv2d(x, kernel, strides=(1, *stride, 1), padding=padding)

else:

    def _in_xla() -> bool:
        return BACKEND == "jax"  # JAX always compiles with XLA

    def _bias_add(x: Tensor, bias: Tensor) -> Tensor:
        return x + bias

    def _conv2d(x: Tensor, kernel: Tensor, stride: tuple[int, int], pad: tuple[int, int]) -> Tensor:
        if pad != (0, 0):
            x = ops.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
        return ops.conv(x, kernel, strides=stride, padding="valid", data_format="channels_last")


def _depthwise_conv3x3(x: Tensor, kernel: Tensor) -> Tensor:
    """3×3 depth-wise convolution, stride 1, zero padding 1; ``kernel`` is (3, 3, C, 1).

    Under XLA (``jit_compile=True``, and the JAX backend) as nine shifted multiply-adds, which XLA fuses
    into one loop: its own depth-wise convolution is ~25x slower on CPU. Elsewhere the native kernel.
    """
    if not _in_xla():
        # NHWC whatever keras.config.image_data_format() says: the model's tensors are channels-last inside
        return ops.depthwise_conv(x, kernel, 1, "same", data_format="channels_last")
    shape = ops.shape(x)  # (B, H, W, C)
    padded = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # (B, H+2, W+2, C)
    out = None
    for i in range(3):
        for j in range(3):
            term = ops.slice(padded, (0, i, j, 0), shape) * kernel[i, j, :, 0]
            out = term if out is None else out + term
    return out


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    """The Keras function for a config's ``hidden_act`` (the same maths as :func:`modeling.build_activation`)."""
    if name == "gelu":
        return _gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: ops.gelu(x, approximate=True)
    if name == "relu":
        return ops.relu
    if name == "selu":
        return ops.selu
    if name in ("silu", "swish"):
        return ops.silu
    raise ValueError(f"Unsupported hidden_act {name!r}")


def _gelu(x: Tensor) -> Tensor:
    """Exact (erf) GELU, PyTorch's ``nn.GELU()``; Keras' default is the tanh approximation."""
    return ops.gelu(x, approximate=False)


def _linear(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None = None,
    activation: Callable[[Tensor], Tensor] | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    """``activation(x @ kernel + bias) + residual`` on 2-D (N, C) tensors: MatMul + BiasAdd + activation is
    a pattern TensorFlow's grappler fuses into one oneDNN kernel (3.5x faster than a 1×1 Conv2D + GELU)."""
    y = ops.matmul(x, kernel)
    if bias is not None:
        y = _bias_add(y, bias)
    if activation is not None:
        y = activation(y)
    return y if residual is None else y + residual


def _l2_normalize(x: Tensor, axis: int) -> Tensor:
    """``x / max(‖x‖, 1e-12)`` as torch.nn.functional.normalize."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-24))


def _nchw(x: Tensor) -> Tensor:
    """(B, H, W, C) → (B, C, H, W): the layout of transformers' outputs."""
    return ops.transpose(x, (0, 3, 1, 2))
