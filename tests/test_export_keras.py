"""Exports of the Keras classifier: SavedModel (dynamic shapes) and TFLite fp32/fp16/int8, each
verified in place, written atomically, with clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch._dynamo  # before TensorFlow: importing triton after TensorFlow segfaults

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
import tensorflow as tf
import torch

from _helpers import TINY as TINY_CLASSIFIER
from _helpers import perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.errors import ExportError, ExportVerificationError
from swiftformer.export import keras as keras_export
from swiftformer.export.keras import TFLiteRunner, export_model, export_saved_model, export_tflite
from swiftformer.keras.models import TFSwiftFormerForImageClassification

TINY = {**TINY_CLASSIFIER, "image_size": 64}


@pytest.fixture(scope="module")
def pt_and_keras():
    torch.manual_seed(0)
    pt = perturb_(SwiftFormerForImageClassification(SwiftFormerConfig(**TINY))).eval()
    model = TFSwiftFormerForImageClassification(SwiftFormerConfig(**TINY))
    model.load_state_dict(pt.state_dict())
    return pt, model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((12, 3, 64, 64)).astype(np.float32)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def _clear_top1_share(logits: np.ndarray, max_abs_diff: float) -> float:
    """The top-1 agreement an export within ``max_abs_diff`` of ``logits`` must reach: an input whose two
    best logits are closer than 2 × max_abs_diff is a near-tie that other kernels may flip; no other may."""
    best = np.sort(logits, axis=-1)[:, -2:]
    return float(np.mean(best[:, 1] - best[:, 0] > 2 * max_abs_diff))


def _keras_logits(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False).logits)


@pytest.mark.slow
def test_saved_model_serving_signature_dynamic_shapes(pt_and_keras, tmp_path: Path):
    pt, model = pt_and_keras
    target = tmp_path / "saved"
    report = export_saved_model(model, target, latency_runs=3)
    assert report.format == "savedmodel" and report.precision == "fp32" and report.max_rel_diff <= 1e-4
    assert report.reference == "Keras model (fp32)" and report.input_shape == ["batch", 3, "height", "width"]
    assert report.size_mb > 0 and report.latency_ms > 0 and (target / "saved_model.pb").exists()
    assert _leftovers(tmp_path) == []

    serve = tf.saved_model.load(str(target)).signatures["serving_default"]
    spec = serve.structured_input_signature[1]["pixel_values"]
    assert spec.shape.as_list() == [None, 3, None, None] and spec.dtype == tf.float32
    for shape in [(1, 3, 64, 64), (3, 3, 75, 40)]:  # any batch and size, against the PyTorch model
        x = torch.randn(shape)
        with torch.no_grad():
            expected = pt(x).logits.numpy()
        got = serve(pixel_values=tf.constant(x.numpy()))["logits"].numpy()
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()

    again = export_saved_model(model, target, latency_runs=1)  # over an existing export: replaced whole
    assert again.max_rel_diff <= 1e-4 and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_tflite_float32_matches_keras(pt_and_keras, images, tmp_path: Path):
    pt, model = pt_and_keras
    target = tmp_path / "model.tflite"
    report = export_tflite(model, target, verify_inputs=images, latency_runs=3)
    assert report.precision == "fp32" and report.num_verify_inputs == 12 and report.passed
    assert report.max_rel_diff <= 1e-4 and report.tolerance == 1e-4 and report.size_mb == target.stat().st_size / 1e6
    assert report.top1_agreement >= _clear_top1_share(_keras_logits(model, images), report.max_abs_diff)
    assert report.input_shape == [1, 3, 64, 64] and set(report.to_dict()) >= {"path", "max_abs_diff", "latency_ms"}
    assert _leftovers(tmp_path) == []
    with torch.no_grad():  # independently of the report: run the file, compare with PyTorch
        expected = pt(torch.from_numpy(images[:4])).logits.numpy()
    got = TFLiteRunner(target)(images[:4])
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.slow
def test_tflite_float16_weights(pt_and_keras, images, tmp_path: Path):
    _, model = pt_and_keras
    float32 = export_tflite(model, tmp_path / "f32.tflite", verify_inputs=images, latency_runs=0)
    assert float32.latency_ms is None and float32.latency_runs == 0  # not timed: None, as in every report
    assert json.loads(json.dumps(float32.to_dict()))["latency_ms"] is None  # valid JSON, null
    assert "latency (batch 1): not timed" in float32.summary()
    report = export_tflite(model, tmp_path / "f16.tflite", precision="fp16", verify_inputs=images, latency_runs=1)
    assert report.precision == "fp16" and report.max_rel_diff < 2e-2 and report.tolerance is None
    assert 0.0 <= report.top1_agreement <= 1.0
    assert report.size_mb < float32.size_mb  # float16 weights are smaller
    interpreter = TFLiteRunner(tmp_path / "f16.tflite").interpreter
    assert any(t["dtype"] == np.float16 for t in interpreter.get_tensor_details())


@pytest.mark.parametrize("form", ["callable", "list", "array"])
@pytest.mark.slow
def test_tflite_int8_full_integer(pt_and_keras, images, tmp_path: Path, form):
    _, model = pt_and_keras
    data = {
        "callable": lambda: ([images[i : i + 1]] for i in range(len(images))),
        "list": list(images),
        "array": images,
    }[form]
    report = export_tflite(model, tmp_path / "int8.tflite", precision="int8", representative_data=data, latency_runs=1)
    assert report.precision == "int8" and report.num_verify_inputs == 8
    assert 0.0 <= report.top1_agreement <= 1.0 and np.isfinite(report.max_abs_diff)
    assert report.max_rel_diff < 0.5  # quantized, but still the same function
    details = TFLiteRunner(tmp_path / "int8.tflite").interpreter.get_tensor_details()
    int8_tensors = [t for t in details if t["dtype"] == np.int8]
    assert len(int8_tensors) > len(details) // 2  # full-integer: the bulk of the graph is int8


def test_int8_needs_representative_data(pt_and_keras, tmp_path: Path):
    _, model = pt_and_keras
    with pytest.raises(ValueError, match="representative_data"):
        export_tflite(model, tmp_path / "int8.tflite", precision="int8")
    with pytest.raises(ValueError, match="precision for tflite must be one of fp32, fp16, int8"):
        export_tflite(model, tmp_path / "x.tflite", precision="int4")
    assert not (tmp_path / "int8.tflite").exists()


@pytest.mark.slow
def test_failed_verification_writes_nothing(pt_and_keras, tmp_path: Path, monkeypatch):
    _, model = pt_and_keras
    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous good export")
    real = keras_export._keras_logits

    def wrong_reference(model, inputs):  # off by 1 + M everywhere (M = max|logit|): relative diff >= (1+M)/(1+2M) > 0.5
        logits = real(model, inputs)
        return logits + 1.0 + np.abs(logits).max()

    monkeypatch.setattr(keras_export, "_keras_logits", wrong_reference)
    with pytest.raises(ExportVerificationError, match="disagrees with the Keras model") as info:
        export_tflite(model, target, num_verify=2, latency_runs=1)
    assert info.value.report.max_rel_diff > 0.5 and not info.value.report.passed
    assert target.read_bytes() == b"previous good export" and _leftovers(tmp_path) == []
    with pytest.raises(ExportError, match="disagrees"):
        export_saved_model(model, tmp_path / "saved", num_verify=2, latency_runs=1)
    assert not (tmp_path / "saved").exists() and _leftovers(tmp_path) == []


def test_never_replaces_what_is_not_an_earlier_export(pt_and_keras, tmp_path: Path):
    _, model = pt_and_keras
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not an earlier savedmodel export"):
        export_saved_model(model, tmp_path / "folder", latency_runs=0)
    with pytest.raises(ValueError, match=r"not a \.tflite file"):
        export_tflite(model, tmp_path / "folder" / "notes.txt", latency_runs=0)
    assert (tmp_path / "folder" / "notes.txt").read_text() == "keep"


def test_missing_litert_is_one_clear_error(pt_and_keras, tmp_path: Path, monkeypatch):
    _, model = pt_and_keras
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"pip install \.\[tf\]"):
        export_tflite(model, tmp_path / "model.tflite", latency_runs=1)
    assert not (tmp_path / "model.tflite").exists()


@pytest.mark.slow
def test_export_model_from_a_pytorch_folder_and_image_files(tmp_path: Path):
    from PIL import Image

    torch.manual_seed(0)
    pt = perturb_(SwiftFormerForImageClassification(SwiftFormerConfig(**{**TINY, "image_size": 32}))).eval()
    pt.save_pretrained(tmp_path / "folder")
    report = export_model(tmp_path / "folder", tmp_path / "out.tflite", format="tflite", latency_runs=1)
    assert report.input_shape == [1, 3, 32, 32] and report.max_rel_diff <= 1e-4

    photos = tmp_path / "photos"  # class folders, as for `swiftformer export --calibration`: searched recursively
    rng = np.random.default_rng(0)
    for i in range(4):
        (photos / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photos / f"class{i % 2}" / f"{i}.png")
    report = export_model(
        tmp_path / "folder",
        tmp_path / "int8.tflite",
        format="tflite",
        precision="int8",
        representative_data=photos,
        latency_runs=1,
    )
    assert report.num_verify_inputs == 4 and 0.0 <= report.top1_agreement <= 1.0
    with pytest.raises(ValueError, match="'savedmodel' or 'tflite'"):
        export_model(tmp_path / "folder", tmp_path / "x.onnx", format="onnx")
    with pytest.raises(ValueError, match="precision for savedmodel must be one of fp32, got 'fp16'"):
        export_model(tmp_path / "folder", tmp_path / "saved", format="savedmodel", precision="fp16")
