"""What fast decoding (JPEG DCT scaling, ``load_image(path, draft=processor)``) changes in the answers, and what it saves.

    python benchmarks/decode_agreement.py                                   # perturbed XS model, 224x224
    python benchmarks/decode_agreement.py --model runs/demo/run/best        # + the digits demo's trained model
    python benchmarks/decode_agreement.py --images 300 150 40 --margins 1 2 --timing-runs 5

    # a model trained on photo-like images (4 classes: ellipses or polygons, sharp or blurred edges)
    python benchmarks/decode_agreement.py --write-photo-dataset runs/photo/data
    swiftformer train --config configs/photo-classes.yaml --data-dir runs/photo/data --output runs/photo/run
    python benchmarks/decode_agreement.py --no-perturbed --photo-model runs/photo/run/best

Photo-like JPEGs are generated (scikit-image's sample photographs are not required): smooth multi-scale
noise with a 1/f spectrum, hard-edged shapes, a light gradient and sensor noise, at 640x480, 1920x1080 and
4000x3000 and JPEG quality 75, 85, 95 (4:2:0, as cameras and Pillow write them). Each is preprocessed exactly
(``processor(load_image_bytes(data))``, bit-identical to transformers) and fast (``draft=processor``, at
each ``--margins``: the decoded image is at least that many times the resize target). Per cell:

* pixels: mean and max |difference| in levels (0..255) of the resized images (before normalization), for
  the first model's images (the photos at 224², or with ``--no-perturbed`` the trained model's at its size);
* XS (perturbed): max |Δlogit| / max |logit| and top-1 agreement of SwiftFormer-XS with perturbed weights
  (``tests/_helpers.perturb_``; random-like weights have close logits, so flips are more likely than for a
  trained model);
* with ``--photo-model``: top-1 agreement of a model trained on the photo classes (:data:`PHOTO_CLASSES`), on
  new photos of those classes drawn at each size;
* with ``--model``: top-1 agreement of a trained model on its own validation images (an image folder:
  ``--data-dir``, default ``MODEL/../../data/val``, the layout ``scripts/demo_digits.py`` writes), each image
  enlarged to the photo sizes with the same sensor noise and saved as JPEG;
* exact / fast ms: median decode + resize time per image (``--timing-runs``; 0 to skip), with the CPU and the
  malloc setting in the header. On a busy machine they are indicative only: say so when quoting them.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

import swiftformer.image_processing as image_processing
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.hardware import hardware_line
from swiftformer.image_processing import SwiftFormerImageProcessor, load_image_bytes, load_processor
from swiftformer.io.files import atomic_write
from swiftformer.perf import median_ms, tune_malloc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _helpers import perturb_  # the tests' helper: the weights the tests use

SIZES = ((640, 480), (1920, 1080), (4000, 3000))
QUALITIES = (75, 85, 95)
BATCH = 32


def photo(width: int, height: int, seed: int, shapes: str | None = None, blurred: bool | None = None) -> Image.Image:
    """A photo-like RGB image: 1/f-like multi-scale colour noise, hard-edged shapes (some blurred: depth of field),
    a light gradient, and per-pixel sensor noise. Natural images' statistics matter here: flat colours would
    decode alike at any scale, and white noise would be unlike any camera's output.

    ``shapes`` (``"ellipses"``, ``"polygons"``; None: each shape either) and ``blurred`` (True: every shape's
    edges blurred by 1/150 of the image's size, visible at 224²; False: sharp; None: half the photos slightly
    blurred) make the classes of :data:`PHOTO_CLASSES`."""
    rng = np.random.default_rng(seed)
    low_width = min(width, 1024)  # coarse octaves at up to 1024 px wide, enlarged once: 10x faster at 12 MP
    low_height = max(2, round(height * low_width / width))
    low = np.zeros((low_height, low_width, 3), np.float32)
    cells = 3
    while cells <= low_width // 2:  # octaves from a few cells across to 2-pixel detail
        low += (60.0 / cells**0.5) * _noise_layer(rng, cells, (low_width, low_height))  # 1/f-like amplitudes
        cells *= 3
    base = _enlarge(low, (width, height))
    if width > low_width:  # the full image's own fine texture, at 2-pixel detail
        base += (60.0 / (width // 2) ** 0.5) * _noise_layer(rng, width // 2, (width, height))
    base += np.linspace(-30, 30, width, dtype=np.float32)[None, :, None] * rng.uniform(-1, 1, 3).astype(np.float32)
    image = Image.fromarray(np.clip(base + 128, 0, 255).astype(np.uint8))
    layer = Image.new("RGBA", (width, height))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.03, 0.3) * width, rng.uniform(0.03, 0.3) * height
        colour = (*(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(120, 256)))
        box = [x0, y0, x0 + w, y0 + h]
        ellipse = rng.random() < 0.5
        if shapes is not None:
            ellipse = shapes == "ellipses"
        if ellipse:
            draw.ellipse(box, fill=colour)
        else:
            draw.polygon([tuple(p) for p in rng.uniform([0, 0], [width, height], (int(rng.integers(3, 7)), 2))], colour)
    blur = max(width, height) / 800 if rng.random() < 0.5 else 0.0
    if blurred is not None:
        blur = max(width, height) / 150 if blurred else 0.0
    if blur:
        layer = layer.filter(ImageFilter.GaussianBlur(blur))
    image.paste(layer, (0, 0), layer)
    texture = 0.5 * (base - base.mean())  # surfaces are textured, not flat: the texture shows through the shapes
    noisy = np.asarray(image, np.float32) + texture + rng.normal(0, 3.0, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


# A classification task on photo-like images, for a model trained on them (--write-photo-dataset, --photo-model):
# which shapes the photo holds and whether their edges are sharp or blurred (fine detail, what decoding at a
# reduced scale could change).
PHOTO_CLASSES = {
    f"{shapes}-{'blurred' if blurred else 'sharp'}": (shapes, blurred)
    for shapes in ("ellipses", "polygons")
    for blurred in (False, True)
}


def photo_of_class(width: int, height: int, seed: int) -> tuple[str, Image.Image]:
    """(class name, photo) of photo ``seed`` of the :data:`PHOTO_CLASSES` task: the classes taking turns."""
    name = list(PHOTO_CLASSES)[seed % len(PHOTO_CLASSES)]
    shapes, blurred = PHOTO_CLASSES[name]
    return name, photo(width, height, seed, shapes, blurred)


def write_photo_dataset(folder: Path, train: int, val: int, size: tuple[int, int] = (320, 240)) -> None:
    """``folder/{train,val}/CLASS/*.jpg``: ``train`` and ``val`` photos of the :data:`PHOTO_CLASSES` task at
    ``size``, JPEG quality 90 (seeds apart from the photos the agreement is measured on), each file written
    atomically. A folder that exists and is not empty is refused (SystemExit naming it): nothing is replaced."""
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"decode_agreement.py: {folder} exists and is not empty; give a new folder")
    for split, count, first in (("train", train, 10_000_000), ("val", val, 20_000_000)):
        for seed in range(first, first + count):
            name, image = photo_of_class(*size, seed)
            with atomic_write(folder / split / name / f"{seed}.jpg") as handle:
                image.save(handle, "JPEG", quality=90)


def _noise_layer(rng: np.random.Generator, cells: int, size: tuple[int, int]) -> np.ndarray:
    """Gaussian noise of ``cells`` values across, enlarged (bicubic) to ``size``: one octave, (H, W, 3)."""
    width, height = size
    return _enlarge(rng.normal(size=(max(2, cells * height // width), cells, 3)).astype(np.float32), size)


def _enlarge(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (h, w, 3) float32 array resized (bicubic, per channel) to ``size`` (width, height)."""
    channels = [Image.fromarray(array[:, :, c], mode="F").resize(size, Image.Resampling.BICUBIC) for c in range(3)]
    return np.stack([np.asarray(c) for c in channels], axis=-1)


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def levels_processor(processor: SwiftFormerImageProcessor) -> SwiftFormerImageProcessor:
    """The same resize and crop, without rescale and normalization: outputs are the uint8 levels, as floats."""
    return SwiftFormerImageProcessor.from_dict({**processor.to_dict(), "do_rescale": False, "do_normalize": False})


@dataclass
class Cell:
    """The figures of one (size, quality, margin)."""

    pixel_sum: float = 0.0
    pixel_count: int = 0
    pixel_max: float = 0.0
    logit_rel: dict[str, float] = field(default_factory=dict)
    agree: dict[str, list[int]] = field(default_factory=dict)
    exact_ms: float | None = None
    fast_ms: float | None = None


@dataclass
class Model:
    name: str
    model: torch.nn.Module
    processor: SwiftFormerImageProcessor
    images: Callable[[int, int, int], Iterator[Image.Image]]  # (width, height, count) -> images
    count: int


def logits(model: torch.nn.Module, pixels: list[torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(torch.stack(pixels[i : i + BATCH])).logits for i in range(0, len(pixels), BATCH)])


def fast_pixels(data: bytes, processor: SwiftFormerImageProcessor, margin: int) -> torch.Tensor:
    image_processing.DRAFT_MARGIN = margin  # the library's constant, varied here to choose it
    return processor(load_image_bytes(data, draft=processor), return_tensors="pt")["pixel_values"][0]


def exact_pixels(data: bytes, processor: SwiftFormerImageProcessor) -> torch.Tensor:
    return processor(load_image_bytes(data), return_tensors="pt")["pixel_values"][0]


def encode_all(model: Model, size: tuple[int, int]) -> dict[int, list[bytes]]:
    """{quality: JPEG files} of ``model``'s images at ``size``: each image generated once (a 12 MP photo takes
    seconds), encoded at every quality."""
    files: dict[int, list[bytes]] = {quality: [] for quality in QUALITIES}
    for image in model.images(*size, model.count):
        for quality in QUALITIES:
            files[quality].append(jpeg(image, quality))
    return files


def measure(models: list[Model], files: list[list[bytes]], margins: list[int], runs: int) -> dict[int, Cell]:
    """{margin: Cell} for one photo size and quality; ``files``: each model's JPEGs."""
    cells = {margin: Cell() for margin in margins}
    for entry, entry_files in zip(models, files):
        reference = logits(entry.model, [exact_pixels(data, entry.processor) for data in entry_files])
        for margin in margins:
            cell = cells[margin]
            fast = logits(entry.model, [fast_pixels(data, entry.processor, margin) for data in entry_files])
            cell.logit_rel[entry.name] = float((fast - reference).abs().max() / reference.abs().max())
            cell.agree[entry.name] = [int((fast.argmax(1) == reference.argmax(1)).sum()), len(entry_files)]
    levels = levels_processor(models[0].processor)  # pixel differences: on the photos, at the first model's size
    for data in files[0]:
        exact_levels = exact_pixels(data, levels)
        for margin in margins:
            difference = (fast_pixels(data, levels, margin) - exact_levels).abs()
            cells[margin].pixel_sum += float(difference.sum())
            cells[margin].pixel_count += difference.numel()
            cells[margin].pixel_max = max(cells[margin].pixel_max, float(difference.max()))
    if runs > 0:
        data, processor = files[0][0], models[0].processor
        exact_ms = median_ms(lambda: exact_pixels(data, processor), runs, warmup=1)
        for margin in margins:
            cells[margin].exact_ms = exact_ms
            cells[margin].fast_ms = median_ms(lambda m=margin: fast_pixels(data, processor, m), runs, warmup=1)
    return cells


def photos(seed_base: int) -> Callable[[int, int, int], Iterator[Image.Image]]:
    def generate(width: int, height: int, count: int) -> Iterator[Image.Image]:
        for i in range(count):
            yield photo(width, height, seed_base + 1000 * width + i)

    return generate


def class_photos(width: int, height: int, count: int) -> Iterator[Image.Image]:
    """Photos of the :data:`PHOTO_CLASSES` task at ``width``×``height``, drawn at that size (seeds of their own)."""
    for i in range(count):
        yield photo_of_class(width, height, 30_000_000 + i)[1]


def folder_images(data_dir: Path) -> Callable[[int, int, int], Iterator[Image.Image]]:
    """A labelled image folder's images, enlarged to the photo size (bicubic) with the photos' sensor noise."""
    paths = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in image_processing.IMAGE_EXTENSIONS)

    def generate(width: int, height: int, count: int) -> Iterator[Image.Image]:
        rng = np.random.default_rng(width)
        for path in paths[:count]:
            with Image.open(path) as source:
                large = source.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
            noisy = np.asarray(large, np.float32) + rng.normal(0, 3.0, (height, width, 3)).astype(np.float32)
            yield Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    return generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs=3, default=[200, 100, 30], help="photos per size (small to large)")
    parser.add_argument("--margins", type=int, nargs="+", default=[2, 3], help="decode at least N x the target")
    parser.add_argument("--model", help="a trained model folder (e.g. runs/demo/run/best)")
    parser.add_argument("--data-dir", help="its labelled images (default MODEL/../../data/val)")
    parser.add_argument(
        "--no-perturbed",
        action="store_true",
        help="only the trained models, --model and --photo-model (skip the perturbed XS)",
    )
    parser.add_argument(
        "--photo-model",
        help="a model trained on --write-photo-dataset's photos: measured on new photos of those classes at each size",
    )
    parser.add_argument(
        "--write-photo-dataset",
        metavar="DIR",
        help="write the photo classification task (DIR/train, DIR/val at 320x240) and exit",
    )
    parser.add_argument("--dataset-size", type=int, nargs=2, default=[1200, 240], help="train and val photos")
    parser.add_argument("--timing-runs", type=int, default=5, help="timed decodes per cell (0: no timing)")
    args = parser.parse_args()
    if args.write_photo_dataset:
        write_photo_dataset(Path(args.write_photo_dataset), *args.dataset_size)
        return
    tuned = tune_malloc()
    torch.manual_seed(0)
    xs = perturb_(SwiftFormerForImageClassification(SwiftFormerConfig()).eval(), seed=0)
    models = [] if args.no_perturbed else [Model("XS (perturbed)", xs, SwiftFormerImageProcessor(), photos(0), 0)]
    if args.model:
        trained = SwiftFormerForImageClassification.from_pretrained(args.model).eval()
        data_dir = Path(args.data_dir) if args.data_dir else Path(args.model).resolve().parents[1] / "data" / "val"
        models.append(Model(Path(args.model).name, trained, load_processor(args.model)[0], folder_images(data_dir), 0))
    if args.photo_model:
        trained = SwiftFormerForImageClassification.from_pretrained(args.photo_model).eval()
        processor = load_processor(args.photo_model)[0]
        models.append(Model(f"photo model {Path(args.photo_model).name}", trained, processor, class_photos, 0))
    print(f"# {hardware_line()}; malloc tuned: {tuned}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# load average {os.getloadavg()[0]:.2f} (above ~0.5 the timings are contended, indicative only)")
    names = [m.name for m in models]
    header = ["size", "q", "margin", "mean|Δpx|", "max|Δpx|"]
    header += [f"{n} Δlogit/max" for n in names] + [f"{n} top-1 agree" for n in names] + ["exact ms", "fast ms"]
    print(" | ".join(header))
    totals = {margin: {n: [0, 0] for n in names} for margin in args.margins}
    for (width, height), count in zip(SIZES, args.images):
        if count == 0:  # e.g. --images 0 300 40: more of the sizes that are decoded at a reduced scale
            continue
        for model in models:
            model.count = count
        files = [encode_all(model, (width, height)) for model in models]
        for quality in QUALITIES:
            cells = measure(models, [f[quality] for f in files], args.margins, args.timing_runs)
            for margin, cell in cells.items():
                row = [f"{width}x{height}", str(quality), f"{margin}x"]
                row += [f"{cell.pixel_sum / max(cell.pixel_count, 1):.3f}", f"{cell.pixel_max:.0f}"]
                row += [f"{cell.logit_rel[n]:.2e}" for n in names]
                row += [f"{cell.agree[n][0]}/{cell.agree[n][1]}" for n in names]
                row += [
                    f"{cell.exact_ms:.1f}" if cell.exact_ms else "-",
                    f"{cell.fast_ms:.1f}" if cell.fast_ms else "-",
                ]
                print(" | ".join(row), flush=True)
                for n in names:
                    totals[margin][n][0] += cell.agree[n][0]
                    totals[margin][n][1] += cell.agree[n][1]
    for margin, per_model in totals.items():
        for n, (agreeing, total) in per_model.items():
            if total:
                print(f"# margin {margin}x, {n}: top-1 agreement {agreeing}/{total} = {100 * agreeing / total:.2f} %")


if __name__ == "__main__":
    main()
