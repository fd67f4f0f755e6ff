"""Training: config resolution, the sharded sampler, real multi-process training, exact resume after a
SIGKILL, the output folder, distillation, fine-tuning, Hugging Face datasets and CLI errors.

Everything runs on a tiny image folder of solid-ish colours (one colour per class, so a model can
learn it in a few steps) at 32x32 with small batches, in fp32 without channels_last, so that runs
are exactly reproducible. Runs that must be separate processes (torchrun, SIGKILL) are subprocesses
of ``python -m swiftformer``; the others call the CLI or the Trainer in-process.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from _helpers import assert_close_rel, free_port, run_process, subprocess_env
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.cli import main
from swiftformer.training import distributed
from swiftformer.training.config import RECIPES, TrainConfig, resolve_config
from swiftformer.training.trainer import ShardedBatchSampler, Trainer, resume_config

SIZE = 32
CLASSES = ["blue", "green", "red", "yellow"]  # sorted, as the folder dataset lists them
COLOURS = {"blue": (30, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30), "yellow": (220, 210, 30)}

# Exact, fast and learnable: no random policies except where a test turns them on.
FAST = [
    "--variant",
    "xs",
    "--image-size",
    SIZE,
    "--batch-size",
    4,
    "--workers",
    0,
    "--precision",
    "fp32",
    "--no-channels-last",
    "--auto-augment",
    "none",
    "--color-jitter",
    "none",
    "--re-prob",
    0,
    "--mixup",
    0,
    "--cutmix",
    0,
    "--repeated-aug",
    1,
    "--no-model-ema",
    "--warmup-epochs",
    0,
    "--lr",
    1e-3,
    "--scale",
    1,
    1,
    "--hflip",
    0,
    "--seed",
    0,
    "--no-teacher",
]
FAST_SETTINGS = dict(
    variant="xs",
    image_size=SIZE,
    batch_size=4,
    workers=0,
    precision="fp32",
    channels_last=False,
    auto_augment=None,
    color_jitter=None,
    re_prob=0.0,
    mixup=0.0,
    cutmix=0.0,
    repeated_aug=1,
    model_ema=False,
    warmup_epochs=0,
    lr=1e-3,
    scale=(1.0, 1.0),
    hflip=0.0,
    seed=0,
    no_teacher=True,
)


# ------------------------------------------------------------------------------------------ helpers
def colour_image(name: str, seed: int) -> Image.Image:
    """The class colour with a little per-pixel noise (and a darker square at a random place)."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(COLOURS[name], np.int16)[None, None, :] + rng.integers(-25, 26, (SIZE, SIZE, 3))
    y, x = rng.integers(0, SIZE - 8, 2)
    pixels[y : y + 8, x : x + 8] -= 60
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_folder(root: Path, train_per_class: int = 8, val_per_class: int = 2, broken: bool = False) -> Path:
    """root/{train,val}/CLASS/*.png; ``broken``: the first training image of the first class is garbage
    bytes (the total stays a multiple of the batch, so that every image is used every epoch)."""
    for split, count, offset in (("train", train_per_class, 0), ("val", val_per_class, 1000)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                colour_image(name, offset + 100 * c + i).save(folder / f"{i:02d}.png")
    if broken:
        (root / "train" / CLASSES[0] / "00.png").write_bytes(b"this is not a png" * 10)
    return root


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and do not slow down 10x when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("data"))


def save_tiny_model(folder: Path, labels: list[str], seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = SwiftFormerConfig(
        depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], image_size=SIZE, id2label=dict(enumerate(labels))
    )
    SwiftFormerForImageClassification(config).save_pretrained(folder)
    return folder


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def parameters(folder: Path) -> dict[str, torch.Tensor]:
    """The learnable parameters of a saved model folder (not BatchNorm running statistics)."""
    names = [n for n, _ in SwiftFormerForImageClassification.from_pretrained(folder).named_parameters()]
    weights = load_file(folder / "model.safetensors")
    return {n: weights[n] for n in names}


# ------------------------------------------------------------------------------------------ 1. config
def test_resolve_config_precedence_defaults_recipe_file_overrides(tmp_path: Path):
    assert dataclasses.asdict(resolve_config()) == dataclasses.asdict(TrainConfig())  # no recipe: the defaults
    recipe = resolve_config("finetune")
    assert recipe.recipe == "finetune" and recipe.epochs == 20 and recipe.weight_decay == 0.05
    assert recipe.scale == (0.25, 1.0) and recipe.model_ema is False
    # Settings the recipe does not name keep their defaults.
    assert recipe.betas == TrainConfig.betas and recipe.drop_path_rate == TrainConfig.drop_path_rate

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("epochs: 7\nweight-decay: 0.01\nscale: [0.5, 1.0]\nauto_augment: null\n")
    from_file = resolve_config("finetune", yaml_file)
    assert (from_file.epochs, from_file.weight_decay, from_file.scale) == (7, 0.01, (0.5, 1.0))
    assert from_file.auto_augment is None and from_file.min_lr == RECIPES["finetune"]["min_lr"]
    assert from_file.config_file == str(yaml_file)

    flags = resolve_config("finetune", yaml_file, epochs=3, scale=[0.9, 1.0])
    assert flags.epochs == 3 and flags.scale == (0.9, 1.0) and flags.weight_decay == 0.01

    # An override of None means "no value" (what the CLI's `--auto-augment none` passes) ...
    assert resolve_config("paper", auto_augment=None, color_jitter=None, lr=None).auto_augment is None
    assert resolve_config("paper", color_jitter=None).color_jitter is None
    # ... except for the recipe, which then comes from the file, else the default recipe.
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"recipe": "finetune", "batch_size": 16}))
    chosen = resolve_config("paper", json_file, recipe=None)
    assert chosen.recipe == "finetune" and chosen.epochs == 20 and chosen.batch_size == 16
    assert resolve_config("finetune", json_file, recipe="paper").epochs == 300  # a flag beats the file's recipe


def test_paper_recipe_turns_mixup_off_for_the_small_variants(tmp_path: Path):
    for variant in ("xs", "s", "XS"):
        config = resolve_config("paper", variant=variant)
        assert (config.mixup, config.cutmix) == (0.0, 0.0), variant
    for variant in ("l1", "l3"):
        config = resolve_config("paper", variant=variant)
        assert (config.mixup, config.cutmix) == (0.8, 1.0), variant
    # The variant may come from the config file, and an explicit flag still wins.
    (tmp_path / "l1.yaml").write_text("variant: l1\n")
    assert resolve_config("paper", tmp_path / "l1.yaml").mixup == 0.8
    (tmp_path / "s.yaml").write_text("variant: s\n")
    assert resolve_config("paper", tmp_path / "s.yaml").mixup == 0.0
    assert resolve_config("paper", variant="xs", mixup=0.3).mixup == 0.3
    assert resolve_config("finetune", variant="l1").mixup == 0.0  # only the paper recipe's rule


# The original training code, transcribed by hand: Amshaker/SwiftFormer at commit 4aa6cd6, main.py's argparse
# defaults (one column for all variants) and dist_train.sh's per-variant flags (XS: --aa="" --mixup 0 --cutmix 0;
# S: --mixup 0 --cutmix 0; L1, L3: none). Values in our units: main.py's --aa "" is auto_augment None, --lr 2e-3
# with the linear-scaling line commented out is an unscaled base_lr, --reprob is re_prob, --model-ema-decay is
# ema_decay, --teacher-model is teacher, the 224/256 evaluation resize is eval_crop_pct 0.875.
ORIGINAL_MAIN_PY = {
    "image_size": 224,  # --input-size
    "epochs": 300,
    "batch_size": 128,  # per GPU
    "base_lr": 2e-3,  # --lr
    "lr_linear_scaling": False,  # "# linear_scaled_lr = args.lr * args.batch_size * utils.get_world_size() / 512.0"
    "min_lr": 1e-5,
    "warmup_lr": 1e-6,
    "warmup_epochs": 5,
    "schedule_per_epoch": True,  # lr_scheduler.step(epoch) after each epoch, create_scheduler's t_in_epochs
    "weight_decay": 0.025,
    "opt_eps": 1e-8,
    "betas": (0.9, 0.999),  # --opt-betas None: AdamW's defaults
    "clip_grad": 0.01,
    "clip_mode": "agc",
    "drop_path_rate": 0.0,  # create_model(...) without drop_path_rate: the model's default 0.
    "smoothing": 0.1,
    "auto_augment": "rand-m9-mstd0.5-inc1",  # --aa
    "color_jitter": 0.4,
    "re_prob": 0.25,  # --reprob (--remode pixel, --recount 1: build_train_transform's defaults)
    "interpolation": "bicubic",  # --train-interpolation
    "mixup": 0.8,
    "cutmix": 1.0,
    "repeated_aug": 3,  # --repeated-aug on; RASampler repeats each index 3 times
    "model_ema": True,
    "ema_decay": 0.99996,
    "eval_crop_pct": 224 / 256,  # datasets.py: Resize(int(256 / 224 * 224)), CenterCrop(224)
    "teacher": "regnety_160.deit_in1k",  # --teacher-model regnety_160, --teacher-path DeiT's regnety_160-a5fe301d.pth
    "distillation_alpha": 0.5,
}
ORIGINAL_DIST_TRAIN_SH = {
    "xs": {"auto_augment": None, "mixup": 0.0, "cutmix": 0.0},
    "s": {"mixup": 0.0, "cutmix": 0.0},
    "l1": {},
    "l3": {},
}


@pytest.mark.parametrize("variant", sorted(ORIGINAL_DIST_TRAIN_SH))
def test_paper_recipe_is_the_original_code_per_variant(variant: str):
    expected = {**ORIGINAL_MAIN_PY, **ORIGINAL_DIST_TRAIN_SH[variant]}
    config = dataclasses.asdict(resolve_config("paper", variant=variant))
    assert {k: config[k] for k in expected} == expected  # the same literals: exact
    assert resolve_config("paper", variant=variant).resolved_lr(world_size=16) == 2e-3  # fixed, whatever the batch


def test_no_teacher_clears_the_recipes_teacher_and_is_saved(tmp_path: Path):
    config = resolve_config("paper", no_teacher=True)
    assert (config.teacher, config.no_teacher) == (None, True)
    (tmp_path / "c.yaml").write_text("no_teacher: true\n")
    assert resolve_config("paper", tmp_path / "c.yaml").teacher is None
    with pytest.raises(ValueError, match="no_teacher and teacher='resnet50' contradict each other"):
        resolve_config("paper", no_teacher=True, teacher="resnet50")
    with pytest.raises(ValueError, match="clip_mode='global' is invalid: expected one of norm, value, agc"):
        resolve_config("paper", clip_mode="global")


def test_teacher_without_weights_offline_is_one_line_naming_the_flags(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch
):
    import timm

    def offline(*args, **kwargs):
        assert kwargs.get("pretrained") is True  # no --teacher-checkpoint: timm's pretrained weights
        raise FileNotFoundError("An error happened while trying to locate the file on the Hub.\nSecond line.")

    monkeypatch.setattr(timm, "create_model", offline)
    flags = [f for f in map(str, FAST) if f != "--no-teacher"]
    code, _, err = run_cli(capsys, "train", "--data-dir", data_dir, "--output", tmp_path / "run", *flags, "--epochs", 1)
    assert code == 2
    assert err.count("\n") == 1 and "teacher 'regnety_160.deit_in1k'" in err, err
    assert "--teacher-checkpoint PATH" in err and "--no-teacher" in err and "Second line" not in err, err


def test_agc_clipping_eps_and_layer_scale_decay_reach_the_optimizer(data_dir: Path, tmp_path: Path, monkeypatch):
    import timm.utils

    calls = []
    real = timm.utils.dispatch_clip_grad
    monkeypatch.setattr(
        timm.utils,
        "dispatch_clip_grad",
        lambda params, value, mode: calls.append((value, mode)) or real(params, value, mode),
    )
    config = resolve_config("paper", data_dir=str(data_dir), output=str(tmp_path / "run"), epochs=3, **FAST_SETTINGS)
    assert (config.clip_grad, config.clip_mode, config.layer_scale_decay) == (0.01, "agc", True)
    trainer = Trainer(config)
    decayed = {id(p) for group in trainer.optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
    scales = [p for name, p in trainer.model.named_parameters() if "layer_scale" in name]
    assert scales and all(id(p) in decayed for p in scales)
    assert trainer.optimizer.defaults["eps"] == 1e-8
    trainer.fit()
    assert calls and set(calls) == {(0.01, "agc")}
    # The rate per epoch as the original's per-epoch cosine (no warm-up here): each epoch trains at the rate of
    # the previous epoch's index, over a cosine spanning all 3 epochs down to min_lr.
    low, peak = config.min_lr, config.lr
    expected = [peak, peak, low + 0.5 * (peak - low) * (1 + math.cos(math.pi / 3))]
    assert [h["lr"] for h in trainer.history] == pytest.approx(expected)
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (saved["no_teacher"], saved["teacher"], saved["clip_mode"]) == (True, None, "agc")


def test_resolve_config_rejects_unknown_keys_and_bad_values(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown training settings: bogus, epoch"):
        resolve_config(epoch=3, bogus=1)
    (tmp_path / "bad.yaml").write_text("lerning_rate: 0.1\n")
    with pytest.raises(ValueError, match="lerning_rate"):
        resolve_config(None, tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="unknown recipe 'imagenet'"):
        resolve_config("imagenet")
    with pytest.raises(FileNotFoundError, match="cannot read config file"):
        resolve_config(None, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        resolve_config(None, tmp_path / "list.yaml")
    for setting, value in [
        ("epochs", 0),
        ("precision", "fp16"),
        ("smoothing", 1.0),
        ("batch_size", 2.5),
        ("distillation_alpha", 1.5),
        ("eval_crop_pct", 0.0),
        ("lr", -1.0),
        ("re_prob", -0.1),
    ]:
        with pytest.raises(ValueError, match=f"training setting {setting}={value!r} is invalid"):
            resolve_config("paper", **{setting: value})
    with pytest.raises(ValueError, match="sync_bn"):
        resolve_config(sync_bn=True)


def test_linear_learning_rate_scaling():
    assert resolve_config("paper", batch_size=128).resolved_lr(4) == 2e-3  # the original: not scaled
    config = resolve_config("paper", batch_size=128, grad_accum_steps=2, lr_linear_scaling=True)
    assert config.global_batch(4) == 1024
    assert config.resolved_lr(4) == pytest.approx(2e-3 * 1024 / 2048)
    assert config.resolved_lr(8) == pytest.approx(2e-3)
    finetune = resolve_config("finetune", batch_size=64)
    assert finetune.resolved_lr(1) == pytest.approx(5e-4 * 64 / 512)
    assert resolve_config("paper", lr=0.01).resolved_lr(8) == 0.01  # an explicit lr is not scaled


# ------------------------------------------------------------------------------------------ 2. sampler
def epoch_batches(sampler: ShardedBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sampler_is_deterministic_per_seed_and_epoch():
    a, b = ShardedBatchSampler(40, 4, seed=1), ShardedBatchSampler(40, 4, seed=1)
    assert len(a) == 10
    first = epoch_batches(a, 0)
    assert first == epoch_batches(b, 0) == epoch_batches(a, 0)  # same (seed, epoch): same order, every time
    assert all(len(batch) == 4 for batch in first) and sorted(itertools.chain.from_iterable(first)) == list(range(40))
    assert epoch_batches(a, 1) != first and epoch_batches(b, 1) == epoch_batches(a, 1)
    assert epoch_batches(ShardedBatchSampler(40, 4, seed=2), 0) != first
    plain = ShardedBatchSampler(8, 2, shuffle=False, world_size=2, rank=1)
    assert list(plain) == [[1, 3], [5, 7]]


def test_two_ranks_see_the_micro_batches_of_one_process_with_accumulation():
    n, b = 50, 3
    single = ShardedBatchSampler(n, b, grad_accum_steps=2, seed=5)
    ranks = [ShardedBatchSampler(n, b, rank=r, world_size=2, seed=5) for r in range(2)]
    for epoch in range(3):
        one = epoch_batches(single, epoch)
        r0, r1 = (epoch_batches(s, epoch) for s in ranks)
        assert len(one) == len(r0) == len(r1) == (n // 2) // b == 8
        for step in range(len(one)):
            assert not set(r0[step]) & set(r1[step])  # disjoint shards
            assert set(r0[step]) | set(r1[step]) == set(one[step])
            assert one[step] == r0[step] + r1[step]  # micro-batch 0 is rank 0's batch, micro-batch 1 rank 1's
        used = [*itertools.chain.from_iterable(r0), *itertools.chain.from_iterable(r1)]
        assert len(used) == len(set(used)) == 48  # no image twice in an epoch; the remainder is dropped


@pytest.mark.parametrize("shards", [3, 4])
def test_repeated_augmentation_puts_repeats_in_different_shards(shards: int):
    n, repeats = 48, 3
    per_rank = [
        list(
            itertools.chain.from_iterable(
                epoch_batches(ShardedBatchSampler(n, 2, rank=r, world_size=shards, repeats=repeats, seed=0), 2)
            )
        )
        for r in range(shards)
    ]
    for indices in per_rank:
        assert len(indices) == len(set(indices)), "an image repeated within one shard"
    counts = np.bincount(np.concatenate(per_rank), minlength=n)
    assert counts.max() == repeats  # each image at most `repeats` times, every copy on another rank
    assert (counts > 0).sum() <= -(-n // repeats) + 1  # about n / repeats distinct images per epoch (DeiT)


def test_sampler_with_too_few_samples_raises():
    with pytest.raises(ValueError, match="7 training images are too few for 2 shard"):
        ShardedBatchSampler(7, 4, world_size=2, rank=0)
    with pytest.raises(ValueError, match="too few for 4 shard"):
        ShardedBatchSampler(15, 4, grad_accum_steps=4)
    assert len(ShardedBatchSampler(8, 4, world_size=2, rank=1)) == 1


# ------------------------------------------------------------------------------------------ 3. torchrun
@pytest.mark.slow
def test_two_processes_equal_one_process_with_gradient_accumulation(data_dir: Path, tmp_path: Path):
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    common = ["-m", "swiftformer", "train", "--data-dir", data_dir, "--epochs", 2, *FAST]
    ddp = run_process(
        [
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            2,
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            free_port(),
            *common,
            "--output",
            ddp_out,
        ]
    )
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    one = run_process([*common, "--grad-accum-steps", 2, "--output", one_out])
    assert one.returncode == 0, one.stdout + one.stderr
    assert "2 process(es), global batch 8" in ddp.stdout and "1 process(es), global batch 8" in one.stdout

    ddp_params, one_params = parameters(ddp_out / "last"), parameters(one_out / "last")
    assert ddp_params.keys() == one_params.keys() and len(ddp_params) > 100
    for name in ddp_params:
        assert_close_rel(ddp_params[name], one_params[name], rel=1e-5, atol=1e-8, what=name)
    # ... and training did move them (the comparison is not between two untouched inits).
    torch.manual_seed(0)
    fresh = SwiftFormerForImageClassification(
        SwiftFormerConfig.from_variant("xs", image_size=SIZE, id2label=dict(enumerate(CLASSES)))
    )
    moved = [n for n, p in fresh.named_parameters() if not torch.equal(p.detach(), one_params[n])]
    assert len(moved) > 100

    # Only rank 0 logs and writes; the epoch metrics are global (all-reduced over both ranks).
    ddp_metrics, one_metrics = read_metrics(ddp_out), read_metrics(one_out)
    assert [m["epoch"] for m in ddp_metrics] == [1, 2] and [m["epoch"] for m in one_metrics] == [1, 2]
    assert all(m["train_images"] == 32 for m in ddp_metrics + one_metrics)
    for a, b in zip(ddp_metrics, one_metrics):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    assert ddp.stdout.count("epoch 1/2 ") == 1 and ddp.stdout.count("training 32 images") == 1
    assert ddp.stderr.count("best top-1") == 1
    assert sorted(p.name for p in ddp_out.iterdir()) == sorted(p.name for p in one_out.iterdir())


# ------------------------------------------------------------------------------------------ 4. resume
@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_replays_exactly(data_dir: Path, tmp_path: Path):
    # A little augmentation, EMA and a DataLoader worker: the replay must still be exact.
    args = [
        "-m",
        "swiftformer",
        "train",
        "--data-dir",
        data_dir,
        *FAST,
        "--epochs",
        3,
        "--scale",
        0.5,
        1,
        "--hflip",
        0.5,
        "--model-ema",
        "--ema-decay",
        0.9,
        "--workers",
        1,
        "--warmup-epochs",
        1,
    ]
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    crash = run_process([*args, "--output", killed], env=subprocess_env(SWIFTFORMER_KILL_AT="1:2"))
    assert crash.returncode == -9, crash.stdout + crash.stderr
    assert "epoch 1/3" in crash.stdout and "epoch 2/3" not in crash.stdout
    checkpoint = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1 and len(read_metrics(killed)) == 1

    resumed = run_process(["-m", "swiftformer", "train", "--resume", killed])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 1/3" not in resumed.stdout and "epoch 2/3" in resumed.stdout and "epoch 3/3" in resumed.stdout
    uninterrupted = run_process([*args, "--output", whole])
    assert uninterrupted.returncode == 0, uninterrupted.stdout + uninterrupted.stderr

    a, b = load_file(killed / "last" / "model.safetensors"), load_file(whole / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:  # parameters and BatchNorm statistics alike
        assert torch.equal(a[name], b[name]), name
    ema_a = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)["ema"]
    ema_b = torch.load(whole / "checkpoint.pt", map_location="cpu", weights_only=True)["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_b)
    assert not torch.equal(a["head.weight"], ema_b["module.head.weight"])  # EMA really differs from the model

    metrics_a, metrics_b = read_metrics(killed), read_metrics(whole)
    assert [m["epoch"] for m in metrics_a] == [1, 2, 3] == [m["epoch"] for m in metrics_b]
    assert [m["train_loss"] for m in metrics_a] == [m["train_loss"] for m in metrics_b]
    assert [m["ema_val_top1"] for m in metrics_a] == [m["ema_val_top1"] for m in metrics_b]
    saved = json.loads((killed / "train_config.json").read_text())
    assert saved["epochs"] == 3 and saved["model_ema"] is True and saved["scale"] == [0.5, 1.0]


def test_a_resume_with_a_new_schedule_trains_on_the_new_schedule(data_dir: Path, tmp_path: Path, capsys):
    """--epochs/--lr/--min-lr given with --resume: the schedule is the one they build, from where the run stopped
    (the old scheduler's state carried its length and peak, so the extra epochs trained at the old minimum)."""
    out = tmp_path / "run"
    first = ["train", "--data-dir", data_dir, "--output", out, *FAST, "--epochs", 2, "--min-lr", 1e-6]
    assert run_cli(capsys, *first, "--no-schedule-per-epoch")[0] == 0
    code, _, err = run_cli(capsys, "train", "--resume", out, "--epochs", 4, "--lr", 5e-3)
    assert code == 0, err
    lrs = [m["lr"] for m in read_metrics(out)]  # each epoch's rate after its last step
    expected = 1e-6 + 0.5 * (5e-3 - 1e-6) * (1 + math.cos(math.pi * 3 / 4))  # the new cosine, 3 of 4 epochs in
    assert len(lrs) == 4 and lrs[2] == pytest.approx(expected, rel=1e-6) and lrs[3] == pytest.approx(1e-6)


def test_an_iteration_budget_spans_the_cosine_over_its_steps(data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"  # 8 steps an epoch: 6 iterations cut the only epoch; the cosine ends with them
    argv = ["train", "--data-dir", data_dir, "--output", out, *FAST, "--iterations", 6, "--min-lr", 1e-6]
    assert run_cli(capsys, *argv, "--no-schedule-per-epoch")[0] == 0
    assert [m["lr"] for m in read_metrics(out)] == [pytest.approx(1e-6)]


def test_mixup_with_gradient_accumulation_keeps_every_micro_batch_even(data_dir: Path, tmp_path: Path, capsys):
    """timm's Mixup pairs images: micro-batches of 3 (odd), 2 a step, must still train."""
    argv = ["train", "--data-dir", data_dir, "--output", tmp_path / "run", *FAST, "--epochs", 1, "--mixup", 0.8]
    code, _, err = run_cli(capsys, *argv, "--batch-size", 3, "--grad-accum-steps", 2)
    assert code == 0, err
    assert math.isfinite(read_metrics(tmp_path / "run")[0]["train_loss"])


@pytest.mark.parametrize("split", ["train", "val"])
def test_data_that_cannot_be_read_at_all_is_one_line_not_a_success(tmp_path: Path, capsys, split):
    data = write_folder(tmp_path / "data", train_per_class=2, val_per_class=1)
    for image in (data / split).rglob("*.png"):
        image.write_bytes(b"not an image")
    argv = ["train", "--data-dir", data, "--output", tmp_path / "run", *FAST, "--epochs", 1]
    code, _, err = run_cli(capsys, *argv)
    what = "epoch 1" if split == "train" else "validation"
    assert code == 2 and f"{what} read none of its images" in err and "check the data" in err, err
    assert not (tmp_path / "run" / "best").exists()


def test_a_resume_restores_metrics_lines_lost_after_the_checkpoint(data_dir: Path, tmp_path: Path, capsys):
    """Killed between its checkpoint and its metrics.jsonl: the resume writes the line from the checkpoint."""
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data-dir", data_dir, "--output", out, *FAST, "--epochs", 2)[0] == 0
    whole = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(whole.splitlines(keepends=True)[0])
    assert run_cli(capsys, "train", "--resume", out)[0] == 0  # nothing left to train
    assert (out / "metrics.jsonl").read_text() == whole


@pytest.mark.parametrize("size", [256, 384])
def test_eval_crop_pct_crops_at_every_size(size: int):
    """From 384 ConvNeXt's processor warps and ignores crop_pct: the validation crop must still be a crop."""
    from types import SimpleNamespace

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8))

    def pixels(crop: float) -> torch.Tensor:
        config = SimpleNamespace(image_size=size, eval_crop_pct=crop)
        processor = Trainer._eval_processor(SimpleNamespace(config=config))
        return processor(image, return_tensors="pt")["pixel_values"]

    cropped, whole = pixels(0.875), pixels(1.0)
    assert cropped.shape == whole.shape == (1, 3, size, size) and not torch.equal(cropped, whole)


def test_ema_turned_on_at_a_resume_starts_from_the_trained_weights(data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data-dir", data_dir, "--output", out, *FAST, "--epochs", 1)[0] == 0
    trainer = Trainer(resume_config(out, model_ema=True, epochs=2), resume=True)
    model, ema = trainer.model.state_dict(), trainer.ema.module.state_dict()
    assert all(torch.equal(model[k], ema[k]) for k in model)


def test_the_paper_recipe_with_init_follows_the_init_models_variant(tmp_path: Path):
    """--variant is ignored with --init: the per-variant settings are the init model's (XS: no Mixup, no
    RandAugment), and a custom model gets none of them."""
    SwiftFormerForImageClassification(SwiftFormerConfig.from_variant("l1", num_labels=2)).save_pretrained(
        tmp_path / "l1"
    )
    l1 = resolve_config("paper", None, init=str(tmp_path / "l1"), data_dir="d", output="o")
    assert l1.mixup == 0.8 and l1.auto_augment == "rand-m9-mstd0.5-inc1"
    xs_folder = tmp_path / "xs"
    SwiftFormerForImageClassification(SwiftFormerConfig.from_variant("xs", num_labels=2)).save_pretrained(xs_folder)
    xs = resolve_config("paper", None, init=str(xs_folder), variant="l3", data_dir="d", output="o")
    assert xs.mixup == 0.0 and xs.auto_augment is None


# ------------------------------------------------------------------------------------------ 5. outputs
@pytest.mark.slow
def test_outputs_are_usable_model_folders_logs_and_plots(tmp_path: Path, capsys):
    data = write_folder(tmp_path / "data", broken=True)
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys, "train", "--data-dir", data, "--output", out, *FAST, "--epochs", 3, "--lr", 2e-3
    )
    assert code == 0, err
    assert "epoch 3/3" in stdout and "1 unreadable" in stdout

    config = json.loads((out / "train_config.json").read_text())
    expected = dataclasses.asdict(
        resolve_config("paper", data_dir=str(data), output=str(out), epochs=3, **{**FAST_SETTINGS, "lr": 2e-3})
    )
    assert config == json.loads(json.dumps(expected))
    assert config["recipe"] == "paper" and config["auto_augment"] is None and config["color_jitter"] is None

    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        assert {"train_loss", "lr", "val_top1", "val_top5", "val_loss"} <= m.keys()
        assert m["unreadable"] == 1 and m["train_images"] == 31
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]  # it learns the colours
    broken = str(data / "train" / CLASSES[0] / "00.png")
    assert (out / "unreadable.txt").read_text().splitlines() == [f"epoch {e}: {broken}" for e in (1, 2, 3)]
    for name in ("loss.png", "accuracy.png", "lr.png"):
        assert (out / name).stat().st_size > 1000
        with Image.open(out / name) as image:
            assert image.format == "PNG"

    for folder in ("best", "last"):
        assert (out / folder / "preprocessor_config.json").is_file()
        model = SwiftFormerForImageClassification.from_pretrained(out / folder)
        assert model.config.id2label == dict(enumerate(CLASSES)) and model.config.num_labels == 4
    last = SwiftFormerForImageClassification.from_pretrained(out / "last")
    assert all(
        torch.equal(v, load_file(out / "last" / "model.safetensors")[k])
        for k, v in last.state_dict().items()
        if not k.endswith("num_batches_tracked")
    )
    best_top1 = max(m["val_top1"] for m in metrics)
    assert f"best top-1 {best_top1:.2f}%" in err

    image = data / "val" / "red" / "00.png"
    code, stdout, err = run_cli(capsys, "predict", image, "--model", out / "best", "--json", "--top-k", 2)
    assert code == 0, err
    result = json.loads(stdout)
    assert result["image"] == str(image) and len(result["predictions"]) == 2
    assert all(p["label"] in CLASSES for p in result["predictions"])
    assert sum(p["score"] for p in result["predictions"]) <= 1.0 + 1e-6


# ------------------------------------------------------------------------------------------ 6. distillation
def always_class_zero_teacher(folder: Path) -> Path:
    save_tiny_model(folder, CLASSES)
    teacher = SwiftFormerForImageClassification.from_pretrained(folder)
    with torch.no_grad():
        for head in (teacher.head, teacher.dist_head):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    teacher.save_pretrained(folder)
    return folder


def test_hard_distillation_loss_and_training(data_dir: Path, tmp_path: Path):
    teacher_dir = always_class_zero_teacher(tmp_path / "teacher")
    config = resolve_config(
        "paper",
        data_dir=str(data_dir),
        output=str(tmp_path / "run"),
        epochs=5,
        teacher=str(teacher_dir),
        distillation_alpha=0.5,
        smoothing=0.1,
        **{**FAST_SETTINGS, "lr": 1.5e-3, "no_teacher": False},
    )
    trainer = Trainer(config)
    assert trainer.teacher is not None and not trainer.teacher.training
    assert not any(p.requires_grad for p in trainer.teacher.parameters())

    batch = [trainer.train_set[i] for i in (0, 9, 17, 26)]
    images, labels = torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])
    assert labels.tolist() == [0, 1, 2, 3]
    zeros = torch.zeros(4, dtype=torch.long)
    for alpha in (0.3, 0.5):
        trainer.config.distillation_alpha = alpha
        loss = trainer._loss(images, labels)
        out = trainer.train_model(images)  # train mode: batch statistics, the same output again
        expected = (1 - alpha) * F.cross_entropy(out.cls_logits, labels, label_smoothing=0.1) + alpha * F.cross_entropy(
            out.distillation_logits, zeros
        )
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6), alpha
    without_teacher = F.cross_entropy((out.cls_logits + out.distillation_logits) / 2, labels, label_smoothing=0.1)
    assert abs(loss.item() - without_teacher.item()) > 1e-3  # the teacher changed the objective
    loss.backward()
    assert trainer.model.dist_head.weight.grad.abs().sum() > 0 and trainer.model.head.weight.grad.abs().sum() > 0
    trainer.optimizer.zero_grad(set_to_none=True)

    # Training: the distillation head learns the teacher (always class 0), the class head the labels.
    result = trainer.fit()
    assert result.epochs_run == 5 and len(read_metrics(tmp_path / "run")) == 5
    model = trainer.model.eval()
    everything = [trainer.train_set[i] for i in range(len(trainer.train_set))]
    with torch.no_grad():
        out = model(torch.stack([b[0] for b in everything]))
    targets = torch.tensor([b[1] for b in everything])
    assert (out.distillation_logits.argmax(-1) == 0).float().mean() >= 0.9
    assert (out.cls_logits.argmax(-1) == targets).float().mean() >= 0.75


@pytest.mark.parametrize(
    "labels", [[*CLASSES, "purple"], ["red", "blue", "green", "yellow"]], ids=["another number", "another order"]
)
def test_a_teacher_of_other_classes_is_one_line_before_training(data_dir: Path, tmp_path: Path, capsys, labels):
    teacher = save_tiny_model(tmp_path / "teacher", labels)
    fast = [a for a in FAST if a != "--no-teacher"]
    argv = ["train", "--data-dir", data_dir, "--output", tmp_path / "run", *fast, "--epochs", 1, "--teacher", teacher]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and f"predicts {len(labels)} classes" in err and "in their order" in err, err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_gradient_checkpointing_trains_to_the_same_weights(data_dir: Path, tmp_path: Path):
    weights = {}
    for checkpointing in (False, True):
        config = resolve_config(
            "paper",
            data_dir=str(data_dir),
            output=str(tmp_path / str(checkpointing)),
            epochs=1,
            gradient_checkpointing=checkpointing,
            drop_path_rate=0.1,
            **{**FAST_SETTINGS, "precision": "fp32"},
        )
        trainer = Trainer(config)
        assert trainer.model.is_gradient_checkpointing == checkpointing
        trainer.fit()
        weights[checkpointing] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for key, value in weights[False].items():
        assert torch.allclose(weights[True][key], value, rtol=1e-5, atol=1e-6), key


# ------------------------------------------------------------------------------------------ 7. fine-tuning
def test_finetune_from_a_model_of_the_same_classes_in_another_order_keeps_each_class_its_head(
    data_dir: Path, tmp_path: Path, capsys
):
    order = ["red", "blue", "green", "yellow"]  # the data's are sorted: blue, green, red, yellow
    init = save_tiny_model(tmp_path / "init", order, seed=3)
    before = load_file(init / "model.safetensors")
    trainer = Trainer(resolve_config("paper", data_dir=str(data_dir), output=str(tmp_path / "run"), init=str(init),
                                     **{k: v for k, v in FAST_SETTINGS.items() if k != "variant"}))  # fmt: skip
    assert "in another order; reordered" in capsys.readouterr().out
    for name in ("head", "dist_head"):
        for i, label in enumerate(CLASSES):  # the row trained for a class is that class's row now
            assert torch.equal(
                trainer.model.state_dict()[f"{name}.weight"][i], before[f"{name}.weight"][order.index(label)]
            )
            assert torch.equal(
                trainer.model.state_dict()[f"{name}.bias"][i], before[f"{name}.bias"][order.index(label)]
            )


def test_finetune_from_init_folder_with_other_classes(data_dir: Path, tmp_path: Path, capsys):
    init = save_tiny_model(tmp_path / "init", ["cat", "dog"], seed=3)
    init_weights = load_file(init / "model.safetensors")
    config = resolve_config(
        None,
        recipe="finetune",
        data_dir=str(data_dir),
        output=str(tmp_path / "x"),
        init=str(init),
        image_size=SIZE,
        workers=0,
        batch_size=8,
    )
    trainer = Trainer(config)
    state = trainer.model.state_dict()
    assert trainer.model.config.depths == [1, 1, 1, 1]  # the init model's architecture, not the xs variant's
    assert trainer.model.config.id2label == dict(enumerate(CLASSES))
    assert state["head.weight"].shape == (4, 16) and init_weights["head.weight"].shape == (2, 16)
    backbone = [k for k in init_weights if k.startswith("swiftformer.")]
    assert len(backbone) > 20 and all(torch.equal(state[k], init_weights[k]) for k in backbone)
    assert torch.equal(state["norm.weight"], init_weights["norm.weight"])  # the final norm is loaded too

    out = tmp_path / "ft"
    code, _, err = run_cli(
        capsys,
        "train",
        "--data-dir",
        data_dir,
        "--output",
        out,
        "--init",
        init,
        "--recipe",
        "finetune",
        "--epochs",
        1,
        "--batch-size",
        8,
        "--image-size",
        SIZE,
        "--workers",
        0,
        "--precision",
        "fp32",
    )
    assert code == 0, err
    saved = json.loads((out / "train_config.json").read_text())
    for key, value in RECIPES["finetune"].items():
        if key != "epochs":
            assert saved[key] == (list(value) if isinstance(value, tuple) else value), key
    assert saved["recipe"] == "finetune" and saved["init"] == str(init) and saved["epochs"] == 1
    tuned = load_file(out / "last" / "model.safetensors")
    assert tuned["head.weight"].shape == (4, 16)
    assert not torch.equal(
        tuned["swiftformer.patch_embed.patch_embedding.0.weight"],
        init_weights["swiftformer.patch_embed.patch_embedding.0.weight"],
    )  # trained
    assert SwiftFormerForImageClassification.from_pretrained(out / "last").config.id2label == dict(enumerate(CLASSES))


# ------------------------------------------------------------------------------------------ 8. HF datasets
def test_trains_on_a_saved_hugging_face_dataset_dict(offline_hub, tmp_path: Path, monkeypatch, capsys):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")
    names = ["circle", "square"]
    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=names)})

    def split(count: int, offset: int):
        labels = [i % 2 for i in range(count)]
        images = [colour_image(CLASSES[2 + label], offset + i) for i, label in enumerate(labels)]
        return datasets.Dataset.from_dict({"img": images, "fine_label": labels}, features=features)

    datasets.DatasetDict({"train": split(16, 0), "validation": split(6, 500)}).save_to_disk(tmp_path / "hf")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--data-dir", tmp_path / "hf", "--output", out, *FAST, "--epochs", 1)
    assert code == 0, err
    assert "training 16 images in 2 classes, validating on 6" in stdout
    (metrics,) = read_metrics(out)
    assert metrics["train_images"] == 16 and metrics["unreadable"] == 0 and 0 <= metrics["val_top1"] <= 100
    assert SwiftFormerForImageClassification.from_pretrained(out / "last").config.id2label == {0: "circle", 1: "square"}


# ------------------------------------------------------------------------------------------ 9. CLI errors
def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swiftformer: error: "), err
    return lines[0]


def test_cli_errors_are_one_line_with_exit_code_2(data_dir: Path, tmp_path: Path, capsys):
    code, _, err = run_cli(capsys, "train", "--data-dir", data_dir, *FAST)
    assert code == 2 and "--output is required" in one_line_error(err)

    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (only_train / "train").symlink_to(data_dir / "train", target_is_directory=True)
    code, _, err = run_cli(capsys, "train", "--data-dir", only_train, "--output", tmp_path / "a", *FAST)
    assert code == 2 and "has no 'val' split" in one_line_error(err)
    assert not (tmp_path / "a").exists()

    code, _, err = run_cli(capsys, "train", "--data-dir", tmp_path / "nowhere", "--output", tmp_path / "b", *FAST)
    assert code == 2 and "not found" in one_line_error(err)

    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "never_trained")
    assert code == 2 and "cannot resume" in one_line_error(err) and "train_config.json" in err

    # A run folder with its config and metrics but no checkpoint: finished epochs whose checkpoint is gone.
    # (Without metrics.jsonl, i.e. killed during its first epoch, --resume starts it again from epoch 1.)
    started = tmp_path / "started"
    started.mkdir()
    config = resolve_config("paper", data_dir=str(data_dir), output=str(started), epochs=2, **FAST_SETTINGS)
    (started / "train_config.json").write_text(json.dumps(dataclasses.asdict(config)))
    (started / "metrics.jsonl").write_text('{"epoch": 1}\n')
    code, _, err = run_cli(capsys, "train", "--resume", started)
    line = one_line_error(err)
    assert code == 2 and "cannot resume" in line and "checkpoint.pt does not exist" in line

    (started / "checkpoint.pt").write_bytes(b"truncated")
    code, _, err = run_cli(capsys, "train", "--resume", started)
    assert code == 2 and "unreadable checkpoint" in one_line_error(err)

    code, _, err = run_cli(capsys, "train", "--data-dir", data_dir, "--output", tmp_path / "c", *FAST, "--epochs", 0)
    assert code == 2 and "epochs=0" in one_line_error(err)


@pytest.mark.parametrize(
    "name,match",
    [
        ("gpu", "'gpu' is not a device: use cpu, cuda or cuda:N"),
        ("cuda:x", "is not a device"),
        ("mps", "only cpu and cuda are supported"),
    ],
)
def test_bad_device_is_one_clear_error(name, match):
    with pytest.raises(ValueError, match=match):
        distributed.check_device(name)
    assert distributed.check_device("cpu") == "cpu"
    if not torch.cuda.is_available():  # this machine: the usual case of a CPU-only box
        with pytest.raises(ValueError, match="CUDA is not available on this machine"):
            distributed.check_device("cuda")
