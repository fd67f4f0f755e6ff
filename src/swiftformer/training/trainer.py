"""Training and fine-tuning: the paper's recipe, one process or many (``torchrun``), exact resume.

    swiftformer train --data-dir DATA --variant xs --recipe paper --epochs 300 --output runs/xs
    torchrun --nproc-per-node 8 -m swiftformer train ...            # same command, many processes
    swiftformer train --data-dir DATA --init MBZUAI/swiftformer-s --recipe finetune --output runs/ft
    swiftformer train --resume runs/xs                               # after a crash or preemption

Settings resolve in this order, later winning: :class:`TrainConfig` defaults < the recipe <
``--config FILE`` (YAML or JSON) < command-line flags. The resolved config is saved as
``OUTPUT/train_config.json``.

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
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import SwiftFormerConfig
from ..image_processing import SwiftFormerImageProcessor
from ..io.files import atomic_write, write_json
from ..modeling import SwiftFormerForImageClassification
from ..runtime import cpu_supports_bf16, tune_malloc
from . import distributed
from .config import CHECKPOINT_NAME, METRICS_NAME, RECIPES, TRAIN_CONFIG_NAME, TrainConfig, resolve_config  # noqa: F401 - the training API in one place


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
                f"{batch_size}: lower --batch-size"
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
        order = order.repeat_interleave(self.repeats)[: self.num_samples].tolist()
        shards = [order[s :: self.num_shards] for s in range(self.rank * self.accum, (self.rank + 1) * self.accum)]
        for step in range(self.steps):
            yield [i for shard in shards for i in shard[step * self.batch_size : (step + 1) * self.batch_size]]


# ------------------------------------------------------------------------------------------ helpers
def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and (device.startswith("cuda") or cpu_supports_bf16())):
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms and layer scales (1-D or scale parameters), as timm does."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or "layer_scale" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_teacher(config: TrainConfig, num_classes: int) -> nn.Module | None:
    """The distillation teacher: a model folder / hub id of this library, or a timm model name."""
    if not config.teacher:
        return None
    if Path(config.teacher).is_dir():
        teacher = SwiftFormerForImageClassification.from_pretrained(config.teacher)
    else:
        import timm

        try:
            teacher = timm.create_model(
                config.teacher,
                pretrained=config.teacher_checkpoint is None,
                num_classes=num_classes,
                **({"checkpoint_path": config.teacher_checkpoint} if config.teacher_checkpoint else {}),
            )
        except RuntimeError as err:
            raise ValueError(f"cannot build teacher {config.teacher!r}: {err}") from None
        except OSError as err:
            raise OSError(
                f"cannot load pretrained weights of teacher {config.teacher!r} ({err}); offline, pass "
                f"--teacher-checkpoint FILE or a model folder as --teacher"
            ) from None
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def _unwrap(model: nn.Module) -> SwiftFormerForImageClassification:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


# ------------------------------------------------------------------------------------------ trainer
@dataclass
class TrainResult:
    output: Path
    best_top1: float
    last_top1: float | None
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Owns the model, data, optimizer, schedule, EMA, checkpoints and logs of one run."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        from . import data

        self.config = config
        distributed.check_device(config.device)
        self.dist = distributed.init(config.device)
        self.device = torch.device(
            config.device if not config.device.startswith("cuda") else f"cuda:{self.dist.local_rank}"
        )
        self.output = Path(config.output)
        self.amp_dtype = autocast_dtype(config.precision, config.device)

        # -- data
        if config.data_dir is None:
            raise ValueError("--data-dir is required")
        self.processor = self._eval_processor()
        self.train_set = data.open_dataset(config.data_dir, "train", self._train_transform())
        self.classes = list(self.train_set.classes)
        self.val_set = data.open_dataset(
            config.data_dir, "val", data.build_eval_transform(self.processor), classes=self.classes
        )
        self.sampler = ShardedBatchSampler(
            len(self.train_set),
            config.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            grad_accum_steps=config.grad_accum_steps,
            repeats=config.repeated_aug,
            seed=config.seed,
        )

        # -- model
        seed_everything(config.seed)  # identical initial weights on every rank
        self.model = self._build_model().to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.teacher = build_teacher(config, len(self.classes))
        if self.teacher is not None:
            self.teacher = self.teacher.to(self.device)
        self.ema = None
        if config.model_ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=config.ema_decay)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, config.weight_decay),
            lr=config.resolved_lr(self.dist.world_size),
            betas=config.betas,
        )
        self.scheduler = self._build_scheduler()
        self.mixup = self._build_mixup()
        self.start_epoch, self.best_top1, self.history = 0, -1.0, []
        if resume:
            self._load_checkpoint()

        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=None if self.device.type == "cpu" else [self.device]
            )
        if config.compile:
            self.train_model = torch.compile(self.train_model)

    # ------------------------------------------------------------------ construction
    def _eval_processor(self) -> SwiftFormerImageProcessor:
        size, crop = self.config.image_size, self.config.eval_crop_pct
        if crop >= 1.0:
            return SwiftFormerImageProcessor(size={"height": size, "width": size}, resample=3)
        return SwiftFormerImageProcessor(size={"shortest_edge": size}, crop_pct=crop, resample=3)

    def _train_transform(self):
        from .data import build_train_transform

        c = self.config
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

    def _build_model(self) -> SwiftFormerForImageClassification:
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
            return SwiftFormerForImageClassification.from_pretrained(
                c.init, ignore_mismatched_sizes=True, **overrides
            ).train()
        return SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(c.variant, **overrides))

    def _build_scheduler(self):
        from timm.scheduler import CosineLRScheduler

        c = self.config
        steps = len(self.sampler)
        # Short runs (e.g. a paper-recipe smoke test of 3 epochs) keep at most half of them for warm-up.
        warmup = min(c.warmup_epochs, c.epochs / 2)
        if warmup < c.warmup_epochs:
            self._log(f"note: warm-up shortened to {warmup:g} of {c.epochs} epochs")
        return CosineLRScheduler(
            self.optimizer,
            t_initial=max(1, round((c.epochs - warmup) * steps)),
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

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        from tqdm import tqdm

        from .data import collate

        c = self.config
        seed_everything(c.seed + 1000 * epoch + self.dist.rank)
        self.sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=c.workers,
            collate_fn=collate,
            persistent_workers=False,
        )
        self.train_model.train()
        steps = len(self.sampler)
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
            unreadable.extend(batch.unreadable)
            if batch.pixel_values is not None:
                loss_sum += self._optimizer_step(batch.pixel_values, batch.labels) * len(batch.labels)
                seen += len(batch.labels)
            self.scheduler.step_update(epoch * steps + step + 1)
            _fault_injection(epoch, step)
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

    def _optimizer_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        c = self.config
        if c.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        images, labels = images.to(self.device), labels.to(self.device)
        if self.mixup is not None and len(labels) % 2:  # timm's Mixup pairs images: needs an even batch
            images, labels = images[:-1], labels[:-1]
        chunks = list(zip(images.chunk(c.grad_accum_steps), labels.chunk(c.grad_accum_steps)))
        total = 0.0
        for i, (x, y) in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = (
                contextlib.nullcontext() if last or not self.dist.enabled else _unwrap_ddp(self.train_model).no_sync()
            )
            with sync:
                loss = self._loss(x, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss is {loss.item()}; lower the learning rate or check the data")
                (loss / len(chunks)).backward()
            total += loss.item() / len(chunks)
        if c.clip_grad:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad)
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
        return {"val_top1": result.top1, "val_top5": result.top5, "val_loss": result.loss}

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch: int) -> None:
        state = {
            "epoch": epoch + 1,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_top1": self.best_top1,
            "history": self.history,
            "rng": _rng_state(),
            "config": dataclasses.asdict(self.config),
        }
        with atomic_write(self.output / CHECKPOINT_NAME) as handle:
            torch.save(state, handle)

    def _load_checkpoint(self) -> None:
        path = self.output / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"cannot resume from {path}: unreadable checkpoint ({type(err).__name__}: {err})"
            ) from None
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.best_top1, self.history = state["epoch"], state["best_top1"], list(state["history"])
        _set_rng_state(state["rng"])

    def _save_model_folder(self, model: nn.Module, name: str) -> None:
        folder = self.output / name
        _unwrap(model).save_pretrained(folder)
        self.processor.save_pretrained(folder)

    # ------------------------------------------------------------------ the run
    def fit(self) -> TrainResult:
        c = self.config
        main = self.dist.is_main
        if main:
            self.output.mkdir(parents=True, exist_ok=True)
            write_json(self.output / TRAIN_CONFIG_NAME, dataclasses.asdict(self.config))
            self._log(
                f"training {len(self.train_set)} images in {len(self.classes)} classes, validating on "
                f"{len(self.val_set)}; {self.dist.world_size} process(es), global batch "
                f"{c.global_batch(self.dist.world_size)}, lr {c.resolved_lr(self.dist.world_size):.3g}, "
                f"precision {'bf16' if self.amp_dtype else 'fp32'}"
            )
        writer = _tensorboard(self.output) if main else None
        last_top1 = None
        for epoch in range(self.start_epoch, c.epochs):
            metrics: dict[str, Any] = {
                "epoch": epoch + 1,
                **self.train_epoch(epoch),
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            if (epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs:
                metrics.update(self.evaluate(self.model))
                candidates = [(metrics["val_top1"], self.model)]
                if self.ema is not None:
                    ema_metrics = self.evaluate(self.ema.module)
                    metrics.update({f"ema_{k}": v for k, v in ema_metrics.items()})
                    candidates.append((ema_metrics["val_top1"], self.ema.module))
                top1, best_model = max(candidates, key=lambda pair: pair[0])
                last_top1 = metrics["val_top1"]
                if top1 > self.best_top1:
                    self.best_top1 = top1
                    if main:
                        self._save_model_folder(best_model, "best")
            self.history.append({**metrics, "unreadable": len(metrics["unreadable"])})
            if main:
                self._save_model_folder(self.model, "last")
                self._save_checkpoint(epoch)
                self._write_metrics(metrics, writer)
            distributed.barrier()
        if main:
            from .plots import plot_training_curves

            plot_training_curves(self.output / METRICS_NAME, self.output)
            if writer is not None:
                writer.close()
        return TrainResult(self.output, self.best_top1, last_top1, c.epochs - self.start_epoch, self.history)

    def _write_metrics(self, metrics: dict[str, Any], writer: Any) -> None:
        """Log one epoch. metrics.jsonl is rewritten from the checkpointed history, so a resumed run
        never holds a duplicate or missing line."""
        if metrics["unreadable"]:
            with open(self.output / "unreadable.txt", "a", encoding="utf-8") as handle:
                handle.writelines(f"epoch {metrics['epoch']}: {p}\n" for p in metrics["unreadable"])
        record = self.history[-1]
        with atomic_write(self.output / METRICS_NAME, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in self.history)
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    writer.add_scalar(key, value, record["epoch"])
        val = f"  val top-1 {metrics['val_top1']:.2f}  top-5 {metrics['val_top5']:.2f}" if "val_top1" in metrics else ""
        ema = f"  ema top-1 {metrics['ema_val_top1']:.2f}" if "ema_val_top1" in metrics else ""
        bad = f"  {record['unreadable']} unreadable (see unreadable.txt)" if record["unreadable"] else ""
        self._log(
            f"epoch {metrics['epoch']}/{self.config.epochs}  loss {metrics['train_loss']:.4f}{val}{ema}  "
            f"lr {metrics['lr']:.2e}  {metrics['train_images_per_second']:.0f} img/s  "
            f"{metrics['train_seconds']:.1f} s{bad}"
        )

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)


def _unwrap_ddp(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


def _tensorboard(output: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(output / "tensorboard"))


def _fault_injection(epoch: int, step: int) -> None:
    """Testing aid: ``SWIFTFORMER_KILL_AT=EPOCH:STEP`` kills this process (SIGKILL) after that step."""
    target = os.environ.get("SWIFTFORMER_KILL_AT")
    if target and target == f"{epoch}:{step}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Run (or resume) training with ``config``; see :class:`TrainConfig` and :data:`RECIPES`."""
    tune_malloc()
    try:
        return Trainer(config, resume=resume).fit()
    finally:
        distributed.shutdown()
