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

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.batch import check_output
from swiftformer.cli import main
from swiftformer.cli.common import as_flags
from swiftformer.errors import CheckpointError
from swiftformer.image_processing import SwiftFormerImageProcessor, load_image, load_image_bytes
from swiftformer.io.files import check_target, display_path
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
    "--hflip", 0, "--seed", 0,
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
    ("config-json-image-size", lambda t: SwiftFormerConfig.from_pretrained(_config_file(t, image_size=10**9)),
     CheckpointError, "config.json"),
    ("config-json-depths-null", lambda t: SwiftFormerConfig.from_pretrained(_config_file(t, depths=None)),
     CheckpointError, "depths=None"),
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
    ("train-api-lr-list", lambda t: resolve_config(None, lr=[1, 2]), ValueError, "expected a positive number"),
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
