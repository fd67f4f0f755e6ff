"""The fused model on torch: micro-batching of the first stage, bf16 or int8, and ``torch.compile`` (inductor).

:func:`inductor_module` wraps a :class:`~.fuse.FusedSwiftFormer` as a :class:`MicroBatched` module, casts it
to bf16 or quantizes it to int8 (torchao's PT2E X86 quantizer, calibrated on images), and compiles both of its
parts with inductor and weight freezing. This is the best batch throughput of the package (docs/performance.md).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import nn

from .fuse import MAX_DIM, FusedSwiftFormer, check_pixel_values

# micro_batch="auto": the fastest first-stage micro-batch measured at batch 32 (the table in docs/performance.md)
AUTO_MICRO_BATCH = {"fp32": 4, "bf16": 8, "int8": 4}


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
        # nn.Module, not _Early/_Late: int8 and torch.compile replace them by their own modules
        self.early: nn.Module = _Early(fused.features[: fused.first_stage_end], dtype)
        self.late: nn.Module = _Late(fused.features[fused.first_stage_end :], fused.head)
        self.micro_batch = micro_batch
        self.num_channels = fused.num_channels
        self.input_size: tuple[int, int] | None = None  # (H, W) when the parts are exported at one size (int8)
        self.precision = "bf16" if dtype == torch.bfloat16 else "fp32"  # "int8" once quantized
        self.backend = "inductor"
        self.reason = self.precision  # what optimize_for_inference reports: set there

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
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


def quantize_int8(module: MicroBatched, calibration: torch.Tensor | list[torch.Tensor] | None) -> None:
    """Replace ``module.early`` and ``module.late`` by their int8 versions (torchao PT2E, X86 quantizer),
    calibrated together on ``calibration`` ((N, 3, H, W) or a list of them, one H × W): the first part's
    observed outputs calibrate the second.

    Raises:
        ImportError: torchao is not installed.
        ValueError: no calibration images, or batches of different sizes.
    """
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
        check_pixel_values(batch, module.num_channels)
    sizes = {(int(batch.shape[2]), int(batch.shape[3])) for batch in batches}
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
    module.precision = "int8"


def inductor_module(
    fused: FusedSwiftFormer,
    precision: str,
    compile: bool,
    dynamic: bool | None,
    micro_batch: int | Literal["auto"] | None,
    calibration: Any,
) -> MicroBatched:
    """The micro-batched, optionally int8-quantized and compiled module of ``fused`` (cast in place for bf16);
    its ``.precision`` is ``precision`` and its ``.backend`` ``"inductor"``.

    Args:
        fused: The reparameterized model; used, not copied.
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (resolved, not ``"auto"``).
        compile: ``torch.compile`` both parts with inductor and weight freezing.
        dynamic: Passed to ``torch.compile``.
        micro_batch: First-stage micro-batch; ``"auto"``: :data:`AUTO_MICRO_BATCH`; ``None``: the whole batch.
        calibration: Calibration ``pixel_values`` for int8 (see :func:`quantize_int8`).
    """
    if micro_batch == "auto":
        micro_batch = AUTO_MICRO_BATCH[precision]
    if precision == "bf16":
        fused = fused.to(torch.bfloat16)
    module = MicroBatched(fused, torch.bfloat16 if precision == "bf16" else torch.float32, micro_batch)
    if precision == "int8":
        quantize_int8(module, calibration)
    if compile:
        import torch._inductor.config as inductor_config

        # Constant-fold the weights into the graph (layouts, prepacking, quantized weights). Set globally:
        # passed as torch.compile(options=...) it measured slower (docs/performance.md).
        inductor_config.freezing = True
        module.early = cast(nn.Module, torch.compile(module.early, dynamic=dynamic))  # a module in, a module out
        module.late = cast(nn.Module, torch.compile(module.late, dynamic=dynamic))
    return module
