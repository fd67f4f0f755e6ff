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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], num_labels=7, image_size=64)
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


def test_a_failing_mode_is_reported_not_raised(tmp_path, capsys):
    report = bench(capsys, "--model", str(tmp_path / "missing"), "--modes", "fused")
    assert report["rows"][0]["mode"] == "fused" and "error" in report["rows"][0]
