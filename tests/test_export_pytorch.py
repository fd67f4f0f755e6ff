"""Exports (ONNX, OpenVINO, ExecuTorch, Core ML, AOTInductor, TFLite, SavedModel): each artifact runs in its own
runtime and matches the eager model; writes are atomic; bad arguments and missing packages fail clearly.

A tiny perturbed model keeps every conversion to seconds; each format is skipped when its package is
not installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from _helpers import assert_close_rel, perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.cli import main
from swiftformer.export import FORMATS, ExportError, ExportVerificationError, export, load_calibration_images
from swiftformer.export import pytorch as export_mod
from swiftformer.export.pytorch import Exported
from swiftformer.inference import fuse

SIZE = 64


def need(*modules: str) -> None:
    """Skip unless every module is installed (found, not imported: importing coremltools before
    torch._dynamo can crash when TensorFlow is installed; export() imports in a safe order)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def model() -> SwiftFormerForImageClassification:
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=10, image_size=SIZE)
    return perturb_(SwiftFormerForImageClassification(config)).eval()


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))


def eager(model: SwiftFormerForImageClassification, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


def only_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def clear_top1_share(logits: torch.Tensor, max_abs_diff: float) -> float:
    """The top-1 agreement an export within ``max_abs_diff`` of ``logits`` must reach: an input whose two
    best logits are closer than 2 × max_abs_diff is a near-tie that other kernels may flip; no other may."""
    best = logits.topk(2, dim=-1).values
    return ((best[:, 0] - best[:, 1]) > 2 * max_abs_diff).double().mean().item()


def check_report(report, fmt: str, path: Path, tolerance: float, model, inputs: torch.Tensor) -> None:
    assert report.format == fmt and report.precision == "fp32" and report.path == str(path)
    assert report.size_mb > 0 and report.num_verify_inputs == len(inputs) == 3
    assert report.max_rel_diff <= tolerance and report.passed
    assert report.top1_agreement >= clear_top1_share(eager(model, inputs), report.max_abs_diff)
    assert report.latency_ms is not None and report.latency_ms > 0 and report.latency_runs > 0
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True


# ------------------------------------------------------------------------------------------- formats
@pytest.mark.slow
def test_onnx(model, inputs, tmp_path):
    need("onnx", "onnxruntime", "onnxscript")
    import onnx
    import onnxruntime as ort
    from onnx.external_data_helper import uses_external_data

    path = tmp_path / "tiny.onnx"
    report = export(model, path, "onnx", verify_inputs=inputs, latency_runs=2)
    check_report(report, "onnx", path, 1e-5, model, inputs)
    assert only_entries(tmp_path) == ["tiny.onnx"]  # no external data file, no leftovers

    proto = onnx.load(path, load_external_data=False)
    assert not any(uses_external_data(t) for t in proto.graph.initializer)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 20
    assert "Gelu" in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(3)
    for shape in [(1, 3, SIZE, SIZE), (3, 3, SIZE, SIZE), (2, 3, 96, 80)]:  # dynamic batch, height, width
        x = torch.randn(*shape, generator=gen)
        (out,) = session.run(["logits"], {"pixel_values": x.numpy()})
        assert_close_rel(torch.from_numpy(out), eager(model, x), 1e-5, f"onnx {shape}")


@pytest.mark.slow
def test_openvino(model, inputs, tmp_path):
    need("openvino")
    import openvino as ov

    path = tmp_path / "tiny-openvino"
    report = export(model, path, "openvino", verify_inputs=inputs, latency_runs=2)
    check_report(report, "openvino", path, 1e-5, model, inputs)
    assert only_entries(path) == ["model.bin", "model.xml"] and only_entries(tmp_path) == ["tiny-openvino"]

    core = ov.Core()
    # Explicit f32: OpenVINO's CPU default is bf16 where the CPU has it (AVX512-BF16/AMX).
    compiled = core.compile_model(core.read_model(path / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    gen = torch.Generator().manual_seed(3)
    for shape in [(1, 3, SIZE, SIZE), (3, 3, SIZE, SIZE), (2, 3, 96, 80)]:
        x = torch.randn(*shape, generator=gen)
        out = compiled({"pixel_values": x.numpy()})["logits"]
        assert_close_rel(torch.from_numpy(out), eager(model, x), 1e-5, f"openvino {shape}")


@pytest.mark.parametrize("variant", ["softmax", "l2"])
def test_mobile_rewrite_is_exact(variant):
    """ExecuTorch and the Core ML bundle convert a rewrite of the fused model (XNNPACK / Neural Engine ops): same
    logits."""
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=10, attention_variant=variant)
    model = perturb_(SwiftFormerForImageClassification(config)).eval()
    rewritten = export_mod._mobile_model(fuse(model))
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert_close_rel(rewritten(x), eager(model, x), 1e-5, variant)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.slow
def test_executorch(inputs, tmp_path):
    need("executorch")
    from executorch.runtime import Runtime

    torch.manual_seed(0)  # the l2 attention variant: its token-weight path is the longer one to lower
    config = SwiftFormerConfig(
        depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=10, image_size=SIZE, attention_variant="l2"
    )
    model = perturb_(SwiftFormerForImageClassification(config)).eval()
    path = tmp_path / "tiny.pte"
    report = export(model, path, "executorch", verify_inputs=inputs, latency_runs=2)
    check_report(report, "executorch", path, 1e-4, model, inputs)
    assert report.input_shape == [1, 3, SIZE, SIZE]
    assert any("in 1 graph(s)" in n for n in report.notes), report.notes  # XNNPACK takes the whole network
    method = Runtime.get().load_program(path).load_method("forward")
    x = inputs[1:2]
    (out,) = method.execute([x])
    assert_close_rel(out, eager(model, x), 1e-4, "executorch")


def test_coreml(model, inputs, tmp_path):
    need("coremltools")
    path = tmp_path / "tiny.mlpackage"
    try:
        report = export(model, path, "coreml", verify_inputs=inputs[:1], latency_runs=2)
    except ExportError as err:  # conversion is platform-independent, but coremltools lags torch releases
        pytest.xfail(f"coremltools cannot convert the model here: {err}")
    assert path.is_dir() and (path / "Manifest.json").is_file() and only_entries(tmp_path) == ["tiny.mlpackage"]
    assert report.format == "coreml" and report.size_mb > 0
    assert any(n.startswith("inputs: pixel_values float32 [1, 3, 64, 64]") for n in report.notes)
    assert any(n.startswith("outputs: logits") for n in report.notes)
    import coremltools as ct  # imported by export() already, in a safe order

    spec = ct.utils.load_spec(str(path))
    assert [f.name for f in spec.description.input] == ["pixel_values"]
    assert [f.name for f in spec.description.output] == ["logits"]
    assert spec.WhichOneof("Type") == "mlProgram"
    if report.max_rel_diff is None:  # off macOS Core ML cannot predict
        assert report.latency_ms is None
    else:
        assert report.max_rel_diff <= 1e-4


@pytest.mark.slow
def test_aoti_of_a_one_channel_model(tmp_path):
    """Frozen from the channels-last fused model, a 1-channel model's package computed wrong results."""
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=4, num_channels=1)
    model = perturb_(SwiftFormerForImageClassification(config)).eval()
    gray = torch.randn(3, 1, 40, 40, generator=torch.Generator().manual_seed(7))
    report = export(model, tmp_path / "gray.pt2", "aoti", image_size=40, verify_inputs=gray, latency_runs=1)
    assert report.max_rel_diff <= 1e-5 and report.top1_agreement == 1.0


@pytest.mark.slow
def test_aoti(model, inputs, tmp_path):
    path = tmp_path / "tiny.pt2"
    report = export(model, path, "aoti", verify_inputs=inputs, latency_runs=2)
    check_report(report, "aoti", path, 1e-5, model, inputs)
    assert any(n.startswith("load + first call:") for n in report.notes)
    runner = torch._inductor.aoti_load_package(str(path))
    gen = torch.Generator().manual_seed(3)
    for batch in (1, 3):  # dynamic batch
        x = torch.randn(batch, 3, SIZE, SIZE, generator=gen)
        assert_close_rel(runner(x), eager(model, x), 1e-5, f"aoti batch {batch}")


def test_tflite(model, inputs, tmp_path):
    need("swiftformer.export.keras", "tensorflow", "ai_edge_litert")
    path = tmp_path / "tiny.tflite"
    report = export(model, path, "tflite", verify_inputs=inputs, latency_runs=2)
    check_report(report, "tflite", path, 1e-4, model, inputs)
    assert only_entries(tmp_path) == ["tiny.tflite"]


@pytest.mark.slow
def test_onnx_below_the_dynamic_minimum_exports_static_height_width(tmp_path):
    """A model trained at 32x32 (a 1x1 last stage) still exports: batch dynamic, height and width fixed."""
    need("onnx", "onnxruntime", "onnxscript")
    torch.manual_seed(0)
    small = perturb_(
        SwiftFormerForImageClassification(
            SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=10, image_size=32)
        )
    ).eval()
    report = export(small, tmp_path / "s.onnx", "onnx", latency_runs=0)
    assert report.passed and report.max_rel_diff <= 1e-5 and report.input_shape == ["batch", 3, 32, 32]
    assert "input pixel_values batchx3x32x32 float32" in report.summary()


@pytest.mark.slow
def test_openvino_below_the_dynamic_minimum_stays_dynamic(tmp_path):
    """OpenVINO's IR of a 32x32 model is dynamic in height and width, and the report says so."""
    need("openvino")
    import openvino as ov

    torch.manual_seed(0)
    small = perturb_(
        SwiftFormerForImageClassification(
            SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=10, image_size=32)
        )
    ).eval()
    report = export(small, tmp_path / "ov", "openvino", latency_runs=0)
    assert report.passed and report.input_shape == ["batch", 3, "height", "width"]
    assert "input pixel_values batchx3xheightxwidth float32" in report.summary()
    core = ov.Core()
    compiled = core.compile_model(tmp_path / "ov" / "model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(3))
    assert_close_rel(torch.from_numpy(compiled({"pixel_values": x.numpy()})["logits"]), eager(small, x), 1e-5)


@pytest.mark.slow
def test_savedmodel(model, inputs, tmp_path):
    need("swiftformer.export.keras", "tensorflow")
    path = tmp_path / "tiny-saved"
    report = export(model, path, "savedmodel", verify_inputs=inputs, latency_runs=1)
    check_report(report, "savedmodel", path, 1e-4, model, inputs)
    assert (path / "saved_model.pb").is_file() and only_entries(tmp_path) == ["tiny-saved"]
    assert report.input_shape == ["batch", 3, "height", "width"]


@pytest.mark.slow
def test_onnx_int8_is_calibrated_and_close(model, inputs, tmp_path):
    need("onnx", "onnxruntime", "onnxscript")
    calibration = torch.randn(16, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(11))
    report = export(
        model,
        tmp_path / "q.onnx",
        "onnx",
        precision="int8",
        verify_inputs=inputs,
        calibration=calibration,
        latency_runs=1,
    )
    assert report.precision == "int8" and report.passed and 0 < report.max_rel_diff < 0.25  # quantized, not garbage
    assert any("calibrated on 16 images" in note for note in report.notes)
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert only_entries(tmp_path) == ["q.onnx"]  # the float32 intermediate is gone
    # Without calibration images the report says what it calibrated on.
    report = export(model, tmp_path / "r.onnx", "onnx", precision="int8", verify_inputs=inputs, latency_runs=0)
    assert any("calibrated on the verification inputs" in note for note in report.notes)


@pytest.mark.slow
def test_tflite_int8(model, inputs, tmp_path):
    need("swiftformer.export.keras", "tensorflow", "ai_edge_litert")
    calibration = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(11))
    report = export(
        model,
        tmp_path / "q.tflite",
        "tflite",
        precision="int8",
        verify_inputs=inputs,
        calibration=calibration,
        latency_runs=1,
    )
    assert report.precision == "int8" and report.passed and report.max_rel_diff < 0.25
    assert any("full-integer" in note for note in report.notes)


def test_bad_calibration(model, inputs, tmp_path):
    with pytest.raises(ValueError, match=r"calibration must have shape \(N, 3, 64, 64\)"):
        export(model, tmp_path / "q.onnx", "onnx", precision="int8", calibration=torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="holds no images"):
        load_calibration_images(tmp_path, (SIZE, SIZE), 4)
    assert only_entries(tmp_path) == []


# ------------------------------------------------------------------------------------------- atomicity
def fake_format(monkeypatch, name: str, model=None, *, fail: str | None = None) -> None:
    """Replace the record of ``name`` (its packages need not be installed): with ``model``, by one whose
    exporter writes an artifact (a file, or a directory holding the marker) and whose runner gives the
    model's logits (``fail="wrong"``: twice them), or whose exporter raises (``fail="raise"``)."""
    record = FORMATS[name]

    def exporter(ctx):
        if record.is_directory:
            ctx.staged.mkdir()
            (ctx.staged / record.marker).write_text("new")
        else:
            ctx.staged.write_bytes(b"partial")
        if fail == "raise":
            raise RuntimeError("converter crashed half-way")
        return Exported([], ["batch", 3, SIZE, SIZE])

    def runner(ctx):
        scale = 2.0 if fail == "wrong" else 1.0
        return lambda x: scale * eager(model, torch.from_numpy(x)).numpy()

    fake = {"requires": ()} if model is None else {"requires": (), "exporter": exporter, "runner": runner}
    monkeypatch.setitem(FORMATS, name, dataclasses.replace(record, **fake))


@pytest.mark.parametrize("fail", ["raise", "wrong"])
def test_failed_export_keeps_old_file(model, inputs, tmp_path, monkeypatch, fail):
    fake_format(monkeypatch, "onnx", model, fail=fail)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old model")
    if fail == "raise":
        with pytest.raises(ExportError, match="exporting to onnx failed: RuntimeError: converter crashed half-way"):
            export(model, path, "onnx", verify_inputs=inputs, latency_runs=0)
    else:
        with pytest.raises(ExportVerificationError, match="nothing written") as info:
            export(model, path, "onnx", verify_inputs=inputs, latency_runs=0)
        assert info.value.report.max_rel_diff > 0.5 and not info.value.report.passed
    assert path.read_bytes() == b"old model"
    assert only_entries(tmp_path) == ["model.onnx"]  # no temporary file left behind


def test_failed_export_leaves_no_partial_file(model, inputs, tmp_path, monkeypatch):
    fake_format(monkeypatch, "onnx", model, fail="raise")
    with pytest.raises(ExportError):
        export(model, tmp_path / "new.onnx", "onnx", verify_inputs=inputs, latency_runs=0)
    assert only_entries(tmp_path) == []


def test_directory_export_replaces_or_keeps_old(model, inputs, tmp_path, monkeypatch):
    path = tmp_path / "ov"
    path.mkdir()
    (path / "model.xml").write_text("old")
    (path / "stale.bin").write_text("old")
    fake_format(monkeypatch, "openvino", model, fail="raise")
    with pytest.raises(ExportError):
        export(model, path, "openvino", verify_inputs=inputs, latency_runs=0)
    assert only_entries(path) == ["model.xml", "stale.bin"] and (path / "model.xml").read_text() == "old"
    assert only_entries(tmp_path) == ["ov"]

    fake_format(monkeypatch, "openvino", model)
    report = export(model, path, "openvino", verify_inputs=inputs, latency_runs=0)
    assert report.passed and report.latency_ms is None
    assert only_entries(path) == ["model.xml"] and (path / "model.xml").read_text() == "new"  # swapped whole
    assert only_entries(tmp_path) == ["ov"]  # the old directory was deleted


def test_never_overwrites_what_is_not_an_earlier_export(model, inputs, tmp_path, monkeypatch):
    fake_format(monkeypatch, "openvino")  # no exporter runs: the paths are refused first
    fake_format(monkeypatch, "onnx")
    model.save_pretrained(tmp_path / "model")  # a model folder given as --output by mistake
    before = only_entries(tmp_path / "model")
    with pytest.raises(ValueError, match=r"not an earlier openvino export .*no model.xml.*refusing to replace"):
        export(model, tmp_path / "model", "openvino", verify_inputs=inputs, latency_runs=0)
    with pytest.raises(ValueError, match=r"model.safetensors exists and is not a \.onnx file; refusing"):
        export(model, tmp_path / "model" / "model.safetensors", "onnx", verify_inputs=inputs, latency_runs=0)
    assert only_entries(tmp_path / "model") == before
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path / "model") is not None


@pytest.mark.parametrize("existing", ["folder", "file"])
def test_suffixless_output_gets_the_extension_unless_it_exists(model, inputs, tmp_path, monkeypatch, existing):
    fake_format(monkeypatch, "onnx", model)
    report = export(model, tmp_path / "new" / "digits", "onnx", verify_inputs=inputs, latency_runs=0)
    assert report.path == str(tmp_path / "new" / "digits.onnx") and only_entries(tmp_path / "new") == ["digits.onnx"]

    digits = tmp_path / "digits"  # `digits` itself exists and is not an export: refused, nothing written beside it
    if existing == "folder":
        digits.mkdir()
    else:
        digits.write_text("notes")
    with pytest.raises(ValueError, match=r"digits exists and is not an earlier onnx export; refusing"):
        export(model, digits, "onnx", verify_inputs=inputs, latency_runs=0)
    assert only_entries(tmp_path) == ["digits", "new"]


def test_an_output_with_another_formats_extension_is_refused(model, inputs, tmp_path):
    with pytest.raises(ValueError, match=r"x\.tflite has the extension of tflite exports; a onnx export is a \.onnx"):
        export(model, tmp_path / "x.tflite", "onnx", verify_inputs=inputs, latency_runs=0)
    with pytest.raises(ValueError, match=r"x\.onnx has the extension of onnx exports; a openvino export is a dir"):
        export(model, tmp_path / "x.onnx", "openvino", verify_inputs=inputs, latency_runs=0)
    assert only_entries(tmp_path) == []


# ------------------------------------------------------------------------------------------- report
def test_report_fields_and_json():
    from swiftformer.export import ExportReport

    report = ExportReport(
        path="m.tflite",
        format="tflite",
        precision="fp16",
        size_mb=1.234567,
        input_shape=[1, 3, 32, 32],
        num_verify_inputs=2,
        reference="Keras model (fp32)",
        max_abs_diff=float("nan"),
        max_rel_diff=float("inf"),
        top1_agreement=0.5,
        tolerance=None,
        latency_ms=None,
        latency_runs=0,
    )
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # JSON-safe: no NaN / Infinity
    assert data["max_abs_diff"] is None and data["max_rel_diff"] is None and data["latency_ms"] is None
    assert data["passed"] is True and "not timed" in report.summary()  # no tolerance: nothing checked
    assert data["size_mb"] == 1.234567 and data["precision"] == "fp16" and data["input_shape"] == [1, 3, 32, 32]


# ------------------------------------------------------------------------------------------- calibration
def save_images(folder: Path, count: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_calibration_samples_every_class(tmp_path):
    """An unbalanced set: every class folder contributes, the budget shared out evenly."""
    from swiftformer.export.common import _sample_per_folder

    root = tmp_path / "data"
    counts = {"a": 30, "b": 1, "c": 5, "d/nested": 2}
    for name, count in counts.items():
        save_images(root / name, count)
    paths = sorted(root.rglob("*.png"))
    picked = _sample_per_folder(paths, 8)
    per_class = {name: sum(p.parent == root / name for p in picked) for name in counts}
    assert per_class == {"a": 3, "b": 1, "c": 2, "d/nested": 2} and picked == sorted(picked)
    assert {p.parent for p in _sample_per_folder(paths, 3)} < {root / n for n in counts}  # fewer than classes
    assert len(_sample_per_folder(paths, 3)) == 3 and _sample_per_folder(paths, 100) == paths
    pixels = load_calibration_images(root, (16, 16), 8)
    assert pixels.shape == (8, 3, 16, 16) and pixels.dtype == torch.float32


def test_calibration_uses_the_models_mean_and_std(model, tmp_path):
    from swiftformer import SwiftFormerImageProcessor

    save_images(tmp_path / "data" / "cat", 2)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    images = sorted((tmp_path / "data").rglob("*.png"))
    for values in (  # the model's whole value mapping: mean and std, and whether and how it rescales
        dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]),
        dict(do_rescale=False, image_mean=[120.0] * 3, image_std=[60.0] * 3, resample="bilinear"),
        dict(do_normalize=False, rescale_factor=1 / 127.5),
    ):
        SwiftFormerImageProcessor(**values).save_pretrained(folder)
        pixels = load_calibration_images(tmp_path / "data", (16, 16), 4, str(folder))
        expected = SwiftFormerImageProcessor(size={"height": 16, "width": 16}, **values)
        assert torch.equal(pixels, expected(images, return_tensors="pt")["pixel_values"]), values
    imagenet = load_calibration_images(tmp_path / "data", (16, 16), 4, "xs")  # a variant: no folder, ImageNet's
    assert not torch.equal(imagenet, pixels)


# ------------------------------------------------------------------------------------------- errors
def test_bad_format_and_precision(model, tmp_path):
    with pytest.raises(ValueError, match="onnx, openvino, executorch, coreml, aoti, tflite, savedmodel"):
        export(model, tmp_path / "m", "torchscript")
    with pytest.raises(ValueError, match=r"fp32, fp16.*'int4'"):
        export(model, tmp_path / "m.onnx", "onnx", precision="int4")
    with pytest.raises(ValueError, match="executorch must be one of fp32"):
        export(model, tmp_path / "m.pte", "executorch", precision="fp16")
    with pytest.raises(ValueError, match="opset must be at least 18"):
        export(model, tmp_path / "m.onnx", "onnx", opset=13)
    with pytest.raises(ValueError, match="fixed input size"):
        export(model, tmp_path / "m.pt2", "aoti", image_size=64, verify_inputs=torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"fixed input size 32x32 \(below \d+ pixels an export's size is static\)"):
        export(model, tmp_path / "m.onnx", "onnx", image_size=32, verify_inputs=torch.randn(1, 3, 64, 64))
    assert only_entries(tmp_path) == []


def test_missing_package_is_one_clear_error(model, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    absent = {"onnxruntime", "tensorflow"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    with pytest.raises(ImportError, match=r"onnxruntime: pip install \.\[export\]"):
        export(model, tmp_path / "m.onnx", "onnx")
    with pytest.raises(ImportError, match=r"tflite needs tensorflow.*: pip install \.\[tf\]"):
        export(model, tmp_path / "m.tflite", "tflite")
    assert only_entries(tmp_path) == []


# ------------------------------------------------------------------------------------------- CLI
def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["export", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_onnx_json(model, tmp_path, capsys):
    need("onnx", "onnxruntime", "onnxscript")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    out = tmp_path / "out" / "tiny"  # no suffix: .onnx is added; the folder is created
    code, stdout, _ = cli(
        capsys,
        *("--model", folder, "--format", "onnx", "--output", out),
        *("--num-verify", 2, "--latency-runs", 1, "--json"),
    )
    assert code == 0
    report = json.loads(stdout)  # stdout holds the JSON object only
    assert report["path"] == str(out) + ".onnx" and Path(report["path"]).is_file()
    assert report["format"] == "onnx" and report["passed"] and report["max_rel_diff"] <= 1e-5
    assert report["top1_agreement"] is not None and report["num_verify_inputs"] == 2
    assert report["input_shape"] == ["batch", 3, "height", "width"]


@pytest.mark.slow
def test_cli_onnx_and_tflite_report_the_same_fields(model, tmp_path, capsys):
    """One report for every format: the same `swiftformer export --json` keys for ONNX and TFLite."""
    need("onnx", "onnxruntime", "onnxscript", "swiftformer.export.keras", "tensorflow", "ai_edge_litert")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    reports = {}
    for fmt in ("onnx", "tflite"):
        code, stdout, err = cli(
            capsys,
            *("--model", folder, "--format", fmt, "--output", tmp_path / f"m.{fmt}", "--image-size", 32),
            *("--num-verify", 2, "--latency-runs", 0, "--json"),
        )
        assert code == 0, err
        reports[fmt] = json.loads(stdout)
    assert reports["onnx"].keys() == reports["tflite"].keys()
    for report in reports.values():
        assert report["latency_ms"] is None and report["latency_runs"] == 0 and report["passed"]
        assert report["reference"] == "eager PyTorch model (fp32)" and report["precision"] == "fp32"
    assert reports["tflite"]["input_shape"] == [1, 3, 32, 32]
    assert reports["onnx"]["input_shape"] == ["batch", 3, 32, 32]  # below the dynamic minimum: static H, W


@pytest.mark.slow
def test_cli_int8_with_calibration_folder(model, tmp_path, capsys):
    need("onnx", "onnxruntime", "onnxscript")
    import numpy as np
    from PIL import Image

    folder = tmp_path / "model"
    model.save_pretrained(folder)
    images = tmp_path / "calib"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(images / label / f"{i}.png")
    (images / "a" / "broken.png").write_bytes(b"not a png")
    code, out, _ = cli(
        capsys,
        *("--model", folder, "--format", "onnx", "--precision", "int8", "--calibration", images),
        *("--output", tmp_path / "q.onnx", "--num-verify", 2, "--latency-runs", 0),
    )
    assert code == 0
    assert "onnx (int8)" in out and "calibrated on 6 images" in out and "verification: passed" in out
    code, _, err = cli(
        capsys,
        *("--model", folder, "--format", "onnx", "--precision", "int8"),
        *("--calibration", tmp_path / "nowhere", "--output", tmp_path / "r.onnx"),
    )
    assert code == 2 and "is not a folder of images" in err


def test_cli_verification_failure_exits_1(model, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    fake_format(monkeypatch, "onnx", model, fail="wrong")
    code, out, err = cli(
        capsys, "--model", folder, "--format", "onnx", "--output", tmp_path / "m.onnx", "--num-verify", 2
    )
    assert code == 1
    assert "verification: FAILED" in out and "relative" in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_missing_package_exits_2(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    code, _, err = cli(capsys, "--model", "xs", "--format", "openvino", "--output", tmp_path / "ov")
    assert code == 2 and "pip install .[export]" in err
    assert not os.listdir(tmp_path)
