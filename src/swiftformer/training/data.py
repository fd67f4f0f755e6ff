"""Datasets, batches and transforms for training and evaluating SwiftFormer.

Items are ``(image, label, path)``, from an image folder ``root/CLASS/**/*.jpg`` (:class:`ImageFolderDataset`)
or a Hugging Face ``datasets`` split (:class:`HFImageDataset`); :func:`open_dataset` picks one. An image
that cannot be decoded gives ``(None, label, path)`` instead of an exception, and :func:`collate` drops it
and lists it in :attr:`Batch.unreadable`: a few broken files neither crash a run nor go unnoticed.
Transforms: timm's training recipe (:func:`build_train_transform`); for evaluation exactly the model's
image processor (:func:`build_eval_transform`), i.e. its ``preprocessor_config.json``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from PIL import Image

from ..image_processing import (
    IMAGE_EXTENSIONS,
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    SwiftFormerImageProcessor,
    _to_rgb_image,
    load_image,
    load_image_bytes,
)

# What PIL raises for files it cannot decode (load_image turns all of them into OSError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# Folder names tried for a split, then split names of a Hugging Face dataset.
_FOLDER_SPLITS = {"val": ("val", "validation"), "validation": ("validation", "val")}
_HF_SPLITS = {"val": ("val", "validation", "test"), "validation": ("validation", "val", "test")}
_IMAGE_NAMES, _LABEL_NAMES = ("image", "img", "pixel_values"), ("label", "labels", "fine_label")


class Batch(NamedTuple):
    pixel_values: torch.Tensor | None  # (B, 3, H, W) float32; None if no image of the batch was readable
    labels: torch.Tensor | None  # (B,) int64
    unreadable: list[str]  # paths (or "split[index]") of the items that could not be decoded


def _is_image_file(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)  # "._x.jpg": macOS metadata


def _decode(value: Any, draft: SwiftFormerImageProcessor | None = None) -> Image.Image | None:
    """An RGB PIL image, fully decoded, or None if ``value`` (a path, bytes, ``{"bytes", "path"}``,
    PIL image, array or nested list) cannot be decoded. ``draft``: files and bytes decoded fast for that
    processor (:func:`~swiftformer.image_processing.load_image`), as the transform asks (``transform.draft``)."""
    try:
        if isinstance(value, dict):  # datasets' undecoded Image feature
            value = value.get("bytes") or value.get("path")
        if value is None:
            return None
        if isinstance(value, list):  # an array column read without a format: nested lists
            value = np.asarray(value)
        if isinstance(value, (bytes, bytearray)):
            return load_image_bytes(bytes(value), draft=draft)  # as load_image does for files, same pixel limit
        if isinstance(value, (str, os.PathLike)):
            return load_image(value, draft=draft)
        image = _to_rgb_image(value)
        image.load()  # PIL decodes lazily: make a broken file fail here, not in the transform
        return image
    except _DECODE_ERRORS:
        return None


def _class_index(classes: list[str]) -> dict[str, int]:
    """Name -> index; a repeated name keeps its first index (ImageNet's labels have two "crane")."""
    index: dict[str, int] = {}
    for i, name in enumerate(classes):
        index.setdefault(name, i)
    return index


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images in ``root/CLASS/**/*.ext`` (``IMAGE_EXTENSIONS``, any case; hidden files and folders skipped).

    ``classes``: the folder names, sorted, or the given list (e.g. the model's labels, in its order),
    in which every class folder must appear. ``samples``: ``[(path, label)]``; ``targets``: the labels.
    Items are ``(transform(image) or image, label, path)``, ``(None, label, path)`` for an unreadable file.

    Raises: FileNotFoundError if ``root`` is missing; ValueError if it has no class folders, a class
    folder has no images, or a folder is not among the given ``classes``.
    """

    def __init__(
        self, root: str | os.PathLike, transform: Callable | None = None, classes: list[str] | None = None
    ) -> None:
        from torchvision.datasets.folder import make_dataset

        self.root, self.transform = Path(root), transform
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        folders = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))
        if not folders:
            loose = any(_is_image_file(e.name) for e in os.scandir(self.root) if e.is_file())
            raise ValueError(
                f"{self.root} has no class folders: expected {self.root}/CLASS/*.jpg, one folder "
                "per class" + (" (its images must go into class folders)" if loose else "")
            )
        self.classes = list(folders if classes is None else classes)
        self.class_to_idx = _class_index(self.classes)
        unknown = [name for name in folders if name not in self.class_to_idx]
        if unknown:
            raise ValueError(
                f"class folder(s) {unknown[:10]} in {self.root} are not among the "
                f"{len(self.classes)} given classes (e.g. {self.classes[:3]})"
            )
        self.samples: list[tuple[str, int]] = make_dataset(
            str(self.root),
            {name: self.class_to_idx[name] for name in folders},
            is_valid_file=_is_image_file,
            allow_empty=True,
        )
        found = {label for _, label in self.samples}
        empty = [name for name in folders if self.class_to_idx[name] not in found]
        if empty:
            raise ValueError(
                f"class folder {self.root / empty[0]} has no images ({' '.join(IMAGE_EXTENSIONS)})"
                + (f", nor do {len(empty) - 1} other class folders" if len(empty) > 1 else "")
            )
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        path, label = self.samples[index]
        image = _decode(path, getattr(self.transform, "draft", None))
        if image is not None and self.transform is not None:
            image = self.transform(image)
        return image, label, path


def _find_column(features: dict, kind: type, names: tuple[str, ...], what: str) -> str:
    for name, feature in features.items():
        if isinstance(feature, kind):
            return name
    for name in names:
        if name in features:
            return name
    raise ValueError(f"cannot tell which column holds the {what}s among {list(features)}: pass {what}_column=")


class HFImageDataset(torch.utils.data.Dataset):
    """A Hugging Face ``datasets`` split with an image column and a label column.

    Columns, unless named: the first ``datasets.Image`` feature (else one named image/img/pixel_values)
    and the first ``ClassLabel`` feature (else label/labels/fine_label). ``classes``: the ClassLabel
    names, else the sorted distinct label values as strings; a given ``classes`` list remaps them by
    name. Items are ``(image, label, "split[index]")`` as in :class:`ImageFolderDataset`; the images
    are decoded here (not by ``datasets``), so that a broken one gives None instead of an exception.
    """

    def __init__(
        self,
        hf_split: Any,
        transform: Callable | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        classes: list[str] | None = None,
        split_name: str | None = None,
    ) -> None:
        import datasets

        features = hf_split.features
        self.image_column = image_column or _find_column(features, datasets.Image, _IMAGE_NAMES, "image")
        self.label_column = label_column or _find_column(features, datasets.ClassLabel, _LABEL_NAMES, "label")
        for column in (self.image_column, self.label_column):
            if column not in features:
                raise ValueError(f"the dataset has no column {column!r}; it has {list(features)}")
        self.split_name = split_name or (str(hf_split.split) if hf_split.split else "dataset")
        self.transform = transform
        hf_split = hf_split.with_format(None)  # plain Python values, whatever format the caller set
        values = hf_split[self.label_column][:]  # [:] reads the column at once (iterating is per row)
        label_feature = features[self.label_column]
        if isinstance(label_feature, datasets.ClassLabel):
            names, targets = list(label_feature.names), values
            if any(t is None or t < 0 for t in targets):
                raise ValueError(f"split {self.split_name!r} has unlabelled rows (label -1 or None)")
        else:
            if any(v is None for v in values):
                raise ValueError(f"split {self.split_name!r} has rows without a {self.label_column!r}")
            try:
                unique = sorted(set(values))  # numbers in numeric order: 2 before 10
            except TypeError:  # mixed types
                unique = sorted(set(values), key=str)
            names, position = [str(v) for v in unique], {v: i for i, v in enumerate(unique)}
            targets = [position[v] for v in values]
        if classes is not None:
            index = _class_index(list(classes))
            unknown = sorted({names[t] for t in set(targets)} - set(index))
            if unknown:
                raise ValueError(
                    f"labels {unknown[:10]} of split {self.split_name!r} are not among the "
                    f"{len(classes)} given classes (e.g. {list(classes)[:3]})"
                )
            names, table = list(classes), [index.get(name, -1) for name in names]
            targets = [table[t] for t in targets]
        self.classes, self.targets = names, [int(t) for t in targets]
        image_feature = features[self.image_column]
        hf_split = hf_split.select_columns([self.image_column])
        if isinstance(image_feature, datasets.Image) and image_feature.decode:
            hf_split = hf_split.cast_column(self.image_column, datasets.Image(decode=False))
        self.dataset = hf_split

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        index = int(index)
        image = _decode(self.dataset[index][self.image_column], getattr(self.transform, "draft", None))
        if image is not None and self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index], f"{self.split_name}[{index}]"


def collate(batch: list[tuple]) -> Batch:
    """Stack the readable ``(tensor, label, path)`` items; list the paths of the unreadable ones."""
    kept = [(image, label) for image, label, _ in batch if image is not None]
    unreadable = [path for image, _, path in batch if image is None]
    if not kept:
        return Batch(None, None, unreadable)
    images, labels = zip(*kept)
    if not all(isinstance(image, torch.Tensor) for image in images):
        raise TypeError(
            "collate stacks tensors: give the dataset a transform that returns one "
            "(build_train_transform or build_eval_transform)"
        )
    return Batch(torch.stack(images), torch.tensor(labels, dtype=torch.int64), unreadable)


def _subfolders(folder: str | os.PathLike) -> list[str]:
    return [e.path for e in os.scandir(Path(folder)) if e.is_dir() and not e.name.startswith(".")]


def _has_images(folder: str) -> bool:
    with os.scandir(folder) as entries:  # closed even when any() stops early
        return any(_is_image_file(e.name) and e.is_file() for e in entries)


def _looks_like_hub_id(name: str) -> bool:
    return not name.startswith((".", "~", "/")) and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None


def _pick_split(names: list[str], split: str, missing: str) -> str:
    for name in _HF_SPLITS.get(split, (split,)):
        if name in names:
            return name
    raise FileNotFoundError(f"{missing} (it has {names})")


def _open_hf_split(path: Path, data_dir: str | os.PathLike, split: str) -> tuple[Any, str]:
    """The ``split`` of the Hugging Face dataset at ``path`` (saved to disk, or a folder or hub id
    that ``datasets.load_dataset`` reads), and its name there."""
    local = path.exists()
    where = path if local else os.fspath(data_dir)
    missing = (
        f"{where} has no {split!r} split: expected {where}/{split}/CLASS/*.jpg, or a Hugging Face "
        f"dataset with a {'validation' if split == 'val' else split!r} split"
    )
    if not local and not _looks_like_hub_id(os.fspath(data_dir)):
        raise FileNotFoundError(f"data folder not found: {path}")
    if local and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file: expected a folder with {split}/CLASS/*.jpg")
    if local:
        folders = _subfolders(path)
        if any(_has_images(folder) for folder in folders):
            raise FileNotFoundError(f"{missing}; {path} itself holds class folders: open it with split=None")
        if any(_has_images(sub) for folder in folders for sub in _subfolders(folder)):  # no need to ask datasets
            raise FileNotFoundError(f"{missing} (it has {sorted(os.path.basename(f) for f in folders)})")
        if (path / "state.json").is_file():
            raise FileNotFoundError(f"{missing}; {path} is a single saved split: open it with split=None")
    try:
        import datasets
    except ImportError:
        raise FileNotFoundError(f"{missing} (install `datasets` to read Hugging Face datasets)") from None
    if (path / "dataset_dict.json").is_file():  # written by DatasetDict.save_to_disk
        splits = datasets.load_from_disk(str(path))
        name = _pick_split(list(splits), split, missing)
        return splits[name], name
    try:  # reads metadata only (hub files or the folder's data files); HF_HUB_OFFLINE=1 fails fast
        builder = datasets.load_dataset_builder(str(where))
    except (OSError, ValueError) as err:  # DatasetNotFoundError is a FileNotFoundError, offline a ConnectionError
        if local:
            raise FileNotFoundError(f"{missing} ({err})") from err
        offline = " (HF_HUB_OFFLINE is set: only cached datasets)" if datasets.config.HF_HUB_OFFLINE else ""
        raise FileNotFoundError(
            f"{where!r} is neither a folder nor a Hugging Face dataset that can be loaded{offline}: {err}"
        ) from err
    names = [str(name) for name in (builder.config.data_files or builder.info.splits or {})]
    if not names:
        builder.download_and_prepare()
        names = [str(name) for name in builder.info.splits or {}]
    name = _pick_split(names, split, missing)
    builder.download_and_prepare()
    return builder.as_dataset(split=name), name


def open_dataset(
    data_dir: str | os.PathLike, split: str | None, transform: Callable | None = None, classes: list[str] | None = None
) -> ImageFolderDataset | HFImageDataset:
    """The ``split`` of the data at ``data_dir``.

    ``split=None``: ``data_dir`` is the split itself (``data_dir/CLASS/*.jpg``, or one split saved with
    ``Dataset.save_to_disk``). Otherwise ``data_dir/split`` (for "val" also ``data_dir/validation``) if
    it is a folder, else that split of the Hugging Face dataset at ``data_dir`` (``DatasetDict.save_to_disk``
    folder, a folder or hub id ``datasets.load_dataset`` reads), "val" falling back to "validation", "test".

    Raises: FileNotFoundError for a missing folder or split (or a hub id that cannot be loaded);
    ValueError for a folder without class folders or with an empty one (see :class:`ImageFolderDataset`).
    """
    path = Path(data_dir).expanduser()
    if split is None:
        if not path.is_dir():
            raise FileNotFoundError(f"data folder not found: {path}")
        if (path / "dataset_dict.json").is_file():
            raise ValueError(f"{path} is a Hugging Face dataset with several splits: name one (e.g. 'val')")
        return _open_split_folder(path, transform, classes)
    if path.is_dir() and not (path / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk makes split folders
        for name in _FOLDER_SPLITS.get(split, (split,)):
            if (path / name).is_dir():
                return _open_split_folder(path / name, transform, classes)
    hf_split, name = _open_hf_split(path, data_dir, split)
    return HFImageDataset(hf_split, transform, classes=classes, split_name=name)


def _open_split_folder(path: Path, transform: Callable | None, classes: list[str] | None) -> Any:
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():  # Dataset.save_to_disk
        import datasets

        return HFImageDataset(datasets.load_from_disk(str(path)), transform, classes=classes)
    return ImageFolderDataset(path, transform, classes)


def build_train_transform(
    image_size: int | tuple[int, int],
    *,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    color_jitter: float | None = 0.4,
    re_prob: float = 0.25,
    re_mode: str = "pixel",
    re_count: int = 1,
    interpolation: str = "bicubic",
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """timm's training transform (``timm.data.create_transform(is_training=True)``): PIL image in,
    normalized (3, H, W) float32 tensor out; ``image_size`` is a side or (height, width).

    Random resized crop (``scale``, ``ratio``, ``interpolation``), horizontal flip (``hflip``),
    ``auto_augment`` (a timm policy string such as RandAugment's "rand-m9-mstd0.5-inc1"; None for
    none), color jitter, random erasing (``re_*``). As in timm, ``color_jitter`` is ignored when
    ``auto_augment`` is set (RandAugment already varies colour), except for "3a" policies.
    """
    from timm.data import create_transform

    return create_transform(
        input_size=image_size,
        is_training=True,
        scale=cast("tuple[float, float]", tuple(scale)),  # a list, from a config file
        ratio=cast("tuple[float, float]", tuple(ratio)),
        hflip=hflip,
        color_jitter=color_jitter,  # type: ignore[arg-type]  # None: no jitter, which timm's annotation omits
        auto_augment=auto_augment,
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        re_prob=re_prob,
        re_mode=re_mode,
        re_count=re_count,
    )


class ProcessorTransform:
    """PIL image -> ``processor(image, return_tensors="pt")["pixel_values"][0]``, (3, H, W) float32.

    A class rather than a lambda, so that DataLoader workers can pickle it. ``draft``: what the datasets here
    decode files for (the processor with ``fast_decode``, else None: every pixel)."""

    def __init__(self, processor: SwiftFormerImageProcessor, fast_decode: bool = False) -> None:
        self.processor = processor
        self.draft = processor if fast_decode else None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.processor.to_dict()})"


def build_eval_transform(
    processor: SwiftFormerImageProcessor, fast_decode: bool = False
) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform: exactly ``processor`` (the model's ``preprocessor_config.json``); with
    ``fast_decode`` the datasets decode JPEG files at the scale its resize needs (``swiftformer eval``'s
    default, as ``predict``: docs/preprocessing.md, "Fast decoding")."""
    return ProcessorTransform(processor, fast_decode)


def count_per_class(dataset: Any) -> dict[str, int]:
    """Images per class name, in class order, zeros included; a ``Subset`` counts its own indices.
    A name repeated in ``classes`` gets the sum of its indices' counts."""
    indices = None
    if isinstance(dataset, torch.utils.data.Subset):
        indices, dataset = dataset.indices, dataset.dataset
    targets = dataset.targets if indices is None else [dataset.targets[i] for i in indices]
    counts = Counter(targets)
    result: dict[str, int] = {}
    for i, name in enumerate(dataset.classes):
        result[name] = result.get(name, 0) + counts.get(i, 0)
    return result
