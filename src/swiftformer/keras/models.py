"""SwiftFormer in Keras 3: TFSwiftFormerModel and TFSwiftFormerForImageClassification.

The same network as :mod:`swiftformer.modeling` and the same interface as transformers' TF classes:
NCHW ``pixel_values`` in, NCHW ``last_hidden_state`` / ``hidden_states`` out, ``logits`` the mean of
``head`` and ``dist_head``. Written with ``keras.ops`` only, so it runs on any Keras 3 backend
(TensorFlow, JAX); :mod:`swiftformer.keras.ops` picks a few TensorFlow kernels when the backend is
TensorFlow, for speed.

The package is split by role: :mod:`~swiftformer.keras.ops` (backend kernels), :mod:`~swiftformer.keras.layers`
(the blocks, channels-last, with BatchNorms and layer scales folded in inference),
:mod:`~swiftformer.keras.weights` (the PyTorch ↔ Keras layout table and weight files) and this module:
:class:`TFSwiftFormerMainLayer` (stem and encoder, transformers' name for it) and the public models.
The input is transposed to NHWC once at entry and the outputs back to NCHW; an eager TensorFlow call
runs as a cached graph (:meth:`TFSwiftFormerPreTrainedModel._run_forward`).

Weights. Every variable has the name and layout of the PyTorch state dict (:meth:`state_items` of
each layer is the one mapping table): :meth:`~TFSwiftFormerPreTrainedModel.from_pretrained` reads
PyTorch folders (``model.safetensors`` or ``pytorch_model.bin``) and the reference TF port's
``tf_model.h5``; :meth:`~TFSwiftFormerPreTrainedModel.save_pretrained` writes a PyTorch folder.

Needs the ``tf`` extra: ``pip install 'swiftformer[tf]'`` (``pip install '.[tf]'`` in a checkout).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..configuration import SwiftFormerConfig
from ..io.checkpoints import config_fields_of
from ..outputs import BaseModelOutputWithNoAttention, ImageClassifierOutputWithNoAttention, ModelOutput
from .layers import (
    TFSwiftFormerEmbeddings,
    TFSwiftFormerPatchEmbedding,
    TFSwiftFormerStage,
    _batch_norm,
    _bn_fold,
    _bn_items,
    _init,
    _StateMixin,
)
from .ops import BACKEND, Tensor, _bias_add, _nchw, _pair, keras, ops
from .weights import (
    StateItem,
    find_weights_file,
    load_state_dict_into,
    read_reference_h5,
    read_weights_file,
    save_model_folder,
    state_dict_from_items,
    to_numpy,
)

if BACKEND == "tensorflow":
    import tensorflow as tf


class TFSwiftFormerMainLayer(_StateMixin, keras.layers.Layer):
    """Stem and encoder on NHWC tensors: returns the last map and (optionally) every intermediate one.

    transformers' ``TFSwiftFormerMainLayer``: the part both models share, under the layer name
    ``swiftformer`` (the h5 and state-dict prefix). Not :class:`swiftformer.SwiftFormerBackbone`, the
    PyTorch feature-map API; this one has no config handling of its own.
    """

    def __init__(self, config: SwiftFormerConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch_embed = TFSwiftFormerPatchEmbedding(config, name="patch_embed")
        # The stages, with a downsampler between two stages where the PyTorch encoder has one.
        self.network: list[keras.layers.Layer] = []
        for i in range(config.num_stages):
            self.network.append(TFSwiftFormerStage(config, i, name=f"network_{len(self.network)}"))
            if i < config.num_stages - 1 and (
                config.downsamples[i] or config.embed_dims[i] != config.embed_dims[i + 1]
            ):
                self.network.append(TFSwiftFormerEmbeddings(config, i, name=f"network_{len(self.network)}"))
        self.built = True

    def call(
        self, x: Tensor, output_hidden_states: bool = False, training: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        # (B, H, W, C_in) → (B, H/32, W/32, C4) for the default strides; hidden states NHWC, stem first
        x = self.patch_embed(x, training=training)  # (B, H/4, W/4, C1)
        hidden_states = [x] if output_hidden_states else None
        for module in self.network:
            x = module(x, training=training)
            if hidden_states is not None:
                hidden_states.append(x)
        return x, hidden_states

    def state_items(self, prefix: str) -> list[StateItem]:
        items = self.patch_embed.state_items(prefix + "patch_embed.")
        for i, module in enumerate(self.network):
            items += module.state_items(f"{prefix}encoder.network.{i}.")
        return items


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

            with contextlib.suppress(ValueError):  # registered already
                jax.tree_util.register_pytree_node(cls, flatten, unflatten)


_register_outputs_as_tree_nodes()


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {flags: tf.function}; not on the model,
# so Keras and SavedModel tracking never see these functions


def _inference_forward(
    model_ref: weakref.ref[TFSwiftFormerPreTrainedModel], output_hidden_states: bool, pixels: Tensor
) -> tuple[Tensor, ...]:
    model = model_ref()
    assert model is not None  # traced while the model is alive: _GRAPHS drops its functions with it
    return model._forward(pixels, output_hidden_states, False)


class TFSwiftFormerPreTrainedModel(keras.Model):
    """Common base: the config, input checks, PyTorch-layout weights in and out, Keras training hooks."""

    config_class = SwiftFormerConfig
    base_model_prefix = "swiftformer"
    main_input_name = "pixel_values"

    def __init__(self, config: SwiftFormerConfig, **kwargs: Any) -> None:
        if not isinstance(config, SwiftFormerConfig):
            raise TypeError(f"config must be a SwiftFormerConfig, got {type(config).__name__}")
        super().__init__(**kwargs)
        self.config = config

    # -------------------------------------------------------------- Keras plumbing
    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(
        cls, config: dict[str, Any] | SwiftFormerConfig, custom_objects: Any = None
    ) -> TFSwiftFormerPreTrainedModel:
        """From :meth:`get_config`'s dict (Keras), or, as transformers' TF classes accept, a
        :class:`~swiftformer.SwiftFormerConfig` or its ``to_dict()``."""
        if isinstance(config, SwiftFormerConfig):
            return cls(config)
        config = dict(config)
        if "config" not in config:  # a SwiftFormerConfig.to_dict()
            return cls(SwiftFormerConfig.from_dict(config))
        return cls(SwiftFormerConfig.from_dict(config.pop("config")), **config)

    # -------------------------------------------------------------- transformers' TF model API
    def get_input_embeddings(self) -> None:
        """None: an image model has no token embeddings."""
        return None

    def get_output_embeddings(self) -> None:
        """None: no output embeddings tied to input embeddings."""
        return None

    @classmethod
    def can_generate(cls) -> bool:
        """False: SwiftFormer does not generate sequences."""
        return False

    @property
    def input_signature(self) -> dict[str, Any]:
        """``{"pixel_values": tf.TensorSpec((None, num_channels, None, None), float32)}``: the serving input
        (any batch size, height and width), as transformers' TF models declare it."""
        import tensorflow as tf  # the tf extra; the signature is a TensorFlow type on every backend

        shape = (None, self.config.num_channels, None, None)
        return {"pixel_values": tf.TensorSpec(shape, tf.float32, name="pixel_values")}

    @property
    def dummy_inputs(self) -> dict[str, Tensor]:
        """A small batch of random ``pixel_values`` at ``config.image_size`` (transformers' ``dummy_inputs``)."""
        height, width = _pair(self.config.image_size)
        pixels = np.random.default_rng(0).uniform(size=(2, self.config.num_channels, height, width))
        return {"pixel_values": ops.convert_to_tensor(pixels.astype("float32"))}

    def serving_output(self, output: ModelOutput) -> ModelOutput:
        """The output as the serving signature returns it (transformers' hook; tensors already)."""
        return output

    def prepare_tf_dataset(
        self,
        dataset: Any,
        batch_size: int = 8,
        shuffle: bool = True,
        drop_remainder: bool | None = None,
        seed: int | None = None,
    ) -> Any:
        """A batched ``tf.data.Dataset`` for ``fit`` / ``evaluate`` from a Hugging Face ``datasets.Dataset``
        (transformers' TF helper): the columns :meth:`call` takes, as dicts, and with a ``labels`` column (or
        ``label`` / ``label_ids``, as transformers' collator renames them) ``(inputs, labels)`` pairs; other
        columns (file names, raw images) are dropped. The columns are read whole into memory, so this suits datasets of preprocessed arrays that fit there."""
        import tensorflow as tf  # the tf extra: a tf.data pipeline on every backend

        takes = {"pixel_values", *inspect.signature(self.call).parameters} - {
            "training",
            "output_hidden_states",
            "return_dict",
        }
        renamed = {}
        if "labels" not in dataset.column_names:  # transformers' collator calls label / label_ids labels
            found = [name for name in ("label", "label_ids") if name in dataset.column_names]
            renamed = {found[0]: "labels"} if found else {}
        columns = [name for name in dataset.column_names if name in takes or name in renamed]
        if "pixel_values" not in columns:
            raise ValueError(
                f"prepare_tf_dataset needs a 'pixel_values' column; the dataset has {dataset.column_names}"
            )
        # Plain Python values (no datasets formatter, which may import optional frameworks), then arrays.
        rows = dataset.select_columns(columns).with_format(None)[:]  # {column: list of values}
        data = {renamed.get(name, name): np.asarray(rows[name]) for name in columns}
        # Python floats come back as float64: float32, the model's dtype, at half the memory.
        data = {name: a.astype(np.float32) if a.dtype == np.float64 else a for name, a in data.items()}
        labels = data.pop("labels", None)
        tf_dataset = tf.data.Dataset.from_tensor_slices(data if labels is None else (data, labels))
        if shuffle:
            tf_dataset = tf_dataset.shuffle(len(dataset), seed=seed)
        return tf_dataset.batch(batch_size, drop_remainder=bool(drop_remainder))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and _holds_tf_keras_symbols(args[0]):
            return _call_in_tf_keras_graph(self, args, kwargs)
        # Keras takes only tensors positionally, and converts torch tensors itself with np.asarray (which fails on
        # one that requires grad, or is bfloat16): torch tensors become arrays first; an inputs dict (or a
        # processor's BatchFeature) becomes a plain dict of arrays, its flags ({"output_hidden_states": True})
        # keyword arguments.
        if args and isinstance(args[0], Mapping):
            self._check_input_names(args[0])
            flag_names = set(inspect.signature(self.call).parameters) - {"pixel_values", "labels"}
            inputs = {k: _as_input(v) for k, v in args[0].items()}
            flags = {
                k: v
                for k, v in inputs.items()
                if k in flag_names and (v is None or isinstance(v, (bool, int, float, str)))
            }
            twice = sorted(set(flags) & set(kwargs))
            if twice:
                raise ValueError(f"{twice} given both in the inputs dict and as arguments")
            args = ({k: v for k, v in inputs.items() if k not in flags}, *args[1:])
            kwargs = {**kwargs, **flags}
        elif args:
            args = (_as_input(args[0]), *args[1:])
        if "labels" in kwargs:
            kwargs["labels"] = _as_input(kwargs["labels"])
        return super().__call__(*args, **kwargs)

    def _call_arguments(self, pixel_values: Any, given: dict[str, Any]) -> dict[str, Any]:
        """transformers' TF input conventions for ``call``'s first argument: a dict (or ``BatchFeature``) of
        named inputs, ``{"pixel_values": ..., "labels": ...}``, or a list/tuple of them in ``call``'s
        argument order; a tensor is just ``pixel_values``. Returns all of ``call``'s arguments by name."""
        names = [n for n in inspect.signature(self.call).parameters if n != "pixel_values"]
        if isinstance(pixel_values, Mapping):
            inputs = dict(pixel_values)
            self._check_input_names(inputs)
        elif isinstance(pixel_values, (list, tuple)) and pixel_values and hasattr(pixel_values[0], "shape"):
            if len(pixel_values) > 1 + len(names):
                raise ValueError(
                    f"{type(self).__name__} takes at most {1 + len(names)} inputs, got {len(pixel_values)}"
                )
            inputs = dict(zip(["pixel_values", *names], pixel_values))
        else:
            inputs = {"pixel_values": pixel_values}
        twice = sorted(k for k, v in given.items() if v is not None and inputs.get(k) is not None)
        if twice:
            raise ValueError(f"{twice} given both in the inputs dict and as arguments")
        merged = {**given, **{k: v for k, v in inputs.items() if v is not None}}
        if merged.get("pixel_values") is None:
            raise ValueError(f"{type(self).__name__} needs pixel_values")
        return merged

    def _check_input_names(self, inputs: Mapping[str, Any]) -> None:
        """ValueError naming the keys of an inputs dict that are none of :meth:`call`'s arguments."""
        names = [n for n in inspect.signature(self.call).parameters if n != "pixel_values"]
        unknown = sorted(set(inputs) - {"pixel_values", *names})
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unexpected inputs {unknown}; it takes pixel_values, {', '.join(names)}"
            )

    def build(self, input_shape: Any = None) -> None:  # every layer is built at construction
        self.built = True

    # -------------------------------------------------------------- the forward pass
    def _forward(self, x: Tensor, output_hidden_states: bool, training: bool) -> tuple[Tensor, ...]:
        """NHWC pixels → a tuple of output tensors (defined by each model)."""
        raise NotImplementedError

    def _run_forward(self, x: Tensor, output_hidden_states: bool, training: bool) -> tuple[Tensor, ...]:
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
    def _output_flags(self, output_hidden_states: bool | None, return_dict: bool | None) -> tuple[bool, bool]:
        """A call's ``output_hidden_states`` and ``return_dict``, the config's where not given (transformers' rule)."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return bool(output_hidden_states), bool(self.config.return_dict if return_dict is None else return_dict)

    def _prepare_pixel_values(self, pixel_values: Any) -> Tensor:
        """Check NCHW ``pixel_values`` (any array type) before any computation; return them NHWC in the compute dtype."""
        channels = self.config.num_channels
        if hasattr(pixel_values, "detach") and hasattr(pixel_values, "numpy"):  # a torch tensor
            pixel_values = to_numpy(pixel_values)
        if not (ops.is_tensor(pixel_values) or isinstance(pixel_values, np.ndarray) or hasattr(pixel_values, "shape")):
            raise TypeError(
                f"pixel_values must be a tensor or array of shape (batch, {channels}, height, width), got "
                f"{type(pixel_values).__name__} (use SwiftFormerImageProcessor to turn images into arrays)"
            )
        shape = tuple(pixel_values.shape)
        if len(shape) != 4 or (shape[1] is not None and shape[1] != channels):
            raise ValueError(f"pixel_values must have shape (batch, {channels}, height, width), got {shape}")
        if shape[0] == 0:
            raise ValueError(f"pixel_values holds no images (shape {shape}): call the model on a batch of at least one")
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
    def state_items(self) -> list[StateItem]:
        """``[(PyTorch state-dict name, Keras variable or None, layout kind), ...]`` for the whole model."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, in PyTorch's names, layouts and key set."""
        return state_dict_from_items(self.state_items())

    def load_state_dict(
        self,
        state_dict: Mapping[str, Any],
        source: str = "state dict",
        ignore_mismatched_sizes: bool = False,
        *,
        strict: bool = True,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Load a PyTorch-layout state dict (numpy arrays or torch tensors) of either class.

        The same rules as the PyTorch models' ``load_checkpoint_state_dict``: a classifier checkpoint
        loads into the base model (heads dropped); a base-model checkpoint into a classifier keeps fresh
        heads (logged); ``num_batches_tracked`` is ignored; anything else that does not match raises one
        :class:`~swiftformer.CheckpointError` listing every problem; with ``strict=False``
        (``from_pretrained``'s rule) missing weights are only listed in a warning and in ``info``.
        """
        load_state_dict_into(
            self.state_items(),
            state_dict,
            base_prefix=self.base_model_prefix,
            owner=type(self).__name__,
            source=source,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            strict=strict,
            info=info,
        )

    # -------------------------------------------------------------- saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        *,
        overwrite: bool = False,
        saved_model: bool = False,
        version: int = 1,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) in PyTorch layout.

        The folder loads with :meth:`from_pretrained` here, with the PyTorch classes'
        ``from_pretrained`` (``SwiftFormerForImageClassification`` for a classifier) and with
        transformers. Each file is written atomically; a folder holding a different model is refused
        unless ``overwrite=True``.

        ``saved_model=True`` also writes a TensorFlow SavedModel beside the weights, in
        ``saved_model/<version>``, as transformers' TF models do: its ``serving_default`` signature takes
        :attr:`input_signature` (``pixel_values``, NCHW, any batch and size) and returns the output fields
        as a dict (needs TensorFlow; with the JAX backend it goes through jax2tf). ``max_shard_size`` is
        accepted and ignored; uploading (``push_to_hub=True``) is not supported.
        """
        kwargs.pop("max_shard_size", None)
        kwargs.pop("signatures", None) if not saved_model else None
        if push_to_hub or kwargs:
            raise TypeError(
                f"save_pretrained does not support {['push_to_hub'] if push_to_hub else sorted(kwargs)}: this "
                "library writes local folders"
            )
        architecture = type(self).__name__.removeprefix("TF")  # the PyTorch class the file is laid out for
        directory = save_model_folder(
            save_directory, self.config, architecture, self.state_dict(), safe_serialization, overwrite
        )
        if saved_model:
            self.export_saved_model(Path(directory) / "saved_model" / str(version))
        return directory

    def export_saved_model(self, path: str | os.PathLike) -> Path:
        """Write a TensorFlow SavedModel of the inference pass to ``path``: one ``serving_default`` signature,
        ``pixel_values`` (float32, NCHW, any batch size, height and width) → a dict of the output tensors
        (``logits``, ``cls_logits``, ``distillation_logits``, or ``last_hidden_state``)."""
        spec = self.input_signature["pixel_values"]

        def serve(pixel_values: Tensor) -> dict[str, Tensor]:
            return dict(self(pixel_values, training=False, return_dict=True).items())

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint(name="serving_default", fn=serve, input_signature=[spec])
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        archive.write_out(str(path), verbose=False)
        return path

    # -------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: SwiftFormerConfig | None = None,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        **config_overrides: Any,
    ) -> TFSwiftFormerPreTrainedModel | tuple[TFSwiftFormerPreTrainedModel, dict[str, Any]]:
        """Load a model folder or hub id saved by this library (either framework) or by transformers.

        Weights are read from ``model.safetensors``, else ``pytorch_model.bin`` (PyTorch layout, via
        :func:`swiftformer.io.checkpoints.load_state_dict_file`), else the reference TF port's
        ``tf_model.h5``. Arguments as the PyTorch ``from_pretrained``; a partial checkpoint loads the same
        way (missing weights stay as initialized, listed in a warning and, with ``output_loading_info``,
        in the returned loading info).

        Raises:
            CheckpointError: corrupt files, a file holding none of the model's weights, weights the model
                does not have or of the wrong shape (all listed in one message).
            OSError: the folder or hub repository cannot be found or reached.
        """
        caller = f"{cls.__name__}.from_pretrained"
        # from_pt: transformers' TF classes need it for PyTorch weights, which are read here anyway
        config_overrides = config_fields_of(caller, SwiftFormerConfig, config_overrides, frozenset({"from_pt"}))
        name = pretrained_model_name_or_path
        hub: dict[str, Any] = dict(
            revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        if config is None:
            config = SwiftFormerConfig.from_pretrained(name, subfolder=subfolder, **hub, **config_overrides)
        elif config_overrides:
            config = SwiftFormerConfig.from_dict(config.to_dict(), **config_overrides)
        path = find_weights_file(name, subfolder=subfolder, **hub)
        model = cls(config)
        info: dict[str, Any] = {}
        model.load_state_dict(
            read_weights_file(path),
            source=str(path),
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            strict=False,
            info=info,
        )
        return (model, info) if output_loading_info else model

    # -------------------------------------------------------------- Keras training hooks
    def _primary_output(self, y_pred: Any) -> Tensor:
        """The output Keras' compiled losses and metrics see (``fit`` passes them the whole dataclass)."""
        raise NotImplementedError

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        return super().compute_metrics(x, y, self._primary_output(y_pred), sample_weight)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """``predict()`` returns a dict of the output's fields (``{"logits": ..., ...}``) on every backend."""
        out = super().predict_step(*args, **kwargs)
        if BACKEND == "jax":  # (outputs, non_trainable_variables)
            return _as_dict(out[0]), out[1]
        return _as_dict(out)


def _as_dict(out: Any) -> Any:
    return dict(out.items()) if isinstance(out, ModelOutput) else out


@keras.saving.register_keras_serializable(package="swiftformer")
class TFSwiftFormerModel(TFSwiftFormerPreTrainedModel):
    """The SwiftFormer backbone without a head, in Keras 3.

    ``model(pixel_values)`` with pixel_values (B, C, H, W) returns ``last_hidden_state`` (B, C4, h, w)
    and, with ``output_hidden_states=True``, ``hidden_states`` (NCHW; see
    :class:`~swiftformer.outputs.BaseModelOutputWithNoAttention`).
    """

    def __init__(self, config: SwiftFormerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.swiftformer = TFSwiftFormerMainLayer(config, name="swiftformer")
        self.built = True

    def call(
        self,
        pixel_values: Any = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool | None = None,
    ) -> BaseModelOutputWithNoAttention | tuple[Tensor, ...]:
        # pixel_values (B, C, H, W), or a dict / list of the arguments → last_hidden_state (B, C4, h, w),
        # hidden_states: tuple of NCHW maps
        args = self._call_arguments(
            pixel_values,
            {"output_hidden_states": output_hidden_states, "return_dict": return_dict, "training": training},
        )
        pixel_values, training = args["pixel_values"], args.get("training")
        output_hidden_states, return_dict = self._output_flags(
            args.get("output_hidden_states"), args.get("return_dict")
        )
        x = self._prepare_pixel_values(pixel_values)
        last, hidden = self._run_forward(x, output_hidden_states, bool(training))
        hidden = hidden if output_hidden_states else None
        if not return_dict:
            return (last,) if hidden is None else (last, hidden)
        return BaseModelOutputWithNoAttention(last_hidden_state=last, hidden_states=hidden)

    def _forward(self, x: Tensor, output_hidden_states: bool, training: bool) -> tuple[Tensor, ...]:
        last, hidden = self.swiftformer(x, output_hidden_states=output_hidden_states, training=training)
        return _nchw(last), tuple(_nchw(h) for h in hidden or ())

    def state_items(self) -> list[StateItem]:
        return self.swiftformer.state_items("")

    def _primary_output(self, y_pred: Any) -> Tensor:
        return y_pred.last_hidden_state if isinstance(y_pred, BaseModelOutputWithNoAttention) else y_pred

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> Tensor:
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

    def __init__(self, config: SwiftFormerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        dim = config.embed_dims[-1]
        self.swiftformer = TFSwiftFormerMainLayer(config, name="swiftformer")
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

    def forward_head(self, last_hidden_state_nhwc: Tensor, training: bool = False) -> tuple[Tensor, Tensor]:
        """(B, h, w, C4) → (cls_logits, distillation_logits), each (B, num_labels)."""
        if training:
            pooled = ops.mean(self.norm(last_hidden_state_nhwc, training=True), axis=(1, 2))  # (B, C4)
        else:  # BN is affine per channel, so it commutes with the mean
            scale, shift = _bn_fold(self.norm)
            pooled = ops.mean(last_hidden_state_nhwc, axis=(1, 2)) * scale + shift
        if self.config.num_labels == 0:
            return pooled, pooled
        return (
            _bias_add(ops.matmul(pooled, self.head_kernel), self.head_bias),
            _bias_add(ops.matmul(pooled, self.dist_head_kernel), self.dist_head_bias),
        )

    def call(
        self,
        pixel_values: Any = None,
        labels: Any = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention | tuple[Tensor, ...]:
        # pixel_values (B, C, H, W), or a dict / list of the arguments ({"pixel_values": ..., "labels": ...})
        # → logits (B, num_labels), loss (1,) with labels (transformers' TF shape), hidden_states NCHW
        given = {"labels": labels, "output_hidden_states": output_hidden_states, "return_dict": return_dict}
        args = self._call_arguments(pixel_values, {**given, "training": training})
        pixel_values, labels, training = args["pixel_values"], args.get("labels"), args.get("training")
        output_hidden_states, return_dict = self._output_flags(
            args.get("output_hidden_states"), args.get("return_dict")
        )
        x = self._prepare_pixel_values(pixel_values)
        cls_logits, distillation_logits, hidden = self._run_forward(x, output_hidden_states, bool(training))
        hidden = hidden if output_hidden_states else None
        logits = (cls_logits + distillation_logits) / 2
        loss = ops.reshape(self.loss_for(logits, labels), (1,)) if labels is not None else None
        if not return_dict:  # the reference's tuple: (loss?, logits, hidden_states?)
            output = (logits,) + ((hidden,) if hidden is not None else ())
            return (loss, *output) if loss is not None else output
        return ImageClassifierOutputWithNoAttention(
            loss=loss,
            logits=logits,
            hidden_states=hidden,
            cls_logits=cls_logits,
            distillation_logits=distillation_logits,
        )

    def _forward(self, x: Tensor, output_hidden_states: bool, training: bool) -> tuple[Tensor, ...]:
        last, hidden = self.swiftformer(x, output_hidden_states=output_hidden_states, training=training)
        cls_logits, distillation_logits = self.forward_head(last, training=training)
        return cls_logits, distillation_logits, tuple(_nchw(h) for h in hidden or ())

    def state_items(self) -> list[StateItem]:
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
    def problem_type_for(self, labels: Any) -> str:
        """``config.problem_type``, or the one inferred from ``num_labels`` and the label dtype."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.num_labels == 1:
            return "regression"
        if "int" in keras.backend.standardize_dtype(labels.dtype):
            return "single_label_classification"
        return "multi_label_classification"

    def loss_for(self, logits: Tensor, labels: Any, sample_weight: Any = None) -> Tensor:
        """The loss of ``logits`` (B, num_labels) against ``labels`` by :meth:`problem_type_for`: the mean of
        the per-sample losses, each times its ``sample_weight`` (B,) when given (Keras' convention)."""
        if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
            labels = np.asarray(labels)
        batch, rank = logits.shape[0], _rank(labels)  # rank None: traced for labels of any shape, checked as run
        if rank == 0 or (
            rank is not None and batch is not None and labels.shape[0] is not None and labels.shape[0] != batch
        ):
            raise ValueError(f"labels {tuple(labels.shape)} must have the batch size {batch} first")
        weight = None if sample_weight is None else ops.reshape(ops.cast(sample_weight, logits.dtype), (-1,))
        problem_type = self.problem_type_for(labels)
        if problem_type == "regression":
            labels = ops.cast(labels, logits.dtype)
            if self.num_labels == 1:
                per_sample = ops.square(ops.reshape(logits, (-1,)) - ops.reshape(labels, (-1,)))
            else:
                per_sample = ops.mean(ops.square(logits - labels), axis=-1)
            return ops.mean(per_sample if weight is None else per_sample * weight)
        if problem_type == "single_label_classification":
            if "int" not in keras.backend.standardize_dtype(labels.dtype):
                raise ValueError(f"single-label classification needs integer class indices, got {labels.dtype} labels")
            if rank is not None and rank > 1 and any(d is not None and d != 1 for d in labels.shape[1:]):
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
            weighted = per_sample * keep if weight is None else per_sample * keep * weight
            return ops.sum(weighted) / ops.sum(keep)  # the mean over non-ignored samples (NaN if none)
        if rank is not None and (
            tuple(labels.shape) != tuple(logits.shape) and None not in tuple(labels.shape) + tuple(logits.shape)
        ):
            raise ValueError(
                f"multi-label classification needs multi-hot labels of shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        labels = ops.cast(labels, logits.dtype)
        # BCE with logits, stable: max(z, 0) - z y + log(1 + exp(-|z|))
        per_sample = ops.mean(ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits))), axis=-1)
        return ops.mean(per_sample if weight is None else per_sample * weight)

    # -------------------------------------------------------------- Keras training hooks
    def _primary_output(self, y_pred: Any) -> Tensor:
        return y_pred.logits if isinstance(y_pred, ImageClassifierOutputWithNoAttention) else y_pred

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> Tensor:
        """With a ``loss`` given to ``compile``, that loss on ``logits``; otherwise the built-in loss, on the
        labels ``fit`` was given, or (transformers' TF convention) the ``"labels"`` of the input dict;
        ``sample_weight`` weights each sample's loss."""
        logits = self._primary_output(y_pred)
        y = _labels_of(x, y)
        if self._compile_loss is not None:
            return super().compute_loss(x, y, logits, sample_weight, training)
        if y is None:
            raise ValueError(
                "fit()/evaluate() without a compiled loss need labels: yield (pixel_values, labels) pairs or "
                "{'pixel_values': ..., 'labels': ...} dicts"
            )
        loss = self.loss_for(logits, y, sample_weight=sample_weight)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        return super().compute_metrics(x, _labels_of(x, y), y_pred, sample_weight)


def _holds_tf_keras_symbols(inputs: Any) -> bool:
    """Whether ``inputs`` (a tensor, or a dict / list of them) holds symbolic tensors of tf_keras (Keras 2),
    with which transformers 4.x's TF tools build functional models (``tf_keras.Input``)."""
    values = (
        inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (list, tuple)) else [inputs]
    )
    return any(type(v).__name__ == "KerasTensor" and type(v).__module__.startswith("tf_keras.") for v in values)


def _call_in_tf_keras_graph(model: TFSwiftFormerPreTrainedModel, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Call ``model`` on tf_keras symbolic inputs, so that it can sit in a tf_keras functional model
    (``tf_keras.Model(inputs, model(inputs)[0])``, transformers' ``test_compile_tf_model``).

    Keras 3 cannot take Keras 2's symbolic tensors, so the call is wrapped in a tf_keras layer, whose ``call``
    runs the model on the concrete (or graph) tensors tf_keras passes it. The layer holds the model as an
    attribute: tf_keras saving reaches its variables through that. Returns the outputs as a tuple (tf_keras
    layers return plain nests): ``[0]`` is ``logits`` or ``last_hidden_state``, as with the output class.
    """
    import tf_keras  # present: the inputs are its tensors

    if len(args) > 1:
        raise ValueError("with tf_keras symbolic inputs, give every input but the first as a keyword argument")

    class SwiftFormerInTFKeras(tf_keras.layers.Layer):
        def __init__(self, wrapped: TFSwiftFormerPreTrainedModel, call_kwargs: dict[str, Any]) -> None:
            super().__init__(name=wrapped.name)
            self.wrapped = wrapped  # tracked: its variables are saved with the functional model
            self.call_kwargs = tuple(call_kwargs.items())  # a tuple: tf_keras would wrap a dict for tracking

        def call(self, inputs: Any) -> Any:
            out = self.wrapped(inputs, **dict(self.call_kwargs))
            return out.to_tuple() if isinstance(out, ModelOutput) else out

    return SwiftFormerInTFKeras(model, kwargs)(args[0])


def _labels_of(x: Any, y: Any) -> Any:
    """The labels of a batch: ``y``, or its ``"labels"`` entry when it is a dict, or else the ``"labels"`` entry
    of dict inputs (transformers' TF datasets carry them in either place)."""
    if isinstance(y, Mapping):
        y = y.get("labels")
    if y is None and isinstance(x, Mapping):
        y = x.get("labels")
    return y


def _as_input(value: Any) -> Any:
    """A call's input as Keras takes it: a torch tensor or a list of numbers as a numpy array, others as given."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return to_numpy(value)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (int, float, bool, list)):
        return np.asarray(value)
    return value


def _rank(value: Any) -> int | None:
    """The number of dimensions of ``value``, or None when unknown (a graph traced with a relaxed shape)."""
    try:
        return len(value.shape)
    except (TypeError, ValueError):
        return None


def _concrete(value: Any) -> np.ndarray | None:
    """The value as numpy when it is concrete (eager), ``None`` inside a traced graph."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(ops.convert_to_numpy(value))
    except Exception:
        return None


__all__ = [
    "TFSwiftFormerForImageClassification",
    "TFSwiftFormerModel",
    "TFSwiftFormerPreTrainedModel",
    "read_reference_h5",
    "read_weights_file",
]
