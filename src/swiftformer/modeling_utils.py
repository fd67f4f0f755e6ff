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
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, overload

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .configuration import SwiftFormerConfig
from .io.checkpoints import (
    config_fields_of,
    find_weights_file,
    load_state_dict_file,
    match_state_dict,
    save_state_dict_file,
    write_model_folder,
)
from .outputs import (
    BackboneOutput,
    BaseModelOutputWithNoAttention,
    ImageClassifierOutputWithNoAttention,
    ModelOutput,
    SemanticSegmenterOutput,
)

ModelT = TypeVar("ModelT", bound="SwiftFormerPreTrainedModel")

logger = logging.getLogger("swiftformer.modeling")


# ---------------------------------------------------------------------------------------------------
# Output classes as pytree nodes
# ---------------------------------------------------------------------------------------------------


def _register_outputs_as_pytree_nodes() -> None:
    """Make the output dataclasses pytree nodes (their fields that are not None, by name), so that
    ``torch.export`` (strict and non-strict), ``torch.compile`` and ``torch.func`` accept models that return
    them, as transformers registers its ``ModelOutput`` classes. Exported programs keep the output class."""
    import torch.utils._pytree as pytree

    def flatten(out: ModelOutput) -> tuple[list[Any], tuple[str, ...]]:
        names = tuple(out.keys())
        return [getattr(out, name) for name in names], names

    def flatten_with_keys(out: ModelOutput) -> tuple[list[tuple[Any, Any]], tuple[str, ...]]:
        names = tuple(out.keys())
        return [(pytree.GetAttrKey(name), getattr(out, name)) for name in names], names

    outputs = (BaseModelOutputWithNoAttention, ImageClassifierOutputWithNoAttention, BackboneOutput)
    for cls in (*outputs, SemanticSegmenterOutput):
        if cls in pytree.SUPPORTED_NODES:
            continue

        def unflatten(values: Iterable[Any], names: tuple[str, ...], cls: type = cls) -> ModelOutput:
            return cls(**dict(zip(names, values)))

        pytree.register_pytree_node(
            cls,
            flatten,
            unflatten,
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
            flatten_with_keys_fn=flatten_with_keys,
            to_dumpable_context=list,  # JSON (torch.export.save) has no tuples
            from_dumpable_context=tuple,
        )


_register_outputs_as_pytree_nodes()


# ---------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------


# transformers' generic forward keywords that mean nothing for SwiftFormer (no attention maps, no heads to mask, no
# position embeddings): accepted and ignored, as transformers' SwiftFormer takes **kwargs.
IGNORED_FORWARD_KWARGS = frozenset({"output_attentions", "head_mask", "interpolate_pos_encoding"})


def check_forward_kwargs(kwargs: dict[str, Any]) -> None:
    """TypeError naming the keywords of a ``forward`` call that are neither its own nor :data:`IGNORED_FORWARD_KWARGS`
    (a typo such as ``output_hidden_state`` must not be ignored)."""
    unknown = sorted(set(kwargs) - IGNORED_FORWARD_KWARGS)
    if unknown:
        raise TypeError(f"forward() got unexpected keyword argument(s) {unknown}")


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


def uncompiled(model: Any) -> Any:
    """The module inside ``torch.compile``'s wrapper (its ``_orig_mod``), or ``model`` itself if not compiled."""
    return getattr(model, "_orig_mod", model)


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


def _checkpoint_contexts(
    block: nn.Module,
) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
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
    """Common base: holds the config, initializes weights as transformers does, loads and saves folders.

    Besides ``from_pretrained`` / ``save_pretrained`` it carries the parts of transformers'
    ``PreTrainedModel`` interface that its tools (``Trainer``, ``pipeline``, PEFT) read: ``base_model``,
    ``can_generate()``, ``get_input_embeddings()`` / ``get_output_embeddings()`` (None: an image model has
    no token embeddings), ``enable_input_require_grads()``, ``num_parameters()``, and the class attributes
    below, declared empty.
    """

    config_class = SwiftFormerConfig
    base_model_prefix = "swiftformer"
    main_input_name = "pixel_values"
    # forward takes **kwargs (transformers' generic keywords, ignored), but its loss is a batch mean: transformers'
    # Trainer must not pass num_items_in_batch and must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False
    supports_gradient_checkpointing = True
    # transformers' declarative class attributes, read by its Trainer, pipelines and loaders: nothing to declare.
    _no_split_modules: ClassVar[list[str]] = []
    _keep_in_fp32_modules: frozenset[str] = frozenset()
    _keep_in_fp32_modules_strict: frozenset[str] = frozenset()
    _keys_to_ignore_on_load_missing: list[str] | None = None
    _keys_to_ignore_on_load_unexpected: list[str] | None = None
    _keys_to_ignore_on_save: list[str] | None = None
    _tied_weights_keys: list[str] | None = None
    _supports_sdpa = _supports_flash_attn = _supports_flex_attn = False
    is_parallelizable = False

    def __init__(self, config: SwiftFormerConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
        config.validate(architecture_only=True)  # a config edited after construction (use_layer_scale=0.5) is checked
        self.config = config

    def post_init(self) -> None:
        """Called at the end of each model's ``__init__`` (transformers' name): initialize the weights, and
        honour the legacy ``config.gradient_checkpointing = True`` flag of older transformers configs."""
        self.init_weights()
        if getattr(self.config, "gradient_checkpointing", False) is True:
            self.gradient_checkpointing_enable()
            # Consumed, as transformers does: a folder saved from this model must not switch it on again.
            delattr(self.config, "gradient_checkpointing")  # an extra key: no attribute of the class

    # -------------------------------------------------------------- transformers' model API
    @property
    def base_model(self) -> nn.Module:
        """The backbone (``self.swiftformer``) of a model with heads, the model itself otherwise."""
        return getattr(self, self.base_model_prefix, self)

    @classmethod
    def can_generate(cls) -> bool:
        """False: SwiftFormer does not generate sequences (transformers' pipelines and Trainer ask)."""
        return False

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """False: the additive attention has one implementation (transformers' hook)."""
        return False

    @classmethod
    def _can_set_experts_implementation(cls) -> bool:
        """False: no mixture-of-experts layers (transformers' hook)."""
        return False

    def get_input_embeddings(self) -> nn.Module | None:
        """None: an image model has no token embeddings to return or resize."""
        return None

    def get_output_embeddings(self) -> nn.Module | None:
        """None: no output embeddings tied to input embeddings."""
        return None

    def set_input_embeddings(self, value: nn.Module) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no input embeddings to replace")

    def enable_input_require_grads(self) -> None:
        """Make the stem's output require gradients, so that gradient checkpointing still back-propagates into
        trainable blocks when the stem is frozen (transformers' method, for PEFT adapters)."""
        self.disable_input_require_grads()
        stem = getattr(self.base_model, "patch_embed", None)
        if stem is not None:
            self._require_grads_hook = stem.register_forward_hook(lambda module, inputs, out: out.requires_grad_(True))

    def disable_input_require_grads(self) -> None:
        """Undo :meth:`enable_input_require_grads`."""
        hook = self.__dict__.pop("_require_grads_hook", None)
        if hook is not None:
            hook.remove()

    @classmethod
    def _from_config(
        cls: type[ModelT], config: SwiftFormerConfig, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> ModelT:
        """A freshly initialized model (transformers' ``_from_config``); ``attn_implementation`` is accepted
        as ``"eager"`` only: SwiftFormer has a single attention implementation."""
        _check_attn_implementation(kwargs.pop("attn_implementation", None))
        if kwargs:
            raise TypeError(f"_from_config got unexpected arguments {sorted(kwargs)}")
        model = cls(config)
        return model.to(dtype) if dtype is not None else model

    # -------------------------------------------------------------- init
    @torch.no_grad()
    def _init_module(self, module: nn.Module) -> None:
        reset_parameters = getattr(module, "reset_parameters", None)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif reset_parameters is not None:  # BatchNorm2d; the layers' layer scales and w_g
            reset_parameters()

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

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """The number of parameters (only those with ``requires_grad``, with ``only_trainable``; there are no
        embeddings to exclude)."""
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
        for stage in self._checkpointed_stages():
            stage.gradient_checkpointing, stage.checkpoint_kwargs = True, kwargs

    def gradient_checkpointing_disable(self) -> None:
        """Store every activation again (the default)."""
        for stage in self._checkpointed_stages():
            stage.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether :meth:`gradient_checkpointing_enable` is in effect (it acts in training mode only)."""
        return any(stage.gradient_checkpointing for stage in self._checkpointed_stages())

    def _checkpointed_stages(self) -> list[Any]:
        """The modules with a ``gradient_checkpointing`` switch (the stages; found by the attribute, so typed Any)."""
        return [module for module in self.modules() if hasattr(module, "gradient_checkpointing")]

    # transformers 5's names for the same switches
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """:meth:`gradient_checkpointing_enable` (transformers 5 name)."""
        self.gradient_checkpointing_enable(activation_checkpointing_kwargs)

    def activation_checkpointing_disable(self) -> None:
        """:meth:`gradient_checkpointing_disable` (transformers 5 name)."""
        self.gradient_checkpointing_disable()

    @property
    def is_activation_checkpointing(self) -> bool:
        """:attr:`is_gradient_checkpointing` (transformers 5 name)."""
        return self.is_gradient_checkpointing

    # -------------------------------------------------------------- saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        *,
        overwrite: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> Path | None:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``), each atomically.

        The folder loads with :meth:`from_pretrained` here and with transformers'
        ``SwiftFormerForImageClassification.from_pretrained``. A folder holding a different model (other
        architecture or labels) is refused with a ``FileExistsError`` unless ``overwrite=True``.

        transformers' arguments: ``state_dict`` saves those tensors instead of the model's own;
        ``is_main_process=False`` writes nothing (distributed training); ``max_shard_size`` is accepted and
        ignored (the models are small: one file). Uploading (``push_to_hub=True``) is not supported.
        """
        kwargs.pop("max_shard_size", None)
        if push_to_hub or kwargs:
            raise TypeError(
                f"save_pretrained does not support {['push_to_hub'] if push_to_hub else sorted(kwargs)}: this "
                "library writes local folders (upload one with huggingface_hub's upload_folder)"
            )
        if not is_main_process:
            return None
        state = self.state_dict() if state_dict is None else state_dict
        self.config.dtype = _floating_dtype(state)  # the weights' dtype, recorded as transformers does
        return write_model_folder(
            save_directory,
            self.config,
            type(self).__name__,
            lambda path: save_state_dict_file(state, path),
            safe_serialization,
            overwrite,
        )

    # -------------------------------------------------------------- loading
    # The model, or with output_loading_info=True the model and its loading info (for type checkers).
    @overload
    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        pretrained_model_name_or_path: str | os.PathLike | None,
        *model_args: Any,
        output_loading_info: Literal[False] = ...,
        **kwargs: Any,
    ) -> ModelT: ...
    @overload
    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        pretrained_model_name_or_path: str | os.PathLike | None,
        *model_args: Any,
        output_loading_info: Literal[True],
        **kwargs: Any,
    ) -> tuple[ModelT, dict[str, Any]]: ...
    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        pretrained_model_name_or_path: str | os.PathLike | None,
        *model_args: Any,
        config: SwiftFormerConfig | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        dtype: torch.dtype | str | None = None,
        device_map: str | int | torch.device | None = None,
        **config_overrides: Any,
    ) -> ModelT | tuple[ModelT, dict[str, Any]]:
        """Load a model folder or hub id (``"MBZUAI/swiftformer-xs"``) saved here or by transformers.

        A *partial* checkpoint loads as in transformers: the weights it lacks stay as initialized, listed in a
        logged warning and in the loading info. A file holding none of the model's weights, weights the model
        does not have (another architecture, a renamed layout) or weights of the wrong shape are an error.

        Args:
            pretrained_model_name_or_path: Local folder with ``config.json`` and ``model.safetensors`` (or a
                legacy ``pytorch_model.bin``), or a hub repository id; None with ``config`` and
                ``state_dict``.
            config: Use this config instead of the folder's ``config.json``.
            state_dict: Load these weights instead of the folder's weights file.
            subfolder: The model's folder inside the folder or hub repository.
            revision, cache_dir, local_files_only, token: hub download options (huggingface_hub).
                ``HF_HUB_OFFLINE=1`` is honoured.
            ignore_mismatched_sizes: Re-initialize weights whose shape differs from the checkpoint's
                (e.g. the heads, after ``num_labels=`` changed) instead of raising.
            output_loading_info: Also return transformers' loading info, ``{"missing_keys",
                "unexpected_keys", "mismatched_keys", "error_msgs"}``.
            dtype: Cast the loaded model to this dtype (``"auto"``: the checkpoint's floating dtype).
                ``torch_dtype`` is the older name.
            device_map: A single device to move the model to (``"cpu"``, ``"cuda:0"``, ``0``); "auto" and
                per-module maps are not supported.
            **config_overrides: Config fields to change, e.g. ``num_labels=10``, ``id2label=...``.
                transformers' loading options that do not apply here (``trust_remote_code``,
                ``use_safetensors``, ``low_cpu_mem_usage``, ``force_download`` ...) are accepted and ignored;
                ``attn_implementation`` may only be ``"eager"``.

        Returns:
            The model in eval mode, and with ``output_loading_info`` the loading info.

        Raises:
            CheckpointError: corrupt files, a file holding none of the model's weights, weights the model does
                not have or of the wrong shape (all listed in one message).
            OSError: the folder or hub repository cannot be found or reached.
            RuntimeError: called under ``torch.device("meta")`` (as transformers refuses it).
        """
        if model_args:
            raise TypeError(f"from_pretrained takes no extra positional arguments, got {len(model_args)}")
        if _default_device().type == "meta":
            # The message opens as transformers' does, so that code and tests matching that error match ours.
            raise RuntimeError(
                "You are using `from_pretrained` with a meta device context manager or "
                "`torch.set_default_device('meta')`: from_pretrained loads existing weights, which a meta model "
                "cannot hold. To build an empty model on the meta device, use `ModelClass(config)` there."
            )
        torch_dtype = config_overrides.pop("torch_dtype", None)
        dtype = dtype if dtype is not None else torch_dtype
        _check_attn_implementation(config_overrides.pop("attn_implementation", None))
        config_overrides = config_fields_of(f"{cls.__name__}.from_pretrained", cls.config_class, config_overrides)
        if device_map is not None and (
            isinstance(device_map, dict) or device_map in ("auto", "balanced", "sequential")
        ):
            raise TypeError(f"device_map={device_map!r} is not supported: pass a single device, e.g. 'cpu' or 'cuda:0'")

        name = pretrained_model_name_or_path
        hub: dict[str, Any] = dict(
            revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        if name is None and (config is None or state_dict is None):
            raise ValueError("from_pretrained(None, ...) needs both config= and state_dict=")
        if config is None:
            assert name is not None  # checked above
            config = cls.config_class.from_pretrained(name, subfolder=subfolder, **hub, **config_overrides)
        elif config_overrides:
            config = cls.config_class.from_dict(config.to_dict(), **config_overrides)
        if state_dict is None:
            assert name is not None  # checked above
            weights_path = find_weights_file(name, subfolder=subfolder, **hub)
            state_dict, source = load_state_dict_file(weights_path), str(weights_path)
        else:
            source = "the given state_dict"
        model = cls(config)
        info: dict[str, Any] = {}
        model.load_checkpoint_state_dict(
            state_dict, source=source, ignore_mismatched_sizes=ignore_mismatched_sizes, strict=False, info=info
        )
        if dtype is not None:
            model = model.to(_floating_dtype(state_dict) if dtype == "auto" else _as_dtype(dtype))
        if device_map is not None:
            model = model.to(f"cuda:{device_map}" if isinstance(device_map, int) else device_map)
        model.eval()
        return (model, info) if output_loading_info else model

    def load_checkpoint_state_dict(
        self,
        state_dict: dict[str, torch.Tensor],
        source: str = "state dict",
        ignore_mismatched_sizes: bool = False,
        *,
        strict: bool = True,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Load a transformers-layout state dict of either class (base model or classifier).

        A classifier checkpoint loads into the base model (heads dropped); a base-model checkpoint loads
        into a classifier, whose heads stay freshly initialized (logged as a warning). Anything else that
        does not match raises one :class:`CheckpointError` listing every problem; with ``strict=False``
        (``from_pretrained``'s rule) missing weights are only listed in a warning and in ``info`` (see
        :func:`~swiftformer.io.checkpoints.match_state_dict`).
        """
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        self._load_matching(state_dict, expected, source, ignore_mismatched_sizes, strict=strict, info=info)

    def _load_matching(
        self,
        state_dict: dict[str, torch.Tensor],
        expected: dict[str, tuple[int, ...]],
        source: str,
        ignore_mismatched_sizes: bool,
        *,
        strict: bool = True,
        info: dict[str, Any] | None = None,
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
            strict=strict,
            info=info,
        )
        self.load_state_dict(state_dict, strict=False)


def _check_attn_implementation(value: str | None) -> None:
    if value not in (None, "eager"):
        raise ValueError(
            f"attn_implementation={value!r} is not supported: SwiftFormer's additive attention has one "
            "implementation, 'eager'"
        )


def _default_device() -> torch.device:
    """The device new tensors go to: a ``with torch.device(...)`` context's, else the global default."""
    return torch.empty(0).device


def _as_dtype(value: torch.dtype | str) -> torch.dtype:
    dtype = getattr(torch, value.removeprefix("torch."), None) if isinstance(value, str) else value
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype={value!r} is not a floating-point torch dtype (e.g. torch.float16, 'bfloat16', 'auto')"
        )
    return dtype


def _floating_dtype(state_dict: dict[str, torch.Tensor]) -> torch.dtype:
    """``dtype="auto"``: the first floating dtype of the checkpoint (float32 if it has none)."""
    return next((v.dtype for v in state_dict.values() if v.is_floating_point()), torch.float32)
