"""Data loading: image folders, Hugging Face datasets, unreadable images, errors, transforms."""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swiftformer.image_processing import SwiftFormerImageProcessor
from swiftformer.training.data import (
    IMAGE_EXTENSIONS,
    Batch,
    HFImageDataset,
    ImageFolderDataset,
    build_eval_transform,
    build_train_transform,
    collate,
    count_per_class,
    open_dataset,
)

SIZE = 16
PROCESSOR = SwiftFormerImageProcessor(size={"height": SIZE, "width": SIZE})


def noise_image(seed: int = 0, size: tuple[int, int] = (12, 10)) -> Image.Image:
    """A random RGB image (width, height = size), different for each seed."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_image(path: Path, seed: int = 0, format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_image(seed).save(path, format=format)
    return path


def png_bytes(seed: int = 0, size: tuple[int, int] = (12, 10)) -> bytes:
    buffer = io.BytesIO()
    noise_image(seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


def write_bad_files(folder: Path) -> list[Path]:
    """Three undecodable files with image extensions: garbage bytes, a truncated PNG, an empty file."""
    folder.mkdir(parents=True, exist_ok=True)
    garbage, truncated, empty = folder / "garbage.jpg", folder / "truncated.png", folder / "empty.png"
    garbage.write_bytes(b"this is not a jpeg" * 20)
    truncated.write_bytes(png_bytes(seed=1, size=(64, 64))[:600])
    empty.write_bytes(b"")
    return [garbage, truncated, empty]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{zebra,ant,cat}: mixed-case extensions, a nested folder, files and folders to skip."""
    root = tmp_path / "data"
    write_image(root / "zebra" / "z.bmp", 1)
    write_image(root / "ant" / "a1.png", 2)
    write_image(root / "ant" / "a2.JPG", 3, format="JPEG")
    (root / "ant" / "notes.txt").write_text("not an image")
    write_image(root / "cat" / "nested" / "deeper" / "c.jpeg", 4, format="JPEG")
    write_image(root / "cat" / ".hidden.jpg", 5, format="JPEG")  # macOS "._x.jpg" style: skipped
    write_image(root / ".ipynb_checkpoints" / "x.png", 6)  # hidden folder: not a class
    return root


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``datasets`` may be asked about local folders: keep its cache (and lock files) under tmp_path."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    try:
        import datasets
    except ImportError:
        return
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")


# ------------------------------------------------------------------------------------------------
# Image folders
# ------------------------------------------------------------------------------------------------


def test_image_folder_classes_labels_extensions_and_nesting(tree: Path):
    dataset = ImageFolderDataset(tree)
    assert dataset.classes == ["ant", "cat", "zebra"]
    relative = [(str(Path(path).relative_to(tree)), label) for path, label in dataset.samples]
    assert relative == [("ant/a1.png", 0), ("ant/a2.JPG", 0), ("cat/nested/deeper/c.jpeg", 1), ("zebra/z.bmp", 2)]
    assert dataset.targets == [0, 0, 1, 2] and len(dataset) == 4
    image, label, path = dataset[3]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == 2 and path.endswith("z.bmp")
    assert np.array_equal(np.asarray(image), np.asarray(noise_image(1)))
    assert count_per_class(dataset) == {"ant": 2, "cat": 1, "zebra": 1}
    assert count_per_class(torch.utils.data.Subset(dataset, [0, 3])) == {"ant": 1, "cat": 0, "zebra": 1}
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def test_image_folder_with_given_classes(tree: Path):
    classes = ["zebra", "unused", "cat", "ant", "cat"]  # model labels may repeat a name: first index wins
    dataset = ImageFolderDataset(tree, transform=build_eval_transform(PROCESSOR), classes=classes)
    assert dataset.classes == classes
    assert dataset.targets == [3, 3, 2, 0]
    assert count_per_class(dataset) == {"zebra": 1, "unused": 0, "cat": 1, "ant": 2}
    image, label, _ = dataset[0]
    assert image.shape == (3, SIZE, SIZE) and label == 3


def test_image_folder_unknown_class_folder(tree: Path):
    with pytest.raises(ValueError, match=r"\['zebra'\].*not among the 2 given classes"):
        ImageFolderDataset(tree, classes=["ant", "cat"])


# ------------------------------------------------------------------------------------------------
# Unreadable images
# ------------------------------------------------------------------------------------------------


def test_unreadable_files_give_none_items_and_collate_drops_them(tmp_path: Path):
    root = tmp_path / "data"
    good = write_image(root / "a" / "good.png", 0)
    bad = write_bad_files(root / "b")
    dataset = ImageFolderDataset(root, transform=build_eval_transform(PROCESSOR))
    items = [dataset[i] for i in range(len(dataset))]
    by_path = {path: (image, label) for image, label, path in items}
    assert by_path[str(good)][0].shape == (3, SIZE, SIZE)
    for path in bad:
        assert by_path[str(path)] == (None, 1), path.name
    batch = collate(items)
    assert isinstance(batch, Batch)
    assert batch.pixel_values.shape == (1, 3, SIZE, SIZE) and batch.pixel_values.dtype == torch.float32
    assert batch.labels.tolist() == [0] and batch.labels.dtype == torch.int64
    assert sorted(batch.unreadable) == sorted(map(str, bad))
    assert collate([items[i] for i in range(len(items)) if items[i][0] is None]) == Batch(None, None, batch.unreadable)


def test_transform_errors_on_valid_images_are_not_swallowed(tmp_path: Path):
    write_image(tmp_path / "a" / "x.png")

    def broken(image):
        raise RuntimeError("bug in the transform")

    with pytest.raises(RuntimeError, match="bug in the transform"):
        ImageFolderDataset(tmp_path, transform=broken)[0]


def test_collate_needs_tensors(tmp_path: Path):
    write_image(tmp_path / "a" / "x.png")
    with pytest.raises(TypeError, match="transform"):
        collate([ImageFolderDataset(tmp_path)[0]])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_skips_unreadable_files(tmp_path: Path, num_workers: int):
    for i in range(8):
        write_image(tmp_path / "data" / ("a" if i < 5 else "b") / f"{i}.png", i)
    bad = write_bad_files(tmp_path / "data" / "b")[:2]
    (tmp_path / "data" / "b" / "empty.png").unlink()
    dataset = open_dataset(tmp_path / "data", None, transform=build_eval_transform(PROCESSOR))
    assert len(dataset) == 10
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=num_workers, collate_fn=collate)
    images, labels, unreadable = 0, [], []
    for batch in loader:
        if batch.pixel_values is not None:
            assert batch.pixel_values.shape[1:] == (3, SIZE, SIZE)
            images += len(batch.pixel_values)
            labels += batch.labels.tolist()
        unreadable += batch.unreadable
    assert images == 8
    assert sorted(labels) == [0] * 5 + [1] * 3
    assert sorted(unreadable) == sorted(map(str, bad))


# ------------------------------------------------------------------------------------------------
# open_dataset errors
# ------------------------------------------------------------------------------------------------


def test_missing_data_dir(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"data folder not found: .*nowhere"):
        open_dataset(tmp_path / "nowhere", None)
    with pytest.raises(FileNotFoundError, match=r"data folder not found: .*nowhere"):
        open_dataset(tmp_path / "nowhere", "val")


def test_missing_split(tmp_path: Path):
    write_image(tmp_path / "train" / "a" / "x.png")
    expected = (
        r"has no 'val' split: expected .*/val/CLASS/\*\.jpg, or a Hugging Face dataset with a 'validation' "
        r"split \(it has \['train'\]\)"
    )
    with pytest.raises(FileNotFoundError, match=expected):
        open_dataset(tmp_path, "val")
    assert open_dataset(tmp_path, "train").classes == ["a"]


def test_validation_folder_serves_val(tmp_path: Path):
    write_image(tmp_path / "validation" / "a" / "x.png")
    dataset = open_dataset(tmp_path, "val")
    assert isinstance(dataset, ImageFolderDataset) and dataset.root == tmp_path / "validation"


def test_split_asked_of_a_folder_that_is_a_split(tmp_path: Path):
    write_image(tmp_path / "a" / "x.png")
    with pytest.raises(FileNotFoundError, match=r"has no 'train' split.*itself holds class folders.*split=None"):
        open_dataset(tmp_path, "train")


def test_empty_class_folder(tmp_path: Path):
    write_image(tmp_path / "val" / "a" / "x.png")
    (tmp_path / "val" / "b").mkdir()
    (tmp_path / "val" / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder .*val/b has no images"):
        open_dataset(tmp_path, "val")


def test_folder_without_class_folders(tmp_path: Path):
    write_image(tmp_path / "val" / "x.png")
    with pytest.raises(ValueError, match=r"val has no class folders: expected .*val/CLASS/\*\.jpg.*class folders"):
        open_dataset(tmp_path, "val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no class folders"):
        open_dataset(tmp_path / "empty", None)


def test_data_dir_is_a_file(tmp_path: Path):
    (tmp_path / "data.txt").write_text("")
    with pytest.raises(NotADirectoryError, match=r"data\.txt is a file"):
        open_dataset(tmp_path / "data.txt", "train")


# ------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def hf(offline_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``datasets``, offline (also its import-time constant)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return datasets


def hf_split(datasets, seeds: list[int], labels: list[int], names=("cat", "dog")):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})
    return datasets.Dataset.from_dict({"image": [noise_image(s) for s in seeds], "label": labels}, features=features)


def test_hf_saved_dataset_dict_val_is_validation(hf, tmp_path: Path):
    splits = hf.DatasetDict({"train": hf_split(hf, [0, 1, 2], [0, 1, 1]), "validation": hf_split(hf, [3, 4], [1, 0])})
    splits.save_to_disk(tmp_path / "saved")
    dataset = open_dataset(tmp_path / "saved", "val", transform=build_eval_transform(PROCESSOR))
    assert isinstance(dataset, HFImageDataset) and dataset.split_name == "validation"
    assert dataset.classes == ["cat", "dog"] and dataset.targets == [1, 0] and len(dataset) == 2
    image, label, path = dataset[0]
    assert path == "validation[0]" and label == 1
    assert torch.equal(image, PROCESSOR(noise_image(3), return_tensors="pt")["pixel_values"][0])
    assert count_per_class(dataset) == {"cat": 1, "dog": 1}
    assert open_dataset(tmp_path / "saved", "train").targets == [0, 1, 1]
    with pytest.raises(ValueError, match="several splits"):
        open_dataset(tmp_path / "saved", None)


def test_hf_val_falls_back_to_test_and_missing_split(hf, tmp_path: Path):
    hf.DatasetDict({"train": hf_split(hf, [0], [0]), "test": hf_split(hf, [1], [1])}).save_to_disk(tmp_path / "a")
    assert open_dataset(tmp_path / "a", "val").split_name == "test"
    hf.DatasetDict({"train": hf_split(hf, [0], [0])}).save_to_disk(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"b has no 'val' split: .*'validation' split \(it has \['train'\]\)"):
        open_dataset(tmp_path / "b", "val")


def test_hf_single_saved_split(hf, tmp_path: Path):
    hf_split(hf, [0, 1], [1, 1]).save_to_disk(tmp_path / "one")
    dataset = open_dataset(tmp_path / "one", None, classes=["dog", "cat"])
    assert dataset.classes == ["dog", "cat"] and dataset.targets == [0, 0] and dataset.split_name == "dataset"
    with pytest.raises(FileNotFoundError, match="single saved split"):
        open_dataset(tmp_path / "one", "train")


def test_hf_unreadable_image_gives_none(hf):
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=["a", "b"])})
    split = hf.Dataset.from_dict(
        {
            "image": [
                {"bytes": png_bytes(0), "path": None},
                {"bytes": b"garbage", "path": None},
                {"bytes": png_bytes(1, (64, 64))[:600], "path": None},
            ],
            "label": [0, 1, 0],
        },
        features=features,
        split="train",
    )
    dataset = HFImageDataset(split, transform=build_eval_transform(PROCESSOR))
    batch = collate([dataset[i] for i in range(3)])
    assert batch.pixel_values.shape == (1, 3, SIZE, SIZE) and batch.labels.tolist() == [0]
    assert batch.unreadable == ["train[1]", "train[2]"]


def test_hf_column_detection_and_plain_labels(hf):
    features = hf.Features({"id": hf.Value("int64"), "img": hf.Image(), "fine_label": hf.Value("int64")})
    split = hf.Dataset.from_dict(
        {"id": [7, 8, 9], "img": [noise_image(i) for i in range(3)], "fine_label": [10, 2, 2]}, features=features
    )
    dataset = HFImageDataset(split)
    assert (dataset.image_column, dataset.label_column) == ("img", "fine_label")
    assert dataset.classes == ["2", "10"] and dataset.targets == [1, 0, 0]  # numeric order, not "10" < "2"
    image, label, path = dataset[0]
    assert np.array_equal(np.asarray(image), np.asarray(noise_image(0))) and label == 1 and path == "dataset[0]"
    remapped = HFImageDataset(split, classes=["x", "10", "2"])
    assert remapped.targets == [1, 2, 2]
    with pytest.raises(ValueError, match=r"labels \['10'\] .* not among the 1 given classes"):
        HFImageDataset(split, classes=["2"])
    with pytest.raises(ValueError, match="which column holds the labels"):
        HFImageDataset(split.remove_columns("fine_label"))


def test_hf_array_column_without_image_feature(hf):
    arrays = [np.asarray(noise_image(i)) for i in range(2)]
    split = hf.Dataset.from_dict({"pixel_values": arrays, "label": ["b", "a"]})  # nested int lists, plain strings
    dataset = HFImageDataset(split)
    assert dataset.classes == ["a", "b"] and dataset.targets == [1, 0]
    assert np.array_equal(np.asarray(dataset[1][0]), arrays[1])


def test_hf_local_folder_read_by_load_dataset(hf, tmp_path: Path):
    """A folder like a hub dataset repository: data/{split}-*.parquet, found by datasets' split patterns."""
    root = tmp_path / "repo"
    hf_split(hf, [0, 1, 2], [0, 1, 1]).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    hf_split(hf, [3, 4], [1, 0]).to_parquet(str(root / "data" / "validation-00000-of-00001.parquet"))
    dataset = open_dataset(root, "val", transform=build_eval_transform(PROCESSOR))
    assert isinstance(dataset, HFImageDataset) and dataset.split_name == "validation"
    assert dataset.classes == ["cat", "dog"] and dataset.targets == [1, 0]
    assert torch.equal(dataset[1][0], PROCESSOR(noise_image(4), return_tensors="pt")["pixel_values"][0])
    assert open_dataset(root, "train").targets == [0, 1, 1]
    with pytest.raises(FileNotFoundError, match=r"repo has no 'test' split.* \(it has \['train', 'validation'\]\)"):
        open_dataset(root, "test")
    (root / "data" / "train-00000-of-00001.parquet").unlink()
    (root / "data" / "validation-00000-of-00001.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="repo has no 'val' split"):
        open_dataset(root, "val")


def test_hf_offline_unknown_hub_id_is_clear(hf, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match="'someone/no-such-dataset' is neither a folder nor a Hugging Face "
        "dataset that can be loaded \\(HF_HUB_OFFLINE is set",
    ):
        open_dataset("someone/no-such-dataset", "val")


# ------------------------------------------------------------------------------------------------
# Transforms
# ------------------------------------------------------------------------------------------------


def test_train_transform_shape_and_randomness():
    random.seed(0)
    torch.manual_seed(0)
    transform = build_train_transform(32, scale=(0.5, 1.0))
    image = noise_image(0, size=(48, 40))
    first, second = transform(image), transform(image)
    assert first.shape == second.shape == (3, 32, 32) and first.dtype == torch.float32
    assert not torch.equal(first, second)
    assert build_train_transform((24, 32), auto_augment=None, re_prob=0.0)(image).shape == (3, 24, 32)
    pickle.loads(pickle.dumps(transform))  # DataLoader workers may need to pickle it


def test_train_transform_follows_timm_on_color_jitter():
    names = lambda t: [type(step).__name__ for step in t.transforms]  # noqa: E731
    assert "ColorJitter" not in names(build_train_transform(32))  # RandAugment on: timm drops the jitter
    assert "ColorJitter" in names(build_train_transform(32, auto_augment=None))
    assert "ColorJitter" not in names(build_train_transform(32, auto_augment=None, color_jitter=None))


def test_eval_transform_is_the_processor_and_picklable():
    processor = SwiftFormerImageProcessor(size={"shortest_edge": 20}, crop_pct=0.875, resample="bicubic")
    transform = build_eval_transform(processor)
    image = noise_image(3, size=(30, 25))
    expected = processor(image, return_tensors="pt")["pixel_values"][0]
    assert expected.shape == (3, 20, 20)
    assert torch.equal(transform(image), expected)
    assert torch.equal(pickle.loads(pickle.dumps(transform))(image), expected)
