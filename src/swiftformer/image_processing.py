"""Image preprocessing for SwiftFormer: images, arrays, tensors or files in, ``pixel_values`` out.

:class:`SwiftFormerImageProcessor` gives the same ``pixel_values`` (bit for bit: same PIL calls, same
float types) as the slow, PIL-based image processors of transformers (``ViTImageProcessorPil``,
``DeiTImageProcessorPil``, ``ConvNextImageProcessorPil``) and reads and writes the same
``preprocessor_config.json``.

Each image goes through these steps (each optional except the first and last):

1. convert to an RGB PIL image; arrays and tensors are turned into PIL images first, so that they
   are resized exactly like the PIL image with the same pixels;
2. resize with PIL's ``resample`` filter, in one of three modes chosen by ``size`` and ``crop_pct``:

   * ``size={"height": h, "width": w}`` (ViT, DeiT): warp to h×w, ignoring the aspect ratio;
   * ``size={"shortest_edge": s}``, no ``crop_pct``: the shorter side becomes ``s`` and the longer
     ``int(s * long / short)``, keeping the aspect ratio (so output sizes vary between images);
   * ``size={"shortest_edge": s}`` with ``crop_pct`` (ConvNeXt): for ``s < 384`` the shorter side
     becomes ``int(s / crop_pct)`` as above, then the central s×s square is cut out; for
     ``s >= 384`` the image is warped to s×s without cropping;

3. center-crop to ``crop_size`` if ``do_center_crop`` (DeiT: resize to 256×256, crop 224×224);
4. rescale: ``uint8 * rescale_factor`` computed in float64, then cast to float32;
5. normalize: ``(x - image_mean) / image_std`` per channel, in float32;
6. move channels first and stack: ``pixel_values`` of shape (batch, 3, height, width), float32.

Inputs: PIL images; numpy arrays and torch tensors of shape (H, W), (H, W, C) or (C, H, W) with C
in 1, 3, 4 (channels-first wins when both ends could be channels, as in transformers), or a 4-D
stack of them; file paths (opened like transformers' ``load_image``: EXIF orientation applied).
Alpha is dropped and grayscale replicated, as PIL's ``convert("RGB")`` does; 16-bit images are scaled
to 8 bits (``convert`` alone would clip them to white, as transformers does). Arrays become uint8
PIL images first: integer arrays must hold 0..255; float arrays of whole numbers in [0, 255] are
used as they are (as transformers does), other float arrays in [0, 1] are taken as fractions of
255 and rounded to the nearest level, so ``img / 255`` and ``img.astype(float)`` both give exactly
the output of ``img``. (transformers would truncate the [0, 1] case and rescale it twice.)
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps

if TYPE_CHECKING:
    import torch

from .configuration import variant_key
from .errors import CheckpointError
from .io.files import read_json, write_json
from .io.hub import PREPROCESSOR_NAME, resolve_file

# The image files the library reads from folders (any case): predict, training data, calibration sets.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

# PIL's resampling filters under the names configs may use; the values are PIL's own integer codes.
RESAMPLE_NAMES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}

# The largest height, width or shortest edge a preprocessor config may ask for (a hostile
# preprocessor_config.json asking for 60000x60000 would otherwise allocate >10 GB per image); a
# shortest-edge resize of a panorama may give at most MAX_IMAGE_SIDE**2 pixels.
MAX_IMAGE_SIDE = 8192

# The command line's override of PIL's decompression-bomb limit (pixels per image; 0: no limit).
if os.environ.get("SWIFTFORMER_MAX_IMAGE_PIXELS"):
    try:
        _limit = int(os.environ["SWIFTFORMER_MAX_IMAGE_PIXELS"])
    except ValueError:
        raise ValueError(
            f"SWIFTFORMER_MAX_IMAGE_PIXELS={os.environ['SWIFTFORMER_MAX_IMAGE_PIXELS']!r} is not a whole number"
        ) from None
    Image.MAX_IMAGE_PIXELS = _limit if _limit > 0 else None

# From this shortest edge on, transformers' ConvNeXt processor warps to a square instead of cropping.
CONVNEXT_WARP_FROM = 384

# Fast decoding (``load_image(path, draft=processor)``): a JPEG is decoded with libjpeg's DCT scaling at the
# smallest of 1/2, 1/4, 1/8 that leaves it at least DRAFT_MARGIN times the size the processor resizes to.
# 3, by measurement (benchmarks/decode_agreement.py, docs/performance.md "End to end"): at 2, a model trained on
# photo-like images changed more of its answers on 1920×1080 photos (decoded at 1/2) than the 0.1 % fast decoding
# may change to be the default; at 3 none changed. A 4000×3000 photo for a 224² model is still decoded at 1/4.
DRAFT_MARGIN = 3
# The key of ``Image.info`` under which a fast decode records (full width, full height, scale), both sizes after
# the EXIF orientation (scale 1: decoded fully), so that the processor resizes it to what the full image would
# give, and only the part of it that its crop keeps.
DRAFT_INFO = "swiftformer_draft"
# EXIF orientations that turn the image by 90° (transposed after decoding, so a target is swapped before).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)

_FIELDS = (
    "do_resize",
    "size",
    "resample",
    "crop_pct",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)

# Keys of transformers' configs that change nothing here, so they are dropped without a warning:
# bookkeeping; do_convert_rgb (we always convert: the model takes RGB); the channel layouts (ours is
# always channels-first); default_to_square (it only says how to read a bare-int size: from_dict).
_IGNORED_KEYS = frozenset(
    {
        "image_processor_type",
        "feature_extractor_type",
        "processor_class",
        "_processor_class",
        "auto_map",
        "do_convert_rgb",
        "data_format",
        "input_data_format",
        "default_to_square",
    }
)

# Where transformers' classes assume other values than our defaults for keys a config leaves out.
# A config without a type is read as ViT: transformers uses ViTImageProcessor for SwiftFormer.
_VIT: dict[str, Any] = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "ViTImageProcessor": _VIT,
    "DeiTImageProcessor": {
        **_VIT,
        "size": {"height": 256, "width": 256},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
    },
    "ConvNextImageProcessor": {**_VIT, "size": {"shortest_edge": 384}, "resample": 3, "crop_pct": 224 / 256},
}

ImageInput = Union["Image.Image", np.ndarray, "torch.Tensor", str, os.PathLike]
# What fast decoding decodes for: a processor, or the (width, height) an image is resized to.
Draft = Union["SwiftFormerImageProcessor", tuple[int, int]]


class BatchFeature(dict):
    """``{"pixel_values": array}`` whose keys are also attributes: ``inputs.pixel_values``, ``model(**inputs)``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """A copy with each torch tensor passed through ``tensor.to(*args, **kwargs)`` (a device, a dtype or
        both), which transformers' pipelines call on a processor's output. A dtype changes floating-point
        tensors only; integer tensors are only moved. Values that are not torch tensors are refused."""
        torch = sys.modules.get("torch")  # a torch tensor can only be here if torch was imported already
        converted = {}
        for key, value in self.items():
            if torch is None or not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"BatchFeature.to needs torch tensors; {key!r} is {type(value).__name__} "
                    "(call the processor with return_tensors='pt')"
                )
            if value.is_floating_point():
                converted[key] = value.to(*args, **kwargs)
            else:  # keep integer dtypes: only the device of a .to(device, dtype) call applies
                device = kwargs.get("device", next((a for a in args if isinstance(a, (str, int, torch.device))), None))
                converted[key] = value if device is None else value.to(device)
        return BatchFeature(converted)


def load_image(path: str | os.PathLike, draft: Draft | None = None) -> Image.Image:
    """Read an image file as an RGB PIL image, like the ``load_image`` transformers uses for paths.

    The EXIF orientation is applied (a photo taken upright comes out upright); alpha is dropped.
    ``draft``: decode fast for that processor (or for a (width, height) resize target) instead of exactly:
    see :func:`decode_pil`. The default decodes every pixel, as transformers does.
    Only regular files are opened: a named pipe, a device or a folder is refused at once (checked with
    ``os.stat``, so nothing blocks). An image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (about
    89 million; a decompression bomb) is refused with one line instead of PIL's warning; the
    command line raises that limit with the environment variable ``SWIFTFORMER_MAX_IMAGE_PIXELS``.
    Raises FileNotFoundError or OSError: "cannot read image '<path>': <reason>".
    """
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot read image {name!r}: no such file") from None
    except OSError as err:
        raise OSError(f"cannot read image {name!r}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"cannot read image {name!r}: not a regular file ({_file_kind(info.st_mode)})")
    with open(name, "rb") as handle:
        return _decode_image(handle, name, draft)


def load_image_bytes(data: bytes, name: str = "<bytes>", draft: Draft | None = None) -> Image.Image:
    """Decode an encoded image (PNG, JPEG, ... bytes) as :func:`load_image` decodes a file, with the same
    pixel limit; ``name`` is what error messages call it; ``draft`` as for :func:`load_image`."""
    return _decode_image(io.BytesIO(data), name, draft)


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def _decode_image(handle: Any, name: str, draft: Draft | None = None) -> Image.Image:
    """Decode an open binary file as an RGB PIL image, fully (PIL is lazy: broken files fail here)."""
    try:
        with warnings.catch_warnings():  # PIL's two-line warning becomes our one-line error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                rgb = _pil_to_rgb(decode_pil(image, draft))
                rgb.load()
                return rgb
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise OSError(
            f"cannot read image {name!r}: refused as a possible decompression bomb ({err}); raise the limit "
            "with SWIFTFORMER_MAX_IMAGE_PIXELS=N (command line) or PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except Image.UnidentifiedImageError:  # PIL's message shows its file object (a memory address for bytes)
        raise OSError(f"cannot read image {name!r}: not an image file (no decoder recognizes it)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise OSError(f"cannot read image {name!r}: {err}") from err


def decode_pil(image: Image.Image, draft: Draft | None = None) -> Image.Image:
    """Decode an opened (not yet loaded) PIL image, with its EXIF orientation applied.

    With ``draft`` (a :class:`SwiftFormerImageProcessor`, or the (width, height) an image is resized to), a
    JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (DCT scaling, ``Image.draft``): the smallest scale
    still at least :data:`DRAFT_MARGIN` times the size the processor resizes this image to (computed from its
    full size, after the orientation). A 4000×3000 photo for a 224×224 model decodes at 1000×750, several times
    faster. Other formats have no exact cheaper decode and are decoded fully, as without ``draft``.

    Either way the image records its full size and decoded scale in ``image.info[DRAFT_INFO]``, so that the
    processor resizes it as it would the full one (same output size, same covered area) and resizes only the
    area its center crop keeps. The pixels differ from the exact path by a fraction of a level on average
    (docs/preprocessing.md, "Fast decoding").
    """
    record = _draft_jpeg(image, draft) if draft is not None else None
    oriented = ImageOps.exif_transpose(image)
    oriented.load()
    if draft is not None:
        oriented.info[DRAFT_INFO] = record or (*oriented.size, 1)
    return oriented


def _draft_jpeg(image: Image.Image, draft: Draft) -> tuple[int, int, int] | None:
    """Ask a JPEG's decoder for a reduced scale fitting ``draft``; (full width, full height, scale) after the
    EXIF orientation, or None when the image is decoded at full scale (not a JPEG, or too small to reduce)."""
    if image.format not in ("JPEG", "MPO") or not image.size[0] or not image.size[1]:
        return None
    swap = image.getexif().get(ExifTags.Base.Orientation) in _SWAPPING_ORIENTATIONS
    width, height = image.size[::-1] if swap else image.size  # as the model sees it
    if isinstance(draft, SwiftFormerImageProcessor):
        try:
            target = draft.resize_target(width, height)
        except ValueError:  # a size the processor refuses: it says so itself, on the full image
            return None
    else:
        target = (int(draft[0]), int(draft[1]))
    if target is None or min(target) < 1:
        return None
    want = (target[1], target[0]) if swap else target  # in the file's own orientation: decoded, then turned
    want = (want[0] * DRAFT_MARGIN, want[1] * DRAFT_MARGIN)
    if min(image.size[0] // want[0], image.size[1] // want[1]) < 2:
        return None  # no reduced scale fits: decode exactly (draft at scale 1 could still change the mode)
    full_width = image.size[0]
    result = image.draft(None, want)
    if result is None:  # not drafted (several tiles, or drafted before)
        return None
    scale = round(full_width / result[1][2])  # the box it decodes: (0, 0, width / scale, height / scale)
    return (width, height, scale) if scale > 1 else None


def _draft_geometry(image: Image.Image) -> tuple[tuple[int, int], tuple[float, float, float, float] | None]:
    """The (width, height) ``image`` stands for and the box of it to resize from: its own size and None,
    or for a fast decode (:func:`decode_pil`) the full size and the area the decoded pixels cover (all of
    them, at full scale). A record that does not fit the image (cropped or resized since) is ignored."""
    record = image.info.get(DRAFT_INFO)
    if isinstance(record, tuple) and len(record) == 3 and all(isinstance(v, int) and v > 0 for v in record):
        width, height, scale = record
        if image.size == (-(-width // scale), -(-height // scale)):
            return (width, height), (0.0, 0.0, width / scale, height / scale)
    return image.size, None


def _tensor_to_numpy(obj: Any) -> np.ndarray | None:
    """The numpy array of a torch tensor, or None if ``obj`` is not one (never imports torch)."""
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported already
    if torch is None or not isinstance(obj, torch.Tensor):
        return None
    obj = obj.detach().cpu()
    return (obj.float() if obj.is_floating_point() else obj).numpy()  # numpy has no bfloat16


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values as uint8 (rules in the module docstring), so PIL resizes arrays like PIL images."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "biuf":
        raise TypeError(f"unsupported image array dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("the image array contains NaN or infinite values")
    low, high = array.min(), array.max()
    if low >= 0 and high <= 255 and (array.dtype.kind != "f" or np.array_equal(array, np.round(array))):
        return array.astype(np.uint8)
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        return np.rint(array.astype(np.float64) * 255).astype(np.uint8)
    raise ValueError(f"image values range over [{low}, {high}]; expected [0, 1] floats or 0..255 values")


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """A PIL image from an (H, W), (H, W, C) or (C, H, W) array with C in 1, 3, 4 (L, RGB, RGBA)."""
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4):  # channels-first wins, as in transformers
        array = np.moveaxis(array, 0, -1)
    elif array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"cannot use an array of shape {tuple(array.shape)} as an image: "
            "expected (H, W), (H, W, C) or (C, H, W) with C = 1, 3 or 4"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"cannot use an array of shape {tuple(array.shape)} as an image: it is empty")
    array = np.ascontiguousarray(_to_uint8(array))
    return Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    """An RGB PIL image. 16-bit images (modes ``I;16*``, and ``I`` holding values above 255) are scaled
    to 8 bits first, and float images (``F``) follow the float-array rules: PIL's ``convert("RGB")``
    would clip them, turning a 16-bit photo almost all white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return _array_to_pil(_wide_to_uint8(image)).convert("RGB")
    return image.convert("RGB")


STRIP_PIXELS = 1 << 20  # a 16-bit or float image is converted to 8 bits this many pixels at a time


def _strips(image: Image.Image) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first row, end row, pixels) of ``image`` in strips of about :data:`STRIP_PIXELS` pixels."""
    width, height = image.size
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        yield top, bottom, np.asarray(image.crop((0, top, width, bottom)))


def _wide_to_uint8(image: Image.Image) -> np.ndarray:
    """The (H, W) uint8 pixels of a 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) image, by the
    rules of :func:`_to_uint8` (16-bit values, and ``I`` holding values above 255, scaled: ``rint(v / 257)``),
    computed a strip at a time: beside the image and its 8-bit result, memory holds one strip, however large
    the image (a whole float64 copy was 8 bytes a pixel: a 7000×7000 16-bit PNG of a few kilobytes took 1.3 GB)."""
    kind = "f" if image.mode == "F" else "i"
    low: Any = 0
    high: Any = 65535
    integral, sixteen = True, image.mode.startswith("I;16")
    if not sixteen:
        lows, highs = [], []
        for _, _, strip in _strips(image):
            if kind == "f" and not np.isfinite(strip).all():
                raise ValueError("the image array contains NaN or infinite values")
            lows.append(strip.min())
            highs.append(strip.max())
            integral = integral and (kind != "f" or np.array_equal(strip, np.round(strip)))
        low, high = min(lows), max(highs)
        sixteen = kind == "i" and 255 < high <= 65535 and low >= 0
    out = np.empty(image.size[::-1], dtype=np.uint8)
    for top, bottom, strip in _strips(image):
        if sixteen:  # rint(v / 257) exactly (v / 257 is never halfway between integers), in integers
            wide = strip.astype(np.uint32)
            wide += 128
            wide //= 257
            out[top:bottom] = wide
        elif low >= 0 and high <= 255 and integral:
            out[top:bottom] = strip
        elif kind == "f" and low >= 0 and high <= 1:
            out[top:bottom] = np.rint(strip.astype(np.float64) * 255)
        else:
            raise ValueError(f"image values range over [{low}, {high}]; expected [0, 1] floats or 0..255 values")
    return out


def _to_rgb_image(image: Any) -> Image.Image:
    """Any single supported input as an RGB PIL image (alpha dropped, grayscale replicated)."""
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    array = image if isinstance(image, np.ndarray) else _tensor_to_numpy(image)
    if array is None:
        raise TypeError(
            f"unsupported image type {type(image).__name__}: expected a PIL image, "
            "numpy array, torch tensor or file path"
        )
    return _array_to_pil(array).convert("RGB")


def _split_batch(images: Any) -> list:
    """The list of single images in ``images``: a list/tuple, a 4-D (B, ...) array, or one image."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("got an empty list of images")
        return list(images)
    array = images if isinstance(images, np.ndarray) else _tensor_to_numpy(images)
    if array is not None and array.ndim == 4:  # a stacked batch, (B, H, W, C) or (B, C, H, W)
        if len(array) == 0:
            raise ValueError(f"got an empty batch of images, shape {tuple(array.shape)}")
        return list(array)
    return [images]


def _shortest_edge_size(width: int, height: int, edge: int) -> tuple[int, int]:
    """(height, width) with the shorter side ``edge`` and the longer one scaled, truncated (torchvision)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    if new_long * edge > MAX_IMAGE_SIDE**2:
        raise ValueError(
            f"an image of {width}x{height} resized to a shortest edge of {edge} would be {edge}x{new_long}, "
            f"over the limit of {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels"
        )
    return (new_long, edge) if width <= height else (edge, new_long)


def _pil_resize(
    image: Image.Image, height: int, width: int, resample: int, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Resize with PIL (which takes width first), from ``box`` of the image (None: all of it); return (height,
    width, 3) uint8."""
    return np.asarray(image.resize((width, height), resample=resample, box=box))


def _center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central height×width window of (H, W, C) pixels; a too-small image is zero-padded first.

    Rounding follows transformers: an odd surplus leaves the extra row/column at the bottom/right
    when cropping, and an odd padding puts the extra row/column of zeros at the top/left.
    """
    pad_h, pad_w = max(height - pixels.shape[0], 0), max(width - pixels.shape[1], 0)
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((math.ceil(pad_h / 2), pad_h // 2), (math.ceil(pad_w / 2), pad_w // 2), (0, 0)))
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    return pixels[top : top + height, left : left + width]


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _check_size(name: str, value: Any, int_means_shortest_edge: bool, allow_shortest_edge: bool = True) -> dict:
    """A size as a dict; a bare int is a square (or a shortest edge), a pair is (height, width)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = {"shortest_edge": value} if int_means_shortest_edge else {"height": value, "width": value}
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        value = {"height": value[0], "width": value[1]}
    forms = [{"height", "width"}] + ([{"shortest_edge"}] if allow_shortest_edge else [])
    if not isinstance(value, dict) or set(value) not in forms:
        accepted = "{'height': h, 'width': w}" + (" or {'shortest_edge': s}" if allow_shortest_edge else "")
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number <= 0:
            raise ValueError(f"{name}[{key!r}] must be a positive integer, got {number!r}")
        if number > MAX_IMAGE_SIDE:
            raise ValueError(f"{name}[{key!r}]={number} is over the limit of {MAX_IMAGE_SIDE} pixels")
    return {key: int(number) for key, number in value.items()}


def _check_resample(value: Any) -> int:
    if isinstance(value, str) and value.rsplit(".", 1)[-1].lower() in RESAMPLE_NAMES:
        return RESAMPLE_NAMES[value.rsplit(".", 1)[-1].lower()]  # "bicubic", "PILImageResampling.BICUBIC"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value in RESAMPLE_NAMES.values():
        return int(value)
    raise ValueError(f"resample must be a PIL filter code 0-5 or one of {sorted(RESAMPLE_NAMES)}, got {value!r}")


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_per_channel(name: str, value: Any) -> list[float]:
    """Three floats, one per RGB channel; a single number is used for all three."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        value = [value] * 3
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must hold 3 finite numbers (one per RGB channel), got {value!r}")
    return numbers


class SwiftFormerImageProcessor:
    """Turns images into SwiftFormer's ``pixel_values``, (batch, 3, height, width) float32.

    The defaults are what transformers does for the hub checkpoints: ``MBZUAI/swiftformer-xs`` has
    ``preprocessor_config.json`` = ``{"do_normalize": true, "do_resize": true, "image_mean": [0.485,
    0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "size": 224}`` and no processor type, which
    transformers reads with ``ViTImageProcessor``: warp to 224×224 with bilinear resampling, rescale
    by 1/255, normalize with the ImageNet mean/std, no crop.

    Args (transformers' names; see the module docstring for the resize modes):
        size: ``{"height": h, "width": w}``, ``{"shortest_edge": s}``, a (height, width) pair, or an
            int (a square; a shortest edge when ``crop_pct`` is given).
        resample: PIL filter code (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming) or name.
        crop_pct: ConvNeXt crop fraction in (0, 1]; needs a ``shortest_edge`` size.

    Raises:
        ValueError: A field has an invalid value; the message names the field and the value.
    """

    def __init__(
        self,
        *,
        do_resize: bool = True,
        size: dict | int | tuple | None = None,
        resample: int | str = 2,
        crop_pct: float | None = None,
        do_center_crop: bool = False,
        crop_size: dict | int | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Any = IMAGENET_DEFAULT_MEAN,
        image_std: Any = IMAGENET_DEFAULT_STD,
    ) -> None:
        self.do_resize = _check_bool("do_resize", do_resize)
        self.crop_pct = None if crop_pct is None else _check_positive("crop_pct", crop_pct)
        if self.crop_pct is not None and self.crop_pct > 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
        size = {"height": 224, "width": 224} if size is None else size
        self.size = _check_size("size", size, int_means_shortest_edge=self.crop_pct is not None)
        if self.crop_pct is not None and "shortest_edge" not in self.size:
            raise ValueError(f"crop_pct needs size={{'shortest_edge': s}} (ConvNeXt style), got size={self.size}")
        edge = self.size.get("shortest_edge", 0)
        if self.crop_pct is not None and edge < CONVNEXT_WARP_FROM and int(edge / self.crop_pct) > MAX_IMAGE_SIDE:
            raise ValueError(
                f"crop_pct={crop_pct!r} would resize the shortest edge to {int(edge / self.crop_pct)} pixels, "
                f"over the limit of {MAX_IMAGE_SIDE}"
            )
        self.resample = _check_resample(resample)
        self.do_center_crop = _check_bool("do_center_crop", do_center_crop)
        self.crop_size = None if crop_size is None else _check_size("crop_size", crop_size, False, False)
        if self.do_center_crop and self.crop_size is None:
            raise ValueError("do_center_crop=True needs crop_size={'height': h, 'width': w}, got crop_size=None")
        self.do_rescale = _check_bool("do_rescale", do_rescale)
        self.rescale_factor = _check_positive("rescale_factor", rescale_factor)
        self.do_normalize = _check_bool("do_normalize", do_normalize)
        self.image_mean = _check_per_channel("image_mean", image_mean)
        self.image_std = _check_per_channel("image_std", image_std)
        if any(v <= 0 for v in self.image_std):
            raise ValueError(f"image_std must be positive (it divides), got {image_std!r}")

    def __call__(self, images: ImageInput | list[ImageInput], return_tensors: str | None = None) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, return_tensors=return_tensors)

    def preprocess(self, images: ImageInput | list[ImageInput], return_tensors: str | None = None) -> BatchFeature:
        """Preprocess one image or a batch into ``{"pixel_values": (B, 3, H, W) float32}``.

        ``images``: one image (PIL, array, tensor or path; see the module docstring), a list/tuple
        of them, or a 4-D (B, H, W, C) / (B, C, H, W) array or tensor; one image gives B = 1.
        ``return_tensors``: ``"pt"`` for a torch tensor, ``"np"`` or None for a numpy array.

        Raises: TypeError for an unsupported input type; ValueError for a bad array shape or value
        range, an empty list, or images that end up in different sizes; OSError for an unreadable file.
        """
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        arrays = [self._process_one(image) for image in _split_batch(images)]
        shapes = sorted({array.shape for array in arrays})
        if len(shapes) > 1:
            raise ValueError(
                f"the images have different sizes after preprocessing {shapes} and cannot be "
                "stacked; use a height/width size, crop_pct or do_center_crop"
            )
        pixel_values = np.stack(arrays)
        if return_tensors == "pt":
            import torch  # only here, so that the module itself imports without torch

            return BatchFeature(pixel_values=torch.from_numpy(pixel_values))
        return BatchFeature(pixel_values=pixel_values)

    def _process_one(self, image: ImageInput) -> np.ndarray:
        """One image as (3, H, W) float32."""
        image = _to_rgb_image(image)
        pixels = self._resize(image) if self.do_resize else np.asarray(image)  # (H, W, 3) uint8
        if self.do_center_crop:
            assert self.crop_size is not None  # __init__ requires one with do_center_crop
            pixels = _center_crop(pixels, self.crop_size["height"], self.crop_size["width"])
        # Rescale in float64 and only then cast, as transformers does: the float32 results match it bitwise. A
        # uint8 channel has 256 levels, so that is computed once per level and looked up (docs/preprocessing.md, Speed).
        levels = np.arange(256, dtype=np.float64)
        values = (levels * self.rescale_factor if self.do_rescale else levels).astype(np.float32)  # (256,)
        table = np.broadcast_to(values, (3, 256))
        if self.do_normalize:
            mean, std = np.asarray(self.image_mean, np.float32), np.asarray(self.image_std, np.float32)
            table = (values - mean[:, None]) / std[:, None]
        out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        for channel in range(3):
            np.take(table[channel], pixels[:, :, channel], out=out[channel])
        return out  # (3, H, W)

    def resize_target(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) an image of ``width``×``height`` is resized to, before any crop (None without
        ``do_resize``): what fast decoding (:func:`decode_pil`) needs at least.

        Raises: ValueError if the resize would be over the size limit (a shortest edge of a panorama).
        """
        if not self.do_resize:
            return None
        if "height" in self.size:
            return self.size["width"], self.size["height"]
        edge = self.size["shortest_edge"]
        if self.crop_pct is not None and edge >= CONVNEXT_WARP_FROM:  # ConvNeXt at 384+: the whole, warped image
            return edge, edge
        if self.crop_pct is not None:  # below 384: enlarge so that the central edge×edge square keeps crop_pct
            edge = int(edge / self.crop_pct)
        new_height, new_width = _shortest_edge_size(width, height, edge)
        return new_width, new_height

    def _resize(self, image: Image.Image) -> np.ndarray:
        """Resize in the mode ``size``/``crop_pct`` select (module docstring); (H, W, 3) uint8.

        A fast-decoded image (:func:`decode_pil`) is resized to what its full-size original would be, and only
        the window the crops keep is computed: the resize of that window's box straight to its size, which
        differs from resizing everything and cropping by at most one level in a few pixels (the filter
        positions are computed from another origin, in floating point). A wide photo's center crop leaves out
        much of it, and that part is then never resized.
        """
        full_size, box = _draft_geometry(image)
        target = self.resize_target(*full_size)
        assert target is not None  # only called with do_resize
        window = self._kept_window(target) if box is not None else None
        if window is not None:
            assert box is not None
            left, top, width, height = window
            scale_x, scale_y = (box[2] - box[0]) / target[0], (box[3] - box[1]) / target[1]
            x0, y0 = box[0] + left * scale_x, box[1] + top * scale_y
            window_box = (x0, y0, x0 + width * scale_x, y0 + height * scale_y)
            return _pil_resize(image, height, width, self.resample, window_box)  # what the crops would leave
        resized = _pil_resize(image, target[1], target[0], self.resample, box)
        edge = self.size.get("shortest_edge", 0)
        if self.crop_pct is not None and edge < CONVNEXT_WARP_FROM:
            return _center_crop(resized, edge, edge)
        return resized

    def _kept_window(self, target: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(left, top, width, height) of the resized ``target`` (width, height) that the crops keep (the
        ConvNeXt square, then ``crop_size``), as :func:`_center_crop` cuts them; None when nothing is cropped
        or a crop would pad (the image is then resized whole)."""
        crops = []
        edge = self.size.get("shortest_edge", 0)
        if self.crop_pct is not None and edge < CONVNEXT_WARP_FROM:
            crops.append((edge, edge))
        if self.do_center_crop:
            assert self.crop_size is not None  # __init__ requires one with do_center_crop
            crops.append((self.crop_size["width"], self.crop_size["height"]))
        left, top, (width, height) = 0, 0, target
        for crop_width, crop_height in crops:
            if crop_width > width or crop_height > height:
                return None
            left, top = left + (width - crop_width) // 2, top + (height - crop_height) // 2
            width, height = crop_width, crop_height
        return (left, top, width, height) if (width, height) != target else None

    @property
    def image_processor_type(self) -> str:
        """The transformers class that computes the same thing, so AutoImageProcessor can read our files."""
        if self.crop_pct is not None:
            return "ConvNextImageProcessor"
        return "DeiTImageProcessor" if self.do_center_crop else "ViTImageProcessor"

    def to_dict(self) -> dict[str, Any]:
        """The fields under transformers' names (None values left out), plus ``image_processor_type``."""
        fields = {name: getattr(self, name) for name in _FIELDS if getattr(self, name) is not None}
        fields = json.loads(json.dumps(fields))  # a deep copy with JSON types
        return {**fields, "image_processor_type": self.image_processor_type}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    # Mutable and compared by value: not hashable (what defining __eq__ implies anyway). The ignore: typeshed types
    # object.__hash__ as a method, so mypy refuses None, the documented way to declare a class unhashable.
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SwiftFormerImageProcessor) and self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> SwiftFormerImageProcessor:
        """Build from a ``preprocessor_config.json`` dict, as transformers would read it.

        Keys the config leaves out take the defaults of the transformers class named by
        ``image_processor_type`` (ViT when there is none, as for the hub checkpoints).
        transformers' bookkeeping keys are ignored; other unknown keys are ignored with a warning.
        """
        kind = str(config.get("image_processor_type") or config.get("feature_extractor_type") or "ViTImageProcessor")
        kind = kind.removesuffix("Pil").removesuffix("Fast").replace("FeatureExtractor", "ImageProcessor")
        fields = dict(_CLASS_DEFAULTS.get(kind, {}))
        for key, value in config.items():
            if key in _FIELDS and value is None:
                # transformers keeps a null, so a null switch is off; any other null would make it
                # fail, so here it means "not set".
                value = False if key.startswith("do_") else fields.get(key)
            if key in _FIELDS and value is not None:
                fields[key] = value
        unknown = sorted(set(config) - set(_FIELDS) - _IGNORED_KEYS)
        if kind != "ConvNextImageProcessor" and fields.pop("crop_pct", None) is not None:
            unknown.append("crop_pct")  # only transformers' ConvNeXt processor uses it
        if unknown:
            warnings.warn(
                f"ignoring preprocessor config keys that this processor does not use: {unknown}", stacklevel=2
            )
        if config.get("default_to_square") is False and isinstance(fields.get("size"), int):
            fields["size"] = {"shortest_edge": fields["size"]}
        return cls(**fields)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> SwiftFormerImageProcessor:
        """Load ``preprocessor_config.json`` from a local folder or a hub id (``"MBZUAI/swiftformer-xs"``)."""
        path = resolve_file(
            name_or_path,
            PREPROCESSOR_NAME,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        try:
            return cls.from_dict(read_json(path))
        except (TypeError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{path}: {err}") from None

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``preprocessor_config.json`` into ``save_directory`` (created if needed), atomically."""
        directory = Path(save_directory)
        if directory.is_file():
            raise NotADirectoryError(f"cannot save into {directory}: it is a file, not a folder")
        path = directory / PREPROCESSOR_NAME
        write_json(path, self.to_dict())
        return path


def load_processor(name_or_path: str | os.PathLike, **hub: Any) -> tuple[SwiftFormerImageProcessor, str | None]:
    """The image processor a model runs with, and a note for the user (or None): what every command, the
    server and the batch jobs load next to a model.

    The model folder's (or hub repository's) ``preprocessor_config.json``; the ImageNet defaults
    (``SwiftFormerImageProcessor()``) when it has none, with a note saying so; the defaults without a note for
    a variant name (``"xs"``: random weights and no folder, as :func:`swiftformer.inference.load_model` reads
    it; a folder of that name wins). ``hub``: the hub options of :meth:`SwiftFormerImageProcessor.from_pretrained`
    (``revision``, ``cache_dir``, ``local_files_only``, ``token``).
    """
    if not Path(name_or_path).exists() and variant_key(os.fspath(name_or_path)) is not None:
        return SwiftFormerImageProcessor(), None
    if resolve_file(name_or_path, PREPROCESSOR_NAME, missing_ok=True, **hub) is None:
        note = f"{os.fspath(name_or_path)} has no {PREPROCESSOR_NAME}; using the ImageNet defaults"
        return SwiftFormerImageProcessor(), note
    return SwiftFormerImageProcessor.from_pretrained(name_or_path, **hub), None
