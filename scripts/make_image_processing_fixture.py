"""Regenerate tests/fixtures/image_processing.npz from transformers' PIL image processors (the reference).

The fixture holds one deterministic 61×47 RGB image, the ``preprocessor_config.json`` dicts of a few
cases (as a JSON string), and transformers' ``pixel_values`` for each, so that
tests/test_image_processing.py checks the maths where transformers is not installed.

Cases:
* ``hub_default``: the hub's MBZUAI/swiftformer-xs config, read the way transformers reads it
  (AutoImageProcessor, PIL backend, from a folder whose config.json says model_type "swiftformer");
  these are also SwiftFormerImageProcessor's defaults.
* ``convnext``: ConvNeXt shortest_edge + crop_pct (resize to int(40 / 0.9) = 44, center crop 40).
* ``deit``: DeiT warp to 41×37 then an odd center crop 29×31, bicubic.

The image is made of 4×4 random-colour blocks, so the 224×224 expected output compresses to
about 50 kB while block edges still exercise interpolation. Run: ``python scripts/make_image_processing_fixture.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from transformers import AutoImageProcessor, ConvNextImageProcessorPil, DeiTImageProcessorPil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "image_processing.npz"

# preprocessor_config.json of https://huggingface.co/MBZUAI/swiftformer-xs (175 bytes, no processor type).
HUB_CONFIG = {
    "do_normalize": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "size": 224,
}


def make_image() -> np.ndarray:
    """(47, 61, 3) uint8: 4×4 blocks of random colours, cut to a size that is not a multiple of 4."""
    rng = np.random.default_rng(61)
    blocks = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)[:47, :61].copy()


def hub_default_processor():
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps({"model_type": "swiftformer"}))
        (Path(folder) / "preprocessor_config.json").write_text(json.dumps(HUB_CONFIG))
        processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    assert type(processor).__name__ == "ViTImageProcessorPil", type(processor)
    return processor


def main() -> None:
    image = make_image()
    cases = {
        "hub_default": (HUB_CONFIG, hub_default_processor()),
        "convnext": (None, ConvNextImageProcessorPil(size={"shortest_edge": 40}, crop_pct=0.9)),
        "deit": (None, DeiTImageProcessorPil(size={"height": 41, "width": 37}, crop_size={"height": 29, "width": 31})),
    }
    configs, arrays = {}, {"image": image}
    for name, (config, processor) in cases.items():
        configs[name] = config if config is not None else processor.to_dict()
        arrays[name] = processor(image, return_tensors="np")["pixel_values"].astype(np.float32)
        print(f"{name}: {arrays[name].shape} from {type(processor).__name__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, configs=np.array(json.dumps(configs, sort_keys=True)), **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    # no options: parsing still answers --help instead of regenerating the fixtures
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
