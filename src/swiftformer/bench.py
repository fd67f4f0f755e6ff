"""``swiftformer bench``: latency, throughput, memory and first-call time of every inference path.

    swiftformer bench --model xs                         # every mode whose package is installed
    swiftformer bench --model xs --reference --json      # + transformers' model, ratios against it
    swiftformer bench --model l3 --modes fp32 bf16 --image-size 256 --batch-size 64
    swiftformer bench --model xs --modes fp32 onnxruntime openvino openvino-bf16   # exported runtimes
    swiftformer bench --model xs --modes auto                     # what optimize_for_inference() picks here

Each mode runs in a fresh subprocess (so peak memory, compile caches and allocator state are its own)
on the same weights and inputs: batch-1 latency (median and p90 over ``--iterations`` calls after
``--warmup``), batch-N throughput (median), peak resident memory, the first call's time (which holds
compilation; for the runtime modes the export happens before, untimed), and agreement with the eager model (max |Δlogit| / max |logit|, top-1 agreement).
Every row also says what ran (``precision``, ``backend``: what the module reports, e.g. OpenVINO's actual
precision) and the malloc setting; the report names the CPU (:func:`swiftformer.inference.describe_hardware`).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .io.files import display_path

MODES = ("reference", "eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16", "auto")
# Everything but the reference; modes whose package is missing are left out.
DEFAULT_MODES = ("eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16", "auto")
# fp32 / bf16 / int8 are optimize_for_inference(backend="inductor"); onnxruntime, openvino and openvino-bf16 are
# optimize_for_inference(backend=...): the graphs `swiftformer export --format onnx / openvino` write, run with
# torch's thread count; auto is optimize_for_inference() with its defaults (precision and backend "auto": its
# batch-1 latency and batch-N throughput may come from different backends, named in the row).


def available(mode: str) -> bool:
    """Whether the package a mode needs is installed."""
    import importlib.util

    need = {
        "reference": "transformers",
        "int8": "torchao",
        "onnxruntime": "onnxruntime",
        "openvino": "openvino",
        "openvino-bf16": "openvino",
    }.get(mode)
    return need is None or importlib.util.find_spec(need) is not None


def _build(mode: str, model: Any, calibration: Any):
    from .inference import fuse, optimize_for_inference

    if mode == "reference":
        import transformers

        c = model.config
        ref = transformers.SwiftFormerForImageClassification(
            transformers.SwiftFormerConfig(
                depths=c.depths,
                embed_dims=c.embed_dims,
                num_labels=c.num_labels,  # type: ignore[call-arg]  # taken by PreTrainedConfig's **kwargs
                hidden_act=c.hidden_act,
                mlp_ratio=c.mlp_ratio,
                downsamples=c.downsamples,
                use_layer_scale=c.use_layer_scale,
            )
        )
        ref.load_state_dict(model.state_dict())
        return lambda x: ref.eval()(x).logits
    if mode == "eager":
        return lambda x: model(x).logits
    if mode == "fused":
        return fuse(model)
    if mode == "auto":
        return optimize_for_inference(model)
    if mode == "onnxruntime":
        return optimize_for_inference(model, precision="fp32", backend="onnxruntime")
    if mode in ("openvino", "openvino-bf16"):
        return optimize_for_inference(
            model, precision="bf16" if mode == "openvino-bf16" else "fp32", backend="openvino"
        )
    return optimize_for_inference(
        model, precision=mode, backend="inductor", calibration=calibration if mode == "int8" else None
    )


def measure_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One mode's figures (``args.worker``), measured in this process: the body of a ``--worker`` subprocess."""
    import torch

    from .inference import load_model
    from .perf import tune_malloc

    tuned = tune_malloc() if not args.no_tune_malloc else False
    model = load_model(args.model)  # a folder / hub id, or a variant name with random weights (seed 0)
    config = model.config
    square = (config.image_size,) * 2 if isinstance(config.image_size, int) else tuple(config.image_size)
    shape = (config.num_channels, *((args.image_size,) * 2 if args.image_size else square))  # (C, H, W)
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1, *shape, generator=gen)
    xn = torch.randn(args.batch_size, *shape, generator=gen)
    with torch.inference_mode():
        expected = model(xn).logits
        calibration = torch.randn(32, *shape, generator=gen)
    run = _build(args.worker, model, calibration)
    return _measure(args, run, x1, xn, expected, tuned)


def _measure(args: argparse.Namespace, run: Any, x1: Any, xn: Any, expected: Any, tuned: bool) -> dict[str, Any]:
    import torch

    from .perf import latency_ms, time_calls

    with torch.inference_mode():
        start = time.perf_counter()
        run(x1)
        first_call = time.perf_counter() - start

        latency = latency_ms(time_calls(lambda: run(x1), args.iterations, warmup=args.warmup))
        out = run(xn).float()  # also the first batch-N call (compiles that shape)
        thr = time_calls(lambda: run(xn), max(3, args.iterations // 10), warmup=max(1, args.warmup // 4))
    diff = ((out - expected).abs().max() / expected.abs().max()).item()
    ran = {"precision": getattr(run, "precision", "fp32"), "backend": getattr(run, "backend", args.worker)}
    if hasattr(run, "backend_for"):  # backend="auto": which backend each figure came from
        ran["backend_batch_1"] = run.backend_for(1, tuple(x1.shape[2:]))
        ran["backend_batch_n"] = run.backend_for(xn.shape[0], tuple(xn.shape[2:]))
    if hasattr(run, "reason"):
        ran["reason"] = run.reason
    return {
        "mode": args.worker,
        "image_size": x1.shape[-1],
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "malloc_tuned": tuned,
        "latency_ms_median": latency[0],
        "latency_ms_p90": latency[1],
        "throughput_img_s": args.batch_size / statistics.median(thr),
        "first_call_s": first_call,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_rel_diff": diff,
        "top1_agreement": (out.argmax(-1) == expected.argmax(-1)).float().mean().item(),
        **ran,
    }


# ---------------------------------------------------------------------------------------------------
# An exported artifact in its own runtime: ``swiftformer bench --artifact PATH --threads 1 2 4``
# ---------------------------------------------------------------------------------------------------

# suffix -> (runtime, its distribution (for the version), the export format (for the install hint))
ARTIFACT_RUNTIMES = {
    ".tflite": ("LiteRT", "ai-edge-litert", "tflite"),
    ".onnx": ("ONNX Runtime", "onnxruntime", "onnx"),
    ".ort": ("ONNX Runtime", "onnxruntime", "onnx"),
    ".pte": ("ExecuTorch", "executorch", "executorch"),
}
DEFAULT_THREADS = (1, 2, 4)


@dataclass
class ThreadTiming:
    """One thread count's figures: batch-1 latency from the input to the output, in the artifact's runtime."""

    threads: int  # asked for
    threads_applied: int | None  # what the runtime reports running with (None: it cannot say)
    latency_ms_median: float
    latency_ms_p90: float
    throughput_img_s: float  # 1000 / median: one image a call
    first_call_ms: float  # the first call after loading (runtimes set up kernels and buffers there)


@dataclass
class ArtifactReport:
    """:func:`bench_artifact`'s result; :meth:`to_dict` is ``swiftformer bench --artifact --json``'s core."""

    artifact: str
    size_mb: float  # the file's size
    bundle: bool  # manifest.json beside it names it: uint8 images in, probabilities out
    runtime: str  # "LiteRT", "ONNX Runtime", "ExecuTorch"
    runtime_version: str
    execution: str  # how the runtime was set up (provider, delegate, thread setting)
    input: dict[str, Any]  # name, shape (as fed: batch 1), dtype
    output: dict[str, Any]  # name, shape, dtype
    cpu: str  # swiftformer.hardware.hardware_line()
    runs: int
    warmup: int
    rows: list[ThreadTiming]  # one per thread count, in the order given
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Opened:
    """An artifact loaded in its runtime at one thread count: what :func:`bench_artifact` needs of it."""

    run: Callable[[Any], Any]
    threads_applied: int | None
    input: tuple[str, list[int | None], Any]  # name, shape (None: dynamic), numpy dtype
    output: tuple[str, list[int | None], Any]
    execution: str
    resize: Callable[[tuple[int, ...]], None] | None = None  # LiteRT: fix the dynamic dimensions before running
    config_size: tuple[int, int] | None = None  # the config's image size, where the artifact carries it


def _dims(shape: Any) -> list[int | None]:
    """A runtime's shape with every dynamic dimension (a name, ``None``, -1) as ``None``."""
    return [
        d if isinstance(d, int) and d >= 0 else None for d in (int(s) if hasattr(s, "__index__") else s for s in shape)
    ]


def _open_litert(path: Path, threads: int) -> _Opened:
    import numpy as np

    from .export.keras import TFLiteRunner

    runner = TFLiteRunner(path, threads)
    interpreter = runner.interpreter
    try:  # a delegated partition is one DELEGATE node; XNNPACK is the only delegate LiteRT applies by default
        partitions = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
        delegate = (
            f"XNNPACK delegate applied (LiteRT's default; {partitions} partition(s))"
            if partitions
            else "no delegate applied (LiteRT's built-in kernels)"
        )
    except (AttributeError, KeyError, TypeError):  # a private API: when it changes, say so
        delegate = "XNNPACK is LiteRT's default delegate (whether it applied: this LiteRT cannot say)"

    def resize(shape: tuple[int, ...]) -> None:
        if tuple(int(d) for d in runner.input["shape"]) != shape:
            interpreter.resize_tensor_input(runner.input["index"], list(shape))
            interpreter.allocate_tensors()
            runner.input = interpreter.get_input_details()[0]

    def tensor(details: dict[str, Any]) -> tuple[str, list[int | None], Any]:
        return details["name"], _dims(details.get("shape_signature", details["shape"])), np.dtype(details["dtype"])

    return _Opened(
        runner,
        runner.num_threads,
        tensor(runner.input),
        tensor(runner.output),
        f"{delegate}; interpreter num_threads = the thread count",
        resize,
    )


def _open_onnxruntime(path: Path, threads: int) -> _Opened:
    import numpy as np

    from .export.bundle import ort_runner

    runner = ort_runner(path, threads)
    config_size = None
    config = runner.session.get_modelmeta().custom_metadata_map.get("swiftformer.config")
    if config:  # every swiftformer ONNX export carries its config
        size = json.loads(config).get("image_size")
        config_size = (size, size) if isinstance(size, int) else tuple(size) if size else None

    def tensor(arg: Any) -> tuple[str, list[int | None], Any]:  # ONNX Runtime types read "tensor(uint8)"
        dtype = {"float": "float32", "double": "float64"}.get(arg.type[7:-1], arg.type[7:-1])
        return arg.name, _dims(arg.shape), np.dtype(dtype)

    execution = (
        "CPUExecutionProvider, graph optimizations all, intra_op_num_threads = the thread count, inter_op_num_threads 1"
    )
    return _Opened(runner, threads, tensor(runner.input), tensor(runner.output), execution, None, config_size)


# ExecuTorch's ScalarType codes (c10's) of the dtypes an input can have here
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64"}


def _open_executorch(path: Path, threads: int) -> _Opened:
    import numpy as np

    from .export.pytorch import ExecuTorchRunner

    runner = ExecuTorchRunner(path, threads)

    def tensor(info: Any, name: str) -> tuple[str, list[int | None], Any]:  # static shapes; dtype: a ScalarType
        scalar_type = int(info.dtype())
        if scalar_type not in _SCALAR_TYPES:
            raise ValueError(
                f"{display_path(path)}: its input {name} has ExecuTorch ScalarType {scalar_type}, not fed here"
            )
        return name, _dims(info.sizes()), np.dtype(_SCALAR_TYPES[scalar_type])

    execution = (
        "threadpool reset to the thread count (portable_lib._unsafe_reset_threadpool, experimental; XNNPACK runs on it)"
        if runner.num_threads == threads
        else "this ExecuTorch cannot set its thread count from Python: its default pool"
    )
    meta = runner.meta
    return _Opened(
        runner,
        runner.num_threads,
        tensor(meta.input_tensor_meta(0), "#0"),
        tensor(meta.output_tensor_meta(0), "#0"),
        execution,
    )


_OPENERS = {"LiteRT": _open_litert, "ONNX Runtime": _open_onnxruntime, "ExecuTorch": _open_executorch}


def _runtime_of(path: Path) -> tuple[str, str, str]:
    """(runtime, distribution, format) of ``path`` by its suffix; one clear error for what cannot be timed."""
    import platform

    suffix = path.suffix.lower()
    if suffix == ".mlpackage":
        where = "this is not macOS" if platform.system() != "Darwin" else "bench does not drive it"
        raise ValueError(
            f"{display_path(path)}: Core ML runs only on macOS, and {where}: time a .mlpackage in Xcode "
            "(the model's Performance report) on the device"
        )
    if suffix not in ARTIFACT_RUNTIMES:
        raise ValueError(
            f"{display_path(path)}: cannot time a {suffix or 'suffix-less'} artifact; the artifact must be one of "
            f"{', '.join(ARTIFACT_RUNTIMES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no such artifact: {display_path(path)}")
    runtime, package, fmt = ARTIFACT_RUNTIMES[suffix]
    import importlib.util

    module = {"LiteRT": "ai_edge_litert", "ONNX Runtime": "onnxruntime", "ExecuTorch": "executorch"}[runtime]
    if importlib.util.find_spec(module) is None:
        from .export import FORMATS

        raise ImportError(f"timing a {suffix} needs {package}: {FORMATS[fmt].install_hint}")
    return runtime, package, fmt


def bundle_manifest(path: Path) -> dict[str, Any] | None:
    """The bundle manifest beside ``path`` that names it (as its ``artifact`` or as the ``file`` of an entry,
    e.g. an ONNX bundle's ``.ort`` copy); ``None`` for a plain export."""
    from .export.bundle import MANIFEST_FILE, MANIFEST_KIND

    try:
        data = json.loads((path.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        return None
    named = {data.get("artifact")} | {v.get("file") for v in data.values() if isinstance(v, dict)}
    return data if path.name in named else None


def _input_shape(
    opened: _Opened, manifest: dict[str, Any] | None, image_size: tuple[int, int] | None, path: Path
) -> tuple[int, ...]:
    """The shape to feed: batch 1; dynamic height and width from ``image_size``, else the bundle's manifest,
    else the config the artifact carries."""
    shape = opened.input[1]
    spatial = [i for i, d in enumerate(shape) if d is None and i > 0]
    if not spatial:
        if image_size is not None and not any(tuple(shape[i : i + 2]) == image_size for i in range(1, len(shape))):
            raise ValueError(
                f"image_size={image_size[0]} does not apply: {display_path(path)} takes a static input {tuple(shape)}"
            )
        return tuple(1 if d is None else d for d in shape)
    size = image_size
    if size is None and manifest is not None:
        size = (int(manifest["input"]["height"]), int(manifest["input"]["width"]))
    size = size or opened.config_size
    if size is None:
        raise ValueError(f"{display_path(path)} takes any height and width: give image_size=N")
    fill = dict(zip(spatial, size, strict=False))  # in order: height, then width
    return tuple(int(fill.get(i, 1 if d is None else d)) for i, d in enumerate(shape))


def _random_input(shape: tuple[int, ...], dtype: Any, seed: int) -> Any:
    """Seeded random data: pixels (the dtype's whole range) for an integer input, standard normal for a float one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _open(runtime: str, path: Path, threads: int) -> _Opened:
    """``path`` loaded in ``runtime`` at ``threads``; a file the runtime cannot load is one ValueError."""
    try:
        return _OPENERS[runtime](path, threads)
    except (ImportError, ValueError):
        raise
    except Exception as err:  # each runtime has its own exception types (InvalidProtobuf, RuntimeError, ...)
        message = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ValueError(f"{runtime} cannot load {display_path(path)}: {message}") from err


def _time_one(opened: _Opened, x: Any, shape: tuple[int, ...], threads: int, runs: int, warmup: int) -> ThreadTiming:
    """The figures of one loaded artifact: its first call, then ``runs`` timed calls after ``warmup``."""
    from .perf import latency_ms, time_calls

    if opened.resize is not None:
        opened.resize(shape)
    start = time.perf_counter()
    opened.run(x)
    first_call = time.perf_counter() - start
    median, p90 = latency_ms(time_calls(functools.partial(opened.run, x), runs, warmup))
    return ThreadTiming(threads, opened.threads_applied, median, p90, 1e3 / median, 1e3 * first_call)


def bench_artifact(
    path: str | os.PathLike,
    threads: Sequence[int] = DEFAULT_THREADS,
    *,
    runs: int = 100,
    warmup: int = 20,
    image_size: int | tuple[int, int] | None = None,
    seed: int = 0,
) -> ArtifactReport:
    """Time an exported artifact in its own runtime as a phone CPU runs it: one image a call (batch 1), from
    its input to its output, at each of ``threads``.

    ``.tflite``: LiteRT's interpreter (``num_threads``; XNNPACK, its default CPU delegate, reported when it
    applied). ``.onnx`` / ``.ort``: ONNX Runtime's CPU provider, ``intra_op_num_threads`` = threads,
    ``inter_op_num_threads`` 1, graph optimizations all. ``.pte``: ExecuTorch, its process-wide threadpool
    reset to each count and left at the last (an experimental ExecuTorch API; methods loaded before in the
    same process run on the new pool). The artifact is loaded afresh for each count; the figures are the
    median and p90 of ``runs`` calls after ``warmup`` untimed ones (:func:`swiftformer.perf.time_calls`).

    The input is seeded random data of the artifact's own input: uint8 images (a bundle, recognized by its
    ``manifest.json``) or standard normal float32 ``pixel_values``; a dynamic batch is 1, dynamic height and
    width are ``image_size``, else the bundle's size, else the config the artifact carries.

    Raises:
        ValueError: An unknown suffix, a ``.mlpackage`` (Core ML runs only on macOS), ``threads`` empty or a
            count below 1, ``runs`` below 1, ``warmup`` below 0, an ``image_size`` a static artifact does not
            take; FileNotFoundError: no such file; ImportError: the runtime is not installed.
    """
    from .hardware import hardware_line

    path = Path(path)
    if not threads or any(int(n) < 1 for n in threads):
        raise ValueError(f"threads must each be at least 1, got {' '.join(str(n) for n in threads) or 'none'}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be at least 1 and warmup at least 0, got runs={runs}, warmup={warmup}")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    runtime, package, _ = _runtime_of(path)
    manifest = bundle_manifest(path)
    rows, notes, first = [], [], None
    for count in dict.fromkeys(int(n) for n in threads):  # each count once, in the order given
        opened = _open(runtime, path, count)
        if first is None:  # what is fed and what comes out: read from the artifact once
            first = (opened.input, opened.output, opened.execution)
            shape = _input_shape(opened, manifest, size, path)
            x = _random_input(shape, opened.input[2], seed)
        rows.append(_time_one(opened, x, shape, count, runs, warmup))
        if opened.threads_applied != count:
            applied = "a count it cannot report" if opened.threads_applied is None else opened.threads_applied
            notes.append(f"asked for {count} thread(s), {runtime} ran with {applied}")
        del opened  # before the next count loads it again
    assert first is not None
    (in_name, _, in_dtype), (out_name, out_shape, out_dtype), execution = first
    return ArtifactReport(
        artifact=display_path(path),
        size_mb=path.stat().st_size / 2**20,
        bundle=manifest is not None,
        runtime=runtime,
        runtime_version=importlib.metadata.version(package),
        execution=execution,
        input={"name": in_name, "shape": list(shape), "dtype": str(in_dtype)},
        output={"name": out_name, "shape": [1 if d is None else d for d in out_shape], "dtype": str(out_dtype)},
        cpu=hardware_line(),
        runs=runs,
        warmup=warmup,
        rows=rows,
        notes=notes,
    )
