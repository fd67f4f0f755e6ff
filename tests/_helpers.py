"""Shared test helpers: perturbed weights that expose bugs the default init would hide.

The default init scales every attention/MLP branch by ``layer_scale_init_value`` (1e-5), so a wrong
branch changes the output by ~1e-5 and slips through any tolerance. Perturbed weights make every
branch matter: random BatchNorm statistics, layer scales around 0.5, weights at fan-in scale.
"""

from __future__ import annotations

import torch


def perturb_state_dict(state_dict: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """A new state dict with the same keys and shapes, randomized so that every branch matters."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state_dict.items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        shape = value.shape
        if key.endswith("running_var"):
            new = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            new = torch.randn(shape, generator=gen) * 0.2
        elif "layer_scale" in key:
            new = torch.rand(shape, generator=gen) * 0.5 + 0.25  # ~0.5
        elif (
            key.endswith("norm.weight")
            or ".norm1.weight" in key
            or "patch_embedding.1.weight" in key
            or "patch_embedding.4.weight" in key
        ):
            new = torch.rand(shape, generator=gen) + 0.5  # BatchNorm gamma
        elif key.endswith("bias"):
            new = torch.randn(shape, generator=gen) * 0.1
        else:
            fan_in = value[0].numel() if value.ndim > 1 else value.numel()
            new = torch.randn(shape, generator=gen) / fan_in**0.5
        out[key] = new.to(value.dtype)
    return out


def perturb_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb ``model``'s weights in place (see :func:`perturb_state_dict`); returns the model."""
    model.load_state_dict(perturb_state_dict(model.state_dict(), seed))
    return model


def assert_close_rel(
    actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, what: str = "", atol: float = 0.0
) -> None:
    """``max|actual - expected| <= max(rel * max|expected|, atol)`` (the parity criterion of the project)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max()
    err = (actual - expected).abs().max()
    assert err <= max(rel * scale, atol), (
        f"{what}: max|diff| {err.item():.3e} > {rel:g} x max|value| {scale.item():.3e}"
    )
