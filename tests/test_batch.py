"""Large jobs: ``predict``/``embed`` with ``--output`` (swiftformer.batch).

Inputs (folders, globs, @lists), every output format read back and compared with ``predict --json``, the
refusal to replace an output, resuming after SIGKILL (every image exactly once, the same predictions as an
uninterrupted run), torn tails, memory that does not grow with the number of images, embeddings.
A tiny model (32 px inputs) keeps it fast; fp32 on the uncompiled inductor path keeps it deterministic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _batch import ENV, FAST, assert_same_predictions, by_image, make_image_tree, swiftformer
from _helpers import make_model_dir
from swiftformer import SwiftFormerForImageClassification, SwiftFormerImageProcessor
from swiftformer.batch import expand_inputs, image_features, read_output, skip_done
from swiftformer.cli import main

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The shared model folder at 32² inputs: small and fast for many images."""
    return make_model_dir(tmp_path_factory.mktemp("model"), size=32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """40 images in nested folders, a text file (skipped), a corrupt JPEG (an error row), an upper-case .PNG."""
    folder = tmp_path_factory.mktemp("photos")
    make_image_tree(folder, 40)
    (folder / "notes.txt").write_text("not an image")
    (folder / "d1" / "corrupt.jpg").write_bytes(b"definitely not a JPEG")
    Image.new("RGB", (30, 20), (200, 10, 10)).save(folder / "d2" / "UPPER.PNG")
    return folder


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ inputs
def test_expand_inputs_folders_globs_and_lists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ["a/z.jpg", "a/b.PNG", "a/readme.md", "a/sub/c.webp", "a/sub/deeper/d.jpeg", "a/sub/e.txt", "b.txt"]:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"")
    walked = list(expand_inputs(["a"]))  # sorted, a folder's files before its sub-folders', images only
    assert walked == ["a/b.PNG", "a/z.jpg", "a/sub/c.webp", "a/sub/deeper/d.jpeg"]
    assert list(expand_inputs(["b.txt", "missing.jpg"])) == ["b.txt", "missing.jpg"]  # named: always tried
    assert list(expand_inputs(["a/**/*.jp*g"])) == ["a/sub/deeper/d.jpeg", "a/z.jpg"]
    assert list(expand_inputs(["a/s*"])) == ["a/sub/c.webp", "a/sub/deeper/d.jpeg"]  # a matched folder
    assert list(expand_inputs(["nothing*.jpg"])) == ["nothing*.jpg"]  # reported as a missing file
    # "**" matches folders and the files in them: each image once, however many matches lead to it
    every = ["a/b.PNG", "a/z.jpg", "a/sub/c.webp", "a/sub/deeper/d.jpeg"]
    for pattern in ("a/**", "a/**/*", "a/**/"):
        assert sorted(expand_inputs([pattern])) == sorted(every), pattern
    os.symlink("..", "a/sub/up")  # a link back up: a loop for "**", which follows links to folders
    assert sorted(expand_inputs(["a/**/*.jpg"])) == ["a/z.jpg"]
    os.unlink("a/sub/up")
    Path("list.txt").write_text("b.txt\n\na/sub\nx*.jpg\n")  # lines: files or folders, never patterns
    assert list(expand_inputs(["@list.txt", "a/z.jpg"])) == [
        "b.txt",
        "a/sub/c.webp",
        "a/sub/deeper/d.jpeg",
        "x*.jpg",
        "a/z.jpg",
    ]


def test_skip_done_in_order_and_out_of_order():
    paths = ["a", "b", "c", "d", "e"]
    skipped = [0]
    assert list(skip_done(paths, iter(["a", "b"]), skipped)) == ["c", "d", "e"] and skipped == [2]
    assert list(skip_done(paths, iter(["b", "e", "zzz"]))) == ["a", "c", "d"]  # a file gone, files added
    assert list(skip_done(["a", "a", "b"], iter(["a"]))) == ["a", "b"]  # listed twice, done once


# ------------------------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("extension", ["jsonl", "csv", "parquet"])
@pytest.mark.slow
def test_every_format_round_trips_and_agrees_with_json(capsys, model_dir, photos, tmp_path, extension):
    code, out, _ = cli(capsys, "predict", photos, "--model", model_dir, "--json", *FAST)
    assert code == 1  # the corrupt image
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) == 42 and not any(r["image"].endswith(".txt") for r in printed)

    output = tmp_path / f"preds.{extension}"
    code, out, err = cli(capsys, "predict", photos, "--model", model_dir, "--output", output, "--top-k", 3, *FAST)
    assert code == 1 and out == ""
    assert "swiftformer predict: 42 images (1 error) in " in err and "img/s" in err
    rows = list(read_output(output))
    assert [r["image"] for r in rows] == [r["image"] for r in printed]  # the input order
    assert list(rows[0]) == ["image", "label", "index", "score", "labels", "indices", "scores", "error"]
    for row, expected in zip(rows, printed):
        if "error" in expected:
            assert row["error"] == expected["error"] and "corrupt.jpg" in row["error"]
            assert row["label"] is None and row["scores"] is None
            continue
        assert row["error"] is None
        top = expected["predictions"][:3]
        assert row["labels"] == [p["label"] for p in top] and row["indices"] == [p["index"] for p in top]
        assert row["scores"] == [p["score"] for p in top]  # float32 values, exactly
        assert (row["label"], row["index"], row["score"]) == (top[0]["label"], top[0]["index"], top[0]["score"])
    # read back with the plain readers too
    if extension == "jsonl":
        assert [json.loads(line)["image"] for line in output.read_text().splitlines()] == [r["image"] for r in rows]
    elif extension == "csv":
        import csv

        with open(output, newline="") as handle:
            records = list(csv.DictReader(handle))
        assert json.loads(records[0]["scores"]) == rows[0]["scores"] and records[0]["error"] == ""
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(output)
        assert table.num_rows == 42 and table.column("image").to_pylist() == [r["image"] for r in rows]
        assert not list(tmp_path.glob(".preds*"))  # no parts or temporaries left


def test_logits_column_and_json(capsys, model_dir, photos, tmp_path):
    output = tmp_path / "preds.parquet"
    code, _, _ = cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", output, "--logits", *FAST)
    assert code == 0
    rows = list(read_output(output))
    assert all(len(r["logits"]) == 4 for r in rows)
    for row in rows:
        probs = torch.tensor(row["logits"]).softmax(-1)
        assert int(probs.argmax()) == row["index"] and float(probs.max()) == pytest.approx(row["score"], rel=1e-5)
    code, out, _ = cli(capsys, "predict", photos / "d0", "--model", model_dir, "--json", "--logits", *FAST)
    assert [json.loads(line)["logits"] for line in out.splitlines()] == [r["logits"] for r in rows]


def test_existing_output_is_refused_before_any_work(capsys, model_dir, photos, tmp_path):
    output = tmp_path / "preds.jsonl"
    output.write_text("my notes\n")
    # checked before the model is loaded: a missing model is not even noticed
    code, _, err = cli(capsys, "predict", photos, "--model", tmp_path / "no-model", "--output", output)
    assert code == 2 and "already exists" in err and "--resume" in err and "--overwrite" in err
    assert output.read_text() == "my notes\n"
    code, _, err = cli(capsys, "predict", photos, "--model", model_dir, "--output", output, "--resume", *FAST)
    assert code == 2 and "not a JSON lines output of swiftformer" in err and output.read_text() == "my notes\n"
    code, _, _ = cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", output, "--overwrite", *FAST)
    assert code == 0 and len(list(read_output(output))) == 14
    assert not list(tmp_path.glob(".preds*"))


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize("extension", ["jsonl", "csv", "parquet"])
def test_an_output_that_is_a_folder_is_refused_whatever_the_flags(
    capsys, model_dir, photos, tmp_path, flags, extension
):
    """An output is one file: a folder named like one (a Parquet dataset folder) is never replaced, nor left to fail
    after the whole run."""
    folder = tmp_path / f"out.{extension}"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "keep.txt").write_text("mine")
    code, _, err = cli(capsys, "predict", photos / "d0", "--model", tmp_path / "no-model", "--output", folder, *flags)
    assert code == 2 and "is a folder, not a" in err  # before the model is even looked for
    (folder / "sub" / "keep.txt").unlink()
    (folder / "sub").rmdir()  # empty now: refused all the same
    code, _, err = cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", folder, *flags, *FAST)
    assert code == 2 and "is a folder, not a" in err and folder.is_dir() and not list(tmp_path.glob(".out*"))


def test_inputs_without_an_image_file_say_so(capsys, model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("no image")
    for inputs in ([tmp_path / "empty"], [tmp_path / "*.txt"]):
        code, _, err = cli(capsys, "predict", *inputs, "--model", model_dir, *FAST)
        assert code == 1 and "no image files in the inputs" in err, err


def test_an_output_under_a_file_is_refused_before_the_model_loads(capsys, photos, tmp_path):
    (tmp_path / "notes").write_text("mine")
    for output in (tmp_path / "notes" / "preds.jsonl", tmp_path / "notes" / "deeper" / "preds.csv"):
        code, _, err = cli(capsys, "predict", photos / "d0", "--model", tmp_path / "no-model", "--output", output)
        assert code == 2 and "notes is a file, not a folder" in err, err
    assert (tmp_path / "notes").read_text() == "mine"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resume"], "--resume needs --output"),
        (["--overwrite"], "--overwrite needs --output"),
        (["--ray"], "--ray needs --output"),
        (["--output", "x.jsonl", "--json"], "--json prints to stdout"),
        (["--output", "x.txt"], "unknown format '.txt'"),
        (["--output", "x.jsonl", "--replicas", "2"], "--address and --replicas are for --ray"),
        (["--workers", "-1"], "--workers must be at least 0"),
        (["@missing-list.txt"], "list file"),
    ],
)
def test_conflicting_options(capsys, model_dir, photos, tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    inputs = [photos, *(f for f in flags if f.startswith("@"))]
    flags = [f for f in flags if not f.startswith("@")]
    code, out, err = cli(capsys, "predict", *inputs, "--model", model_dir, *flags)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_resume_with_other_columns_is_refused(capsys, model_dir, photos, tmp_path):
    output = tmp_path / "preds.csv"
    assert cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", output, *FAST)[0] == 0
    before = output.read_bytes()
    code, _, err = cli(capsys, "predict", photos, "--model", model_dir, "--output", output, "--resume", "--logits")
    assert code == 2 and "holds the columns" in err and "--logits" in err
    code, _, err = cli(capsys, "embed", photos, "--model", model_dir, "--output", output, "--resume")
    assert code == 2 and "holds the columns" in err
    assert output.read_bytes() == before


def test_resume_adds_only_new_images(capsys, model_dir, tmp_path):
    folder = tmp_path / "photos"
    make_image_tree(folder, 10)
    output = tmp_path / "preds.parquet"
    assert cli(capsys, "predict", folder, "--model", model_dir, "--output", output, *FAST)[0] == 0
    make_image_tree(folder / "later", 5, seed=1)
    code, _, err = cli(capsys, "predict", folder, "--model", model_dir, "--output", output, "--resume", *FAST)
    assert code == 0 and "5 images (0 errors, 10 already in the output)" in err
    rows = by_image(read_output(output))
    assert len(rows) == 15 and sum("later" in key for key in rows) == 5
    code, _, err = cli(capsys, "predict", folder, "--model", model_dir, "--output", output, "--resume", *FAST)
    assert code == 0 and "0 images (0 errors, 15 already in the output)" in err
    assert len(list(read_output(output))) == 15


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("extension", ["jsonl", "csv", "parquet"])
@pytest.mark.slow
def test_resume_after_sigkill_gives_every_image_once(capsys, model_dir, photos, tmp_path, extension):
    output = tmp_path / f"preds.{extension}"
    common = ("predict", photos, "--model", model_dir, "--output", output, *FAST, "--chunk-rows", 8)
    killed = swiftformer(*common, "--workers", 1, env={**ENV, "SWIFTFORMER_KILL_AT": "chunk:2"}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if extension == "parquet":  # two complete part files, no finished output yet
        assert not output.exists() and len(list((tmp_path / ".preds.parquet.parts").glob("part-*.parquet"))) == 2
        code, _, err = cli(capsys, *common)  # an unfinished run is not started over silently
        assert code == 2 and "unfinished" in err and "--resume" in err
    else:
        assert len(list(read_output(output))) == 16  # two batches of 8
    code, _, err = cli(capsys, *common, "--resume", "--workers", 2)
    assert code == 0 and "26 images (0 errors, 16 already in the output)" in err
    reference = tmp_path / f"reference.{extension}"
    cli(capsys, "predict", photos, "--model", model_dir, "--output", reference, *FAST)
    assert [r["image"] for r in read_output(output)] == [r["image"] for r in read_output(reference)]
    assert_same_predictions(by_image(read_output(output)), by_image(read_output(reference)), exact=False)
    assert not list(tmp_path.glob(".preds*"))


def test_parquet_killed_after_its_merge_counts_no_row_twice(capsys, model_dir, photos, tmp_path):
    output = tmp_path / "preds.parquet"
    common = ("predict", photos / "d1", "--model", model_dir, "--output", output, *FAST, "--chunk-rows", 4)
    killed = swiftformer(*common, env={**ENV, "SWIFTFORMER_KILL_AT": "merged"}, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert output.exists() and (tmp_path / ".preds.parquet.parts").is_dir()  # merged, parts not yet removed
    code, _, err = cli(capsys, *common, "--resume")
    assert code == 0 and "0 images (0 errors, 14 already in the output)" in err
    assert len(by_image(read_output(output))) == 14 and not (tmp_path / ".preds.parquet.parts").exists()


def test_an_overwrite_killed_after_its_merge_never_adopts_the_replaced_runs_parts(capsys, model_dir, photos, tmp_path):
    """An interrupted run leaves parts; a run replacing it (--overwrite) is killed once its output is in place; the
    resume must count what the new output holds, not the old run's parts."""
    output = tmp_path / "preds.parquet"
    first = ("predict", photos, "--model", model_dir, "--output", output, *FAST, "--chunk-rows", 4, "--batch-size", 4)
    killed = swiftformer(*first, env={**ENV, "SWIFTFORMER_KILL_AT": "chunk:3"}, check=False)
    assert killed.returncode == -signal.SIGKILL and (tmp_path / ".preds.parquet.parts").is_dir()
    second = ("predict", photos / "d1", "--model", model_dir, "--output", output, *FAST, "--chunk-rows", 4)
    killed = swiftformer(*second, "--overwrite", env={**ENV, "SWIFTFORMER_KILL_AT": "merged"}, check=False)
    assert killed.returncode == -signal.SIGKILL and output.is_file()
    code, _, err = cli(capsys, *second, "--resume")
    assert code == 0 and "0 images (0 errors, 14 already in the output)" in err
    rows = list(read_output(output))
    assert len(rows) == 14 and all(Path(r["image"]).is_relative_to(photos / "d1") for r in rows)


@pytest.mark.parametrize("extension", ["jsonl", "csv"])
def test_a_torn_last_row_is_cut_off_on_resume(capsys, model_dir, photos, tmp_path, extension):
    output = tmp_path / f"preds.{extension}"
    assert cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", output, *FAST)[0] == 0
    whole = output.read_bytes()
    lines = whole.splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:-2]) + lines[-2][:25])  # killed in the middle of a row
    code, _, err = cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", output, "--resume", *FAST)
    assert code == 0 and "2 images (0 errors," in err
    assert output.read_bytes() == whole


@pytest.mark.slow
def test_overwrite_replaces_only_when_complete(capsys, model_dir, photos, tmp_path):
    output = tmp_path / "preds.jsonl"
    cli(capsys, "predict", photos / "d0", "--model", model_dir, "--output", output, *FAST)
    before = output.read_bytes()
    common = ("predict", photos, "--model", model_dir, "--output", output, *FAST, "--overwrite")
    killed = swiftformer(*common, env={**ENV, "SWIFTFORMER_KILL_AT": "chunk:2"}, check=False)
    assert killed.returncode == -signal.SIGKILL and output.read_bytes() == before  # the old output, untouched
    assert (tmp_path / ".preds.jsonl.overwrite").is_file()
    code, _, err = cli(capsys, *common, "--resume")
    assert code == 0 and "16 already in the output" in err
    assert len(by_image(read_output(output))) == 42 and not (tmp_path / ".preds.jsonl.overwrite").exists()


# ------------------------------------------------------------------------------------------------ memory
def _peak_rss_kib(argv: list[str]) -> int:
    """Peak resident memory of a command (and of the children it waited for: the decoding workers)."""
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.returncode == 0, stderr[-2000:]
    return usage.ru_maxrss


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """320² inputs (1.2 MB each as float32): 150 more images would add 180 MB (over 20 %) if they were held."""
    model = make_model_dir(tmp_path / "model", size=320)
    peaks = []
    for count in (50, 200):
        folder = tmp_path / f"photos{count}"
        make_image_tree(folder, count, side=16)
        argv = [sys.executable, "-m", "swiftformer", "predict", str(folder), "--model", str(model)]
        argv += ["--output", str(tmp_path / f"preds{count}.parquet"), *FAST, "--workers", "1"]
        peaks.append(_peak_rss_kib(argv))
    assert peaks[1] < 1.10 * peaks[0], f"peak RSS {peaks[0] / 1024:.0f} MiB -> {peaks[1] / 1024:.0f} MiB"


# ------------------------------------------------------------------------------------------------ embed
@pytest.mark.slow
def test_embed_is_the_pooled_last_stage(capsys, model_dir, photos, tmp_path):
    output = tmp_path / "embeddings.parquet"
    code, _, err = cli(capsys, "embed", photos, "--model", model_dir, "--output", output, "--batch-size", 8)
    assert code == 1 and "swiftformer embed: 42 images (1 error)" in err
    rows = [r for r in read_output(output) if r["error"] is None]
    assert next(iter(read_output(output))).keys() == {"image", "embedding", "error"}
    model = SwiftFormerForImageClassification.from_pretrained(model_dir).eval()
    processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        pixels = processor([r["image"] for r in rows], return_tensors="pt")["pixel_values"]
        hidden = model.swiftformer(pixels).last_hidden_state
        expected = model.norm(hidden).mean(dim=(2, 3))  # the classifier's head input
        assert torch.allclose(image_features(model, pixels), expected, atol=1e-6)
    got = torch.tensor([r["embedding"] for r in rows])
    assert got.shape == (41, 16)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    plain = tmp_path / "plain.jsonl"
    assert cli(capsys, "embed", photos, "--model", model_dir, "--output", plain, "--no-optimize")[0] == 1
    torch.testing.assert_close(
        torch.tensor([r["embedding"] for r in read_output(plain) if r["error"] is None]), expected, rtol=0, atol=1e-6
    )
    code, out, _ = cli(capsys, "embed", photos / "d0", "--model", model_dir, "--normalize")
    assert code == 0
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) == 14 and set(printed[0]) == {"image", "embedding"}
    norms = torch.tensor([r["embedding"] for r in printed]).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(14))


# ------------------------------------------------------------------------------------------------ decoding
def test_fast_decode_by_default_exact_decode_on_request(capsys, model_dir, tmp_path):
    from swiftformer.batch.runner import DecodeImages

    rng = np.random.default_rng(0)
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    smooth = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200), Image.BICUBIC)
    smooth.save(photo, quality=90)
    processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
    _, exact, _ = DecodeImages(processor, fast_decode=False)[str(photo)]
    _, fast, _ = DecodeImages(processor)[str(photo)]
    assert torch.equal(exact, processor(str(photo), return_tensors="pt")["pixel_values"][0])  # bit-identical
    assert not torch.equal(exact, fast) and (exact - fast).abs().mean() < 0.02  # < 1 level on average
    for command in ("predict", "embed"):
        lines = []
        for flags in ((), ("--exact-decode",)):
            output = tmp_path / f"{command}{len(flags)}.jsonl"
            code, _, err = cli(capsys, command, photo.parent, "--model", model_dir, "--output", output, *flags)
            assert code == 0, err
            lines.append(err)
        assert "fast JPEG decode" in lines[0] and "exact decode" in lines[1]
