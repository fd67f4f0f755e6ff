"""The TFLite bundle's parts besides its graph: the TFLite Metadata, the GPU delegate check and the int8 interface.

The graph (uint8 ``images`` in, ``probabilities`` out, the normalization inside) is converted from the Keras model
by :func:`swiftformer.export.keras.convert_tflite_bundle`. This module then

* writes the **TFLite Metadata** (the ``TFLITE_METADATA`` entry MediaPipe Tasks and Android's TFLite Support read)
  through the official schema bindings: the metadata flatbuffer with the generated object API of
  ``metadata_schema.fbs`` (``mediapipe.tasks.metadata.metadata_schema_py_generated``, shipped by MediaPipe), the
  model's ``buffers`` / ``metadata`` entry with the generated object API of the TFLite schema
  (``ai_edge_litert.schema_py_generated``), and ``labels.txt`` appended as a zip, as MediaPipe's
  ``MetadataPopulator`` does (its module needs ``mediapipe.tasks.cc``, which the PyPI wheels lack);
* reads it back (:func:`read_metadata`, :func:`associated_files`), which the export does before writing anything;
* asks TensorFlow's model analyzer whether the GPU delegate takes every op (:func:`gpu_compatibility`);
* checks that an int8 bundle takes raw pixels: uint8 input, scale 1, zero point 0 (:func:`quantization`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import zipfile
from typing import TYPE_CHECKING, Any

from ..errors import ExportError

if TYPE_CHECKING:
    from .bundle import BundleSpec

METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry MediaPipe and TFLite Support look up
METADATA_IDENTIFIER = b"M001"  # metadata_schema.fbs's file_identifier
MODEL_IDENTIFIER = b"TFL3"
# Every field written here exists since metadata schema 1.0.0 (AssociatedFile.version, 1.4.1, is not set):
# the version MetadataPopulator computes for such metadata.
MIN_PARSER_VERSION = "1.0.0"
METADATA_SCHEMA = "mediapipe.tasks.metadata.metadata_schema_py_generated"
MODEL_SCHEMA = "ai_edge_litert.schema_py_generated"
ANALYZER = "tf.lite.experimental.Analyzer (gpu_compatibility=True)"


def _schemas() -> tuple[Any, Any]:
    """(the metadata schema module, the TFLite schema module), or an ImportError naming the package."""
    from .formats import FORMATS

    try:
        return importlib.import_module(METADATA_SCHEMA), importlib.import_module(MODEL_SCHEMA)
    except ImportError as err:
        raise ImportError(
            f"a TFLite bundle's metadata needs the TFLite Metadata schema of mediapipe and ai-edge-litert ({err}): "
            f"{FORMATS['tflite'].install_hint}"
        ) from None


def _metadata_object(spec: BundleSpec, info: dict[str, str], num_labels: int, schema: Any) -> Any:
    """The ``ModelMetadataT`` of a bundle: ``info`` (name, description, version, author, license), the input image
    (RGB, raw pixels: mean 0 / std 1, range 0..255) and the output probabilities with ``labels.txt``."""
    from .bundle import INPUT_NAME, LABELS_FILE, OUTPUT_NAME

    image = schema.TensorMetadataT()
    image.name = INPUT_NAME
    image.description = (
        f"RGB image, {spec.size[0]}x{spec.size[1]} (height x width), uint8 pixels as decoded: the model normalizes "
        f"them itself (mean {spec.mean}, std {spec.std}, rescale {spec.rescale:.6g} inside the graph)"
    )
    image.content = schema.ContentT()
    image.content.contentPropertiesType = schema.ContentProperties.ImageProperties
    image.content.contentProperties = schema.ImagePropertiesT()
    image.content.contentProperties.colorSpace = schema.ColorSpaceType.RGB
    identity = schema.NormalizationOptionsT()  # what the app does to the pixels: nothing (the graph normalizes)
    identity.mean, identity.std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    unit = schema.ProcessUnitT()
    unit.optionsType = schema.ProcessUnitOptions.NormalizationOptions
    unit.options = identity
    image.processUnits = [unit]
    image.stats = schema.StatsT()
    image.stats.min, image.stats.max = [0.0], [255.0]

    probabilities = schema.TensorMetadataT()
    probabilities.name = OUTPUT_NAME
    probabilities.description = f"softmax probabilities of the {num_labels} classes, in the order of {LABELS_FILE}"
    probabilities.content = schema.ContentT()
    probabilities.content.contentPropertiesType = schema.ContentProperties.FeatureProperties
    probabilities.content.contentProperties = schema.FeaturePropertiesT()
    probabilities.stats = schema.StatsT()
    probabilities.stats.min, probabilities.stats.max = [0.0], [1.0]
    labels = schema.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = "the class names, one a line, in the order of the output"
    labels.type = schema.AssociatedFileType.TENSOR_AXIS_LABELS
    probabilities.associatedFiles = [labels]

    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [probabilities]
    model = schema.ModelMetadataT()
    model.name, model.description, model.version = info["name"], info["description"], info["version"]
    model.author, model.license = info["author"], info["license"]
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION
    return model


def description(spec: BundleSpec, precision: str) -> str:
    """The bundle's default description (``bundle_info['description']`` replaces it)."""
    from .bundle import INPUT_NAME, OUTPUT_NAME

    n = len(spec.labels)
    output = f"uint8 (1, {n}), real = scale * (q - zero_point)" if precision == "int8" else f"float32 (1, {n})"
    return (
        f"SwiftFormer image classifier over {n} classes ({precision}): input {INPUT_NAME} uint8 RGB (1, {spec.size[0]}, "
        f"{spec.size[1]}, 3), raw pixels (the normalization is inside); output {OUTPUT_NAME} {output}, softmax"
    )


def with_metadata(model: bytes, spec: BundleSpec, info: dict[str, str]) -> bytes:
    """``model`` (a ``.tflite`` flatbuffer with one input and one output) with its tensors named ``images`` and
    ``probabilities``, the TFLite Metadata of :func:`_metadata_object` in a ``TFLITE_METADATA`` buffer, and
    ``labels.txt`` appended as a zip (where MediaPipe looks for associated files)."""
    import flatbuffers
    import numpy as np

    from .bundle import INPUT_NAME, LABELS_FILE, OUTPUT_NAME

    meta_schema, model_schema = _schemas()
    builder = flatbuffers.Builder(0)
    builder.Finish(_metadata_object(spec, info, len(spec.labels), meta_schema).Pack(builder), METADATA_IDENTIFIER)
    metadata_buffer = bytes(builder.Output())

    tflite = model_schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if any(getattr(b, "offset", 0) > 1 for b in tflite.buffers or []):  # weights outside the flatbuffer (>2 GB)
        raise ExportError("the converted model keeps its weights outside the flatbuffer; cannot add metadata")
    (graph,) = tflite.subgraphs
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ExportError(f"a bundle has one input and one output, the converted model {graph.inputs}/{graph.outputs}")
    graph.tensors[graph.inputs[0]].name = INPUT_NAME  # (the converter names the output Identity)
    graph.tensors[graph.outputs[0]].name = OUTPUT_NAME
    buffer = model_schema.BufferT()
    buffer.data = np.frombuffer(metadata_buffer, dtype=np.uint8)
    tflite.buffers.append(buffer)
    entry = model_schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(tflite.buffers) - 1
    tflite.metadata = [m for m in tflite.metadata or [] if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(model) + len(metadata_buffer) + 1024)
    builder.Finish(tflite.Pack(builder), MODEL_IDENTIFIER)

    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as archive:  # appended after the flatbuffer, as MetadataPopulator packs files
        archive.writestr(LABELS_FILE, "".join(f"{label}\n" for label in spec.labels))
    return out.getvalue()


def _metadata_buffer(model: bytes) -> bytes:
    _, model_schema = _schemas()
    tflite = model_schema.Model.GetRootAsModel(model, 0)
    for i in range(tflite.MetadataLength()):
        entry = tflite.Metadata(i)
        if entry.Name().decode("utf-8") == METADATA_NAME:
            return bytes(tflite.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    raise ExportError(f"the model holds no {METADATA_NAME}")


def read_metadata(model: bytes) -> dict[str, Any]:
    """The TFLite Metadata of ``model`` read back through the schema bindings, as plain values: name,
    description, version, author, license, min_parser_version, and per tensor its name, description, content,
    normalization, stats and associated files."""
    meta_schema, _ = _schemas()
    buffer = _metadata_buffer(model)
    if not meta_schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ExportError(f"the {METADATA_NAME} buffer is not TFLite Metadata (identifier {buffer[4:8]!r})")
    root = meta_schema.ModelMetadataT.InitFromPackedBuf(bytearray(buffer), 0)
    (subgraph,) = root.subgraphMetadata

    def text(value: Any) -> str | None:
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def tensor(t: Any) -> dict[str, Any]:
        units = [
            u.options
            for u in t.processUnits or []
            if u.optionsType == meta_schema.ProcessUnitOptions.NormalizationOptions
        ]
        return {
            "name": text(t.name),
            "description": text(t.description),
            "content": t.content.contentPropertiesType,
            "color_space": getattr(t.content.contentProperties, "colorSpace", None),
            "normalization": [{"mean": list(u.mean), "std": list(u.std)} for u in units],
            "stats": {"min": list(t.stats.min), "max": list(t.stats.max)} if t.stats else None,
            "associated_files": [
                {"name": text(f.name), "type": f.type, "description": text(f.description)}
                for f in t.associatedFiles or []
            ],
        }

    return {
        **{k: text(getattr(root, k)) for k in ("name", "description", "version", "author", "license")},
        "min_parser_version": text(root.minParserVersion),
        "inputs": [tensor(t) for t in subgraph.inputTensorMetadata],
        "outputs": [tensor(t) for t in subgraph.outputTensorMetadata],
    }


def associated_files(model: bytes) -> dict[str, bytes]:
    """The files packed after the flatbuffer (the zip MediaPipe reads), by name."""
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def gpu_compatibility(model: bytes) -> dict[str, Any]:
    """TensorFlow's model analyzer on ``model`` with ``gpu_compatibility=True``: its verdict line, the ops it
    finds the GPU delegate cannot run (its ``GPU COMPATIBILITY WARNING`` lines; empty: none) and whether it calls
    the model compatible. The analyzer prints its report; it is captured, not shown."""
    import tensorflow as tf

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tf.lite.experimental.Analyzer.analyze(model_content=model, gpu_compatibility=True)
    lines = [line.strip() for line in printed.getvalue().splitlines()]
    warnings = [line for line in lines if "GPU COMPATIBILITY WARNING" in line]
    verdicts = [
        line for line in lines if "compatible with GPU delegate" in line or "GPU delegate compatibility" in line
    ]
    return {
        "analyzer": f"{ANALYZER}, TensorFlow {tf.__version__}",
        "compatible": not warnings and any("looks compatible" in line for line in verdicts),
        "verdict": verdicts[0] if verdicts else "(no verdict printed)",
        "incompatible_ops": warnings,
    }


def quantization(model: bytes) -> dict[str, Any]:
    """The input's and output's dtype and (scale, zero point) as LiteRT reads them; an int8 bundle whose input is
    not uint8 with scale 1 and zero point 0 (raw pixels in unchanged) is an :class:`ExportError`."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    details = {"input": interpreter.get_input_details()[0], "output": interpreter.get_output_details()[0]}
    found = {
        k: {"dtype": d["dtype"].__name__, "scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}
        for k, d in details.items()
    }
    if found["input"] != {"dtype": "uint8", "scale": 1.0, "zero_point": 0}:
        raise ExportError(f"the int8 bundle's input must be uint8 with scale 1 and zero point 0, got {found['input']}")
    if found["output"]["dtype"] != "uint8":
        raise ExportError(f"the int8 bundle's output must be uint8, got {found['output']}")
    return found


__all__ = [
    "METADATA_NAME",
    "MIN_PARSER_VERSION",
    "associated_files",
    "description",
    "gpu_compatibility",
    "quantization",
    "read_metadata",
    "with_metadata",
]
