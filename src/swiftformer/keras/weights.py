"""Weights of the Keras port in PyTorch's names and layouts: the layout table, weight files in and out.

Every Keras variable is listed by its layer under the PyTorch state-dict name, with a layout *kind*
(:meth:`state_items`, ``[(name, variable, kind), ...]``); the kinds are the keys of :data:`_LAYOUTS`,
one pair of array conversions each. Loading, saving and the reference ``tf_model.h5`` reader all go
through that one table, so a folder saved here loads in the PyTorch classes and in transformers, and
PyTorch folders load here without a converter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..configuration import SwiftFormerConfig
from ..errors import CheckpointError
from ..io.checkpoints import match_state_dict, write_model_folder  # torch-free
from ..io.files import atomic_write
from ..io.hub import SAFE_WEIGHTS_NAME, WEIGHTS_NAME, resolve_file
from .ops import INSTALL_HINT, keras, ops

TF_WEIGHTS_NAME = "tf_model.h5"  # the reference TF port's weights file

StateItem = tuple[str, Any, str]  # (PyTorch state-dict name, Keras variable or None, layout kind)

# kind: (Keras array -> PyTorch array, PyTorch array -> Keras array)
_LAYOUTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "conv": (lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0)),  # HWIO <-> OIHW
    "dwconv": (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)),  # (kh,kw,C,1) <-> (C,1,kh,kw)
    "pwconv": (lambda a: a.T[:, :, None, None], lambda a: a[:, :, 0, 0].T),  # (I,O) <-> (O,I,1,1)
    "linear": (lambda a: a.T, lambda a: a.T),  # (I,O) <-> (O,I)
    "vector": (lambda a: a, lambda a: a),
    "scale": (lambda a: a[:, None, None], lambda a: a[:, 0, 0]),  # (C,) <-> (C,1,1)
}


def _pt_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape of a Keras variable of ``shape``: what a checkpoint is checked against."""
    return tuple(_LAYOUTS[kind][0](np.empty(shape, dtype=np.uint8)).shape)


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as a numpy array; a torch tensor detached and on the CPU, and float32 when numpy has no such
    dtype (bfloat16, float8: exactly representable in float32)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype.itemsize < 4 and str(value.dtype) != "torch.float16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


# ---------------------------------------------------------------------------------------------------
# A model's variables <-> a PyTorch-layout state dict
# ---------------------------------------------------------------------------------------------------


def state_dict_from_items(items: Sequence[StateItem]) -> dict[str, np.ndarray]:
    """The variables of ``items`` as numpy arrays, in PyTorch's names, layouts and key set.

    ``num_batches_tracked`` (no variable) is written as 0 so the key set is exactly PyTorch's.
    """
    out = {}
    for name, variable, kind in items:
        if variable is None:
            out[name] = np.zeros((), dtype=np.int64)
        else:
            out[name] = np.ascontiguousarray(_LAYOUTS[kind][0](np.asarray(ops.convert_to_numpy(variable))))
    return out


def load_state_dict_into(
    items: Sequence[StateItem],
    state_dict: Mapping[str, Any],
    *,
    base_prefix: str,
    owner: str,
    source: str,
    ignore_mismatched_sizes: bool,
    strict: bool = True,
    info: dict[str, Any] | None = None,
) -> None:
    """Assign a PyTorch-layout state dict (numpy arrays or torch tensors) to the variables of ``items``.

    The key matching (base model vs classifier prefixes, missing / unexpected / mismatched keys in one
    :class:`~swiftformer.CheckpointError`) is the PyTorch loader's own :func:`match_state_dict`, so both
    frameworks accept and reject the same files.
    """
    own = {name: (variable, kind) for name, variable, kind in items if variable is not None}
    ignored = {name for name, variable, _ in items if variable is None}
    expected = {k: _pt_shape(kind, tuple(variable.shape)) for k, (variable, kind) in own.items()}
    state_dict = match_state_dict(
        dict(state_dict),
        expected,
        base_prefix=base_prefix,
        owner=owner,
        source=source,
        ignore_mismatched_sizes=ignore_mismatched_sizes,
        optional=lambda key: key.endswith("num_batches_tracked") or key in ignored,
        strict=strict,
        info=info,
    )
    for name, value in state_dict.items():
        if name in own:
            variable, kind = own[name]
            array = to_numpy(value)
            variable.assign(_LAYOUTS[kind][1](array).astype(keras.backend.standardize_dtype(variable.dtype)))


# ---------------------------------------------------------------------------------------------------
# Model folders
# ---------------------------------------------------------------------------------------------------


def save_model_folder(
    save_directory: str | os.PathLike,
    config: SwiftFormerConfig,
    architecture: str,
    state: dict[str, np.ndarray],
    safe_serialization: bool,
    overwrite: bool = False,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, needs torch) atomically,
    through the same folder writer as the PyTorch models; ``architecture`` is the PyTorch class name."""

    def write_weights(target: Path) -> None:
        if safe_serialization:
            from safetensors.numpy import save

            with atomic_write(target, "wb") as handle:
                handle.write(save(state, metadata={"format": "pt"}))
        else:
            import torch

            from ..io.checkpoints import save_state_dict_file

            save_state_dict_file({k: torch.from_numpy(v) for k, v in state.items()}, target)

    config.dtype = next((str(v.dtype) for v in state.values() if v.dtype.kind == "f"), "float32")  # as transformers
    return write_model_folder(save_directory, config, architecture, write_weights, safe_serialization, overwrite)


def find_weights_file(name_or_path: str | os.PathLike, subfolder: str = "", **hub: Any) -> Path:
    """The first of ``model.safetensors``, ``pytorch_model.bin``, ``tf_model.h5`` in a folder or hub repository
    (in its ``subfolder``, if given).

    Raises:
        FileNotFoundError: none of them is there.
    """
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    for filename in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, TF_WEIGHTS_NAME):
        path = resolve_file(name_or_path, prefix + filename, missing_ok=True, **hub)
        if path is not None:
            return path
    raise FileNotFoundError(
        f"{os.fspath(name_or_path)!r} has none of {SAFE_WEIGHTS_NAME}, {WEIGHTS_NAME}, {TF_WEIGHTS_NAME}."
    )


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

    return {k: to_numpy(v) for k, v in load_state_dict_file(path).items()}


def reference_name_to_pt(name: str, shape: tuple[int, ...]) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
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
