"""The exported runtimes (swiftformer.inference.runtimes): the one ONNX graph export, ONNX Runtime and OpenVINO
backends agree with eager (fp32: 1e-5 relative; OpenVINO bf16: 0.1) at dynamic batch, height and width, and say
which precision they really run."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from _helpers import assert_close_rel, tiny_classifier
from swiftformer.hardware import FAKE_CPU_ENV, cpu_info
from swiftformer.inference import (
    ONNX_OPSET,
    PrecisionNotHonouredWarning,
    SlowPrecisionWarning,
    export_onnx_graph,
    fuse,
    optimize_for_inference,
    runtime_example,
)


def test_export_onnx_graph_is_dynamic_and_named(capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = tiny_classifier(image_size=64)
    example, dims = runtime_example(model.config)
    assert example.shape == (2, 3, 64, 64) and sorted(dims) == [0, 2, 3]
    proto = export_onnx_graph(fuse(model), example, dims)
    assert capsys.readouterr() == ("", "")  # the exporter's progress lines stay off the terminal
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == ONNX_OPSET
    assert "Gelu" in {n.op_type for n in proto.graph.node}  # opset 20: one fused kernel in onnxruntime
    shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert [proto.graph.input[0].name, proto.graph.output[0].name] == ["pixel_values", "logits"]
    assert shape[1] == 3 and all(isinstance(d, str) for d in (shape[0], shape[2], shape[3]))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 72, 64)
    assert_close_rel(torch.from_numpy(session.run(["logits"], {"pixel_values": x.numpy()})[0]), model(x).logits)


def openvino_backend_checks() -> None:
    """The OpenVINO backend agrees with eager (dynamic batch, height, width) and rejects bad input."""
    model = tiny_classifier(image_size=64)
    fast = optimize_for_inference(model, "fp32", backend="openvino")
    assert fast.hint == "f32"  # explicit: OpenVINO would pick bf16 on AMX CPUs by itself
    assert (fast.inference_precision, fast.precision, fast.backend) == ("f32", "fp32", "openvino")
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (5, 3, 64, 64), (2, 3, 80, 96)):
            x = torch.randn(*shape)
            assert_close_rel(fast(x), model(x).logits, what=f"openvino {shape}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bf16 = optimize_for_inference(model, "bf16", backend="openvino")
        x = torch.randn(16, 3, 64, 64)
        assert_close_rel(bf16(x), model(x).logits, rel=0.1, what="openvino bf16")
    # What the compiled model says it runs, never just the hint that was passed in.
    assert bf16.hint == "bf16"
    assert bf16.precision == {"f32": "fp32", "bf16": "bf16"}[bf16.inference_precision]
    not_honoured = [w for w in caught if issubclass(w.category, PrecisionNotHonouredWarning)]
    assert (len(not_honoured) == 1) is (bf16.precision != "bf16"), [str(w.message) for w in caught]
    # OpenVINO falls back to f32, it does not emulate: no "slow bf16" warning on this backend
    assert not [w for w in caught if issubclass(w.category, SlowPrecisionWarning)]
    cpu = cpu_info()
    if cpu.native_bf16:  # AVX512-BF16 or AMX: OpenVINO runs bf16 as asked
        assert bf16.precision == "bf16" and bf16.reason.startswith("bf16 (requested)")
    elif "avx_ne_convert" not in cpu.flags:  # AVX2-only (this project's EPYC): f32, said so and warned
        assert (bf16.inference_precision, bf16.precision) == ("f32", "fp32")
        assert bf16.reason.startswith("fp32: OpenVINO's CPU plugin runs f32 although bf16 was requested")
        assert "runs f32" in str(not_honoured[0].message) and not_honoured[0].filename == __file__
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        fast(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="int8 is not offered with backend='openvino'"):
        optimize_for_inference(model, "int8", backend="openvino")
    with pytest.raises(ValueError, match="backend must be one of auto, inductor, openvino, onnxruntime, got 'tvm'"):
        optimize_for_inference(model, "fp32", backend="tvm")


@pytest.mark.slow
def test_openvino_backend_matches_eager():
    """Run in a fresh process: OpenVINO's CPU plugin (TBB threads, AMX state) left in the test process
    has crashed later TensorFlow tests of the same session."""
    pytest.importorskip("openvino")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root / "tests")])}
    env.pop(FAKE_CPU_ENV, None)  # what OpenVINO runs depends on the real CPU: the checks read its real flags
    code = "import test_inference_runtimes as t; t.openvino_backend_checks(); print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_onnxruntime_backend_matches_eager():
    pytest.importorskip("onnxruntime")
    model = tiny_classifier(image_size=64)
    fast = optimize_for_inference(model, "fp32", backend="onnxruntime")
    assert (fast.precision, fast.backend) == ("fp32", "onnxruntime")
    assert fast.threads == torch.get_num_threads()
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (5, 3, 64, 64), (2, 3, 80, 96)):  # dynamic batch, height and width
            x = torch.randn(*shape)
            assert_close_rel(fast(x), model(x).logits, rel=1e-5, what=f"onnxruntime {shape}")
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        fast(torch.randn(2, 1, 64, 64))
    for precision in ("bf16", "int8"):
        with pytest.raises(ValueError, match=f"{precision} is not offered with backend='onnxruntime'"):
            optimize_for_inference(model, precision, backend="onnxruntime")


def test_a_runtime_backend_converts_at_a_non_square_config_size():
    """Small sizes are exported static: the example must be the config's height × width, not its height twice."""
    pytest.importorskip("onnxruntime")
    model = tiny_classifier(image_size=[24, 64])
    fast = optimize_for_inference(model, "fp32", backend="onnxruntime")
    x = torch.randn(2, 3, 24, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close_rel(fast(x), model(x).logits, rel=1e-5, what="24x64")
