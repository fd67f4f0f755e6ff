"""Training settings: :class:`TrainConfig`, the recipes and config files.

Kept apart from the training loop (:mod:`swiftformer.training.trainer`) so that reading settings and
building the command line need no torch.

Settings resolve in this order, later winning: :class:`TrainConfig` defaults < the recipe <
``--config FILE`` (YAML or JSON) < command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_CONFIG_NAME = "train_config.json"  # a run's settings (a model folder's is config.json)
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Every training setting. Defaults are neutral; recipes (:data:`RECIPES`) fill in the rest."""

    # data and model
    data_dir: str | None = None
    output: str | None = None
    variant: str = "xs"
    init: str | None = None  # a model folder or hub id to start from (fine-tuning)
    attention_variant: str | None = None  # None: the variant's default / the init model's
    image_size: int = 224
    # schedule and optimizer
    epochs: int = 300
    batch_size: int = 128  # per process and micro-step
    grad_accum_steps: int = 1
    lr: float | None = None  # absolute learning rate; None: base_lr scaled by the global batch
    base_lr: float = 2e-3
    lr_base_batch: int = 2048
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: float = 5.0
    weight_decay: float = 0.025
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = 5.0  # max global gradient norm; None: no clipping
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
    model_ema: bool = True
    ema_decay: float = 0.99996
    # distillation (DeiT hard distillation through dist_head)
    teacher: str | None = None  # timm model name, a model folder, or None
    teacher_checkpoint: str | None = None  # weights for a timm teacher
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
        """``lr`` if set, else ``base_lr × global batch / lr_base_batch`` (linear scaling)."""
        if self.lr is not None:
            return self.lr
        return self.base_lr * self.global_batch(world_size) / self.lr_base_batch


# The paper's ImageNet recipe (SwiftFormer builds on DeiT/EfficientFormer training), and fine-tuning.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(
        epochs=300,
        base_lr=2e-3,
        lr_base_batch=2048,
        min_lr=1e-5,
        warmup_lr=1e-6,
        warmup_epochs=5,
        weight_decay=0.025,
        clip_grad=5.0,
        smoothing=0.1,
        auto_augment="rand-m9-mstd0.5-inc1",
        color_jitter=0.4,
        re_prob=0.25,
        scale=(0.08, 1.0),
        mixup=0.8,
        cutmix=1.0,
        repeated_aug=3,
        model_ema=True,
        ema_decay=0.99996,
        eval_crop_pct=0.875,
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
}
# The original code turns Mixup/CutMix off for the two smallest models.
_NO_MIXUP_VARIANTS = {"xs", "s"}


def resolve_config(
    default_recipe: str | None = None, config_file: str | os.PathLike | None = None, **overrides: Any
) -> TrainConfig:
    """Defaults < recipe < config file < ``overrides`` (e.g. parsed flags); unknown keys are errors.

    The recipe is ``overrides["recipe"]``, else the config file's ``recipe``, else ``default_recipe``.
    """
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = _read_config_file(config_file)
    recipe = overrides.get("recipe") or file_values.get("recipe") or default_recipe
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
        values.update(RECIPES[recipe])
        variant = overrides.get("variant") or file_values.get("variant") or TrainConfig.variant
        if recipe == "paper" and variant.lower() in _NO_MIXUP_VARIANTS:
            values.update(mixup=0.0, cutmix=0.0)
    values.update(file_values)
    # An override of None is an explicit "no value" (``--auto-augment none``), not "unset": the CLI passes
    # only the flags given. ``recipe`` alone is resolved above.
    values.update({k: v for k, v in overrides.items() if k != "recipe"})
    values["recipe"] = recipe
    if config_file is not None:
        values["config_file"] = str(config_file)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(unknown)}")
    for key in ("betas", "scale"):
        if key in values and values[key] is not None:
            values[key] = tuple(values[key])
    config = TrainConfig(**values)
    _validate(config)
    return config


def _read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise FileNotFoundError(f"cannot read config file {path}: {err}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _validate(config: TrainConfig) -> None:
    def fail(name: str, why: str) -> None:
        raise ValueError(f"training setting {name}={getattr(config, name)!r} is invalid: {why}")

    for name in ("epochs", "batch_size", "grad_accum_steps", "image_size", "repeated_aug", "eval_every"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
            fail(name, "expected a positive integer")
    for name in ("smoothing", "re_prob", "drop_path_rate"):
        if not 0 <= getattr(config, name) < 1:
            fail(name, "expected a value in [0, 1)")
    if not 0 <= config.distillation_alpha <= 1:
        fail("distillation_alpha", "expected a value in [0, 1]")
    if config.precision not in ("auto", "fp32", "bf16"):
        fail("precision", "expected auto, fp32 or bf16")
    if not 0 < config.eval_crop_pct <= 1:
        fail("eval_crop_pct", "expected a value in (0, 1]")
    if config.lr is not None and not config.lr > 0:
        fail("lr", "expected a positive number")
    if config.warmup_epochs < 0:
        fail("warmup_epochs", "expected a non-negative number")
    if config.sync_bn and not config.device.startswith("cuda"):
        fail("sync_bn", "SyncBatchNorm needs CUDA devices; on CPU each process keeps its own statistics")
