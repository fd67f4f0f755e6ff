"""Evaluation (metrics against a brute-force computation, label maps, sharding over real processes),
the ``eval`` command, and the training-curve plots."""

from __future__ import annotations

import argparse
import csv
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _helpers import free_port, perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerImageProcessor
from swiftformer.image_processing import load_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["ant", "bee", "cow"]
SIZE = 32


def _model(id2label=None, seed=0):
    torch.manual_seed(seed)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=3, id2label=id2label)
    return perturb_(SwiftFormerForImageClassification(config), seed).eval()


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """root/CLASS/*.png: 4 + 3 + 4 random images, and one unreadable file in 'bee'."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, count in zip(CLASSES, [4, 3, 4]):
        (root / name).mkdir()
        for i in range(count):
            size = (int(rng.integers(20, 48)), int(rng.integers(20, 48)), 3)
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "bee" / "broken.png").write_bytes(b"not a png at all")
    return root


@pytest.fixture(scope="module")
def processor():
    return SwiftFormerImageProcessor(size={"height": SIZE, "width": SIZE})


def _dataset(root, processor):
    from swiftformer.training.data import build_eval_transform, open_dataset

    dataset = open_dataset(root, None, build_eval_transform(processor))
    assert list(dataset.classes) == CLASSES
    return dataset


def _loader(dataset, batch_size=3):
    from swiftformer.training.data import collate

    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


def _stack(root, processor):
    """(pixel_values, labels) of the readable images, processed straight from the files."""
    pixels, labels = [], []
    for index, name in enumerate(CLASSES):
        for path in sorted((root / name).iterdir()):
            if path.name != "broken.png":
                pixels.append(processor(load_image(path), return_tensors="pt")["pixel_values"][0])
                labels.append(index)
    return torch.stack(pixels), torch.tensor(labels)


def _brute_force(model, root, processor, label_map=(0, 1, 2)):
    """Metrics straight from the files: one forward over the whole processed stack."""
    pixels, labels = _stack(root, processor)
    with torch.no_grad():
        logits = model(pixels).logits.float()
    targets = torch.tensor(label_map)[labels]
    inverse = {m: d for d, m in enumerate(label_map)}
    predicted = logits.argmax(-1)
    confusion = np.zeros((3, 3), np.int64)
    for label, pred in zip(labels.tolist(), predicted.tolist()):
        if pred in inverse:
            confusion[label, inverse[pred]] += 1
    top3 = logits.topk(3, dim=-1).indices  # top-5 of 3 outputs: all of them
    return {
        "top1": 100.0 * (predicted == targets).sum().item() / len(labels),
        "top5": 100.0 * (top3 == targets[:, None]).any(-1).sum().item() / len(labels),
        "loss": F.cross_entropy(logits, targets).item(),
        "confusion": confusion,
        "images": len(labels),
        "predicted": predicted,
    }


# --------------------------------------------------------------------------------------- evaluate()
@pytest.mark.parametrize("label_map", [None, [2, 0, 1]])
def test_evaluate_matches_brute_force(image_root, processor, label_map):
    from swiftformer.training.evaluate import evaluate

    model = _model()
    result = evaluate(model, _loader(_dataset(image_root, processor)), class_names=CLASSES, label_map=label_map)
    expected = _brute_force(model, image_root, processor, label_map or [0, 1, 2])

    assert result.images == expected["images"] == 11
    assert result.top1 == pytest.approx(expected["top1"], abs=1e-9)
    assert result.top5 == pytest.approx(100.0)  # fewer than 5 outputs: top-3 always hits
    assert result.loss == pytest.approx(expected["loss"], rel=1e-5)
    np.testing.assert_array_equal(result.confusion, expected["confusion"])
    assert result.confusion.dtype == np.int64 and result.confusion.sum() == 11
    assert len(set(expected["predicted"].tolist())) > 1, "the test model should not predict one class for all"
    assert result.images_per_second > 0 and result.seconds > 0

    assert [p.endswith("broken.png") for p in result.unreadable] == [True]
    counts = {"ant": 4, "bee": 3, "cow": 4}
    for i, name in enumerate(CLASSES):
        assert result.per_class_accuracy[name] == pytest.approx(100.0 * result.confusion[i, i] / counts[name])
    assert sum(result.confusion[i, i] for i in range(3)) == round(result.top1 * 11 / 100)
    assert model.training is False


def test_evaluate_restores_training_mode_after_a_bad_batch():
    from swiftformer.training.evaluate import evaluate

    model = _model().train()
    batches = [(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1])), (torch.zeros(1, 3, 32, 32), torch.tensor([7]))]
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got \[7\]"):
        evaluate(model, batches, class_names=CLASSES)
    assert model.training  # put back as it was, though the pass ended in an error


def test_label_map_changes_results(image_root, processor):
    from swiftformer.training.evaluate import evaluate

    model = _model()
    loader = _loader(_dataset(image_root, processor))
    plain = evaluate(model, loader, class_names=CLASSES, progress=True)
    permuted = evaluate(model, loader, class_names=CLASSES, label_map=[1, 2, 0])
    # The predictions are the same; only the meaning of the model outputs changes: dataset class k is
    # now model output map[k], so column k of the new matrix is column map[k] of the old one.
    np.testing.assert_array_equal(permuted.confusion, plain.confusion[:, [1, 2, 0]])
    assert permuted.top1 != plain.top1 or permuted.loss != plain.loss


def test_predictions_outside_the_label_map_are_wrong(image_root, processor):
    """A 5-output model evaluated on 3 classes: predictions of outputs 3 and 4 are wrong, counted apart."""
    from swiftformer.training.evaluate import evaluate

    torch.manual_seed(0)
    model = perturb_(
        SwiftFormerForImageClassification(SwiftFormerConfig(depths=[1] * 4, embed_dims=[8, 8, 16, 16], num_labels=5))
    )
    model.eval()
    pixels, labels = _stack(image_root, processor)
    with torch.no_grad():  # shift output 4 so that it wins for about half of the images
        logits = model(pixels).logits
        gaps = (logits[:, :4].max(-1).values - logits[:, 4]).sort().values
        # Halfway between two neighbouring gaps, never on one: every image is decided by a margin of at
        # least half their distance, so batching or kernel rounding cannot flip an argmax.
        half = len(gaps) // 2
        assert gaps[half] - gaps[half - 1] > 1e-3 * gaps.abs().max()
        shift = (gaps[half - 1] + gaps[half]) / 2
        model.head.bias[4] += shift
        model.dist_head.bias[4] += shift
        predicted = model(pixels).logits.argmax(-1)
    other = [int(((labels == c) & (predicted >= 3)).sum()) for c in range(3)]
    assert 0 < sum(other) < 11

    result = evaluate(model, _loader(_dataset(image_root, processor)), class_names=CLASSES, label_map=[0, 1, 2])
    images, correct = result.class_counts()
    assert images.tolist() == [4, 3, 4]
    assert result.predicted_other.tolist() == other
    assert result.confusion.sum() + result.predicted_other.sum() == 11
    assert result.top1 == pytest.approx(100.0 * correct.sum() / 11)
    assert result.top5 >= result.top1
    data = json.loads(json.dumps(result.to_dict()))
    assert data["predicted_other"] == result.predicted_other.tolist()


def test_bad_label_map_is_refused(image_root, processor):
    from swiftformer.training.evaluate import evaluate

    loader = _loader(_dataset(image_root, processor))
    with pytest.raises(ValueError, match="distinct"):
        evaluate(_model(), loader, class_names=CLASSES, label_map=[0, 0, 1])
    with pytest.raises(ValueError, match="outputs"):
        evaluate(_model(), loader, class_names=CLASSES, label_map=[0, 1, 7])


def test_shard_indices_partition():
    shards = [evaluate_module().shard_indices(10, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert evaluate_module().shard_indices(1, 1, 2) == []


def evaluate_module():
    import swiftformer.training.evaluate

    return swiftformer.training.evaluate


def test_eval_auto_precision_follows_the_cpu_flags(monkeypatch):
    import torch

    from swiftformer import hardware
    from swiftformer.cli.eval import _precision

    for flags, expected in ((frozenset({"avx2", "amx_bf16"}), torch.bfloat16), (frozenset({"avx2"}), None)):
        cpu = hardware.CPUInfo("test CPU", "Intel", 2, flags, None)
        monkeypatch.setattr(hardware, "cpu_info", lambda cpu=cpu: cpu)
        assert _precision("auto", torch.device("cpu")) is expected
    assert _precision("fp32", torch.device("cpu")) is None


# ------------------------------------------------------------------------------------ distributed
def _distributed_worker(rank, world_size, port, root, model_dir, out_dir):
    import os

    import torch.distributed as dist

    from swiftformer.training.evaluate import evaluate, shard_indices

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = SwiftFormerForImageClassification.from_pretrained(model_dir)
        processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
        dataset = _dataset(root, processor)
        shard = torch.utils.data.Subset(dataset, shard_indices(len(dataset), rank, world_size))
        result = evaluate(model, _loader(shard, batch_size=2), class_names=CLASSES, label_map=[2, 0, 1])
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as handle:
            pickle.dump((result.to_dict(), len(shard)), handle)
        dist.barrier()  # no process tears down while a peer may still be receiving
    finally:
        dist.destroy_process_group()


def test_distributed_evaluation_equals_single_process(image_root, processor, tmp_path):
    import torch.multiprocessing as mp

    from swiftformer.training.evaluate import evaluate

    model_dir = tmp_path / "model"
    _model().save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    mp.spawn(_distributed_worker, args=(2, free_port(), image_root, model_dir, tmp_path), nprocs=2, join=True)

    single = evaluate(
        SwiftFormerForImageClassification.from_pretrained(model_dir),
        _loader(_dataset(image_root, processor)),
        class_names=CLASSES,
        label_map=[2, 0, 1],
    ).to_dict()
    results = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert sorted(n for _, n in results) == [6, 6]  # 12 files (one unreadable), disjoint halves
    for got, _ in results:
        assert got["confusion"] == single["confusion"]
        assert got["top1"] == single["top1"] and got["top5"] == single["top5"]
        assert got["images"] == single["images"] == 11
        assert got["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert got["unreadable"] == single["unreadable"] and len(got["unreadable"]) == 1
        assert got["per_class"] == single["per_class"]
    assert results[0][0]["seconds"] == results[1][0]["seconds"]  # the slowest rank's time, everywhere


# --------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, processor):
    """A saved model whose labels name the dataset's classes in another order."""
    path = tmp_path_factory.mktemp("model")
    _model(id2label={0: "cow", 1: "ant", 2: "bee"}).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _run(capsys, *argv):
    from swiftformer.cli.eval import add_arguments as add_eval_arguments
    from swiftformer.cli.eval import run as run_eval

    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    code = run_eval(parser.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_eval_text(capsys, offline_hub, image_root, model_dir):
    code, out, err = _run(capsys, "--data-dir", image_root, "--model", model_dir, "--workers", 0)
    assert code == 1  # like predict: an image could not be read (the others were evaluated)
    assert "1 image(s) could not be read" in err
    assert "top-1:" in out and "top-5:" in out and "unreadable:  1" in out and "broken.png" in out
    assert "per-class accuracy" in out and all(name in out for name in CLASSES)


def test_run_eval_json_and_output(capsys, offline_hub, image_root, model_dir, processor, tmp_path):
    from swiftformer.training.evaluate import evaluate

    out_dir = tmp_path / "report"
    code, out, _ = _run(
        capsys,
        "--data-dir",
        image_root,
        "--model",
        model_dir,
        "--workers",
        0,
        "--batch-size",
        4,
        "--precision",
        "fp32",
        "--json",
        "--output",
        out_dir,
    )
    assert code == 1  # the broken image
    report = json.loads(out)
    for key in ("top1", "top5", "loss", "images_per_second", "per_class", "confusion", "model", "data_dir"):
        assert key in report
    assert report["images"] == 11 and len(report["unreadable"]) == 1
    # Dataset class (ant, bee, cow) -> model output by name: (1, 2, 0).
    expected = evaluate(
        SwiftFormerForImageClassification.from_pretrained(model_dir),
        _loader(_dataset(image_root, processor)),
        class_names=CLASSES,
        label_map=[1, 2, 0],
    )
    assert report["top1"] == expected.top1 and report["confusion"] == expected.confusion.tolist()
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-6)

    assert (out_dir / "confusion_matrix.png").read_bytes()[:8] == PNG_SIGNATURE
    rows = list(csv.DictReader((out_dir / "per_class.csv").open()))
    assert [r["class"] for r in rows] == CLASSES
    assert [int(r["images"]) for r in rows] == [4, 3, 4]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(
        [expected.per_class_accuracy[c] for c in CLASSES], abs=1e-4
    )
    assert json.loads((out_dir / "eval.json").read_text())["top1"] == report["top1"]
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_run_eval_unknown_class_and_default_labels(capsys, offline_hub, image_root, processor, tmp_path):
    named = tmp_path / "named"
    _model(id2label={0: "ant", 1: "bee", 2: "dog"}).save_pretrained(named)
    with pytest.raises(ValueError, match="'cow'"):
        _run(capsys, "--data-dir", image_root, "--model", named, "--workers", 0)

    unnamed = tmp_path / "unnamed"  # LABEL_0..2 and no preprocessor_config.json: defaults, with notes
    _model().save_pretrained(unnamed)
    code, out, err = _run(capsys, "--data-dir", image_root, "--model", unnamed, "--workers", 0, "--json")
    assert code == 1 and "dataset's class order" in err and "preprocessor_config.json" in err
    assert json.loads(out)["images"] == 11


# ---------------------------------------------------------------------------------------- plots
def test_plot_training_curves(tmp_path):
    from swiftformer.training.plots import plot_training_curves

    metrics = tmp_path / "metrics.jsonl"
    records = [
        {"epoch": 0, "train_loss": 2.0, "lr": 1e-4, "val_loss": None, "val_top1": None, "val_top5": None},
        {
            "epoch": 1,
            "train_loss": 1.5,
            "lr": 1e-3,
            "val_loss": 1.4,
            "val_top1": 40.0,
            "val_top5": 90.0,
            "ema_val_top1": 35.0,
        },
        {"epoch": 2, "train_loss": 1.2, "lr": 5e-4, "val_loss": 1.1, "val_top1": 55.0, "val_top5": 95.0},
        {"epoch": 3, "lr": 1e-5},
    ]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"epoch": 4, "train_lo')  # a torn last line
    out = tmp_path / "plots"
    paths = plot_training_curves(metrics, out)
    assert sorted(p.name for p in paths) == ["accuracy.png", "loss.png", "lr.png"]
    for path in paths:
        assert path.parent == out and path.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "loss.png", "lr.png"]

    only_train = tmp_path / "train_only.jsonl"  # no validation at all: no accuracy plot
    only_train.write_text(json.dumps({"epoch": 0, "train_loss": 1.0, "lr": 0.1}) + "\n")
    assert sorted(p.name for p in plot_training_curves(only_train, tmp_path / "p2")) == ["loss.png", "lr.png"]


def test_eval_decodes_jpegs_fast_unless_exact_decode(capsys, offline_hub, model_dir, processor, tmp_path):
    from swiftformer.training.data import build_eval_transform, open_dataset

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"  # tmp_path also holds offline_hub's folder
    for name in CLASSES:  # one smooth 640x480 JPEG per class: decoded at 1/4 or 1/8 for the SIZE² model
        (root / name).mkdir(parents=True)
        small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        small.resize((640, 480), Image.Resampling.BICUBIC).save(root / name / "photo.jpg", quality=90)
    exact = open_dataset(root, None, build_eval_transform(processor))  # the default: every pixel
    fast = open_dataset(root, None, build_eval_transform(processor, fast_decode=True))
    path = str(root / CLASSES[0] / "photo.jpg")
    assert torch.equal(exact[0][0], processor(path, return_tensors="pt")["pixel_values"][0])
    assert not torch.equal(exact[0][0], fast[0][0]) and (exact[0][0] - fast[0][0]).abs().mean() < 0.02
    decodes = []
    for flags in ((), ("--exact-decode",)):
        code, out, _ = _run(capsys, "--data-dir", root, "--model", model_dir, "--workers", 0, "--json", *flags)
        assert code == 0
        decodes.append(json.loads(out)["decode"])
    assert decodes == ["fast", "exact"]
