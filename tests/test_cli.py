"""The command line: predict and info, as a user runs them."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import torch

from _helpers import LABELS
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerImageProcessor
from swiftformer.cli import main
from swiftformer.hardware import cpu_info
from swiftformer.inference import SlowPrecisionWarning


@pytest.fixture(scope="module")
def images(image_paths):
    """The shared PNG and JPEG as strings, and a file that is not an image beside them."""
    bad = image_paths[0].parent / "broken.jpg"
    bad.write_bytes(b"definitely not an image")
    return [str(path) for path in image_paths], str(bad)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_matches_python_api(capsys, model_dir, images):
    """fp32 against the eager fp32 model (auto would run bf16 on a CPU with native bf16)."""
    paths, _ = images
    code, out, _ = run(capsys, "predict", *paths, "--model", model_dir, "--top-k", 3, "--json", "--precision", "fp32")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == paths

    model = SwiftFormerForImageClassification.from_pretrained(model_dir)
    processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        probs = model(**processor(paths, return_tensors="pt")).logits.softmax(-1)
    for row, expected in zip(rows, probs):
        preds = row["predictions"]
        assert len(preds) == 3
        assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
        best = int(expected.argmax())
        assert preds[0]["index"] == best and preds[0]["label"] == LABELS[best]
        assert preds[0]["score"] == pytest.approx(expected[best].item(), rel=1e-5)


def test_predict_text_output_and_top_k_capped(capsys, model_dir, images):
    paths, _ = images
    code, out, _ = run(capsys, "predict", paths[0], "--model", model_dir, "--top-k", 10, "--backend", "inductor")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == paths[0]
    assert len(lines) == 1 + len(LABELS)  # top-k capped at the number of labels
    assert all(any(name in line for name in LABELS.values()) for line in lines[1:])


def test_predict_reports_unreadable_image_and_runs_others(capsys, model_dir, images):
    paths, bad = images
    code, out, _ = run(
        capsys,
        "predict",
        bad,
        paths[1],
        model_dir / "missing.png",
        "--model",
        model_dir,
        "--json",
        "--backend",
        "inductor",
    )
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == [bad, paths[1], str(model_dir / "missing.png")]
    assert "error" in rows[0] and "broken.jpg" in rows[0]["error"]
    assert len(rows[1]["predictions"]) == 4
    assert "error" in rows[2]


def test_predict_missing_model_is_one_line_error(capsys, images, tmp_path):
    code, out, err = run(capsys, "predict", images[0][0], "--model", tmp_path / "nope")
    assert code == 2 and out == ""
    assert err.startswith("swiftformer: error:") and "nope" in err and "Traceback" not in err


def test_predict_offline_hub_id_is_clear(capsys, images, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(
        capsys,
        "predict",
        images[0][0],
        "--model",
        "MBZUAI/swiftformer-xs",
        "--cache-dir",
        tmp_path,
        "--local-files-only",
    )
    assert code == 2
    assert "offline" in err and "local folder" in err


@pytest.mark.parametrize("variant,params,gmacs", [("xs", 3.48e6, 0.602), ("l3", 28.49e6, 4.008)])
def test_info_variant_json(capsys, variant, params, gmacs):
    code, out, _ = run(capsys, "info", "--model", variant, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["parameters"] == pytest.approx(params, rel=0.002)
    assert report["macs"] / 1e9 == pytest.approx(gmacs, rel=0.002)
    assert report["attention_variant"] == "softmax" and report["variant"] == variant
    config = SwiftFormerConfig.from_variant(variant, num_labels=1000)
    assert report["parameters"] == SwiftFormerForImageClassification(config).num_parameters()
    assert [s["stride"] for s in report["stages"]] == [4, 8, 16, 32]
    assert [(s["height"], s["width"]) for s in report["stages"]] == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_info_folder_text(capsys, model_dir):
    code, out, _ = run(capsys, "info", "--model", model_dir, "--image-size", 64, 96)
    assert code == 0
    assert "attention variant:  softmax" in out
    assert "MACs at 64x96" in out
    assert "16 x 2 x 3" in out  # last stage at stride 32


def test_info_refuses_segmentation_and_detection_folders_in_one_line(capsys, tmp_path):
    from swiftformer.configuration import SwiftFormerSegmentationConfig
    from swiftformer.modeling_segmentation import SwiftFormerForSemanticSegmentation

    config = SwiftFormerSegmentationConfig(depths=[1, 1], embed_dims=[8, 16], downsamples=[True, True], num_labels=3)
    SwiftFormerForSemanticSegmentation(config).save_pretrained(tmp_path / "seg")
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "detector_config.json").write_text("{}")
    for folder, kind in (("seg", "semantic segmentation"), ("det", "detection")):
        code, _, err = run(capsys, "info", "--model", tmp_path / folder)
        assert code == 2 and f"is a {kind} model; info describes image classifiers" in err, err


def test_info_stride_is_the_networks_not_a_rounded_ratio(capsys):
    code, out, _ = run(capsys, "info", "--model", "xs", "--image-size", 97, 131, "--json")
    assert code == 0
    stages = json.loads(out)["stages"]
    assert [(s["height"], s["width"]) for s in stages] == [(25, 33), (13, 17), (7, 9), (4, 5)]
    assert [s["stride"] for s in stages] == [4, 8, 16, 32]  # 97 / 7 would round to 14, 97 / 4 to 24


@pytest.mark.slow
def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "swiftformer", "info", "--model", "s", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["variant"] == "s"


def test_bad_arguments(capsys, model_dir, images):
    code, _, err = run(capsys, "predict", images[0][0], "--model", model_dir, "--top-k", 0)
    assert code == 2 and "--top-k must be at least 1, got 0" in err
    code, _, err = run(capsys, "bench", "--model", model_dir, "--batch-size", 0)
    assert code == 2 and "--batch-size must be at least 1, got 0" in err and "top-k" not in err


def test_predict_images_of_different_preprocessed_sizes(capsys, model_dir, images, tmp_path):
    # A shortest-edge resize without crop keeps aspect ratios: images cannot share one batch tensor.
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    SwiftFormerImageProcessor(size={"shortest_edge": 48}).save_pretrained(folder)
    paths, _ = images
    code, out, _ = run(capsys, "predict", *paths, "--model", folder, "--json", "--backend", "inductor")
    assert code == 0
    assert [len(json.loads(line)["predictions"]) for line in out.splitlines()] == [4, 4]


@pytest.mark.slow
def test_predict_fast_path_equals_plain_model(capsys, model_dir, images):
    """The default: precision and backend "auto" (on a CPU without native bf16 fp32, on a runtime if installed)."""
    paths, _ = images
    _, fast, err = run(capsys, "predict", *paths, "--model", model_dir, "--json")
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1  # one line saying what runs and why, on stderr: stdout stays JSON lines
    if not cpu_info().native_bf16:
        assert "note: fp32: this CPU has no native bf16" in err
    _, plain, _ = run(capsys, "predict", *paths, "--model", model_dir, "--json", "--no-optimize")
    for a, b in zip(fast.splitlines(), plain.splitlines()):
        pa, pb = json.loads(a)["predictions"], json.loads(b)["predictions"]
        assert [p["index"] for p in pa] == [p["index"] for p in pb]
        tolerance = {"abs": 0.05} if cpu_info().native_bf16 else {"rel": 1e-5}  # auto: bf16 where native
        assert [p["score"] for p in pa] == pytest.approx([p["score"] for p in pb], **tolerance)


def _top(out: str) -> list[list[tuple[int, float]]]:
    return [[(p["index"], p["score"]) for p in json.loads(line)["predictions"]] for line in out.splitlines()]


def test_predict_bf16_agrees_with_fp32(capsys, model_dir, images):
    paths, _ = images
    inductor = ("--json", "--backend", "inductor")  # OpenVINO (bf16's small-batch runtime) only in a subprocess
    _, fp32, _ = run(capsys, "predict", *paths, "--model", model_dir, *inductor, "--precision", "fp32")
    emulated = not cpu_info().native_bf16
    with pytest.warns(SlowPrecisionWarning, match="slower than fp32") if emulated else contextlib.nullcontext():
        code, bf16, err = run(capsys, "predict", *paths, "--model", model_dir, *inductor, "--precision", "bf16")
    assert code == 0
    assert "note: bf16 (requested" in err
    for a, b in zip(_top(fp32), _top(bf16)):
        assert a[0][0] == b[0][0]
        assert [s for _, s in b] == pytest.approx([s for _, s in a], abs=0.05)


@pytest.mark.slow
def test_predict_openvino_backend_matches_fp32(capsys, model_dir, images):
    """fp32 on both sides. In a fresh process: OpenVINO's CPU plugin left in the test process crashed later
    TensorFlow tests."""
    pytest.importorskip("openvino")
    paths, _ = images
    fp32_flags = ("--json", "--precision", "fp32")
    _, fp32, _ = run(capsys, "predict", *paths, "--model", model_dir, *fp32_flags, "--backend", "inductor")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "swiftformer",
            "predict",
            *paths,
            "--model",
            str(model_dir),
            *fp32_flags,
            "--backend",
            "openvino",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for a, b in zip(_top(fp32), _top(result.stdout), strict=True):
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in b] == pytest.approx([s for _, s in a], rel=1e-4)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--no-optimize", "--precision", "bf16"], "--no-optimize runs the model as loaded"),
        (["--no-optimize", "--backend", "openvino"], "--no-optimize runs the model as loaded"),
        (["--no-optimize", "--precision", "fp32", "--compile"], "--no-optimize runs the model as loaded"),
        (["--backend", "openvino", "--compile"], "--compile is for the inductor backend"),
        (["--backend", "onnxruntime", "--compile"], "--compile is for the inductor backend"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "--backend onnxruntime runs fp32 only"),
    ],
)
def test_predict_rejects_conflicting_options(capsys, model_dir, images, flags, message):
    code, out, err = run(capsys, "predict", images[0][0], "--model", model_dir, *flags)
    assert code != 0 and out == ""
    assert message in err and "Traceback" not in err


def _strict_json(line: str) -> dict:
    """json.loads that rejects NaN and Infinity, as every JSON parser but Python's does."""

    def reject(constant: str):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(line, parse_constant=reject)


@pytest.mark.parametrize("flags", [["--backend", "inductor"], ["--no-optimize"]])
def test_predict_non_finite_logits_are_an_error_not_nan_json(capsys, model_dir, images, tmp_path, flags):
    folder = tmp_path / "nan-model"
    model = SwiftFormerForImageClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.head.bias[1] = float("nan")
    model.save_pretrained(folder)
    SwiftFormerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    paths, _ = images
    code, out, _ = run(capsys, "predict", *paths, "--model", folder, "--json", *flags)
    assert code == 1
    rows = [_strict_json(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == paths
    assert all("predictions" not in r and "not finite" in r["error"] for r in rows)
    code, out, err = run(capsys, "predict", paths[0], "--model", folder, *flags)
    assert code == 1 and out == "" and "not finite" in err


def test_info_hardware_json_needs_no_model(capsys):
    code, out, _ = run(capsys, "info", "--hardware", "--json")
    assert code == 0
    report = json.loads(out)
    assert {
        "cpu",
        "vendor",
        "cores",
        "torch_threads",
        "isa",
        "native_bf16",
        "native_int8",
        "auto_precision",
        "auto_precision_reason",
        "auto_backend_batch_1",
        "auto_backend_batch_32",
        "auto_small_batch_max",
        "installed_backends",
    } <= set(report)
    cpu = cpu_info()
    assert report["cpu"] == cpu.model and report["isa"] == list(cpu.isa_features) and report["cores"] == cpu.cores
    assert report["native_bf16"] is cpu.native_bf16
    assert report["auto_precision"] == ("bf16" if cpu.native_bf16 else "fp32")


def test_info_hardware_text_and_with_a_model(capsys):
    code, out, _ = run(capsys, "info", "--hardware")
    assert code == 0
    assert "hardware:" in out and cpu_info().model in out and "auto precision:" in out and "auto backend:" in out
    code, out, _ = run(capsys, "info", "--model", "xs", "--hardware", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["variant"] == "xs" and report["hardware"]["cpu"] == cpu_info().model


def test_info_without_model_or_hardware_is_a_usage_error(capsys):
    code, out, err = run(capsys, "info")
    assert code == 2 and out == ""
    assert "--model is required" in err and "--hardware" in err
