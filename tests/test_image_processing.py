"""The image processor: parity with transformers' PIL processors, golden fixture, config files, inputs, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swiftformer.errors import CheckpointError
from swiftformer.image_processing import BatchFeature, SwiftFormerImageProcessor, load_image

FIXTURE = Path(__file__).parent / "fixtures" / "image_processing.npz"
SRC = Path(__file__).resolve().parents[1] / "src"
HALF = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}  # transformers' ViT/DeiT/ConvNeXt class defaults
HUB_CONFIG = {  # https://huggingface.co/MBZUAI/swiftformer-xs/blob/main/preprocessor_config.json
    "do_normalize": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "size": 224,
}


def random_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 0 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def pixels(processor: SwiftFormerImageProcessor, images) -> np.ndarray:
    return processor(images)["pixel_values"]


# ------------------------------------------------------------------------------------------------
# Golden fixture (made from transformers by scripts/make_image_processing_fixture.py): no reference needed
# ------------------------------------------------------------------------------------------------


def test_golden_fixture():
    data = np.load(FIXTURE)
    configs = json.loads(str(data["configs"]))
    assert set(configs) == {"hub_default", "convnext", "deit"}
    for name, config in configs.items():
        out = pixels(SwiftFormerImageProcessor.from_dict(config), data["image"])
        assert out.dtype == np.float32 and out.shape == data[name].shape, name
        np.testing.assert_allclose(out, data[name], atol=1e-6, err_msg=name)
        # Same operations in the same float types (PIL's integer resize, float64 rescale, float32
        # normalize) give the same bits; a cheaper float32 rescale would be off by one ulp here and there.
        np.testing.assert_array_equal(out, data[name], err_msg=name)


def test_defaults_are_the_hub_config():
    default = SwiftFormerImageProcessor()
    assert default == SwiftFormerImageProcessor.from_dict(HUB_CONFIG)
    assert default.size == {"height": 224, "width": 224} and default.resample == 2  # ViT: bilinear warp
    assert default.crop_pct is None and not default.do_center_crop
    assert default.image_mean == [0.485, 0.456, 0.406] and default.image_std == [0.229, 0.224, 0.225]
    assert pixels(default, random_image(47, 61)).shape == (1, 3, 224, 224)


# ------------------------------------------------------------------------------------------------
# Parity with transformers' PIL image processors
# ------------------------------------------------------------------------------------------------

# (transformers class, its kwargs, our kwargs)
PARITY_CASES = {
    "convnext_224_bicubic": (
        "ConvNextImageProcessorPil",
        {"size": {"shortest_edge": 224}},
        {"size": {"shortest_edge": 224}, "crop_pct": 224 / 256, "resample": 3, **HALF},
    ),
    "convnext_odd_bilinear": (
        "ConvNextImageProcessorPil",
        {"size": {"shortest_edge": 33}, "crop_pct": 0.7, "resample": 2},
        {"size": {"shortest_edge": 33}, "crop_pct": 0.7, "resample": 2, **HALF},
    ),
    "convnext_383_crop": (
        "ConvNextImageProcessorPil",
        {"size": {"shortest_edge": 383}, "crop_pct": 0.95},
        {"size": {"shortest_edge": 383}, "crop_pct": 0.95, "resample": 3, **HALF},
    ),
    "convnext_384_warp": (
        "ConvNextImageProcessorPil",
        {"size": {"shortest_edge": 384}, "crop_pct": 0.95},
        {"size": {"shortest_edge": 384}, "crop_pct": 0.95, "resample": 3, **HALF},
    ),
    "convnext_crop_after": (
        "ConvNextImageProcessorPil",
        {
            "size": {"shortest_edge": 31},
            "crop_pct": 0.8,
            "do_center_crop": True,
            "crop_size": {"height": 35, "width": 20},
        },
        {
            "size": {"shortest_edge": 31},
            "crop_pct": 0.8,
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": 35, "width": 20},
            **HALF,
        },
    ),
    "vit_hw_bilinear": (
        "ViTImageProcessorPil",
        {**HUB_CONFIG, "size": {"height": 30, "width": 45}},
        {"size": {"height": 30, "width": 45}},
    ),
    "vit_hw_bicubic": (
        "ViTImageProcessorPil",
        {"size": {"height": 29, "width": 52}, "resample": 3},
        {"size": {"height": 29, "width": 52}, "resample": 3, **HALF},
    ),
    "deit_odd_crop": (
        "DeiTImageProcessorPil",
        {"size": {"height": 41, "width": 37}, "crop_size": {"height": 29, "width": 30}},
        {
            "size": {"height": 41, "width": 37},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": 29, "width": 30},
            **HALF,
        },
    ),
    "deit_crop_pads": (
        "DeiTImageProcessorPil",  # the crop is larger than the image: zero padding
        {"size": {"height": 20, "width": 21}, "crop_size": {"height": 25, "width": 24}, "resample": 2},
        {
            "size": {"height": 20, "width": 21},
            "resample": 2,
            "do_center_crop": True,
            "crop_size": {"height": 25, "width": 24},
            **HALF,
        },
    ),
    "vit_shortest_edge": (
        "ViTImageProcessorPil",
        {"size": {"shortest_edge": 50}},
        {"size": {"shortest_edge": 50}, **HALF},
    ),
}
IMAGE_SHAPES = [(47, 61), (61, 47), (33, 33), (5, 120)]


def transformers_processor(class_name: str, kwargs: dict):
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, class_name)(**kwargs)


@pytest.mark.parametrize("case", PARITY_CASES)
def test_parity_with_transformers(case):
    class_name, their_kwargs, our_kwargs = PARITY_CASES[case]
    theirs = transformers_processor(class_name, their_kwargs)
    ours = SwiftFormerImageProcessor(**our_kwargs)
    # Their saved config describes the same processor.
    assert SwiftFormerImageProcessor.from_dict(theirs.to_dict()) == ours
    for seed, (height, width) in enumerate(IMAGE_SHAPES):
        image = random_image(height, width, seed=seed)
        expected = theirs(image, return_tensors="np")["pixel_values"]
        out = pixels(ours, image)
        assert out.shape == expected.shape, (case, height, width)
        np.testing.assert_allclose(out, expected, atol=1e-6, err_msg=f"{case} {height}x{width}")


def test_parity_on_png_file(tmp_path):
    theirs = transformers_processor("ConvNextImageProcessorPil", {"size": {"shortest_edge": 64}})
    ours = SwiftFormerImageProcessor(size={"shortest_edge": 64}, crop_pct=224 / 256, resample=3, **HALF)
    path = tmp_path / "photo.png"
    Image.fromarray(random_image(45, 70, seed=3)).save(path)
    expected = theirs(str(path), return_tensors="np")["pixel_values"]  # transformers opens the path itself
    np.testing.assert_allclose(pixels(ours, str(path)), expected, atol=1e-6)
    np.testing.assert_allclose(pixels(ours, Image.open(path)), expected, atol=1e-6)


def test_parity_with_exif_orientation(tmp_path):
    # transformers' load_image applies the EXIF orientation to files it opens; so do we.
    theirs = transformers_processor("ViTImageProcessorPil", {"size": {"height": 24, "width": 16}})
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(random_image(12, 20, seed=4)).save(path, exif=exif)
    assert load_image(path).size == (12, 20)  # (width, height): turned upright
    expected = theirs(str(path), return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixels(SwiftFormerImageProcessor(size=(24, 16), **HALF), path), expected, atol=1e-6)


def test_hub_config_reads_like_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "swiftformer"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(HUB_CONFIG))
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    ours = SwiftFormerImageProcessor.from_pretrained(tmp_path)
    assert ours == SwiftFormerImageProcessor()
    image = random_image(50, 37, seed=5)
    np.testing.assert_allclose(pixels(ours, image), theirs(image, return_tensors="np")["pixel_values"], atol=1e-6)


@pytest.mark.parametrize("case", ["convnext_odd_bilinear", "deit_odd_crop", "vit_hw_bicubic", "vit_shortest_edge"])
def test_loads_transformers_saved_folder(tmp_path, case):
    class_name, their_kwargs, _ = PARITY_CASES[case]
    theirs = transformers_processor(class_name, their_kwargs)
    theirs.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing in a transformers-saved file is unknown to us
        ours = SwiftFormerImageProcessor.from_pretrained(tmp_path)
    image = random_image(40, 29, seed=6)
    np.testing.assert_allclose(pixels(ours, image), theirs(image, return_tensors="np")["pixel_values"], atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 64}},
        {"image_processor_type": "DeiTImageProcessor", "size": 48, "crop_size": 40},
        {"feature_extractor_type": "ViTFeatureExtractor", "size": 40, "do_rescale": None},
        {"image_processor_type": "ConvNextImageProcessorFast", "size": 100, "resample": "PILImageResampling.BILINEAR"},
        {"image_processor_type": "DeiTImageProcessor", "do_center_crop": None},
    ],
    ids=[
        "convnext_no_crop_pct",
        "deit_int_sizes",
        "vit_feature_extractor_null_rescale",
        "convnext_int_size_named_resample",
        "deit_nulls",
    ],
)
def test_sparse_configs_take_transformers_class_defaults(tmp_path, config):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    ours = SwiftFormerImageProcessor.from_pretrained(tmp_path)
    image = random_image(45, 52, seed=7)
    expected = theirs(image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixels(ours, image), expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Saving and loading
# ------------------------------------------------------------------------------------------------

SAVE_CASES = {
    "default": {},
    "convnext": PARITY_CASES["convnext_crop_after"][2],
    "deit": PARITY_CASES["deit_odd_crop"][2],
    "shortest_edge": {"size": {"shortest_edge": 50}, "resample": "bicubic", "do_normalize": False},
}


@pytest.mark.parametrize("case", SAVE_CASES)
def test_save_and_load_round_trip(tmp_path, case):
    processor = SwiftFormerImageProcessor(**SAVE_CASES[case])
    path = processor.save_pretrained(tmp_path / "saved")
    assert path == tmp_path / "saved" / "preprocessor_config.json"
    saved = json.loads(path.read_text())
    assert saved == processor.to_dict() == json.loads(processor.to_json_string())
    expected_type = {"convnext": "ConvNext", "deit": "DeiT"}.get(case, "ViT") + "ImageProcessor"
    assert saved["image_processor_type"] == expected_type
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = SwiftFormerImageProcessor.from_pretrained(tmp_path / "saved")
    assert loaded == processor and repr(loaded) == repr(processor)
    assert repr(processor).startswith("SwiftFormerImageProcessor {")
    image = random_image(33, 47, seed=8)
    np.testing.assert_array_equal(pixels(loaded, image), pixels(processor, image))


@pytest.mark.parametrize("case", SAVE_CASES)
def test_transformers_reads_our_folder(tmp_path, case):
    transformers = pytest.importorskip("transformers")
    processor = SwiftFormerImageProcessor(**SAVE_CASES[case])
    processor.save_pretrained(tmp_path)
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    image = random_image(33, 47, seed=9)
    expected = theirs(image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixels(processor, image), expected, atol=1e-6)


def test_config_key_handling():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' bookkeeping keys pass silently
        processor = SwiftFormerImageProcessor.from_dict(
            {
                "image_processor_type": "ViTImageProcessor",
                "processor_class": "ViTProcessor",
                "feature_extractor_type": "ViTFeatureExtractor",
                "do_convert_rgb": True,
                "size": 64,
            }
        )
    assert processor.size == {"height": 64, "width": 64}
    with pytest.warns(UserWarning, match="frobnicate"):
        SwiftFormerImageProcessor.from_dict({"frobnicate": 1})
    with pytest.warns(UserWarning, match="crop_pct"):  # only ConvNeXt configs use crop_pct
        assert SwiftFormerImageProcessor.from_dict({"crop_pct": 0.9}).crop_pct is None
    assert SwiftFormerImageProcessor.from_dict({"size": 64, "default_to_square": False}).size == {"shortest_edge": 64}
    assert SwiftFormerImageProcessor(size=64, crop_pct=0.9).size == {"shortest_edge": 64}
    assert SwiftFormerImageProcessor(size=[30, 40]).size == {"height": 30, "width": 40}
    assert SwiftFormerImageProcessor(resample="BICUBIC").resample == 3
    assert SwiftFormerImageProcessor(resample=Image.Resampling.LANCZOS).resample == 1


def test_corrupt_or_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json"):
        SwiftFormerImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text('{"size": 22')
    with pytest.raises(CheckpointError, match=r"preprocessor_config\.json"):
        SwiftFormerImageProcessor.from_pretrained(tmp_path)
    with pytest.raises(NotADirectoryError, match="is a file"):
        SwiftFormerImageProcessor().save_pretrained(tmp_path / "preprocessor_config.json")


# ------------------------------------------------------------------------------------------------
# Input kinds
# ------------------------------------------------------------------------------------------------


def test_input_kinds_agree(tmp_path):
    torch = pytest.importorskip("torch")
    processor = SwiftFormerImageProcessor(size={"shortest_edge": 40}, crop_pct=0.875)
    hwc = random_image(23, 31, seed=10)
    path = tmp_path / "image.png"
    Image.fromarray(hwc).save(path)
    reference = pixels(processor, Image.fromarray(hwc))
    assert reference.shape == (1, 3, 40, 40) and reference.dtype == np.float32
    inputs = {
        "uint8 HWC": hwc,
        "uint8 CHW": hwc.transpose(2, 0, 1).copy(),
        "tensor CHW": torch.from_numpy(hwc.transpose(2, 0, 1).copy()),
        "tensor HWC": torch.from_numpy(hwc),
        "float tensor 0-1": torch.from_numpy(hwc.transpose(2, 0, 1) / 255.0),
        "path str": str(path),
        "Path": path,
        "float 0-255": hwc.astype(np.float32),
        "float 0-1": hwc / 255.0,
    }
    for name, image in inputs.items():
        np.testing.assert_array_equal(pixels(processor, image), reference, err_msg=name)
    batch = pixels(processor, [hwc, Image.fromarray(hwc), path])
    assert batch.shape == (3, 3, 40, 40)
    np.testing.assert_array_equal(batch, np.concatenate([reference] * 3))
    np.testing.assert_array_equal(pixels(processor, (hwc, hwc)), np.concatenate([reference] * 2))
    np.testing.assert_array_equal(pixels(processor, np.stack([hwc, hwc])), np.concatenate([reference] * 2))
    np.testing.assert_array_equal(
        pixels(processor, torch.from_numpy(np.stack([hwc] * 2)).permute(0, 3, 1, 2)), np.concatenate([reference] * 2)
    )


def test_grayscale_and_rgba():
    processor = SwiftFormerImageProcessor(size=(20, 26))
    gray = random_image(17, 29, channels=0, seed=11)
    as_rgb = pixels(processor, np.repeat(gray[:, :, None], 3, axis=2))
    for image in (gray, gray[:, :, None], gray[None], Image.fromarray(gray)):
        out = pixels(processor, image)
        assert out.shape == (1, 3, 20, 26)
        np.testing.assert_array_equal(out, as_rgb)
    rgba = random_image(17, 29, channels=4, seed=12)
    rgb = pixels(processor, rgba[:, :, :3].copy())
    for image in (rgba, rgba.transpose(2, 0, 1), Image.fromarray(rgba)):
        np.testing.assert_array_equal(pixels(processor, image), rgb)  # alpha is dropped, as transformers does


def test_16_bit_and_float_pil_images_are_scaled_not_clipped(tmp_path):
    processor = SwiftFormerImageProcessor(size=(20, 26))
    gray = random_image(17, 29, channels=0, seed=14)
    expected = pixels(processor, gray)
    wide = gray.astype(np.uint16) * 257  # the same picture in 16-bit levels
    Image.fromarray(wide).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    for image in (tmp_path / "gray16.png", Image.open(tmp_path / "gray16.png"), Image.fromarray(wide.astype(np.int32))):
        np.testing.assert_array_equal(pixels(processor, image), expected)  # convert("RGB") alone: ~all white
    as_float = Image.fromarray(gray.astype(np.float32) / 255)  # mode F, fractions
    np.testing.assert_array_equal(pixels(processor, as_float), expected)
    with pytest.raises(ValueError, match="range over"):
        processor(Image.fromarray(np.full((4, 4), 3.5, np.float32)))


def test_float_arrays():
    processor = SwiftFormerImageProcessor()
    image = random_image(12, 9, seed=13)
    out = pixels(processor, image.astype(np.float64) / 255)
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pixels(processor, image))
    with pytest.raises(ValueError, match=r"range over \[-1.0, 2.0\]"):
        processor(np.array([[-1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\[0.5, 200.5\]"):
        processor(np.full((4, 4, 3), 0.5) + np.eye(4)[:, :, None] * 200)
    with pytest.raises(ValueError, match="NaN"):
        processor(np.full((4, 4), np.nan))


def test_return_types():
    torch = pytest.importorskip("torch")
    processor = SwiftFormerImageProcessor(size=(16, 16))
    image = random_image(10, 10)
    out = processor(image, return_tensors="pt")
    assert isinstance(out, BatchFeature) and isinstance(out, dict)
    assert isinstance(out.pixel_values, torch.Tensor) and out.pixel_values.dtype == torch.float32
    assert tuple(out["pixel_values"].shape) == (1, 3, 16, 16)
    as_np = processor.preprocess(image, return_tensors="np")
    np.testing.assert_array_equal(out.pixel_values.numpy(), as_np.pixel_values)
    assert isinstance(processor(image)["pixel_values"], np.ndarray)
    assert (lambda pixel_values: pixel_values)(**out) is out.pixel_values
    with pytest.raises(AttributeError):
        out.labels  # noqa: B018


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_unreadable_files(tmp_path):
    processor = SwiftFormerImageProcessor()
    with pytest.raises(OSError, match=r"cannot read image '.*missing\.jpg': no such file"):
        processor(str(tmp_path / "missing.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00garbage, not a JPEG" * 10)
    with pytest.raises(OSError, match=r"cannot read image '.*bad\.jpg'"):
        processor(bad)
    with pytest.raises(OSError, match=r"cannot read image '.*bad\.jpg'"):
        load_image(bad)


@pytest.mark.parametrize(
    "images, error, match",
    [
        (np.zeros((8, 8, 5), np.uint8), ValueError, r"shape \(8, 8, 5\)"),
        (np.zeros((2, 3, 8, 8, 3), np.uint8), ValueError, r"shape \(2, 3, 8, 8, 3\)"),
        ([np.zeros((1, 8, 8, 3), np.uint8)], ValueError, r"shape \(1, 8, 8, 3\)"),
        (np.zeros((8,), np.uint8), ValueError, r"shape \(8,\)"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
        ([], ValueError, "empty list"),
        (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "empty batch"),
        (42, TypeError, "unsupported image type int"),
        ([{"image": 1}], TypeError, "unsupported image type dict"),
        ([[np.zeros((8, 8, 3), np.uint8)]], TypeError, "unsupported image type list"),
        (np.zeros((8, 8, 3), np.int64) + 300, ValueError, r"range over \[300, 300\]"),
        (np.zeros((8, 8, 3), np.complex64), TypeError, "dtype complex64"),
    ],
    ids=[
        "5_channels",
        "5d",
        "4d_in_list",
        "1d",
        "empty_image",
        "empty_list",
        "empty_batch",
        "int",
        "dict",
        "nested_list",
        "int_out_of_range",
        "complex",
    ],
)
def test_bad_inputs(images, error, match):
    with pytest.raises(error, match=match):
        SwiftFormerImageProcessor()(images)


def test_bad_call_arguments():
    processor = SwiftFormerImageProcessor(size={"shortest_edge": 20})
    with pytest.raises(ValueError, match="return_tensors must be"):
        processor(random_image(8, 8), return_tensors="tf")
    assert pixels(processor, random_image(10, 30)).shape == (1, 3, 20, 60)  # one image: fine
    with pytest.raises(ValueError, match="different sizes"):
        processor([random_image(10, 30), random_image(10, 10)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": {"height": -1, "width": 5}}, r"size\['height'\] must be a positive integer, got -1"),
        ({"size": {"height": 5}}, r"size must be .*got \{'height': 5\}"),
        ({"size": {"shortest_edge": 0}}, r"size\['shortest_edge'\] must be a positive integer, got 0"),
        ({"size": 2.5}, "size must be"),
        ({"crop_pct": 0}, "crop_pct must be a positive number, got 0"),
        ({"crop_pct": 1.5, "size": 64}, r"crop_pct must be in \(0, 1\], got 1.5"),
        ({"crop_pct": 0.9}, "crop_pct needs size"),
        ({"image_mean": [0.5, 0.5]}, r"image_mean must hold 3 finite numbers .*\[0.5, 0.5\]"),
        ({"image_std": [0.2, 0.0, 0.2]}, r"image_std must be positive .*\[0.2, 0.0, 0.2\]"),
        ({"image_std": "abc"}, "image_std must hold 3"),
        ({"resample": 7}, "resample must be .* got 7"),
        ({"resample": "cubic"}, "resample must be .* got 'cubic'"),
        ({"do_center_crop": True}, "do_center_crop=True needs crop_size"),
        ({"do_center_crop": True, "crop_size": {"shortest_edge": 3}}, "crop_size must be"),
        ({"rescale_factor": -1}, "rescale_factor must be a positive number, got -1"),
        ({"do_resize": "yes"}, "do_resize must be true or false, got 'yes'"),
    ],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SwiftFormerImageProcessor(**kwargs)
    if "crop_pct" not in kwargs:  # (from_dict drops crop_pct from non-ConvNeXt configs)
        with pytest.raises(ValueError, match=match):  # the same checks apply to loaded configs
            SwiftFormerImageProcessor.from_dict(kwargs)


# ------------------------------------------------------------------------------------------------
# Import cost
# ------------------------------------------------------------------------------------------------


def _run_python(code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_module_does_not_import_torch():
    # The submodule on its own: a stand-in package object keeps swiftformer/__init__.py (another
    # module's business) out of the picture, so only image_processing.py and hub.py are imported.
    _run_python(
        "import sys, types\n"
        f"package = types.ModuleType('swiftformer'); package.__path__ = [{str(SRC / 'swiftformer')!r}]\n"
        "sys.modules['swiftformer'] = package\n"
        "import swiftformer.image_processing\n"
        "assert 'torch' not in sys.modules, 'image_processing imported torch'\n"
    )


def test_package_import_path_does_not_import_torch():
    # Through the real package, as users import it (its __init__ loads submodules lazily).
    _run_python(
        "import sys\n"
        "from swiftformer.image_processing import SwiftFormerImageProcessor\n"
        "import numpy as np\n"
        "SwiftFormerImageProcessor()(np.zeros((8, 8, 3), np.uint8))\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )


# ------------------------------------------------------------------------------------------------ fast decoding
# The bound docs/preprocessing.md ("Fast decoding") states for the resized pixels of photos, in levels (0..255).
FAST_MEAN_BOUND, FAST_MAX_BOUND = 0.5, 16


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth multi-scale colour noise, a hard-edged shape and sensor noise: what a camera photo's JPEG
    looks like to a decoder (flat colours would decode alike at any scale)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((height, width, 3), np.float32)
    for cells, amplitude in ((4, 50.0), (16, 25.0), (64, 12.0)):
        small = rng.normal(size=(cells * height // width + 1, cells, 3)).astype(np.float32)
        for c in range(3):
            layer = Image.fromarray(small[:, :, c], mode="F").resize((width, height), Image.Resampling.BICUBIC)
            base[:, :, c] += amplitude * np.asarray(layer)
    image = Image.fromarray(np.clip(base + 128, 0, 255).astype(np.uint8))
    Image.Image.paste(image, (230, 40, 40), (width // 4, height // 3, width // 2, height // 2))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 3.0, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    photo_like(2401, 1801).save(path, quality=90)  # odd sizes: the scaled decode rounds up
    return path


def levels(processor: SwiftFormerImageProcessor) -> SwiftFormerImageProcessor:
    """The same resize and crop without rescale/normalize: outputs are the uint8 levels, as float32."""
    return SwiftFormerImageProcessor.from_dict({**processor.to_dict(), "do_rescale": False, "do_normalize": False})


FAST_CASES = {
    "vit": {},
    "shortest_edge": {"size": {"shortest_edge": 224}},
    "convnext_crop": {"size": 224, "crop_pct": 0.875, "resample": 3},
    "deit_crop": {"size": 256, "do_center_crop": True, "crop_size": 224, "resample": 3},
}


@pytest.mark.parametrize("case", FAST_CASES, ids=list(FAST_CASES))
def test_fast_decode_agrees_with_exact(photo_jpeg, case):
    from swiftformer.image_processing import DRAFT_INFO

    processor = SwiftFormerImageProcessor(**FAST_CASES[case])
    drafted = load_image(photo_jpeg, draft=processor)
    target = processor.resize_target(2401, 1801)
    assert drafted.size[0] < 2401 and drafted.size[0] >= target[0] and drafted.size[1] >= target[1]
    assert drafted.info[DRAFT_INFO][:2] == (2401, 1801)
    exact, fast = pixels(levels(processor), photo_jpeg), pixels(levels(processor), drafted)
    assert fast.shape == exact.shape  # the output size follows the full image, not the decoded one
    difference = np.abs(fast - exact)
    assert difference.mean() <= FAST_MEAN_BOUND and difference.max() <= FAST_MAX_BOUND, (
        difference.mean(),
        difference.max(),
    )


def test_fast_decode_same_top1_as_exact(tmp_path):
    import torch

    from _helpers import tiny_classifier

    model, processor = tiny_classifier(), SwiftFormerImageProcessor(size=64)
    files = []
    for seed in range(4):
        files.append(tmp_path / f"{seed}.jpg")
        photo_like(800, 600, seed).save(files[-1], quality=85)
    exact = torch.from_numpy(pixels(processor, files))
    fast = torch.from_numpy(pixels(processor, [load_image(f, draft=processor) for f in files]))
    assert not torch.equal(exact, fast)  # it did decode differently
    with torch.inference_mode():
        assert torch.equal(model(exact).logits.argmax(-1), model(fast).logits.argmax(-1))


def test_fast_decode_swaps_the_target_of_an_exif_rotated_photo(tmp_path):
    # Stored 4800x1600, shown 1600x4800 (orientation 6: 90°); the model warps to 150 wide, 50 high. Drafted for
    # the unswapped target, the decode would be 1/8 scale, 200 wide once upright: less than DRAFT_MARGIN x 150.
    from swiftformer.image_processing import DRAFT_INFO, DRAFT_MARGIN

    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    photo_like(4800, 1600).save(path, exif=exif, quality=90)
    processor = SwiftFormerImageProcessor(size={"height": 50, "width": 150})
    drafted, exact_image = load_image(path, draft=processor), load_image(path)
    assert exact_image.size == (1600, 4800)
    width, height, scale = drafted.info[DRAFT_INFO]
    assert (width, height) == (1600, 4800) and scale > 1 and drafted.size == (1600 // scale, 4800 // scale)
    assert drafted.size[0] >= DRAFT_MARGIN * 150 and drafted.size[1] >= DRAFT_MARGIN * 50
    difference = np.abs(pixels(levels(processor), drafted) - pixels(levels(processor), exact_image))
    assert difference.mean() <= FAST_MEAN_BOUND and difference.max() <= FAST_MAX_BOUND


def test_fast_decode_leaves_other_formats_and_small_jpegs_exact(tmp_path):
    from swiftformer.image_processing import DRAFT_INFO

    processor = SwiftFormerImageProcessor()
    photo = photo_like(1200, 900)
    for name in ("photo.png", "photo.webp", "small.jpg"):
        (photo.resize((300, 225)) if name == "small.jpg" else photo).save(tmp_path / name)
        drafted, exact = load_image(tmp_path / name, draft=processor), load_image(tmp_path / name)
        assert drafted.info[DRAFT_INFO] == (*exact.size, 1) and drafted.size == exact.size  # at full scale
        assert np.array_equal(pixels(processor, drafted), pixels(processor, tmp_path / name)), name
    # a drafted image cropped afterwards no longer stands for the full photo: resized as it is
    photo.save(tmp_path / "photo.jpg")
    cropped = load_image(tmp_path / "photo.jpg", draft=processor).crop((0, 0, 200, 100))
    assert np.array_equal(pixels(processor, cropped), pixels(processor, Image.fromarray(np.asarray(cropped))))


@pytest.mark.parametrize("case", ["shortest_edge_crop", "convnext_crop", "deit_crop", "convnext_then_crop"])
def test_fast_decode_resizes_only_what_the_crop_keeps(tmp_path, monkeypatch, case):
    # A PNG (decoded fully either way) isolates the resize: only the kept window is resized, straight to its size
    import swiftformer.image_processing as image_processing

    processor = SwiftFormerImageProcessor(
        **{
            "shortest_edge_crop": {"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": 224},
            "convnext_crop": {"size": 224, "crop_pct": 0.875, "resample": 3},
            "deit_crop": {"size": 256, "do_center_crop": True, "crop_size": 224, "resample": 3},
            "convnext_then_crop": {"size": 224, "crop_pct": 0.875, "do_center_crop": True, "crop_size": 200},
        }[case]
    )
    path = tmp_path / "photo.png"
    photo_like(1919, 1077).save(path)
    resized_to = []
    resize = image_processing._pil_resize
    monkeypatch.setattr(
        image_processing, "_pil_resize", lambda image, h, w, *a: resized_to.append((h, w)) or resize(image, h, w, *a)
    )
    exact = pixels(levels(processor), path)
    fast = pixels(levels(processor), load_image(path, draft=processor))
    final = (processor.crop_size or {"height": 224})["height"]
    assert resized_to[0] != (final, final) and resized_to[1] == (final, final)  # exact: whole; fast: the window
    assert fast.shape == exact.shape
    difference = np.abs(fast - exact)
    # the filter positions from another origin: a level in a few pixels, never more
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (difference.max(), (difference > 0).mean())


def test_fast_decode_of_an_uncropped_resize_is_exact_at_full_scale(tmp_path):
    processor = SwiftFormerImageProcessor(size={"shortest_edge": 100}, resample=3)  # nothing cropped
    path = tmp_path / "photo.png"
    photo_like(640, 480).save(path)
    assert np.array_equal(pixels(processor, load_image(path, draft=processor)), pixels(processor, path))
