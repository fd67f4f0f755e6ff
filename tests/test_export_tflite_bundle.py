"""TFLite bundles (swiftformer/export/tflite_bundle.py, keras.convert_tflite_bundle): uint8 RGB images in, probabilities
out, TFLite Metadata and labels.txt inside; loaded by MediaPipe Tasks' ImageClassifier as an app would.

Tolerances on the probabilities, absolute: fp32 1e-5 (measured 1.0e-6 in LiteRT and 8.3e-7 in MediaPipe on the
perturbed 64x64 model), fp16 1e-2 (measured 4.3e-3 and 7.6e-4), int8 5e-2 on a trained model (measured 8.4e-3 in
LiteRT, 2.6e-3 in MediaPipe; the output is quantized in steps of 1/256). int8 is judged on that trained model, whose
predictions are decisive (random weights make near-ties): top-1 agreement with the eager model on 200 held-out
images at least 99 % (measured 100 %). Perturbed weights are no test of int8: their logits spread so far that the
probabilities differ by up to 0.4 at the same top-1.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # before TensorFlow (mediapipe imports it): importing triton after TensorFlow segfaults
from PIL import Image

from _helpers import make_images, make_model_dir
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerImageProcessor
from swiftformer.cli import main
from swiftformer.export import export
from swiftformer.export.formats import REDUCED_TOLERANCE
from swiftformer.image_processing import load_processor
from swiftformer.inference import load_model

SIZE = 64
LABELS10 = dict(enumerate(["apple", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"]))
PROB_TOL = {"fp32": 1e-5, "fp16": 1e-2, "int8": 5e-2}

for module in ("tensorflow", "ai_edge_litert", "mediapipe"):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"not installed: {module}", allow_module_level=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tfl") / "model", SIZE, id2label=LABELS10, image_size=SIZE)


@pytest.fixture(scope="module")
def bundles(model_dir, tmp_path_factory) -> dict:
    """The perturbed model's fp32 and fp16 bundles, exported lazily, once each: {precision: (path, report)}."""
    return {"_root": tmp_path_factory.mktemp("bundles")}


def bundle(bundles: dict, model_dir: Path, precision: str):
    if precision not in bundles:
        model = load_model(str(model_dir))
        processor, _ = load_processor(model_dir)
        path = bundles["_root"] / precision / "swiftformer.tflite"
        report = export(
            model, path, "tflite", precision=precision, bundle=True, image_processor=processor, latency_runs=0
        )
        bundles[precision] = path, report
    return bundles[precision]


def eager_probabilities(model: SwiftFormerForImageClassification, processor, images: np.ndarray) -> torch.Tensor:
    """The eager model's softmax on the processor's preprocessing of the same pixels (already at its size)."""
    with torch.no_grad():
        return model(processor(list(images), return_tensors="pt")["pixel_values"]).logits.softmax(-1)


def mediapipe_top5(path: Path, files: list[Path]) -> tuple[list[list[tuple[str, float]]], np.ndarray]:
    """MediaPipe's ImageClassifier on image files it decodes itself: per file its top-5 (name, score), and the
    decoded pixels (N, H, W, 3) uint8."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=5)
    results, pixels = [], []
    with ImageClassifier.create_from_options(options) as classifier:
        for file in files:
            image = mp.Image.create_from_file(str(file))
            pixels.append(np.array(image.numpy_view()))
            categories = classifier.classify(image).classifications[0].categories
            results.append([(c.category_name, c.score) for c in categories])
    return results, np.stack(pixels)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_mediapipe_classifies_png_and_jpeg_like_the_eager_model(precision, model_dir, bundles, tmp_path):
    path, report = bundle(bundles, model_dir, precision)
    assert report.passed and report.bundle and report.input_shape == [1, SIZE, SIZE, 3]
    assert report.max_abs_diff <= PROB_TOL[precision]
    # PNG and JPEG at the bundle size (MediaPipe resizes to the input itself: at the size it is the model alone).
    files = make_images(tmp_path, {"a.png": (SIZE, SIZE, 3), "b.jpg": (SIZE, SIZE, 3), "c.png": (SIZE, SIZE, 3)}, 7)
    top5, pixels = mediapipe_top5(path, files)
    assert pixels.shape == (3, SIZE, SIZE, 3) and pixels.dtype == np.uint8
    processor, _ = load_processor(model_dir)
    expected = eager_probabilities(load_model(str(model_dir)), processor, pixels)
    for got, probs in zip(top5, expected):
        scores, order = probs.topk(5)
        assert [name for name, _ in got] == [LABELS10[int(i)] for i in order]
        assert np.abs(np.array([score for _, score in got]) - scores.numpy()).max() <= PROB_TOL[precision]


def test_metadata_reads_back_with_every_field_and_labels_inside_and_beside(model_dir, bundles):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    from swiftformer.export.tflite_bundle import associated_files, read_metadata

    path, _ = bundle(bundles, model_dir, "fp32")
    data = path.read_bytes()
    meta = read_metadata(data)
    assert meta["name"] == "SwiftFormer image classifier" and meta["version"] == "1"
    assert meta["author"] == "unspecified" and meta["license"].startswith("unspecified")
    assert "raw pixels (the normalization is inside)" in meta["description"] and "(1, 64, 64, 3)" in meta["description"]
    assert meta["min_parser_version"] == "1.0.0"
    (image,) = meta["inputs"]
    assert image["name"] == "images" and image["content"] == schema.ContentProperties.ImageProperties
    assert image["color_space"] == schema.ColorSpaceType.RGB
    assert image["normalization"] == [{"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}]
    assert image["stats"] == {"min": [0.0], "max": [255.0]} and "normalizes them itself" in image["description"]
    (probabilities,) = meta["outputs"]
    assert probabilities["name"] == "probabilities" and probabilities["stats"] == {"min": [0.0], "max": [1.0]}
    (labels_file,) = probabilities["associated_files"]
    assert labels_file["name"] == "labels.txt" and labels_file["type"] == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    labels = "".join(f"{name}\n" for name in LABELS10.values())
    assert associated_files(data) == {"labels.txt": labels.encode()}
    assert zipfile.is_zipfile(path)  # the zip MediaPipe reads, after the flatbuffer
    # The tensors as LiteRT names them; labels.txt and manifest.json beside.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["name"] == "images"
    assert interpreter.get_output_details()[0]["name"] == "probabilities"
    assert sorted(p.name for p in path.parent.iterdir()) == ["labels.txt", "manifest.json", "swiftformer.tflite"]
    assert (path.parent / "labels.txt").read_text() == labels
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["format"] == "tflite" and manifest["artifact"] == "swiftformer.tflite"
    assert manifest["tflite_metadata"] == {
        "entry": "TFLITE_METADATA",
        "min_parser_version": "1.0.0",
        "associated_files": ["labels.txt"],
    }
    assert manifest["input"]["dtype"] == "uint8" and manifest["output"]["dtype"] == "float32"
    assert "Sub" in manifest["normalization"]["folded"] and manifest["author"] == "unspecified"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gpu_analyzer_finds_no_incompatible_op(precision, model_dir, bundles):
    from swiftformer.export.tflite_bundle import gpu_compatibility

    path, report = bundle(bundles, model_dir, precision)
    verdict = gpu_compatibility(path.read_bytes())
    assert verdict["compatible"] and verdict["incompatible_ops"] == []
    assert verdict["verdict"].startswith("Your model looks compatible with GPU delegate")
    assert json.loads((path.parent / "manifest.json").read_text())["gpu_compatibility"] == verdict
    assert any("GPU delegate" in note and "no incompatible op" in note for note in report.notes)


COLOURS = {0: "red", 1: "green", 2: "blue", 3: "grey"}


def colour_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 32, 32, 3) uint8, labels (n,)): noisy images whose mean colour is the class (:data:`COLOURS`),
    each with a 12x12 square of a random colour."""
    palette = np.array([[200, 40, 40], [40, 180, 60], [50, 60, 210], [128, 128, 128]], dtype=np.float32)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = palette[labels][:, None, None, :] + rng.normal(0, 40, (n, 32, 32, 3))
    for i in range(n):
        top, left = rng.integers(0, 20, 2)
        images[i, top : top + 12, left : left + 12] = rng.uniform(0, 255, 3)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def trained_colour_model() -> tuple[SwiftFormerForImageClassification, SwiftFormerImageProcessor]:
    """A tiny SwiftFormer trained on :func:`colour_images` (a few seconds): decisive predictions, unlike random weights."""
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], image_size=32, id2label=COLOURS)
    model = SwiftFormerForImageClassification(config).train()
    processor = SwiftFormerImageProcessor(size={"height": 32, "width": 32})
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(120):
        images, labels = colour_images(32, seed=100 + step)
        pixel_values = processor(list(images), return_tensors="pt")["pixel_values"]
        loss = model(pixel_values, labels=torch.from_numpy(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), processor


@pytest.fixture(scope="module")
def int8_colours(tmp_path_factory) -> dict:
    """The trained colour model's int8 bundle, calibrated on 64 images, verified on 200 held-out ones."""
    model, processor = trained_colour_model()
    held_out, labels = colour_images(200, seed=1)
    calibration, _ = colour_images(64, seed=2)
    path = tmp_path_factory.mktemp("int8") / "colours.tflite"
    report = export(
        model,
        path,
        "tflite",
        precision="int8",
        bundle=True,
        image_processor=processor,
        verify_inputs=held_out,
        calibration=calibration,
        latency_runs=0,
    )
    return {"model": model, "processor": processor, "path": path, "report": report, "labels": labels}


# The int8 tests share a fixture that trains a model and exports it: ~30 s on 2 idle cores, ~100 s on a loaded machine.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_int8_agrees_with_the_eager_model_on_held_out_images(int8_colours):
    report = int8_colours["report"]
    held_out, labels = colour_images(200, seed=1)
    expected = eager_probabilities(int8_colours["model"], int8_colours["processor"], held_out)
    assert (expected.argmax(-1).numpy() == labels).mean() >= 0.95  # trained: the agreement below means something
    assert report.passed and report.num_verify_inputs == 200
    assert report.top1_agreement >= 0.99, report.top1_agreement
    assert report.max_abs_diff <= PROB_TOL["int8"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mediapipe_runs_the_int8_bundle(int8_colours, tmp_path):
    images, _ = colour_images(4, seed=3)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i}.{'png' if i % 2 else 'jpg'}")
        Image.fromarray(image).save(files[-1])
    top5, pixels = mediapipe_top5(int8_colours["path"], files)
    expected = eager_probabilities(int8_colours["model"], int8_colours["processor"], pixels)
    for got, probs in zip(top5, expected):
        assert got[0][0] == COLOURS[int(probs.argmax())]
        for name, score in got:  # (quantized: scores in steps of 1/256, ties below the top-1 are common)
            assert abs(score - float(probs[list(COLOURS.values()).index(name)])) <= PROB_TOL["int8"]


@pytest.mark.slow  # (the trained model's fixture)
@pytest.mark.timeout(600)
def test_int8_takes_raw_pixels_and_answers_quantized_probabilities(int8_colours):
    from ai_edge_litert.interpreter import Interpreter

    path, report = int8_colours["path"], int8_colours["report"]
    interpreter = Interpreter(model_path=str(path))
    (image,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert image["dtype"] == np.uint8 and image["quantization"] == (1.0, 0)  # raw pixels go in unchanged
    assert output["dtype"] == np.uint8 and output["quantization"] == (1 / 256, 0)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["quantization"]["input"] == {"dtype": "uint8", "scale": 1.0, "zero_point": 0}
    assert manifest["output"]["dtype"] == "uint8" and manifest["output"]["scale"] == 1 / 256
    assert report.precision == "int8" and report.tolerance == REDUCED_TOLERANCE["int8"]


def test_cli_writes_a_tflite_bundle(model_dir, tmp_path, capsys):
    output = tmp_path / "app" / "swiftformer.tflite"
    code = main(
        [
            *("export", "--model", str(model_dir), "--format", "tflite", "--bundle", "--output", str(output)),
            *("--latency-runs", "0", "--num-verify", "2", "--json"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["bundle"] and report["passed"] and report["input_shape"] == [1, SIZE, SIZE, 3]
    assert sorted(p.name for p in output.parent.iterdir()) == ["labels.txt", "manifest.json", "swiftformer.tflite"]


def test_labels_that_cannot_go_in_the_metadata_are_one_line(tmp_path, capsys):
    folder = make_model_dir(tmp_path / "m", SIZE, id2label={0: "cat", 1: "two\nlines", 2: "bird", 3: "fish"})
    output = tmp_path / "app" / "b.tflite"
    code = main(["export", "--model", str(folder), "--format", "tflite", "--bundle", "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip() == (
        "swiftformer: error: label 'two\\nlines' holds a line break; labels.txt has one label a line"
    )
    assert not (tmp_path / "app").exists()


def test_a_missing_mediapipe_is_one_import_error_naming_the_extra(model_dir, tmp_path, monkeypatch):
    from swiftformer.export import formats

    real = importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a)
    )
    formats.FORMATS["tflite"].require()  # a plain TFLite export does not need it
    with pytest.raises(ImportError, match=r"exporting to tflite needs mediapipe: pip install \.\[tf\]"):
        export(load_model(str(model_dir)), tmp_path / "a.tflite", "tflite", bundle=True)
    assert not list(tmp_path.iterdir())
