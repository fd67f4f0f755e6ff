"""Bundles (swiftformer/export/bundle.py): uint8 RGB images in, probabilities out, labels inside, labels.txt and
manifest.json beside; verified in ONNX Runtime against the eager model's softmax on the processor's preprocessing.

fp32 tolerance on the probabilities: 1e-5 absolute (measured ~6e-7 on the tiny perturbed models here).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _helpers import bundle_images, make_images, make_model_dir, processor_probabilities
from swiftformer.cli import main
from swiftformer.export import export
from swiftformer.export.bundle import bundle_spec, bundled_module, reference_probabilities
from swiftformer.image_processing import load_processor
from swiftformer.inference import fuse, load_model

SIZE = 64
PROB_TOL = 1e-5
LABELS10 = dict(enumerate(["apple", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"]))


def need_onnx() -> None:
    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("bundle") / "model", SIZE, id2label=LABELS10, image_size=SIZE)


def uint8_images(folder: Path) -> np.ndarray:
    return bundle_images(folder, SIZE)


def test_onnx_bundle_matches_the_eager_model_and_carries_its_labels(model_dir, tmp_path):
    need_onnx()
    import onnx
    import onnxruntime as ort

    images = uint8_images(tmp_path / "images")
    model = load_model(str(model_dir))
    processor, note = load_processor(model_dir)
    assert note is None
    path = tmp_path / "app" / "swiftformer.onnx"
    report = export(model, path, "onnx", bundle=True, image_processor=processor, verify_inputs=images, latency_runs=0)
    assert report.passed and report.bundle and report.top1_agreement == 1.0 and report.max_abs_diff <= PROB_TOL
    assert report.input_shape == ["batch", SIZE, SIZE, 3] and report.num_verify_inputs == len(images)
    assert "input images batchx64x64x3 uint8 -> probabilities" in report.summary()
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "swiftformer.onnx",
        "swiftformer.ort",
        "swiftformer.required_operators.config",
    ]

    # The artifact on its own, as an app runs it.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(uint8)", ["batch", SIZE, SIZE, 3])
    assert out.name == "probabilities"
    probs = torch.from_numpy(session.run(["probabilities"], {"images": images})[0])
    expected = processor_probabilities(model_dir, images)
    assert (probs - expected).abs().max() <= PROB_TOL
    assert torch.equal(probs.topk(5).indices, expected.topk(5).indices)
    assert torch.allclose(probs.sum(-1), torch.ones(len(images)), atol=1e-5)

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["labels"]) == list(LABELS10.values())
    assert {"name", "description", "version", "license", "normalization", "input", "swiftformer.config"} <= set(meta)
    assert json.loads(meta["normalization"])["mean"] == pytest.approx([0.485, 0.456, 0.406])

    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["config_sha256"] == hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()
    assert manifest["input"] == {
        "name": "images",
        "layout": "NHWC",
        "dtype": "uint8",
        "channels": "RGB",
        "height": SIZE,
        "width": SIZE,
    }
    assert manifest["precision"] == "fp32" and manifest["labels"] == list(LABELS10.values())
    assert manifest["normalization"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert "Sub" in manifest["normalization"]["folded"] and manifest["verification"]["top1_agreement"] == 1.0
    assert (path.parent / "labels.txt").read_text().splitlines() == list(LABELS10.values())

    # The ORT-format copy (ORT Mobile's format) runs in ONNX Runtime as the .onnx does, and the manifest names it.
    ort_file = path.with_suffix(".ort")
    ort_session = ort.InferenceSession(str(ort_file), providers=["CPUExecutionProvider"])
    ort_probs = torch.from_numpy(ort_session.run(["probabilities"], {"images": images})[0])
    assert (ort_probs - probs).abs().max() <= 1e-6 and (ort_probs - expected).abs().max() <= PROB_TOL
    assert torch.equal(ort_probs.argmax(-1), probs.argmax(-1)) and torch.equal(
        ort_probs.argmax(-1), expected.argmax(-1)
    )
    entry = manifest["ort"]
    assert entry["file"] == "swiftformer.ort" and entry["sha256"] == hashlib.sha256(ort_file.read_bytes()).hexdigest()
    assert entry["optimization_style"] == "Fixed" and entry["converter"].endswith("convert_onnx_models_to_ort")
    assert entry["verification"]["top1_agreement"] == 1.0 and entry["verification"]["max_abs_diff"] <= 1e-6
    assert any("ORT-format copy swiftformer.ort" in n for n in report.notes)
    # the operators the .ort needs, for a reduced ONNX Runtime build (build.py --include_ops_by_config)
    assert entry["required_operators"] == "swiftformer.required_operators.config"
    required = (path.parent / entry["required_operators"]).read_text()
    assert "ai.onnx;" in required and "Softmax" in required and "Conv" in required

    # An earlier bundle of the same artifact is replaced, sidecars and all.
    export(model, path, "onnx", bundle=True, image_processor=processor, latency_runs=0)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["ort"]["sha256"] == hashlib.sha256(ort_file.read_bytes()).hexdigest()


def test_a_bundle_that_fails_verification_writes_nothing(model_dir, tmp_path):
    need_onnx()
    from swiftformer.export import ExportVerificationError

    with pytest.raises(ExportVerificationError, match="nothing written"):
        export(load_model(str(model_dir)), tmp_path / "app" / "b.onnx", "onnx", bundle=True, tolerance=1e-12)
    assert [p.name for p in (tmp_path / "app").iterdir()] == []


def test_shift_folded_into_the_bias_is_exact_without_padding(model_dir):
    """SwiftFormer's stem pads (the shift is a Sub in the graph); a first conv without padding gets it in its bias."""
    model = load_model(str(model_dir))
    processor, _ = load_processor(model_dir)
    spec = bundle_spec(model, processor, None)
    fused = fuse(model)
    fused.features[0].padding = (0, 0)
    bundled = bundled_module(fused, spec)
    assert "bias" in spec.folded and bundled.shift is None
    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    with torch.no_grad():
        pixel_values = processor(list(images), return_tensors="pt")["pixel_values"]
        expected = fused(pixel_values).softmax(-1)
        actual = bundled(torch.from_numpy(images))
    assert (actual - expected).abs().max() <= PROB_TOL
    # and the padded stem, with the Sub, matches the eager model
    spec = bundle_spec(model, processor, None)
    with torch.no_grad():
        padded = bundled_module(fuse(model), spec)(torch.from_numpy(images))
    assert (padded - reference_probabilities(model, spec, images)).abs().max() <= PROB_TOL


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["export", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bundle_with_a_format_that_cannot_carry_one_is_one_line(model_dir, tmp_path, capsys):
    code, out, err = cli(
        capsys, "--model", model_dir, "--format", "openvino", "--bundle", "--output", tmp_path / "x-openvino"
    )
    assert code == 2 and out == ""
    assert err.startswith("swiftformer: error: openvino cannot carry a bundle yet; --bundle works with: ")
    assert "onnx (fp32" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match=r"cannot carry a bundle yet; --bundle works with: .*onnx"):
        export(load_model(str(model_dir)), tmp_path / "x.pt2", "aoti", bundle=True)
    bundle = ("--model", model_dir, "--format", "onnx", "--bundle", "--output", tmp_path / "x.onnx")
    code, out, err = cli(capsys, *bundle, "--calibration", tmp_path)
    assert code == 2 and out == ""
    assert err.strip() == "swiftformer: error: --calibration calibrates int8; this bundle is fp32"
    code, out, err = cli(capsys, *bundle, "--precision", "bf16")
    assert code == 2 and out == ""
    assert err.strip() == "swiftformer: error: onnx bundles are fp32, fp16, int8, got precision 'bf16'"
    assert not list(tmp_path.iterdir())


def test_bundle_without_preprocessor_config_uses_imagenet_defaults_with_a_note(tmp_path, capsys):
    need_onnx()
    folder = make_model_dir(tmp_path / "m", SIZE, image_size=48)
    (folder / "preprocessor_config.json").unlink()
    output = tmp_path / "app" / "b.onnx"
    code, out, err = cli(
        capsys, "--model", folder, "--format", "onnx", "--bundle", "--output", output, "--latency-runs", "0", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["bundle"] and report["input_shape"] == ["batch", 48, 48, 3] and report["passed"]
    assert any("no preprocessor_config.json" in n and "48x48" in n for n in report["notes"])
    manifest = json.loads((output.parent / "manifest.json").read_text())
    assert manifest["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert manifest["labels"] == ["cat", "dog", "bird", "fish"]


def test_sidecars_that_are_not_an_earlier_bundle_are_refused(model_dir, tmp_path):
    model = load_model(str(model_dir))
    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text('{"something": "else"}')
    with pytest.raises(ValueError, match="is not a bundle manifest; refusing to replace it"):
        export(model, app / "a.onnx", "onnx", bundle=True)
    (app / "manifest.json").unlink()
    (app / "labels.txt").write_text("mine\n")
    with pytest.raises(ValueError, match=r"labels\.txt exists and is not an earlier bundle's"):
        export(model, app / "a.onnx", "onnx", bundle=True)
    (app / "labels.txt").unlink()
    (app / "manifest.json").write_text(json.dumps({"kind": "swiftformer-bundle", "artifact": "other.onnx"}))
    with pytest.raises(ValueError, match=r"belongs to the bundle 'other\.onnx'"):
        export(model, app / "a.onnx", "onnx", bundle=True)
    (app / "manifest.json").unlink()
    (app / "a.ort").write_bytes(b"mine")
    with pytest.raises(ValueError, match=r"a\.ort exists and is not an earlier bundle's"):
        export(model, app / "a.onnx", "onnx", bundle=True)
    # an earlier bundle of a.onnx whose manifest does not name this .ort (one written before .ort copies)
    (app / "manifest.json").write_text(json.dumps({"kind": "swiftformer-bundle", "artifact": "a.onnx"}))
    with pytest.raises(ValueError, match=r"a\.ort exists and is not an earlier bundle's"):
        export(model, app / "a.onnx", "onnx", bundle=True)
    assert sorted(p.name for p in app.iterdir()) == ["a.ort", "manifest.json"]
    assert (app / "a.ort").read_bytes() == b"mine"
    (app / "a.ort").unlink()
    (app / "a.required_operators.config").write_text("mine")
    with pytest.raises(ValueError, match=r"a\.required_operators\.config exists and is not an earlier bundle's"):
        export(model, app / "a.onnx", "onnx", bundle=True)
    assert (app / "a.required_operators.config").read_text() == "mine"


def test_a_plain_export_over_a_bundles_artifact_is_refused(model_dir, tmp_path):
    """Its manifest, labels and .ort would stay beside it, describing the bundle's uint8 model."""
    model = load_model(str(model_dir))
    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text(json.dumps({"kind": "swiftformer-bundle", "artifact": "a.onnx"}))
    with pytest.raises(ValueError, match=r"a\.onnx is the artifact of the bundle .*manifest\.json describes"):
        export(model, app / "a.onnx", "onnx")
    assert sorted(p.name for p in app.iterdir()) == ["manifest.json"]
    (app / "manifest.json").write_text(json.dumps({"kind": "swiftformer-bundle", "artifact": "other.onnx"}))
    need_onnx()
    export(model, app / "a.onnx", "onnx", latency_runs=0)  # another artifact's bundle: a.onnx is free


def test_labels_that_cannot_be_one_line_are_refused(model_dir):
    model = load_model(str(model_dir))
    model.config.id2label = {**LABELS10, 3: "two\nlines"}
    with pytest.raises(ValueError, match="holds a line break"):
        bundle_spec(model, None, None)
    model.config.id2label = {**LABELS10, 3: "bad \udcff"}
    with pytest.raises(ValueError, match="not valid UTF-8"):
        bundle_spec(model, None, None)


def test_an_ort_copy_that_disagrees_with_the_onnx_writes_nothing(model_dir, tmp_path, monkeypatch):
    need_onnx()
    from swiftformer.export import ExportVerificationError, bundle

    real = bundle.ort_runner
    monkeypatch.setattr(bundle, "ort_runner", lambda path: lambda x: real(path)(x)[:, ::-1].copy())
    with pytest.raises(ExportVerificationError, match=r"ORT-format copy b\.ort disagrees.*nothing written"):
        export(load_model(str(model_dir)), tmp_path / "app" / "b.onnx", "onnx", bundle=True, latency_runs=0)
    assert [p.name for p in (tmp_path / "app").iterdir()] == []


def test_calibration_pixels_are_uint8_images_at_the_bundle_size(tmp_path):
    from swiftformer.export.common import load_calibration_pixels

    for name, color in (("red", (250, 10, 0)), ("blue", (0, 20, 255))):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 30), color).save(tmp_path / name / "a.png")
    (tmp_path / "red" / "broken.png").write_bytes(b"not a png")
    pixels = load_calibration_pixels(tmp_path, (24, 20), limit=8)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 24, 20, 3)
    colors = {tuple(int(v) for v in image.reshape(-1, 3)[0]) for image in pixels}
    assert colors == {(250, 10, 0), (0, 20, 255)}
    assert all((image == image.reshape(-1, 3)[0]).all() for image in pixels)  # a flat image stays flat
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_calibration_pixels(tmp_path / "empty", (24, 20))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_onnx_bundles_agree_with_the_eager_model(model_dir, tmp_path, capsys, precision):
    need_onnx()
    import onnx
    import onnxruntime as ort

    images = uint8_images(tmp_path / "images")
    calibration = tmp_path / "calibration"
    for i, name in enumerate(("a", "b", "c")):  # three class folders of noise images, as the verification's
        make_images(calibration / name, {f"{name}{j}.png": (SIZE + 16 * i, SIZE, 3) for j in range(5)}, seed=10 + i)
    path = tmp_path / "app" / "swiftformer.onnx"
    argv = ["--model", model_dir, "--format", "onnx", "--bundle", "--precision", precision, "--output", path]
    code, out, err = cli(capsys, *argv, *(["--calibration", calibration] if precision == "int8" else []), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["precision"] == precision and report["passed"] and report["bundle"]
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["precision"] == precision and manifest["ort"]["verification"]["top1_agreement"] == 1.0

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)" and session.get_outputs()[0].type == "tensor(float)"
    probs = torch.from_numpy(session.run(["probabilities"], {"images": images})[0])
    expected = processor_probabilities(model_dir, images)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    if precision == "fp16":  # float16 arithmetic: probabilities within 2e-3, the same top-3
        assert "Cast" in ops and (probs - expected).abs().max() <= 2e-3
        assert torch.equal(probs.topk(3).indices, expected.topk(3).indices)
    else:  # int8, calibrated on 15 noise images: judged on the noise images (random weights, so no more than that)
        noise = slice(2, 6)
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and (probs - expected)[noise].abs().max() <= 0.25
        assert (probs.argmax(-1) == expected.argmax(-1))[noise].float().mean() >= 0.75
        assert "calibrated on 15 images" in " ".join(report["notes"])


def test_bundle_info_and_real_verification_images_from_the_command_line(model_dir, tmp_path, capsys):
    need_onnx()
    import onnx

    images = tmp_path / "val"
    make_images(images / "a", {"x.png": (80, 60, 3), "y.jpg": (50, 90, 3)}, seed=1)
    make_images(images / "b", {"z.png": (64, 64, 3)}, seed=2)
    path = tmp_path / "app" / "swiftformer.onnx"
    bundle = ["--model", model_dir, "--format", "onnx", "--bundle", "--output", path, "--json"]
    info = ["--bundle-info", "license=Apache-2.0", "--bundle-info", "version=2.1", "--bundle-info", "author=Me"]
    code, out, err = cli(capsys, *bundle, *info, "--verify-images", images, "--latency-runs", "0")
    assert code == 0, err
    assert json.loads(out)["num_verify_inputs"] == 3  # the folder's three images, not 8 random ones
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    manifest = json.loads((path.parent / "manifest.json").read_text())
    for key, value in (("license", "Apache-2.0"), ("version", "2.1"), ("author", "Me")):
        assert meta[key] == value and manifest[key] == value
    assert manifest["verification"]["inputs"] == "3 uint8 images"

    before = sorted(p.name for p in path.parent.iterdir())
    refused = [
        (
            ["--bundle-info", "licence=MIT"],
            "swiftformer: error: bundle info key must be one of name, description, "
            "version, license, author, got 'licence'",
        ),
        (["--bundle-info", "license"], "swiftformer: error: --bundle-info takes KEY=VALUE, got 'license'"),
        (["--bundle-info", "license="], "swiftformer: error: bundle info 'license' must be non-empty text, got ''"),
        (
            ["--verify-images", tmp_path / "nowhere"],
            f"swiftformer: error: calibration data {tmp_path / 'nowhere'} is not a folder of images",
        ),
    ]
    for extra, message in refused:
        code, out, err = cli(capsys, *bundle, *extra)
        assert code == 2 and out == "" and err.strip() == message
    plain = ["--model", model_dir, "--format", "onnx", "--output", tmp_path / "plain.onnx"]
    code, out, err = cli(capsys, *plain, "--bundle-info", "license=MIT", "--verify-images", images)
    assert code == 2 and err.strip() == "swiftformer: error: --bundle-info and --verify-images apply to --bundle only"
    assert sorted(p.name for p in path.parent.iterdir()) == before and not (tmp_path / "plain.onnx").exists()
