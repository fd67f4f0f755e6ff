"""The fast inference path: exact reparameterization, then torch.compile, bf16 or int8.

:func:`optimize_for_inference` turns a trained :class:`~swiftformer.SwiftFormerForImageClassification`
into a module whose forward takes ``pixel_values`` (B, 3, H, W) and returns logits (B, num_labels),
computing the same function with fewer, larger operations:

* every BatchNorm is folded into a neighbouring convolution or linear layer: after the stem and
  downsampling convs and the depth-wise convs (into the conv before it), before each MLP (into the
  following 1×1 conv), and the classifier's (through the average pool into the heads);
* every layer scale is folded into the weights of the layer that produces its branch;
* ``head`` and ``dist_head`` become one linear layer (their mean);
* the attention's query and key projections become one matrix product; under the ``softmax``
  variant, whose token weights are all 1, the dead ``w_g`` path is dropped;
* the token-wise linear layers run as 1×1 convs on the channels-last feature map, so oneDNN fuses
  the GELU and residual adds into them and no layout changes are needed.

All of this is exact in real arithmetic; in float32 the logits stay within about 1e-6 relative of the
eager model (the tests require 1e-5). On top of it: ``torch.compile`` with inductor and weight
freezing, bf16 weights for AMX, or int8 through torchao's PT2E X86 quantizer with calibration images;
or the fused model exported in memory and run by ONNX Runtime or OpenVINO. By default (``"auto"``) the
precision is the fastest one this CPU computes natively and the backend is chosen per batch size
(:mod:`swiftformer.hardware` holds the policy; this module runs it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import time
import warnings
from dataclasses import astuple
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import SwiftFormerConfig, variant_key
from .hardware import (
    BACKENDS,
    PRECISIONS,
    PrecisionChoice,
    PrecisionNotHonouredWarning,
    SlowPrecisionWarning,
    resolve_backend,
    resolve_precision,
    small_batch_max,
)
from .modeling import (
    SwiftFormerConvEncoder,
    SwiftFormerEmbeddings,
    SwiftFormerEncoderBlock,
    SwiftFormerForImageClassification,
    SwiftFormerStage,
    require_floating_pixels,
)

logger = logging.getLogger(__name__)

# PRECISIONS ("auto", "fp32", "bf16", "int8") and BACKENDS ("auto", "inductor", "openvino", "onnxruntime") come
# from swiftformer.hardware, with the policy behind "auto".
# What each backend can compute; "auto" falls back to fp32 on the others, an explicit request is an error.
BACKEND_PRECISIONS = {
    "inductor": ("fp32", "bf16", "int8"),
    "openvino": ("fp32", "bf16"),
    "onnxruntime": ("fp32",),
}
ONNX_OPSET = 20  # the first opset with a native Gelu (onnxruntime runs it as one kernel)
MAX_DIM = 4096  # the largest batch, height and width of the exported (dynamic) graphs
# micro_batch="auto": the fastest first-stage micro-batch measured here at batch 32 (docs/performance.md)
AUTO_MICRO_BATCH = {"fp32": 4, "bf16": 8, "int8": 4}


# ------------------------------------------------------------------------------ folding helpers
def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """BN(x) = scale * x + shift, per channel, with the running statistics (eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_bn_after_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv then BN → one conv (output channels rescaled)."""
    scale, shift = _bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    fused.weight.data = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused


def _fold_bn_before_pointwise(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """BN then a 1×1 conv → one 1×1 conv (input channels rescaled, bias absorbs the shift)."""
    scale, shift = _bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    weight = conv.weight[:, :, 0, 0]  # (out, in)
    fused.weight.data = (weight * scale).reshape_as(conv.weight)
    fused.bias = nn.Parameter((conv.bias if conv.bias is not None else 0) + weight @ shift)
    return fused


def _scale_output(layer: nn.Conv2d | nn.Linear, scale: torch.Tensor) -> nn.Module:
    """layer then a per-output-channel scale → one layer."""
    fused = copy.deepcopy(layer)
    scale = scale.reshape(-1)
    fused.weight.data = layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    fused.bias.data = layer.bias * scale
    return fused


def pointwise_conv(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A 1×1 conv with copies of ``weight`` ((out, in) or (out, in, 1, 1)) and ``bias`` ((out,) or None):
    a linear layer over the channels of a (B, C, H, W) map."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    conv.weight.data = weight.detach().reshape(weight.shape[0], weight.shape[1], 1, 1).clone()
    if bias is not None:
        conv.bias.data = bias.detach().clone()
    return conv


# ------------------------------------------------------------------------------ fused modules
class FusedConvEncoder(nn.Module):
    """x + pw2(act(pw1(dw(x)))) with BN folded into dw and the layer scale into pw2. NCHW in and out."""

    def __init__(self, block: SwiftFormerConvEncoder) -> None:
        super().__init__()
        self.dw = _fold_bn_after_conv(block.depth_wise_conv, block.norm)
        self.pw1 = block.point_wise_conv1
        self.act = block.act
        self.pw2 = _scale_output(block.point_wise_conv2, block.layer_scale.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.act(self.pw1(self.dw(x))))


class FusedEncoderBlock(nn.Module):
    """Local representation, additive attention and MLP with every BN and layer scale folded in.

    Every token-wise linear layer runs as a 1×1 conv on the channels-last (B, C, H, W) map: oneDNN then
    fuses the GELU and the residual adds into the convs, as in the ConvEncoders (the first stage's
    attention block measured 1.8× faster here in fp32 than with linear layers and separate GELU).
    """

    def __init__(self, block: SwiftFormerEncoderBlock) -> None:
        super().__init__()
        self.local = FusedConvEncoder(block.local_representation)
        attn = block.attn
        dim = attn.to_query.in_features
        self.dim = dim
        self.l2 = attn.variant == "l2"
        self.qk = pointwise_conv(  # query and key projections in one product
            torch.cat([attn.to_query.weight, attn.to_key.weight]), torch.cat([attn.to_query.bias, attn.to_key.bias])
        )
        # (1, C, 1, 1): the token weights are the query's products with w_g (scaled) over channels
        self.w_g = nn.Parameter(
            (attn.w_g.detach() * attn.scale_factor).reshape(1, dim, 1, 1).clone(), requires_grad=False
        )
        self.proj = pointwise_conv(attn.proj.weight, attn.proj.bias)
        scale1 = block.layer_scale_1.detach() if block.use_layer_scale else torch.ones(dim)
        scale2 = block.layer_scale_2.detach() if block.use_layer_scale else torch.ones(dim)
        self.final = _scale_output(pointwise_conv(attn.final.weight, attn.final.bias), scale1)
        mlp = block.linear
        self.fc1 = _fold_bn_before_pointwise(mlp.norm1, mlp.fc1)
        self.act = mlp.act
        self.fc2 = _scale_output(mlp.fc2, scale2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local(x)  # (B, C, H, W)
        query, key = self.qk(x).split(self.dim, dim=1)
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)  # per token, over channels
        if self.l2:
            scores = (query * self.w_g).sum(dim=1, keepdim=True)  # (B, 1, H, W)
            weights = F.normalize(scores.flatten(1), dim=1).view_as(scores)  # over the H × W tokens
            global_query = (weights * query).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        else:  # token weights are exactly 1
            global_query = query.sum(dim=(2, 3), keepdim=True)
        x = x + self.final(self.proj(global_query * key) + query)
        return x + self.fc2(self.act(self.fc1(x)))


class FusedSwiftFormer(nn.Module):
    """The reparameterized classifier: ``forward(pixel_values) -> logits`` (B, num_labels)."""

    def __init__(self, model: SwiftFormerForImageClassification) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval()  # fused layers reuse some modules: never share them with the caller
        stem = model.swiftformer.patch_embed.patch_embedding
        layers: list[nn.Module] = [
            _fold_bn_after_conv(stem[0], stem[1]),
            nn.ReLU(),
            _fold_bn_after_conv(stem[3], stem[4]),
            nn.ReLU(),
        ]
        self.first_stage_end = 0  # features[:first_stage_end] = the stem and the first stage
        for module in model.swiftformer.encoder.network:
            if isinstance(module, SwiftFormerStage):
                for block in module.blocks:
                    layers.append(
                        FusedEncoderBlock(block)
                        if isinstance(block, SwiftFormerEncoderBlock)
                        else FusedConvEncoder(block)
                    )
                self.first_stage_end = self.first_stage_end or len(layers)
            elif isinstance(module, SwiftFormerEmbeddings):
                layers.append(_fold_bn_after_conv(module.proj, module.norm))
        self.features = nn.Sequential(*layers)
        # BN → mean over positions → (head + dist_head) / 2: BN commutes with the mean, so it folds
        # into the averaged heads.
        scale, shift = _bn_scale_shift(model.norm)
        weight = (model.head.weight + model.dist_head.weight) / 2
        bias = (model.head.bias + model.dist_head.bias) / 2
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        self.head.weight.data = (weight * scale).detach().clone()
        self.head.bias.data = (bias + weight @ shift).detach().clone()
        self.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.features(pixel_values.contiguous(memory_format=torch.channels_last))
        return self.head(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------ public entry
def fuse(model: SwiftFormerForImageClassification) -> FusedSwiftFormer:
    """The exact reparameterization alone (no compilation), in channels-last memory format."""
    if not isinstance(model, SwiftFormerForImageClassification):
        raise TypeError(f"expected a SwiftFormerForImageClassification, got {type(model).__name__}")
    if model.config.num_labels == 0:
        raise ValueError("optimize_for_inference needs a model with classification heads (num_labels > 0)")
    if model.dtype != torch.float32:  # e.g. a model cast to bf16: fold in float32, `precision` decides the rest
        model = copy.deepcopy(model).float()
    with torch.no_grad():
        return FusedSwiftFormer(model).to(memory_format=torch.channels_last).eval()


def optimize_for_inference(
    model: SwiftFormerForImageClassification,
    precision: str = "auto",
    compile: bool = True,
    calibration: torch.Tensor | list[torch.Tensor] | None = None,
    dynamic: bool | None = None,
    micro_batch: int | Literal["auto"] | None = "auto",
    backend: str = "auto",
) -> nn.Module:
    """A module computing ``pixel_values (B, 3, H, W) -> logits (B, num_labels)`` fast on a CPU.

    The returned module says what it runs: ``.precision`` (what it actually computes: ``"fp32"``, ``"bf16"``
    or ``"int8"``), ``.backend`` (``"inductor"``, ``"openvino"``, ``"onnxruntime"``, or ``"auto"`` for the
    module that dispatches by batch size, whose ``.backend_for(batch_size)`` names the backend per call) and
    ``.reason`` (one line, e.g. ``"fp32: this CPU has no native bf16 (...); onnxruntime up to batch 4, inductor
    above"``), which is also logged once at INFO on the ``swiftformer.inference`` logger.

    Args:
        model: A classifier (its weights are copied; it is left unchanged).
        precision: ``"auto"`` (default: :func:`swiftformer.hardware.resolve_precision`: bf16 where the CPU
            computes it natively (AVX512-BF16, AMX) or on CUDA, int8 where it has VNNI / AMX-INT8 and
            ``calibration`` is given, fp32 otherwise), ``"fp32"`` (exact up to float round-off), ``"bf16"``
            (bf16 weights and activations) or ``"int8"`` (torchao's PT2E X86 quantizer, static per-channel
            weights and per-tensor activations, calibrated on ``calibration``). An explicit ``"bf16"`` or
            ``"int8"`` on a CPU without instructions for it runs, slowly, with a
            :class:`~swiftformer.hardware.SlowPrecisionWarning`.
        compile: ``torch.compile`` with inductor and weight freezing. The first call of each new
            input shape compiles (tens of seconds); later calls are fast. Without it, the fused
            eager module is used (already faster than the original).
        calibration: Calibration ``pixel_values`` for int8: a (N, 3, H, W) tensor or a list of them
            (the int8 model then takes that H × W; the batch size is free).
        dynamic: Passed to ``torch.compile``; ``None`` lets it specialize first and generalize later.
        micro_batch: Run the stem and the first stage on at most this many images at a time, and the
            rest of the network on the whole batch. The first stage (56×56 tokens at 224², only 48
            channels) is bound by memory traffic: its 4× wider MLP activations of a large batch do not
            fit in cache, those of a few images do. 1.3–1.4× the fp32/bf16 batch-32 throughput here and
            1.15× int8 (see docs/performance.md); ``None`` turns it off. The result is the same (images
            are independent). ``"auto"``: :data:`AUTO_MICRO_BATCH` (4 fp32 and int8, 8 bf16).
        backend: ``"auto"`` (default): a module that picks per call by batch size
            (:func:`swiftformer.hardware.resolve_backend`): batches up to
            :data:`~swiftformer.hardware.SMALL_BATCH_MAX` (4) on ONNX Runtime (fp32) or OpenVINO (fp32, bf16),
            whichever is installed, larger ones on inductor (every batch size on the runtime when ``compile`` is
            off, the uncompiled path being slower than both, and at fp32 on CPUs without AVX-512, where the runtimes
            were level with inductor or ahead at every batch size); each backend is built on its first call (an ONNX
            export or OpenVINO conversion takes seconds, a compile tens). int8 and models off the CPU always use
            inductor. ``"inductor"``: torch.compile (the best batch throughput). ``"openvino"``: the fused model
            converted in memory and compiled by OpenVINO's CPU plugin with an explicit fp32/bf16 precision hint;
            ``.precision`` is what the compiled model reports it runs (OpenVINO runs f32 where the CPU has no bf16,
            with a :class:`~swiftformer.hardware.PrecisionNotHonouredWarning`). ``"onnxruntime"``: the fused model
            exported to ONNX in memory (dynamic batch, height, width) and run by ONNX Runtime's CPU provider with
            torch's thread count, fp32 only. Both runtimes need ``pip install .[export]``; ``compile``, ``dynamic``
            and ``micro_batch`` do not apply to them.

    Raises:
        ValueError: an unknown precision or backend, a precision the backend does not run, a bad
            ``micro_batch``, int8 without calibration.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
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
    options = {"compile": compile, "dynamic": dynamic, "micro_batch": micro_batch, "calibration": calibration}
    if backend == "auto" and choice.precision != "int8" and device == "cpu":
        module: nn.Module = AutoBackend(fused, model.config, choice, **options)
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
) -> nn.Module:
    """One backend's module for ``fused`` (used, not copied: pass a copy to keep ``fused`` fp32), with
    ``.precision``, ``.backend`` and ``.reason`` set. ``stacklevel``: a warning's, as if issued here."""
    backend_reason = backend_reason or f"{name} (requested)"
    if name == "openvino":
        return OpenVINOClassifier(
            fused, config, choice.precision, reason=f"{choice.reason}; {backend_reason}", stacklevel=stacklevel + 1
        )
    if name == "onnxruntime":
        module: nn.Module = ONNXRuntimeClassifier(fused, config)
    else:
        module = _inductor(fused, choice.precision, compile, dynamic, micro_batch, calibration)
    module.reason = f"{choice.reason}; {backend_reason}"
    return module


def _inductor(
    fused: FusedSwiftFormer,
    precision: str,
    compile: bool,
    dynamic: bool | None,
    micro_batch: int | Literal["auto"] | None,
    calibration: Any,
) -> MicroBatched:
    """The micro-batched, optionally int8-quantized and compiled module of ``fused`` (cast in place for bf16)."""
    if micro_batch == "auto":
        micro_batch = AUTO_MICRO_BATCH[precision]
    if precision == "bf16":
        fused = fused.to(torch.bfloat16)
    module = MicroBatched(fused, torch.bfloat16 if precision == "bf16" else torch.float32, micro_batch)
    if precision == "int8":
        _quantize_int8(module, calibration)
    if compile:
        import torch._inductor.config as inductor_config

        # constant-fold the weights into the graph (layouts, prepacking, quantized weights). Global:
        # passed as torch.compile(options=...) it measured 1.2-1.4x slower here.
        inductor_config.freezing = True
        module.early = torch.compile(module.early, dynamic=dynamic)
        module.late = torch.compile(module.late, dynamic=dynamic)
    module.precision, module.backend = precision, "inductor"
    return module


class AutoBackend(nn.Module):
    """``backend="auto"``: each call runs on the backend :func:`~swiftformer.hardware.resolve_backend` picks
    for its batch size (an exported runtime up to :func:`~swiftformer.hardware.small_batch_max` images,
    inductor above; on AVX2-only CPUs the runtime at every fp32 batch), each built on its first call. The
    batch size is only known per call, hence per call.

    A runtime that fails to build (a broken install, an export error) is reported with a ``RuntimeWarning``
    and replaced by inductor for the rest of this module's life; inputs a runtime's graph cannot take
    (smaller than :func:`min_spatial_size`) go to inductor too.
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
        self.options = {"compile": compile, "dynamic": dynamic, "micro_batch": micro_batch, "calibration": calibration}
        self.available = available  # None: what importlib finds; tests inject a set
        self.parts = nn.ModuleDict()  # backend name -> its module, once built
        self.failed: dict[str, str] = {}  # runtime -> why it could not be built
        self._by_batch: dict[int, Any] = {}
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

    def _choice(self, batch_size: int):
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
        built = {name: part.precision for name, part in self.parts.items()}
        if not built or set(built.values()) == {self.choice.precision}:
            return self.choice.precision
        if len(set(built.values())) == 1:
            return next(iter(built.values()))
        return "mixed: " + ", ".join(f"{name} {p}" for name, p in sorted(built.items()))

    def _part(self, name: str) -> nn.Module:
        if name in self.parts:
            return self.parts[name]
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
        return part

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _check_pixel_values(pixel_values, self.num_channels)
        size = (int(pixel_values.shape[2]), int(pixel_values.shape[3]))
        return self._part(self.backend_for(int(pixel_values.shape[0]), size))(pixel_values)


def _check_pixel_values(pixel_values: Any, channels: int) -> None:
    """One clear error for anything but a (B, channels, H, W) tensor."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != channels:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a tensor of shape (B, {channels}, H, W), got {shape}")
    require_floating_pixels(pixel_values)


class _Early(nn.Module):
    """float32 pixel values → the first stage's output, in the weights' dtype, channels-last."""

    def __init__(self, layers: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.layers, self.dtype = layers, dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layers(pixel_values.to(self.dtype).contiguous(memory_format=torch.channels_last))


class _Late(nn.Module):
    """The first stage's output → float32 logits (the remaining stages, pooling, the merged head)."""

    def __init__(self, layers: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.layers, self.head = layers, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x).mean(dim=(2, 3))).float()


class MicroBatched(nn.Module):
    """``pixel_values (B, 3, H, W) float32 -> logits (B, num_labels) float32`` of a :class:`FusedSwiftFormer`,
    running the stem and the first stage on ``micro_batch`` images at a time (cache-sized activations)
    and the other stages on the whole batch. ``early`` and ``late`` are compiled separately."""

    def __init__(self, fused: FusedSwiftFormer, dtype: torch.dtype, micro_batch: int | None) -> None:
        super().__init__()
        self.early = _Early(fused.features[: fused.first_stage_end], dtype)
        self.late = _Late(fused.features[fused.first_stage_end :], fused.head)
        self.micro_batch = micro_batch
        self.num_channels = fused.features[0].in_channels
        self.input_size: tuple[int, int] | None = None  # (H, W) when the parts are exported at one size (int8)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _check_pixel_values(pixel_values, self.num_channels)
        if self.input_size is not None and tuple(pixel_values.shape[2:]) != self.input_size:
            h, w = self.input_size
            raise ValueError(
                f"this int8 model was calibrated and exported at {h}×{w}; got pixel_values of "
                f"{pixel_values.shape[2]}×{pixel_values.shape[3]} (resize, or quantize again at that size)"
            )
        if self.micro_batch and pixel_values.shape[0] > self.micro_batch:
            x = torch.cat([self.early(chunk) for chunk in pixel_values.split(self.micro_batch)])
        else:
            x = self.early(pixel_values)
        return self.late(x)


def min_spatial_size(config: SwiftFormerConfig) -> int:
    """The smallest height/width whose last stage is at least 2×2 (a 1×1 map specializes exported graphs)."""
    for size in range(8, MAX_DIM + 1):
        if min(config.stage_shapes(size, size)[-1]) >= 2:
            return size
    return MAX_DIM + 1


def export_dims(config: SwiftFormerConfig, size: tuple[int, int], spatial: bool) -> dict[int, Any]:
    """``torch.export`` dynamic dims of ``pixel_values``: the batch, and height and width when ``spatial``
    and ``size`` is not below :func:`min_spatial_size` (smaller inputs export with static H, W)."""
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=MAX_DIM)}
    low = min_spatial_size(config)
    if spatial and min(size) >= low:
        dims[2] = torch.export.Dim("height", min=low, max=MAX_DIM)
        dims[3] = torch.export.Dim("width", min=low, max=MAX_DIM)
    return dims


def openvino_model(fused: FusedSwiftFormer, example: torch.Tensor, dims: dict[int, Any]) -> tuple[Any, list[str]]:
    """(an ``openvino.Model`` of ``fused``, notes): through ``torch.export`` with dynamic ``dims``, else
    OpenVINO's own tracing (batch, height and width dynamic). Input ``pixel_values``, output ``logits``."""
    import warnings

    import openvino as ov

    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ov_model = ov.convert_model(torch.export.export(fused, (example,), dynamic_shapes=(dims,)))
        except Exception as err:
            notes.append(f"converted by tracing (torch.export route failed: {type(err).__name__})")
            ov_model = ov.convert_model(
                fused, example_input=example, input=[ov.PartialShape([-1, example.shape[1], -1, -1])]
            )
    ov_model.inputs[0].get_tensor().set_names({"pixel_values"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model, notes


_OPENVINO_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _runtime_example(config: SwiftFormerConfig) -> tuple[torch.Tensor, dict[int, Any]]:
    """The example input (batch 2 at the config's image size: a batch of 1 would be exported as a constant)
    and the dynamic dims with which the fused model is converted for a runtime backend."""
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    example = torch.randn(2, config.num_channels, size, size, generator=torch.Generator().manual_seed(0))
    return example, export_dims(config, (size, size), spatial=True)


class OpenVINOClassifier(nn.Module):
    """``pixel_values (B, 3, H, W) -> logits (B, num_labels)`` (float32 torch tensors) run by OpenVINO's
    CPU plugin, with the precision hint made explicit (OpenVINO defaults to bf16 on AMX CPUs).

    ``hint`` is what was asked (``"f32"`` or ``"bf16"``); ``inference_precision`` is what the compiled model
    reports it runs (its ``INFERENCE_PRECISION_HINT`` property, read back after compiling: the CPU plugin
    silently runs f32 where the CPU has no bf16), and ``precision`` the same in this library's names.
    """

    def __init__(
        self,
        fused: FusedSwiftFormer,
        config: SwiftFormerConfig,
        precision: str,
        reason: str | None = None,
        stacklevel: int = 2,
    ) -> None:
        """``reason``: the line to report when the precision was honoured (default: ``precision``);
        ``stacklevel``: that of the :class:`PrecisionNotHonouredWarning`."""
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("backend='openvino' needs openvino: pip install .[export]") from None
        self.num_channels = config.num_channels
        example, dims = _runtime_example(config)
        ov_model, _ = openvino_model(fused, example, dims)
        self.hint = "bf16" if precision == "bf16" else "f32"
        self.compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": self.hint})
        self.inference_precision = openvino_inference_precision(self.compiled)
        self.precision = _OPENVINO_PRECISIONS.get(self.inference_precision, self.inference_precision)
        self.backend = "openvino"
        self.reason = reason or f"{precision}; openvino"
        requested = "fp32" if self.hint == "f32" else "bf16"
        if self.precision != requested:
            self.reason = (
                f"{self.precision}: OpenVINO's CPU plugin runs {self.inference_precision} although {self.hint} was "
                "requested" + (" (this CPU has no native bf16)" if requested == "bf16" else "") + "; openvino"
            )
            warnings.warn(
                f"backend='openvino' was asked for {requested} but the compiled model runs "
                f"{self.inference_precision} (its INFERENCE_PRECISION_HINT): results and speed are those of "
                f"{self.precision}" + (": this CPU has no native bf16" if requested == "bf16" else ""),
                PrecisionNotHonouredWarning,
                stacklevel=stacklevel,
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _check_pixel_values(pixel_values, self.num_channels)
        array = pixel_values.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.compiled(array)[0].copy())


def openvino_inference_precision(compiled: Any) -> str:
    """The element type an OpenVINO compiled model computes in (``"f32"``, ``"bf16"``, ``"f16"``): its
    ``INFERENCE_PRECISION_HINT`` property as read back from the compiled model, not the hint passed in."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def onnx_model(fused: nn.Module, example: torch.Tensor, dims: dict[int, Any], opset: int = ONNX_OPSET) -> Any:
    """An ``onnx.ModelProto`` of ``fused`` (input ``pixel_values``, output ``logits``, the dynamic ``dims`` of
    :func:`export_dims`), exported in memory; the exporter's progress lines, INFO logs and warnings are kept
    off stdout and stderr.

    torch's TorchScript exporter (``dynamo=False``) first: it gives the same graph and the same ONNX Runtime
    speed as ``dynamo=True`` here, in ~2 s instead of ~18 s for XS, which the first call of ``predict`` and
    ``serve`` would otherwise wait for. ``dynamo=True`` when it is unavailable (removed in a later torch).
    """
    import onnx

    chatty = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [log.level for log in chatty]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.ExitStack() as restore:
        warnings.simplefilter("ignore")
        for log, level in zip(chatty, levels):  # their INFO lines (one per rewrite) would drown the caller's log
            log.setLevel(max(level, logging.WARNING))
            restore.callback(log.setLevel, level)
        names = {0: "batch", 2: "height", 3: "width"}
        try:
            buffer = io.BytesIO()
            torch.onnx.export(
                fused,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=["pixel_values"],
                output_names=["logits"],
                dynamic_axes={"pixel_values": {i: names[i] for i in dims}, "logits": {0: "batch"}},
            )
            return onnx.load_from_string(buffer.getvalue())
        except Exception:  # the legacy exporter is gone or refused the graph: the new one
            program = torch.onnx.export(
                fused,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=["pixel_values"],
                output_names=["logits"],
                dynamic_shapes={"pixel_values": dims},
                verbose=False,
            )
            return program.model_proto


class ONNXRuntimeClassifier(nn.Module):
    """``pixel_values (B, 3, H, W) -> logits (B, num_labels)`` (float32 torch tensors) of a
    :class:`FusedSwiftFormer` exported to ONNX in memory (:func:`onnx_model`; the graph ``swiftformer export
    --format onnx`` writes) and run by ONNX Runtime's CPU provider, all graph optimizations on, with as many
    intra-op threads as torch uses (``torch.get_num_threads()``). fp32 only."""

    def __init__(self, fused: FusedSwiftFormer, config: SwiftFormerConfig) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("backend='onnxruntime' needs onnxruntime: pip install .[export]") from None
        self.num_channels = config.num_channels
        example, dims = _runtime_example(config)
        proto = onnx_model(fused, example, dims)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1  # one graph at a time: parallelism is within the ops
        self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads
        self.precision, self.backend = "fp32", "onnxruntime"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _check_pixel_values(pixel_values, self.num_channels)
        array = pixel_values.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(["logits"], {"pixel_values": array})[0])


def _quantize_int8(module: MicroBatched, calibration: Any) -> None:
    """Replace ``module.early`` and ``module.late`` by their int8 versions (torchao PT2E, X86 quantizer),
    calibrated together on ``calibration``: the first part's observed outputs calibrate the second."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError:
        raise ImportError("int8 needs torchao: pip install .[export]") from None
    if calibration is None:
        raise ValueError("int8 quantization needs calibration images: pass calibration=pixel_values (N, 3, H, W)")
    batches = [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)
    if not batches:
        raise ValueError("int8 quantization needs calibration images, got an empty list")
    for batch in batches:
        _check_pixel_values(batch, module.num_channels)
    sizes = {tuple(batch.shape[2:]) for batch in batches}
    if len(sizes) > 1:
        raise ValueError(f"int8 calibration batches must share one height × width, got {sorted(sizes)}")
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())

    def prepare(part: nn.Module, first: torch.Tensor) -> nn.Module:
        example = torch.cat([first[:2], first[:2]])[:2]  # batch 2: export would make a batch of 1 a constant
        batch = torch.export.Dim("batch", min=1, max=MAX_DIM)
        return prepare_pt2e(torch.export.export(part, (example,), dynamic_shapes=({0: batch},)).module(), quantizer)

    with torch.no_grad():
        early = prepare(module.early, batches[0])
        middles = [early(batch.float()) for batch in batches]
        late = prepare(module.late, middles[0])
        for middle in middles:
            late(middle)
    module.early, module.late = convert_pt2e(early), convert_pt2e(late)
    module.input_size = sizes.pop()


def load_model(ref: str, hub: dict[str, Any] | None = None) -> SwiftFormerForImageClassification:
    """A classifier in eval mode from a folder or hub id, or from a variant name (``"xs"``,
    ``"swiftformer-l3"``: random weights, seed 0, 1000 labels) for benchmarks and exports.

    A folder of the variant's name wins over the variant (``xs/`` is a folder, not SwiftFormer-XS).
    """
    key = None if Path(ref).exists() else variant_key(ref)
    if key is not None:
        torch.manual_seed(0)
        return SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(key, num_labels=1000)).eval()
    return SwiftFormerForImageClassification.from_pretrained(ref, **(hub or {})).eval()
