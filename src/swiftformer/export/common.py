"""What every exporter shares: the report, the target path rules, staging and placement, the comparison,
the export size and the calibration images.

An export is produced in a staging folder beside its target (:func:`staging`), run in its runtime and
compared with the reference model (:func:`compare`), summed up in an :class:`ExportReport`, and only when
that passes moved into place (:func:`place`: fsync'ed, then :func:`swiftformer.io.files.replace_path`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExportVerificationError
from ..perf import median_ms

if TYPE_CHECKING:
    from ..image_processing import SwiftFormerImageProcessor
    from .formats import ExportFormat

# Calibration images taken from a folder unless told otherwise (the CLI's --num-calibration default).
NUM_CALIBRATION = 64


@dataclass
class ExportReport:
    """What an export wrote and how it compares with its reference model.

    ``max_abs_diff`` is max |exported − reference| over the logits of the verification inputs,
    ``max_rel_diff`` that divided by max |reference logit|, ``top1_agreement`` the fraction of inputs
    whose arg-max class agrees; ``reference`` names the model compared with (the original, unfused
    float32 PyTorch model for :func:`swiftformer.export.export`, the Keras model for
    :mod:`swiftformer.export.keras`). The three are ``None`` when the artifact cannot run here (Core
    ML off macOS). ``latency_ms`` is the median of ``latency_runs`` batch-1 calls in the target runtime,
    ``None`` when not timed (``latency_runs=0``, or not runnable here). ``tolerance`` is the largest
    ``max_rel_diff`` that passes (``None``: not checked). ``input_shape`` gives the artifact's input,
    a name (``"batch"``, ``"height"``, ``"width"``) for each dynamic dimension.
    """

    path: str
    format: str
    precision: str
    size_mb: float
    input_shape: list[Any]
    num_verify_inputs: int
    reference: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    top1_agreement: float | None
    tolerance: float | None
    latency_ms: float | None
    latency_runs: int
    notes: list[str] = field(default_factory=list)
    bundle: bool = False  # uint8 images in, probabilities out (swiftformer.export.bundle)

    @property
    def passed(self) -> bool:
        """Within tolerance (NaN fails), or nothing to check (not runnable here, or no tolerance)."""
        if self.max_rel_diff is None or self.tolerance is None:
            return True
        return self.max_rel_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """The fields and ``passed`` as a JSON-safe dict (a non-finite number becomes ``None``)."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["passed"] = self.passed
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}

    def summary(self) -> str:
        def num(value: float | None, fmt: str) -> str:
            return "n/a" if value is None else format(value, fmt)

        if self.latency_ms is not None:
            latency = f"{self.latency_ms:.2f} ms (median of {self.latency_runs})"
        else:
            latency = "not timed" if self.latency_runs <= 0 or self.max_rel_diff is not None else "n/a"
        shape = "x".join(str(d) for d in self.input_shape)
        top1 = "n/a" if self.top1_agreement is None else f"{100 * self.top1_agreement:.1f}%"
        lines = [
            f"{self.format} ({self.precision}) -> {self.path}  [{self.size_mb:.2f} MB]",
            f"  input images {shape} uint8 -> probabilities"
            if self.bundle
            else f"  input pixel_values {shape} float32 -> logits",
            f"  vs {self.reference} on {self.num_verify_inputs} inputs: max|diff| {num(self.max_abs_diff, '.3g')}, "
            f"relative {num(self.max_rel_diff, '.3g')} (tolerance {num(self.tolerance, 'g')}), top-1 agreement {top1}",
            f"  latency (batch 1): {latency}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  verification: " + ("passed" if self.passed else "FAILED"))
        return "\n".join(lines)


def checked_report(
    staged: Path,
    target: Path,
    diffs: tuple[float, float, float] | None,
    run_one: Callable[[], Any] | None,
    latency_runs: int,
    **fields: Any,
) -> ExportReport:
    """The report of the artifact ``staged`` (bound for ``target``), whose logits differ from the
    reference's by ``diffs`` (from :func:`compare`; ``None``: it cannot run here), with the other
    ``fields``. Raises :class:`~swiftformer.errors.ExportVerificationError` (holding the report) unless
    it passed; then times ``run_one`` (one batch-1 call) with :func:`~swiftformer.perf.median_ms`."""
    measured: dict[str, Any] = dict(
        zip(("max_abs_diff", "max_rel_diff", "top1_agreement"), diffs or (None, None, None))
    )
    report = ExportReport(
        path=str(target),
        size_mb=size_mb(staged),
        latency_ms=None,
        latency_runs=max(latency_runs, 0),
        **measured,
        **fields,
    )
    if not report.passed:
        _fail(report, target)
    if run_one is not None:
        report.latency_ms = median_ms(run_one, latency_runs)
    return report


def _fail(report: ExportReport, target: Path) -> None:
    top1 = "n/a" if report.top1_agreement is None else f"{100 * report.top1_agreement:.1f}%"
    raise ExportVerificationError(
        f"the {report.format} ({report.precision}) export disagrees with the {report.reference}: "
        f"max|diff| {report.max_abs_diff:.3g}, relative {report.max_rel_diff:.3g} > tolerance "
        f"{report.tolerance:g} (top-1 agreement {top1}); nothing written to {target}",
        report,
    )


def compare(expected: Any, actual: Any) -> tuple[float, float, float]:
    """(max_abs_diff, max_rel_diff, top1_agreement) of ``actual`` logits against ``expected`` (arrays or
    CPU tensors of the same size), in float64; NaN in ``actual`` gives infinite differences."""
    import numpy as np

    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64).reshape(expected.shape)
    max_abs = float(np.abs(actual - expected).max())
    if math.isnan(max_abs):
        max_abs = math.inf
    rel = max_abs / max(float(np.abs(expected).max()), 1e-30)
    top1 = float(np.mean(actual.argmax(-1) == expected.argmax(-1)))
    return max_abs, rel, top1


def export_image_size(model: Any, image_size: Any = None, verify_inputs: Any = None) -> tuple[int, int]:
    """The export's (height, width): ``image_size`` (an int or a pair), else the size of
    ``verify_inputs`` (an array or tensor), else the model config's ``image_size``."""
    if image_size is None and verify_inputs is not None and hasattr(verify_inputs, "shape"):
        return int(verify_inputs.shape[-2]), int(verify_inputs.shape[-1])
    size = model.config.image_size if image_size is None else image_size
    size = (size,) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) not in (1, 2):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    height, width = size[0], size[-1]
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return height, width


# ------------------------------------------------------------------------------------------- writing
def target_path(output: str | os.PathLike, fmt: ExportFormat) -> Path:
    """Where an export of ``fmt`` to ``output`` goes, after refusing to replace anything but an earlier
    export of that format (:meth:`~swiftformer.export.formats.ExportFormat.is_earlier_export`).

    A path without a suffix gets the format's extension (``digits`` → ``digits.onnx``), unless it
    exists: then it is refused (an earlier export would have the extension), except for a directory that
    is an earlier export of a directory format, which is replaced as named.
    """
    given = Path(output)
    target = given
    if fmt.extension and not given.suffix:
        if given.exists() or given.is_symlink():
            if not fmt.is_earlier_export(given):
                raise ValueError(
                    f"{given} exists and is not an earlier {fmt.name} export; refusing to write "
                    f"{given.name}{fmt.extension} beside it: delete it or choose another output "
                    f"(e.g. {given.name}{fmt.extension})"
                )
        else:
            target = given.with_name(given.name + fmt.extension)
    if fmt.marker is not None and not fmt.extension and target.suffix == Path(fmt.marker).suffix:  # e.g. xs.xml
        raise ValueError(f"the {fmt.name} export is a directory (holding {fmt.marker}), got {target}")
    from .formats import FORMATS  # the registry builds on this module

    other = next((f.name for f in FORMATS.values() if f.extension and f.extension == target.suffix.lower()), None)
    if other is not None and other != fmt.name:  # x.tflite holding ONNX would be read as TFLite, and fail
        raise ValueError(
            f"{target} has the extension of {other} exports; a {fmt.name} export is "
            f"{'a directory' if fmt.is_directory else f'a {fmt.extension} file'}: choose another output"
        )
    kind = "directory" if fmt.is_directory else "file"
    if target.exists() and target.is_dir() != fmt.is_directory:
        raise ValueError(
            f"{target} exists and is a {'directory' if target.is_dir() else 'file'}; {fmt.name} writes a {kind}"
        )
    if target.exists() and not fmt.is_earlier_export(target):
        if fmt.is_directory:
            raise ValueError(
                f"{target} exists and is not an earlier {fmt.name} export (it has no {fmt.marker}); refusing "
                "to replace it: delete it or choose another output"
            )
        raise ValueError(
            f"{target} exists and is not a {fmt.extension} file; refusing to overwrite it with the {fmt.name} "
            "export: delete it or choose another output"
        )
    return target


@contextlib.contextmanager
def staging(target: Path, fmt: ExportFormat) -> Iterator[Path]:
    """A path to write the ``fmt`` artifact to, in a fresh temporary folder beside ``target``.

    The folder (and whatever is left in it) is deleted when the block exits; :func:`place` moves the
    artifact out of it first on success.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    from ..io.files import hidden_path

    folder = hidden_path(target, "tmp", unique=True)
    folder.mkdir()
    try:
        yield folder / ("artifact" + (fmt.extension or ".dir"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def place(staged: Path, target: Path) -> None:
    """fsync the verified artifact, then move it over ``target`` (:func:`~swiftformer.io.files.replace_path`:
    a file in one atomic rename; a directory swapped with the old one, which is then deleted)."""
    from ..io.files import replace_path

    for file in [p for p in staged.rglob("*") if p.is_file()] if staged.is_dir() else [staged]:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    replace_path(staged, target)


def size_mb(path: Path) -> float:
    """The size of a file, or of all files under a directory, in MB (1e6 bytes)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


# ------------------------------------------------------------------------------------------- calibration
def calibration_processor(
    size: tuple[int, int], image_processor: SwiftFormerImageProcessor | None = None
) -> SwiftFormerImageProcessor:
    """The preprocessing of calibration images: warp to ``size`` (the export's), then the value mapping of
    ``image_processor`` (the model's own: its resampling filter, rescaling and normalization, as given), else
    ImageNet's."""
    from ..image_processing import SwiftFormerImageProcessor

    values = ("resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
    own: dict[str, Any] = {} if image_processor is None else {k: getattr(image_processor, k) for k in values}
    return SwiftFormerImageProcessor(size={"height": size[0], "width": size[1]}, **own)


def _spread(items: list[Any], count: int) -> list[Any]:
    """``count`` of ``items`` spread evenly over the list (the first always included)."""
    return [items[i * len(items) // count] for i in range(count)]


def _sample_per_folder(paths: list[Path], limit: int) -> list[Path]:
    """Up to ``limit`` of the sorted ``paths``, every folder (class) represented when ``limit`` allows:
    the folders share the budget evenly (a small one gives all it has, the rest go to the others), each
    folder's images spread over its own sorted listing."""
    folders: dict[Path, list[Path]] = {}
    for path in paths:
        folders.setdefault(path.parent, []).append(path)
    groups = list(folders.values())
    if limit < len(groups):  # fewer images than classes: one image each from classes spread over the listing
        return sorted(group[0] for group in _spread(groups, limit))
    quota = [0] * len(groups)
    left = min(limit, len(paths))
    while left:
        for i, group in enumerate(groups):
            if left and quota[i] < len(group):
                quota[i] += 1
                left -= 1
    return sorted(path for group, n in zip(groups, quota) if n for path in _spread(group, n))


def load_calibration_images(
    folder: str | os.PathLike,
    size: tuple[int, int],
    limit: int = NUM_CALIBRATION,
    model_ref: str | os.PathLike | None = None,
    hub: dict[str, Any] | None = None,
    *,
    image_processor: SwiftFormerImageProcessor | None = None,
    return_tensors: str = "pt",
) -> Any:
    """Up to ``limit`` images found under ``folder`` (recursively), as (N, C, H, W) float32 pixel values.

    Every class folder contributes (the budget is shared evenly between the folders, each folder's
    images spread over its sorted listing); the images are warped to ``size`` and normalized with the
    model's own mean/std: ``image_processor``'s, else that of ``model_ref``'s
    ``preprocessor_config.json`` (:func:`~swiftformer.image_processing.load_processor`), else ImageNet's. Unreadable images are
    skipped; none readable is a ValueError. ``return_tensors``: ``"pt"`` (a torch tensor) or ``"np"``.

    The one loader behind ``swiftformer export --calibration DIR`` and
    ``export_tflite(..., representative_data=DIR)``.
    """
    from ..image_processing import load_processor

    if image_processor is None and model_ref is not None:
        image_processor, _ = load_processor(model_ref, **(hub or {}))  # without one: ImageNet's mean/std
    pixel_values = _read_calibration(folder, limit, calibration_processor(size, image_processor))
    if return_tensors == "np":
        return pixel_values
    import torch

    return torch.from_numpy(pixel_values)


def load_calibration_pixels(folder: str | os.PathLike, size: tuple[int, int], limit: int = NUM_CALIBRATION) -> Any:
    """As :func:`load_calibration_images`, but the images as a bundle takes them: (N, H, W, 3) uint8 RGB warped
    to ``size`` (bilinear, as the processor resizes), not normalized. Behind ``swiftformer export --bundle
    --precision int8 --calibration DIR``."""
    import numpy as np

    from ..image_processing import SwiftFormerImageProcessor

    warp = SwiftFormerImageProcessor(size={"height": size[0], "width": size[1]}, do_rescale=False, do_normalize=False)
    pixels = _read_calibration(folder, limit, warp)  # (N, 3, H, W) float32 in [0, 255]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def _read_calibration(folder: str | os.PathLike, limit: int, processor: SwiftFormerImageProcessor) -> Any:
    """``processor``'s pixel values of up to ``limit`` images under ``folder`` (every class folder sampled),
    concatenated; unreadable images are skipped, none readable is a ValueError."""
    import numpy as np

    from ..image_processing import IMAGE_EXTENSIONS, load_image

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"calibration data {root} is not a folder of images")
    if limit < 1:
        raise ValueError(f"the number of calibration images must be at least 1, got {limit}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise ValueError(f"calibration data {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    paths = _sample_per_folder(paths, limit)
    images = []
    for path in paths:
        try:
            images.append(processor(load_image(path))["pixel_values"])
        except (OSError, ValueError):
            continue
    if not images:
        raise ValueError(f"none of the {len(paths)} calibration images under {root} could be read")
    return np.concatenate(images)
