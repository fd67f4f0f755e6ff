"""SwiftFormerConfig: the architecture hyper-parameters, with the fields and defaults of transformers.

A config is plain data: it validates itself at construction, round-trips through ``config.json``
(the same file transformers reads and writes, ``model_type: "swiftformer"``), and knows the four
published variants by name (:data:`VARIANTS`).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, overload

from .errors import CheckpointError
from .io.files import read_json, write_json
from .io.hub import CONFIG_NAME, resolve_file

# The four published variants (paper Table 1, transformers' hub configs, timm's model names).
VARIANTS: dict[str, dict[str, list[int]]] = {
    "xs": {"depths": [3, 3, 6, 4], "embed_dims": [48, 56, 112, 220]},
    "s": {"depths": [3, 3, 9, 6], "embed_dims": [48, 64, 168, 224]},
    "l1": {"depths": [4, 3, 10, 5], "embed_dims": [48, 96, 192, 384]},
    "l3": {"depths": [4, 4, 12, 6], "embed_dims": [64, 128, 320, 512]},
}


@overload
def variant_key(name: str, *, strict: Literal[True]) -> str: ...
@overload
def variant_key(name: str, *, strict: bool = ...) -> str | None: ...
def variant_key(name: str, *, strict: bool = False) -> str | None:
    """The :data:`VARIANTS` key a user's variant name means: ``"XS"``, ``"swiftformer-l3"``,
    ``"SwiftFormer_S"`` → ``"xs"``, ``"l3"``, ``"s"``. The one parser of variant names in the library.

    Returns None for a name that is no variant, or raises ``ValueError`` listing the variants when
    ``strict``. Callers that also accept paths check ``Path(name).exists()`` first: a folder named
    ``xs`` is a folder.
    """
    key = str(name).lower().replace("swiftformer", "").strip("-_ ")
    if key in VARIANTS:
        return key
    if strict:
        raise ValueError(f"Unknown SwiftFormer variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return None


# Names accepted for ``hidden_act`` (the activation of the MLP in each encoder block). The first four
# are the ones transformers documents; the others map to the same torch modules transformers uses.
HIDDEN_ACTS = ("gelu", "relu", "selu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish")

# "softmax": transformers' port and the first original release (March 2023): a softmax over a size-1
#            axis, so every token weight is exactly 1 and ``w_g`` has no effect. The hub checkpoints
#            ``MBZUAI/swiftformer-*`` were trained this way.
# "l2":      the original repository since July 2023 and timm: token weights (q·w_g)/√d are
#            L2-normalized over the token axis.
ATTENTION_VARIANTS = ("softmax", "l2")

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# What a config.json may ask for. A config file is input like any other: one from an untrusted folder
# must not make `info` overflow or a model allocate terabytes. Each limit is far above the published
# variants (at most 4 stages, depth 12, width 512, 1000 labels at 224x224, about 30 M parameters).
LIMITS: dict[str, int] = {
    "image_size": 8192,  # per side
    "num_channels": 1024,
    "stages": 16,  # len(depths)
    "depth": 256,  # blocks per stage
    "embed_dim": 8192,  # channels per stage
    "mlp_ratio": 32,
    "kernel": 64,  # down_patch_size, down_stride, down_pad
    "num_labels": 100_000,
    "parameters": 2_000_000_000,  # estimated from the fields above (8 GB of float32 weights)
}

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: the weights' dtype bounds the scalar fields

# Keys that carry nothing of their own here: derived from other fields, or rewritten when saving. A config.json or
# keyword argument holding them is accepted and they are dropped.
_DERIVED_KEYS = {
    "model_type",  # checked by from_dict, a class attribute
    "transformers_version",
    "use_return_dict",  # = return_dict
    "num_stages",  # = len(depths)
    "stage_names",
    "experts_implementation",
}

# What transformers' configs hold besides a model's own fields (PreTrainedConfig's common attributes, and the
# generation settings older versions kept there). Kept as attributes like any other extra key, but never
# suspected of being a misspelled field.
_TRANSFORMERS_COMMON_KEYS = {
    "architectures", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "tie_encoder_decoder", "tie_word_embeddings", "finetuning_task",
    "tokenizer_class", "prefix", "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id",
    "decoder_start_token_id", "task_specific_params", "torchscript", "pruned_heads", "tf_legacy_loss",
    "use_bfloat16", "auto_map", "label_smoothing", "max_length", "min_length", "do_sample", "early_stopping",
    "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
    "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "gradient_checkpointing",
}  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index(value: Any) -> int:
    """A label index from JSON: an int, or a string of one ("3"); not a bool or a float."""
    if _is_int(value):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError("keys must be integer indices")


def _name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError("values must be label names (strings)")


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _kind(value: Any) -> str:
    """``"a str ('abc')"``: a value's type and a short repr, for error messages."""
    text = repr(value)
    return f"{type(value).__name__} ({text[:40] + '...' if len(text) > 40 else text})"


def _is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _invalid(field: str, value: Any, why: str) -> NoReturn:
    raise ValueError(f"SwiftFormerConfig.{field}={value!r} is invalid: {why}")


# ---------------------------------------------------------------- labels
def _read_label2id(label2id: Any) -> tuple[dict[str, int], dict[str, int | str] | None]:
    """``label2id`` with integer indices, and as given when its names are strings (stored so, as transformers
    stores it), else None."""
    if not isinstance(label2id, dict):
        raise ValueError(f"SwiftFormerConfig.label2id must be a dict of name -> index, got {_kind(label2id)}")
    given = dict(label2id) if all(isinstance(k, str) for k in label2id) else None
    try:
        return {str(k): _index(v) for k, v in label2id.items()}, given
    except (TypeError, ValueError):
        raise ValueError(
            f"SwiftFormerConfig.label2id values must be integer indices, got {list(label2id.values())[:5]}"
        ) from None


def _read_id2label(id2label: Any, num_labels: int | None) -> dict[int, str]:
    """``id2label`` with integer keys 0..N-1 and string names, checked against the limit and ``num_labels``."""
    if not isinstance(id2label, dict):
        raise ValueError(f"SwiftFormerConfig.id2label must be a dict of index -> name, got {_kind(id2label)}")
    try:
        id2label = {_index(k): _name(v) for k, v in id2label.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"SwiftFormerConfig.id2label {err}: got {list(id2label.items())[:5]}") from None
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)[:10]}")
    limit = LIMITS["num_labels"]
    if len(id2label) > limit:
        raise ValueError(f"SwiftFormerConfig.id2label has {len(id2label)} labels, over the limit of {limit}")
    if num_labels is not None and num_labels != len(id2label):
        raise ValueError(f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} entries")
    return id2label


def _check_inverse(id2label: dict[int, str], label2id: dict[str, int]) -> None:
    """label2id must be id2label read backwards. A name that id2label repeats (ImageNet has two "crane")
    appears once in label2id, at any of its indices."""
    for name, index in label2id.items():
        if id2label.get(index) != name:
            found = f"id2label[{index}] = {id2label[index]!r}" if index in id2label else f"id2label has no {index}"
            raise ValueError(
                f"SwiftFormerConfig.label2id disagrees with id2label: label2id[{name!r}] = {index} but {found}"
            )
    missing = [name for name in id2label.values() if name not in label2id]
    if missing:
        raise ValueError(f"SwiftFormerConfig.label2id disagrees with id2label: it lacks {missing[:5]}")


# ---------------------------------------------------------------- backbone outputs
def _check_out_features(out_features: Any, names: list[str]) -> list[str]:
    """``out_features`` as a list, once checked against ``names`` (:attr:`SwiftFormerConfig.stage_names`)."""
    if not isinstance(out_features, (list, tuple)) or not out_features:
        _invalid("out_features", out_features, f"expected a non-empty list of names from {names}")
    for name in out_features:
        if name not in names:
            _invalid("out_features", out_features, f"{name!r} is not a stage name; valid names are {names}")
    if len(set(out_features)) != len(out_features):
        _invalid("out_features", out_features, "contains duplicates")
    if list(out_features) != [n for n in names if n in out_features]:
        _invalid("out_features", out_features, f"must follow the order of {names}")
    return list(out_features)


def _check_out_indices(out_indices: Any, names: list[str]) -> list[int]:
    """``out_indices`` as non-negative indices into ``names``, once checked."""
    if not isinstance(out_indices, (list, tuple)) or not out_indices:
        _invalid("out_indices", out_indices, f"expected a non-empty list of indices into {names}")
    for index in out_indices:
        if not _is_int(index) or not -len(names) <= index < len(names):
            valid = f"valid indices are 0..{len(names) - 1} (or -{len(names)}..-1)"
            _invalid("out_indices", out_indices, f"{index!r} is not an index of stage_names {names}; {valid}")
    positive = [i % len(names) for i in out_indices]
    if len(set(positive)) != len(positive):
        _invalid("out_indices", out_indices, f"contains duplicates (as non-negative indices: {positive})")
    if positive != sorted(positive):
        _invalid("out_indices", out_indices, f"must be increasing (the order of {names})")
    return positive


class SwiftFormerConfig:
    """Configuration of a SwiftFormer model; the defaults give ``MBZUAI/swiftformer-xs``.

    Args:
        image_size: Nominal input resolution (the models accept any size the convolutions accept).
        num_channels: Input channels.
        depths: Blocks per stage; each stage is ``depth - 1`` ConvEncoders then one encoder block
            with efficient additive attention.
        embed_dims: Channels per stage.
        mlp_ratio: Hidden width of the MLPs and ConvEncoders, as a multiple of the stage width.
        downsamples: Whether to downsample (``down_stride``) between stage ``i`` and ``i + 1``; a
            projection is also inserted where the widths differ.
        hidden_act: Activation of the encoder blocks' MLP, one of :data:`HIDDEN_ACTS`.
        down_patch_size, down_stride, down_pad: Kernel, stride and padding of the downsampling convs.
        drop_path_rate: Stochastic-depth rate, increasing linearly over all blocks to this value.
        drop_mlp_rate: Dropout rate inside the encoder blocks' MLP.
        drop_conv_encoder_rate: Dropout rate of the ConvEncoder residual branch (see the model's
            docs for how this library applies it).
        use_layer_scale: Whether the encoder blocks scale their attention and MLP branches.
        layer_scale_init_value: Initial value of those scales.
        batch_norm_eps: Epsilon of every BatchNorm.
        attention_variant: ``"softmax"`` (transformers and the hub checkpoints) or ``"l2"`` (the
            original repository since July 2023 and timm); see :data:`ATTENTION_VARIANTS`.
        num_labels, id2label, label2id, problem_type: Classification head settings, as in transformers
            (``num_labels`` defaults to 2 when no ``id2label`` is given).
        output_hidden_states, return_dict: Default output options of the models' ``forward``.
        out_features: Feature maps :class:`~swiftformer.SwiftFormerBackbone` returns, by name from
            :attr:`stage_names` (``"stem"``, ``"stage1"`` ... ``"stageN"``), in that order. Only one of
            ``out_features`` and ``out_indices`` is needed; the other is derived (transformers' rules).
            Neither: the last stage only.
        out_indices: The same selection as indices into :attr:`stage_names` (0 is the stem, 1..N the
            stages; negative values count from the end and are stored as positive ones).
        backbone_norm: Whether the backbone passes each returned feature map through its own
            BatchNorm (``hidden_states_norms.<name>``), as the original repository's detection and
            segmentation backbone does (``fork_feat``). Off by default; classifier checkpoints have no
            such norms, so they start freshly initialized.

    Raises:
        ValueError: naming the field and the bad value, for any inconsistent or out-of-range setting.
    """

    model_type = "swiftformer"

    def __init__(
        self,
        image_size: int | Sequence[int] = 224,
        num_channels: int = 3,
        depths: Sequence[int] = (3, 3, 6, 4),
        embed_dims: Sequence[int] = (48, 56, 112, 220),
        mlp_ratio: float = 4,
        downsamples: Sequence[bool] = (True, True, True, True),
        hidden_act: str = "gelu",
        down_patch_size: int | Sequence[int] = 3,
        down_stride: int | Sequence[int] = 2,
        down_pad: int | Sequence[int] = 1,
        drop_path_rate: float = 0.0,
        drop_mlp_rate: float = 0.0,
        drop_conv_encoder_rate: float = 0.0,
        use_layer_scale: bool = True,
        layer_scale_init_value: float = 1e-5,
        batch_norm_eps: float = 1e-5,
        attention_variant: str = "softmax",
        num_labels: int | None = None,
        id2label: dict[int, str] | None = None,
        label2id: dict[str, int] | None = None,
        problem_type: str | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        out_features: Sequence[str] | None = None,
        out_indices: Sequence[int] | None = None,
        backbone_norm: bool = False,
        output_attentions: bool = False,
        **extra: Any,
    ) -> None:
        # Lists and tuples become lists; anything else is kept as given, for validate() to name it.
        self.image_size = _listed(image_size)
        self.num_channels = num_channels
        self.depths = _listed(depths)
        self.embed_dims = _listed(embed_dims)
        self.mlp_ratio = mlp_ratio
        self.downsamples = _listed(downsamples)
        self.hidden_act = hidden_act
        self.down_patch_size = _listed(down_patch_size)
        self.down_stride = _listed(down_stride)
        self.down_pad = _listed(down_pad)
        self.drop_path_rate = drop_path_rate
        self.drop_mlp_rate = drop_mlp_rate
        self.drop_conv_encoder_rate = drop_conv_encoder_rate
        self.use_layer_scale = use_layer_scale
        self.layer_scale_init_value = layer_scale_init_value
        self.batch_norm_eps = batch_norm_eps
        self.attention_variant = attention_variant
        self.problem_type = problem_type
        self.output_hidden_states = output_hidden_states
        self.return_dict = return_dict
        self.backbone_norm = backbone_norm
        # As given until validate() checks them and stores both as lists (anything else, for it to name).
        self._out_features: Any = list(out_features) if isinstance(out_features, (list, tuple)) else out_features
        self._out_indices: Any = list(out_indices) if isinstance(out_indices, (list, tuple)) else out_indices
        # The default selection (the last stage, also as a saved config.json spells it) follows the number of
        # stages when depths change later (config.depths = [...]; update()); a chosen one is checked against them.
        last = len(self.depths) if isinstance(self.depths, list) else None
        self._last_stage_selected = self._out_features in (None, [f"stage{last}"]) and self._out_indices in (
            None,
            [last],
        )
        self.output_attentions = output_attentions
        self._set_labels(num_labels, id2label, label2id)
        self._keep_extra(extra)
        self.validate()

    def _keep_extra(self, extra: dict[str, Any]) -> None:
        """transformers' rule for keys that are no field: each becomes an attribute, saved with the config.

        ``dtype`` / ``torch_dtype`` become :attr:`dtype`; ``name_or_path`` and ``_commit_hash`` are kept but
        not saved; :data:`_DERIVED_KEYS` and other private (``_``-prefixed) keys are dropped. A key that
        names a method or property of the class is ignored with a warning; one that looks like a
        misspelled field (``embed_dim``) is kept, with a warning naming the field.
        """
        extra = dict(extra)
        dtype, torch_dtype = extra.pop("dtype", None), extra.pop("torch_dtype", None)
        self.dtype = dtype if dtype is not None else torch_dtype
        self.name_or_path = extra.pop("name_or_path", extra.pop("_name_or_path", ""))
        self._commit_hash = extra.pop("_commit_hash", None)
        # transformers' attention-implementation switch: recorded (SwiftFormer has one implementation), not saved.
        self._attn_implementation = extra.pop("attn_implementation", extra.pop("_attn_implementation", None))
        ignored, misspelled = [], []
        for key, value in extra.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"SwiftFormerConfig: {key!r} is not a valid attribute name for a config key")
            if key in _DERIVED_KEYS or key.startswith("_"):
                continue
            attribute = getattr(type(self), key, None)
            if callable(attribute) or isinstance(attribute, property):  # setting it would break the config
                ignored.append(key)
                continue
            setattr(self, key, value)
            if key not in _TRANSFORMERS_COMMON_KEYS:
                close = difflib.get_close_matches(key, _FIELD_NAMES, n=1, cutoff=0.8)
                misspelled += [f"{key} (did you mean {close[0]}?)"] if close else []
        if ignored:
            warnings.warn(
                f"SwiftFormerConfig ignores keys that name its methods or properties: {', '.join(sorted(ignored))}",
                UserWarning,
                stacklevel=3,
            )
        if misspelled:
            warnings.warn(
                f"SwiftFormerConfig keeps keys that are not fields as attributes: {', '.join(misspelled)}",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ labels
    def _set_labels(
        self, num_labels: int | None, id2label: dict[Any, str] | None, label2id: dict[str, Any] | None
    ) -> None:
        limit = LIMITS["num_labels"]
        if num_labels is not None and (not _is_int(num_labels) or not 0 <= num_labels <= limit):
            raise ValueError(
                f"SwiftFormerConfig.num_labels must be an integer in [0, {limit}], got {_kind(num_labels)}"
            )
        given_label2id: dict[str, int | str] | None = None
        if label2id is not None:
            label2id, given_label2id = _read_label2id(label2id)
            if id2label is None and num_labels in (None, len(label2id)) and label2id:
                # label2id alone: it names the outputs (transformers would keep LABEL_i beside it).
                id2label = {i: name for name, i in label2id.items()}
        if id2label is not None:
            id2label = _read_id2label(id2label, num_labels)
        else:
            num_labels = 2 if num_labels is None else num_labels
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        if label2id is None:
            label2id = {name: i for i, name in id2label.items()}
        _check_inverse(id2label, label2id)
        self.id2label: dict[int, str] = id2label
        # As given (an index may be a digit string, "0", as transformers keeps it), else derived from id2label.
        self.label2id: dict[str, int | str] = dict(label2id) if given_label2id is None else given_label2id

    @property
    def num_labels(self) -> int:
        """Number of classes; setting it to a new value resets the labels to ``LABEL_i``."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != self.num_labels:
            self._set_labels(value, None, None)

    @property
    def use_return_dict(self) -> bool:
        """Alias of ``return_dict`` (transformers 4.x name)."""
        return self.return_dict

    # ------------------------------------------------------------ transformers' config API
    sub_configs: ClassVar[dict[str, type]] = {}  # no nested configs (transformers' class attribute)
    _commit_hash: str | None = None  # the hub revision a config was read from (transformers' attribute)
    is_encoder_decoder = False  # transformers' common attributes, for its tools that read them
    base_model_tp_plan = None  # no tensor-parallel plan
    has_no_defaults_at_init = False  # SwiftFormerConfig() is a valid config (transformers 4.x attribute)
    # Outputs transformers' Trainer leaves out of predictions: the two heads' own logits (`logits` is their mean)
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["cls_logits", "distillation_logits"]

    @property
    def dtype(self) -> Any:
        """The weights' dtype recorded in the config (transformers' ``dtype``, formerly ``torch_dtype``), or None.

        A ``torch.dtype`` once torch is imported (as transformers gives it), else its name (``"float16"``);
        saved as the name. It is a record only: the models keep the dtype their weights are in.
        """
        if self._dtype is None:
            return None
        torch = sys.modules.get("torch")
        value = getattr(torch, self._dtype, None) if torch is not None else None
        return value if value is not None and type(value).__name__ == "dtype" else self._dtype

    @dtype.setter
    def dtype(self, value: Any) -> None:
        name = None if value is None else str(value).removeprefix("torch.")
        if name is not None and not name.isidentifier():
            raise ValueError(f"SwiftFormerConfig.dtype={value!r} is invalid: expected a dtype name such as 'float32'")
        self._dtype = name

    @property
    def torch_dtype(self) -> Any:
        """:attr:`dtype` under its transformers 4.x name."""
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value: Any) -> None:
        self.dtype = value

    @property
    def name_or_path(self) -> str:
        """The folder or hub id the config was loaded from (``""`` for a new one); not saved."""
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: Any) -> None:
        self._name_or_path = str(value)

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> SwiftFormerConfig:
        """The config itself: SwiftFormer has no text sub-config (transformers' API)."""
        return self

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set each key of ``config_dict`` as an attribute (transformers' ``update``), then validate."""
        for key, value in config_dict.items():
            setattr(self, key, value)
        self.validate()

    def __iter__(self):
        """The keys of :meth:`to_dict` (transformers' configs iterate over their attribute names)."""
        return iter(self.to_dict())

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    # ------------------------------------------------------------ backbone outputs
    @property
    def stage_names(self) -> list[str]:
        """``["stem", "stage1", ..., "stageN"]``: what ``out_features`` and ``out_indices`` select from."""
        return ["stem"] + [f"stage{i}" for i in range(1, self.num_stages + 1)]

    @property
    def out_features(self) -> list[str]:
        """Names of the backbone's feature maps; setting it re-derives ``out_indices`` (as transformers)."""
        return list(self._out_features)

    @out_features.setter
    def out_features(self, value: Sequence[str] | None) -> None:
        self._set_out_features(value, None)
        self._last_stage_selected = value is None

    @property
    def out_indices(self) -> list[int]:
        """Indices into :attr:`stage_names` of the backbone's feature maps; setting it re-derives ``out_features``."""
        return list(self._out_indices)

    @out_indices.setter
    def out_indices(self, value: Sequence[int] | None) -> None:
        self._set_out_features(None, value)
        self._last_stage_selected = value is None

    def _set_out_features(self, out_features: Any, out_indices: Any) -> None:
        """Check ``out_features``/``out_indices`` against :attr:`stage_names` and store both, aligned."""
        names = self.stage_names
        if out_features is not None:
            out_features = _check_out_features(out_features, names)
        if out_indices is not None:
            out_indices = _check_out_indices(out_indices, names)
        if out_features is not None and out_indices is not None:
            selected = [names[i] for i in out_indices]
            if out_features != selected:
                why = f"selects {selected} but out_features={out_features}; give one, or both for the same stages"
                _invalid("out_indices", out_indices, why)
        elif out_features is not None:
            out_indices = [names.index(n) for n in out_features]
        elif out_indices is not None:
            out_features = [names[i] for i in out_indices]
        else:
            out_features, out_indices = [names[-1]], [len(names) - 1]
        self._out_features, self._out_indices = out_features, out_indices

    def stage_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size (h, w) of each stage's output for an input of ``height`` × ``width``.

        The stem halves twice (3×3, stride 2, padding 1); each downsampling layer between stages uses
        ``down_patch_size``/``down_stride``/``down_pad``. A size below 1 means the input is too small.
        """

        def conv(size: int, kernel: int, stride: int, pad: int) -> int:
            return (size + 2 * pad - kernel) // stride + 1

        def pair(value: int | list[int]) -> tuple[int, int]:
            return (value, value) if isinstance(value, int) else (value[0], value[1])

        h, w = conv(conv(height, 3, 2, 1), 3, 2, 1), conv(conv(width, 3, 2, 1), 3, 2, 1)
        shapes = [(h, w)]
        (kh, kw), (sh, sw), (ph, pw) = pair(self.down_patch_size), pair(self.down_stride), pair(self.down_pad)
        for i in range(self.num_stages - 1):
            if self.downsamples[i] or self.embed_dims[i] != self.embed_dims[i + 1]:
                h, w = conv(h, kh, sh, ph), conv(w, kw, sw, pw)
            shapes.append((h, w))
        return shapes

    # -------------------------------------------------------------- validation
    def validate(self, *, architecture_only: bool = False) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one. ``architecture_only`` skips the
        loss settings (``problem_type`` against ``num_labels``), which a model checks when it computes a loss."""
        self._check_stages()
        self._check_layers()
        self._check_block_settings()
        self._check_outputs(architecture_only)
        if self._last_stage_selected:  # the last stage, however many stages there are now
            self._set_out_features(None, None)
        else:
            self._set_out_features(self._out_features, self._out_indices)  # checks, and derives the missing one

    def _fail(self, field: str, why: str) -> NoReturn:
        _invalid(field, getattr(self, field), why)

    def _check_ints(self, field: str, value: Any, *, length: int | None = None, minimum: int = 1, maximum: int) -> None:
        """An integer in [minimum, maximum], or (when ``length``) a list of them; a ``length`` of 2 also
        accepts a single integer (a square / the same for height and width)."""
        rule = f"integers in [{minimum}, {maximum}]"
        if isinstance(value, list):
            if length is None and not value:
                self._fail(field, f"expected a non-empty list of {rule}")
            if length is not None and len(value) != length:
                self._fail(field, f"expected {length} values, got {len(value)}")
            items = value
        elif length == 2 and _is_int(value):
            items = [value]
        else:
            expected = f"a list of {rule}" if length != 2 else f"an integer or a pair of {rule}"
            self._fail(field, f"expected {expected}, got {_kind(value)}")
        for v in items:
            if not _is_int(v):
                self._fail(field, f"expected {rule}, got {_kind(v)}")
            if not minimum <= v <= maximum:
                self._fail(field, f"{v} is over the limit of {maximum}" if v > maximum else f"expected {rule}")

    def _check_stages(self) -> None:
        """The input (``image_size``, ``num_channels``) and the stages: ``depths``, ``embed_dims``, ``downsamples``."""
        self._check_ints("image_size", self.image_size, length=2, maximum=LIMITS["image_size"])
        if not _is_int(self.num_channels):
            self._fail("num_channels", f"expected an integer, got {_kind(self.num_channels)}")
        self._check_ints("num_channels", [self.num_channels], length=1, maximum=LIMITS["num_channels"])
        self._check_ints("depths", self.depths, maximum=LIMITS["depth"])
        if len(self.depths) > LIMITS["stages"]:
            self._fail("depths", f"{len(self.depths)} stages is over the limit of {LIMITS['stages']}")
        self._check_ints("embed_dims", self.embed_dims, maximum=LIMITS["embed_dim"])
        if len(self.embed_dims) != len(self.depths):
            self._fail(
                "embed_dims", f"expected one width per stage: depths={self.depths} has {len(self.depths)} stages"
            )
        if self.embed_dims[0] < 2:
            self._fail(
                "embed_dims", "the stem's first conv has embed_dims[0] // 2 channels, so embed_dims[0] must be >= 2"
            )
        if not isinstance(self.downsamples, list):
            self._fail("downsamples", f"expected a list of booleans, got {_kind(self.downsamples)}")
        if not all(isinstance(v, bool) for v in self.downsamples):
            self._fail("downsamples", "expected a list of booleans")
        if len(self.downsamples) not in (len(self.depths), len(self.depths) - 1):
            self._fail(
                "downsamples", f"expected {len(self.depths)} values (one per stage), got {len(self.downsamples)}"
            )

    def _check_layers(self) -> None:
        """The MLPs (``mlp_ratio``, ``hidden_act``), the downsampling convolutions, and the model's size."""
        if not _is_number(self.mlp_ratio):
            self._fail("mlp_ratio", f"expected a number, got {_kind(self.mlp_ratio)}")
        if not math.isfinite(self.mlp_ratio) or int(self.mlp_ratio * min(self.embed_dims)) < 1:
            self._fail("mlp_ratio", "must be finite and give MLPs at least one hidden channel")
        if self.mlp_ratio > LIMITS["mlp_ratio"]:
            self._fail("mlp_ratio", f"over the limit of {LIMITS['mlp_ratio']}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in HIDDEN_ACTS:
            self._fail("hidden_act", f"expected one of {', '.join(HIDDEN_ACTS)}")
        self._check_ints("down_patch_size", self.down_patch_size, length=2, maximum=LIMITS["kernel"])
        self._check_ints("down_stride", self.down_stride, length=2, maximum=LIMITS["kernel"])
        self._check_ints("down_pad", self.down_pad, length=2, minimum=0, maximum=LIMITS["kernel"])
        fields = ("depths", "embed_dims", "mlp_ratio", "num_labels")
        self._check_size(SwiftFormerConfig.estimated_parameters(self), fields)  # a subclass checks its head's share

    def _check_size(self, parameters: int, fields: tuple[str, ...]) -> None:
        """ValueError when ``parameters`` (estimated from ``fields``, named in the message) is over the limit."""
        if parameters > LIMITS["parameters"]:
            described = ", ".join(f"{field}={getattr(self, field)}" for field in fields)
            raise ValueError(
                f"{type(self).__name__} describes a model of about {parameters:.2g} parameters ({described}), over "
                f"the limit of {LIMITS['parameters']:.2g}"
            )

    def _check_block_settings(self) -> None:
        """The encoder blocks' dropout rates, layer scale, BatchNorm epsilon and attention variant."""
        for field in ("drop_path_rate", "drop_mlp_rate", "drop_conv_encoder_rate"):
            value = getattr(self, field)
            if not _is_number(value) or not 0.0 <= value < 1.0:
                self._fail(field, "expected a rate in [0, 1)")
        if not isinstance(self.use_layer_scale, bool):
            self._fail("use_layer_scale", "expected a boolean")
        # float32 is what the weights hold: a value beyond its range overflows when the model is built
        if not _is_number(self.layer_scale_init_value) or not abs(self.layer_scale_init_value) <= FLOAT32_MAX:
            self._fail("layer_scale_init_value", "expected a finite number within float32's range")
        if not _is_number(self.batch_norm_eps) or not 0 < self.batch_norm_eps <= FLOAT32_MAX:
            self._fail("batch_norm_eps", "expected a positive number within float32's range")
        if not isinstance(self.attention_variant, str) or self.attention_variant not in ATTENTION_VARIANTS:
            self._fail("attention_variant", f"expected one of {', '.join(ATTENTION_VARIANTS)}")

    def _check_outputs(self, architecture_only: bool) -> None:
        """The loss (``problem_type``, unless ``architecture_only``) and the output switches."""
        if self.problem_type is not None and (
            not isinstance(self.problem_type, str) or self.problem_type not in PROBLEM_TYPES
        ):
            self._fail("problem_type", f"expected None or one of {', '.join(PROBLEM_TYPES)}")
        if not architecture_only and self.problem_type == "single_label_classification" and self.num_labels == 1:
            self._fail(
                "problem_type", "single-label classification needs num_labels > 1 (use 'regression' for one output)"
            )
        for field in ("output_hidden_states", "return_dict", "backbone_norm", "output_attentions"):
            if not isinstance(getattr(self, field), bool):
                self._fail(field, "expected a boolean")

    def estimated_parameters(self) -> int:
        """A close estimate of the classifier's parameter count from the fields (for the size limit):
        per block about ``(2 * mlp_ratio + 4) * width**2``, the downsampling convolutions, two heads."""
        ratio = float(self.mlp_ratio)
        blocks = sum(n * (2 * ratio + 4) * d * d for n, d in zip(self.depths, self.embed_dims))
        kernel = self.down_patch_size if _is_int(self.down_patch_size) else max(self.down_patch_size)
        downs = sum(kernel * kernel * a * b for a, b in zip(self.embed_dims, self.embed_dims[1:]))
        return int(blocks + downs + 2 * (self.num_labels + 1) * self.embed_dims[-1])

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_variant(cls, name: str, **overrides: Any) -> SwiftFormerConfig:
        """Config of a published variant: ``"xs"``, ``"s"``, ``"l1"`` or ``"l3"``.

        Also accepts ``"swiftformer-xs"``, ``"SwiftFormer_L1"`` and the like. ``overrides`` set any
        other field, e.g. ``num_labels=10`` or ``attention_variant="l2"``.
        """
        return cls(**{**VARIANTS[variant_key(name, strict=True)], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> SwiftFormerConfig:
        """Build from a ``config.json``-style dict (transformers' keys accepted); ``overrides`` win."""
        stored_stages = len(data["depths"]) if isinstance(data.get("depths"), (list, tuple)) else None
        data = {**data, **overrides}
        if (
            "depths" in overrides
            and isinstance(overrides["depths"], (list, tuple))
            and stored_stages is not None
            and len(overrides["depths"]) != stored_stages
            and not {"out_features", "out_indices"} & set(overrides)
            and data.get("out_indices") in (None, [stored_stages])
        ):  # the stored default selection (the last stage) follows the new number of stages
            data.pop("out_features", None)
            data.pop("out_indices", None)
        model_type = data.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise CheckpointError(f"This config is for model_type {model_type!r}, not {cls.model_type!r}.")
        # A new number of classes replaces the stored labels (fine-tuning to new classes).
        if (
            "num_labels" in overrides
            and "id2label" not in overrides
            and data.get("id2label") is not None
            and len(data["id2label"]) != overrides["num_labels"]
        ):
            data.pop("id2label")
            data.pop("label2id", None)
        if "id2label" in overrides and "label2id" not in overrides:
            data.pop("label2id", None)  # the stored label2id names the old labels; rebuild it from id2label
        if "use_return_dict" in data and "return_dict" not in data:
            data["return_dict"] = data["use_return_dict"]
        for given, derived in (("out_features", "out_indices"), ("out_indices", "out_features")):
            if given in overrides and derived not in overrides:
                data.pop(derived, None)  # the stored one describes the old selection; derive it anew
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> SwiftFormerConfig:
        return cls.from_dict(read_json(path))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        **overrides: Any,
    ) -> SwiftFormerConfig:
        """Read ``config.json`` of a local folder or hub id (in its ``subfolder``, if given); keyword
        ``overrides`` replace fields."""
        path = resolve_file(
            name_or_path,
            f"{subfolder.strip('/')}/{CONFIG_NAME}" if subfolder else CONFIG_NAME,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        try:
            config = cls.from_dict(read_json(path))
        except (TypeError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{path}: {err}") from None
        # The caller's overrides are validated separately, so their errors are not blamed on the file.
        config = cls.from_dict(config.to_dict(), **overrides) if overrides else config
        config.name_or_path = name_or_path
        return config

    # ------------------------------------------------------------- serializing
    def to_dict(self) -> dict[str, Any]:
        """Every field and kept extra key, JSON-ready, with ``model_type`` (as transformers writes it)."""
        data = {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}
        data["id2label"] = {str(k): v for k, v in self.id2label.items()}
        data["out_features"], data["out_indices"] = self.out_features, self.out_indices
        if self._dtype is not None:
            data["dtype"] = self._dtype
        data["model_type"] = self.model_type
        return data

    def to_diff_dict(self) -> dict[str, Any]:
        """The entries of :meth:`to_dict` that differ from a default config's, and ``model_type`` (transformers' API)."""
        default = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if k == "model_type" or default.get(k, k) != v}

    def to_json_string(self, use_diff: bool = False) -> str:
        """:meth:`to_dict` as JSON, keys sorted (``use_diff``: only :meth:`to_diff_dict`)."""
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = False) -> Path:
        """Write :meth:`to_json_string` to ``json_file_path``, atomically (transformers' API)."""
        path = Path(json_file_path)
        write_json(path, self.to_diff_dict() if use_diff else self.to_dict())
        return path

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Write ``config.json`` into ``save_directory`` (created if needed), atomically.

        Keyword arguments of transformers' signature (``push_to_hub`` ...) are refused except a false
        ``push_to_hub``: this library does not upload.
        """
        if kwargs.pop("push_to_hub", False) or kwargs:
            raise TypeError(
                f"SwiftFormerConfig.save_pretrained does not upload or take {sorted(kwargs) or ['push_to_hub']}"
            )
        path = Path(save_directory) / CONFIG_NAME
        write_json(path, self.to_dict())
        return path

    # Mutable and compared by value: not hashable (what defining __eq__ implies anyway). The ignore: typeshed types
    # object.__hash__ as a method, so mypy refuses None, the documented way to declare a class unhashable.
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        """Equal fields and extra keys; ``architectures`` (which class saved a folder) is not compared."""
        if not isinstance(other, SwiftFormerConfig):
            return False
        mine, theirs = self.to_dict(), other.to_dict()
        mine.pop("architectures", None), theirs.pop("architectures", None)
        return mine == theirs

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


# The config's fields (its constructor's named arguments), which extra keys are checked against for typos.
_FIELD_NAMES = tuple(name for name in inspect.signature(SwiftFormerConfig).parameters if name != "extra")


class SwiftFormerSegmentationConfig(SwiftFormerConfig):
    """A :class:`SwiftFormerConfig` with the Semantic FPN head's settings (Kirillov et al. 2019), for
    :class:`~swiftformer.modeling_segmentation.SwiftFormerForSemanticSegmentation`.

    The same ``model_type`` ("swiftformer"): a classifier's ``config.json`` reads as one (the head's
    fields take their defaults), and a segmentation folder's reads as a plain config (the head's fields
    kept as extra keys). By default the backbone returns the four stages, each through its own
    BatchNorm, as the paper's segmentation backbone does (``backbone_norm=True``).

    Args:
        fpn_channels: Width of the FPN's lateral and top-down maps (256 in the paper's head).
        decoder_channels: Width of the per-level 3×3 conv-GN-ReLU stacks and of the classifier's
            input (128 in Semantic FPN).
        decoder_num_groups: GroupNorm groups of those stacks (32); must divide ``decoder_channels``.
        classifier_dropout: Dropout before the 1×1 classifier (0.1, as mmseg's FPN head).
        semantic_loss_ignore_index: Label ignored by the loss and the metrics (255, transformers' name);
            ADE20K's "other" (0) becomes 255 with ``reduce_zero_label`` (docs/dense.md).
        **kwargs: Every :class:`SwiftFormerConfig` field (``num_labels``, ``id2label``: the classes).
    """

    def __init__(
        self,
        fpn_channels: int = 256,
        decoder_channels: int = 128,
        decoder_num_groups: int = 32,
        classifier_dropout: float = 0.1,
        semantic_loss_ignore_index: int = 255,
        **kwargs: Any,
    ) -> None:
        self.fpn_channels = fpn_channels
        self.decoder_channels = decoder_channels
        self.decoder_num_groups = decoder_num_groups
        self.classifier_dropout = classifier_dropout
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        if kwargs.get("out_features") is None and kwargs.get("out_indices") is None:
            stages = len(kwargs["depths"]) if isinstance(kwargs.get("depths"), (list, tuple)) else 4
            kwargs["out_indices"] = list(range(1, stages + 1))  # every stage; the stem is stage 1's size
        kwargs.setdefault("backbone_norm", True)
        super().__init__(**kwargs)

    def validate(self, *, architecture_only: bool = False) -> None:
        """:meth:`SwiftFormerConfig.validate`, then the head's fields."""
        super().validate(architecture_only=architecture_only)
        for field in ("fpn_channels", "decoder_channels", "decoder_num_groups"):
            self._check_ints(field, [getattr(self, field)], length=1, maximum=LIMITS["embed_dim"])
        if self.decoder_channels % self.decoder_num_groups:
            self._fail("decoder_num_groups", f"must divide decoder_channels={self.decoder_channels}")
        if not _is_number(self.classifier_dropout) or not 0.0 <= self.classifier_dropout < 1.0:
            self._fail("classifier_dropout", "expected a rate in [0, 1)")
        if not _is_int(self.semantic_loss_ignore_index):
            self._fail("semantic_loss_ignore_index", "expected an integer label")
        if 0 <= self.semantic_loss_ignore_index < self.num_labels:
            self._fail(
                "semantic_loss_ignore_index", f"is a class index (num_labels={self.num_labels}); use 255 or -100"
            )
        if "stem" in self.out_features:
            self._fail("out_features", "the FPN takes the stages (stage1..stageN), not the stem")
        self._check_size(self.estimated_parameters(), ("fpn_channels", "decoder_channels", "embed_dims"))

    def estimated_parameters(self) -> int:
        """:meth:`SwiftFormerConfig.estimated_parameters` plus the FPN (a 1×1 lateral and a 3×3 conv per level) and
        the decoder (level i: max(1, i) 3×3 convs), every stage counted as a level."""
        total = super().estimated_parameters()
        fpn, decoder = self.fpn_channels, self.decoder_channels
        if not (_is_int(fpn) and _is_int(decoder)):  # not checked yet: validate() counts again once they are
            return total
        levels = len(self.embed_dims)
        pyramid = sum(self.embed_dims) * fpn + levels * 9 * fpn * fpn
        heads = sum(9 * fpn * decoder + (max(1, i) - 1) * 9 * decoder * decoder for i in range(levels))
        return int(total + pyramid + heads + decoder * self.num_labels)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> SwiftFormerSegmentationConfig:
        """As :meth:`SwiftFormerConfig.from_dict`; a config without the head's fields (a classifier's or a
        backbone's) also drops its feature-map selection, so the head gets every stage, normalized."""
        if "fpn_channels" not in data:
            data = {k: v for k, v in data.items() if k not in ("out_features", "out_indices", "backbone_norm")}
        return super().from_dict(data, **overrides)  # type: ignore[return-value]
