"""Core ML and ExecuTorch bundles (swiftformer/export/pytorch.py, bundle.py): the app feeds 8-bit RGB pixels and
reads probabilities; labels.txt and manifest.json beside the artifact.

ExecuTorch runs here: its bundle is compared with the eager model's softmax on the processor's preprocessing of
the same pixels, fp32, within 1e-5 absolute on the probabilities (measured 1.4e-6 on these images, tiny model),
with the same top-5. Core ML predicts on macOS only: its saved spec is checked everywhere (image input, classifier
outputs, labels, metadata, no L2-norm op); the comparison of its answers is skipped elsewhere, with that reason.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import bundle_images, make_model_dir, processor_probabilities
from swiftformer.cli import main
from swiftformer.export import export
from swiftformer.image_processing import load_processor
from swiftformer.inference import load_model

SIZE = 64
PROB_TOL = 1e-5  # fp32, absolute, on probabilities
LABELS10 = dict(enumerate(["apple", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"]))
IMAGENET_OFFSET = [0.485 * 255, 0.456 * 255, 0.406 * 255]  # the pixel value each channel's normalization maps to 0
NOT_ON_MACOS = "not executed: Core ML prediction needs macOS"


def need(module: str) -> None:
    """Skip unless installed (found, not imported: export() imports coremltools in a safe order)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"not installed: {module}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("mobile") / "model", SIZE, id2label=LABELS10, image_size=SIZE)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> np.ndarray:
    return bundle_images(tmp_path_factory.mktemp("images"), SIZE)


def bundle_export(model_dir: Path, path: Path, fmt: str, images: np.ndarray | None = None, **kwargs):
    processor, note = load_processor(model_dir)
    assert note is None
    return export(
        load_model(str(model_dir)),
        path,
        fmt,
        bundle=True,
        image_processor=processor,
        verify_inputs=images,
        latency_runs=0,
        **kwargs,
    )


def read_manifest(path: Path) -> dict:
    return json.loads((path.parent / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------- ExecuTorch
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_executorch_bundle_matches_the_eager_model_and_names_what_xnnpack_does_not_take(model_dir, images, tmp_path):
    need("executorch")
    from executorch.runtime import Runtime

    path = tmp_path / "app" / "swiftformer.pte"
    report = bundle_export(model_dir, path, "executorch", images)
    assert report.passed and report.bundle and report.top1_agreement == 1.0 and report.max_abs_diff <= PROB_TOL
    assert report.input_shape == [1, SIZE, SIZE, 3] and report.num_verify_inputs == len(images)
    assert sorted(p.name for p in path.parent.iterdir()) == ["labels.txt", "manifest.json", "swiftformer.pte"]

    # The .pte on its own, as an app runs it: one uint8 (1, H, W, 3) image a call.
    method = Runtime.get().load_program(path).load_method("forward")
    probs = torch.cat([method.execute([torch.from_numpy(image[None].copy())])[0] for image in images])
    expected = processor_probabilities(model_dir, images)
    assert (probs - expected).abs().max() <= PROB_TOL
    assert torch.equal(probs.topk(5).indices, expected.topk(5).indices)
    assert torch.allclose(probs.sum(-1), torch.ones(len(images)), atol=1e-5)

    # XNNPACK takes every op but the uint8 -> float32 conversion of the input (its partitioner converts no dtype).
    manifest = read_manifest(path)
    delegation = manifest["executorch"]["delegation"]
    assert delegation["subgraphs"] == 1 and delegation["delegated_ops"] >= 100
    assert delegation["not_delegated"] == {"dim_order_ops__to_dim_order_copy_default": 1}
    assert "uint8" in delegation["why"]["dim_order_ops__to_dim_order_copy_default"]
    assert any(
        f"XNNPACK runs {delegation['delegated_ops']} ops in 1 graph(s); outside it: "
        "dim_order_ops__to_dim_order_copy_default x1" in n
        for n in report.notes
    )
    # A .pte has no metadata field: the labels travel beside it, and the report says so.
    assert manifest["labels_in_artifact"] is False and manifest["labels"] == list(LABELS10.values())
    assert (path.parent / "labels.txt").read_text().splitlines() == list(LABELS10.values())
    assert any("labels travel in labels.txt and manifest.json" in n for n in report.notes)
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["input"]["layout"] == "NHWC" and manifest["input"]["dtype"] == "uint8"
    assert manifest["verification"]["executed"] is True and manifest["format"] == "executorch"


# ------------------------------------------------------------------------------------------- Core ML
def coreml_spec(path: Path):
    import coremltools as ct  # export() imported it already, in a safe order

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def mil_ops(spec) -> list:
    return [
        op for f in spec.mlProgram.functions.values() for b in f.block_specializations.values() for op in b.operations
    ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_coreml_bundle_is_an_image_classifier_with_labels_and_metadata(model_dir, images, tmp_path, precision):
    need("coremltools")
    path = tmp_path / "app" / "swiftformer.mlpackage"
    report = bundle_export(model_dir, path, "coreml", images, precision=precision)
    assert report.passed and report.bundle and report.input_shape == [1, SIZE, SIZE, 3]
    assert sorted(p.name for p in path.parent.iterdir()) == ["labels.txt", "manifest.json", "swiftformer.mlpackage"]

    spec = coreml_spec(path)
    description = spec.description
    (image,) = description.input
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert image.type.imageType.colorSpace == image.type.imageType.RGB
    assert (image.type.imageType.height, image.type.imageType.width) == (SIZE, SIZE)
    outputs = {o.name: o.type for o in description.output}
    assert set(outputs) == {"classLabel", "classLabel_probs"}
    assert outputs["classLabel"].WhichOneof("Type") == "stringType"
    assert outputs["classLabel_probs"].dictionaryType.WhichOneof("KeyType") == "stringKeyType"
    assert (description.predictedFeatureName, description.predictedProbabilitiesName) == (
        "classLabel",
        "classLabel_probs",
    )
    meta = description.metadata
    assert meta.author and meta.license and meta.versionString == "1" and "10 classes" in meta.shortDescription
    assert json.loads(meta.userDefined["labels"]) == list(LABELS10.values())
    assert json.loads(meta.userDefined["normalization"])["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(meta.userDefined["input"]) == {"name": "image", "type": "image", "color": "RGB", "size": [64, 64]}
    assert "swiftformer.config" in meta.userDefined

    ops = mil_ops(spec)
    types = [op.type for op in ops]
    (classify,) = [op for op in ops if op.type == "classify"]
    classes = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
    assert [c.immediateValue.tensor.strings.values[0] for c in classes] == list(LABELS10.values())
    from coremltools.proto import MIL_pb2

    value_type = classify.outputs[1].type.dictionaryType.valueType.tensorType.dataType
    assert MIL_pb2.DataType.Name(value_type) == "FLOAT64"  # the probabilities: string -> double
    # The ImageType's preprocessing: scale 1 (no mul), bias -offset per channel added to the image first, in float32
    # also in an fp16 model (the cast to float16 comes after it).
    assert types[:2] == ["const", "add"] and ops[1].inputs["x"].arguments[0].name == "image"
    bias = ops[0].attributes["val"].immediateValue.tensor.floats.values
    assert list(bias) == pytest.approx([-o for o in IMAGENET_OFFSET], rel=1e-6)
    biased = ops[1].outputs[0].name
    (first,) = [op for op in ops if "x" in op.inputs and op.inputs["x"].arguments[0].name == biased]
    assert first.type == ("cast" if precision == "fp16" else "conv")  # no scale (mul): it is in the conv weights
    # The L2 normalizations as 1x1 conv + rsqrt + mul: none of the ops F.normalize converts to.
    assert not {"reduce_l2_norm", "l2_norm", "real_div", "tile"} & set(types)
    assert types.count("rsqrt") == 2 * 4  # query and key of each of the 4 attention blocks

    manifest = read_manifest(path)
    assert manifest["precision"] == precision and manifest["labels_in_artifact"] is True
    assert manifest["input"]["type"] == "image" and manifest["input"]["preprocessing"]["scale"] == 1.0
    assert manifest["output"]["probabilities"] == "classLabel_probs"
    coreml = manifest["coreml"]
    assert coreml["compute_precision"] == ("float16" if precision == "fp16" else "float32")
    assert coreml["mil_ops"]["rsqrt"] == 8 and "reduce_l2_norm" not in coreml["mil_ops"]
    # What runs here: the float32 graph handed to coremltools, image minus offset in, against the reference.
    assert coreml["converted_graph_max_abs_diff"] <= PROB_TOL
    assert "ImageType's per-channel bias" in manifest["normalization"]["folded"]
    if sys.platform != "darwin":
        assert report.max_abs_diff is None and manifest["verification"]["executed"] is False
        assert any(n.startswith(NOT_ON_MACOS) for n in report.notes)


@pytest.mark.skipif(sys.platform != "darwin", reason=NOT_ON_MACOS)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coreml_bundle_predictions_match_the_eager_model(model_dir, images, tmp_path):
    need("coremltools")
    from PIL import Image

    path = tmp_path / "app" / "swiftformer.mlpackage"
    report = bundle_export(model_dir, path, "coreml", images)
    assert report.passed and report.top1_agreement == 1.0 and report.max_abs_diff <= 1e-4

    import coremltools as ct

    mlmodel = ct.models.MLModel(str(path))
    answers = [mlmodel.predict({"image": Image.fromarray(image)}) for image in images]
    probs = torch.tensor([[a["classLabel_probs"][label] for label in LABELS10.values()] for a in answers])
    expected = processor_probabilities(model_dir, images).double()
    assert (probs - expected).abs().max() <= 1e-4  # Core ML's own float32 kernels
    assert [a["classLabel"] for a in answers] == [LABELS10[int(i)] for i in expected.argmax(-1)]


# ------------------------------------------------------------------------------------------- command line
def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["export", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("fmt", "precision", "artifact"),
    [
        pytest.param("executorch", "fp32", "b.pte", marks=pytest.mark.slow),  # ~10-25 s: lowering, imports
        ("coreml", "fp16", "b.mlpackage"),
    ],
)
def test_cli_writes_mobile_bundles(model_dir, tmp_path, capsys, fmt, precision, artifact):
    need(fmt if fmt == "executorch" else "coremltools")
    output = tmp_path / "app" / artifact
    argv = ("--model", model_dir, "--format", fmt, "--precision", precision, "--bundle", "--output", output)
    code, out, err = cli(capsys, *argv, "--latency-runs", "0", "--num-verify", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["bundle"] and report["passed"] and report["input_shape"] == [1, SIZE, SIZE, 3]
    manifest = read_manifest(output)
    assert manifest["artifact"] == artifact and manifest["format"] == fmt and manifest["precision"] == precision
    assert (output.parent / "labels.txt").read_text().splitlines() == list(LABELS10.values())


def test_mobile_bundles_refused_in_one_line(model_dir, tmp_path, capsys):
    bundle = ("--model", model_dir, "--bundle")
    for fmt, precision, output, message in [
        ("executorch", "fp16", "x.pte", "executorch bundles are fp32, got precision 'fp16'"),
        ("coreml", "int8", "x.mlpackage", "coreml bundles are fp32, fp16, got precision 'int8'"),
    ]:
        code, out, err = cli(capsys, *bundle, "--format", fmt, "--precision", precision, "--output", tmp_path / output)
        assert code == 2 and out == "" and err.strip() == f"swiftformer: error: {message}"
    code, out, err = cli(capsys, *bundle, "--format", "openvino", "--output", tmp_path / "x-openvino")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "executorch (fp32)" in err and "coreml (fp32/fp16)" in err
    assert not list(tmp_path.iterdir())
