"""Training settings: :class:`TrainConfig`, the recipes and config files.

Kept apart from the training loop (:mod:`swiftformer.training.trainer`) so that reading settings and
building the command line need no torch.

Settings resolve in this order, later winning: :class:`TrainConfig` defaults < the recipe <
``--config FILE`` (YAML or JSON) < command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..configuration import ATTENTION_VARIANTS, VARIANTS, variant_key
from ..io.files import hidden_path

CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_CONFIG_NAME = "train_config.json"  # a run's settings (a model folder's is config.json)
METRICS_NAME = "metrics.jsonl"
# What a run trains (``task``), and the recipe a task starts from when none is named.
TASKS = ("classification", "detection", "segmentation")
TASK_RECIPES = {"classification": "paper", "detection": "coco-maskrcnn-1x", "segmentation": "ade20k-fpn"}


@dataclass
class TrainConfig:
    """Every training setting. Defaults are neutral; recipes (:data:`RECIPES`) fill in the rest."""

    # data and model
    # one of TASKS: classification (an image folder) | detection (COCO, Mask R-CNN) | segmentation (ADE20K
    # layout, Semantic FPN): docs/dense.md
    task: str = "classification"
    data_dir: str | None = None
    output: str | None = None
    variant: str = "xs"
    init: str | None = None  # a model folder or hub id to start from (fine-tuning)
    attention_variant: str | None = None  # None: the variant's default / the init model's
    image_size: int = 224
    # schedule and optimizer
    epochs: int = 300
    iterations: int | None = None  # optimizer steps; when set, epochs = ceil(iterations / steps per epoch)
    schedule: str = "cosine"  # cosine (with warm-up) | poly (lr × (1 - step / total) ** poly_power)
    poly_power: float = 0.9
    batch_size: int = 128  # per process and micro-step
    grad_accum_steps: int = 1
    lr: float | None = None  # absolute learning rate; None: base_lr (scaled by the global batch with lr_linear_scaling)
    base_lr: float = 2e-3
    lr_linear_scaling: bool = True  # base_lr × global batch / lr_base_batch (the paper recipe: off, as the original)
    lr_base_batch: int = 2048
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: float = 5.0
    schedule_per_epoch: bool = False  # the original's: the rate moves once per epoch (see Trainer._build_scheduler)
    weight_decay: float = 0.025
    layer_scale_decay: bool = False  # weight decay on the layer scales too (the original code: it only spares 1-D)
    betas: tuple[float, float] = (0.9, 0.999)
    opt_eps: float = 1e-8  # AdamW's epsilon
    clip_grad: float | None = 5.0  # the clipping threshold (see clip_mode); None: no clipping
    clip_mode: str = "norm"  # norm: global gradient norm | value: each element | agc: adaptive, per unit (timm)
    # regularization and augmentation
    drop_path_rate: float = 0.0
    smoothing: float = 0.1
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float | None = 0.4
    re_prob: float = 0.25
    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    interpolation: str = "bicubic"
    mixup: float = 0.8
    cutmix: float = 1.0
    repeated_aug: int = 3  # repeats per image per epoch (DeiT's repeated augmentation); 1: off
    eval_crop_pct: float = 0.875  # resize to size / crop_pct, center-crop size; 1.0: plain resize
    # detection (Mask R-CNN): image_size is the shorter side images are resized to, max_size the longer's limit
    lr_steps: tuple[float, float] | None = None  # epochs after which the lr drops 10x (step schedule); None: cosine
    max_size: int = 1333
    fpn_channels: int = 256
    rpn_proposals: int = 2000  # RPN proposals kept per training image (1000 at inference, torchvision's)
    roi_batch_size: int = 512  # RoIs sampled per image for the box and mask losses
    detections_per_image: int = 100
    # segmentation data (task=segmentation): ADE20K's conventions, mmseg's augmentation
    reduce_zero_label: bool = True  # mask index 0 is "other", ignored; 1..K become classes 0..K-1
    resize_ratio: tuple[float, float] = (0.5, 2.0)  # random resize around (4 × image_size, image_size)
    cat_max_ratio: float = 0.75  # a crop's largest class covers at most this share of its pixels (10 tries)
    photometric: bool = True  # brightness, contrast, saturation, hue distortion
    model_ema: bool = True
    ema_decay: float = 0.99996
    # distillation (DeiT hard distillation through dist_head)
    teacher: str | None = None  # timm model name, a model folder, or None
    teacher_checkpoint: str | None = None  # weights for a timm teacher
    no_teacher: bool = False  # train without distillation even where the recipe names a teacher
    distillation_alpha: float = 0.5
    # execution
    precision: str = "auto"  # auto | fp32 | bf16
    channels_last: bool = True
    compile: bool = False
    gradient_checkpointing: bool = False  # recompute encoder blocks in backward: ~39% less memory, ~20% slower
    sync_bn: bool = False
    device: str = "cpu"
    workers: int = 2
    seed: int = 0
    eval_every: int = 1
    # recorded for provenance
    recipe: str | None = None
    config_file: str | None = None

    def global_batch(self, world_size: int) -> int:
        return self.batch_size * self.grad_accum_steps * world_size

    def resolved_lr(self, world_size: int) -> float:
        """``lr`` if set, else ``base_lr``, scaled to ``base_lr × global batch / lr_base_batch`` with
        ``lr_linear_scaling``."""
        if self.lr is not None:
            return self.lr
        if not self.lr_linear_scaling:
            return self.base_lr
        return self.base_lr * self.global_batch(world_size) / self.lr_base_batch


# What a dense task's recipe turns off: the classifier's label smoothing, image mixing, policy augmentation,
# repeated augmentation and EMA (mmdetection's and mmseg's recipes have none of them).
_NO_CLASSIFIER_AUGMENTATION: dict[str, Any] = dict(
    smoothing=0.0,
    auto_augment=None,
    color_jitter=None,
    re_prob=0.0,
    mixup=0.0,
    cutmix=0.0,
    repeated_aug=1,
    model_ema=False,
)


# The paper's ImageNet recipe, as the original code runs it (Amshaker/SwiftFormer at 4aa6cd6: main.py's
# defaults and dist_train.sh's per-variant flags; docs/training.md compares every value with the paper's text).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(
        image_size=224,
        epochs=300,
        batch_size=128,  # per GPU; the published models: 16 GPUs × 128 (the original README)
        base_lr=2e-3,
        lr_linear_scaling=False,  # main.py: "better not to scale up lr for AdamW optimizer" (the line commented out)
        lr_base_batch=2048,  # only with --lr-linear-scaling: 2e-3 at the original's global batch
        min_lr=1e-5,
        warmup_lr=1e-6,
        warmup_epochs=5,
        schedule_per_epoch=True,  # main.py: lr_scheduler.step(epoch) after each epoch
        weight_decay=0.025,
        layer_scale_decay=True,  # timm 0.5.4's create_optimizer spares only 1-D parameters and biases
        betas=(0.9, 0.999),
        opt_eps=1e-8,
        clip_grad=0.01,
        clip_mode="agc",
        drop_path_rate=0.0,
        smoothing=0.1,
        auto_augment="rand-m9-mstd0.5-inc1",
        color_jitter=0.4,  # timm applies it only where auto_augment is off (XS)
        re_prob=0.25,
        scale=(0.08, 1.0),
        hflip=0.5,
        interpolation="bicubic",
        mixup=0.8,
        cutmix=1.0,
        repeated_aug=3,
        model_ema=True,
        ema_decay=0.99996,
        eval_crop_pct=0.875,
        # hard distillation from DeiT's RegNetY-16GF (the original's --teacher-path regnety_160-a5fe301d.pth, which
        # timm names regnety_160.deit_in1k; its plain "regnety_160" is another, in12k-trained model); --no-teacher
        teacher="regnety_160.deit_in1k",
        distillation_alpha=0.5,
    ),
    "finetune": dict(
        epochs=20,
        base_lr=5e-4,
        lr_base_batch=512,
        min_lr=1e-6,
        warmup_lr=1e-6,
        warmup_epochs=1,
        weight_decay=0.05,
        clip_grad=1.0,
        smoothing=0.1,
        auto_augment="rand-m7-mstd0.5-inc1",
        color_jitter=0.4,
        re_prob=0.0,
        scale=(0.25, 1.0),
        mixup=0.0,
        cutmix=0.0,
        repeated_aug=1,
        model_ema=False,
        teacher=None,
        eval_crop_pct=0.875,
    ),
    # Table 3's COCO Mask R-CNN 1x schedule, as the mmdetection configs the paper's detection code builds
    # on (EfficientFormer's mask_rcnn_efficientformer_l1_fpn_1x_coco.py, schedule_1x.py, coco_instance.py):
    # AdamW lr 2e-4, weight decay 1e-4, no gradient clipping, 12 epochs, lr ×0.1 after epochs 8 and 11, a
    # linear warm-up (500 iterations there), images resized to 1333 × 800, flipped with p = 0.5.
    # docs/dense.md says what was verified.
    "coco-maskrcnn-1x": dict(
        task="detection",
        epochs=12,
        lr_steps=(8, 11),
        lr=2e-4,  # as given, whatever the batch: mmdetection does not scale it
        weight_decay=1e-4,
        warmup_lr=2e-10,
        warmup_epochs=0.07,
        clip_grad=None,
        image_size=800,
        max_size=1333,
        hflip=0.5,
        **_NO_CLASSIFIER_AUGMENTATION,
        teacher=None,
        channels_last=False,
    ),
}
# dist_train.sh's per-variant flags on top of the paper recipe: XS `--aa="" --mixup 0 --cutmix 0`, S
# `--mixup 0 --cutmix 0`, L1 and L3 none.
PAPER_VARIANT_SETTINGS: dict[str, dict[str, Any]] = {
    "xs": dict(auto_augment=None, mixup=0.0, cutmix=0.0),
    "s": dict(mixup=0.0, cutmix=0.0),
}
# Semantic FPN on ADE20K as the paper trains it (Table 3; mmseg's 40k-iteration schedule): 512² crops, a global
# batch of 32 (8 processes × 4), AdamW 2e-4, weight decay 1e-4, poly decay (power 0.9) to 0, no warm-up.
RECIPES["ade20k-fpn"] = dict(
    task="segmentation",
    iterations=40_000,
    batch_size=4,
    lr=2e-4,
    min_lr=0.0,
    warmup_epochs=0,
    weight_decay=1e-4,
    schedule="poly",
    poly_power=0.9,
    clip_grad=None,
    image_size=512,
    **_NO_CLASSIFIER_AUGMENTATION,
    hflip=0.5,
    drop_path_rate=0.0,  # not stated by the paper; a choice of this recipe
    reduce_zero_label=True,
    resize_ratio=(0.5, 2.0),
    cat_max_ratio=0.75,
    photometric=True,
)
SCHEDULES = ("cosine", "poly")


def resolve_config(
    default_recipe: str | dict[str, str] | None = None,
    config_file: str | os.PathLike | None = None,
    **overrides: Any,
) -> TrainConfig:
    """Defaults < recipe < config file < ``overrides`` (e.g. parsed flags); unknown keys are errors.

    The recipe is ``overrides["recipe"]``, else the config file's ``recipe``, else ``default_recipe`` (a
    name, or one per task as :data:`TASK_RECIPES`, picked by the ``task`` of the overrides or the file).
    """
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = _read_config_file(config_file)
    task = str(overrides.get("task") or file_values.get("task") or TrainConfig.task)
    if isinstance(default_recipe, dict):
        default_recipe = default_recipe.get(task)
    elif task != "classification":  # a classification recipe is not another task's default
        default_recipe = TASK_RECIPES.get(task)
    recipe = overrides.get("recipe") or file_values.get("recipe") or default_recipe
    if recipe is not None:
        if not isinstance(recipe, str) or recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
        values.update(RECIPES[recipe])
        init = overrides.get("init") or file_values.get("init")
        if init is not None:  # --variant is ignored with --init: the model fine-tuned is what it is
            variant = _variant_of_model(init)
        else:
            variant = overrides.get("variant") or file_values.get("variant") or TrainConfig.variant
        if recipe == "paper":
            values.update(PAPER_VARIANT_SETTINGS.get(variant_key(str(variant)) or "", {}))
    values.update(file_values)
    # An override of None is an explicit "no value" (``--auto-augment none``), not "unset": the CLI passes
    # only the flags given. ``recipe`` alone is resolved above.
    values.update({k: v for k, v in overrides.items() if k != "recipe"})
    values["recipe"] = recipe
    _drop_teacher(values, given={**file_values, **overrides})
    if config_file is not None:
        values["config_file"] = str(config_file)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(unknown)}")
    for key, value in values.items():
        if isinstance(value, os.PathLike):  # Path objects for data_dir, output, init, ...
            values[key] = os.fspath(value)
    for key in ("betas", "scale", "lr_steps", "resize_ratio"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    config = TrainConfig(**values)
    _validate(config)
    return config


def _drop_teacher(values: dict[str, Any], given: dict[str, Any]) -> None:
    """``no_teacher`` clears the recipe's teacher (and its checkpoint); naming a teacher as well is an error."""
    if not values.get("no_teacher"):
        return
    for name in ("teacher", "teacher_checkpoint"):
        if given.get(name) is not None:
            raise ValueError(f"training settings no_teacher and {name}={given[name]!r} contradict each other: drop one")
        values[name] = None


def _variant_of_model(model: str | os.PathLike) -> str | None:
    """The published variant (``"xs"`` ...) of a model folder or cached hub id, None when custom or not readable
    here (its per-variant recipe settings are then left out)."""
    from ..configuration import SwiftFormerConfig
    from ..errors import CheckpointError
    from ..io.architecture import variant_of

    try:
        return variant_of(SwiftFormerConfig.from_pretrained(model, local_files_only=True))
    except (OSError, CheckpointError, ValueError):
        return None


def _read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a YAML or JSON file; a syntax error or an unsafe YAML tag is one ``ValueError``
    naming the file and the line (YAML is read with ``safe_load``: tags such as ``!!python/object``
    are refused, never run)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise FileNotFoundError(f"cannot read config file {path}: {err.strerror or err}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"config file {path} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
            ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values, found {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{path}: setting names must be text, found {bad[0]!r}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _yaml_problem(err: Exception) -> str:
    """One line from a PyYAML error: what went wrong and where (its own text spans several lines)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or str(err)
    if problem.startswith("could not determine a constructor for the tag"):
        problem = problem.replace("could not determine a constructor for the tag", "unsupported tag") + (
            " (only plain values are allowed)"
        )
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(problem.split()) + where


def overwrite_staging_path(output: str | os.PathLike) -> Path:
    """Where a run with ``overwrite=True`` is built beside ``output``, which it replaces when the run ends
    (an interrupted one is continued with ``resume=True, overwrite=True``)."""
    return hidden_path(output, "overwrite")


# Interpolation names timm's RandomResizedCropAndInterpolation accepts.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos", "random")
MAX_IMAGE_SIZE = 8192  # the limit of image sizes, as for preprocessor configs
CLIP_MODES = ("norm", "value", "agc")  # timm.utils.dispatch_clip_grad's modes


MAX_LR = 1000.0  # the largest learning rate (and base, minimum and warm-up rate) a config may ask for


def _validate(config: TrainConfig) -> None:
    """Check every setting's type and range; one ``ValueError`` naming the first bad one."""
    _check_ranges(config)
    _check_types(config)
    _check_choices(config)


def _fail(config: TrainConfig, name: str, why: str) -> NoReturn:
    value = getattr(config, name)
    got = "" if value is None or isinstance(value, (int, float, str, tuple)) else f", got a {type(value).__name__}"
    raise ValueError(f"training setting {name}={value!r} is invalid: {why}{got}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _two_numbers(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(_number(v) for v in value)


def _require(config: TrainConfig, names: tuple[str, ...], ok: Callable[[Any], bool], why: str) -> None:
    """Fail on the first of ``names`` whose value is not ``ok``."""
    for name in names:
        if not ok(getattr(config, name)):
            _fail(config, name, why)


def _check_ranges(config: TrainConfig) -> None:
    """The numeric settings: integers or finite numbers (never booleans), each in its range. The order matters:
    a setting's type is checked before its range (``image_size``'s limit, ``betas``, ``scale``)."""
    _require(
        config,
        (
            *("epochs", "batch_size", "grad_accum_steps", "image_size", "repeated_aug", "eval_every", "lr_base_batch"),
            *("max_size", "fpn_channels", "rpn_proposals", "roi_batch_size", "detections_per_image"),
        ),
        lambda v: _integer(v) and v >= 1,
        "expected a positive integer",
    )
    _require(config, ("image_size",), lambda v: v <= MAX_IMAGE_SIZE, f"over the limit of {MAX_IMAGE_SIZE}")
    _require(config, ("workers", "seed"), lambda v: _integer(v) and v >= 0, "expected a non-negative integer")
    _require(
        config,
        ("smoothing", "re_prob", "drop_path_rate"),
        lambda v: _number(v) and 0 <= v < 1,
        "expected a number in [0, 1)",
    )
    _require(
        config,
        ("distillation_alpha", "hflip"),
        lambda v: _number(v) and 0 <= v <= 1,
        "expected a probability in [0, 1]",
    )
    _require(config, ("ema_decay",), lambda v: _number(v) and 0 <= v < 1, "expected a number in [0, 1)")
    _require(config, ("opt_eps",), lambda v: _number(v) and v > 0, "expected a positive number")
    # A learning rate over MAX_LR is a typo, and past float32's range it overflows in the optimizer (a traceback)
    _require(config, ("base_lr",), lambda v: _number(v) and 0 < v <= MAX_LR, f"expected a number in (0, {MAX_LR:g}]")
    _require(
        config,
        ("min_lr", "warmup_lr"),
        lambda v: _number(v) and 0 <= v <= MAX_LR,
        f"expected a number in [0, {MAX_LR:g}]",
    )
    _require(
        config,
        ("warmup_epochs", "weight_decay", "mixup", "cutmix"),
        lambda v: _number(v) and v >= 0,
        "expected a non-negative number",
    )
    _require(
        config,
        ("lr",),
        lambda v: v is None or (_number(v) and 0 < v <= MAX_LR),
        f"expected a number in (0, {MAX_LR:g}] or none",
    )
    _require(
        config,
        ("clip_grad", "color_jitter"),
        lambda v: v is None or (_number(v) and v >= 0),
        "expected a non-negative number or none",
    )
    _require(config, ("betas",), _two_numbers, "expected two numbers")
    _require(config, ("betas",), lambda b: all(0 <= v < 1 for v in b), "expected two numbers in [0, 1)")
    _require(config, ("scale",), _two_numbers, "expected two numbers MIN MAX")
    _require(
        config,
        ("scale",),
        lambda s: 0 < s[0] <= s[1] <= 1,
        "expected 0 < MIN <= MAX <= 1 (fractions of the image area)",
    )
    _require(config, ("eval_crop_pct",), lambda v: _number(v) and 0 < v <= 1, "expected a number in (0, 1]")
    _require(
        config,
        ("lr_steps",),
        lambda v: v is None or (_two_numbers(v) and 0 < v[0] <= v[1]),
        "expected two epochs FIRST SECOND (0 < FIRST <= SECOND) or none",
    )
    _require(
        config, ("iterations",), lambda v: v is None or (_integer(v) and v >= 1), "expected a positive integer or none"
    )
    _require(config, ("poly_power",), lambda v: _number(v) and v > 0, "expected a positive number")
    _require(config, ("cat_max_ratio",), lambda v: _number(v) and 0 < v <= 1, "expected a number in (0, 1]")
    _require(config, ("resize_ratio",), _two_numbers, "expected two numbers MIN MAX")
    _require(config, ("resize_ratio",), lambda r: 0 < r[0] <= r[1], "expected 0 < MIN <= MAX")


def _check_types(config: TrainConfig) -> None:
    """Switches are true or false; text settings are text, or None where the field's type allows it."""
    for f in dataclasses.fields(TrainConfig):
        value, annotation = getattr(config, f.name), str(f.type)
        optional = "None" in annotation
        if annotation == "bool" and not isinstance(value, bool):
            _fail(config, f.name, "expected true or false")
        if annotation.startswith("str") and not (value is None and optional) and not isinstance(value, str):
            _fail(config, f.name, "expected text" + (" or none" if optional else ""))


def _check_choices(config: TrainConfig) -> None:
    """Settings that name one of a known set, and settings that need another."""
    if config.precision not in ("auto", "fp32", "bf16"):
        _fail(config, "precision", "expected auto, fp32 or bf16")
    if variant_key(config.variant) is None:
        _fail(config, "variant", f"expected one of {', '.join(VARIANTS)}")
    if config.attention_variant is not None and config.attention_variant not in ATTENTION_VARIANTS:
        _fail(config, "attention_variant", f"expected one of {', '.join(ATTENTION_VARIANTS)} or none")
    if config.clip_mode not in CLIP_MODES:
        _fail(config, "clip_mode", f"expected one of {', '.join(CLIP_MODES)}")
    if config.interpolation not in INTERPOLATIONS:
        _fail(config, "interpolation", f"expected one of {', '.join(INTERPOLATIONS)}")
    if config.task not in TASKS:
        _fail(config, "task", f"expected one of {', '.join(TASKS)}")
    if config.schedule not in SCHEDULES:
        _fail(config, "schedule", f"expected one of {', '.join(SCHEDULES)}")
    if config.task == "detection":
        _check_detection(config)
    elif config.task != "classification":
        for name in ("teacher", "mixup", "cutmix", "smoothing"):
            if getattr(config, name):
                _fail(config, name, f"applies to classification only, not task={config.task}")
    if config.sync_bn and not config.device.startswith("cuda"):
        _fail(config, "sync_bn", "SyncBatchNorm needs CUDA devices; on CPU each process keeps its own statistics")


def _check_detection(config: TrainConfig) -> None:
    """What a detection run cannot use: the classifier's image mixing and distillation."""
    for name in ("mixup", "cutmix"):
        if getattr(config, name):
            _fail(config, name, "detection mixes no images: set it to 0 (the coco-maskrcnn-1x recipe does)")
    if config.teacher:
        _fail(config, "teacher", "distillation is for classification: none for detection")
    if config.image_size > config.max_size:
        _fail(config, "image_size", f"the shorter side of a detection image must not exceed max_size={config.max_size}")
