"""swiftformer.explain and ``swiftformer explain``: heatmaps that point at the object, equal a direct
computation, leave the model as it was; the command's files and its one-line errors.

The pointing game (tests/_pointing_game.py): canvases with one pattern (its class) in a random quadrant and
noise of a random strength, from none to strong, elsewhere; a tiny SwiftFormer is trained on them here, on
the CPU, for a few hundred steps; the heatmap's maximum must fall in the pattern's quadrant for at least 90 %
of the canvases it classifies correctly. Those tests are ``slow`` (a minute of training per model on 2 idle
cores). ``benchmarks/pointing_game.py`` runs the longer measurement of docs/explain.md (every method, every
stage, three backgrounds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("pytorch_grad_cam")

from _helpers import perturb_
from _pointing_game import BACKGROUNDS, pointing_game, train_on_canvases
from swiftformer import (
    SwiftFormerConfig,
    SwiftFormerForImageClassification,
    SwiftFormerImageProcessor,
)
from swiftformer.cli import main
from swiftformer.explain import (
    DEFAULT_LAYER,
    attention_maps,
    explain_with_scores,
    overlay,
    resolve_layers,
    resolve_target,
    stage_modules,
)
from swiftformer.modeling import SwiftFormerEfficientAdditiveAttention


# ------------------------------------------------------------------------------ the pointing game
# Each test trains a model for about a minute on 2 idle cores (the attention test reuses the l2 one when it runs
# after the Grad-CAM test), several minutes on a loaded machine: slow, with a deadline of their own.
@pytest.fixture(scope="module")
def trained() -> dict[str, SwiftFormerForImageClassification]:
    return {}


def _trained(trained: dict, variant: str) -> SwiftFormerForImageClassification:
    if variant not in trained:
        start = time.perf_counter()
        trained[variant] = train_on_canvases(variant)
        print(f"trained the {variant} model in {time.perf_counter() - start:.1f} s")
    return trained[variant]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("variant", ["softmax", "l2"])
def test_gradcam_points_at_the_pattern(trained, variant):
    model = _trained(trained, variant)
    hits, total, accuracy = pointing_game(model, "gradcam", layer=None)  # the default layer
    assert accuracy >= 0.9, f"the {variant} model did not learn the canvases (accuracy {accuracy:.2f})"
    assert hits >= 0.9 * total, f"Grad-CAM at {DEFAULT_LAYER}: {hits}/{total} in the right quadrant"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_attention_points_at_the_pattern(trained):
    """The l2 model's own token weights (every stage's |α - mean α|, averaged: the default map) point at the
    pattern on blank canvases. With noise behind the pattern they point at it less often (docs/explain.md:
    the attention is not what finds the pattern), so the test is on blanks, the issue's other choice."""
    model = _trained(trained, "l2")
    hits, total, accuracy = pointing_game(model, "attention", layer=None, noise=BACKGROUNDS["blank"])
    assert accuracy >= 0.9, f"the l2 model did not learn the canvases (accuracy {accuracy:.2f})"
    assert hits >= 0.9 * total, f"attention (mean of the stages): {hits}/{total} in the right quadrant"


# ------------------------------------------------------------------------------ exactness
def tiny_model(variant: str = "softmax", seed: int = 0) -> SwiftFormerForImageClassification:
    torch.manual_seed(seed)
    config = SwiftFormerConfig(
        depths=[2, 1, 2, 1],
        embed_dims=[8, 16, 16, 24],
        id2label={0: "cat", 1: "dog, puppy", 2: "hot dog", 3: "fish"},
        attention_variant=variant,
    )
    return perturb_(SwiftFormerForImageClassification(config), seed=seed).eval()


def direct_gradcam(model, pixel_values: torch.Tensor, targets: list[int], layer: str) -> torch.Tensor:
    """Grad-CAM written out: ReLU of the channel sum of the activations weighted by their spatially
    averaged gradients, upsampled bilinearly to the input, scaled to [0, 1] per image."""
    saved = {}
    handle = stage_modules(model)[layer].register_forward_hook(lambda m, i, out: saved.update(a=out))
    x = pixel_values.clone().requires_grad_(True)
    try:
        logits = model(x).logits
    finally:
        handle.remove()
    activation = saved["a"]
    score = logits[torch.arange(len(targets)), torch.tensor(targets)].sum()
    (grad,) = torch.autograd.grad(score, activation)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.flatten(1).min(1).values[:, None, None]
    high = cam.flatten(1).max(1).values[:, None, None]
    span = high - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(1e-30), 0.0)  # all zero (ReLU took all): zero


@pytest.mark.parametrize("variant", ["softmax", "l2"])
@pytest.mark.parametrize("layer", ["stem", "stage2", "stage4"])
def test_gradcam_equals_direct_computation(variant, layer):
    model = tiny_model(variant)
    x = torch.randn(3, 3, 72, 88, generator=torch.Generator().manual_seed(1))
    targets = [0, 3, 1]
    got = explain_with_scores(model, x, target=targets, method="gradcam", layer=layer)
    expected = direct_gradcam(model, x, targets, layer)
    assert got.maps.shape == (3, 72, 88)
    assert torch.allclose(got.maps, expected, atol=1e-5), (got.maps - expected).abs().max()
    assert (expected.flatten(1).amax(1) > 0.99).sum() >= 2  # not a comparison of empty maps
    assert got.targets == targets
    np.testing.assert_allclose(got.probabilities.sum(-1).numpy(), 1, atol=1e-5)


def test_attention_weights_are_the_ones_the_model_uses():
    """The captured weights α, pooled into the global query, rebuild each attention block's output."""
    model = tiny_model("l2")
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    seen = {}
    handles = []
    for name, stage in stage_modules(model).items():
        for attention in stage.modules():
            if isinstance(attention, SwiftFormerEfficientAdditiveAttention):

                def hook(module, inputs, output, name=name):
                    seen[name] = (module, inputs[0], output)

                handles.append(attention.register_forward_hook(hook))
    maps, logits = attention_maps(model, x, upsample=False)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x).logits)
    assert list(maps) == ["stage1", "stage2", "stage3", "stage4"]
    from swiftformer.explain import _attention_weights

    alphas, _, _ = _attention_weights(model, x)
    for name, (module, tokens, output) in seen.items():
        alpha = alphas[name].flatten(1)[..., None]  # (B, N, 1)
        with torch.no_grad():
            query = F.normalize(module.to_query(tokens), dim=-1)
            key = F.normalize(module.to_key(tokens), dim=-1)
            rebuilt = module.final(module.proj((alpha * query).sum(1, keepdim=True) * key) + query)
        torch.testing.assert_close(rebuilt, output, atol=1e-5, rtol=1e-5)
        assert torch.allclose(alpha.square().sum(1), torch.ones(2, 1))  # L2-normalized over the tokens
        expected = (alphas[name] - alphas[name].mean((1, 2), keepdim=True)).abs()  # the departure from averaging
        expected = (expected - expected.amin((1, 2), keepdim=True)) / (
            expected.amax((1, 2), keepdim=True) - expected.amin((1, 2), keepdim=True)
        )
        torch.testing.assert_close(maps[name], expected)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam", "scorecam", "ablationcam", "attention"])
def test_every_method_any_size_batched(method):
    model = tiny_model("l2")
    x = torch.randn(2, 3, 57, 91, generator=torch.Generator().manual_seed(3))
    result = explain_with_scores(model, x, target=["dog", 2], method=method, layer="stage3")
    assert result.maps.shape == (2, 57, 91) and result.maps.dtype == torch.float32
    assert result.maps.min() >= 0 and result.maps.max() <= 1 and result.maps.max() > 0.99
    assert result.targets == [1, 2] and result.layers == ["stage3"]
    one = explain_with_scores(model, x[1:], target=2, method=method, layer="stage3")
    torch.testing.assert_close(one.maps[0], result.maps[1], atol=1e-4, rtol=0)  # images are independent


def test_model_is_left_as_it_was():
    model = tiny_model("softmax").train()
    model.head.weight.grad = torch.ones_like(model.head.weight)
    model.norm.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # autograd is switched back on inside, for the inputs' clone only
        maps = explain_with_scores(model, torch.randn(1, 3, 64, 64), method="gradcam++").maps
    assert maps.shape == (1, 64, 64)
    assert model.training
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")
    assert not model.norm.weight.requires_grad and model.head.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_ablation_cut_short_leaves_the_model_whole(monkeypatch):
    """grad-cam swaps a layer for its ablation layer and swaps it back only when the pass ends: an interrupt (or
    any error) in between must not leave the ablation inside the model."""
    from pytorch_grad_cam import AblationCAM

    model = tiny_model("l2")
    before = dict(model.named_modules())
    x = torch.randn(1, 3, 64, 64)
    expected = model(x).logits

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(AblationCAM, "assemble_ablation_scores", interrupted)  # called after the swap
    with pytest.raises(KeyboardInterrupt):
        explain_with_scores(model, x, method="ablationcam", layer=["stage2", "stage3"])
    assert dict(model.named_modules()).keys() == before.keys()
    assert all(module is before[name] for name, module in model.named_modules())
    torch.testing.assert_close(model(x).logits, expected)


def test_module_is_callable_and_compiled_wrappers_unwrap():
    from swiftformer import explain

    model = tiny_model("softmax")
    x = torch.randn(1, 3, 64, 64)
    maps = explain(model, x, target="fish")
    assert maps.shape == (1, 64, 64)
    torch.testing.assert_close(explain(torch.compile(model), x, target=3), maps)  # never compiled: unwrapped


def test_fused_model_is_refused():
    from swiftformer import explain
    from swiftformer.inference import optimize_for_inference

    fast = optimize_for_inference(tiny_model(), precision="fp32", compile=False, backend="inductor")
    with pytest.raises(TypeError, match="eager SwiftFormerForImageClassification"):
        explain(fast, torch.randn(1, 3, 64, 64))


def test_attention_on_a_softmax_model_is_refused():
    with pytest.raises(ValueError, match="attention_variant 'l2'"):
        explain_with_scores(tiny_model("softmax"), torch.randn(1, 3, 64, 64), method="attention")


def test_default_stages_are_the_measured_ones():
    model = tiny_model("l2")
    assert resolve_layers(model, None, "gradcam") == ["stage3"] == resolve_layers(model, None, "scorecam")
    assert resolve_layers(model, None, "eigencam") == ["stage2"]  # stage 3 points below chance (docs/explain.md)
    assert resolve_layers(model, None, "attention") == ["stage1", "stage2", "stage3", "stage4"]
    torch.manual_seed(0)
    config = SwiftFormerConfig(depths=[1, 1], embed_dims=[8, 16], downsamples=[True, True])
    shallow = SwiftFormerForImageClassification(config)
    assert resolve_layers(shallow, None, "gradcam") == ["stage2"]  # fewer stages: the last


def test_targets_by_name_and_index():
    config = tiny_model().config
    assert resolve_target(config, "cat") == 0
    assert resolve_target(config, "Puppy") == 1  # one comma-separated synonym, any case
    assert resolve_target(config, "dog, puppy") == 1
    assert resolve_target(config, "hot  dog") == 2
    assert resolve_target(config, "3") == 3 and resolve_target(config, 3) == 3
    with pytest.raises(ValueError, match=r"not among this model's 4 labels.*did you mean 'fish'"):
        resolve_target(config, "fsh")
    with pytest.raises(ValueError, match="out of range"):
        resolve_target(config, 4)


def test_overlay_draws_the_map_and_the_caption():
    image = Image.new("RGB", (64, 48), (128, 128, 128))
    heat = np.zeros((48, 64), np.float32)
    heat[:24, :32] = 1
    picture = overlay(image, heat, "cat (0)  99.0 %")
    assert picture.width == round(64 * 256 / 48) and picture.height > round(48 * 256 / 48)  # enlarged, band below
    pixels = np.asarray(picture)
    hot, cold = pixels[10, 10], pixels[200, 300]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # red where the map is high, blue where low
    assert np.asarray(overlay(image, heat)).shape == (256, round(64 * 256 / 48), 3)


# ------------------------------------------------------------------------------ the command
LABELS = {0: "cat", 1: "dog", 2: "bird", 3: "fish"}


def make_model_dir(path: Path, variant: str = "softmax") -> Path:
    torch.manual_seed(0)
    config = SwiftFormerConfig(
        depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], id2label=LABELS, attention_variant=variant
    )
    perturb_(SwiftFormerForImageClassification(config)).save_pretrained(path)
    SwiftFormerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(path)
    return path


def make_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, shape in [("a.png", (80, 60, 3)), ("b.jpg", (50, 90, 3))]:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


def run_command(capsys, command: str, *argv) -> tuple[int, str, str]:
    """``swiftformer COMMAND ARGV...`` in process: (status, stdout, stderr)."""
    code = main([command, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_writes_overlays_and_raw_maps(tmp_path, model_dir, capsys):
    images = make_images(tmp_path / "in")
    out = tmp_path / "heatmaps"
    code, stdout, _ = run_command(capsys, "explain", *images, "--model", model_dir, "--output", out, "--save-raw")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_gradcam_stage3.npy",
        "a_gradcam_stage3.png",
        "b_gradcam_stage3.npy",
        "b_gradcam_stage3.png",
    ]
    raw = np.load(out / "a_gradcam_stage3.npy")
    assert raw.shape == (64, 64) and raw.dtype == np.float32 and raw.min() >= 0 and raw.max() <= 1
    with Image.open(out / "a_gradcam_stage3.png") as picture:
        assert picture.format == "PNG" and picture.width == 256 and picture.height > 256
    lines = stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{images[0]}: ") and "a_gradcam_stage3.png" in lines[0]

    # the same files again: refused before anything is computed; --overwrite replaces them
    code, stdout, stderr = run_command(capsys, "explain", *images, "--model", model_dir, "--output", out)
    assert code == 2 and stdout == "" and "already exists" in stderr and "--overwrite" in stderr
    assert len(stderr.strip().splitlines()) == 1
    code, _, _ = run_command(
        capsys, "explain", *images, "--model", model_dir, "--output", out, "--overwrite", "--method", "eigencam"
    )
    assert code == 0 and (out / "a_eigencam_stage2.png").exists()  # its own measured default stage


def test_command_targets_layers_and_methods(tmp_path, model_dir, capsys):
    (image, _) = make_images(tmp_path / "in")
    out = tmp_path / "out"
    argv = [image, "--model", model_dir, "--output", out, "--target", "dog", "--target", "3", "--layer", "stage1"]
    code, stdout, _ = run_command(capsys, "explain", *argv, "stage3", "--method", "gradcam++")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_gradcampp_stage1_1-dog.png",
        "a_gradcampp_stage1_3-fish.png",
        "a_gradcampp_stage3_1-dog.png",
        "a_gradcampp_stage3_3-fish.png",
    ]
    assert ": dog (1) " in stdout and ": fish (3) " in stdout


def test_command_attention_on_an_l2_model(tmp_path, capsys):
    model_dir = make_model_dir(tmp_path / "l2", variant="l2")
    (image, _) = make_images(tmp_path / "in")
    out = tmp_path / "out"
    code, _, _ = run_command(
        capsys, "explain", image, "--model", model_dir, "--output", out, "--method", "attention", "--save-raw"
    )
    assert code == 0  # the default: every stage's map, averaged into one
    assert sorted(p.name for p in out.iterdir()) == [
        "a_attention_stage1+stage2+stage3+stage4.npy",
        "a_attention_stage1+stage2+stage3+stage4.png",
    ]
    model = SwiftFormerForImageClassification.from_pretrained(model_dir)
    pixels = SwiftFormerImageProcessor.from_pretrained(model_dir)(Image.open(image), return_tensors="pt")[
        "pixel_values"
    ]
    by_stage, _ = attention_maps(model, pixels)
    expected = torch.stack(list(by_stage.values())).mean(0)[0]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(
        np.load(out / "a_attention_stage1+stage2+stage3+stage4.npy"), expected.numpy(), atol=1e-6
    )
    code, _, _ = run_command(
        capsys, "explain", image, "--model", model_dir, "--output", out, "--method", "attention", "--layer", "all"
    )
    assert code == 0  # --layer all: one file per stage
    assert sorted(p.name for p in out.iterdir() if "+" not in p.name) == [
        f"a_attention_stage{i}.png" for i in range(1, 5)
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "zebra"], "--target 'zebra' is not among this model's 4 labels"),
        (["--target", "7"], "--target index 7 is out of range"),
        (["--layer", "stage9"], "--layer 'stage9' is not a stage of this model; choose from stem, stage1"),
        (["--method", "attention"], "--method attention needs an 'l2' attention model"),
        (["--method", "attention", "--layer", "stem"], "--method attention needs an 'l2' attention model"),
    ],
)
def test_command_bad_input_is_one_line(tmp_path, model_dir, capsys, argv, message):
    (image, _) = make_images(tmp_path / "in")
    code, stdout, stderr = run_command(
        capsys, "explain", image, "--model", model_dir, "--output", tmp_path / "out", *argv
    )
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"swiftformer: error: {message}"), stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_command_never_writes_over_an_input(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (40, 40)).save(folder / "x.png")
    Image.new("RGB", (40, 40)).save(folder / "x_gradcam_stage3.png")  # an input named like x's overlay
    argv = [folder / "x.png", folder / "x_gradcam_stage3.png", "--model", model_dir, "--output", folder, "--overwrite"]
    code, _, stderr = run_command(capsys, "explain", *argv)
    assert code == 2 and "is one of the input images" in stderr
    argv = [folder / "x.png", tmp_path / "x.jpg", "--model", model_dir, "--output", folder, "--overwrite"]
    code, _, stderr = run_command(capsys, "explain", *argv)
    assert code == 2 and "would both be explained into" in stderr


def test_command_takes_inputs_as_predict_does(tmp_path, model_dir, capsys):
    make_images(tmp_path / "in")  # a folder, through the batch runner's inputs
    code, stdout, _ = run_command(
        capsys, "explain", tmp_path / "in", "--model", model_dir, "--output", tmp_path / "out"
    )
    assert code == 0 and len(stdout.splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_gradcam_stage3.png", "b_gradcam_stage3.png"]


def test_overlay_writer_refuses_in_terms_of_its_parameters(tmp_path, model_dir):
    from swiftformer.batch.overlays import ExplainOverlays

    images = [str(p) for p in make_images(tmp_path / "in")]
    model = SwiftFormerForImageClassification.from_pretrained(model_dir)
    processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b_gradcam_stage1_1-dog.png").touch()
    overlays = ExplainOverlays(model, processor, tmp_path / "out", layers=["stage3", "stage1"], targets=[None, "dog"])
    with pytest.raises(FileExistsError, match=r"b_gradcam_stage1_1-dog.png already exists; pass replace=True"):
        overlays.check(images)
    ExplainOverlays(model, processor, tmp_path / "out", replace=True).check(images)
    with pytest.raises(ValueError, match="target 'zebra' is not among"):
        ExplainOverlays(model, processor, tmp_path / "out", targets=["zebra"])
    with pytest.raises(ValueError, match="layer 'stage9' is not a stage"):
        ExplainOverlays(model, processor, tmp_path / "out", layers=["stage9"])


def test_command_unreadable_image(tmp_path, model_dir, capsys):
    (image, _) = make_images(tmp_path / "in")
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not an image")
    code, _, stderr = run_command(capsys, "explain", broken, image, "--model", model_dir, "--output", tmp_path / "out")
    assert code == 1 and "broken.png: error:" in stderr
    assert (tmp_path / "out" / "a_gradcam_stage3.png").exists()


# ------------------------------------------------------------------------------ predict --explain
def test_predict_explain_writes_the_overlays_of_the_predictions(tmp_path, model_dir, capsys):
    images = make_images(tmp_path / "in")
    heatmaps = tmp_path / "heatmaps"
    code, stdout, stderr = run_command(
        capsys, "predict", *images, "--model", model_dir, "--json", "--explain", heatmaps
    )
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]  # stdout stays JSON lines
    assert [row["image"] for row in rows] == [str(p) for p in images]
    assert sorted(p.name for p in heatmaps.iterdir()) == ["a_gradcam_stage3.png", "b_gradcam_stage3.png"]
    assert f"2 overlays -> {heatmaps}" in stderr

    # On the eager model (--no-optimize) predict's overlay is, pixel for pixel, the explain command's one of
    # the top class: the same map, image and caption.
    again = tmp_path / "again"
    code, _, _ = run_command(capsys, "predict", *images, "--model", model_dir, "--no-optimize", "--explain", again)
    assert code == 0
    code, _, _ = run_command(capsys, "explain", *images, "--model", model_dir, "--output", tmp_path / "explained")
    assert code == 0
    for name in ("a_gradcam_stage3.png", "b_gradcam_stage3.png"):
        with Image.open(again / name) as mine, Image.open(tmp_path / "explained" / name) as theirs:
            assert np.array_equal(np.asarray(mine), np.asarray(theirs)), name

    # Existing overlays are kept (the predictions are still printed; status 1), replaced with --overwrite.
    before = (heatmaps / "a_gradcam_stage3.png").stat().st_mtime_ns
    code, stdout, stderr = run_command(capsys, "predict", *images, "--model", model_dir, "--explain", heatmaps)
    assert code == 1 and stdout.count(str(images[0])) == 1
    assert f"{images[0]}: error: no overlay: {heatmaps / 'a_gradcam_stage3.png'} already exists" in stderr
    assert "0 overlays (2 not written)" in stderr
    assert (heatmaps / "a_gradcam_stage3.png").stat().st_mtime_ns == before
    code, _, stderr = run_command(
        capsys, "predict", *images, "--model", model_dir, "--explain", heatmaps, "--overwrite"
    )
    assert code == 0 and "2 overlays ->" in stderr


def test_predict_explain_images_of_the_same_name(tmp_path, model_dir, capsys):
    for sub in ("d1", "d2"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "in" / sub / "x.png")
    (tmp_path / "in" / "d2" / "broken.png").write_bytes(b"not an image")
    heatmaps = tmp_path / "heatmaps"
    code, stdout, stderr = run_command(capsys, "predict", tmp_path / "in", "--model", model_dir, "--explain", heatmaps)
    assert code == 1  # the unreadable image, and the second x.png's overlay
    assert stdout.count("x.png") == 2  # both predicted
    second = tmp_path / "in" / "d2" / "x.png"
    assert f"{second}: error: no overlay: {heatmaps / 'x_gradcam_stage3.png'} is the overlay of " in stderr
    assert sorted(p.name for p in heatmaps.iterdir()) == ["x_gradcam_stage3.png"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--explain", "{in}/heatmaps"], "is inside the input folder"),
        (["--explain", "{in}/a.png"], "is a file, not a folder"),
        (
            ["--explain", "{tmp}/h", "--output", "{tmp}/p.jsonl", "--ray"],
            "--explain draws the overlays in this process",
        ),
        (["--overwrite"], "--overwrite needs --output"),  # it replaces overlays with --explain, else outputs
    ],
)
def test_predict_explain_bad_input_is_one_line(tmp_path, model_dir, capsys, argv, message):
    make_images(tmp_path / "in")
    argv = [a.format(tmp=tmp_path, **{"in": tmp_path / "in"}) for a in argv]
    code, stdout, stderr = run_command(capsys, "predict", tmp_path / "in", "--model", model_dir, *argv)
    assert code == 2 and stdout == ""
    assert stderr.startswith("swiftformer: error: --") and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "in" / "heatmaps").exists()
