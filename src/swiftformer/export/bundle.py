"""Bundles: an artifact an app feeds with 8-bit RGB pixels and that answers with probabilities and labels.

A bundle is the fused model of :func:`swiftformer.inference.fuse` with the image processor's rescale and
normalization in front and a softmax behind: input ``images`` (batch, H, W, 3) uint8 RGB at the processor's
size, output ``probabilities`` (batch, num_labels) float32, the labels (``config.id2label`` in index order)
carried with it. Which formats can carry one, in which precisions, is the ``bundle`` field of their
:class:`~swiftformer.export.formats.ExportFormat` record (ONNX; TFLite, whose metadata and GPU check are
:mod:`.tflite_bundle`; ExecuTorch; Core ML). A Core ML bundle takes an RGB image instead (``ImageType``, whose
per-channel bias subtracts the offset: ``bundled_module(centered=True)``) and is a classifier (label and probability
dictionary out); an ExecuTorch ``.pte`` has no metadata field, so its labels are only beside it.

The normalization ``(x * rescale - mean) / std`` is affine per channel, ``(x - offset) * scale`` with
``offset = mean / rescale`` and ``scale = rescale / std``. The scale is folded into the first convolution's
weights (exact). The shift could go into its bias only where that convolution does not pad: SwiftFormer's
stem convolution zero-pads by 1, and a zero in normalized space is the pixel value ``offset``, not 0, so a
folded shift would be wrong on the border. Then the offset is subtracted in the graph (one ``Sub``, before
the zero padding), which is exact; :attr:`BundleSpec.folded` says which was done.

Beside the artifact the pipeline writes ``labels.txt`` (one label a line, in index order) and
``manifest.json`` (:func:`manifest`), atomically; :func:`check_sidecars` refuses to replace files that are
not an earlier bundle's of the same artifact. An ONNX bundle also gets its ORT-format copy (``NAME.ort``, for
ONNX Runtime Mobile): :func:`convert_to_ort` runs ONNX Runtime's own converter on the staged ``.onnx``, and
the pipeline verifies the copy in ONNX Runtime against the ``.onnx`` before either is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..image_processing import SwiftFormerImageProcessor
    from ..modeling import SwiftFormerForImageClassification

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"
MANIFEST_KIND = "swiftformer-bundle"  # the manifest's "kind": how an earlier bundle's manifest is recognized
NUM_VERIFY = 8
FOLDED_SCALE = (  # BundleSpec.folded when the first convolution zero-pads (SwiftFormer's stem does)
    "scale folded into the first convolution's weights; the mean subtracted in the graph (a Sub before "
    "the convolution's zero padding, where a shift folded into the bias would be wrong on the border)"
)
ORT_SUFFIX = ".ort"
ORT_CONFIG_SUFFIX = ".required_operators.config"
ORT_CONVERTER = "onnxruntime.tools.convert_onnx_models_to_ort"
ORT_STYLE = "Fixed"  # the converter's fixed optimization style: optimized at conversion, nothing left to the runtime


@dataclass
class BundleSpec:
    """What goes into a bundle besides the model: the input size, the normalization and the labels."""

    size: tuple[int, int]  # (height, width) the app feeds
    mean: list[float]  # the processor's normalization ((0, 0, 0) / (1, 1, 1) when it does not normalize)
    std: list[float]
    rescale: float  # the processor's rescale factor (1 when it does not rescale)
    labels: list[str]
    folded: str = ""  # what was folded where (set by BundledClassifier)
    notes: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)  # name, description, version, license, author

    @property
    def offset(self) -> list[float]:
        """The pixel value each channel's normalization maps to 0."""
        return [m / self.rescale for m in self.mean]

    @property
    def scale(self) -> list[float]:
        return [self.rescale / s for s in self.std]

    @property
    def normalization_note(self) -> str:
        """The export report's line on the normalization inside the bundle and where it went."""
        return f"bundle normalization mean {self.mean}, std {self.std}, rescale {self.rescale:.6g}: {self.folded}"


def input_size(
    processor: SwiftFormerImageProcessor, config_size: tuple[int, int]
) -> tuple[tuple[int, int], str | None]:
    """The (height, width) the processor's output has whatever the image's size, and a note when it has none
    (a shortest-edge resize keeps the aspect ratio: then the config's size)."""
    if processor.do_center_crop and processor.crop_size is not None:
        return (processor.crop_size["height"], processor.crop_size["width"]), None
    if processor.do_resize and "height" in processor.size:
        return (processor.size["height"], processor.size["width"]), None
    if processor.do_resize and processor.crop_pct is not None:
        edge = processor.size["shortest_edge"]
        return (edge, edge), None
    return config_size, (
        f"the image processor has no fixed output size; the bundle takes {config_size[0]}x{config_size[1]} "
        "(the config's image_size)"
    )


def labels_of(model: SwiftFormerForImageClassification) -> list[str]:
    """``config.id2label`` in index order (a missing index is ``LABEL_i``, as transformers names them)."""
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(model.config.num_labels)]


def bundle_spec(
    model: SwiftFormerForImageClassification,
    processor: SwiftFormerImageProcessor | None,
    image_size: tuple[int, int] | None,
    info: dict[str, str] | None = None,
) -> BundleSpec:
    """The bundle of ``model`` fed as ``processor`` preprocesses (``None``: the ImageNet defaults, with a
    note). ``image_size`` overrides the processor's output size. Labels that are not valid text are a ValueError."""
    from ..image_processing import SwiftFormerImageProcessor

    notes = []
    config_size = model.config.image_size
    config_pair = (config_size, config_size) if isinstance(config_size, int) else tuple(config_size)[:2]
    config_hw = (int(config_pair[0]), int(config_pair[-1]))
    if processor is None:
        processor = SwiftFormerImageProcessor(size={"height": config_hw[0], "width": config_hw[1]})
        notes.append(
            "no image processor (none given, or no preprocessor_config.json in the model folder): the ImageNet "
            f"mean/std, 1/255 rescale and the config's image_size {config_hw[0]}x{config_hw[1]}"
        )
    size, note = input_size(processor, config_hw)
    notes += [note] if note else []
    if image_size is not None and tuple(image_size) != size:
        notes.append(f"input size {image_size[0]}x{image_size[1]} as asked; the processor makes {size[0]}x{size[1]}")
        size = (int(image_size[0]), int(image_size[1]))
    labels = labels_of(model)
    for label in labels:
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"label {label!r} is not valid UTF-8 text; it cannot go into the bundle's metadata"
            ) from None
        if "\n" in label or "\r" in label:
            raise ValueError(f"label {label!r} holds a line break; labels.txt has one label a line")
    normalize = processor.do_normalize
    return BundleSpec(
        size=size,
        mean=list(processor.image_mean) if normalize else [0.0] * 3,
        std=list(processor.image_std) if normalize else [1.0] * 3,
        rescale=processor.rescale_factor if processor.do_rescale else 1.0,
        labels=labels,
        notes=notes,
        info=check_info(info),
    )


BUNDLE_INFO_KEYS = ("name", "description", "version", "license", "author")


def check_info(info: dict[str, str] | None) -> dict[str, str]:
    """``bundle_info``: only :data:`BUNDLE_INFO_KEYS`, each a non-empty text value that is valid UTF-8 (it goes into
    every format's metadata); a ValueError naming the key otherwise."""
    checked = {}
    for key, value in (info or {}).items():
        if key not in BUNDLE_INFO_KEYS:
            raise ValueError(f"bundle info key must be one of {', '.join(BUNDLE_INFO_KEYS)}, got {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"bundle info {key!r} must be non-empty text, got {value!r}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"bundle info {key!r} is not valid UTF-8 text: {value!r}") from None
        checked[key] = value
    return checked


def reference_processor(spec: BundleSpec) -> SwiftFormerImageProcessor:
    """The processor's per-pixel arithmetic alone (no resize, no crop): what the bundle's graph computes."""
    from ..image_processing import SwiftFormerImageProcessor

    return SwiftFormerImageProcessor(
        do_resize=False,
        rescale_factor=spec.rescale,
        do_rescale=spec.rescale != 1.0,
        image_mean=spec.mean,
        image_std=spec.std,
    )


def verify_images(images: Any, spec: BundleSpec, channels: int, what: str = "verified") -> np.ndarray:
    """The verification (or calibration) images as a (N, H, W, 3) uint8 array: ``images`` (uint8
    (N, H, W, 3) or (H, W, 3) at the bundle's size), else 8 seeded random images."""
    import numpy as np

    if channels != 3:
        raise ValueError(f"a bundle takes RGB images; this model has {channels} input channels")
    if images is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (NUM_VERIFY, *spec.size, 3), dtype=np.uint8)
    array = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
    array = array[None] if array.ndim == 3 else array
    if array.dtype != np.uint8 or array.ndim != 4 or tuple(array.shape[1:]) != (*spec.size, 3) or not len(array):
        raise ValueError(
            f"a bundle is {what} on uint8 images of shape (N, {spec.size[0]}, {spec.size[1]}, 3), "
            f"got {array.dtype} {tuple(array.shape)}"
        )
    return array


def reference_probabilities(model: SwiftFormerForImageClassification, spec: BundleSpec, images: np.ndarray) -> Any:
    """softmax of the eager ``model``'s logits on the processor's preprocessing of ``images`` (N, H, W, 3) uint8."""
    import torch

    pixel_values = reference_processor(spec)(list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values).logits.float().softmax(-1)


def scaled_weight(weight: torch.Tensor, spec: BundleSpec) -> torch.Tensor:
    """A first convolution's ``weight`` (out, 3, kh, kw) times ``spec.scale`` per input channel, in float64 (the
    caller rounds once, to float32): the normalization's scale folded in, exactly as the convolution is linear."""
    import torch

    scale = torch.tensor(spec.scale, dtype=torch.float64)
    return weight.detach().double() * scale[None, :, None, None]


def bundled_module(fused: Any, spec: BundleSpec, precision: str = "fp32", *, centered: bool = False) -> torch.nn.Module:
    """``images (B, H, W, 3) uint8 -> probabilities (B, num_labels) float32``: ``fused`` with the normalization
    folded into its first convolution (the module docstring says how; ``spec.folded`` is set) and a softmax.

    ``precision="fp16"``: the network's weights and arithmetic in float16 (the mean subtraction before it and the
    softmax after it stay float32). ``centered``: the input is ``(B, 3, H, W)`` float32 pixel values with the
    offset already subtracted, as Core ML's ``ImageType`` hands them over (its per-channel bias ``-offset``, its
    scale 1): only the scale is folded. That subtraction happens before the stem convolution's zero padding, so it
    is as exact as the ``Sub`` in the graph. ``fused`` needs a ``features[0]`` convolution
    (:func:`~swiftformer.inference.fuse`'s model, or a rewrite of it) and is copied, never changed.
    """
    import copy

    import torch
    from torch import nn

    fused = copy.deepcopy(fused)
    conv = fused.features[0]
    assert isinstance(conv, nn.Conv2d)
    offset = torch.tensor(spec.offset, dtype=torch.float64)
    weight = scaled_weight(conv.weight, spec)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    pads = any(conv.padding) if isinstance(conv.padding, tuple) else conv.padding != "valid"
    shift: torch.Tensor | None = None
    if centered:
        spec.folded = (
            "scale folded into the first convolution's weights; the mean subtracted by the Core ML ImageType's "
            "per-channel bias (before the convolution's zero padding, so exact)"
        )
    elif pads:  # a folded shift would be wrong where the conv reads its zero padding: subtract in the graph
        spec.folded = FOLDED_SCALE
        shift = offset.float()
    else:
        bias = bias - (weight * offset[None, :, None, None]).sum(dim=(1, 2, 3))
        spec.folded = "scale folded into the first convolution's weights, shift into its bias"
    conv.weight.data = weight.float().contiguous(memory_format=torch.channels_last)
    conv.bias = nn.Parameter(bias.float(), requires_grad=False)

    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]

    class BundledClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fused = fused.to(dtype)
            self.shift = None if shift is None else nn.Parameter(shift.reshape(1, -1, 1, 1), requires_grad=False)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if centered:  # (B, 3, H, W) float32, the offset subtracted by the runtime
                return self.fused(images).softmax(-1)
            # uint8 (B, H, W, 3) -> float32 (B, 3, H, W); converted first so the permute runs on floats, where
            # XNNPACK takes it (it takes no uint8 op: the conversion is the one op ExecuTorch runs outside it)
            x = images.float().permute(0, 3, 1, 2)
            if self.shift is not None:
                x = x - self.shift
            return self.fused(x.to(dtype)).float().softmax(-1)

    return BundledClassifier().eval()


def metadata(spec: BundleSpec, config_json: str, image_input: str | None = None) -> dict[str, str]:
    """The key/value metadata an artifact carries: labels (JSON list), the normalization, name, description,
    version, license, and the config. ``image_input``: the name of an image input (Core ML) in place of the
    uint8 NHWC tensor ``images``."""
    if image_input is None:
        takes = f"input {INPUT_NAME} (batch, {spec.size[0]}, {spec.size[1]}, 3) uint8 RGB"
        gives = f"output {OUTPUT_NAME} (batch, {len(spec.labels)}) float32"
        input_entry = {"name": INPUT_NAME, "layout": "NHWC", "dtype": "uint8", "size": list(spec.size)}
    else:
        takes = f"input {image_input}: an RGB image of {spec.size[1]}x{spec.size[0]} (width x height)"
        gives = f"outputs the label and {OUTPUT_NAME} (label -> probability)"
        input_entry = {"name": image_input, "type": "image", "color": "RGB", "size": list(spec.size)}
    info = {
        "name": "SwiftFormer image classifier",
        "description": f"SwiftFormer image classifier over {len(spec.labels)} classes: {takes}, {gives}",
        "version": "1",
        "license": "unspecified (the model's own licence applies)",
        "author": "unspecified",
        **spec.info,
    }
    return {
        **info,
        "labels": json.dumps(spec.labels, ensure_ascii=False),
        "input": json.dumps(input_entry),
        "normalization": json.dumps(
            {"mean": spec.mean, "std": spec.std, "rescale": spec.rescale, "folded": spec.folded}
        ),
        "swiftformer.config": config_json,
    }


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """A file's sha256; a directory's (a Core ML ``.mlpackage``): the sha256 of its files' lines
    ``<sha256>  <relative path>`` (as ``sha256sum`` prints them), sorted by path."""
    if not path.is_dir():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = "".join(f"{sha256_file(p)}  {p.relative_to(path).as_posix()}\n" for p in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def manifest(spec: BundleSpec, artifact: Path, fmt: str, precision: str, config_json: str) -> dict[str, Any]:
    """``manifest.json``: what an app needs to feed the bundle and check it is the one it expects."""
    return {
        "kind": MANIFEST_KIND,
        "artifact": artifact.name,
        "format": fmt,
        "precision": precision,
        "sha256": sha256_path(artifact),
        "config_sha256": hashlib.sha256(config_json.encode("utf-8")).hexdigest(),
        "input": {
            "name": INPUT_NAME,
            "layout": "NHWC",
            "dtype": "uint8",
            "channels": "RGB",
            "height": spec.size[0],
            "width": spec.size[1],
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "what": "softmax probabilities, one per label"},
        "normalization": {"mean": spec.mean, "std": spec.std, "rescale": spec.rescale, "folded": spec.folded},
        "labels": spec.labels,
        "labels_file": LABELS_FILE,
        **{
            k: v
            for k, v in metadata(spec, config_json).items()
            if k in ("name", "description", "version", "license", "author")
        },
    }


def ort_path(target: Path) -> Path:
    """Where the ORT-format copy of the ONNX bundle ``target`` goes: beside it, ``NAME.ort``."""
    return target.with_suffix(ORT_SUFFIX)


def ort_config_path(target: Path) -> Path:
    """Where the operators the ``.ort`` copy needs go: beside it, ``NAME.required_operators.config`` (the input of
    ONNX Runtime's reduced-build script, ``build.py --include_ops_by_config``)."""
    return target.with_suffix(ORT_CONFIG_SUFFIX)


def convert_to_ort(staged: Path) -> tuple[Path, Path, dict[str, str]]:
    """The ORT-format copy of the staged ``.onnx`` and the converter's list of the operators it needs, written
    beside it (in the staging folder) by ONNX Runtime's converter (:data:`ORT_CONVERTER`, in-process, style
    :data:`ORT_STYLE`), and how it was made. The converter's progress lines are kept off stdout (``--json`` prints
    the report there)."""
    import contextlib
    import io
    import logging
    import warnings

    import onnxruntime

    root = logging.getLogger()
    handlers = list(root.handlers)
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    for handler in root.handlers[len(handlers) :]:  # its import calls logging.basicConfig: the app's to decide
        root.removeHandler(handler)
    chatty = logging.getLogger("ort_format_model.utils")  # logs "Created config in <staging>" at INFO
    disabled, chatty.disabled = chatty.disabled, True
    out = staged.parent / "ort"
    try:
        # the converter's config step leaves a file to the garbage collector (a ResourceWarning of its own)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            convert_onnx_models_to_ort(staged, output_dir=out, optimization_styles=[OptimizationStyle[ORT_STYLE]])
    finally:
        chatty.disabled = disabled
    found = sorted(out.glob(f"*{ORT_SUFFIX}"))
    configs = sorted(out.glob(f"*{ORT_CONFIG_SUFFIX}"))
    if len(found) != 1 or len(configs) != 1:
        raise RuntimeError(
            f"{ORT_CONVERTER} wrote {len(found)} {ORT_SUFFIX} and {len(configs)} {ORT_CONFIG_SUFFIX} files, "
            "expected 1 of each"
        )
    return (
        found[0],
        configs[0],
        {
            "converter": ORT_CONVERTER,
            "optimization_style": ORT_STYLE,
            # the converter's level: "all" unless its environment variable says otherwise
            "optimization_level": os.getenv("ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL", "all"),
            "onnxruntime": onnxruntime.__version__,
        },
    )


class OrtRunner:
    """An ``.onnx`` or ``.ort`` model in ONNX Runtime's CPU provider, graph optimizations all: its first input to
    its first output (a bundle: uint8 (N, H, W, 3) images -> probabilities; a plain export: ``pixel_values`` ->
    ``logits``). ``num_threads`` sets ``intra_op_num_threads`` (and ``inter_op_num_threads`` 1); ``None``: ONNX
    Runtime's default (one thread per physical core)."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.num_threads = num_threads
        self.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output.name], {self.input.name: x})[0]


def ort_runner(path: str | os.PathLike, num_threads: int | None = None) -> OrtRunner:
    """:class:`OrtRunner` of ``path``: the ORT-format copy of a bundle (verified against the ``.onnx``), any
    ONNX export (the pipeline's verification) or an artifact to time (``swiftformer bench --artifact``)."""
    return OrtRunner(path, num_threads)


def check_sidecars(target: Path) -> None:
    """Refuse before any work when ``labels.txt``, ``manifest.json`` or the ``.onnx``'s ``NAME.ort`` beside
    ``target`` is not an earlier bundle's of the same artifact (the refuse-to-replace rule of the artifact
    itself; an earlier bundle's ``.ort`` is the one its manifest names)."""
    from ..io.files import display_path

    manifest_path, labels_path = target.parent / MANIFEST_FILE, target.parent / LABELS_FILE
    earlier = None
    if manifest_path.exists() or manifest_path.is_symlink():
        try:
            earlier = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or earlier.get("kind") != MANIFEST_KIND:
            raise ValueError(
                f"{display_path(manifest_path)} exists and is not a bundle manifest; refusing to replace it: "
                "export the bundle into a folder of its own"
            )
        if earlier.get("artifact") != target.name:
            raise ValueError(
                f"{display_path(manifest_path)} belongs to the bundle {earlier.get('artifact')!r}; refusing to "
                f"replace it with {target.name}'s: export each bundle into a folder of its own"
            )
    if (labels_path.exists() or labels_path.is_symlink()) and (earlier is None or not labels_path.is_file()):
        raise ValueError(
            f"{display_path(labels_path)} exists and is not an earlier bundle's; refusing to replace it: "
            "export the bundle into a folder of its own"
        )
    if target.suffix.lower() == ".onnx":
        named = (earlier or {}).get("ort")
        named = named if isinstance(named, dict) else {}
        for path, key in ((ort_path(target), "file"), (ort_config_path(target), "required_operators")):
            if (path.exists() or path.is_symlink()) and (not path.is_file() or _entry_file(named, key) != path.name):
                raise ValueError(
                    f"{display_path(path)} exists and is not an earlier bundle's; refusing to replace it: "
                    "export the bundle into a folder of its own"
                )


def check_not_bundled(target: Path) -> None:
    """Refuse a plain (tensor) export onto the artifact of a bundle: its ``manifest.json``, ``labels.txt`` and
    ``.ort`` would stay beside it, describing the bundle's uint8 model, not the new one."""
    from ..io.files import display_path

    manifest_path = target.parent / MANIFEST_FILE
    try:
        earlier = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    except (OSError, ValueError):
        return
    if isinstance(earlier, dict) and earlier.get("kind") == MANIFEST_KIND and earlier.get("artifact") == target.name:
        raise ValueError(
            f"{display_path(target)} is the artifact of the bundle {display_path(manifest_path)} describes; a plain "
            "export over it would leave the bundle's files describing another model: export the bundle again "
            "(bundle=True), or export into another folder"
        )


def _entry_file(entry: dict[str, Any], key: str) -> Any:
    """The file name a manifest entry's ``key`` holds: a name, or a record with a ``file``."""
    value = entry.get(key)
    return value.get("file") if isinstance(value, dict) else value


def write_labels(target: Path, spec: BundleSpec) -> None:
    from ..io.files import atomic_write

    with atomic_write(target.parent / LABELS_FILE, "w") as handle:
        handle.write("".join(f"{label}\n" for label in spec.labels))


def write_manifest(target: Path, data: dict[str, Any]) -> None:
    from ..io.files import write_json

    write_json(target.parent / MANIFEST_FILE, data)


__all__ = [
    "BUNDLE_INFO_KEYS",
    "INPUT_NAME",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "ORT_STYLE",
    "OUTPUT_NAME",
    "BundleSpec",
    "OrtRunner",
    "bundle_spec",
    "bundled_module",
    "check_not_bundled",
    "check_sidecars",
    "convert_to_ort",
    "manifest",
    "metadata",
    "ort_config_path",
    "ort_path",
    "ort_runner",
    "reference_probabilities",
    "sha256_path",
    "verify_images",
]
