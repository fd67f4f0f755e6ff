"""``predict --ray`` / ``embed --ray``: the Ray Data pipeline on a local Ray instance with 2 model actors gives
the rows of the single-process run, and resumes its output.

Opt-in (``SWIFTFORMER_RAY_TESTS=1``), since a local Ray instance's own services listen on all interfaces:
``make test-ray`` runs it in a network namespace of its own that has only loopback (see tests/test_serve_ray.py).
About a minute on 2 cores.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("SWIFTFORMER_RAY_TESTS") != "1":
    reason = "Ray tests run apart: `make test-ray` (SWIFTFORMER_RAY_TESTS=1 in a loopback-only network namespace)"
    pytest.skip(reason, allow_module_level=True)

import torch

from _batch import FAST, assert_same_predictions, by_image, make_image_tree, swiftformer
from _helpers import make_model_dir
from swiftformer.batch import read_output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"), size=32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    make_image_tree(folder, 30)
    (folder / "d1" / "corrupt.jpg").write_bytes(b"not a JPEG")
    return folder


def test_predict_on_ray_gives_the_rows_of_one_process(model_dir, photos, tmp_path):
    local = tmp_path / "local.parquet"
    swiftformer("predict", photos, "--model", model_dir, "--output", local, *FAST)
    on_ray = tmp_path / "ray.parquet"
    result = swiftformer("predict", photos, "--model", model_dir, "--output", on_ray, *FAST, "--ray", "--replicas", 2)
    assert result.returncode == 1  # the corrupt image
    assert "2 model actor(s)" in result.stderr and "31 images (1 error)" in result.stderr
    assert [r["image"] for r in read_output(on_ray)] == [r["image"] for r in read_output(local)]  # input order
    assert_same_predictions(by_image(read_output(on_ray)), by_image(read_output(local)), exact=False)
    assert not list(tmp_path.glob(".ray.parquet*"))


def test_embed_on_ray_resumes_an_output(model_dir, photos, tmp_path):
    output = tmp_path / "embeddings.jsonl"
    swiftformer("embed", photos / "d0", "--model", model_dir, "--output", output)
    before = len(list(read_output(output)))
    result = swiftformer(
        "embed", photos, "--model", model_dir, "--output", output, "--resume", "--ray", "--replicas", 2
    )
    assert f"{31 - before} images (1 error, {before} already in the output)" in result.stderr
    local = tmp_path / "local.jsonl"
    swiftformer("embed", photos, "--model", model_dir, "--output", local)
    got, expected = by_image(read_output(output)), by_image(read_output(local))
    assert set(got) == set(expected)
    for key, row in expected.items():
        if row["error"] is None:
            torch.testing.assert_close(torch.tensor(got[key]["embedding"]), torch.tensor(row["embedding"]))
