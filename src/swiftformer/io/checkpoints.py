"""Reading, writing and matching state-dict files: safetensors first, legacy PyTorch pickles safely.

``pytorch_model.bin`` files are pickles. They are only ever opened with ``torch.load(weights_only=True)``,
which refuses any object that is not a tensor or plain container, so a malicious file runs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeGuard

from ..errors import CheckpointError, CheckpointShapeError
from .architecture import infer_config
from .files import atomic_write, json_text, read_json
from .hub import CONFIG_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_NAME, hub_offline, resolve_file

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("swiftformer.modeling")  # the messages are about loading models


def _looks_like_torch_save(path: Path) -> bool:
    """True for torch.save's zip archives and for legacy pickles (PROTO opcode first); raises
    CheckpointError for a missing or unreadable path."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"Cannot read {path}: {err.strerror or err}.") from None
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPERS = ("model", "state_dict", "model_state_dict", "module")  # training scripts' checkpoint dicts
_EMA_WRAPPERS = ("model_ema", "state_dict_ema", "ema")  # DeiT/original main.py, timm train.py


def read_checkpoint(path: str | os.PathLike) -> Any:
    """What a ``.safetensors`` file or a PyTorch pickle (``.bin``/``.pth``/...) holds, loaded onto the CPU.

    Pickles are opened with ``torch.load(weights_only=True)`` only, so nothing in them runs; the
    ``argparse.Namespace`` that training scripts (the original ``main.py``, timm's ``train.py``) store as
    ``args`` is let through: plain data, no code.

    Raises:
        CheckpointError: the file is truncated, corrupt, or a pickle that holds anything other than
            tensors and plain containers (it is refused without running any of it).
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"Cannot read {path}: not a valid safetensors file, corrupt or truncated ({err})."
            ) from None

    if not _looks_like_torch_save(path):  # checked first: torch would call any bytes "unsafe"
        raise CheckpointError(
            f"Cannot read {path}: corrupt or truncated, or not a checkpoint at all (neither a "
            f"torch.save zip archive nor a pickle, and not named .safetensors)."
        )
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allow_args = safe_globals([argparse.Namespace]) if safe_globals else contextlib.nullcontext()
    try:
        with allow_args:
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err).lower()
        # Not a refusal, just broken bytes: no refusal at all, or an opcode no pickle protocol has
        if "weights only load failed" not in text or "unsupported operand" in text:
            raise CheckpointError(f"Cannot read {path}: corrupt or truncated PyTorch checkpoint ({err}).") from None
        # torch's own text goes on to explain how to allowlist the global: keep only what was found
        reason = str(err).split("WeightsUnpickler error:")[-1].split(" was not an allowed")[0].strip().splitlines()
        raise CheckpointError(
            f"Refused to load {path}: it is a pickle holding objects other than tensors, which could run code "
            f"({reason[0] if reason else type(err).__name__}). Nothing from it was executed. "
            f"Convert trusted checkpoints to safetensors."
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"Cannot read {path}: corrupt or truncated PyTorch checkpoint ({type(err).__name__}: {err})."
        ) from None


def _is_state_dict(value: object) -> TypeGuard[dict[str, torch.Tensor]]:
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def unwrap_checkpoint(data: object, ema: bool = False, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: the checkpoint itself, or its ``model`` /
    ``state_dict`` / ... entry (``model_ema`` / ``state_dict_ema`` with ``ema=True``, or when it is the
    only one). A DDP ``module.`` prefix is removed.

    Raises:
        CheckpointError: no state dict inside, or no EMA weights when ``ema`` asks for them.
    """
    if _is_state_dict(data) and not ema:
        state_dict = data
    elif isinstance(data, dict):
        order = _EMA_WRAPPERS + _WRAPPERS if ema else _WRAPPERS + _EMA_WRAPPERS
        found = [key for key in order if _is_state_dict(data.get(key))]
        if ema and not any(key in _EMA_WRAPPERS for key in found):
            entries = (
                "it is a plain state dict" if _is_state_dict(data) else f"its entries are {sorted(map(str, data))}"
            )
            raise CheckpointError(f"{source} holds no EMA weights (none of {', '.join(_EMA_WRAPPERS)}); {entries}.")
        if not found:
            raise CheckpointError(
                f"{source} does not hold a state dict: expected a mapping of names to tensors, or one "
                f"under {', '.join(_WRAPPERS + _EMA_WRAPPERS)}; found entries {sorted(map(str, data))[:20]}."
            )
        state_dict = data[found[0]]
    else:
        raise CheckpointError(
            f"{source} does not hold a state dict (a mapping of names to tensors; found a {type(data).__name__})."
        )
    odd = [f"{k} ({why})" for k, v in state_dict.items() if (why := _not_weights(v)) is not None]
    if odd:
        raise CheckpointError(
            f"{source} holds tensors that are no weights: {', '.join(odd[:10])}{' ...' if len(odd) > 10 else ''}."
        )
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


def _not_weights(tensor: torch.Tensor) -> str | None:
    """Why ``tensor`` cannot be a model's weight (no data, another layout, complex numbers), or None."""
    if tensor.is_nested:
        return "a nested tensor"
    if tensor.device.type == "meta":
        return "a meta tensor, with no data"
    if str(tensor.layout) != "torch.strided":  # dense; sparse tensors are not
        return f"layout {tensor.layout}"
    if tensor.is_complex():
        return "complex"
    return None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load the state dict of a ``.safetensors`` file or a PyTorch pickle (``.bin``/``.pth``) onto the CPU.

    A ``.pth`` holding ``{"model": state_dict}`` or ``{"state_dict": ...}`` (as training scripts
    save them) is unwrapped (:func:`unwrap_checkpoint`).

    Raises:
        CheckpointError: the file is truncated, corrupt, not a state dict, or a pickle that holds
            anything other than tensors (it is refused without running any of it).
    """
    return unwrap_checkpoint(read_checkpoint(path), source=str(path))


def save_state_dict_file(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a state dict atomically: safetensors for ``*.safetensors``, else a PyTorch zip pickle."""
    import torch

    path = Path(path)
    # safetensors refuses shared or non-contiguous storage; a detached contiguous clone is always valid.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    with atomic_write(path, "wb") as handle:
        if path.suffix == ".safetensors":
            from safetensors.torch import save

            handle.write(save(tensors, metadata={"format": "pt"}))
        else:
            torch.save(tensors, handle)
    return path


# What makes two saved models different models (not two saves of one model, e.g. epochs of a run).
_IDENTITY_FIELDS = (
    "model_type",
    "architectures",
    "num_channels",
    "depths",
    "embed_dims",
    "mlp_ratio",
    "downsamples",
    "num_labels",
)


def _different_model(directory: Path, config: Any, architecture: str) -> str | None:
    """How the model already saved in ``directory`` differs from ``config``, or None (none there, or the same)."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        saved = read_json(path)
    except CheckpointError:
        return "an unreadable config.json"

    def identity(data: dict[str, Any]) -> dict[str, Any]:  # config.json stores labels as id2label only
        labels = data.get("num_labels", len(data["id2label"]) if isinstance(data.get("id2label"), dict) else None)
        return {**{key: data.get(key) for key in _IDENTITY_FIELDS}, "num_labels": labels}

    theirs, ours = identity(saved), identity({**config.to_dict(), "architectures": [architecture]})
    differ = [
        f"{key} {theirs[key]!r}" for key in _IDENTITY_FIELDS if theirs[key] is not None and theirs[key] != ours[key]
    ]
    return f"another model ({', '.join(differ)})" if differ else None


def write_model_folder(
    save_directory: str | os.PathLike,
    config: Any,
    architecture: str,
    write_weights: Callable[[Path], object],
    safe_serialization: bool = True,
    overwrite: bool = False,
) -> Path:
    """The folder layout of ``save_pretrained``, for either framework: weights, then ``config.json``.

    ``write_weights(path)`` writes ``model.safetensors`` (or ``pytorch_model.bin`` without
    ``safe_serialization``) atomically. A stale weights file of the other format is removed, so loaders
    never pick an older one; ``config.json`` records ``architecture`` (the PyTorch class name). The config is
    serialized before anything is written, so a config that cannot be saved leaves the folder as it was.

    Saving the same model again (another epoch, the same architecture and labels) replaces it; a folder
    holding a *different* model (another class, architecture or labels) is refused unless ``overwrite``
    (:class:`FileExistsError`), so a typo in a path never replaces someone's model with another.
    """
    directory = Path(save_directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    other = None if overwrite else _different_model(directory, config, architecture)
    if other is not None:
        raise FileExistsError(
            f"{directory} already holds {other}; pass overwrite=True to replace it, or save to another folder"
        )
    try:
        text = json_text({**config.to_dict(), "architectures": [architecture]})
    except (TypeError, ValueError) as err:
        raise ValueError(f"the config cannot be saved as JSON ({err}); nothing was written to {directory}") from None
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(directory / (SAFE_WEIGHTS_NAME if safe_serialization else WEIGHTS_NAME))
    stale = directory / (WEIGHTS_NAME if safe_serialization else SAFE_WEIGHTS_NAME)
    if stale.exists():
        stale.unlink()
    with atomic_write(directory / CONFIG_NAME, "w") as handle:
        handle.write(text)
    return directory


# transformers' from_pretrained options with nothing to do here (no remote code, always safe loading, ...).
_IGNORED_LOADING_OPTIONS = frozenset(
    {
        "trust_remote_code",
        "use_safetensors",
        "weights_only",
        "low_cpu_mem_usage",
        "force_download",
        "resume_download",
        "proxies",
        "_fast_init",
        "_from_auto",
        "_from_pipeline",
        "mirror",
    }
)
# ... and those this library does not implement.
_UNSUPPORTED_LOADING_OPTIONS = frozenset(
    {
        "max_memory",
        "offload_folder",
        "offload_state_dict",
        "offload_buffers",
        "quantization_config",
        "load_in_8bit",
        "load_in_4bit",
        "tp_plan",
        "tp_size",
        "from_tf",
        "from_flax",
        "variant",
        "key_mapping",
        "adapter_name",
        "adapter_kwargs",
        "use_kernels",
        "generation_config",
    }
)


def config_fields_of(
    caller: str, config_class: type, options: dict[str, Any], ignored: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The config fields among ``options``, the extra keywords of a ``from_pretrained``: transformers' loading
    options that do not apply here (and ``ignored``) are dropped; one this library does not implement, and any
    keyword that is no field of ``config_class``, is a TypeError naming it (transformers' model constructors
    refuse unknown keywords the same way), rather than a key saved into the next ``config.json``."""
    fields = {k: v for k, v in options.items() if k not in _IGNORED_LOADING_OPTIONS | ignored}
    refused = sorted(set(fields) & _UNSUPPORTED_LOADING_OPTIONS)
    if refused:
        raise TypeError(f"{caller} does not support {refused} (transformers loading options)")
    default = config_class()
    unknown = sorted(k for k in fields if not hasattr(default, k) or callable(getattr(default, k)))
    if unknown:
        hint = " (use token=)" if "use_auth_token" in unknown else ""
        raise TypeError(
            f"{caller} got unexpected keyword argument(s) {unknown}{hint}: neither a {config_class.__name__} "
            "field nor a loading option"
        )
    return fields


def find_weights_file(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    subfolder: str = "",
) -> Path:
    """Locate ``model.safetensors``, else the legacy ``pytorch_model.bin``, in a folder or hub repo (in its
    ``subfolder``, if given)."""
    kwargs: dict[str, Any] = dict(
        revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    for filename in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME):
        found = resolve_file(name_or_path, prefix + filename, missing_ok=True, **kwargs)
        if found is not None:
            return found
    if not Path(os.path.expanduser(os.fspath(name_or_path))).is_dir() and hub_offline(local_files_only):
        # Offline, a file missing from the cache of a repository cached in part looks like one the repository
        # lacks: asked again for without missing_ok, it is reported as an offline miss, with what to do.
        resolve_file(name_or_path, prefix + SAFE_WEIGHTS_NAME, **kwargs)
    where = f"{os.fspath(name_or_path)!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    raise FileNotFoundError(f"{where} has neither {SAFE_WEIGHTS_NAME} nor {WEIGHTS_NAME}.")


# The per-output norms of SwiftFormerBackbone (backbone_norm=True): dropped when other models load it.
BACKBONE_NORMS = "hidden_states_norms."


def _architecture_of(state_dict: dict[str, Any], prefix: str) -> str:
    """ " (the file holds depths [...], widths [...] and N labels)" read off the shapes, or ""."""
    if not any(k.startswith(prefix) for k in state_dict):
        state_dict = {prefix + k: v for k, v in state_dict.items()}
    try:
        found = infer_config(state_dict)
    except Exception:
        return ""
    labels = f" and {found.num_labels} labels" if found.num_labels else " and no classification heads"
    return f" (the file holds depths {found.depths}, widths {found.embed_dims}{labels})"


def _is_integer(value: Any) -> bool:
    """Whether a tensor or array holds integers or booleans (torch and numpy dtypes alike)."""
    dtype = str(getattr(value, "dtype", ""))
    return "int" in dtype or "bool" in dtype


def _align_prefix(
    state_dict: dict[str, Any], expected_shapes: dict[str, tuple[int, ...]], prefix: str
) -> tuple[dict[str, Any], bool]:
    """``state_dict`` with its keys named as the model names them, and whether the model is a classifier (its
    base model's keys under ``prefix``, its heads outside).

    A backbone's output norms are dropped unless the model has them; a classifier checkpoint loses its heads
    in a base model; a base-model checkpoint gains the prefix in a classifier.
    """
    if not any(k.startswith(BACKBONE_NORMS) for k in expected_shapes):  # a backbone's output norms: not ours
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(BACKBONE_NORMS)}
    has_prefix = any(k.startswith(prefix) for k in state_dict)
    wants_prefix = any(k.startswith(prefix) for k in expected_shapes)
    if has_prefix and not wants_prefix:  # classifier checkpoint → base model: drop the heads only
        heads = ("norm.", "head.", "dist_head.")
        state_dict = {
            k.removeprefix(prefix) if k.startswith(prefix) else k: v
            for k, v in state_dict.items()
            if k.startswith(prefix) or not k.startswith(heads)
        }
    elif wants_prefix and not has_prefix:  # base checkpoint → classifier
        state_dict = {prefix + k: v for k, v in state_dict.items()}
    return state_dict, wants_prefix


def _refuse_foreign(
    state_dict: dict[str, Any],
    expected_shapes: dict[str, tuple[int, ...]],
    original: dict[str, Any],
    *,
    prefix: str,
    owner: str,
    source: str,
    optional: Callable[[str], bool],
    strict: bool,
) -> None:
    """Refuse a file that is no weights of this model at all, whatever else is asked: one holding none of them
    (checked for ``strict=False``, where missing keys alone are no error), or integer tensors."""
    if not strict and not any(k in expected_shapes and not optional(k) for k in state_dict):
        raise CheckpointError(
            f"{source} holds none of the weights of {owner}{_architecture_of(original, prefix)}: its "
            f"{len(original)} keys start {', '.join(sorted(map(str, original))[:5])}; is it the right file?"
        )
    refuse_integer_weights([k for k, v in state_dict.items() if not optional(k) and _is_integer(v)], owner, source)


def refuse_integer_weights(keys: list[str], owner: str, source: str) -> None:
    """CheckpointError naming ``keys``, the integer tensors of ``source`` where ``owner`` has floating-point weights
    (copied into float parameters they would load silently as whole numbers); nothing when there are none."""
    if keys:
        raise CheckpointError(
            f"{source} holds integer tensors where {owner} has floating-point weights: "
            f"{', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''} (a quantized or corrupt checkpoint?)"
        )


def _shape_mismatches(
    state_dict: dict[str, Any], expected_shapes: dict[str, tuple[int, ...]]
) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(key, checkpoint shape, model shape) of each tensor whose shape is not the model's, in the file's order."""
    return [
        (k, tuple(v.shape), tuple(expected_shapes[k]))
        for k, v in state_dict.items()
        if k in expected_shapes and tuple(v.shape) != tuple(expected_shapes[k])
    ]


def _listed(what: str, keys: list[str], sep: str = ", ") -> str:
    """``"what (N): a, b, ..."``, the first 20 keys."""
    return f"{what} ({len(keys)}): {sep.join(keys[:20])}" + (" ..." if len(keys) > 20 else "")


def _raise_mismatch(
    source: str, owner: str, architecture: str, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> NoReturn:
    """Raise the error listing every missing, unexpected and mis-shaped key at once."""
    problems = [_listed("missing keys", missing)] if missing else []
    problems += [_listed("unexpected keys", unexpected)] if unexpected else []
    if mismatched:
        problems.append(
            _listed("shape mismatches", mismatched, "; ")
            + " (from Python, ignore_mismatched_sizes=True re-initializes them, e.g. for new num_labels)"
        )
    # Only mis-shaped weights: also a RuntimeError, as torch and transformers raise for them.
    error = CheckpointShapeError if mismatched and not missing and not unexpected else CheckpointError
    raise error(f"{source} does not match {owner} with this config{architecture}:\n  " + "\n  ".join(problems))


def match_state_dict(
    state_dict: dict[str, Any],
    expected_shapes: dict[str, tuple[int, ...]],
    *,
    base_prefix: str,
    owner: str,
    source: str,
    ignore_mismatched_sizes: bool = False,
    optional: Callable[[str], bool] = lambda key: key.endswith("num_batches_tracked"),
    strict: bool = True,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check a transformers-layout state dict against a model's keys and shapes; return what to load.

    Shared by the PyTorch and Keras models. ``expected_shapes`` maps the model's keys (PyTorch names and
    layouts) to shapes; keys for which ``optional`` holds may be absent or extra. A classifier checkpoint
    (keys under ``base_prefix``) loads into a base model, its heads dropped; a base-model checkpoint loads
    into a classifier, whose heads then stay freshly initialized (a logged warning). With
    ``ignore_mismatched_sizes`` mis-shaped tensors are skipped (re-initialized) with a warning.

    ``strict=False`` is ``from_pretrained``'s rule, transformers' own for a *partial* checkpoint: the weights
    it lacks are left as initialized and listed in a logged warning. Weights the model does not have (another
    architecture, a renamed layout) are still an error, and so is a file holding none of the model's weights.
    ``info``, when given, is filled with transformers' loading info: ``missing_keys``, ``unexpected_keys``
    (sets of names), ``mismatched_keys`` (a set of (name, checkpoint shape, model shape), re-initialized
    with ``ignore_mismatched_sizes``; as in transformers they are not also listed as missing) and
    ``error_msgs`` (a list).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key at once (with ``strict=False``,
            missing keys alone are no error).
    """
    prefix = base_prefix + "."
    original = state_dict
    state_dict, wants_prefix = _align_prefix(state_dict, expected_shapes, prefix)
    _refuse_foreign(
        state_dict,
        expected_shapes,
        original,
        prefix=prefix,
        owner=owner,
        source=source,
        optional=optional,
        strict=strict,
    )
    head_keys = {k for k in expected_shapes if wants_prefix and not k.startswith(prefix) and not optional(k)}
    missing = [k for k in expected_shapes if k not in state_dict and not optional(k)]
    unexpected = [k for k in state_dict if k not in expected_shapes and not optional(k)]
    shapes = _shape_mismatches(state_dict, expected_shapes)
    mismatched = [f"{k}: checkpoint {theirs} vs model {ours}" for k, theirs, ours in shapes]
    # A base-model checkpoint, or a backbone's (prefixed, no heads): the classifier's heads start fresh.
    fresh_heads = wants_prefix and bool(head_keys) and set(missing) == head_keys
    initialized = set(missing)  # left as initialized: for the loading info
    if fresh_heads:
        missing = []
    elif ignore_mismatched_sizes and missing and set(missing) <= head_keys:
        # A headless classifier (num_labels=0) → new classes: the heads start fresh, as mis-shaped ones would.
        logger.warning("Newly initialized weights absent from %s:\n  %s", source, "\n  ".join(missing))
        missing = []
    heads, dropped = ("head.", "dist_head."), set()
    if (
        unexpected
        and all(k.startswith(heads) for k in unexpected)
        and not any(k.startswith(heads) for k in expected_shapes)
    ):
        # A classifier loaded with num_labels=0 (transformers' headless classifier): its heads are dropped.
        logger.warning("%s's classification heads are dropped: %s has none (num_labels=0)", source, owner)
        state_dict = {k: v for k, v in state_dict.items() if k not in unexpected}
        dropped, unexpected = set(unexpected), []
    if mismatched and ignore_mismatched_sizes:
        logger.warning("Re-initialized weights whose shapes differ from %s:\n  %s", source, "\n  ".join(mismatched))
        skipped = {k for k, _, _ in shapes}
        state_dict = {k: v for k, v in state_dict.items() if k not in skipped}
        mismatched = []
    if not strict and missing and not unexpected and not mismatched:
        logger.warning(
            "%s is a partial checkpoint for %s: newly initialized weights, missing from it (%d): %s%s",
            source,
            owner,
            len(missing),
            ", ".join(missing[:20]),
            " ..." if len(missing) > 20 else "",
        )
    elif missing or unexpected or mismatched:
        _raise_mismatch(source, owner, _architecture_of(original, prefix), missing, unexpected, mismatched)
    if fresh_heads:
        logger.warning("%s holds no classification heads; %s are newly initialized.", source, sorted(head_keys))
    if info is not None:
        info.update(
            missing_keys=initialized,
            unexpected_keys=set(unexpected) | dropped,  # as transformers lists a headless classifier's dropped heads
            mismatched_keys=set(shapes),
            error_msgs=[],
        )
    return {k: v for k, v in state_dict.items() if k in expected_shapes}
