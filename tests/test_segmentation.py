"""Semantic segmentation: SwiftFormerForSemanticSegmentation (shapes, save/load, a classifier's backbone), the
ADE20K-layout data and its bad inputs, the metrics, and training on a synthetic ADE-layout set (mIoU well above
chance, exact resume after SIGKILL), eval / predict / explain / serve on the trained model.

The synthetic set: textured, striped backgrounds ("ground") with discs, boxes and wedges of three colours, 64-128
px, a one-pixel unlabelled border (index 0, "other", as ADE20K's unannotated pixels). Training runs in fp32
without channels_last, so that runs are exactly reproducible.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from _helpers import run_process, subprocess_env
from swiftformer import (
    SwiftFormerConfig,
    SwiftFormerForImageClassification,
    SwiftFormerForSemanticSegmentation,
    SwiftFormerSegmentationConfig,
)
from swiftformer.cli import main
from swiftformer.training.config import resolve_config
from swiftformer.training.evaluate import evaluate_segmentation
from swiftformer.training.segmentation_data import (
    IGNORE_INDEX,
    ADE20KDataset,
    SegmentationTrainTransform,
    collate_segmentation,
    read_class_names,
)

CLASSES = ["ground", "disc", "box", "wedge"]
SHAPE_COLOURS = {2: (220, 40, 40), 3: (40, 200, 60), 4: (50, 70, 230)}  # mask index (before reduce_zero_label)
HEAD = dict(fpn_channels=16, decoder_channels=16, decoder_num_groups=4)
TINY_SEG = dict(depths=[1, 1, 1, 1], embed_dims=[16, 16, 32, 32], **HEAD)


# ------------------------------------------------------------------------------------------ helpers
def draw_sample(rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One image and its index mask: 1 = ground, 2..4 = shapes, 0 = the unlabelled border."""
    w, h = (int(v) for v in rng.integers(64, 129, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = 25 * np.sin(xx / rng.uniform(2, 6) + yy / rng.uniform(3, 8))[..., None]
    pixels = rng.integers(60, 160, 3) + stripes + rng.normal(0, 12, (h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    mask = Image.new("L", (w, h), 1)
    draw, mask_draw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        index, side = int(rng.integers(2, 5)), int(rng.integers(22, 44))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        colour = tuple(int(c) for c in np.array(SHAPE_COLOURS[index]) + rng.integers(-25, 25, 3))
        if index == 4:
            corners = [(x, y + side), (x + side // 2, y), (x + side, y + side)]
            draw.polygon(corners, fill=colour)
            mask_draw.polygon(corners, fill=index)
        else:
            shape = "ellipse" if index == 2 else "rectangle"
            getattr(draw, shape)([x, y, x + side, y + side], fill=colour)
            getattr(mask_draw, shape)([x, y, x + side, y + side], fill=index)
    mask_draw.rectangle([0, 0, w - 1, h - 1], outline=0)
    return image, mask


def write_ade_folder(root: Path, train: int = 80, val: int = 20, seed: int = 0) -> Path:
    """An ADE20K-layout folder of :func:`draw_sample` images, with classes.txt."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, count in (("training", train), ("validation", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = draw_sample(rng)
            image.save(root / "images" / split / f"{i:03d}.jpg", quality=95)
            mask.save(root / "annotations" / split / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def ade_dir(tmp_path_factory) -> Path:
    return write_ade_folder(tmp_path_factory.mktemp("ade"))


def tiny_segmenter(seed: int = 0, **overrides) -> SwiftFormerForSemanticSegmentation:
    torch.manual_seed(seed)
    config = SwiftFormerSegmentationConfig(**{**TINY_SEG, "id2label": dict(enumerate(CLASSES)), **overrides})
    return SwiftFormerForSemanticSegmentation(config).eval()


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------ 1. the model
def test_logits_at_input_resolution_and_loss_over_labelled_pixels():
    model = tiny_segmenter()
    pixels = torch.randn(2, 3, 70, 50)  # odd sizes: the head's resizes absorb them
    labels = torch.randint(0, 4, (2, 70, 50))
    out = model(pixels, labels=labels)
    assert out.logits.shape == (2, 4, 70, 50)
    assert torch.isfinite(out.loss)
    ignored = labels.clone()
    ignored[:, :35] = IGNORE_INDEX  # the loss is the mean over the labelled pixels only
    expected = torch.nn.functional.cross_entropy(out.logits[:, :, 35:], labels[:, 35:])
    torch.testing.assert_close(model(pixels, labels=ignored).loss, expected, rtol=1e-5, atol=1e-6)
    loss, logits = model(pixels, labels=labels, return_dict=False)
    torch.testing.assert_close((loss, logits), (out.loss, out.logits))


def test_labels_outside_the_classes_are_one_clear_error():
    model = tiny_segmenter()
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\) or 255 \(ignored\), got \[7\]"):
        model(torch.randn(1, 3, 32, 32), labels=torch.full((1, 32, 32), 7))
    with pytest.raises(ValueError, match="must be"):
        model(torch.randn(1, 3, 32, 32), labels=torch.zeros(1, 16, 16, dtype=torch.long))


def test_save_pretrained_and_from_pretrained_round_trip(tmp_path: Path):
    model = tiny_segmenter()
    model.save_pretrained(tmp_path / "seg")
    saved = json.loads((tmp_path / "seg" / "config.json").read_text())
    assert saved["architectures"] == ["SwiftFormerForSemanticSegmentation"] and saved["fpn_channels"] == 16
    loaded, info = SwiftFormerForSemanticSegmentation.from_pretrained(tmp_path / "seg", output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert loaded.config == model.config and loaded.config.out_features == ["stage1", "stage2", "stage3", "stage4"]
    pixels = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(pixels).logits, model(pixels).logits, rtol=0, atol=0)


def test_backbone_loads_from_a_classification_checkpoint_and_the_head_is_new(tmp_path: Path, caplog):
    torch.manual_seed(1)
    config = SwiftFormerConfig(depths=TINY_SEG["depths"], embed_dims=TINY_SEG["embed_dims"], num_labels=10)
    classifier = SwiftFormerForImageClassification(config)
    classifier.save_pretrained(tmp_path / "cls")
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        model, info = SwiftFormerForSemanticSegmentation.from_pretrained(
            tmp_path / "cls", id2label=dict(enumerate(CLASSES)), **HEAD, output_loading_info=True
        )
    assert model.num_labels == 4 and model.config.backbone_norm is True
    classifier_weights = classifier.swiftformer.state_dict()
    for key, value in model.backbone.swiftformer.state_dict().items():
        assert torch.equal(value, classifier_weights[key]), key
    new = info["missing_keys"]
    assert {k for k in model.state_dict() if k.startswith("decode_head.")} <= new
    assert not any(k.startswith("backbone.swiftformer.") for k in new)
    assert "holds no segmentation head" in caplog.text and "decode_head" in caplog.text


def test_config_validates_the_head_fields():
    with pytest.raises(ValueError, match=r"decoder_num_groups.*must divide decoder_channels=16"):
        SwiftFormerSegmentationConfig(decoder_channels=16, decoder_num_groups=5)
    with pytest.raises(ValueError, match=r"semantic_loss_ignore_index.*is a class index"):
        SwiftFormerSegmentationConfig(num_labels=4, semantic_loss_ignore_index=2)
    with pytest.raises(ValueError, match="not the stem"):
        SwiftFormerSegmentationConfig(out_features=["stem", "stage1"])


# ------------------------------------------------------------------------------------------ 2. data
def test_ade_layout_items_reduce_zero_label_and_the_train_transform(ade_dir: Path):
    dataset = ADE20KDataset(ade_dir, "train")
    assert dataset.classes == CLASSES and len(dataset) == 80
    image, mask, _ = dataset[0]
    labels = np.asarray(mask)
    assert labels[0, 0] == IGNORE_INDEX  # the border, index 0 ("other")
    assert set(np.unique(labels)) <= {0, 1, 2, 3, IGNORE_INDEX} and 0 in labels  # ground: 1 → 0
    transform = SegmentationTrainTransform(96, ratio_range=(0.5, 0.5))  # shrunk below the crop: padded, ignored
    pixels, crop = transform(image, mask)
    assert pixels.shape == (3, 96, 96) and crop.shape == (96, 96) and crop.dtype == torch.int64
    assert (crop[-1] == IGNORE_INDEX).all() and (pixels[:, -1] == 0).all()
    batch = collate_segmentation([(pixels, crop, "a"), (None, None, "b")])
    assert batch.pixel_values.shape == (1, 3, 96, 96) and batch.unreadable == ["b"]


def test_class_names_from_ade20ks_object_table(tmp_path: Path):
    table = "Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n2\t0.1072\t6046\t612\tbuilding;edifice\n"
    (tmp_path / "objectInfo150.txt").write_text(table)
    assert read_class_names(tmp_path) == ["wall", "building"]
    (tmp_path / "objectInfo150.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no class list: expected one of objectInfo150\.txt"):
        read_class_names(tmp_path)


def small_ade(root: Path) -> Path:
    return write_ade_folder(root, train=2, val=1)


def test_image_without_mask_is_one_clear_error(tmp_path: Path):
    root = small_ade(tmp_path / "ade")
    (root / "annotations" / "training" / "001.png").unlink()
    with pytest.raises(ValueError, match=r"^image .*001\.jpg has no mask .*001\.png$"):
        ADE20KDataset(root, "train")


def test_mask_of_another_size_is_one_clear_error(tmp_path: Path):
    root = small_ade(tmp_path / "ade")
    Image.new("L", (5, 7)).save(root / "annotations" / "training" / "000.png")
    with pytest.raises(ValueError, match=r"^mask .*000\.png is 5×7, its image 000\.jpg \d+×\d+$"):
        ADE20KDataset(root, "train")


def test_palette_index_above_the_classes_is_one_clear_error(tmp_path: Path, capsys):
    root = small_ade(tmp_path / "ade")
    path = root / "annotations" / "training" / "000.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[3, 3] = 9  # 4 classes: indices 0 ("other") .. 4
    Image.fromarray(mask).save(path)
    with pytest.raises(ValueError, match=r"^mask .*000\.png holds index 9, above the 4 classes$"):
        ADE20KDataset(root, "train")[0]
    code, _, err = run_cli(
        capsys, "train", "--task", "segmentation", "--data-dir", root, "--output", tmp_path / "run",
        "--variant", "xs", "--image-size", 32, "--batch-size", 2, "--iterations", 1, "--workers", 1,
    )  # fmt: skip
    # Raised in a DataLoader worker: still the one line, without the worker's traceback.
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("swiftformer: error: mask ") and err.endswith("holds index 9, above the 4 classes\n")


def test_segmentation_recipe_and_configs_hold_the_papers_settings():
    config = resolve_config("paper", None, task="segmentation")  # the task's own default recipe
    assert config.recipe == "ade20k-fpn" and config.task == "segmentation"
    assert (config.iterations, config.batch_size, config.lr, config.weight_decay) == (40_000, 4, 2e-4, 1e-4)
    assert (config.schedule, config.poly_power, config.image_size, config.mixup) == ("poly", 0.9, 512, 0.0)
    for variant in ("l1", "l3"):
        path = Path(__file__).parents[1] / "configs" / f"ade20k-semantic-fpn-{variant}.yaml"
        from_file = resolve_config("paper", path)
        assert from_file.task == "segmentation" and from_file.init == f"MBZUAI/swiftformer-{variant}"
        assert from_file.iterations == 40_000 and from_file.lr == 2e-4 and from_file.schedule == "poly"
    with pytest.raises(ValueError, match=r"mixup=0\.8 is invalid: applies to classification only"):
        resolve_config("paper", None, task="segmentation", mixup=0.8)
    with pytest.raises(ValueError, match=r"task='depth' is invalid: expected one of classification"):
        resolve_config("paper", None, task="depth")


def test_evaluate_segmentation_counts_iou_and_pixel_accuracy():
    class Echo(torch.nn.Module):  # predicts channel 0 of its input as the class
        def forward(self, pixel_values):
            classes = pixel_values[:, 0].long()
            return type("Out", (), {"logits": torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()})

    labels = torch.tensor([[[0, 0, 1, 2]]])  # (1, 1, 4)
    predicted = torch.tensor([[[0, 1, 1, 2]]]).float()[:, None].expand(1, 3, 1, 4)
    masked = labels.clone()
    masked[0, 0, 3] = IGNORE_INDEX
    result = evaluate_segmentation(Echo(), [(predicted, masked, [])], num_classes=3)
    # class 0: 1 of 2 pixels right, nothing else predicted 0 → IoU 1/2; class 1: TP 1, FP 1 → 1/2; class 2 absent
    assert result.per_class_iou == {"0": 50.0, "1": 50.0, "2": None}
    assert result.miou == 50.0 and result.pixel_accuracy == pytest.approx(200 / 3)


# ------------------------------------------------------------------------------------------ 3. training
# A random-init tiny segmenter (as a model folder, so that --init sets the head's widths too), 64² crops.
TRAIN_ARGS = [
    "--task", "segmentation", "--image-size", 64, "--batch-size", 8, "--workers", 0, "--precision", "fp32",
    "--no-channels-last", "--lr", 5e-3, "--seed", 0, "--drop-path-rate", 0, "--no-photometric",
]  # fmt: skip
MIOU_BAR = 50.0  # majority class ("ground" everywhere): ≈ 20; measured 75.9 (docs/dense.md)


def random_init_folder(path: Path) -> Path:
    tiny_segmenter(seed=0).save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)  # 4-11 s on 2 idle cores, 207 s measured under heavy load from other jobs
def test_training_on_synthetic_shapes_reaches_miou_well_above_chance(ade_dir: Path, tmp_path: Path, capsys):
    init = random_init_folder(tmp_path / "init")
    code, out, err = run_cli(
        capsys, "train", "--data-dir", ade_dir, "--output", tmp_path / "run", "--init", init, *TRAIN_ARGS,
        "--iterations", 120, "--eval-every", 100,
    )  # fmt: skip
    assert code == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    final = metrics[-1]
    assert final["epoch"] == 12 and "val_miou" in final  # 120 iterations of 10 steps
    assert final["val_miou"] >= MIOU_BAR, final
    assert "best mIoU" in err and (tmp_path / "run" / "accuracy.png").is_file()  # mIoU is plotted

    best = tmp_path / "run" / "best"
    code, out, _ = run_cli(capsys, "eval", "--task", "segmentation", "--data-dir", ade_dir, "--model", best,
                           "--json", "--precision", "fp32", "--workers", 0)  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["miou"] == pytest.approx(max(m["val_miou"] for m in metrics if "val_miou" in m))
    assert set(report["per_class_iou"]) == set(CLASSES)

    images = ade_dir / "images" / "validation"
    code, _, err = run_cli(capsys, "predict", images / "000.jpg", "--model", best, "--masks", tmp_path / "masks",
                           "--overlay")  # fmt: skip
    assert code == 0, err
    with Image.open(tmp_path / "masks" / "000.png") as mask, Image.open(images / "000.jpg") as image:
        assert mask.mode == "P" and mask.size == image.size
        assert set(np.unique(np.asarray(mask))) <= set(range(len(CLASSES)))
    assert (tmp_path / "masks" / "000.overlay.png").is_file()

    for command in (["explain", images / "000.jpg", "--output", tmp_path / "cams"], ["serve"]):
        code, _, err = run_cli(capsys, *command, "--model", best)
        assert code == 2 and err.count("\n") == 1 and "is for classification models only" in err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_after_sigkill_replays_exactly(tmp_path: Path):
    data = write_ade_folder(tmp_path / "ade", train=24, val=4)
    init = random_init_folder(tmp_path / "init")
    args = ["-m", "swiftformer", "train", "--data-dir", data, "--init", init, *TRAIN_ARGS, "--iterations", 8]
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    crash = run_process([*args, "--output", killed], env=subprocess_env(SWIFTFORMER_KILL_AT="1:1"))
    assert crash.returncode == -9, crash.stdout + crash.stderr
    assert "epoch 1/3" in crash.stdout and "epoch 2/3" not in crash.stdout

    resumed = run_process(["-m", "swiftformer", "train", "--resume", killed])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 2/3" in resumed.stdout and "epoch 3/3" in resumed.stdout and "best mIoU" in resumed.stderr
    uninterrupted = run_process([*args, "--output", whole])
    assert uninterrupted.returncode == 0, uninterrupted.stdout + uninterrupted.stderr

    a, b = load_file(killed / "last" / "model.safetensors"), load_file(whole / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
