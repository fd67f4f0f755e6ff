"""Nothing lost, nothing hangs: bad inputs to ``train``, ``eval``, ``convert`` and the config / image APIs.

The table-driven tests feed each command a bad input and check the exit status, that stderr is one line
without a traceback, and, for commands that write, that whatever was at the target is byte-for-byte
unchanged. The process tests kill (SIGKILL) a run while it writes its checkpoint and interrupt one
(SIGINT) that replaces an earlier run, and check that resuming ends where an uninterrupted run ends.

Everything trains on a tiny folder of coloured 32x32 images (two classes) in fp32 on one thread.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from _helpers import make_model_dir
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.batch import check_output, read_output
from swiftformer.cli import main
from swiftformer.cli.common import as_flags
from swiftformer.configuration import SwiftFormerSegmentationConfig
from swiftformer.errors import CheckpointError
from swiftformer.image_processing import SwiftFormerImageProcessor, load_image, load_image_bytes
from swiftformer.io.files import OutputLock, check_target, decode_name, display_path, encode_name
from swiftformer.modeling_utils import check_finite_pixels
from swiftformer.training import distributed
from swiftformer.training.config import resolve_config
from swiftformer.training.trainer import Trainer, resume_config

SIZE = 32
COLOURS = {"a": (220, 30, 30), "b": (30, 40, 220), "c": (30, 200, 40)}
FAST = [
    "--variant", "xs", "--image-size", SIZE, "--batch-size", 4, "--workers", 0, "--precision", "fp32",
    "--no-channels-last", "--auto-augment", "none", "--color-jitter", "none", "--re-prob", 0, "--mixup", 0,
    "--cutmix", 0, "--repeated-aug", 1, "--no-model-ema", "--warmup-epochs", 0, "--lr", 1e-3, "--scale", 1, 1,
    "--hflip", 0, "--seed", 0, "--no-teacher",
]  # fmt: skip


# ------------------------------------------------------------------------------------------ helpers
def colour_image(name: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(COLOURS[name], np.int16)[None, None, :] + rng.integers(-25, 26, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_data(root: Path, classes: str = "ab", train: int = 4, val: int = 2) -> Path:
    for split, count, offset in (("train", train, 0), ("val", val, 500)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                colour_image(name, offset + 50 * c + i).save(root / split / name / f"{i}.png")
    return root


def snapshot(path: Path) -> dict[str, bytes | None]:
    """Every file's bytes under ``path`` (or of the file ``path``); folders as None."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    return lines[0]


def env(**extra: str) -> dict[str, str]:
    skip = ("SWIFTFORMER_KILL_AT", "SWIFTFORMER_PAUSE_AT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    base = {k: v for k, v in os.environ.items() if k not in skip}
    return {**base, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}


def swiftformer(*args, **env_extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "swiftformer", *[str(a) for a in args]],
        env=env(**env_extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(flag: Path, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended ({process.returncode}) before pausing:\n{out}\n{err}")
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.05)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Data folders, a model folder, a finished run and bad files, shared by the table's cases."""
    root = tmp_path_factory.mktemp("world")
    w: dict[str, Path] = {"root": root}
    w["data"] = write_data(root / "data")
    w["data_copy"] = Path(shutil.copytree(w["data"], root / "data_copy"))
    w["other_classes"] = write_data(root / "other_classes", classes="ac")
    w["one_class"] = write_data(root / "one_class", classes="a")
    w["broken_val"] = Path(shutil.copytree(w["data"] / "val", root / "broken_val"))
    (w["broken_val"] / "a" / "broken.png").write_bytes(b"not a png at all")

    torch.manual_seed(0)
    model = root / "model"
    config = SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16], id2label={0: "a", 1: "b"})
    SwiftFormerForImageClassification(config).save_pretrained(model)
    SwiftFormerImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(model)
    w["model"] = model
    for name, file, change in (
        ("huge_resize", "preprocessor_config.json", {"size": {"height": 60000, "width": 60000}}),
        ("huge_image_size", "config.json", {"image_size": 10**12}),
        ("labels_disagree", "config.json", {"label2id": {"a": 1, "b": 0}}),
        ("depths_abc", "config.json", {"depths": "abc"}),
    ):
        folder = Path(shutil.copytree(model, root / name))
        data = json.loads((folder / file).read_text())
        (folder / file).write_text(json.dumps({**data, **change}))
        w[name] = folder

    run = root / "finished_run"
    assert main(["train", "--data-dir", str(w["data"]), "--output", str(run), *map(str, FAST), "--epochs", "1"]) == 0
    w["finished_run"] = run

    files = root / "files"
    files.mkdir()
    (files / "bad.yaml").write_text("epochs: [1, 2\nlr: 3\n")
    (files / "unsafe.yaml").write_text('epochs: !!python/object/apply:os.system ["echo pwned"]\n')
    (files / "bad.json").write_text('{"epochs": 3,}')
    (files / "lr_list.yaml").write_text("lr: [1, 2]\n")
    (files / "epochs_null.yaml").write_text("epochs: null\n")
    (files / "ema_yes.yaml").write_text("model_ema: 'yes'\n")
    (files / "a_list.yaml").write_text("- epochs\n- 3\n")
    (files / "junk.pth").write_bytes(b"\x00" * 64)
    torch.save({"model": {"w": torch.zeros(1)}, "when": datetime.date(2024, 1, 1)}, files / "unsafe.pth")
    w["files"] = files

    # A run folder whose checkpoint is junk, and one whose checkpoint holds a non-tensor object.
    for name, content in (("junk_checkpoint", files / "junk.pth"), ("unsafe_checkpoint", None)):
        folder = Path(shutil.copytree(run, root / name))
        if content is None:
            torch.save({"epoch": 1, "model": {}, "optimizer": {}, "when": datetime.date(2024, 1, 1)}, folder / "c.pt")
            os.replace(folder / "c.pt", folder / "checkpoint.pt")
        else:
            shutil.copy(content, folder / "checkpoint.pt")
        w[name] = folder
    w["not_a_run"] = root / "not_a_run"
    (w["not_a_run"] / "notes").mkdir(parents=True)
    (w["not_a_run"] / "notes" / "todo.txt").write_text("keep me\n")
    w["a_file"] = root / "a_file.txt"
    w["a_file"].write_text("keep me too\n")
    return w


# ------------------------------------------------------------------------------------------ the table
# (id, argv with {name} placeholders for world paths, exit status, text the stderr line must contain,
#  the world path that must be unchanged or None)
T = [str(a) for a in FAST]
CASES: list[tuple[str, list[str], int, str, str | None]] = [
    # -- train: targets
    ("train-finished-run", ["train", "--data-dir", "{data}", "--output", "{finished_run}", *T], 2,
     "--resume", "finished_run"),
    ("train-nonempty-folder", ["train", "--data-dir", "{data}", "--output", "{not_a_run}", *T], 2,
     "--overwrite", "not_a_run"),
    ("train-output-is-file", ["train", "--data-dir", "{data}", "--output", "{a_file}", *T], 2, "is a file", "a_file"),
    ("train-missing-output", ["train", "--data-dir", "{data}", *T], 2, "--output is required", None),
    # -- train: config files
    ("train-yaml-syntax", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config", "{files}/bad.yaml"],
     2, "not valid YAML", None),
    ("train-yaml-unsafe-tag", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config",
     "{files}/unsafe.yaml"], 2, "unsupported tag", None),
    ("train-json-syntax", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config", "{files}/bad.json"],
     2, "not valid JSON", None),
    ("train-config-lr-list", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config",
     "{files}/lr_list.yaml"], 2, "lr=[1, 2]", None),
    ("train-config-epochs-null", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config",
     "{files}/epochs_null.yaml"], 2, "epochs=None", None),
    ("train-config-bool-text", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config",
     "{files}/ema_yes.yaml"], 2, "model_ema", None),
    ("train-config-not-mapping", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config",
     "{files}/a_list.yaml"], 2, "mapping", None),
    ("train-config-missing", ["train", "--data-dir", "{data}", "--output", "{root}/o1", "--config",
     "{files}/nowhere.yaml"], 2, "cannot read config file", None),
    # -- train: flags
    ("train-negative-weight-decay", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T,
     "--weight-decay", "-1"], 2, "weight_decay", None),
    ("train-hflip-2", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--hflip", "2"], 2, "hflip",
     None),
    ("train-reversed-scale", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--scale", "1", "0.5"],
     2, "scale", None),
    ("train-bad-interpolation", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T,
     "--interpolation", "bogus"], 2, "interpolation", None),
    ("train-bad-auto-augment", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T,
     "--auto-augment", "bogus-policy"], 2, "auto_augment", None),
    ("train-huge-image-size", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T,
     "--image-size", "100000"], 2, "limit", None),
    ("train-zero-epochs", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--epochs", "0"], 2,
     "epochs=0", None),
    ("train-zero-lr", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--lr", "0"], 2, "lr=0", None),
    ("train-betas", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--betas", "1", "2"], 2, "betas",
     None),
    ("train-negative-seed", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--seed", "-1"], 2,
     "seed", None),
    ("train-bad-variant", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T, "--variant", "xxl"], 2,
     "variant", None),
    ("train-one-class", ["train", "--data-dir", "{one_class}", "--output", "{root}/o1", *T], 2, "at least two", None),
    ("train-missing-data", ["train", "--data-dir", "{root}/nowhere", "--output", "{root}/o1", *T], 2, "not found",
     None),
    ("train-allow-data-change-alone", ["train", "--data-dir", "{data}", "--output", "{root}/o1", *T,
     "--allow-data-change"], 2, "--resume only", None),
    # -- train --resume
    ("resume-not-a-run", ["train", "--resume", "{not_a_run}"], 2, "cannot resume", "not_a_run"),
    ("resume-junk-checkpoint", ["train", "--resume", "{junk_checkpoint}"], 2, "unreadable checkpoint",
     "junk_checkpoint"),
    ("resume-unsafe-checkpoint", ["train", "--resume", "{unsafe_checkpoint}"], 2, "Refused", "unsafe_checkpoint"),
    ("resume-other-variant", ["train", "--resume", "{finished_run}", "--variant", "s"], 2, "variant='xs'",
     "finished_run"),
    ("resume-other-data-dir", ["train", "--resume", "{finished_run}", "--data-dir", "{data_copy}"], 2,
     "--allow-data-change", "finished_run"),
    ("resume-other-classes", ["train", "--resume", "{finished_run}", "--data-dir", "{other_classes}",
     "--allow-data-change"], 2, "classes", "finished_run"),
    ("resume-overwrite-nothing-staged", ["train", "--resume", "{finished_run}", "--overwrite"], 2,
     "no interrupted --overwrite run", "finished_run"),
    # -- eval
    ("eval-nonempty-output", ["eval", "--data-dir", "{data}/val", "--model", "{model}", "--workers", "0",
     "--output", "{not_a_run}"], 2, "--overwrite", "not_a_run"),
    ("eval-unreadable-image", ["eval", "--data-dir", "{broken_val}", "--model", "{model}", "--workers", "0"], 1,
     "could not be read", None),
    ("eval-missing-data", ["eval", "--data-dir", "{root}/nowhere", "--model", "{model}"], 2, "not found", None),
    ("eval-huge-resize", ["eval", "--data-dir", "{data}/val", "--model", "{huge_resize}", "--workers", "0"], 2,
     "limit of 8192", None),
    ("eval-huge-image-size", ["eval", "--data-dir", "{data}/val", "--model", "{huge_image_size}", "--workers", "0"],
     2, "image_size", None),
    ("eval-labels-disagree", ["eval", "--data-dir", "{data}/val", "--model", "{labels_disagree}", "--workers", "0"],
     2, "label2id disagrees", None),
    ("eval-depths-abc", ["eval", "--data-dir", "{data}/val", "--model", "{depths_abc}", "--workers", "0"], 2,
     "depths", None),
    ("eval-unknown-classes", ["eval", "--data-dir", "{other_classes}/val", "--model", "{model}", "--workers", "0"],
     2, "'c'", None),
    ("eval-batch-size-0", ["eval", "--data-dir", "{data}/val", "--model", "{model}", "--batch-size", "0"], 2,
     "--batch-size", None),
    # -- convert
    ("convert-onto-model-folder", ["convert", "{model}", "--to", "{finished_run}/last"], 2, "already exists",
     "finished_run"),
    ("convert-onto-missing-source-and-folder", ["convert", "{root}/missing.pth", "--to", "{model}"], 2,
     "--overwrite", "model"),
    ("convert-onto-file", ["convert", "{model}", "--to", "{a_file}"], 2, "is a file", "a_file"),
    ("convert-missing-source", ["convert", "{root}/missing.pth", "--to", "{root}/c1"], 2, "missing.pth", None),
    ("convert-junk-source", ["convert", "{files}/junk.pth", "--to", "{root}/c1"], 2, "corrupt", None),
    ("convert-unsafe-pickle", ["convert", "{files}/unsafe.pth", "--to", "{root}/c1"], 2, "Refused", None),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_command_refuses_bad_input_in_one_line(case, world, capsys):
    _, argv, status, expected, keep = case
    names = {k: str(v) for k, v in world.items()}
    argv = [a.format(**names) for a in argv]
    before = snapshot(world[keep]) if keep else None
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    line = one_line(err)
    assert code == status, err
    assert expected in line, line
    assert "weights_only" not in line  # torch's advice to load unsafely is never quoted
    if keep:
        assert snapshot(world[keep]) == before, f"{keep} was changed"
    assert not (world["root"] / "o1").exists() and not (world["root"] / "c1").exists()  # nothing started


def test_refusals_say_what_is_there_and_how_to_proceed(world, capsys):
    run = world["finished_run"]
    main(["train", "--data-dir", str(world["data"]), "--output", str(run), *T])
    line = one_line(capsys.readouterr().err)
    assert "best/" in line and "checkpoint.pt" in line
    assert f"--resume {run}" in line and "--overwrite" in line and "another --output" in line


# ------------------------------------------------------------------------------------------ Python API
def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


def _bomb(tmp_path: Path, side: int) -> Path:
    path = tmp_path / f"bomb{side}.png"
    Image.new("1", (side, side)).save(path)  # a few kB of PNG, side² pixels
    return path


def _config_file(tmp_path: Path, **change) -> Path:
    SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16]).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**data, **change}))
    return tmp_path


API_CASES: list[tuple[str, Callable[[Path], object], type[BaseException], str]] = [
    ("config-depths-str", lambda t: SwiftFormerConfig(depths="abc"), ValueError, "depths='abc'"),
    ("config-embed-dims-none", lambda t: SwiftFormerConfig(embed_dims=None), ValueError, "embed_dims=None"),
    ("config-depths-none", lambda t: SwiftFormerConfig(depths=None), ValueError, "depths=None"),
    ("config-image-size-huge", lambda t: SwiftFormerConfig(image_size=10**12), ValueError, "limit of 8192"),
    ("config-image-size-str", lambda t: SwiftFormerConfig(image_size="224"), ValueError, "image_size"),
    ("config-depth-huge", lambda t: SwiftFormerConfig(depths=[3, 3, 10**6, 4]), ValueError, "limit of 256"),
    ("config-width-huge", lambda t: SwiftFormerConfig(embed_dims=[48, 56, 10**6, 220]), ValueError, "limit of 8192"),
    ("config-num-labels-huge", lambda t: SwiftFormerConfig(num_labels=10**7), ValueError, "num_labels"),
    ("config-parameters-huge", lambda t: SwiftFormerConfig(depths=[200] * 4, embed_dims=[8000] * 4), ValueError,
     "parameters"),
    ("config-labels-disagree", lambda t: SwiftFormerConfig(id2label={0: "a", 1: "b"}, label2id={"a": 1, "b": 0}),
     ValueError, "label2id disagrees"),
    ("config-label2id-missing-name", lambda t: SwiftFormerConfig(id2label={0: "a", 1: "b"}, label2id={"a": 0}),
     ValueError, "lacks ['b']"),
    ("config-mlp-ratio-str", lambda t: SwiftFormerConfig(mlp_ratio="4"), ValueError, "mlp_ratio"),
    ("config-layer-scale-over-float32", lambda t: SwiftFormerConfig(layer_scale_init_value=1e308), ValueError,
     "layer_scale_init_value=1e+308 is invalid: expected a finite number within float32's range"),
    ("config-json-eps-infinite", lambda t: SwiftFormerConfig.from_pretrained(_config_file(t, batch_norm_eps=math.inf)),
     CheckpointError, "batch_norm_eps=inf"),
    ("config-segmentation-head-huge", lambda t: SwiftFormerSegmentationConfig(fpn_channels=8192, decoder_channels=8192),
     ValueError, "parameters (fpn_channels=8192, decoder_channels=8192"),
    ("config-json-image-size", lambda t: SwiftFormerConfig.from_pretrained(_config_file(t, image_size=10**9)),
     CheckpointError, "config.json"),
    ("config-json-depths-null", lambda t: SwiftFormerConfig.from_pretrained(_config_file(t, depths=None)),
     CheckpointError, "depths=None"),
    ("config-json-nested-deeply", lambda t: SwiftFormerConfig.from_pretrained(
        (t / "config.json").write_text("[" * 100_000 + "]" * 100_000) and t), CheckpointError, "nested too deeply"),
    ("processor-size-huge", lambda t: SwiftFormerImageProcessor(size=60000), ValueError, "limit of 8192"),
    ("processor-crop-size-huge", lambda t: SwiftFormerImageProcessor(do_center_crop=True, crop_size=10**6),
     ValueError, "crop_size"),
    ("processor-crop-pct-tiny", lambda t: SwiftFormerImageProcessor(size={"shortest_edge": 224}, crop_pct=1e-6),
     ValueError, "crop_pct"),
    ("processor-file-huge", lambda t: SwiftFormerImageProcessor.from_pretrained(
        (t / "preprocessor_config.json").write_text('{"size": 60000}') and t), CheckpointError,
     "preprocessor_config.json"),
    ("image-named-pipe", lambda t: load_image(_fifo(t)), OSError, "named pipe"),
    ("image-folder", load_image, OSError, "a folder"),
    ("image-device", lambda t: load_image("/dev/zero"), OSError, "character device"),
    ("image-bomb-warning-size", lambda t: load_image(_bomb(t, 10_000)), OSError, "decompression bomb"),
    ("image-bomb-error-size", lambda t: load_image(_bomb(t, 20_000)), OSError, "decompression bomb"),
    ("image-bomb-bytes", lambda t: load_image_bytes(_bomb(t, 10_000).read_bytes()), OSError, "decompression bomb"),
    ("image-non-utf8-name", lambda t: load_image(t / os.fsdecode(b"caf\xe9.png")), FileNotFoundError, "no such file"),
    ("pixels-nan-numpy", lambda t: check_finite_pixels(np.full((1, 3, 4, 4), np.nan, np.float32)), ValueError,
     "48 NaN"),
    ("pixels-inf-torch", lambda t: check_finite_pixels(torch.tensor([[1.0, float("inf")]])), ValueError,
     "1 infinite"),
    ("train-api-unsafe-yaml", lambda t: resolve_config(
        None, (t / "x.yaml").write_text("lr: !!python/name:os.system\n") and t / "x.yaml"), ValueError,
     "unsupported tag"),
    ("train-api-lr-list", lambda t: resolve_config(None, lr=[1, 2]), ValueError,
     "lr=[1, 2] is invalid: expected a number"),
    ("train-api-lr-huge", lambda t: resolve_config(None, lr=1e38), ValueError, "expected a number in (0, 1000]"),
    ("target-nonempty", lambda t: check_target((t / "x").mkdir() or (t / "x" / "f").touch() or t / "x", "folder"),
     FileExistsError, "already exists and holds f"),
    # The library names its parameters; the command line shows them as flags (test_library_names_become_flags).
    ("target-hint", lambda t: check_target((t / "f").touch() or t, "folder"), FileExistsError,
     "pass overwrite=True to replace it"),
    ("train-api-no-output", lambda t: Trainer(resolve_config(None, data_dir=str(t))), ValueError,
     "output is required"),
    ("train-api-no-data-dir", lambda t: Trainer(resolve_config(None, output=str(t / "o"))), ValueError,
     "data_dir is required"),
    ("train-api-device", lambda t: distributed.check_device("gpu"), ValueError, "device 'gpu' is not a device"),
    ("train-api-resume-nothing", resume_config, FileNotFoundError, "train_config.json does not exist"),
    ("train-api-resume-no-replacement", lambda t: resume_config(t, overwrite=True), FileNotFoundError,
     "no interrupted overwrite=True run"),
    ("batch-output-exists", lambda t: check_output((t / "p.jsonl").write_text("x") and t / "p.jsonl"),
     FileExistsError, "continue that run with resume=True, replace it with overwrite=True, or choose another output"),
]  # fmt: skip


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_refuses_bad_input_with_a_message_naming_it(case, tmp_path):
    _, call, error, expected = case
    done = threading.Event()
    caught: list[BaseException] = []

    def target():
        try:
            call(tmp_path)
        except BaseException as err:  # handed to the test thread
            caught.append(err)
        done.set()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        worker = threading.Thread(target=target, daemon=True)  # a blocking open must not hang the suite
        worker.start()
        assert done.wait(30), f"{case[0]} blocked"
    assert caught, f"{case[0]} raised nothing"
    assert isinstance(caught[0], error), repr(caught[0])
    message = str(caught[0])
    assert expected in message and "\n" not in message, message
    assert not re.search(r"(?<![\w-])--[a-z]", message), f"names a command-line flag: {message}"
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]


def test_library_names_become_flags():
    """cli.common.as_flags: a parameter the library asks to change becomes the command's flag; a value it
    reports, and the same word in prose, stay as they are."""
    flags = {"resume": "--resume runs/x", "overwrite": "--overwrite", "output": "--output", "init": "--init"}
    flags |= {"batch_size": "--batch-size", "teacher_checkpoint": "--teacher-checkpoint"}
    shown = [
        (
            "continue that run with resume=True, replace it with overwrite=True, or choose another output",
            "continue that run with --resume runs/x, replace it with --overwrite, or choose another --output",
        ),
        (
            "too few for 1 shard(s) of batch 8: lower batch_size",
            "too few for 1 shard(s) of batch 8: lower --batch-size",
        ),
        (
            "a new run in another output, e.g. with init=runs/x/last",
            "a new run in another --output, e.g. with --init runs/x/last",
        ),
        ("offline, pass teacher_checkpoint=FILE", "offline, pass --teacher-checkpoint FILE"),
    ]
    for message, expected in shown:
        assert as_flags(message, flags) == expected
    for message in (
        "training setting batch_size=0 is invalid",
        "it was trained with init='runs/a', not 'runs/b'",
        "output folder runs/output already exists and holds batch_size/",
        "training setting init=None is invalid",
    ):
        assert as_flags(message, flags) == message


def test_allowed_inputs_still_pass(tmp_path):
    check_finite_pixels(np.full((1, 3, 2, 2), np.nan, np.float32), allow_nonfinite=True)
    check_finite_pixels(torch.zeros(1, 3, 2, 2))
    assert check_target(tmp_path / "new", "folder") is False
    (tmp_path / "empty").mkdir()
    assert check_target(tmp_path / "empty", "folder") is False
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").touch()
    assert check_target(tmp_path / "full", "folder", overwrite=True) is True
    assert display_path(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    config = SwiftFormerConfig(label2id={"x": 0, "y": 1})  # label2id alone names the outputs
    assert config.id2label == {0: "x", 1: "y"}
    duplicated = SwiftFormerConfig(id2label={0: "crane", 1: "crane"}, label2id={"crane": 1})  # as ImageNet's
    assert duplicated.num_labels == 2


# ------------------------------------------------------------------------------------------ writing commands
def test_convert_overwrite_replaces_the_folder_whole(world, tmp_path, capsys):
    target = Path(shutil.copytree(world["not_a_run"], tmp_path / "target"))
    code = main(["convert", str(world["model"]), "--to", str(target), "--overwrite"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_eval_overwrite_replaces_the_report(world, tmp_path, capsys):
    report = Path(shutil.copytree(world["not_a_run"], tmp_path / "report"))
    args = ["eval", "--data-dir", str(world["data"] / "val"), "--model", str(world["model"]), "--workers", "0"]
    assert main([*args, "--output", str(report), "--overwrite"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in report.iterdir()) == ["confusion_matrix.png", "eval.json", "per_class.csv"]


def test_unreadable_images_with_non_utf8_names_and_lone_images_never_stop_training(tmp_path, capsys):
    """7 of 8 training images are unreadable, one with a name that is not UTF-8: every epoch has a batch
    of one readable image (BatchNorm needs two) and one of none; the run ends, its files are complete,
    and it resumes."""
    data = write_data(tmp_path / "data")
    bad_name = os.fsdecode(b"bad\xff.png")
    for i, path in enumerate(sorted((data / "train").rglob("*.png"))[1:]):
        path.unlink()
        (path.parent / (bad_name if i == 0 else path.name)).write_bytes(b"broken" * 10)
    out = tmp_path / "run"
    code = main(["train", "--data-dir", str(data), "--output", str(out), *T, "--epochs", "2"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err and "7 unreadable" in stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(m["epoch"], m["unreadable"], m["train_images"]) for m in metrics] == [(1, 7, 1), (2, 7, 1)]
    lines = (out / "unreadable.txt").read_bytes().splitlines()
    assert len(lines) == 14 and b"epoch 1: " + os.fsencode(data / "train" / "a" / bad_name) in lines

    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    assert "epochs 2 → 3" in capsys.readouterr().out  # the changed setting, in a note
    lines = (out / "unreadable.txt").read_bytes().splitlines()
    assert len(lines) == 21 and [int(line.split(b":")[0][6:]) for line in lines] == sorted([1, 2, 3] * 7)

    code = main(["eval", "--data-dir", str(data / "train"), "--model", str(out / "last"), "--workers", "0"])
    stdout, err = capsys.readouterr()
    assert code == 1 and "7 image(s) could not be read" in one_line(err)
    assert "bad\\xff.png" in stdout  # printed escaped, not crashing the print


# ------------------------------------------------------------------------------------------ processes
@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path):
    data = write_data(tmp_path / "data", train=4, val=1)
    killed, whole, flag = tmp_path / "killed", tmp_path / "whole", tmp_path / "paused"
    args = ["train", "--data-dir", data, *T, "--epochs", 2]
    victim = swiftformer(
        *args, "--output", killed, SWIFTFORMER_PAUSE_AT="checkpoint:2", SWIFTFORMER_PAUSE_FILE=str(flag)
    )
    reference = swiftformer(*args, "--output", whole)  # meanwhile, on the other core
    wait_for(flag, victim)
    os.kill(victim.pid, signal.SIGKILL)  # half of epoch 2's checkpoint is on disk
    code, out, err = finish(victim)
    assert code == -signal.SIGKILL and "epoch 2/2" not in out, err
    assert torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"] == 1
    assert [p.name for p in killed.iterdir() if p.name.startswith(".checkpoint.pt.")], "no half-written file"

    code, out, err = finish(swiftformer("train", "--resume", killed))
    assert code == 0, err
    assert "epoch 1/2" not in out and "epoch 2/2" in out
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"
    code, _, err = finish(reference)
    assert code == 0, err

    a, b = load_file(killed / "last" / "model.safetensors"), load_file(whole / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (killed, whole)]  # fmt: skip
    assert len(losses[0]) == 2 and losses[0] == losses[1]


@pytest.mark.slow
def test_ctrl_c_during_an_overwrite_leaves_the_old_run_and_says_how_to_resume(world, tmp_path):
    old = Path(shutil.copytree(world["finished_run"], tmp_path / "run"))
    (old / "best" / "marker.txt").write_text("the old run\n")
    before, flag = snapshot(old), tmp_path / "paused"
    process = swiftformer(
        "train", "--data-dir", world["data"], "--output", old, "--overwrite", *T, "--epochs", 2,
        SWIFTFORMER_PAUSE_AT="0:0", SWIFTFORMER_PAUSE_FILE=str(flag),
    )  # fmt: skip
    wait_for(flag, process)
    assert snapshot(old) == before  # the new run is built beside it
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    line = one_line(err)
    assert code == 130
    assert "interrupted in epoch 1/2" in line and f"{old} is unchanged" in line
    assert f"swiftformer train --resume {old} --overwrite" in line
    assert snapshot(old) == before

    code, out, err = finish(swiftformer("train", "--resume", old, "--overwrite"))
    assert code == 0, err
    assert "epoch 2/2" in out and not (old / "best" / "marker.txt").exists()
    assert len((old / "metrics.jsonl").read_text().splitlines()) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_the_model_refuses_non_finite_pixels(bad):
    model = SwiftFormerForImageClassification(SwiftFormerConfig(depths=[1] * 4, embed_dims=[8, 8, 16, 16])).eval()
    pixels = torch.zeros(2, 3, 32, 32)
    pixels[1, 0, 5, 5] = bad
    with pytest.raises(ValueError, match=r"pixel_values hold [01] NaN and [01] infinite value\(s\) out of 6144"):
        model(pixels)
    assert torch.isfinite(model(pixels[:1]).logits).all()  # the finite image alone is fine


# ------------------------------------------------------------------------------------------ batch outputs
# Names no file system forbids: line breaks (\r alone too), CSV's delimiter and quote, a tab, a terminal escape,
# bytes that are not UTF-8, and a literal backslash sequence spelling the same bytes (the two must not collide).
ODD_NAMES = [
    "cr\rhere.png", "nl\nhere.png", 'comma,quote".png', "tab\there.png", "esc\x1b[31mred.png",
    os.fsdecode(b"caf\xe9.png"), "caf\\xe9.png", "two\\\\back.png", "plain.png", "sep\u2028nel\x85del\x7f.png",
]  # fmt: skip


def _odd_folder(folder: Path) -> list[str]:
    """One small PNG per name of :data:`ODD_NAMES` in ``folder``; their paths, in the order a folder walk gives."""
    folder.mkdir(parents=True)
    for seed, name in enumerate(ODD_NAMES):
        colour_image("abc"[seed % 3], seed).save(folder / name, format="PNG")
    return sorted((os.path.join(folder, name) for name in ODD_NAMES), key=os.path.basename)


def without_notes(err: str) -> str:
    """The one line of ``err`` besides the notes of the model's loading (``note: fp32 (requested); ...``)."""
    return one_line("".join(line for line in err.splitlines(keepends=True) if not line.startswith("note: ")))


def _batch(argv: list[str]) -> list[str]:
    """``argv`` of predict / embed with the options that keep a run small and exact."""
    exact = ["--precision", "fp32", "--backend", "inductor"] if argv[0] == "predict" else []
    return [*argv, *exact, "--workers", "0", "--batch-size", "4"]


@pytest.fixture(scope="module")
def batch_world(tmp_path_factory) -> dict[str, Path]:
    """A model, an input folder, outputs damaged in each way a resume must refuse, a lock held by this process."""
    root = tmp_path_factory.mktemp("batch")
    w: dict[str, Path] = {"root": root, "model": make_model_dir(root / "model", size=32)}
    photos = root / "set40"
    for i in range(3):
        (photos / "sub").mkdir(parents=True, exist_ok=True)
        colour_image("ab"[i % 2], i).save(photos / ("sub" if i else "") / f"img{i}.png")
    w["photos"] = photos
    (root / "link_into").symlink_to(photos / "sub")
    (root / "link_root").symlink_to(photos)
    w["link_into"], w["link_root"] = root / "link_into", root / "link_root"
    not_image = root / "notimg"
    not_image.mkdir()
    (not_image / "fake.jpg").write_bytes(b"not an image at all")
    (not_image / "line\nbreak.jpg").write_bytes(b"not an image either")
    w["not_image"] = not_image

    out = root / "out"
    out.mkdir()
    good = out / "good.jsonl"
    assert main(_batch(["predict", str(photos), "--model", str(w["model"]), "--output", str(good)])) == 0
    lines = good.read_bytes().splitlines(keepends=True)
    files = {
        "foreign_torn.jsonl": b'{"a": 1}\n{"b": 2',  # the last line: what resume used to delete first
        "foreign_text.jsonl": b"my notes\nno line break at the end",
        "damaged_middle.jsonl": lines[0] + b"garbage\n" + lines[1],
        "other_columns.jsonl": b'{"image": "x.png", "embedding": [1.0], "error": null}\n',
        "foreign.csv": b"name,size\nx,1\n",
        "foreign_torn.csv": b"hello",
        "damaged_middle.csv": b"image,label,index,score,labels,indices,scores,error\nx.png,a\ny.png,a,0,1.0,,,,\n",
        # what the previous version wrote for a name with a carriage return: unquoted, read as a row break
        "unquoted_cr.csv": b"image,label,index,score,labels,indices,scores,error\na\rb.png,,,,,,,oops\nc.png,,,,,,,x\n",
        "not_parquet.parquet": b"PAR1 but not really",
        "staged.jsonl": b"",
        "parts.parquet": b"",
        "locked.jsonl": good.read_bytes(),
        "locked.csv": b"",
        "locked.parquet": b"",
    }
    for name, content in files.items():
        (out / name).write_bytes(content)
        w[name.replace(".", "_")] = out / name
    (out / "staged.jsonl").unlink()
    (out / ".staged.jsonl.overwrite").write_bytes(b"somebody's notes\n")  # not an interrupted replacement of ours
    (out / ".parts.parquet.overwrite.parts").mkdir()
    (out / ".parts.parquet.overwrite.parts" / "notes.txt").write_text("keep me\n")
    w["out"] = out
    locks = [OutputLock(out / name).acquire() for name in ("locked.jsonl", "locked.csv", "locked.parquet")]
    yield w
    for lock in locks:
        lock.release()


P = ["--model", "{model}"]
BATCH_CASES: list[tuple[str, list[str], int, str, str | None]] = [
    # -- --resume reads the whole file before it changes anything
    ("resume-foreign-jsonl-torn-tail", ["predict", "{photos}", *P, "--output", "{foreign_torn_jsonl}", "--resume"],
     2, "not a JSON lines output of swiftformer", "foreign_torn_jsonl"),
    ("resume-foreign-jsonl-text", ["predict", "{photos}", *P, "--output", "{foreign_text_jsonl}", "--resume"], 2,
     "not a JSON lines output of swiftformer", "foreign_text_jsonl"),
    ("resume-jsonl-damaged-middle", ["predict", "{photos}", *P, "--output", "{damaged_middle_jsonl}", "--resume"],
     2, "line 2: not a row of swiftformer", "damaged_middle_jsonl"),
    ("resume-jsonl-other-columns", ["predict", "{photos}", *P, "--output", "{other_columns_jsonl}", "--resume"], 2,
     "holds the columns image, embedding, error", "other_columns_jsonl"),
    ("resume-foreign-csv", ["predict", "{photos}", *P, "--output", "{foreign_csv}", "--resume"], 2,
     "holds the columns name, size", "foreign_csv"),
    ("resume-foreign-csv-one-torn-line", ["predict", "{photos}", *P, "--output", "{foreign_torn_csv}", "--resume"],
     2, "holds the columns", "foreign_torn_csv"),
    ("resume-csv-damaged-middle", ["predict", "{photos}", *P, "--output", "{damaged_middle_csv}", "--resume"], 2,
     "row 1: 2 fields, not 8", "damaged_middle_csv"),
    ("resume-csv-unquoted-carriage-return", ["predict", "{photos}", *P, "--output", "{unquoted_cr_csv}",
     "--resume"], 2, "row 1: not CSV", "unquoted_cr_csv"),
    ("resume-not-parquet", ["predict", "{photos}", *P, "--output", "{not_parquet_parquet}", "--resume"], 2,
     "not a readable Parquet file", "not_parquet_parquet"),
    # -- --overwrite removes only what a run of swiftformer left
    ("overwrite-foreign-staged-file", ["predict", "{photos}", *P, "--output", "{root}/out/staged.jsonl",
     "--overwrite"], 2, "not a JSON lines output of swiftformer", "out"),
    ("overwrite-foreign-parts-folder", ["predict", "{photos}", *P, "--output", "{parts_parquet}", "--overwrite"], 2,
     "not a folder of part files", "out"),
    # -- one run per output
    ("locked-jsonl-resume", ["predict", "{photos}", *P, "--output", "{locked_jsonl}", "--resume"], 2,
     "is in use by another run (pid {pid}, started ", "locked_jsonl"),
    ("locked-csv-overwrite", ["predict", "{photos}", *P, "--output", "{locked_csv}", "--overwrite"], 2,
     "is in use by another run (pid {pid}", "locked_csv"),
    ("locked-parquet-embed", ["embed", "{photos}", *P, "--output", "{locked_parquet}", "--resume"], 2,
     "is in use by another run (pid {pid}", "locked_parquet"),
    # -- --explain inside the inputs, symbolic links resolved
    ("explain-link-into-inputs", ["predict", "{photos}", *P, "--explain", "{link_into}"], 2,
     "is inside the input folder", "photos"),
    ("explain-link-to-inputs", ["predict", "{photos}", *P, "--explain", "{link_root}/overlays"], 2,
     "is inside the input folder", "photos"),
    ("explain-inputs-through-link", ["predict", "{link_root}", *P, "--explain", "{photos}/sub/o"], 2,
     "is inside the input folder", "photos"),
    # -- info
    ("info-negative-size", ["info", "--model", "xs", "--image-size", "-5", "7"], 2, "--image-size takes one size",
     None),
    ("info-zero-size", ["info", "--model", "xs", "--image-size", "0"], 2, "got 0", None),
    ("info-three-sizes", ["info", "--model", "xs", "--image-size", "1", "2", "3"], 2, "got 1 2 3", None),
    ("info-huge-size", ["info", "--model", "xs", "--image-size", "100000"], 2, "8192", None),
    # -- names and messages: one printable line, no object repr
    ("predict-not-an-image", ["predict", "{not_image}/fake.jpg", *P], 1, "not an image file", "not_image"),
    ("predict-name-with-line-break", ["predict", "{not_image}/line\nbreak.jpg", *P], 1, "line\\nbreak.jpg",
     "not_image"),
    ("output-name-with-line-break", ["predict", "{photos}", *P, "--output", "{root}/x\ny.txt"], 2,
     "x\\ny.txt", None),
    ("list-name-with-escape", ["predict", "@{root}/no\x1b[2Jlist.txt", *P], 2, "no\\x1b[2Jlist.txt", None),
]  # fmt: skip


@pytest.mark.parametrize("case", BATCH_CASES, ids=[c[0] for c in BATCH_CASES])
def test_batch_command_refuses_in_one_line_and_changes_nothing(case, batch_world, capsys):
    _, argv, status, expected, keep = case
    names = {k: str(v) for k, v in batch_world.items()}
    argv = [a.format(**names) for a in (argv if argv[0] == "info" else _batch(argv))]
    before = snapshot(batch_world[keep]) if keep else None
    listing = sorted(p.name for p in batch_world["out"].iterdir())
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    line = without_notes(err)
    assert code == status, err
    assert expected.format(pid=os.getpid()) in line, line
    assert not re.search(r"object at 0x|0x[0-9a-f]{6,}", line), line  # no object repr, no memory address
    if status == 2:
        assert out == ""
    if keep:
        assert snapshot(batch_world[keep]) == before, f"{keep} was changed"
    assert sorted(p.name for p in batch_world["out"].iterdir()) == listing  # nothing created or removed beside


def _image_cells(output: Path) -> list[str]:
    """The ``image`` column of ``output`` as plain readers see it: csv and pandas, json, pyarrow."""
    import pandas as pd

    if output.suffix == ".csv":
        import csv

        with open(output, encoding="utf-8", newline="") as handle:
            cells = [record["image"] for record in csv.DictReader(handle)]
        assert pd.read_csv(output, dtype=str, keep_default_na=False)["image"].tolist() == cells
        return cells
    if output.suffix == ".jsonl":
        with open(output, encoding="utf-8") as handle:  # a text file's lines: \r, \n, \x85, \u2028 never split a row
            cells = [json.loads(line)["image"] for line in handle]
        assert pd.read_json(output, lines=True, dtype=False)["image"].tolist() == cells
        return cells
    import pyarrow.parquet as pq

    return pq.read_table(output).column("image").to_pylist()


@pytest.mark.parametrize("extension", ["jsonl", "csv", "parquet"])
def test_any_file_name_round_trips_in_every_format_and_through_resume(extension, batch_world, tmp_path, capsys):
    paths = _odd_folder(tmp_path / "odd")
    output = tmp_path / f"preds.{extension}"
    argv = _batch(["predict", str(tmp_path / "odd"), "--model", str(batch_world["model"]), "--output", str(output)])
    assert main(argv) == 0, capsys.readouterr().err
    rows = list(read_output(output))
    cells = [row["image"] for row in rows]
    assert [os.fsencode(decode_name(cell)) for cell in cells] == [os.fsencode(p) for p in paths]  # exact bytes
    assert len(set(cells)) == len(ODD_NAMES)  # the byte 0xe9 and the text "\xe9" stay two names
    assert _image_cells(output) == cells and all(row["error"] is None for row in rows)

    before = output.read_bytes()
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert f"0 images (0 errors, {len(paths)} already in the output)" in without_notes(capsys.readouterr().err)
    assert output.read_bytes() == before  # nothing cut, nothing added
    if extension == "parquet":
        return
    output.write_bytes(before[:-12])  # a kill tore the last row
    assert main([*argv, "--resume"]) == 0
    assert f"1 images (0 errors, {len(paths) - 1} already in the output)" in without_notes(capsys.readouterr().err)
    again = list(read_output(output))
    assert [row["image"] for row in again] == cells and [row["label"] for row in again] == [r["label"] for r in rows]
    assert output.read_bytes()[: len(before) - 200] == before[: len(before) - 200]


@pytest.mark.parametrize("spelling", ["./set40", "{root}/set40", "set40/sub/../../set40", "link_root", "set40/"])
def test_resume_knows_an_input_by_any_spelling(spelling, batch_world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(batch_world["root"])
    output = tmp_path / "preds.jsonl"
    common = ["--model", str(batch_world["model"]), "--output", str(output)]
    assert main(_batch(["predict", "set40", *common])) == 0
    before = output.read_bytes()
    capsys.readouterr()
    code = main(_batch(["predict", spelling.format(root=batch_world["root"]), *common, "--resume"]))
    assert code == 0 and "0 images (0 errors, 3 already in the output)" in without_notes(capsys.readouterr().err)
    assert output.read_bytes() == before


def test_a_run_killed_with_sigkill_frees_its_output_at_once_though_its_workers_live(tmp_path):
    """Forked children (the decoding workers) inherit the lock's descriptor; they must not keep the output locked
    after their parent is killed, until they notice and exit."""
    script = (
        "import os, sys, time\n"
        "from swiftformer.io.files import OutputLock\n"
        "lock = OutputLock(sys.argv[1]).acquire()\n"
        "child = os.fork()\n"
        "if child == 0:  # off the pipes the test reads, which it would otherwise hold open\n"
        "    os.dup2(os.open(os.devnull, os.O_RDWR), 1)\n"
        "    os.dup2(1, 2)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print(child, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    target = tmp_path / "preds.jsonl"
    command = [sys.executable, "-c", script, str(target)]
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr
    child = int(run.stdout)
    try:
        os.kill(child, 0)  # the worker still lives ...
        OutputLock.check(target)  # ... and the output is free
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_second_run_on_an_output_in_use_is_refused_naming_the_first(batch_world, tmp_path, capsys):
    output, flag = tmp_path / "preds.jsonl", tmp_path / "paused"
    argv = _batch(
        ["predict", str(batch_world["photos"]), "--model", str(batch_world["model"]), "--output", str(output)]
    )
    first = swiftformer(*argv, SWIFTFORMER_PAUSE_AT="chunk:1", SWIFTFORMER_PAUSE_FILE=str(flag))
    try:
        wait_for(flag, first)  # its rows written, the run still going
        before = output.read_bytes()
        for flags in (["--resume"], ["--overwrite"], ["--resume", "--overwrite"]):
            capsys.readouterr()
            assert main([*argv, *flags]) == 2
            line = one_line(capsys.readouterr().err)
            assert f"is in use by another run (pid {first.pid}, started " in line, line
            assert output.read_bytes() == before and not (tmp_path / ".preds.jsonl.overwrite").exists()
    finally:
        first.kill()
        finish(first)
    assert main([*argv, "--resume"]) == 0  # the kernel released the lock of the killed run
    assert "0 images (0 errors, 3 already in the output)" in capsys.readouterr().err
    assert not (tmp_path / ".preds.jsonl.lock").exists()


def test_plain_predict_prints_any_name_on_one_line(batch_world, tmp_path, capsys):
    paths = _odd_folder(tmp_path / "odd")
    code = main(_batch(["predict", str(tmp_path / "odd"), "--model", str(batch_world["model"]), "--top-k", "2"]))
    out = capsys.readouterr().out
    lines = out.splitlines()  # str.splitlines: every kind of line break counts
    assert code == 0 and len(lines) == 3 * len(ODD_NAMES), out
    assert lines[::3] == [display_path(p) for p in paths] and "\x1b" not in out
    assert all(re.fullmatch(r"  +\d\.\d{4}  \w+ \(\d\)", line) for i, line in enumerate(lines) if i % 3)


def test_names_are_stored_exactly_and_unambiguously():
    raw = [os.fsencode(name) for name in ODD_NAMES] + [b"\\", b"\\\\", b"\\x", b"a\\xe9", b"a\xe9", b"\\\xff"]
    cells = [encode_name(os.fsdecode(name)) for name in raw]
    assert len(set(cells)) == len(raw) and [os.fsencode(decode_name(cell)) for cell in cells] == raw
    assert encode_name("plain.png") == "plain.png" and encode_name("ünï.png") == "ünï.png"  # as they are
    assert encode_name(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png" and encode_name("caf\\xe9") == "caf\\\\xe9"
    assert all(cell.encode("utf-8") for cell in cells)  # valid UTF-8 text for every format
