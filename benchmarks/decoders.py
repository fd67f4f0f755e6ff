"""Candidate JPEG decoders against Pillow with draft, on the same photo-like JPEGs (issue 24: optional faster decoders).

    python benchmarks/decoders.py --sizes 1920x1080 4000x3000 --images 6 --runs 7

For each photo: decode to an RGB uint8 array at the reduced scale fast decoding uses (the smallest of 1/2, 1/4, 1/8
still >= 2x the 224² model's resize target), median ms of --runs, one thread. Candidates:
  pillow-exact   Image.open + load, every pixel (the transformers way)
  pillow-draft   swiftformer.image_processing.load_image_bytes(draft=processor) (the default since issue 24)
  simplejpeg     simplejpeg.decode_jpeg(min_width=, min_height=) (libjpeg-turbo's DCT scaling), exact IDCT
  simplejpeg-fast  the same with fastdct=True, fastupsample=True
  pyvips         pyvips.Image.new_from_buffer(shrink=) (shrink-on-load), to numpy
  torchvision    torchvision.io.decode_jpeg (no reduced scale: every pixel)
Also |Δ| in levels of each reduced decode against pillow-draft's pixels (same scale).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # decoders compared on one thread, as one decode worker runs them

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_agreement import jpeg, photo

from swiftformer.hardware import hardware_line
from swiftformer.image_processing import DRAFT_MARGIN, SwiftFormerImageProcessor, load_image_bytes
from swiftformer.perf import median_ms, tune_malloc

Decoder = Callable[[bytes, tuple[int, int]], np.ndarray]  # (JPEG, the (width, height) to reach at least) -> (H, W, 3)


def pillow_exact(data: bytes, want: tuple[int, int]) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def pillow_draft(data: bytes, want: tuple[int, int]) -> np.ndarray:
    return np.asarray(load_image_bytes(data, draft=(want[0] // DRAFT_MARGIN, want[1] // DRAFT_MARGIN)))


def simplejpeg_decoder(fast: bool) -> Decoder:
    import simplejpeg

    def decode(data: bytes, want: tuple[int, int]) -> np.ndarray:
        return simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=want[0], min_height=want[1], fastdct=fast, fastupsample=fast
        )

    return decode


def pyvips_decode(data: bytes, want: tuple[int, int]) -> np.ndarray:
    import pyvips

    header = pyvips.Image.new_from_buffer(data, "")
    shrink = 1
    while shrink < 8 and header.width // (shrink * 2) >= want[0] and header.height // (shrink * 2) >= want[1]:
        shrink *= 2
    image = pyvips.Image.new_from_buffer(data, "", shrink=shrink, access="sequential")
    return image.numpy()


def torchvision_decode(data: bytes, want: tuple[int, int]) -> np.ndarray:
    import torch
    from torchvision.io import decode_jpeg

    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)).permute(1, 2, 0).numpy()


def candidates() -> dict[str, Decoder]:
    found: dict[str, Decoder] = {"pillow-exact": pillow_exact, "pillow-draft": pillow_draft}
    if importlib.util.find_spec("simplejpeg"):
        found["simplejpeg"] = simplejpeg_decoder(fast=False)
        found["simplejpeg-fast"] = simplejpeg_decoder(fast=True)
    if importlib.util.find_spec("pyvips"):
        found["pyvips"] = pyvips_decode
    if importlib.util.find_spec("torchvision"):
        import torch

        torch.set_num_threads(1)
        found["torchvision"] = torchvision_decode
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1920x1080", "4000x3000"], help="photo sizes WxH")
    parser.add_argument("--quality", type=int, nargs="+", default=[85])
    parser.add_argument("--images", type=int, default=6, help="photos per size and quality")
    parser.add_argument("--runs", type=int, default=7, help="timed decodes per photo (median)")
    args = parser.parse_args(argv)
    malloc = "tuned" if tune_malloc() else "glibc default"
    print(f"# {hardware_line()}; 1 thread; malloc {malloc}")
    processor = SwiftFormerImageProcessor()
    decoders = candidates()
    print("size       q   " + "".join(f"{name:>17}" for name in decoders) + "   max|Δ| vs pillow-draft")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        target = processor.resize_target(width, height)
        assert target is not None
        want = (target[0] * DRAFT_MARGIN, target[1] * DRAFT_MARGIN)
        for quality in args.quality:
            files = [jpeg(photo(width, height, seed), quality) for seed in range(args.images)]
            times: dict[str, list[float]] = {name: [] for name in decoders}
            worst: dict[str, float] = {}
            for data in files:
                reference = pillow_draft(data, want)
                for name, decode in decoders.items():
                    ms = median_ms(lambda d=decode, b=data, w=want: d(b, w), args.runs, warmup=1)
                    assert ms is not None
                    times[name].append(ms)
                    pixels = decode(data, want)
                    if pixels.shape == reference.shape:
                        diff = np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).max()
                        worst[name] = max(worst.get(name, 0), float(diff))
            cells = "".join(f"{np.median(t):>14.2f} ms" for t in times.values())
            diffs = ", ".join(f"{n} {d:.0f}" for n, d in worst.items() if n not in ("pillow-draft",))
            print(f"{size:<10} {quality:<3} {cells}   {diffs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
