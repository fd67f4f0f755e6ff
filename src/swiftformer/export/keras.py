"""Export the Keras SwiftFormer classifier: TensorFlow SavedModel and TFLite (fp32, fp16, int8).

Every export goes through :mod:`.common` as the PyTorch exports do: written to a staging folder beside
the target, verified there against the Keras model, and only then moved into place (fsync'ed, then
renamed; only an earlier export of the same format is ever replaced). A failed export leaves neither a
partial file nor a replaced good one. Each function returns the same
:class:`~swiftformer.export.common.ExportReport` as :func:`swiftformer.export.export` (``reference``:
the Keras model).

* :func:`export_saved_model` — a SavedModel whose ``serving_default`` signature takes
  ``pixel_values`` float32 ``[None, C, None, None]`` (any batch, any size) and returns ``logits``.
* :func:`export_tflite` — a ``.tflite`` flatbuffer via ``tf.lite.TFLiteConverter``: ``precision``
  ``"fp32"``, ``"fp16"`` (weights in float16) or ``"int8"`` (full-integer ops, calibrated on a
  representative dataset; float32 input and output). Verified in the LiteRT interpreter
  (``ai_edge_litert``): fp32 must agree within the tflite record's ``tolerance`` (:mod:`.formats`);
  quantized models report their difference and top-1 agreement with the Keras model on the
  verification inputs, unchecked unless given a ``tolerance``.
* :func:`export_model` — the one entry point for a CLI: loads a folder or hub id, then one of the above.

Needs the ``tf`` extra (TensorFlow, Keras 3, LiteRT): ``pip install .[tf]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ExportError, ExportVerificationError
from ..image_processing import load_processor
from .common import (
    ExportReport,
    calibration_processor,
    checked_report,
    compare,
    export_image_size,
    load_calibration_images,
    place,
    staging,
    target_path,
)
from .formats import FORMATS

SAVEDMODEL, TFLITE = FORMATS["savedmodel"], FORMATS["tflite"]
REFERENCE = "Keras model (fp32)"


def _require_tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(f"Exporting to SavedModel/TFLite needs TensorFlow: {TFLITE.install_hint}") from None
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
            f"Verifying TFLite files needs the LiteRT interpreter (ai-edge-litert): {TFLITE.install_hint}"
        ) from None
    return Interpreter


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


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


def representative_samples(
    data: Any, channels: int, size: tuple[int, int], image_processor=None
) -> Iterable[np.ndarray]:
    """Yield (1, C, H, W) float32 samples from: a callable returning an iterable (of arrays, or of lists
    holding one array, as TFLite's ``representative_dataset``), an (N, C, H, W) array, a list of (C, H, W)
    / (1, C, H, W) arrays, image files, or a folder of images.

    A folder is read by :func:`~swiftformer.export.common.load_calibration_images` (recursively, up to
    64 images with every class folder represented), as ``swiftformer export --calibration`` does; image
    files and folders are warped to ``size`` and normalized with ``image_processor``'s mean/std
    (default ImageNet's).
    """
    if callable(data):
        data = data()
    if isinstance(data, (str, os.PathLike)):
        data = load_calibration_images(data, size, image_processor=image_processor, return_tensors="np")
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        data = list(_as_batch(data, channels, size))
    processor = None
    for item in data:
        if isinstance(item, (str, os.PathLike)):
            processor = processor or calibration_processor(size, image_processor)
            batch = processor(os.fspath(item))["pixel_values"]
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


def _keras_logits(model, inputs: np.ndarray) -> np.ndarray:
    """The reference: the Keras model's logits, 8 inputs at a time."""
    import keras

    return np.concatenate(
        [
            np.asarray(keras.ops.convert_to_numpy(model(inputs[i : i + 8], training=False).logits))
            for i in range(0, len(inputs), 8)
        ]
    )


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
    tolerance: float | None = None,
) -> ExportReport:
    """Write a SavedModel with a ``serving_default`` signature ``pixel_values [None, C, None, None]
    float32 → {"logits": (B, num_labels)}``, verify it (reloaded, at ``image_size`` and at a second size,
    within ``tolerance``, default the savedmodel record's), then move it into place. ``image_size`` defaults
    to the config's; ``export_dir`` must be new or an earlier SavedModel (it holds ``saved_model.pb``).

    Raises:
        ExportVerificationError: The reloaded SavedModel disagrees with the Keras model (nothing written).
    """
    tf = _require_tf()
    target = target_path(export_dir, SAVEDMODEL)
    size = export_image_size(model, image_size)
    channels = model.config.num_channels
    inputs = _verification_inputs(model, size, verify_inputs, None, num_verify, seed)
    expected = _keras_logits(model, inputs)
    module = _serving_module(model, [None, channels, None, None])
    with staging(target, SAVEDMODEL) as staged:
        tf.saved_model.save(module, os.fspath(staged), signatures={"serving_default": module.serve})
        serve = tf.saved_model.load(os.fspath(staged)).signatures["serving_default"]

        def run(x: np.ndarray) -> np.ndarray:
            return serve(pixel_values=tf.constant(x))["logits"].numpy()

        max_abs, rel, top1 = compare(expected, run(inputs))
        # The signature is shape-polymorphic: check a second input size too.
        other_size = (size[0] + 32, size[1] + 16)
        other = np.random.default_rng(seed + 1).standard_normal((2, channels, *other_size), dtype=np.float32)
        other_abs, other_rel, _ = compare(_keras_logits(model, other), run(other))
        first = inputs[:1]
        report = checked_report(
            staged,
            target,
            (max(max_abs, other_abs), max(rel, other_rel), top1),
            lambda: run(first),
            latency_runs,
            format=SAVEDMODEL.name,
            precision="fp32",
            input_shape=["batch", channels, "height", "width"],
            num_verify_inputs=len(inputs),
            reference=REFERENCE,
            tolerance=SAVEDMODEL.tolerance if tolerance is None else tolerance,
            notes=[
                f"checked at {size[0]}x{size[1]} (relative {rel:.3g}) and at {other_size[0]}x{other_size[1]} "
                f"(relative {other_rel:.3g}); the differences are the larger of the two"
            ],
        )
        place(staged, target)
    return report


# ---------------------------------------------------------------------------------------------------
# TFLite
# ---------------------------------------------------------------------------------------------------


def convert_tflite(
    model,
    *,
    precision: str = "fp32",
    image_size: int | tuple[int, int] | None = None,
    batch_size: int | None = 1,
    representative_data: Any = None,
    image_processor=None,
) -> bytes:
    """The ``.tflite`` flatbuffer of ``model`` (input ``pixel_values`` (batch, C, H, W) float32, output
    logits); ``precision`` and ``representative_data`` as in :func:`export_tflite`."""
    TFLITE.check_precision(precision)
    tf = _require_tf()
    size = export_image_size(model, image_size)
    channels = model.config.num_channels
    module = _serving_module(model, [batch_size, channels, *size])
    if precision == "int8" and representative_data is None:
        raise ValueError("int8 quantization needs representative_data (a callable, arrays, image files or a folder)")

    def dataset():
        for sample in representative_samples(representative_data, channels, size, image_processor):
            if batch_size not in (None, 1):
                sample = np.repeat(sample, batch_size, axis=0)
            yield [sample]

    # int8: quantize/dequantize at the ends, the same float32 interface as fp32
    return _convert(module, precision, dataset, tf.float32)


def _convert(module: Any, precision: str, dataset: Any, int8_interface: Any) -> bytes:
    """The flatbuffer of ``module.serve``: float32 weights (``fp32``), float16 weights (``fp16``), or full-integer
    ops (``int8``) calibrated on ``dataset()`` (yields ``[sample]`` lists as TFLite's ``representative_dataset``),
    its input and output of type ``int8_interface`` (``tf.float32``: quantized inside; ``tf.uint8``: quantized)."""
    tf = _require_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Freeze the variables into constants: the converter would otherwise keep them as resource
    # variables that the interpreter never initializes. Freezing also folds the BatchNorm/layer-scale
    # folding arithmetic into the weights.
    concrete = convert_variables_to_constants_v2(module.serve.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = int8_interface
        converter.inference_output_type = int8_interface
    return converter.convert()


def _bundle_module(model, spec, float_input: bool):
    """``serve(images (1, H, W, 3)) -> {"probabilities": (1, num_labels)}`` around ``model``, whose first
    convolution already holds the normalization's scale (:func:`~swiftformer.export.bundle.scaled_weight`): the
    graph subtracts the offset (before the convolution's zero padding, as :mod:`.bundle` explains) and applies the
    softmax. ``images`` are uint8, or float32 pixel values 0..255 for the int8 converter, which makes the input
    uint8 itself (a float input is what its calibration measures)."""
    tf: Any = _require_tf()
    from .bundle import INPUT_NAME, OUTPUT_NAME

    offset = tf.constant(spec.offset, tf.float32)  # (3,): broadcast over the channels of NHWC
    signature = tf.TensorSpec([1, *spec.size, 3], tf.float32 if float_input else tf.uint8, name=INPUT_NAME)

    class SwiftFormerBundle(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=[signature])
        def serve(self, images):
            x = tf.cast(images, tf.float32) - offset  # (1, H, W, 3) float32
            # the NHWC forward of the Keras model (its call() takes NCHW); logits = the mean of the two heads
            cls_logits, distillation_logits, _ = self.model._forward(x, False, False)
            return {OUTPUT_NAME: tf.nn.softmax((cls_logits + distillation_logits) / 2, axis=-1)}

    return SwiftFormerBundle(model)


def convert_tflite_bundle(model, spec, precision: str = "fp32", calibration: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` flatbuffer of a bundle (:mod:`.bundle`), without its metadata: input ``images`` (1, H, W, 3)
    uint8 RGB at ``spec.size``, output ``probabilities`` (1, num_labels), from the Keras ``model`` whose first
    convolution holds the normalization's scale. ``fp16``: float16 weights. ``int8``: full-integer ops calibrated on
    ``calibration`` (N, H, W, 3) uint8 images, uint8 output; the input is uint8 with scale 1 and zero point 0 (raw
    pixels go in unchanged): one calibration image is given a black and a white pixel when the images do not span
    0..255, so the calibrated input range is exactly that."""
    TFLITE.check_precision(precision)
    tf = _require_tf()
    module = _bundle_module(model, spec, float_input=precision == "int8")
    if precision != "int8":
        return _convert(module, precision, None, None)
    if calibration is None or not len(calibration):
        raise ValueError("an int8 bundle needs calibration images: uint8 (N, H, W, 3)")
    images = np.asarray(calibration, dtype=np.float32)
    if images.min() > 0 or images.max() < 255:
        images = images.copy()
        images[0, 0, 0], images[0, 0, 1] = 0.0, 255.0  # the input range 0..255: scale 1, zero point 0

    def dataset():
        for image in images:
            yield [image[None]]

    return _convert(module, precision, dataset, tf.uint8)


class TFLiteRunner:
    """Run a ``.tflite`` file with the LiteRT interpreter (one batch of the model's size at a time): NCHW float32
    ``pixel_values`` in, logits out; a bundle's uint8 NHWC images in, probabilities out (a quantized output is
    dequantized with its scale and zero point). ``num_threads`` is the interpreter's (XNNPACK, its default CPU
    delegate, runs on them); default all CPUs."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        interpreter_cls = _require_litert()
        self.num_threads = num_threads or os.cpu_count() or 1
        self.interpreter = interpreter_cls(model_path=os.fspath(path), num_threads=self.num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        batch = int(self.input["shape"][0])
        scale, zero_point = self.output["quantization"]
        outputs = []
        for i in range(0, len(inputs), batch):
            chunk = np.ascontiguousarray(inputs[i : i + batch], dtype=self.input["dtype"])
            self.interpreter.set_tensor(self.input["index"], chunk)
            self.interpreter.invoke()
            output = np.array(self.interpreter.get_tensor(self.output["index"]))
            if np.issubdtype(output.dtype, np.integer):  # real = scale * (q - zero_point)
                output = (output.astype(np.float32) - zero_point) * np.float32(scale)
            outputs.append(output)
        return np.concatenate(outputs)


def export_tflite(
    model,
    path: str | os.PathLike,
    *,
    precision: str = "fp32",
    image_size: int | tuple[int, int] | None = None,
    representative_data: Any = None,
    verify_inputs: Any = None,
    num_verify: int = 8,
    latency_runs: int = 20,
    num_threads: int | None = None,
    image_processor=None,
    seed: int = 0,
    tolerance: float | None = None,
) -> ExportReport:
    """Convert to TFLite (batch 1, fixed ``image_size``), verify in LiteRT, write ``path`` atomically.

    Args:
        path: The ``.tflite`` file (``.tflite`` is added to a path without a suffix, unless that path
            exists); only an earlier ``.tflite`` file is ever replaced.
        precision: ``"fp32"``; ``"fp16"`` (float16 weights); ``"int8"`` (full-integer ops with float32
            input/output, calibrated on ``representative_data``).
        representative_data: For int8: a callable (as TFLite's ``representative_dataset``), an
            (N, C, H, W) array, a list of (C, H, W) arrays, image files, or a folder of images (searched
            recursively, up to 64 images with every class folder represented: the loader of
            ``swiftformer export --calibration``; pass ``load_calibration_images(folder, size, n)``
            for another count).
        verify_inputs: Inputs to verify on (same forms); by default the first ``num_verify``
            representative samples, else seeded random normal inputs.
        num_threads: LiteRT threads for verification and latency (default: all CPUs).
        image_processor: Whose mean/std normalizes image files and folders (default ImageNet's).
        tolerance: Largest allowed max|Δlogit| / max|logit| against the Keras model; default the tflite
            record's for fp32, not checked for fp16 / int8 (read their ``top1_agreement``).

    Raises:
        ExportVerificationError: The output differs from Keras beyond ``tolerance`` (nothing written).
    """
    TFLITE.check_precision(precision)
    _require_litert()  # fail before the (slow) conversion
    size = export_image_size(model, image_size)
    target = target_path(path, TFLITE)
    if isinstance(representative_data, (str, os.PathLike)):  # read once, for the converter and the verification
        representative_data = load_calibration_images(
            representative_data, size, image_processor=image_processor, return_tensors="np"
        )
    flatbuffer = convert_tflite(
        model,
        precision=precision,
        image_size=size,
        batch_size=1,
        representative_data=representative_data,
        image_processor=image_processor,
    )
    inputs = _verification_inputs(model, size, verify_inputs, representative_data, num_verify, seed, image_processor)
    expected = _keras_logits(model, inputs)
    if tolerance is None and precision == "fp32":
        tolerance = TFLITE.tolerance
    with staging(target, TFLITE) as staged:
        staged.write_bytes(flatbuffer)
        runner = TFLiteRunner(staged, num_threads)
        notes = [f"LiteRT interpreter, {runner.num_threads} thread(s)"]
        if tolerance is None:
            notes.append(f"{precision}: differences reported, not checked; judge top1_agreement on real images")
        first = inputs[:1]
        report = checked_report(
            staged,
            target,
            compare(expected, runner(inputs)),
            lambda: runner(first),
            latency_runs,
            format=TFLITE.name,
            precision=precision,
            input_shape=[1, model.config.num_channels, *size],
            num_verify_inputs=len(inputs),
            reference=REFERENCE,
            tolerance=tolerance,
            notes=notes,
        )
        place(staged, target)
    return report


# ---------------------------------------------------------------------------------------------------
# One entry point (for the CLI)
# ---------------------------------------------------------------------------------------------------


def export_model(
    model_or_path: Any,
    output: str | os.PathLike,
    *,
    format: str = "tflite",
    precision: str = "fp32",
    image_size: int | tuple[int, int] | None = None,
    representative_data: Any = None,
    num_verify: int | None = None,
    latency_runs: int = 20,
    hub_options: dict[str, Any] | None = None,
) -> ExportReport:
    """Load ``model_or_path`` (a TF classifier, or a folder / hub id for
    ``TFSwiftFormerForImageClassification.from_pretrained``) and export it as ``format``
    (``"savedmodel"`` or ``"tflite"``). See :func:`export_saved_model` and
    :func:`export_tflite`; a folder's own ``preprocessor_config.json`` mean/std normalizes image files
    and folders given as ``representative_data``."""
    _require_tf()
    from ..keras.models import TFSwiftFormerForImageClassification

    model, processor = model_or_path, None
    if not isinstance(model, TFSwiftFormerForImageClassification):
        model = TFSwiftFormerForImageClassification.from_pretrained(model_or_path, **(hub_options or {}))
        processor, _ = load_processor(model_or_path, **(hub_options or {}))  # without one: ImageNet's mean/std
    if format == SAVEDMODEL.name:
        SAVEDMODEL.check_precision(precision)
        return export_saved_model(
            model, output, image_size=image_size, num_verify=num_verify or 4, latency_runs=latency_runs
        )
    if format == TFLITE.name:
        return export_tflite(
            model,
            output,
            precision=precision,
            image_size=image_size,
            representative_data=representative_data,
            num_verify=num_verify or 8,
            latency_runs=latency_runs,
            image_processor=processor,
        )
    raise ValueError(f"format must be 'savedmodel' or 'tflite', got {format!r}")


__all__ = [
    "ExportError",
    "ExportReport",
    "ExportVerificationError",
    "TFLiteRunner",
    "convert_tflite",
    "convert_tflite_bundle",
    "export_model",
    "export_saved_model",
    "export_tflite",
    "representative_samples",
]
