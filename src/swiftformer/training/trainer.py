"""Training and fine-tuning: the paper's recipe, one process or many (``torchrun``), exact resume.

    from swiftformer.training.config import resolve_config
    from swiftformer.training.trainer import train

    config = resolve_config("paper", None, data_dir="DATA", variant="xs", epochs=300, output="runs/xs")
    train(config)                 # under torchrun, every process makes the same call
    train(config, resume=True)    # after a crash or preemption: continues runs/xs from its last epoch

Settings resolve in this order, later winning: :class:`TrainConfig` defaults < the recipe < a config
file (YAML or JSON) < the arguments of :func:`~swiftformer.training.config.resolve_config` (the
``swiftformer train`` command's flags, one per field: docs/training.md). The resolved config is saved
as ``OUTPUT/train_config.json``. Errors name the settings as the config file and Python do
(``batch_size``, ``resume=True``); the command shows them as its flags.

Reproducibility: every epoch reseeds all RNGs from ``(seed, epoch, rank)`` and the sampler's order is
a function of ``(seed, epoch)``, so a run resumed from its last epoch checkpoint replays the
interrupted epoch exactly and ends with the weights an uninterrupted run would have.

Sharding: the sampler cuts each epoch into ``world_size × grad_accum_steps`` interleaved shards, one per
(rank, micro-step). Two processes with batch b therefore see the same micro-batches as one process
with batch b and ``grad_accum_steps=2``; with deterministic augmentation (random augmentation is
seeded per rank) and no unreadable images, they end with the same weights (BatchNorm statistics are
per micro-batch in both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import SwiftFormerConfig, variant_key
from ..hardware import cpu_info
from ..image_processing import CONVNEXT_WARP_FROM, SwiftFormerImageProcessor
from ..io.checkpoints import read_checkpoint
from ..io.files import (
    atomic_write,
    check_target,
    crash_point,
    crash_requested,
    display_path,
    path_bytes,
    read_json,
    remove_temporaries,
    replace_path,
    write_json,
)
from ..modeling import SwiftFormerForImageClassification
from ..modeling_utils import SwiftFormerPreTrainedModel, uncompiled
from ..perf import tune_malloc
from . import distributed
from .config import (  # noqa: F401 - the training API in one place
    CHECKPOINT_NAME,
    METRICS_NAME,
    RECIPES,
    TRAIN_CONFIG_NAME,
    TrainConfig,
    overwrite_staging_path,
    resolve_config,
)

UNREADABLE_NAME = "unreadable.txt"
# Settings a resumed run may not change: they define the model the checkpoint holds.
_MODEL_SETTINGS = ("task", "variant", "init", "attention_variant")
# Settings that are not part of a run's recipe (where it is, where it came from).
_PROVENANCE = ("output", "config_file", "recipe", "data_dir")


# ------------------------------------------------------------------------------------------ sampler
class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Per-process batches of ``batch_size × grad_accum_steps`` indices, deterministic per epoch.

    The epoch's order (a permutation seeded by ``(seed, epoch)``, each index repeated
    ``repeats`` times in a row for repeated augmentation, cut back to the dataset length as DeiT does)
    is dealt into ``world_size × grad_accum_steps`` interleaved shards; repeats of an image thus land in
    different shards. Process ``rank`` yields, per optimizer step, the next ``batch_size`` indices of
    each of its ``grad_accum_steps`` shards, in order. Incomplete final batches are dropped.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        grad_accum_steps: int = 1,
        shuffle: bool = True,
        repeats: int = 1,
        seed: int = 0,
    ) -> None:
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.accum = rank, world_size, grad_accum_steps
        self.shuffle, self.repeats, self.seed, self.epoch = shuffle, repeats, seed, 0
        self.num_shards = world_size * grad_accum_steps
        self.steps = (num_samples // self.num_shards) // batch_size
        if self.steps == 0:
            raise ValueError(
                f"{num_samples} training images are too few for {self.num_shards} shard(s) of batch "
                f"{batch_size}: lower batch_size"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_samples)
        indices = order.repeat_interleave(self.repeats)[: self.num_samples].tolist()
        shards = [indices[s :: self.num_shards] for s in range(self.rank * self.accum, (self.rank + 1) * self.accum)]
        for step in range(self.steps):
            yield [i for shard in shards for i in shard[step * self.batch_size : (step + 1) * self.batch_size]]


# ------------------------------------------------------------------------------------------ helpers
def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and (device.startswith("cuda") or cpu_info().native_bf16)):
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = cast("tuple[Any, ...]", np.random.get_state())  # the legacy tuple (legacy=True, the default)
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])


def param_groups(model: nn.Module, weight_decay: float, layer_scale_decay: bool = False) -> list[dict[str, Any]]:
    """No weight decay on biases and norms (1-D parameters), as timm does, nor on the layer scales (C, 1, 1)
    unless ``layer_scale_decay`` (the original code decays them: timm 0.5.4 spared only 1-D parameters)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        spared = param.ndim <= 1 or ("layer_scale" in name and not layer_scale_decay)
        (no_decay if spared else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_teacher(config: TrainConfig, classes: list[str]) -> nn.Module | None:
    """The distillation teacher: a model folder / hub id of this library, or a timm model name.

    Raises:
        ValueError: a teacher folder whose classes are not the data's ``classes`` (another number, or named
            and in another order): its predictions would be targets of other classes.
    """
    if not config.teacher:
        return None
    num_classes = len(classes)
    teacher: nn.Module
    if Path(config.teacher).is_dir():
        teacher = SwiftFormerForImageClassification.from_pretrained(config.teacher)
        _check_teacher_classes(teacher.config, classes, config.teacher)
    else:
        import timm

        checkpoint: dict[str, Any] = {"checkpoint_path": config.teacher_checkpoint} if config.teacher_checkpoint else {}
        try:
            teacher = timm.create_model(
                config.teacher, pretrained=config.teacher_checkpoint is None, num_classes=num_classes, **checkpoint
            )
        except RuntimeError as err:
            raise ValueError(f"cannot build teacher {config.teacher!r}: {err}") from None
        except OSError as err:
            raise OSError(
                f"cannot load the pretrained weights of teacher {config.teacher!r} ({_first_line(err)}); "
                "offline, pass teacher_checkpoint=PATH (its timm weights, .safetensors or .pth), teacher=FOLDER "
                "(a model folder), or no_teacher=True to train without distillation"
            ) from None
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _check_teacher_classes(config: SwiftFormerConfig, classes: list[str], where: str) -> None:
    names = [config.id2label[i] for i in range(config.num_labels)]
    generic = names == [f"LABEL_{i}" for i in range(len(names))]  # unnamed: only the number can be checked
    if len(names) != len(classes) or (not generic and names != classes):
        shown = names if len(names) <= 10 else [*names[:10], "..."]
        raise ValueError(
            f"teacher {display_path(where)} predicts {len(names)} classes {shown}, not the data's {len(classes)} "
            f"{classes if len(classes) <= 10 else [*classes[:10], '...']} in their order: distill from a teacher "
            "trained on these classes"
        )


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def _bare_model(model: nn.Module) -> SwiftFormerForImageClassification:
    """The classifier inside ``torch.compile``'s and ``DistributedDataParallel``'s wrappers."""
    model = uncompiled(model)
    return cast(SwiftFormerForImageClassification, getattr(model, "module", model))  # DDP keeps it as .module


# ------------------------------------------------------------------------------------------ trainer
@dataclass
class TrainResult:
    output: Path
    best_top1: float  # the best (and last) value of ``metric``: top-1 for a classifier, box AP for a detector
    last_top1: float | None
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    metric: str = "val_top1"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :func:`train`; ``message`` says where the run stopped (``where``) and how to
    continue it: ``train(config, resume=True)`` when ``resume``, with ``overwrite=True`` when ``overwrite``."""

    def __init__(self, where: str, *, resume: bool = False, overwrite: bool = False) -> None:
        how = f"; continue with resume=True{', overwrite=True' if overwrite else ''}" if resume else ""
        super().__init__(where + how)
        self.message, self.where, self.resume, self.overwrite = where + how, where, resume, overwrite


class Trainer:
    """Owns the model, data, optimizer, schedule, EMA, checkpoints and logs of one run.

    This class trains classifiers; a task's trainer (:func:`trainer_class`) overrides the task's steps:
    ``_open_data``, ``_build_model``, ``_build_scheduler``, ``_collate_fn``, ``_train_step``, ``evaluate``,
    ``_save_model_folder``, ``_val_summary``, and the metric that picks the best model (``score_name``).

    ``overwrite``: a new run may replace a non-empty ``config.output`` (else refused); it is built in
    :func:`~swiftformer.training.config.overwrite_staging_path` beside it and moved over it when it
    ends. With ``resume`` it continues such an interrupted replacement run. ``allow_data_change``: a
    resumed run may continue on other data (another ``data_dir`` or other image counts; never other classes).
    """

    score_name = "val_top1"  # the validation metric that picks best/ (higher is better)
    train_set: Any  # the task's datasets (an image folder or Hugging Face split here; see _open_data)
    val_set: Any

    def __init__(
        self,
        config: TrainConfig,
        resume: bool = False,
        *,
        overwrite: bool = False,
        allow_data_change: bool = False,
    ) -> None:
        self.config = config
        if not config.output:
            raise ValueError("output is required (the run's folder)")
        if config.data_dir is None:
            raise ValueError("data_dir is required")
        distributed.check_device(config.device)
        self.dist = distributed.init(config.device)
        self.device = torch.device(
            config.device if not config.device.startswith("cuda") else f"cuda:{self.dist.local_rank}"
        )
        self.final_output = Path(config.output)
        self.output = self._claim_output(resume, overwrite)  # the staging folder of an overwrite=True run
        self.amp_dtype = autocast_dtype(config.precision, config.device)
        self.epoch: int | None = None  # the epoch being trained (0-based), for the interruption message
        self.checkpointed_epochs = 0
        self.started = False  # whether fit() has written anything

        # -- data
        self.processor = self._eval_processor()
        self._open_data()
        state = self._read_checkpoint(allow_data_change) if resume else None
        self.sampler = ShardedBatchSampler(
            len(self.train_set),
            config.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            grad_accum_steps=config.grad_accum_steps,
            repeats=config.repeated_aug,
            seed=config.seed,
        )
        if config.iterations is not None:  # an iteration budget: as many epochs as it needs, the last one cut
            self.config = config = dataclasses.replace(config, epochs=math.ceil(config.iterations / len(self.sampler)))

        # -- model
        seed_everything(config.seed)  # identical initial weights on every rank
        self.model = self._build_model().to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.teacher = build_teacher(config, self.classes)
        if self.teacher is not None:
            self.teacher = self.teacher.to(self.device)
        self.ema = None
        if config.model_ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=config.ema_decay)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, config.weight_decay, config.layer_scale_decay),
            lr=config.resolved_lr(self.dist.world_size),
            betas=config.betas,
            eps=config.opt_eps,
        )
        self.scheduler = self._build_scheduler()
        self.mixup = self._build_mixup()
        self.start_epoch, self.best_top1 = 0, -1.0
        self.history: list[dict[str, Any]] = []  # one record per epoch
        if state is not None:
            self._restore(state)
        self.checkpointed_epochs = self.start_epoch

        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=None if self.device.type == "cpu" else [self.device]
            )
        if config.compile:
            self.train_model = cast(nn.Module, torch.compile(self.train_model))  # a module in, a module out

    # ------------------------------------------------------------------ construction
    def _open_data(self) -> None:
        """``train_set``, ``classes`` and ``val_set`` of the run (a task's trainer opens its own kind of data)."""
        from . import data

        c = self.config
        assert c.data_dir is not None  # checked in __init__
        self.train_set = data.open_dataset(c.data_dir, "train", self._train_transform())
        self.classes = list(self.train_set.classes)
        if len(self.classes) < 2:
            raise ValueError(
                f"the training data in {display_path(c.data_dir)} has {len(self.classes)} class "
                f"{self.classes}: a classifier needs at least two (one folder per class)"
            )
        self.val_set = data.open_dataset(
            c.data_dir, "val", data.build_eval_transform(self.processor), classes=self.classes
        )

    def _claim_output(self, resume: bool, overwrite: bool) -> Path:
        """The folder this run writes to. Rank 0 decides (the only writer), every rank gets its answer.

        A new run refuses a non-empty output unless ``overwrite`` (then it runs in the staging folder);
        ``resume`` with ``overwrite`` continues an interrupted replacement run in the staging folder.
        """
        final, staged = self.final_output, overwrite_staging_path(self.final_output)
        decision: tuple[str | None, Exception | None] = (None, None)
        if self.dist.is_main:
            try:
                if resume and overwrite:
                    if not (staged / TRAIN_CONFIG_NAME).is_file():
                        raise _no_replacement_run(final)
                    decision = (str(staged), None)
                elif resume:
                    if (staged / TRAIN_CONFIG_NAME).is_file():
                        print(
                            f"note: an interrupted replacement of {display_path(final)} (overwrite) waits in "
                            f"{display_path(staged)}; this resumes {display_path(final)} itself (resume with "
                            "overwrite to continue that one instead)",
                            file=sys.stderr,
                        )
                    decision = (str(final), None)
                else:
                    run = (final / TRAIN_CONFIG_NAME).is_file()
                    hint = (
                        "continue that run with resume=True, replace it with overwrite=True, or choose another output"
                        if run
                        else "replace it with overwrite=True, or choose another output"
                    )
                    what = "output folder" + (" (a training run)" if run else "")
                    if check_target(final, what, overwrite, hint=hint):
                        if staged.exists():  # an earlier, interrupted replacement run: this one replaces it
                            print(
                                f"note: removing {display_path(staged)}, an interrupted replacement (overwrite)",
                                file=sys.stderr,
                            )
                            shutil.rmtree(staged, ignore_errors=True)
                        decision = (str(staged), None)
                    else:
                        decision = (str(final), None)
            except (OSError, ValueError) as err:
                decision = (None, err)
        path, error = distributed.all_gather_objects(decision)[0]
        if error is not None:
            raise error
        assert path is not None  # no error: a path
        return Path(path)

    def _eval_processor(self) -> SwiftFormerImageProcessor:
        size, crop = self.config.image_size, self.config.eval_crop_pct
        if crop >= 1.0:
            return SwiftFormerImageProcessor(size={"height": size, "width": size}, resample=3)
        if size >= CONVNEXT_WARP_FROM:  # ConvNeXt's processor warps from there, ignoring crop_pct: crop explicitly
            return SwiftFormerImageProcessor(
                size={"shortest_edge": int(size / crop)}, do_center_crop=True, crop_size=size, resample=3
            )
        return SwiftFormerImageProcessor(size={"shortest_edge": size}, crop_pct=crop, resample=3)

    def _train_transform(self):
        from .data import build_train_transform

        c = self.config
        try:
            return build_train_transform(
                c.image_size,
                auto_augment=c.auto_augment,
                color_jitter=c.color_jitter,
                re_prob=c.re_prob,
                interpolation=c.interpolation,
                scale=c.scale,
                hflip=c.hflip,
                mean=tuple(self.processor.image_mean),
                std=tuple(self.processor.image_std),
            )
        except (AssertionError, KeyError, ValueError, TypeError, IndexError) as err:
            # The other settings were checked by resolve_config; the policy string is timm's to parse.
            raise ValueError(
                f"training setting auto_augment={c.auto_augment!r} is invalid: timm cannot parse it ({err}); "
                "e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, original, v0, 3a, or none"
            ) from None

    def _build_model(self) -> SwiftFormerPreTrainedModel:
        c = self.config
        id2label = dict(enumerate(self.classes))
        overrides: dict[str, Any] = {
            "id2label": id2label,
            "drop_path_rate": c.drop_path_rate,
            "image_size": c.image_size,
        }
        if c.attention_variant is not None:
            overrides["attention_variant"] = c.attention_variant
        if c.init:
            init = SwiftFormerConfig.from_pretrained(c.init)  # read once: its labels are compared below
            model = SwiftFormerForImageClassification.from_pretrained(
                c.init, config=init, ignore_mismatched_sizes=True, **overrides
            )
            names = [init.id2label[i] for i in range(init.num_labels)]
            if names != self.classes and sorted(names) == sorted(self.classes):
                # The data's classes in another order: each head row goes to its class's new index
                order = torch.tensor([names.index(name) for name in self.classes])
                with torch.no_grad():
                    for head in (model.head, model.dist_head):
                        head.weight.copy_(head.weight[order])
                        head.bias.copy_(head.bias[order])
                self._log(f"note: the classes of {display_path(c.init)} are the data's in another order; reordered")
            return model.train()
        return SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(c.variant, **overrides))

    def _build_scheduler(self):
        from timm.scheduler import CosineLRScheduler, PolyLRScheduler

        c = self.config
        steps = len(self.sampler)
        if c.schedule == "poly":  # per optimizer step over the iteration budget (or every epoch's steps)
            total = c.iterations if c.iterations is not None else c.epochs * steps
            warmup_steps = min(round(c.warmup_epochs * steps), total // 2)
            return PolyLRScheduler(
                self.optimizer,
                t_initial=max(1, total - warmup_steps),
                power=c.poly_power,
                lr_min=c.min_lr,
                warmup_t=warmup_steps,
                warmup_lr_init=c.warmup_lr,
                warmup_prefix=True,
                t_in_epochs=False,
            )
        # Short runs (e.g. a paper-recipe smoke test of 3 epochs) keep at most half of them for warm-up.
        warmup = min(c.warmup_epochs, c.epochs / 2)
        if warmup < c.warmup_epochs:
            self._log(f"note: warm-up shortened to {warmup:g} of {c.epochs} epochs")
        if c.schedule_per_epoch:
            # As the original code: timm's scheduler in epochs, the cosine spanning every epoch (warm-up
            # included), stepped with each finished epoch's index, so epoch e + 1 trains at the rate of t = e.
            return CosineLRScheduler(
                self.optimizer,
                t_initial=c.epochs,
                lr_min=c.min_lr,
                warmup_t=warmup,
                warmup_lr_init=c.warmup_lr,
                warmup_prefix=False,
                t_in_epochs=True,
            )
        total = c.iterations if c.iterations is not None else c.epochs * steps  # an iteration budget: its steps
        return CosineLRScheduler(
            self.optimizer,
            t_initial=max(1, total - round(warmup * steps)),
            lr_min=c.min_lr,
            warmup_t=round(warmup * steps),
            warmup_lr_init=c.warmup_lr,
            warmup_prefix=True,
            t_in_epochs=False,
        )

    def _build_mixup(self):
        c = self.config
        if c.mixup <= 0 and c.cutmix <= 0:
            return None
        from timm.data import Mixup

        return Mixup(
            mixup_alpha=c.mixup, cutmix_alpha=c.cutmix, label_smoothing=c.smoothing, num_classes=len(self.classes)
        )

    # ------------------------------------------------------------------ one step
    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c = self.config
        targets = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)  # soft targets (B, C)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = self.train_model(images)
        cls_logits, dist_logits = out.cls_logits.float(), out.distillation_logits.float()

        def base_loss(logits: torch.Tensor) -> torch.Tensor:
            if targets.ndim == 2:  # mixed soft targets
                return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
            return F.cross_entropy(logits, targets, label_smoothing=c.smoothing)

        if self.teacher is None:
            # No teacher: train what inference uses, the mean of the two heads.
            return base_loss((cls_logits + dist_logits) / 2)
        with (
            torch.no_grad(),
            torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None),
        ):
            teacher_labels = _logits(self.teacher(images)).argmax(dim=-1)
        # DeiT hard distillation: the class head learns the labels, the distillation head the teacher.
        alpha = c.distillation_alpha
        return (1 - alpha) * base_loss(cls_logits) + alpha * F.cross_entropy(dist_logits, teacher_labels)

    def _collate_fn(self) -> Callable[[list[Any]], Any]:
        """The function that makes a batch of dataset items (here a :class:`~swiftformer.training.data.Batch`; a
        batch has ``unreadable``). A module-level function, not a method: DataLoader workers get it, not the trainer."""
        from .data import collate

        return collate

    def _train_step(self, batch: Any) -> tuple[float, int]:
        """One optimizer step on ``batch``: (the summed loss of its images, their number)."""
        if not self._all_ranks_have_images(batch.pixel_values is not None):
            return 0.0, 0
        return self._optimizer_step(batch.pixel_values, batch.labels) * len(batch.labels), len(batch.labels)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        from tqdm import tqdm

        c = self.config
        seed_everything(c.seed + 1000 * epoch + self.dist.rank)
        self.sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=c.workers,
            collate_fn=self._collate_fn(),
            persistent_workers=False,
        )
        self.train_model.train()
        steps = len(self.sampler)
        if c.iterations is not None:  # the budget's last epoch stops part-way
            steps = min(steps, c.iterations - epoch * len(self.sampler))
        bar = tqdm(
            loader,
            total=steps,
            desc=f"epoch {epoch + 1}/{c.epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=not (self.dist.is_main and sys.stderr.isatty()),
        )  # logs get the epoch summary line
        loss_sum, seen, unreadable, start = 0.0, 0, [], time.perf_counter()
        for step, batch in enumerate(bar):
            if step == steps:
                break
            unreadable.extend(batch.unreadable)
            step_loss, step_images = self._train_step(batch)
            loss_sum, seen = loss_sum + step_loss, seen + step_images
            self.scheduler.step_update(epoch * len(self.sampler) + step + 1)  # the global step, also in a cut epoch
            crash_point(f"{epoch}:{step}")  # testing aid (io.files.crash_point)
            bar.set_postfix(
                loss=f"{loss_sum / max(seen, 1):.4f}",
                lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                img_s=f"{seen * self.dist.world_size / (time.perf_counter() - start):.0f}",
            )
        seconds = time.perf_counter() - start
        totals = distributed.all_reduce_sum(torch.tensor([loss_sum, float(seen)], dtype=torch.float64))
        bad = [p for part in distributed.all_gather_objects(unreadable) for p in part]
        return {
            "train_loss": (totals[0] / totals[1].clamp_min(1)).item(),
            "train_images": int(totals[1]),
            "train_images_per_second": float(totals[1]) / seconds,
            "train_seconds": seconds,
            "unreadable": bad,
        }

    def _all_ranks_have_images(self, here: bool) -> bool:
        """Whether every process has a readable image in this step's batch. Processes must step together
        (DDP reduces gradients in the backward pass): a batch with no readable image skips the step on all."""
        if not self.dist.enabled:
            return here
        missing = torch.tensor([0.0 if here else 1.0], device=self.device)
        return distributed.all_reduce_sum(missing).item() == 0

    def _optimizer_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:

        c = self.config
        if c.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        images, labels = images.to(self.device), labels.to(self.device)
        if len(labels) == 1 and c.batch_size > 1:
            images, labels = _paired(images, labels)  # the rest of its batch was unreadable
        chunks = list(zip(images.chunk(c.grad_accum_steps), labels.chunk(c.grad_accum_steps)))
        if c.batch_size > 1:  # a micro-batch left with one image by unreadable ones
            chunks = [_paired(x, y) if len(y) == 1 else (x, y) for x, y in chunks]
        if self.mixup is not None:  # timm's Mixup pairs images: every micro-batch must be even
            chunks = [(x[:-1], y[:-1]) if len(y) % 2 and len(y) > 1 else (x, y) for x, y in chunks]
        return self._accumulate_and_step([lambda x=x, y=y: self._loss(x, y) for x, y in chunks])

    def _accumulate_and_step(self, losses: list[Any]) -> float:
        """Backward each micro-batch's loss (``losses``: callables, one per micro-batch; DDP reduces the
        gradients in the last one's backward), then one optimizer step; returns the mean loss."""
        from timm.utils import dispatch_clip_grad  # timm: the train extra

        c = self.config
        total = 0.0
        for i, compute_loss in enumerate(losses):
            last = i == len(losses) - 1
            sync = (
                contextlib.nullcontext()
                if last or not self.dist.enabled
                else cast(nn.parallel.DistributedDataParallel, uncompiled(self.train_model)).no_sync()
            )
            with sync:
                loss = compute_loss()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss is {loss.item()}; lower the learning rate or check the data")
                (loss / len(losses)).backward()
            total += loss.item() / len(losses)
        if c.clip_grad:  # timm's clipping, as the original: "agc" rescales each unit's gradient to its weights' norm
            dispatch_clip_grad(self.model.parameters(), c.clip_grad, mode=c.clip_mode)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return total

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        from .data import collate
        from .evaluate import evaluate, shard_indices

        subset = torch.utils.data.Subset(
            self.val_set, shard_indices(len(self.val_set), self.dist.rank, self.dist.world_size)
        )
        loader = torch.utils.data.DataLoader(
            subset, batch_size=self.config.batch_size, num_workers=self.config.workers, collate_fn=collate
        )
        result = evaluate(
            model,
            loader,
            device=self.device,
            autocast_dtype=self.amp_dtype,
            channels_last=self.config.channels_last,
            class_names=self.classes,
        )
        if result.images == 0:  # a NaN top-1 would pick no best/ and end "successfully"
            raise ValueError(_none_readable("validation", len(self.val_set), result.unreadable))
        return {"val_top1": result.top1, "val_top5": result.top5, "val_loss": result.loss}

    # ------------------------------------------------------------------ checkpoints
    def _data_fingerprint(self) -> dict[str, Any]:
        """What a resumed run compares: the data folder (absolute), the classes, the image counts."""
        data_dir = self.config.data_dir
        assert data_dir is not None  # required: checked in __init__
        where = Path(os.fspath(data_dir)).expanduser()
        return {
            "data_dir": os.path.abspath(where) if where.exists() else os.fspath(data_dir),
            "classes": list(self.classes),
            "train_images": len(self.train_set),
            "val_images": len(self.val_set),
        }

    def _save_checkpoint(self, epoch: int) -> None:
        state = {
            "epoch": epoch + 1,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "best_top1": self.best_top1,
            "history": self.history,
            "rng": _rng_state(),
            "config": dataclasses.asdict(self.config),
            "data": self._data_fingerprint(),
        }
        point = f"checkpoint:{epoch + 1}"
        with atomic_write(self.output / CHECKPOINT_NAME) as handle:
            if crash_requested(point):  # testing aid: stop half-way through the file
                buffer = io.BytesIO()
                torch.save(state, buffer)
                data = buffer.getvalue()
                handle.write(data[: len(data) // 2])
                handle.flush()
                crash_point(point)
                handle.write(data[len(data) // 2 :])
            else:
                torch.save(state, handle)
        self.checkpointed_epochs = epoch + 1

    def _read_checkpoint(self, allow_data_change: bool) -> dict[str, Any] | None:
        """The checkpoint of the run being resumed, checked against this run's settings and data; None
        when the run never finished an epoch (it starts from epoch 1: nothing is lost)."""
        path = self.output / CHECKPOINT_NAME
        where = display_path(path)
        if not path.is_file():
            if (self.output / METRICS_NAME).is_file():
                raise FileNotFoundError(
                    f"cannot resume: {where} does not exist, though {METRICS_NAME} records finished epochs"
                )
            self._log(f"note: {display_path(self.output)} has no finished epoch yet: the run starts from epoch 1")
            return None
        try:
            state = read_checkpoint(path)
            if not isinstance(state, dict) or not {"epoch", "model", "optimizer"} <= set(state):
                raise ValueError("not a checkpoint written by swiftformer train")
        except (ValueError, OSError) as err:
            reason = " ".join(str(err).split())
            raise ValueError(f"cannot resume from {where}: unreadable checkpoint ({reason})") from None
        self._check_resume(state, allow_data_change)
        return state

    def _check_resume(self, state: dict[str, Any], allow_data_change: bool) -> None:
        """Refuse a resume whose model or data differs from the checkpoint's, saying what differs."""
        run, saved = display_path(self.final_output), state.get("config") or {}
        now = dataclasses.asdict(self.config)
        for name in _MODEL_SETTINGS:
            if name not in saved or (name == "variant" and (saved.get("init") or now.get("init"))):
                continue
            old, new = saved[name], now[name]
            same = variant_key(str(old)) == variant_key(str(new)) if name == "variant" else old == new
            if not same:
                raise ValueError(
                    f"cannot resume {run}: it was trained with {name}={old!r}, not {new!r}; a run's model "
                    f"cannot change (start a new run in another output, e.g. with init={run}/last)"
                )
        fingerprint, before = self._data_fingerprint(), state.get("data")
        changes = []
        if before is not None:
            if before["classes"] != fingerprint["classes"]:
                gone = [c for c in before["classes"] if c not in fingerprint["classes"]]
                new = [c for c in fingerprint["classes"] if c not in before["classes"]]
                detail = "; ".join(
                    part
                    for part in (
                        f"missing {gone[:5]}" if gone else "",
                        f"new {new[:5]}" if new else "",
                        "" if gone or new else "another order",
                    )
                    if part
                )
                raise ValueError(
                    f"cannot resume {run}: the classes of the data changed ({len(before['classes'])} → "
                    f"{len(fingerprint['classes'])}: {detail}); a run's classes cannot change (fine-tune it "
                    f"in another output, with init={run}/last, instead)"
                )
            if before["data_dir"] != fingerprint["data_dir"]:
                changes.append(f"data_dir {display_path(before['data_dir'])} → {display_path(fingerprint['data_dir'])}")
            for key in ("train_images", "val_images"):
                if before[key] != fingerprint[key]:
                    changes.append(f"{key.replace('_', ' ')} {before[key]} → {fingerprint[key]}")
        elif saved.get("data_dir") not in (None, now["data_dir"]):
            changes.append(f"data_dir {display_path(saved['data_dir'])} → {display_path(now['data_dir'])}")
        if changes and not allow_data_change:
            raise ValueError(
                f"cannot resume {run}: its data changed ({'; '.join(changes)}); pass allow_data_change=True to "
                "continue on this data"
            )
        settings = [
            f"{name} {saved[name]!r} → {now[name]!r}"
            for name in now
            if name in saved and name not in _PROVENANCE and _plain(saved[name]) != _plain(now[name])
        ]
        for what, items in (("data", changes), ("settings", settings)):
            if items:
                self._log(f"note: resuming {run} with changed {what}: {'; '.join(items)}")

    def _restore(self, state: dict[str, Any]) -> None:
        where = display_path(self.output / CHECKPOINT_NAME)
        try:
            self.model.load_state_dict(state["model"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            elif self.ema is not None:  # EMA turned on at this resume: it starts from the weights trained so far
                self.ema.set(self.model)
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
            more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
            raise ValueError(
                f"cannot resume from {where}: it holds another model than these settings build ({detail}{more})"
            ) from None
        self.start_epoch, self.best_top1, self.history = state["epoch"], state["best_top1"], list(state["history"])
        _set_rng_state(state["rng"])
        # The schedule is the one these settings build (a resume may change --epochs, --lr, --min-lr, the warm-up),
        # set to where the run stopped: timm's schedules are functions of the epoch or step, nothing else carries.
        if self.start_epoch > 0:
            if self.scheduler.t_in_epochs:
                self.scheduler.step(self.start_epoch - 1)  # epoch e + 1 trains at the rate of t = e (fit)
            else:
                self.scheduler.step_update(self.start_epoch * len(self.sampler))

    def _save_model_folder(self, model: nn.Module, name: str) -> None:
        folder = self.output / name
        _bare_model(model).save_pretrained(folder)
        self.processor.save_pretrained(folder)

    # ------------------------------------------------------------------ the run
    def _begin(self) -> None:
        """The main process's start: the output folder (cleared of a killed run's half-done writes), the settings,
        a resumed run's metrics, the first log line."""
        c = self.config
        self.started = True
        self.output.mkdir(parents=True, exist_ok=True)
        for folder in (self.output, self.output / "last", self.output / "best"):
            remove_temporaries(folder)  # of writes a killed run left half-done (its checkpoint, metrics ...)
        write_json(self.output / TRAIN_CONFIG_NAME, dataclasses.asdict(self.config))
        if self.history:  # resumed: a run killed between its checkpoint and its metrics lacks the last line
            self._rewrite_metrics()
        self._log(
            f"training {len(self.train_set)} images in {len(self.classes)} classes, validating on "
            f"{len(self.val_set)}; {self.dist.world_size} process(es), global batch "
            f"{c.global_batch(self.dist.world_size)}, lr {c.resolved_lr(self.dist.world_size):.3g}, "
            f"precision {'bf16' if self.amp_dtype else 'fp32'}, teacher {c.teacher or 'none'}"
        )

    def fit(self) -> TrainResult:
        c = self.config
        main = self.dist.is_main
        if main:
            self._begin()
        writer = _tensorboard(self.output) if main else None
        last_top1 = None
        for epoch in range(self.start_epoch, c.epochs):
            self.epoch = epoch
            metrics: dict[str, Any] = {
                "epoch": epoch + 1,
                **self.train_epoch(epoch),
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            if metrics["train_images"] == 0:
                raise ValueError(_none_readable(f"epoch {epoch + 1}", len(self.train_set), metrics["unreadable"]))
            self.scheduler.step(epoch)  # a per-epoch schedule moves here; a per-step one (in train_epoch) ignores it
            if (epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs:
                metrics.update(self.evaluate(self.model))
                candidates = [(metrics[self.score_name], self.model)]
                if self.ema is not None:
                    ema_metrics = self.evaluate(self.ema.module)
                    metrics.update({f"ema_{k}": v for k, v in ema_metrics.items()})
                    candidates.append((ema_metrics[self.score_name], self.ema.module))
                top1, best_model = max(candidates, key=lambda pair: pair[0])
                last_top1 = metrics[self.score_name]
                if top1 > self.best_top1:
                    self.best_top1 = top1
                    if main:
                        self._save_model_folder(best_model, "best")
            self.history.append({**metrics, "unreadable": len(metrics["unreadable"])})
            # The checkpoint commits the epoch: what is written before it (last/, unreadable.txt) is
            # rewritten when a resumed run replays the epoch, what is written after it (metrics.jsonl)
            # is derived from the checkpointed history.
            if main:
                self._save_model_folder(self.model, "last")
                self._write_unreadable(metrics["epoch"], metrics["unreadable"])
                self._save_checkpoint(epoch)
                self._write_metrics(metrics, writer)
            else:
                self.checkpointed_epochs = epoch + 1
            distributed.barrier()
        self.epoch = None
        if main:
            from .plots import plot_training_curves

            if writer is not None:
                writer.close()
            if self.history:
                plot_training_curves(self.output / METRICS_NAME, self.output)
            if self.output != self.final_output:  # overwrite: the new run is complete; now the old one goes
                replace_path(self.output, self.final_output)
        distributed.barrier()
        self.output = self.final_output
        return TrainResult(
            self.output, self.best_top1, last_top1, c.epochs - self.start_epoch, self.history, self.score_name
        )

    def _write_unreadable(self, epoch: int, paths: list[str]) -> None:
        """Rewrite unreadable.txt (atomically) with this epoch's unreadable images, one ``epoch N: PATH``
        line each. Paths are written as the file system's bytes (any name, UTF-8 or not; a line break in
        a name is escaped); lines of this or later epochs (from an interrupted run) are replaced."""
        path = self.output / UNREADABLE_NAME
        old = path.read_bytes().splitlines(keepends=True) if path.is_file() else []
        kept = [line for line in old if _epoch_of(line) < epoch]
        new = [
            b"epoch %d: " % epoch + path_bytes(p).replace(b"\n", b"\\n").replace(b"\r", b"\\r") + b"\n" for p in paths
        ]
        if new or len(kept) != len(old):
            with atomic_write(path, "wb") as handle:
                handle.writelines(kept + new)

    def _write_metrics(self, metrics: dict[str, Any], writer: Any) -> None:
        """Log one epoch. metrics.jsonl is rewritten from the checkpointed history, so a resumed run
        never holds a duplicate or missing line."""
        record = self.history[-1]
        self._rewrite_metrics()
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    writer.add_scalar(key, value, record["epoch"])
        val, ema = self._val_summary(metrics)
        bad = f"  {record['unreadable']} unreadable (see {UNREADABLE_NAME})" if record["unreadable"] else ""
        self._log(
            f"epoch {metrics['epoch']}/{self.config.epochs}  loss {metrics['train_loss']:.4f}{val}{ema}  "
            f"lr {metrics['lr']:.2e}  {metrics['train_images_per_second']:.0f} img/s  "
            f"{metrics['train_seconds']:.1f} s{bad}"
        )

    def _rewrite_metrics(self) -> None:
        """metrics.jsonl as the checkpointed history holds it."""
        with atomic_write(self.output / METRICS_NAME, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in self.history)

    def _val_summary(self, metrics: dict[str, Any]) -> tuple[str, str]:
        """The validation figures of an epoch's log line: the model's, the EMA's (empty when not evaluated)."""
        val = f"  val top-1 {metrics['val_top1']:.2f}  top-5 {metrics['val_top5']:.2f}" if "val_top1" in metrics else ""
        ema = f"  ema top-1 {metrics['ema_val_top1']:.2f}" if "ema_val_top1" in metrics else ""
        return val, ema

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)


def _tensorboard(output: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(output / "tensorboard"))


def _paired(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A lone image twice: BatchNorm in training mode needs more than one value per channel (at small
    sizes the last stage is 1x1). The mean loss, the gradients and the batch statistics are those of the
    image alone."""
    return images.repeat(2, *([1] * (images.ndim - 1))), labels.repeat(2, *([1] * (labels.ndim - 1)))


def _plain(value: Any) -> Any:
    """Tuples as lists, so that saved (JSON-like) and current settings compare equal."""
    return list(value) if isinstance(value, tuple) else value


def _epoch_of(line: bytes) -> int:
    match = re.match(rb"epoch (\d+): ", line)
    return int(match.group(1)) if match else -1


def _interruption(config: TrainConfig, trainer: Trainer | None) -> TrainingInterrupted:
    """Where a run interrupted by Ctrl-C stopped, and how to continue it."""
    final = display_path(config.output or "")
    if trainer is None or not trainer.started:
        return TrainingInterrupted(f"interrupted before training started; nothing was written to {final}")
    staged = trainer.output != trainer.final_output and trainer.output.exists()
    done = trainer.checkpointed_epochs
    where = (
        f"interrupted in epoch {trainer.epoch + 1}/{config.epochs}"
        if trainer.epoch is not None
        else "interrupted after the last epoch"
    )
    saved = f"{CHECKPOINT_NAME} holds {done} finished epoch(s)" if done else "no epoch had finished"
    kept = f"; {final} is unchanged, the new run is in {display_path(trainer.output)}" if staged else ""
    return TrainingInterrupted(f"{where}; {saved}{kept}", resume=True, overwrite=staged)


def _no_replacement_run(output: str | os.PathLike) -> FileNotFoundError:
    staged = overwrite_staging_path(output) / TRAIN_CONFIG_NAME
    return FileNotFoundError(
        f"cannot resume: there is no interrupted overwrite=True run of {display_path(output)} (no "
        f"{display_path(staged)}); drop overwrite=True to resume the run itself"
    )


def _none_readable(what: str, images: int, unreadable: list[str]) -> str:
    """The message of a pass that could read none of its images."""
    first = f", e.g. {display_path(unreadable[0])}" if unreadable else ""
    return f"{what} read none of its images ({images} listed, {len(unreadable)} unreadable{first}): check the data"


def resume_config(output: str | os.PathLike, *, overwrite: bool = False, **overrides: Any) -> TrainConfig:
    """The settings to resume the run in ``output`` with (``train(config, resume=True)``): those it saved in
    ``train_config.json`` (with ``overwrite``: those of the interrupted replacement run beside it), then
    ``overrides`` (e.g. more ``epochs``; :class:`Trainer` refuses a change of model or classes).

    Raises:
        FileNotFoundError: ``output`` holds no run (or, with ``overwrite``, no interrupted replacement).
    """
    saved = (overwrite_staging_path(output) if overwrite else Path(output)) / TRAIN_CONFIG_NAME
    if not saved.is_file():
        if overwrite:
            raise _no_replacement_run(output)
        raise FileNotFoundError(
            f"cannot resume: {display_path(saved)} does not exist (is {display_path(output)} a training output?)"
        )
    stored = read_json(saved)
    config_file = stored.pop("config_file", None)  # provenance only: its values are already in `stored`
    config = resolve_config(None, None, **{**stored, **overrides, "output": output})
    config.config_file = config_file
    return config


def trainer_class(task: str) -> type[Trainer]:
    """The trainer of a task (:data:`~swiftformer.training.config.TASKS`)."""
    if task == "detection":
        from .detection import DetectionTrainer  # the detector and pycocotools: for that task only

        return DetectionTrainer
    if task == "segmentation":
        from .segmentation import SegmentationTrainer  # it builds on this module's Trainer: imported here

        return SegmentationTrainer
    return Trainer


def train(
    config: TrainConfig, resume: bool = False, *, overwrite: bool = False, allow_data_change: bool = False
) -> TrainResult:
    """Run (or resume) training with ``config``; see :class:`TrainConfig`, :data:`RECIPES` and :class:`Trainer`
    for ``overwrite`` and ``allow_data_change``.

    Raises:
        FileExistsError: ``config.output`` holds something and neither ``resume`` nor ``overwrite`` is set.
        ValueError: invalid data, or a checkpoint whose model or data differs from the settings.
        TrainingInterrupted: Ctrl-C; its ``message`` says where the run stopped and how to continue it.
    """
    tune_malloc()
    trainer = None
    try:
        trainer = trainer_class(config.task)(
            config, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change
        )
        return trainer.fit()
    except KeyboardInterrupt:
        raise _interruption(config, trainer) from None
    finally:
        distributed.shutdown()
