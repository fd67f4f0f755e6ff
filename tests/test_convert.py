"""Checkpoint conversion: the original repository (both releases), timm and native folders, as files,
folders and training checkpoints; the error for unknown and partial state dicts; the CLI command.

The original repository's model is re-implemented below from its source (module structure, key names,
both attention releases), so its outputs are checked against maths written independently of ours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from _helpers import assert_close_rel, perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerImageProcessor
from swiftformer.cli import main
from swiftformer.convert import convert_checkpoint, convert_state_dict, detect_format
from swiftformer.errors import CheckpointError

XS = {"depths": [3, 3, 6, 4], "embed_dims": [48, 56, 112, 220]}
TINY = {"depths": [1, 2, 1, 2], "embed_dims": [8, 16, 16, 24]}


# ------------------------------------------------------------------------------------------------
# The original repository's model (Amshaker/SwiftFormer, models/swiftformer.py), compactly
# ------------------------------------------------------------------------------------------------


class OriginalConvEncoder(nn.Module):
    """ConvEncoder, and SwiftFormerLocalRepresentation when hidden == dim."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.BatchNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden, dim, 1)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x):
        return x + self.layer_scale * self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))


class OriginalAttention(nn.Module):
    """EfficientAdditiveAttnetion: March 2023 release ``A.softmax(dim=-1)``, July 2023 ``normalize(A, dim=1)``."""

    def __init__(self, dim: int, first_release: bool) -> None:
        super().__init__()
        self.first_release = first_release
        self.to_query, self.to_key = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.w_g = nn.Parameter(torch.randn(dim, 1))
        self.scale_factor = dim**-0.5
        self.Proj, self.final = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):  # (B, N, D)
        query = F.normalize(self.to_query(x), dim=-1)
        key = F.normalize(self.to_key(x), dim=-1)
        A = (query @ self.w_g) * self.scale_factor  # the original's names
        A = A.softmax(dim=-1) if self.first_release else F.normalize(A, dim=1)
        G = torch.sum(A * query, dim=1)[:, None, :].expand_as(key)  # einops.repeat in the original
        return self.final(self.Proj(G * key) + query)


class OriginalMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.fc1, self.act, self.fc2 = (
            nn.BatchNorm2d(dim),
            nn.Conv2d(dim, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1),
        )

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.norm1(x))))


class OriginalEncoder(nn.Module):
    """SwiftFormerEncoder: local representation, then layer-scaled attention and MLP residuals."""

    def __init__(self, dim: int, mlp_ratio: float, first_release: bool) -> None:
        super().__init__()
        self.local_representation = OriginalConvEncoder(dim, dim)
        self.attn = OriginalAttention(dim, first_release)
        self.linear = OriginalMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(1e-5 * torch.ones(dim, 1, 1))
        self.layer_scale_2 = nn.Parameter(1e-5 * torch.ones(dim, 1, 1))

    def forward(self, x):
        x = self.local_representation(x)
        B, C, H, W = x.shape
        attn = self.attn(x.permute(0, 2, 3, 1).reshape(B, H * W, C)).reshape(B, H, W, C).permute(0, 3, 1, 2)
        x = x + self.layer_scale_1 * attn
        return x + self.layer_scale_2 * self.linear(x)


class OriginalEmbedding(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj, self.norm = nn.Conv2d(in_dim, out_dim, 3, 2, 1), nn.BatchNorm2d(out_dim)

    def forward(self, x):
        return self.norm(self.proj(x))


class OriginalSwiftFormer(nn.Module):
    """SwiftFormer(layers, embed_dims, downsamples, vit_num=1, distillation) of the original repository."""

    def __init__(
        self,
        depths,
        embed_dims,
        num_classes=1000,
        mlp_ratio=4,
        downsamples=None,
        first_release=False,
        distillation=True,
    ) -> None:
        super().__init__()
        downsamples = downsamples or [True] * len(depths)
        c = embed_dims[0]
        self.patch_embed = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, 2, 1),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, 2, 1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )
        network = []
        for i, (depth, dim) in enumerate(zip(depths, embed_dims)):
            blocks = [OriginalConvEncoder(dim, int(mlp_ratio * dim)) for _ in range(depth - 1)]
            network.append(nn.Sequential(*blocks, OriginalEncoder(dim, mlp_ratio, first_release)))
            if i < len(depths) - 1 and (downsamples[i] or dim != embed_dims[i + 1]):
                network.append(OriginalEmbedding(dim, embed_dims[i + 1]))
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.dist = distillation
        if distillation:
            self.dist_head = nn.Linear(embed_dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for module in self.network:
            x = module(x)
        x = self.norm(x).flatten(2).mean(-1)
        return (self.head(x) + self.dist_head(x)) / 2 if self.dist else self.head(x)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """Randomize any SwiftFormer layout's weights so every branch matters (cf. _helpers.perturb_state_dict):
    random BatchNorm statistics and gammas, layer scales ~0.5, fan-in-scaled weights."""
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    new = {}
    for key, value in state.items():
        module = key.rsplit(".", 1)[0]
        if not value.is_floating_point():
            new[key] = value
        elif key.endswith("running_var") or (key.endswith(".weight") and module + ".running_var" in state):
            new[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            new[key] = torch.randn(value.shape, generator=gen) * 0.2
        elif "layer_scale" in key:
            new[key] = torch.rand(value.shape, generator=gen) * 0.5 + 0.25
        elif key.endswith("bias"):
            new[key] = torch.randn(value.shape, generator=gen) * 0.1
        else:
            fan_in = value[0].numel() if value.ndim > 1 else value.numel()
            new[key] = torch.randn(value.shape, generator=gen) / fan_in**0.5
    model.load_state_dict(new)
    return model.eval()


def pixels(size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def logits_of(folder: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return SwiftFormerForImageClassification.from_pretrained(folder)(x).logits


def reference_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def timm_model(name: str = "swiftformer_xs", **kwargs) -> nn.Module:
    timm = pytest.importorskip("timm")
    return perturbed(timm.create_model(name, **kwargs))


def tiny_timm(**kwargs) -> nn.Module:
    pytest.importorskip("timm")
    from timm.models.swiftformer import SwiftFormer

    args = {"layers": TINY["depths"], "embed_dims": TINY["embed_dims"], "num_classes": 5, **kwargs}
    return perturbed(SwiftFormer(**args))


def config_json(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


# ------------------------------------------------------------------------------------------------
# timm
# ------------------------------------------------------------------------------------------------


def test_timm_xs_matches_timm(tmp_path):
    timm_xs = timm_model()
    torch.save({"model": timm_xs.state_dict()}, tmp_path / "xs.pth")
    result = convert_checkpoint(tmp_path / "xs.pth", tmp_path / "out")
    assert (result.source_format, result.variant, result.attention_variant) == ("timm", "xs", "l2")
    assert result.num_labels == 1000 and result.config.id2label[0] == "tench, Tinca tinca"
    x = pixels(128)
    assert_close_rel(logits_of(tmp_path / "out", x), reference_logits(timm_xs, x), what="timm XS")

    config = SwiftFormerConfig.from_pretrained(tmp_path / "out")
    assert config.depths == XS["depths"] and config.embed_dims == XS["embed_dims"] and config.attention_variant == "l2"
    processor = SwiftFormerImageProcessor.from_pretrained(tmp_path / "out")
    cfg = timm_xs.pretrained_cfg
    assert processor.crop_pct == cfg["crop_pct"] and processor.size == {"shortest_edge": cfg["input_size"][-1]}
    assert processor.resample == 3 and cfg["interpolation"] == "bicubic"
    assert tuple(processor.image_mean) == cfg["mean"] and tuple(processor.image_std) == cfg["std"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mlp_ratios": 3, "downsamples": [False, True, False, True]},  # stage 2 keeps stage 1's width: no downsample
        {"use_layer_scale": False},  # timm then has no layer scale at all
    ],
    ids=["mlp3-no-downsample", "no-layer-scale"],
)
def test_timm_custom_architectures(tmp_path, kwargs):
    model = tiny_timm(**kwargs)
    safetensors.torch.save_file(model.state_dict(), tmp_path / "tiny.safetensors")
    result = convert_checkpoint(tmp_path / "tiny.safetensors", tmp_path / "out")
    assert result.variant is None and result.num_labels == 5
    assert result.config.depths == TINY["depths"] and result.config.embed_dims == TINY["embed_dims"]
    assert result.config.mlp_ratio == kwargs.get("mlp_ratios", 4)
    assert result.config.use_layer_scale == kwargs.get("use_layer_scale", True)
    if "downsamples" in kwargs:
        assert result.config.downsamples == [True, False, True, True]  # ours: "after stage i"
    x = pixels(96)
    assert_close_rel(logits_of(tmp_path / "out", x), reference_logits(model, x), what=str(kwargs))


def test_timm_stage0_downsample_is_reported(tmp_path):
    state = tiny_timm(downsamples=[True, True, True, True]).state_dict()
    with pytest.raises(CheckpointError, match=r"did not map.*stages\.0\.downsample\.proj\.weight"):
        convert_state_dict(state)


# ------------------------------------------------------------------------------------------------
# Original repository, both releases
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_original_current_release_xs(tmp_path):
    original = perturbed(OriginalSwiftFormer(**XS))
    torch.save(original.state_dict(), tmp_path / "SwiftFormer_XS_ckpt.pth")
    result = convert_checkpoint(tmp_path / "SwiftFormer_XS_ckpt.pth", tmp_path / "out")
    assert (result.source_format, result.variant) == ("original", "xs")
    assert (result.attention_variant, result.attention_source) == ("l2", "default")
    x = pixels(128)
    ours = logits_of(tmp_path / "out", x)
    assert_close_rel(ours, reference_logits(original, x), what="original l2")
    processor = SwiftFormerImageProcessor.from_pretrained(tmp_path / "out")
    assert processor.crop_pct == 0.875 and processor.resample == 3  # Resize(256) + CenterCrop(224), bicubic

    # The same file read as a first-release checkpoint computes something else: the variant matters.
    convert_checkpoint(tmp_path / "SwiftFormer_XS_ckpt.pth", tmp_path / "softmax", attention_variant="softmax")
    assert (logits_of(tmp_path / "softmax", x) - ours).abs().max() > 1e-2 * ours.abs().max()


def test_original_first_release_with_override(tmp_path, transformers):
    original = perturbed(OriginalSwiftFormer(**TINY, num_classes=7, first_release=True))
    torch.save({"model": original.state_dict()}, tmp_path / "first.pth")
    result = convert_checkpoint(tmp_path / "first.pth", tmp_path / "out", attention_variant="softmax")
    assert (result.attention_variant, result.attention_source) == ("softmax", "override")
    assert config_json(tmp_path / "out")["attention_variant"] == "softmax"
    x = pixels(64)
    expected = reference_logits(original, x)
    assert_close_rel(logits_of(tmp_path / "out", x), expected, what="original softmax")
    # transformers computes the first release's attention and reads the folder as it is.
    reference = transformers.SwiftFormerForImageClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert_close_rel(reference(x).logits, expected, what="transformers on the converted folder")


def test_original_without_distillation_head(tmp_path):
    original = perturbed(OriginalSwiftFormer(**TINY, num_classes=4, mlp_ratio=3, distillation=False))
    torch.save(original.state_dict(), tmp_path / "nodist.pth")
    result = convert_checkpoint(tmp_path / "nodist.pth", tmp_path / "out")
    assert any("dist_head" in note for note in result.notes) and result.config.mlp_ratio == 3
    x = pixels(64)
    assert_close_rel(logits_of(tmp_path / "out", x), reference_logits(original, x), what="single head")


# ------------------------------------------------------------------------------------------------
# Sources: wrappers, file types, folders, native passthrough
# ------------------------------------------------------------------------------------------------


def test_training_checkpoint_with_args_and_ema(tmp_path):
    model, ema = tiny_timm(), tiny_timm()
    perturbed(ema, seed=1)
    checkpoint = {
        "model": model.state_dict(),
        "model_ema": ema.state_dict(),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999)}]},
        "epoch": 299,
        "args": argparse.Namespace(model="SwiftFormer_XS", lr=1e-3, output_dir=None),  # as main.py saves it
    }
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    x = pixels(64)
    convert_checkpoint(tmp_path / "checkpoint.pth", tmp_path / "model")
    assert_close_rel(logits_of(tmp_path / "model", x), reference_logits(model, x), what="model")
    convert_checkpoint(tmp_path / "checkpoint.pth", tmp_path / "ema", ema=True)
    assert_close_rel(logits_of(tmp_path / "ema", x), reference_logits(ema, x), what="model_ema")
    with pytest.raises(CheckpointError, match="no EMA weights"):
        torch.save({"model": model.state_dict()}, tmp_path / "plain.pth")
        convert_checkpoint(tmp_path / "plain.pth", tmp_path / "nope", ema=True)


def test_malicious_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(
        CheckpointError, match=r"Refused.*\(Unsupported global: GLOBAL print\)"
    ):  # names what it refused
        convert_checkpoint(tmp_path / "evil.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["weights.pth", "model.safetensors", "pytorch_model.bin"])
def test_folder_sources(tmp_path, name):
    original = perturbed(OriginalSwiftFormer(**TINY, num_classes=3))
    source = tmp_path / "src"
    source.mkdir()
    if name.endswith(".safetensors"):
        safetensors.torch.save_file(original.state_dict(), source / name)
    else:
        torch.save(original.state_dict(), source / name)
    convert_checkpoint(source, tmp_path / "out")
    x = pixels(64)
    assert_close_rel(logits_of(tmp_path / "out", x), reference_logits(original, x), what=name)


def test_native_folder_passes_through(tmp_path):
    config = SwiftFormerConfig(**TINY, id2label={0: "cat", 1: "dog"}, attention_variant="l2", hidden_act="relu")
    model = perturb_(SwiftFormerForImageClassification(config)).eval()
    model.save_pretrained(tmp_path / "src")
    processor = SwiftFormerImageProcessor(size={"height": 96, "width": 80})
    processor.save_pretrained(tmp_path / "src")

    result = convert_checkpoint(tmp_path / "src", tmp_path / "out")
    assert (result.source_format, result.attention_source) == ("transformers", "config.json")
    assert SwiftFormerConfig.from_pretrained(tmp_path / "out") == config
    assert SwiftFormerImageProcessor.from_pretrained(tmp_path / "out") == processor
    src = safetensors.torch.load_file(tmp_path / "src" / "model.safetensors")
    out = safetensors.torch.load_file(tmp_path / "out" / "model.safetensors")
    assert src.keys() == out.keys() and all(torch.equal(src[k], out[k]) for k in src)

    # A bare native state dict (no config.json): the architecture is read from the shapes; the
    # attention defaults to transformers' softmax, unless overridden.
    torch.save(model.state_dict(), tmp_path / "bare.bin")
    result = convert_checkpoint(tmp_path / "bare.bin", tmp_path / "bare", attention_variant="l2")
    assert result.config.depths == TINY["depths"] and result.attention_source == "override"
    assert convert_state_dict(model.state_dict())[1].attention_variant == "softmax"


def test_transformers_folder(tmp_path, transformers):
    reference = perturbed(
        transformers.SwiftFormerForImageClassification(transformers.SwiftFormerConfig(**TINY, num_labels=3))
    )
    reference.save_pretrained(tmp_path / "hf")
    result = convert_checkpoint(tmp_path / "hf", tmp_path / "out")
    assert result.attention_variant == "softmax"  # transformers' config has no field: its default
    x = pixels(64)
    with torch.no_grad():
        assert_close_rel(logits_of(tmp_path / "out", x), reference(x).logits, what="transformers folder")


def test_backbone_checkpoint(tmp_path):
    from swiftformer import SwiftFormerModel

    backbone = perturb_(SwiftFormerModel(SwiftFormerConfig(**TINY))).eval()
    torch.save(backbone.state_dict(), tmp_path / "backbone.pth")  # keys without the swiftformer. prefix
    result = convert_checkpoint(tmp_path / "backbone.pth", tmp_path / "out")
    assert result.architecture == "SwiftFormerModel"
    assert config_json(tmp_path / "out")["architectures"] == ["SwiftFormerModel"]
    loaded = SwiftFormerModel.from_pretrained(tmp_path / "out")
    x = pixels(64)
    with torch.no_grad():
        assert torch.equal(loaded(x).last_hidden_state, backbone(x).last_hidden_state)


# ------------------------------------------------------------------------------------------------
# Detection, variant check, errors
# ------------------------------------------------------------------------------------------------


def test_detect_format():
    assert detect_format(OriginalSwiftFormer(**TINY).state_dict()) == "original"
    assert detect_format(SwiftFormerForImageClassification(SwiftFormerConfig(**TINY)).state_dict()) == "transformers"
    assert detect_format({"stem.0.weight": torch.zeros(1), "stages.0.blocks.0.dwconv.weight": torch.zeros(1)}) == "timm"
    with pytest.raises(CheckpointError, match=r"Not a SwiftFormer checkpoint.*conv1\.weight"):
        detect_format({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)})


def test_variant_check(tmp_path):
    state = OriginalSwiftFormer(**XS).state_dict()
    _, config = convert_state_dict(state, variant="xs")
    assert config.depths == XS["depths"]
    with pytest.raises(CheckpointError, match=r"SwiftFormer-XS \(depths 3-3-6-4.*not SwiftFormer-S"):
        convert_state_dict(state, variant="s")


def test_partial_and_unknown_keys_are_listed():
    state = OriginalSwiftFormer(**TINY).state_dict()
    del state["network.2.1.attn.w_g"]
    state["network.0.0.extra.weight"] = torch.zeros(3)
    state["auxiliary_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as error:
        convert_state_dict(state)
    message = str(error.value)
    assert "keys that did not map (2): auxiliary_head.weight, network.0.0.extra.weight" in message
    assert "missing keys (1): swiftformer.encoder.network.2.blocks.1.attn.w_g" in message

    state = OriginalSwiftFormer(**TINY).state_dict()
    state["head.weight"] = state["head.weight"][:, :5]
    with pytest.raises(CheckpointError, match=r"shape mismatches.*head\.weight"):
        convert_state_dict(state)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def test_cli_convert(tmp_path, capsys):
    original = perturbed(OriginalSwiftFormer(**TINY, num_classes=3))
    torch.save({"model": original.state_dict()}, tmp_path / "ckpt.pth")
    code = main(["convert", str(tmp_path / "ckpt.pth"), "--to", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["format"].strip() == "original repository (Amshaker/SwiftFormer)"
    assert lines["variant"].strip() == "custom (depths 1-2-1-2, widths 8-16-16-24)"
    assert lines["attention variant"].strip().startswith("l2 (default for original checkpoints")
    assert "--attention-variant softmax" in lines["attention variant"]
    assert lines["num_labels"].strip() == "3 (generic names LABEL_i)"
    assert lines["output"].strip() == str(tmp_path / "out")
    x = pixels(64)
    assert_close_rel(logits_of(tmp_path / "out", x), reference_logits(original, x), what="cli")

    code = main(
        ["convert", str(tmp_path / "ckpt.pth"), "--to", str(tmp_path / "first"), "--attention-variant", "softmax"]
    )
    assert code == 0 and "softmax (--attention-variant)" in capsys.readouterr().out
    assert config_json(tmp_path / "first")["attention_variant"] == "softmax"


def test_cli_convert_errors(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pth"), "--to", str(tmp_path / "out")]) == 2
    assert "swiftformer: error:" in capsys.readouterr().err

    state = OriginalSwiftFormer(**TINY).state_dict()
    state["mystery.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    assert main(["convert", str(tmp_path / "odd.pth"), "--to", str(tmp_path / "out"), "--variant", "xs"]) == 2
    assert "not SwiftFormer-XS" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "odd.pth"), "--to", str(tmp_path / "out")]) == 2
    assert "mystery.weight" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hub_id_source_offline(tmp_path, offline_hub):
    with pytest.raises(OSError, match="offline"):
        convert_checkpoint("timm/swiftformer_xs.dist_in1k", tmp_path / "out")


def test_an_integer_checkpoint_is_one_checkpoint_error(tmp_path, capsys):
    """A quantized (integer) file is refused naming its tensors, not loaded as whole numbers or as torch's error."""
    config = SwiftFormerConfig(depths=[1, 1], embed_dims=[8, 16], downsamples=[True, True], num_labels=3)
    model = SwiftFormerForImageClassification(config)
    state = {k: v.round().to(torch.int8) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, tmp_path / "int8.safetensors")
    with pytest.raises(CheckpointError, match=r"int8\.safetensors holds integer tensors .*quantized"):
        convert_checkpoint(tmp_path / "int8.safetensors", tmp_path / "out")
    assert main(["convert", str(tmp_path / "int8.safetensors"), "--to", str(tmp_path / "out")]) == 2
    assert "holds integer tensors" in capsys.readouterr().err and not (tmp_path / "out").exists()
