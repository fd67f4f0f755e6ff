"""Export the Keras SwiftFormer classifier: TensorFlow SavedModel and TFLite (float32, float16, int8).

Every export is written to a temporary path beside the target, verified there against the Keras
model, and only then moved into place with ``os.replace``: a failed export never leaves a partial
file, nor replaces a good one. Each function returns an :class:`ExportReport`.

* :func:`export_saved_model` — a SavedModel whose ``serving_default`` signature takes
  ``pixel_values`` float32 ``[None, C, None, None]`` (any batch, any size) and returns ``logits``.
* :func:`export_tflite` — a ``.tflite`` flatbuffer via ``tf.lite.TFLiteConverter``: ``"float32"``,
  ``"float16"`` (weights in float16) or ``"int8"`` (full-integer ops, calibrated on a representative
  dataset; float32 input and output). Verified in the LiteRT interpreter (``ai_edge_litert``):
  float32 must agree within 1e-4 × max|logit|; for quantized models the report gives the top-1
  agreement with the Keras model on the verification inputs.
* :func:`export_model` — the one entry point for a CLI: loads a folder or hub id, then one of the above.

Needs the ``tf`` extra (TensorFlow, Keras 3, LiteRT): ``pip install '.[tf]'``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import median_ms

INSTALL_HINT = "pip install '.[tf]'  (or: pip install 'swiftformer[tf]')"
FLOAT32_REL_TOLERANCE = 1e-4
QUANTIZATIONS = ("float32", "float16", "int8")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ExportError(RuntimeError):
    """An export was written but failed its verification (nothing was moved into place)."""


@dataclass
class ExportReport:
    """What an export wrote and how it compares with the Keras model on the verification inputs.

    ``max_abs_diff`` is max |exported − Keras| over all logits; ``rel_diff`` divides it by max |Keras
    logit|; ``top1_agreement`` is the fraction of inputs whose arg-max class agrees;
    ``latency_ms`` is the median time of one batch-1 inference over ``latency_runs`` runs (NaN when
    ``latency_runs=0``).
    """

    path: str
    format: str
    quantization: str
    size_bytes: int
    input_shape: tuple
    num_verify_inputs: int
    max_abs_diff: float
    rel_diff: float
    top1_agreement: float
    latency_ms: float
    latency_runs: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict: a NaN (not timed) latency becomes ``None`` (JSON null)."""
        fields = asdict(self)
        if math.isnan(fields["latency_ms"]):
            fields["latency_ms"] = None
        return fields

    def summary(self) -> str:
        latency = "latency not timed" if math.isnan(self.latency_ms) else f"{self.latency_ms:.2f} ms/image (median)"
        return (
            f"{self.format} ({self.quantization}) → {self.path}: {self.size_bytes / 1e6:.2f} MB, "
            f"max|diff| {self.max_abs_diff:.3g} (rel {self.rel_diff:.3g}), top-1 agreement "
            f"{self.top1_agreement:.1%} on {self.num_verify_inputs} inputs, {latency}"
        )


def _require_tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(f"Exporting to SavedModel/TFLite needs TensorFlow: {INSTALL_HINT}") from None
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Exporting needs the TensorFlow Keras backend, but KERAS_BACKEND={keras.backend.backend()!r}: "
            "run with KERAS_BACKEND=tensorflow"
        )
    return tf


def _require_litert():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError(
            f"Verifying TFLite files needs the LiteRT interpreter (ai-edge-litert): {INSTALL_HINT}"
        ) from None
    return Interpreter


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


def _image_size(model, image_size) -> tuple[int, int]:
    size = model.config.image_size if image_size is None else image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _as_batch(array: Any, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One sample (C, H, W) or a batch (N, C, H, W) as a float32 (N, C, H, W) array, checked."""
    array = np.asarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] != channels:
        raise ValueError(
            f"expected pixel_values of shape (N, {channels}, H, W) or ({channels}, H, W), got {array.shape}"
        )
    if size is not None and tuple(array.shape[2:]) != tuple(size):
        raise ValueError(
            f"expected images of {size[0]}x{size[1]} (the export's input size), got {array.shape[2]}x{array.shape[3]}"
        )
    return array


def _load_images(paths: list[Path], size: tuple[int, int], image_processor=None) -> np.ndarray:
    from ..image_processing import SwiftFormerImageProcessor

    processor = image_processor or SwiftFormerImageProcessor(size={"height": size[0], "width": size[1]})
    return np.asarray(processor([str(p) for p in paths])["pixel_values"], dtype=np.float32)


def representative_samples(
    data: Any, channels: int, size: tuple[int, int], image_processor=None
) -> Iterable[np.ndarray]:
    """Yield (1, C, H, W) float32 samples from: a callable returning an iterable (of arrays, or of lists
    holding one array, as TFLite's ``representative_dataset``), an (N, C, H, W) array, a list of (C, H, W)
    / (1, C, H, W) arrays, image files, or a folder of images (preprocessed to the export size)."""
    if callable(data):
        data = data()
    if isinstance(data, (str, os.PathLike)):
        folder = Path(data)
        if not folder.is_dir():
            raise ValueError(f"representative data {folder} is not a folder of images")
        data = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not data:
            raise ValueError(f"representative data folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        data = list(_as_batch(data, channels, size))
    for item in data:
        if isinstance(item, (str, os.PathLike)):
            batch = _load_images([Path(item)], size, image_processor)
        else:
            if isinstance(item, (list, tuple)) and len(item) == 1:
                item = item[0]
            if isinstance(item, dict):
                item = item.get("pixel_values", next(iter(item.values())))
            batch = _as_batch(item, channels, size)
        yield from (sample[None] for sample in batch)


def _verification_inputs(model, size, verify_inputs, representative_data, num_verify, seed, image_processor=None):
    channels = model.config.num_channels
    samples = []
    if verify_inputs is not None:
        samples = list(representative_samples(verify_inputs, channels, size, image_processor))
    elif representative_data is not None:  # (a one-shot generator is used up by now: then random inputs)
        for sample in representative_samples(representative_data, channels, size, image_processor):
            samples.append(sample)
            if len(samples) == num_verify:
                break
    if not samples and verify_inputs is None:
        rng = np.random.default_rng(seed)
        samples = [rng.standard_normal((1, channels, *size), dtype=np.float32) for _ in range(num_verify)]
    if not samples:
        raise ValueError("no verification inputs")
    return np.concatenate(samples)


def _compare(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float, float]:
    max_abs = float(np.abs(actual.astype(np.float64) - expected).max())
    rel = max_abs / max(float(np.abs(expected).max()), 1e-30) if np.isfinite(max_abs) else float("inf")
    top1 = float(np.mean(actual.argmax(-1) == expected.argmax(-1)))
    return max_abs, rel, top1


def _keras_logits(model, inputs: np.ndarray) -> np.ndarray:
    import keras

    return np.concatenate(
        [
            np.asarray(keras.ops.convert_to_numpy(model(inputs[i : i + 8], training=False).logits))
            for i in range(0, len(inputs), 8)
        ]
    )


# ---------------------------------------------------------------------------------------------------
# Atomic placement
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _staging(target: Path, is_dir: bool):
    """A temporary path beside ``target``; removed unless the caller moved it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / ("export" if is_dir else target.name)
    try:
        yield staged
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place(staged: Path, target: Path) -> None:
    from ..io.files import replace_path

    replace_path(staged, target)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


# ---------------------------------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------------------------------


def _serving_module(model, input_shape):
    tf = _require_tf()

    class SwiftFormerServing(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32, name="pixel_values")])
        def serve(self, pixel_values):
            return {"logits": self.model(pixel_values, training=False).logits}

    return SwiftFormerServing(model)


def export_saved_model(
    model,
    export_dir: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    verify_inputs: Any = None,
    num_verify: int = 4,
    latency_runs: int = 20,
    seed: int = 0,
) -> ExportReport:
    """Write a SavedModel with a ``serving_default`` signature ``pixel_values [None, C, None, None]
    float32 → {"logits": (B, num_labels)}``, verify it (reloaded, at ``image_size`` and at a second size,
    within 1e-4 × max|logit|), then move it into place. ``image_size`` defaults to the config's."""
    tf = _require_tf()
    target = Path(export_dir)
    size = _image_size(model, image_size)
    inputs = _verification_inputs(model, size, verify_inputs, None, num_verify, seed)
    expected = _keras_logits(model, inputs)
    module = _serving_module(model, [None, model.config.num_channels, None, None])
    with _staging(target, is_dir=True) as staged:
        tf.saved_model.save(module, str(staged), signatures={"serving_default": module.serve})
        serve = tf.saved_model.load(str(staged)).signatures["serving_default"]
        actual = serve(pixel_values=tf.constant(inputs))["logits"].numpy()
        max_abs, rel, top1 = _compare(expected, actual)
        # The signature is shape-polymorphic: check a second input size too.
        other = np.random.default_rng(seed + 1).standard_normal(
            (2, model.config.num_channels, size[0] + 32, size[1] + 16), dtype=np.float32
        )
        _, rel_other, _ = _compare(
            _keras_logits(model, other), serve(pixel_values=tf.constant(other))["logits"].numpy()
        )
        if not (rel <= FLOAT32_REL_TOLERANCE and rel_other <= FLOAT32_REL_TOLERANCE):
            raise ExportError(
                f"SavedModel disagrees with the Keras model: rel diff {rel:.3g} at {size}, {rel_other:.3g} at another size "
                f"(tolerance {FLOAT32_REL_TOLERANCE:g}); nothing written to {target}"
            )
        first = tf.constant(inputs[:1])
        latency = _latency_ms(lambda: serve(pixel_values=first)["logits"].numpy(), latency_runs)
        _place(staged, target)
    return ExportReport(
        str(target),
        "saved_model",
        "float32",
        _dir_size(target),
        (None, model.config.num_channels, None, None),
        len(inputs),
        max_abs,
        rel,
        top1,
        latency,
        latency_runs,
    )


def _latency_ms(fn: Callable[[], Any], runs: int) -> float:
    """:func:`~swiftformer.runtime.median_ms` after two warm-up calls, NaN when not timed: this
    module's :class:`ExportReport` holds a float latency (documented NaN for ``latency_runs=0``)."""
    latency = median_ms(fn, runs, warmup=2)
    return math.nan if latency is None else latency


# ---------------------------------------------------------------------------------------------------
# TFLite
# ---------------------------------------------------------------------------------------------------


def convert_tflite(
    model,
    *,
    quantization: str = "float32",
    image_size: int | tuple[int, int] | None = None,
    batch_size: int | None = 1,
    representative_data: Any = None,
    image_processor=None,
) -> bytes:
    """The ``.tflite`` flatbuffer of ``model`` (input ``pixel_values`` (batch, C, H, W) float32, output logits)."""
    tf = _require_tf()
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    size = _image_size(model, image_size)
    channels = model.config.num_channels
    module = _serving_module(model, [batch_size, channels, *size])
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Freeze the variables into constants: the converter would otherwise keep them as resource
    # variables that the interpreter never initializes. Freezing also folds the BatchNorm/layer-scale
    # folding arithmetic into the weights.
    concrete = convert_variables_to_constants_v2(module.serve.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative_data is None:
            raise ValueError(
                "int8 quantization needs representative_data (a callable, arrays, image files or a folder)"
            )

        def dataset():
            for sample in representative_samples(representative_data, channels, size, image_processor):
                if batch_size not in (None, 1):
                    sample = np.repeat(sample, batch_size, axis=0)
                yield [sample]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32  # quantize/dequantize at the ends: the same interface
        converter.inference_output_type = tf.float32
    return converter.convert()


class TFLiteRunner:
    """Run a ``.tflite`` file with the LiteRT interpreter on NCHW float32 batches (one sample at a time
    for a batch-1 model)."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        interpreter_cls = _require_litert()
        self.interpreter = interpreter_cls(model_path=os.fspath(path), num_threads=num_threads or os.cpu_count() or 1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        batch = int(self.input["shape"][0])
        outputs = []
        for i in range(0, len(pixel_values), batch):
            chunk = np.ascontiguousarray(pixel_values[i : i + batch], dtype=np.float32)
            self.interpreter.set_tensor(self.input["index"], chunk)
            self.interpreter.invoke()
            outputs.append(np.array(self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(outputs)


def export_tflite(
    model,
    path: str | os.PathLike,
    *,
    quantization: str = "float32",
    image_size: int | tuple[int, int] | None = None,
    representative_data: Any = None,
    verify_inputs: Any = None,
    num_verify: int = 8,
    latency_runs: int = 20,
    num_threads: int | None = None,
    image_processor=None,
    seed: int = 0,
) -> ExportReport:
    """Convert to TFLite (batch 1, fixed ``image_size``), verify in LiteRT, write ``path`` atomically.

    Args:
        quantization: ``"float32"``; ``"float16"`` (float16 weights); ``"int8"`` (full-integer ops with
            float32 input/output, calibrated on ``representative_data``).
        representative_data: For int8: a callable (as TFLite's ``representative_dataset``), an
            (N, C, H, W) array, a list of (C, H, W) arrays, image files, or a folder of images.
        verify_inputs: Inputs to verify on (same forms); by default the first ``num_verify``
            representative samples, else seeded random normal inputs.
        num_threads: LiteRT threads for verification and latency (default: all CPUs).

    Raises:
        ExportError: float32 output differs from Keras by more than 1e-4 × max|logit| (the file is
            not written). Quantized exports report their top-1 agreement instead.
    """
    _require_litert()  # fail before the (slow) conversion
    size = _image_size(model, image_size)
    target = Path(path)
    flatbuffer = convert_tflite(
        model,
        quantization=quantization,
        image_size=size,
        batch_size=1,
        representative_data=representative_data,
        image_processor=image_processor,
    )
    inputs = _verification_inputs(model, size, verify_inputs, representative_data, num_verify, seed, image_processor)
    expected = _keras_logits(model, inputs)
    with _staging(target, is_dir=False) as staged:
        staged.write_bytes(flatbuffer)
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        runner = TFLiteRunner(staged, num_threads)
        max_abs, rel, top1 = _compare(expected, runner(inputs))
        if quantization == "float32" and not rel <= FLOAT32_REL_TOLERANCE:  # NaN fails too
            raise ExportError(
                f"TFLite float32 model disagrees with the Keras model: rel diff {rel:.3g} > {FLOAT32_REL_TOLERANCE:g}; "
                f"nothing written to {target}"
            )
        first = inputs[:1]
        latency = _latency_ms(lambda: runner(first), latency_runs)
        _place(staged, target)
    return ExportReport(
        str(target),
        "tflite",
        quantization,
        target.stat().st_size,
        (1, model.config.num_channels, *size),
        len(inputs),
        max_abs,
        rel,
        top1,
        latency,
        latency_runs,
    )


# ---------------------------------------------------------------------------------------------------
# One entry point (for the CLI)
# ---------------------------------------------------------------------------------------------------


def export_model(
    model_or_path: Any,
    output: str | os.PathLike,
    *,
    format: str = "tflite",
    quantization: str = "float32",
    image_size: int | tuple[int, int] | None = None,
    representative_data: Any = None,
    num_verify: int | None = None,
    latency_runs: int = 20,
    hub_options: dict[str, Any] | None = None,
) -> ExportReport:
    """Load ``model_or_path`` (a TF classifier, or a folder / hub id for
    ``TFSwiftFormerForImageClassification.from_pretrained``) and export it as ``format``
    (``"saved_model"`` or ``"tflite"``). See :func:`export_saved_model` and :func:`export_tflite`."""
    _require_tf()
    from ..keras.models import TFSwiftFormerForImageClassification

    model = model_or_path
    if not isinstance(model, TFSwiftFormerForImageClassification):
        model = TFSwiftFormerForImageClassification.from_pretrained(model_or_path, **(hub_options or {}))
    if format == "saved_model":
        if quantization != "float32":
            raise ValueError("a SavedModel is float32; use format='tflite' for float16 / int8")
        return export_saved_model(
            model, output, image_size=image_size, num_verify=num_verify or 4, latency_runs=latency_runs
        )
    if format == "tflite":
        return export_tflite(
            model,
            output,
            quantization=quantization,
            image_size=image_size,
            representative_data=representative_data,
            num_verify=num_verify or 8,
            latency_runs=latency_runs,
        )
    raise ValueError(f"format must be 'saved_model' or 'tflite', got {format!r}")


__all__ = [
    "ExportError",
    "ExportReport",
    "TFLiteRunner",
    "convert_tflite",
    "export_model",
    "export_saved_model",
    "export_tflite",
    "representative_samples",
]
