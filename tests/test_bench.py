"""``swiftformer bench``: every mode runs in its own process and reports the same fields; numbers are
checked for sanity and agreement, never for speed."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from _helpers import perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.cli.bench import add_arguments as add_bench_arguments
from swiftformer.cli.bench import run as run_bench
from swiftformer.hardware import cpu_info, hardware_line

FIELDS = {
    "mode",
    "image_size",
    "batch_size",
    "threads",
    "malloc_tuned",
    "latency_ms_median",
    "latency_ms_p90",
    "throughput_img_s",
    "first_call_s",
    "peak_rss_mb",
    "max_rel_diff",
    "top1_agreement",
    "precision",
    "backend",
}


TINY_BENCH = dict(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=7, image_size=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = SwiftFormerConfig(**TINY_BENCH)
    folder = tmp_path_factory.mktemp("bench") / "tiny"
    perturb_(SwiftFormerForImageClassification(config)).save_pretrained(folder)
    return folder


def bench(capsys, *argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert (
        run_bench(parser.parse_args([*argv, "--json", "--iterations", "3", "--warmup", "1", "--batch-size", "4"])) == 0
    )
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_fused_and_exported_runtime_modes(model_dir, capsys):
    modes = ["eager", "fused"] + [
        m for m, pkg in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")) if importlib.util.find_spec(pkg)
    ]
    modes += ["auto"]
    report = bench(capsys, "--model", str(model_dir), "--modes", *modes)
    assert report["model"] == str(model_dir) and [r["mode"] for r in report["rows"]] == modes
    # every report names the CPU it ran on and the malloc setting
    assert report["cpu"] == hardware_line() and report["hardware"]["isa"] == list(cpu_info().isa_features)
    assert report["malloc"].startswith(("tuned", "defaults"))
    for row in report["rows"]:
        assert "error" not in row, row
        assert set(row) >= FIELDS and row["image_size"] == 64 and row["batch_size"] == 4
        assert row["latency_ms_median"] > 0 and row["throughput_img_s"] > 0 and row["peak_rss_mb"] > 0
        if row["precision"] == "fp32":
            assert row["max_rel_diff"] <= 1e-5 and row["top1_agreement"] == 1.0, row["mode"]
        else:  # auto: bf16 on CPUs with native bf16
            assert row["max_rel_diff"] <= 0.1, row["mode"]
    rows = {r["mode"]: r for r in report["rows"]}
    assert (rows["fused"]["precision"], rows["fused"]["backend"]) == ("fp32", "fused")
    for runtime in ("onnxruntime", "openvino"):
        if runtime in rows:  # what the module reports it runs
            assert (rows[runtime]["precision"], rows[runtime]["backend"]) == ("fp32", runtime)
    auto = rows["auto"]
    assert auto["backend"] == "auto" and auto["reason"]
    assert auto["precision"] == ("bf16" if cpu_info().native_bf16 else "fp32")
    # batch 4 is a small batch: both figures from the runtime auto picks (or inductor if none is installed)
    assert auto["backend_batch_1"] == auto["backend_batch_n"]


@pytest.mark.slow
def test_text_report_names_the_cpu_and_malloc(model_dir, capsys):
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = ["--model", str(model_dir), "--modes", "fused", "--iterations", "2", "--warmup", "1", "--batch-size", "2"]
    assert run_bench(parser.parse_args([*args, "--no-tune-malloc"])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"CPU: {hardware_line()}; malloc: glibc defaults (--no-tune-malloc)"
    assert lines[-1].startswith("fused") and lines[-1].endswith("fp32 fused")


@pytest.mark.slow
def test_reference_adds_ratios(model_dir, capsys):
    pytest.importorskip("transformers")
    report = bench(capsys, "--model", str(model_dir), "--modes", "fused", "--reference")
    rows = {r["mode"]: r for r in report["rows"]}
    assert set(rows) == {"reference", "fused"} and rows["reference"]["latency_speedup"] == pytest.approx(1.0)
    assert rows["fused"]["latency_speedup"] > 0 and rows["fused"]["max_rel_diff"] <= 1e-5


def test_models_of_one_channel_and_non_square_size_are_fed_their_own_inputs(tmp_path, capsys):
    torch.manual_seed(0)
    config = SwiftFormerConfig(**{**TINY_BENCH, "num_channels": 1, "image_size": [40, 48]})
    perturb_(SwiftFormerForImageClassification(config)).save_pretrained(tmp_path / "gray")
    report = bench(capsys, "--model", str(tmp_path / "gray"), "--modes", "eager")
    assert "error" not in report["rows"][0], report["rows"][0]


def test_a_failing_mode_is_reported_not_raised(tmp_path, capsys):
    report = bench(capsys, "--model", str(tmp_path / "missing"), "--modes", "fused")
    assert report["rows"][0]["mode"] == "fused" and "error" in report["rows"][0]


# --------------------------------------------------------------------------------------------------
# swiftformer bench --artifact PATH --threads ...: an exported file in its own runtime
# --------------------------------------------------------------------------------------------------

ROW_FIELDS = {"threads", "threads_applied", "latency_ms_median", "latency_ms_p90", "throughput_img_s", "first_call_ms"}


@pytest.fixture(scope="module")
def tiny_model() -> SwiftFormerForImageClassification:
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=7, image_size=64)
    return perturb_(SwiftFormerForImageClassification(config)).eval()


@pytest.fixture(scope="module")
def onnx_artifacts(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """A plain ONNX export (dynamic batch, height, width) and an ONNX bundle with its .ort copy."""
    pytest.importorskip("onnxruntime")
    from swiftformer.export import export

    folder = tmp_path_factory.mktemp("artifacts")
    export(tiny_model, folder / "plain.onnx", "onnx", latency_runs=0)
    export(tiny_model, folder / "bundle" / "tiny.onnx", "onnx", bundle=True, latency_runs=0)
    return {
        "plain": folder / "plain.onnx",
        "bundle": folder / "bundle" / "tiny.onnx",
        "ort": folder / "bundle" / "tiny.ort",
    }


def bench_artifact_json(capsys, path: Path, *argv: str) -> dict:
    from swiftformer.cli import main

    status = main(["bench", "--artifact", str(path), "--json", "--iterations", "3", "--warmup", "1", *argv])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def check_artifact_report(report: dict, runtime: str, dtype: str, shape: list[int], threads=(1, 2)) -> None:
    assert report["runtime"] == runtime and report["runtime_version"]
    assert report["input"]["dtype"] == dtype and report["input"]["shape"] == shape
    assert report["output"]["shape"] == [1, 7] and report["output"]["dtype"] == "float32"
    assert report["cpu"] == hardware_line() and report["hardware"]["isa"] == list(cpu_info().isa_features)
    assert report["malloc"].startswith(("tuned", "defaults")) and report["size_mb"] > 0
    assert report["runs"] == 3 and report["warmup"] == 1 and report["execution"]
    assert [r["threads"] for r in report["rows"]] == list(threads)  # one row per thread count, in order
    for row in report["rows"]:
        assert set(row) == ROW_FIELDS
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"] and row["first_call_ms"] > 0
        assert row["throughput_img_s"] == pytest.approx(1e3 / row["latency_ms_median"])  # batch 1


def test_artifact_onnx_bundle_is_fed_uint8_images(onnx_artifacts, capsys):
    report = bench_artifact_json(capsys, onnx_artifacts["bundle"], "--threads", "1", "2")
    check_artifact_report(report, "ONNX Runtime", "uint8", [1, 64, 64, 3])  # the manifest's size, batch 1
    assert report["bundle"] and report["input"]["name"] == "images" and report["output"]["name"] == "probabilities"
    assert [r["threads_applied"] for r in report["rows"]] == [1, 2] and not report["notes"]
    assert "intra_op_num_threads" in report["execution"] and "graph optimizations all" in report["execution"]
    # the bundle's ORT-format copy is named by the same manifest
    report = bench_artifact_json(capsys, onnx_artifacts["ort"], "--threads", "2")
    check_artifact_report(report, "ONNX Runtime", "uint8", [1, 64, 64, 3], threads=(2,))
    assert report["bundle"]


def test_artifact_plain_onnx_is_fed_float_pixel_values(onnx_artifacts, capsys):
    # dynamic batch, height and width: batch 1 at the size of the config the export carries
    report = bench_artifact_json(capsys, onnx_artifacts["plain"], "--threads", "1", "2")
    check_artifact_report(report, "ONNX Runtime", "float32", [1, 3, 64, 64])
    assert not report["bundle"] and report["input"]["name"] == "pixel_values"
    report = bench_artifact_json(capsys, onnx_artifacts["plain"], "--threads", "1", "--image-size", "96")
    assert report["input"]["shape"] == [1, 3, 96, 96]


def test_artifact_text_report_names_the_cpu_and_malloc(onnx_artifacts, capsys):
    from swiftformer.cli import main

    argv = ["bench", "--artifact", str(onnx_artifacts["bundle"]), "--threads", "1", "2", "--iterations", "2"]
    assert main([*argv, "--warmup", "0", "--no-tune-malloc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"CPU: {hardware_line()}; malloc: glibc defaults (--no-tune-malloc)"
    assert "ONNX Runtime" in lines[1] and "bundle" in lines[1] and "uint8" in lines[2]
    assert [line.split()[:2] for line in lines[-2:]] == [["1", "1"], ["2", "2"]]


def test_bench_artifact_api(onnx_artifacts):
    from swiftformer.bench import bench_artifact

    report = bench_artifact(onnx_artifacts["plain"], threads=[1], runs=2, warmup=0, image_size=(64, 96))
    assert report.input["shape"] == [1, 3, 64, 96] and len(report.rows) == 1 and report.rows[0].threads == 1
    with pytest.raises(ValueError, match=r"image_size=32 does not apply: .* static input"):
        bench_artifact(onnx_artifacts["bundle"], threads=[1], runs=1, image_size=32)
    with pytest.raises(ValueError, match="threads must each be at least 1"):
        bench_artifact(onnx_artifacts["plain"], threads=[])


@pytest.mark.slow
def test_artifact_executorch(tiny_model, tmp_path, capsys):
    pytest.importorskip("executorch")
    from swiftformer.export import export

    export(tiny_model, tmp_path / "tiny.pte", "executorch", latency_runs=0)
    report = bench_artifact_json(capsys, tmp_path / "tiny.pte", "--threads", "1", "2")
    check_artifact_report(report, "ExecuTorch", "float32", [1, 3, 64, 64])
    # the thread count is set (ExecuTorch's threadpool, reset per count) and read back
    assert [r["threads_applied"] for r in report["rows"]] == [1, 2] and "threadpool" in report["execution"]


def test_artifact_tflite(tiny_model, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tensorflow")
    from swiftformer.export import export

    export(tiny_model, tmp_path / "tiny.tflite", "tflite", latency_runs=0)
    report = bench_artifact_json(capsys, tmp_path / "tiny.tflite", "--threads", "1", "2")
    check_artifact_report(report, "LiteRT", "float32", [1, 3, 64, 64])
    assert [r["threads_applied"] for r in report["rows"]] == [1, 2] and "XNNPACK" in report["execution"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--artifact", "{tmp}/missing.onnx"], "no such artifact: "),
        (["--artifact", "{tmp}/model.bin"], "cannot time a .bin artifact; the artifact must be one of .tflite, "),
        (["--artifact", "{tmp}/xs.mlpackage"], "Core ML runs only on macOS"),
        (["--artifact", "{tmp}/x.onnx", "--threads", "0"], "--threads must each be at least 1, got 0"),
        (["--artifact", "{tmp}/x.onnx", "--model", "xs"], "--artifact times the file alone: --model cannot be"),
        (["--artifact", "{tmp}/x.onnx", "--modes", "fused", "--batch-size", "2"], "--modes, --batch-size cannot"),
        (["--threads", "2"], "--threads applies to --artifact only"),
        (["--model", "xs", "--iterations", "0"], "--iterations must be at least 1"),  # the model modes too
        (["--artifact", "{tmp}/x.onnx"], "ONNX Runtime cannot load {tmp}/x.onnx: "),  # not an ONNX file
    ],
)
def test_bad_artifact_input_is_one_line(tmp_path, capsys, argv, message):
    from swiftformer.cli import main

    (tmp_path / "model.bin").write_bytes(b"\0")
    (tmp_path / "x.onnx").write_bytes(b"\0")
    status = main(["bench", *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("swiftformer: error: "), err
    assert message.replace("{tmp}", str(tmp_path)) in err, err
