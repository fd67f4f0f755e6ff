"""Which precision and backend to run at, and :func:`optimize_for_inference`, which builds what they name.

``precision="auto"`` and ``backend="auto"`` must not guess from the machine the project was tuned on: bf16 is
a large win where the CPU computes it (AVX512-BF16, AMX) and a large loss where it is emulated (AVX2-only), and
the exported runtimes (ONNX Runtime, OpenVINO) win small-batch latency while compiled inductor wins batch
throughput (the measurements behind each rule are in docs/performance.md). The decisions
(:func:`resolve_precision`, :func:`resolve_backend`, :func:`small_batch_max`) are pure functions of a
:class:`~swiftformer.hardware.CPUInfo` (the CPU facts, :mod:`swiftformer.hardware`) and of which packages are
installed, both injectable, so they are tested on fake CPUs; each comes with a one-line reason that the CLI and
benchmark reports print. :class:`AutoBackend` runs the backend decision per call, as the batch size is only
known then.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any, Literal

import torch
from torch import nn

from .. import hardware
from ..configuration import SwiftFormerConfig
from ..hardware import CPUInfo
from ..modeling import SwiftFormerForImageClassification
from .fuse import FusedSwiftFormer, check_pixel_values, fuse, min_spatial_size
from .inductor import MicroBatched, inductor_module
from .runtimes import ONNXRuntimeClassifier, OpenVINOClassifier

Backend = MicroBatched | ONNXRuntimeClassifier | OpenVINOClassifier  # each says .precision, .backend, .reason

logger = logging.getLogger("swiftformer.inference")  # the package's one logger, as documented

RUN_PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("auto", "inductor", "openvino", "onnxruntime")
# What each backend can compute; "auto" falls back to fp32 on the others, an explicit request is an error.
BACKEND_PRECISIONS = {
    "inductor": ("fp32", "bf16", "int8"),
    "openvino": ("fp32", "bf16"),
    "onnxruntime": ("fp32",),
}
# backend="auto" sends batches up to this size to an exported runtime (ONNX Runtime or OpenVINO), larger ones to
# compiled inductor, on CPUs with AVX-512 (see small_batch_max for the others): the runtimes measured faster at
# batch 1, inductor at batch 32 (docs/performance.md, "Why 4 with AVX-512"). 4 is where inductor's own advantage
# starts: its first stage runs in micro-batches of 4 (fp32) while later stages see the whole batch, so up to 4
# images it runs the same small kernels as at batch 1 and only adds per-call overhead.
SMALL_BATCH_MAX = 4
# Runtimes auto considers at small batches, best first (ONNX Runtime's CPU provider has no bf16 kernels).
_RUNTIMES = {"fp32": ("onnxruntime", "openvino"), "bf16": ("openvino",)}


class SlowPrecisionWarning(RuntimeWarning):
    """An explicitly requested precision that this CPU has no instructions for: it runs, but slowly.

    A subclass so users who know (e.g. checking bf16 accuracy on a laptop) can silence just this one:
    ``warnings.filterwarnings("ignore", category=SlowPrecisionWarning)``.
    """


@dataclass(frozen=True)
class PrecisionChoice:
    """The inference precision to use and a one-line reason a person can check against their CPU."""

    precision: str
    reason: str


@dataclass(frozen=True)
class BackendChoice:
    """The inference backend to use and a one-line reason."""

    backend: str
    reason: str


# ------------------------------------------------------------------------------ the policy
def _int8_label(cpu: CPUInfo) -> str:
    for flag, label in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI")):
        if flag in cpu.flags:
            return label
    return "none"


def resolve_precision(
    requested: str,
    *,
    cpu: CPUInfo | None = None,
    device: str = "cpu",
    calibration_given: bool = False,
    stacklevel: int = 2,
) -> PrecisionChoice:
    """The precision to run at: ``requested``, or for ``"auto"`` the fastest one this hardware computes natively.

    ``"auto"``: bf16 on CUDA or on a CPU with AVX512-BF16 / AMX (on AMX bf16 measured faster than int8 in
    this project, so it wins even with calibration data); else int8 on a CPU with VNNI / AMX-INT8 when
    calibration data was given (int8 cannot run without it); else fp32. Other devices (e.g. ``"mps"``): fp32.

    An explicit choice is kept (the user asked), but on the CPU bf16 without native bf16 and int8 without int8
    dot products emit one :class:`SlowPrecisionWarning`, since both run far below what was expected. Off the
    CPU (``"cuda:0"``, ``"mps"``) the CPU's flags are not consulted. ``stacklevel`` is the warning's, for callers
    that want it to point at their own caller.

    Args:
        cpu: The CPU to decide for; default this machine's (:func:`swiftformer.hardware.cpu_info`).

    Raises:
        ValueError: ``requested`` is not one of :data:`RUN_PRECISIONS`.
    """
    if requested not in RUN_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(RUN_PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return PrecisionChoice("fp32", "fp32 (requested)")
    kind = str(device).split(":", 1)[0].lower()
    if kind != "cpu":  # the CPU's flags say nothing about an accelerator
        if requested != "auto":
            return PrecisionChoice(requested, f"{requested} (requested)")
        if kind == "cuda":
            return PrecisionChoice("bf16", "bf16 on CUDA")
        return PrecisionChoice("fp32", f"fp32 on {kind} (auto picks bf16 only on CUDA or a CPU with native bf16)")
    cpu = cpu if cpu is not None else hardware.cpu_info()
    if requested == "bf16":
        if not cpu.native_bf16:
            warnings.warn(
                f"precision='bf16' on {cpu.model}, which has no native bf16 (neither avx512_bf16 nor amx_bf16 "
                "in its CPU flags): bf16 is emulated here: measured ~10-80x slower than fp32 on an AVX2-only "
                "AMD EPYC. Use precision='fp32' or 'auto' for speed.",
                SlowPrecisionWarning,
                stacklevel=stacklevel,
            )
            return PrecisionChoice("bf16", "bf16 (requested; emulated: no avx512_bf16 / amx_bf16)")
        return PrecisionChoice("bf16", "bf16 (requested)")
    if requested == "int8":
        if not cpu.native_int8:
            warnings.warn(
                f"precision='int8' on {cpu.model}, which has no int8 dot products (none of avx512_vnni, avx_vnni, "
                "amx_int8 in its CPU flags): int8 runs but gains little over fp32 here, at a cost in accuracy.",
                SlowPrecisionWarning,
                stacklevel=stacklevel,
            )
            return PrecisionChoice("int8", "int8 (requested; no VNNI / AMX-INT8)")
        return PrecisionChoice("int8", "int8 (requested)")
    if cpu.native_bf16:
        reason = "bf16 on AMX" if "amx_bf16" in cpu.flags else "bf16: AVX512-BF16"
        if calibration_given and cpu.native_int8:
            reason += " (preferred over int8: measured faster on AMX)" if cpu.amx else " (preferred over int8)"
        return PrecisionChoice("bf16", reason)
    if cpu.native_int8 and calibration_given:
        return PrecisionChoice("int8", f"int8 on {_int8_label(cpu)} with calibration data")
    reason = "fp32: this CPU has no native bf16 (no avx512_bf16 / amx_bf16)"
    if cpu.native_int8:
        reason += f"; int8 on {_int8_label(cpu)} needs calibration data"
    return PrecisionChoice("fp32", reason)


def _importable(name: str) -> bool:
    """Whether ``name`` could be imported, without importing it (OpenVINO's import takes seconds)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def small_batch_max(precision: str = "fp32", cpu: CPUInfo | None = None) -> int | None:
    """The largest batch ``backend="auto"`` sends to an exported runtime at ``precision``; ``None``: every batch.

    :data:`SMALL_BATCH_MAX` on CPUs with AVX-512, where inductor has the best batch throughput. On AVX2-only
    CPUs (no AVX-512) ONNX Runtime and OpenVINO were as fast as or faster than compiled inductor at every fp32
    batch size measured, on two AMD EPYCs (docs/performance.md, "Measured on AVX2-only AMD EPYCs"), and they
    need no compile: so the runtime takes every fp32 batch there. bf16 on such a CPU is emulated (and OpenVINO
    runs f32), so it keeps the threshold.
    """
    cpu = cpu if cpu is not None else hardware.cpu_info()
    return None if precision == "fp32" and not cpu.avx512 else SMALL_BATCH_MAX


def resolve_backend(
    requested: str,
    *,
    batch_size: int | None,
    precision: str,
    available: Callable[[str], bool] | None = None,
    compiled: bool = True,
    device: str = "cpu",
    cpu: CPUInfo | None = None,
) -> BackendChoice:
    """The backend to run on: ``requested``, or for ``"auto"`` the one measured fastest for this batch size.

    ``"auto"``, on the CPU: an exported runtime for small batches (``batch_size <= small_batch_max(...)``, see
    :func:`small_batch_max`: every fp32 batch on AVX2-only CPUs): ONNX Runtime, else OpenVINO, at fp32; OpenVINO at
    bf16 (ONNX Runtime's CPU provider has no bf16 kernels); whichever is installed. Larger batches (and an unknown
    batch size) run on inductor, the best batch throughput, when it is ``compiled``; uncompiled, the fused eager
    module was slower than both runtimes at batch 32 too (docs/performance.md), so the runtime is used at every
    batch size. int8 and other devices than the CPU always run on inductor. Without an installed runtime:
    inductor.

    Args:
        precision: The resolved precision (``"fp32"``, ``"bf16"`` or ``"int8"``), not ``"auto"``.
        available: Whether a package can be imported; defaults to :func:`importlib.util.find_spec`. Injected
            by tests.
        compiled: Whether the inductor path would be ``torch.compile``-d.
        device: Where the model is (``"cpu"``, ``"cuda:0"``, ...); the runtimes here run on the CPU only.
        cpu: The CPU to decide for; default this machine's (:func:`swiftformer.hardware.cpu_info`).

    Raises:
        ValueError: an unknown backend or precision, or a batch size below 1.
    """
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"precision must be a resolved one of fp32, bf16, int8, got {precision!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if requested != "auto":
        return BackendChoice(requested, f"{requested} (requested)")
    kind = str(device).split(":", 1)[0].lower()
    if kind != "cpu":
        return BackendChoice("inductor", f"inductor: on {kind} (onnxruntime and openvino run here on the CPU only)")
    if precision == "int8":
        return BackendChoice("inductor", "inductor: int8 runs through torch.compile (OpenVINO int8 needs NNCF)")
    limit = small_batch_max(precision, cpu)
    small = limit is None or (batch_size is not None and batch_size <= limit)
    size = "unknown batch size" if batch_size is None else f"batch {batch_size}"
    if compiled and not small:
        reason = f"inductor: best throughput at {size} (runtimes only up to batch {limit})"
        return BackendChoice("inductor", reason)
    is_available = available or _importable
    for runtime in _RUNTIMES[precision]:
        if is_available(runtime):
            if limit is None:
                why = f"level with inductor or faster at every {precision} batch without AVX-512 (no compile)"
            elif small:
                why = f"lowest {precision} latency at {size}"
            else:
                why = f"faster than the uncompiled inductor path at {size}"
            return BackendChoice(runtime, f"{runtime}: {why}")
    missing = " / ".join(_RUNTIMES[precision])
    return BackendChoice("inductor", f"inductor: {missing} (faster at {size}) not installed")


def describe_hardware(cpu: CPUInfo | None = None) -> dict[str, Any]:
    """A JSON-safe summary of the CPU (:func:`swiftformer.hardware.describe_cpu`) and of what ``"auto"`` picks on
    it, for ``swiftformer info --hardware`` and ``swiftformer bench`` reports.

    Shows the reasons as well as the picks, so a surprising choice can be traced to a missing CPU flag.
    """
    cpu = cpu or hardware.cpu_info()
    auto = resolve_precision("auto", cpu=cpu)
    auto_calibrated = resolve_precision("auto", cpu=cpu, calibration_given=True)
    backends = {b: resolve_backend("auto", batch_size=b, precision=auto.precision, cpu=cpu) for b in (1, 32)}
    return {
        **hardware.describe_cpu(cpu),
        "auto_precision": auto.precision,
        "auto_precision_reason": auto.reason,
        "auto_precision_with_calibration": auto_calibrated.precision,
        "auto_precision_with_calibration_reason": auto_calibrated.reason,
        "auto_backend_batch_1": backends[1].backend,
        "auto_backend_batch_1_reason": backends[1].reason,
        "auto_backend_batch_32": backends[32].backend,
        "auto_backend_batch_32_reason": backends[32].reason,
        "auto_small_batch_max": small_batch_max(auto.precision, cpu),  # None: the runtime takes every batch
        "installed_backends": ["inductor", *(name for name in ("onnxruntime", "openvino") if _importable(name))],
    }


# ------------------------------------------------------------------------------ building what it picks
def optimize_for_inference(
    model: SwiftFormerForImageClassification,
    precision: str = "auto",
    compile: bool = True,
    calibration: torch.Tensor | list[torch.Tensor] | None = None,
    dynamic: bool | None = None,
    micro_batch: int | Literal["auto"] | None = "auto",
    backend: str = "auto",
) -> AutoBackend | Backend:
    """A module computing ``pixel_values (B, 3, H, W) -> logits (B, num_labels)`` fast on a CPU.

    The model is reparameterized exactly (:func:`~swiftformer.inference.fuse`), then run by the backend and at
    the precision asked for, or for ``"auto"`` the ones this CPU is fast at.

    The returned module says what it runs: ``.precision`` (what it actually computes: ``"fp32"``, ``"bf16"``
    or ``"int8"``), ``.backend`` (``"inductor"``, ``"openvino"``, ``"onnxruntime"``, or ``"auto"`` for the
    module that dispatches by batch size, whose ``.backend_for(batch_size)`` names the backend per call) and
    ``.reason`` (one line, e.g. ``"fp32: this CPU has no native bf16 (...); onnxruntime up to batch 4, inductor
    above"``), which is also logged once at INFO on the ``swiftformer.inference`` logger.

    Args:
        model: A classifier (its weights are copied; it is left unchanged).
        precision: ``"auto"`` (default: :func:`resolve_precision`: bf16 where the CPU computes it natively
            (AVX512-BF16, AMX) or on CUDA, int8 where it has VNNI / AMX-INT8 and ``calibration`` is given, fp32
            otherwise), ``"fp32"`` (exact up to float round-off), ``"bf16"`` (bf16 weights and activations) or
            ``"int8"`` (torchao's PT2E X86 quantizer, static per-channel weights and per-tensor activations,
            calibrated on ``calibration``). An explicit ``"bf16"`` or ``"int8"`` on a CPU without instructions for
            it runs, slowly, with a :class:`SlowPrecisionWarning`.
        compile: ``torch.compile`` with inductor and weight freezing. The first call of each new
            input shape compiles (tens of seconds); later calls are fast. Without it, the fused
            eager module is used (already faster than the original).
        calibration: Calibration ``pixel_values`` for int8: a (N, 3, H, W) tensor or a list of them
            (the int8 model then takes that H × W; the batch size is free).
        dynamic: Passed to ``torch.compile``; ``None`` lets it specialize first and generalize later.
        micro_batch: Run the stem and the first stage on at most this many images at a time, and the
            rest of the network on the whole batch. The first stage (56×56 tokens at 224², only 48
            channels) is bound by memory traffic: its 4× wider MLP activations of a large batch do not
            fit in cache, those of a few images do (the gain is in docs/performance.md); ``None`` turns it
            off. The result is the same (images are independent). ``"auto"``:
            :data:`~swiftformer.inference.inductor.AUTO_MICRO_BATCH` (4 fp32 and int8, 8 bf16).
        backend: ``"auto"`` (default): a module that picks per call by batch size (:func:`resolve_backend`):
            batches up to :data:`SMALL_BATCH_MAX` (4) on ONNX Runtime (fp32) or OpenVINO (fp32, bf16), whichever
            is installed, larger ones on inductor (every batch size on the runtime when ``compile`` is off, the
            uncompiled path being slower than both, and at fp32 on CPUs without AVX-512, where the runtimes were
            level with inductor or ahead at every batch size); each backend is built on its first call (an ONNX
            export or OpenVINO conversion takes seconds, a compile tens). int8 and models off the CPU always use
            inductor. ``"inductor"``: torch.compile (the best batch throughput). ``"openvino"``: the fused model
            converted in memory and compiled by OpenVINO's CPU plugin with an explicit fp32/bf16 precision hint;
            ``.precision`` is what the compiled model reports it runs (OpenVINO runs f32 where the CPU has no bf16,
            with a :class:`~swiftformer.inference.PrecisionNotHonouredWarning`). ``"onnxruntime"``: the fused model
            exported to ONNX in memory (dynamic batch, height, width) and run by ONNX Runtime's CPU provider with
            torch's thread count, fp32 only. Both runtimes need ``pip install .[export]``; ``compile``, ``dynamic``
            and ``micro_batch`` do not apply to them.

    Raises:
        ValueError: an unknown precision or backend, a precision the backend does not run, a bad
            ``micro_batch``, int8 without calibration.
    """
    if precision not in RUN_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(RUN_PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto" and precision not in ("auto", *BACKEND_PRECISIONS[backend]):
        runs = ", ".join(BACKEND_PRECISIONS[backend])
        hint = " (it needs NNCF)" if backend == "openvino" else ""
        raise ValueError(
            f"{precision} is not offered with backend={backend!r}{hint}: it runs {runs}; use backend='inductor'"
        )
    if (
        micro_batch is not None
        and micro_batch != "auto"
        and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1)
    ):
        raise ValueError(f"micro_batch must be a positive int, None or 'auto', got {micro_batch!r}")
    device = next(model.parameters()).device.type if isinstance(model, nn.Module) else "cpu"
    with warnings.catch_warnings():
        if backend == "openvino":  # OpenVINO does not emulate bf16, it falls back to f32: checked after compiling
            warnings.simplefilter("ignore", SlowPrecisionWarning)
        choice = resolve_precision(precision, device=device, calibration_given=calibration is not None, stacklevel=3)
    if backend != "auto" and choice.precision not in BACKEND_PRECISIONS[backend]:  # "auto" picked what it lacks
        choice = PrecisionChoice("fp32", f"fp32: {backend} runs {', '.join(BACKEND_PRECISIONS[backend])} only")
    fused = fuse(model)
    options: dict[str, Any] = {
        "compile": compile,
        "dynamic": dynamic,
        "micro_batch": micro_batch,
        "calibration": calibration,
    }
    module: AutoBackend | Backend
    if backend == "auto" and choice.precision != "int8" and device == "cpu":
        module = AutoBackend(fused, model.config, choice, **options)
    else:
        name, why = backend, None
        if backend == "auto":  # int8, or off the CPU: inductor whatever the batch size
            name, why = astuple(resolve_backend("auto", batch_size=None, precision=choice.precision, device=device))
        module = _build_backend(name, fused, model.config, choice, **options, backend_reason=why, stacklevel=3)
    logger.info("%s", module.reason)
    return module


def _build_backend(
    name: str,
    fused: FusedSwiftFormer,
    config: SwiftFormerConfig,
    choice: PrecisionChoice,
    *,
    compile: bool,
    dynamic: bool | None,
    micro_batch: int | Literal["auto"] | None,
    calibration: Any,
    stacklevel: int = 2,
    backend_reason: str | None = None,
) -> Backend:
    """One backend's module for ``fused`` (used, not copied: pass a copy to keep ``fused`` fp32), with
    ``.precision``, ``.backend`` and ``.reason`` set. ``stacklevel``: a warning's, as if issued here."""
    backend_reason = backend_reason or f"{name} (requested)"
    if name == "openvino":
        return OpenVINOClassifier(
            fused, config, choice.precision, reason=f"{choice.reason}; {backend_reason}", stacklevel=stacklevel + 1
        )
    module: MicroBatched | ONNXRuntimeClassifier
    if name == "onnxruntime":
        module = ONNXRuntimeClassifier(fused, config)
    else:
        module = inductor_module(fused, choice.precision, compile, dynamic, micro_batch, calibration)
    module.reason = f"{choice.reason}; {backend_reason}"
    return module


class AutoBackend(nn.Module):
    """``backend="auto"``: each call runs on the backend :func:`resolve_backend` picks for its batch size (an
    exported runtime up to :func:`small_batch_max` images, inductor above; on AVX2-only CPUs the runtime at every
    fp32 batch), each built on its first call. The batch size is only known per call, hence per call.

    A runtime that fails to build (a broken install, an export error) is reported with a ``RuntimeWarning``
    and replaced by inductor for the rest of this module's life; inputs a runtime's graph cannot take
    (smaller than :func:`~swiftformer.inference.min_spatial_size`) go to inductor too.
    """

    def __init__(
        self,
        fused: FusedSwiftFormer,
        config: SwiftFormerConfig,
        choice: PrecisionChoice,
        *,
        compile: bool,
        dynamic: bool | None,
        micro_batch: int | Literal["auto"] | None,
        calibration: Any = None,
        available: Any = None,
    ) -> None:
        super().__init__()
        self.fused = fused  # float32; every backend is built from it (a copy where it would be cast)
        self.config = config
        self.choice = choice
        self.options: dict[str, Any] = {
            "compile": compile,
            "dynamic": dynamic,
            "micro_batch": micro_batch,
            "calibration": calibration,
        }
        self.available = available  # None: what importlib finds; tests inject a set
        self.parts = nn.ModuleDict()  # backend name -> its module, once built
        self.part_precisions: dict[str, str] = {}  # backend name -> what its module computes
        self.failed: dict[str, str] = {}  # runtime -> why it could not be built
        self._by_batch: dict[int, BackendChoice] = {}
        self.num_channels = config.num_channels
        size = config.image_size if isinstance(config.image_size, int) else min(config.image_size)
        self._low = min_spatial_size(config)
        self._runtime_sizes_dynamic = size >= self._low
        self._config_size = (config.image_size,) * 2 if isinstance(config.image_size, int) else tuple(config.image_size)
        self.backend = "auto"
        limit = small_batch_max(choice.precision)  # None on AVX2-only CPUs at fp32: the runtime takes every batch
        small, large = self.backend_for(1), self.backend_for(limit + 1 if limit is not None else 1)
        if small == large:
            plan = f"{small} at every batch size"
            if small == "inductor" or limit is None:
                plan += f" ({self._choice(1).reason.split(': ', 1)[-1]})"
            elif not compile:
                plan += " (uncompiled inductor is slower)"
        else:
            plan = f"{small} up to batch {limit} (lowest latency), {large} above (best throughput)"
        self.reason = f"{choice.reason}; {plan}"

    def _choice(self, batch_size: int) -> BackendChoice:
        if batch_size not in self._by_batch:
            self._by_batch[batch_size] = resolve_backend(
                "auto",
                batch_size=batch_size,
                precision=self.choice.precision,
                available=self.available,
                compiled=self.options["compile"],
            )
        return self._by_batch[batch_size]

    def backend_for(self, batch_size: int, size: tuple[int, int] | None = None) -> str:
        """The backend a call with ``batch_size`` images (of ``size`` = (H, W), if given) runs on."""
        name = self._choice(batch_size).backend
        if name == "inductor" or name in self.failed:
            return "inductor"
        if size is not None and not (
            min(size) >= self._low if self._runtime_sizes_dynamic else tuple(size) == self._config_size
        ):
            return "inductor"
        return name

    @property
    def precision(self) -> str:
        """What the calls run at: the resolved precision, or what the built backends report if they differ
        (e.g. ``"mixed: inductor bf16, openvino fp32"`` where OpenVINO could not honour bf16)."""
        built = self.part_precisions
        if not built or set(built.values()) == {self.choice.precision}:
            return self.choice.precision
        if len(set(built.values())) == 1:
            return next(iter(built.values()))
        return "mixed: " + ", ".join(f"{name} {p}" for name, p in sorted(built.items()))

    def _part(self, name: str) -> nn.Module:
        if name in self.parts:
            return self.parts[name]
        part: Backend
        start = time.perf_counter()
        # Built on first use, possibly inside the caller's inference_mode: export and tracing need normal tensors.
        with torch.inference_mode(False), torch.no_grad():
            fused = copy.deepcopy(self.fused) if name == "inductor" and self.choice.precision == "bf16" else self.fused
            try:
                part = _build_backend(
                    name,
                    fused,
                    self.config,
                    self.choice,
                    **self.options,
                    backend_reason=self._choice(1).reason if name != "inductor" else "inductor",
                    stacklevel=6,  # _build_backend < _part < forward < Module._call_impl < __call__ < the caller
                )
            except Exception as err:
                if name == "inductor":
                    raise
                message = (str(err).strip().splitlines() or [""])[0][:300]
                self.failed[name] = f"{type(err).__name__}: {message}"
                warnings.warn(
                    f"backend='auto' could not build {name} ({self.failed[name]}); running every batch on inductor",
                    RuntimeWarning,
                    stacklevel=5,
                )
                return self._part("inductor")
        logger.debug("built %s for backend='auto' in %.1f s", name, time.perf_counter() - start)
        if part.precision != self.choice.precision:  # OpenVINO without native bf16: say what it really runs
            self.reason += f" ({name} runs {part.precision})"
        self.parts[name] = part
        self.part_precisions[name] = part.precision
        return part

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        size = (int(pixel_values.shape[2]), int(pixel_values.shape[3]))
        return self._part(self.backend_for(int(pixel_values.shape[0]), size))(pixel_values)
