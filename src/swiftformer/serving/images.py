"""Uploaded bytes → ``pixel_values`` (3, H, W): refuse what is not an image or too large, then decode
and preprocess as ``swiftformer predict`` does for a file (EXIF orientation applied, JPEGs decoded at the scale
the resize needs unless exact decoding is asked for, the model's processor)."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from PIL import Image

from ..image_processing import decode_pil
from .errors import ServeError

if TYPE_CHECKING:
    import torch

    from ..image_processing import SwiftFormerImageProcessor

# The decoders an upload may reach (PIL would otherwise try every plugin it has, EPS among them, which
# runs Ghostscript). The formats of swiftformer.image_processing.IMAGE_EXTENSIONS; JPEG includes MPO.
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF")


def decode_image(
    data: bytes, max_pixels: int, name: str = "image", draft: SwiftFormerImageProcessor | None = None
) -> Image.Image:
    """An RGB-convertible PIL image, fully decoded, from an upload's bytes.

    The size the header claims is checked before any pixel is decoded: a 60000×60000 PNG of a few
    kilobytes is refused (413) without allocating it. ``draft``: decode a JPEG at the reduced scale this
    processor's resize needs (:func:`swiftformer.image_processing.decode_pil`).

    Raises:
        ServeError: 400 ``empty`` (0 bytes), 400 ``bad_image`` (not an image of :data:`FORMATS`,
            truncated or corrupt), 413 ``image_too_large`` (more than ``max_pixels`` pixels).
    """
    if not data:
        raise ServeError(400, "empty", f"{name}: empty upload (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as err:  # PIL's own limit, from the header alone
            raise ServeError(413, "image_too_large", f"{name}: {err}") from None
        except Exception as err:  # any decoder may fail on hostile bytes; none of that is a server error
            raise ServeError(
                400, "bad_image", f"{name}: not an image in a supported format ({', '.join(FORMATS)}): {err}"
            ) from None
        width, height = image.size
        if width * height > max_pixels:
            raise ServeError(
                413,
                "image_too_large",
                f"{name}: the image claims {width}×{height} = {width * height} pixels, over the server's "
                f"max_image_pixels ({max_pixels}); refused before decoding",
            )
        if width == 0 or height == 0:
            raise ServeError(400, "bad_image", f"{name}: the image is empty ({width}×{height})")
        try:
            image = decode_pil(image, draft)  # as swiftformer.image_processing.load_image does
        except Image.DecompressionBombError as err:
            raise ServeError(413, "image_too_large", f"{name}: {err}") from None
        except Exception as err:  # truncated or corrupt pixel data
            raise ServeError(400, "bad_image", f"{name}: cannot decode the image: {err}") from None
    return image


def prepare(
    data: bytes, processor: SwiftFormerImageProcessor, max_pixels: int, name: str = "image", fast_decode: bool = False
) -> torch.Tensor:
    """``pixel_values`` (3, H, W) float32 of one upload (decode, then the model's processor); ``fast_decode``:
    JPEGs decoded at the scale the processor's resize needs (the server's default, ``ServeSettings``)."""
    image = decode_image(data, max_pixels, name, draft=processor if fast_decode else None)
    try:
        return processor(image, return_tensors="pt")["pixel_values"][0]
    except (OSError, ValueError, TypeError) as err:
        raise ServeError(400, "bad_image", f"{name}: cannot preprocess the image: {err}") from None


def output_size(processor: SwiftFormerImageProcessor) -> tuple[int, int] | None:
    """The (height, width) every image comes out of ``processor`` at, or None when it varies (a
    shortest-edge resize without a crop keeps aspect ratios; no resize keeps the image's size)."""
    if processor.do_center_crop and processor.crop_size is not None:  # never None with do_center_crop
        return processor.crop_size["height"], processor.crop_size["width"]
    if not processor.do_resize:
        return None
    if "height" in processor.size:
        return processor.size["height"], processor.size["width"]
    if processor.crop_pct is not None:  # ConvNeXt style: a square of the shortest edge
        edge = processor.size["shortest_edge"]
        return edge, edge
    return None
