"""The plumbing under the PyTorch models: the pretrained base class, input checks, gradient checkpointing.

:class:`SwiftFormerPreTrainedModel` holds the config, initializes weights as transformers does, loads and
saves model folders (``from_pretrained`` / ``save_pretrained``), checks ``pixel_values`` and switches
gradient checkpointing, which :func:`checkpoint_block` carries out block by block.

This module knows no concrete layer or model (:mod:`swiftformer.modeling` imports it, never the
reverse). What it needs of them it reaches through the class (``config_class``, ``base_model_prefix``)
and through the modules themselves: a module's own parameters are (re-)initialized by its
``reset_parameters()``, as in torch, and every module with a ``gradient_checkpointing`` attribute (the
stages) is switched by :meth:`~SwiftFormerPreTrainedModel.gradient_checkpointing_enable`, as in transformers.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .configuration import SwiftFormerConfig
from .io.checkpoints import (
    find_weights_file,
    load_state_dict_file,
    match_state_dict,
    save_state_dict_file,
    write_model_folder,
)

ModelT = TypeVar("ModelT", bound="SwiftFormerPreTrainedModel")


# ---------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------


def require_floating_pixels(pixel_values: torch.Tensor) -> None:
    """Raw 0-255 integer pixels would give silent garbage: one clear error instead."""
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be a floating-point tensor, got {pixel_values.dtype} "
            f"(normalize images with SwiftFormerImageProcessor first)"
        )


def check_finite_pixels(pixel_values: Any, *, allow_nonfinite: bool = False, what: str = "pixel_values") -> None:
    """Raise ``ValueError`` when floating-point ``pixel_values`` (a numpy array or torch tensor) hold NaN
    or infinite values: the model would return NaN logits without a word. ``allow_nonfinite`` lets
    them through. Integer inputs pass (they cannot hold either). Costs one pass over the input."""
    if allow_nonfinite:
        return
    array = pixel_values if isinstance(pixel_values, np.ndarray) else None
    if array is not None:
        if array.dtype.kind != "f":
            return
        bad = ~np.isfinite(array)
        if bad.any():
            nan = int(np.isnan(array).sum())
            raise ValueError(_nonfinite_message(what, nan, int(bad.sum()) - nan, array.size))
        return
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        return
    if not bool(torch.isfinite(pixel_values).all()):
        nan = int(torch.isnan(pixel_values).sum())
        total = int((~torch.isfinite(pixel_values)).sum())
        raise ValueError(_nonfinite_message(what, nan, total - nan, pixel_values.numel()))


def _nonfinite_message(what: str, nan: int, inf: int, size: int) -> str:
    return (
        f"{what} hold {nan} NaN and {inf} infinite value(s) out of {size}: the model would return NaN "
        "logits; fix the input (or pass allow_nonfinite=True to let them through)"
    )


def take_stage_indices(num_stages: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's ``indices`` rule: None → every stage, an int n → the last n, a sequence → those stages
    (negative ones count from the end). Returned sorted: intermediates come in stage order."""
    if indices is None:
        return list(range(num_stages))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= num_stages:
            raise ValueError(f"indices={indices} (the last n stages) must be in 1..{num_stages}")
        return list(range(num_stages - indices, num_stages))
    if not isinstance(indices, Sequence) or isinstance(indices, str) or not indices:
        raise ValueError(f"indices must be None, an int or a non-empty list of stage indices, got {indices!r}")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -num_stages <= i < num_stages:
            raise ValueError(
                f"indices={list(indices)!r}: {i!r} is not a stage index; valid are 0..{num_stages - 1} "
                f"(or -{num_stages}..-1)"
            )
    return sorted({i % num_stages for i in indices})


# ---------------------------------------------------------------------------------------------------
# Gradient checkpointing of one block
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Undo, on exit, whatever the BatchNorms in ``module`` did to their running statistics and
    ``num_batches_tracked`` inside the block (the computation itself is unchanged)."""
    buffers = [buf for m in module.modules() if isinstance(m, nn.BatchNorm2d) for buf in m.buffers()]
    saved = [buf.clone() for buf in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in zip(buffers, saved):
                buf.copy_(value)


def _checkpoint_contexts(block: nn.Module) -> tuple[contextlib.AbstractContextManager, ...]:
    """``context_fn`` of ``torch.utils.checkpoint``: (around the forward, around the recomputation in backward).

    The recomputation runs the block's training-mode BatchNorms a second time on the same batch; this
    keeps it from updating their running statistics a second time.
    """
    return contextlib.nullcontext(), _running_stats_kept(block)


def checkpoint_block(block: nn.Module, x: torch.Tensor, **checkpoint_kwargs: Any) -> torch.Tensor:
    """``block(x)``, keeping only the block's input: its activations are recomputed during backward.

    Args:
        block: One encoder block, (B, C, H, W) → (B, C, H, W).
        x: Its input, (B, C, H, W).
        **checkpoint_kwargs: For ``torch.utils.checkpoint.checkpoint``, as
            :meth:`SwiftFormerPreTrainedModel.gradient_checkpointing_enable` validated them.
    """
    if torch.compiler.is_compiling():
        # torch.compile accepts no plain context managers as context_fn; it traces the block
        # once and recomputes only pure ops, so running statistics are updated once anyway.
        return checkpoint(block, x, **checkpoint_kwargs)
    context_fn = functools.partial(_checkpoint_contexts, block)
    return checkpoint(block, x, context_fn=context_fn, **checkpoint_kwargs)


# ---------------------------------------------------------------------------------------------------
# The base class: config, weight init, checkpoint I/O
# ---------------------------------------------------------------------------------------------------


class SwiftFormerPreTrainedModel(nn.Module):
    """Common base: holds the config, initializes weights as transformers does, loads and saves folders."""

    config_class = SwiftFormerConfig
    base_model_prefix = "swiftformer"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    # -------------------------------------------------------------- init
    @torch.no_grad()
    def _init_module(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(module, "reset_parameters"):  # BatchNorm2d; the layers' layer scales and w_g
            module.reset_parameters()

    def init_weights(self) -> None:
        """(Re-)initialize every parameter: truncated normal (std 0.02) for conv/linear weights, zero
        biases, unit BatchNorms, and every other module's own ``reset_parameters()`` (layer scales of 1
        in conv blocks and ``layer_scale_init_value`` in encoder blocks, standard normal ``w_g``)."""
        self.apply(self._init_module)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (as transformers' ``model.dtype``)."""
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    @property
    def device(self) -> torch.device:
        """The device of the weights (as transformers' ``model.device``)."""
        return next(self.parameters()).device

    # -------------------------------------------------------------- input checks
    def _check_pixel_values(self, pixel_values: Any) -> None:
        """Clear errors for anything but a floating (B, num_channels, H, W) tensor of the weights' dtype
        that survives the model's downsampling."""
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(
                f"pixel_values must be a torch.Tensor of shape (batch, {self.config.num_channels}, height, width), "
                f"got {type(pixel_values).__name__} (use SwiftFormerImageProcessor to turn images into tensors)"
            )
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.config.num_channels}, height, width), "
                f"got {tuple(pixel_values.shape)}"
            )
        require_floating_pixels(pixel_values)
        # A data-dependent check: eager calls on real tensors only (not traced graphs, not meta shape runs).
        if pixel_values.device.type != "meta" and not torch.compiler.is_compiling():
            check_finite_pixels(pixel_values)
        weight_dtype = self.dtype
        if pixel_values.dtype != weight_dtype and not torch.is_autocast_enabled(pixel_values.device.type):
            raise ValueError(
                f"pixel_values are {pixel_values.dtype} but the model's weights are {weight_dtype}: "
                f"pass pixel_values.to(model.dtype), or run under torch.autocast"
            )
        height, width = pixel_values.shape[-2:]
        if min(self.stage_shapes(height, width)[-1]) < 1:
            raise ValueError(f"pixel_values of {height}x{width} is too small for this model's downsampling")

    def stage_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size (h, w) of each stage's output for an input of ``height`` × ``width``."""
        return self.config.stage_shapes(height, width)

    def num_parameters(self, only_trainable: bool = False) -> int:
        """The number of parameters (only those with ``requires_grad``, with ``only_trainable``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    # -------------------------------------------------------------- gradient checkpointing
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Trade compute for memory in training: keep only each encoder block's input in the forward pass
        and recompute the block in the backward pass (``torch.utils.checkpoint``, non-reentrant).

        Results are unchanged: the RNG state is restored for the recomputation, so drop path and dropout
        drop the same elements, and BatchNorm running statistics are updated once per step, as without
        checkpointing. Only active in training mode with gradients enabled; the stem and the
        downsampling layers are not checkpointed. See docs/backbone.md for measured memory.

        Args:
            gradient_checkpointing_kwargs: Keyword arguments for ``torch.utils.checkpoint.checkpoint``
                (transformers' argument): ``preserve_rng_state`` (default True), ``determinism_check``,
                ``debug``. ``use_reentrant`` must stay False.
        """
        kwargs = {"use_reentrant": False, "preserve_rng_state": True, **(gradient_checkpointing_kwargs or {})}
        unknown = set(kwargs) - {"use_reentrant", "preserve_rng_state", "determinism_check", "debug"}
        if unknown:
            raise ValueError(
                f"unsupported gradient_checkpointing_kwargs {sorted(unknown)}; "
                "valid are use_reentrant (False), preserve_rng_state, determinism_check, debug"
            )
        if kwargs["use_reentrant"]:
            raise ValueError(
                "use_reentrant=True is not supported: only non-reentrant checkpointing can keep "
                "BatchNorm running statistics from being updated twice"
            )
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):  # the stages
                module.gradient_checkpointing, module.checkpoint_kwargs = True, kwargs

    def gradient_checkpointing_disable(self) -> None:
        """Store every activation again (the default)."""
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether :meth:`gradient_checkpointing_enable` is in effect (it acts in training mode only)."""
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    # -------------------------------------------------------------- saving
    def save_pretrained(
        self, save_directory: str | os.PathLike, safe_serialization: bool = True, *, overwrite: bool = False
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``), each atomically.

        The folder loads with :meth:`from_pretrained` here and with transformers'
        ``SwiftFormerForImageClassification.from_pretrained``. A folder holding a different model (other
        architecture or labels) is refused with a ``FileExistsError`` unless ``overwrite=True``.
        """
        state = self.state_dict()
        return write_model_folder(
            save_directory,
            self.config,
            type(self).__name__,
            lambda path: save_state_dict_file(state, path),
            safe_serialization,
            overwrite,
        )

    # -------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        name_or_path: str | os.PathLike,
        *,
        config: SwiftFormerConfig | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        ignore_mismatched_sizes: bool = False,
        **config_overrides: Any,
    ) -> ModelT:
        """Load a model folder or hub id (``"MBZUAI/swiftformer-xs"``) saved here or by transformers.

        Args:
            name_or_path: Local folder with ``config.json`` and ``model.safetensors`` (or a legacy
                ``pytorch_model.bin``), or a hub repository id.
            config: Use this config instead of the folder's ``config.json``.
            revision, cache_dir, local_files_only, token: hub download options (huggingface_hub).
                ``HF_HUB_OFFLINE=1`` is honoured.
            ignore_mismatched_sizes: Re-initialize weights whose shape differs from the checkpoint's
                (e.g. the heads, after ``num_labels=`` changed) instead of raising.
            **config_overrides: Config fields to change, e.g. ``num_labels=10``, ``id2label=...``.

        Returns:
            The model in eval mode.

        Raises:
            CheckpointError: corrupt files, or keys missing / unexpected / of the wrong shape (all
                listed in one message).
            OSError: the folder or hub repository cannot be found or reached.
        """
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
        if config is None:
            config = cls.config_class.from_pretrained(name_or_path, **hub, **config_overrides)
        elif config_overrides:
            config = cls.config_class.from_dict(config.to_dict(), **config_overrides)
        weights_path = find_weights_file(name_or_path, **hub)
        model = cls(config)
        model.load_checkpoint_state_dict(
            load_state_dict_file(weights_path),
            source=str(weights_path),
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )
        return model.eval()

    def load_checkpoint_state_dict(
        self, state_dict: dict[str, torch.Tensor], source: str = "state dict", ignore_mismatched_sizes: bool = False
    ) -> None:
        """Load a transformers-layout state dict of either class (base model or classifier).

        A classifier checkpoint loads into the base model (heads dropped); a base-model checkpoint
        loads into a classifier, whose heads stay freshly initialized (logged as a warning). Anything
        else that does not match raises one :class:`CheckpointError` listing every problem.
        """
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        self._load_matching(state_dict, expected, source, ignore_mismatched_sizes)

    def _load_matching(
        self,
        state_dict: dict[str, torch.Tensor],
        expected: dict[str, tuple[int, ...]],
        source: str,
        ignore_mismatched_sizes: bool,
    ) -> None:
        """Check ``state_dict`` against ``expected`` (key → shape, a subset of this model's state dict)
        with :func:`~swiftformer.io.checkpoints.match_state_dict`, then load what matches."""
        state_dict = match_state_dict(
            state_dict,
            expected,
            base_prefix=self.base_model_prefix,
            owner=type(self).__name__,
            source=source,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )
        self.load_state_dict(state_dict, strict=False)
