"""``swiftformer serve`` with several models: side by side, versions, the v2 model repository extension (index,
load, unload), ``/predict?model=``, the model label on metrics, and requests cancelled by their client.

Tiny random models at fp32 on inductor (``_serving.model_for``); servers in threads on a free loopback port.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Queue

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from _helpers import LABELS, make_images, make_model_dir  # noqa: E402
from _serving import (  # noqa: E402
    NAME,
    TIMEOUT,
    DecodeGate,
    ForwardGate,
    RunningServer,
    metric,
    model_for,
    raw_post,
    settings_for,
    start_server,
    wait_for,
)
from swiftformer.cli import main  # noqa: E402
from swiftformer.serving import ServeSettings  # noqa: E402
from swiftformer.serving.settings import ModelSettings  # noqa: E402

COLOURS = {0: "red", 1: "green", 2: "blue"}

# The repository routes need an admin key (docs/serving.md, "Access control and TLS"); inference stays open.
ADMIN_KEY = "admin-key-of-the-model-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """``animals`` (4 labels), ``colours`` (3), and ``versioned``: ``1/`` animals, ``2/`` colours."""
    root = tmp_path_factory.mktemp("models")
    return {
        "animals": make_model_dir(root / "animals"),
        "colours": make_model_dir(root / "colours", id2label=COLOURS),
        "versioned": root / "versioned",
        "v1": make_model_dir(root / "versioned" / "1"),
        "v2": make_model_dir(root / "versioned" / "2", id2label=COLOURS),
        "not a model": make_images(root / "pictures")[0].parent,
    }


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> bytes:
    return make_images(tmp_path_factory.mktemp("images"))[0].read_bytes()


@pytest.fixture(scope="module")
def server(folders) -> Iterator[RunningServer]:
    models = (
        model_for(folders["animals"], "animals"),
        model_for(folders["colours"], "colours"),
        model_for(folders["versioned"], "versioned"),
    )
    running = start_server(
        settings_for(None, models, max_batch_size=4, max_wait_ms=1, max_queue=8, admin_keys=(ADMIN_KEY,))
    )
    yield running
    running.close()


def _labels(base_url: str, image: bytes, query: str = "") -> set[str]:
    response = httpx.post(f"{base_url}/predict{query}", content=image, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return {p["label"] for p in response.json()[0]["predictions"]}


# ------------------------------------------------------------------------------ side by side, versions
def test_two_models_side_by_side_answer_with_their_own_labels(server, image):
    url = server.base_url
    assert _labels(url, image, "?model=animals") == set(LABELS.values())
    assert _labels(url, image, "?model=colours") == set(COLOURS.values())
    assert _labels(url, image) == set(LABELS.values())  # no ?model=: the first given
    before = metric(server.metrics(), "swiftformer_requests_total", endpoint="/predict", status="200", model="colours")
    assert _labels(url, image, "?model=nope&model=colours") == set(COLOURS.values())  # given twice: the last
    after = metric(server.metrics(), "swiftformer_requests_total", endpoint="/predict", status="200", model="colours")
    assert after == before + 1  # counted for the model that answered
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [_b64(image)]}]}
    answer = httpx.post(f"{url}/v2/models/colours/infer", json=body, timeout=TIMEOUT).json()
    assert answer["model_name"] == "colours" and answer["outputs"][0]["shape"] == [1, 3]
    page = httpx.get(f"{url}/", timeout=TIMEOUT).text
    assert all(f'<option value="{name}"' in page for name in ("animals", "colours", "versioned"))
    pools = {id(served.backend.batcher.workers) for served in server.repository.served()}
    assert len(pools) == 1 and server.batcher.workers.threads == 1  # one pool of model workers for all models


def test_versions_latest_by_default_each_by_number(server, image):
    url = server.base_url
    meta = httpx.get(f"{url}/v2/models/versioned", timeout=TIMEOUT).json()
    assert meta["versions"] == ["1", "2"] and meta["parameters"]["version"] == "2"
    assert meta["outputs"][0]["shape"] == [-1, 3]  # version 2: the colours
    first = httpx.get(f"{url}/v2/models/versioned/versions/1", timeout=TIMEOUT).json()
    assert first["parameters"]["version"] == "1" and first["outputs"][0]["shape"] == [-1, 4]
    assert _labels(url, image, "?model=versioned") == set(COLOURS.values())
    assert _labels(url, image, "?model=versioned&version=1") == set(LABELS.values())
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [_b64(image)]}]}
    answer = httpx.post(f"{url}/v2/models/versioned/versions/1/infer", json=body, timeout=TIMEOUT).json()
    assert answer["model_version"] == "1" and answer["outputs"][0]["shape"] == [1, 4]
    missing = httpx.get(f"{url}/v2/models/versioned/versions/3", timeout=TIMEOUT)
    assert missing.status_code == 404
    assert missing.json()["error"] == "model 'versioned' has no version '3' (versions: 1, 2)"


def test_an_unknown_model_is_one_404_line_on_every_route(server, image):
    url = server.base_url
    message = "unknown model 'nope'; this server serves 'animals', 'colours', 'versioned'"
    for method, path in [
        ("POST", "/predict?model=nope"),
        ("POST", "/explain?model=nope"),
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("POST", "/v2/models/nope/versions/1/infer"),
    ]:
        response = httpx.request(method, f"{url}{path}", content=image, timeout=TIMEOUT)
        assert response.status_code == 404, (path, response.text)
        assert response.json() == {"error": message, "kind": "not_found"}, path


def test_tritonclient_shows_the_unknown_model_message(server):
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)
    try:
        with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
            client.get_model_metadata("nope")
        assert client.is_model_ready("colours") and not client.is_model_ready("nope")
    finally:
        client.close()


def test_every_metric_carries_the_model_label(server, image):
    url = server.base_url
    before = metric(server.metrics(), "swiftformer_images_total", model="colours")
    _labels(url, image, "?model=colours")
    httpx.post(f"{url}/predict?model=made-up", content=image, timeout=TIMEOUT)
    text = server.metrics()
    assert metric(text, "swiftformer_images_total", model="colours") == before + 1
    assert metric(text, "swiftformer_requests_total", endpoint="/predict", status="200", model="colours") >= 1
    assert metric(text, "swiftformer_batch_size_count", model="colours") >= 1
    assert metric(text, "swiftformer_errors_total", kind="not_found", model="") >= 1  # a made-up name: no series
    assert "made-up" not in text
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert "model" in sample.labels, sample


# ------------------------------------------------------------------------------ the repository extension
def test_repository_index_load_and_unload(server, folders, image):
    url = server.base_url

    def post(path: str, **body) -> httpx.Response:
        return httpx.post(f"{url}/v2/repository{path}", json=body or None, headers=ADMIN, timeout=TIMEOUT)

    index = post("/index").json()
    assert {(row["name"], row["version"], row["state"]) for row in index} == {
        ("animals", "1", "READY"),
        ("colours", "1", "READY"),
        ("versioned", "1", "READY"),
        ("versioned", "2", "READY"),
    }
    bad = post("/models/pictures/load", parameters={"path": str(folders["not a model"])})
    assert bad.status_code == 400 and bad.json()["kind"] == "bad_model"
    assert bad.json()["error"].startswith(f"cannot load model 'pictures' from {folders['not a model']}: ")
    assert "has no config.json" in bad.json()["error"] and "\n" not in bad.json()["error"]
    assert {"name": "pictures", "version": "", "state": "UNAVAILABLE"}.items() <= post("/index").json()[-1].items()
    assert _labels(url, image, "?model=colours") == set(COLOURS.values())  # still serving
    unknown = post("/models/ghost/load")
    assert unknown.status_code == 404 and "give its folder as parameters.path" in unknown.json()["error"]
    assert post("/models/x/load", parameters={"path": "a", "size": 1}).status_code == 400
    assert post("/models/ghost/unload").status_code == 404

    loaded = post("/models/more/load", parameters={"path": str(folders["colours"]), "precision": "fp32"})
    assert loaded.status_code == 200 and loaded.json() == {"name": "more", "versions": ["1"]}
    assert _labels(url, image, "?model=more") == set(COLOURS.values())
    assert post("/models/more/unload").status_code == 200
    gone = httpx.post(f"{url}/predict?model=more", content=image, timeout=TIMEOUT)
    assert gone.status_code == 404
    assert (
        gone.json()["error"] == "model 'more' is not loaded (unloaded); POST /v2/repository/models/more/load loads it"
    )
    assert {"name": "more", "state": "UNAVAILABLE", "reason": "unloaded"}.items() <= post("/index").json()[-1].items()
    assert post("/models/more/load").status_code == 200  # again, from the folder it was served from
    assert _labels(url, image, "?model=more") == set(COLOURS.values())


def test_unload_lets_the_requests_in_flight_finish(folders, image):
    """A request inside the forward pass when its model is unloaded is answered; one sent after gets 404."""
    gate = ForwardGate()
    running = start_server(settings_for(folders["animals"], admin_keys=(ADMIN_KEY,)), gate.prepare)
    url, answers = running.base_url, Queue()
    sender = threading.Thread(target=lambda: answers.put(httpx.post(f"{url}/predict", content=image, timeout=TIMEOUT)))
    unloader = threading.Thread(
        target=lambda: answers.put(
            httpx.post(f"{url}/v2/repository/models/{NAME}/unload", headers=ADMIN, timeout=TIMEOUT)
        )
    )
    try:
        sender.start()
        assert gate.entered.wait(TIMEOUT)
        unloader.start()
        wait_for(lambda: not running.repository.served(), "the model to leave the lookup")
        late = httpx.post(f"{url}/predict", content=image, timeout=TIMEOUT)
        assert late.status_code == 404 and "is not loaded (unloaded)" in late.json()["error"]
        assert unloader.is_alive()  # waits for the request in flight
        gate.release.set()
        # either answer may come first: the unload returns once the request has left the model, which may be
        # before that request's own response is written
        answered = [answers.get(timeout=TIMEOUT), answers.get(timeout=TIMEOUT)]
        (predicted,) = [r for r in answered if isinstance(r.json(), list)]
        (unloaded,) = [r for r in answered if isinstance(r.json(), dict)]
        assert predicted.status_code == 200 and predicted.json()[0]["image"] == "body"
        assert unloaded.status_code == 200 and unloaded.json()["state"] == "UNAVAILABLE"
    finally:
        gate.release.set()
        running.close()


def test_a_model_warming_up_shows_as_loading(folders, monkeypatch):
    """The index answers while a load is warming up (on the event loop) and says LOADING; then READY."""
    from swiftformer.serving.model import Classifier

    running = start_server(settings_for(folders["animals"], admin_keys=(ADMIN_KEY,)))
    gate, warm_up = threading.Event(), Classifier.warm_up
    monkeypatch.setattr(Classifier, "warm_up", lambda self: gate.wait(TIMEOUT) and warm_up(self))
    url, answers = running.base_url, Queue()

    def load() -> None:
        body = {"parameters": {"path": str(folders["colours"])}}
        answers.put(httpx.post(f"{url}/v2/repository/models/slow/load", json=body, headers=ADMIN, timeout=TIMEOUT))

    def index() -> list[dict]:
        return httpx.post(f"{url}/v2/repository/index", headers=ADMIN, timeout=TIMEOUT).json()

    loader = threading.Thread(target=load)
    try:
        loader.start()
        wait_for(lambda: any(row["name"] == "slow" for row in index()), "the load to show in the index")
        assert {"name": "slow", "version": "", "state": "LOADING", "reason": "loading"} in index()
        gate.set()
        assert answers.get(timeout=TIMEOUT).status_code == 200
        assert {"name": "slow", "version": "1", "state": "READY", "reason": ""} in index()
    finally:
        gate.set()
        running.close()


# ------------------------------------------------------------------------------ names and the command line
def test_two_models_of_one_name_are_one_clear_error(capsys):
    with pytest.raises(ValueError, match="two models named 'a' \\(x and y\\)"):
        ServeSettings(models=(ModelSettings("x", name="a"), ModelSettings("y", name="a")))
    ServeSettings(models=(ModelSettings("x", name="a", version=1), ModelSettings("y", name="a", version=2)))
    assert main(["serve", "--model", "a=x", "--model", "a=y"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "two models named 'a'" in err
    assert main(["serve", "--model", "m/x", "--model", "n/x"]) == 2  # both named after their folder
    assert "two models named 'x'" in capsys.readouterr().err


def test_model_specs_of_the_command_line(monkeypatch, capsys):
    seen: list = []
    monkeypatch.setattr("swiftformer.serving.serve", lambda settings: seen.append(settings) or 0)
    argv = ["serve", "--precision", "bf16", "--model", "runs/lr=0.1/best", "--model", "b@3=dir,precision=fp32,compile"]
    assert main(argv) == 0
    first, second = seen[0].models
    assert (first.path, first.display_name, first.version, first.precision) == (
        "runs/lr=0.1/best",
        "best",
        None,
        "bf16",
    )
    assert (second.path, second.name, second.version, second.precision, second.compile) == ("dir", "b", 3, "fp32", True)
    assert seen[0].default_model == "best" and seen[0].model_workers is None
    assert main(["serve", "--model", "a", "--model-workers", "3"]) == 0 and seen[1].model_workers == 3
    assert main(["serve", "--model", "a=dir,size=3"]) == 2
    assert "unknown option 'size=3'" in capsys.readouterr().err
    assert main(["serve", "--model", "a", "--model", "b", "--ray"]) == 2
    assert "--ray serves one model" in capsys.readouterr().err


# ------------------------------------------------------------------------------ cancellation
def test_requests_whose_client_went_away_never_reach_the_model(folders, image):
    """The model is held busy on a first request; two clients send a request each and close their connection, a
    third stays. Released, the model runs the first and the third's images only; the two are counted cancelled."""
    gate = ForwardGate()
    running = start_server(settings_for(folders["animals"], max_batch_size=4, max_wait_ms=0), gate.prepare)
    url, answers = running.base_url, Queue()

    def send() -> None:
        answers.put(httpx.post(f"{url}/predict", content=image, timeout=TIMEOUT).status_code)

    first, live = threading.Thread(target=send), threading.Thread(target=send)
    try:
        first.start()
        assert gate.entered.wait(TIMEOUT)
        leaving = [raw_post(running.port, "/predict", image) for _ in range(2)]
        wait_for(lambda: running.batcher.queued == 2, "the two requests to be queued")
        for sock in leaving:
            sock.close()
        wait_for(lambda: running.batcher.queued == 0, "the two requests to be dropped")
        live.start()
        wait_for(lambda: running.batcher.queued == 1, "the live request to be queued")
        gate.release.set()
        assert [answers.get(timeout=TIMEOUT) for _ in range(2)] == [200, 200]
        assert gate.sizes == [1, 1]  # the first request, then the live one: the two that left never ran
        text = running.metrics()
        assert metric(text, "swiftformer_cancelled_total", model=NAME) == 2
        assert metric(text, "swiftformer_requests_total", endpoint="/predict", status="499", model=NAME) == 2
    finally:
        gate.release.set()
        running.close()


def test_requests_whose_client_went_away_are_not_decoded(folders, image, monkeypatch):
    """Both decoding threads are held on two requests; two more clients send a request each and close their
    connection while their image waits for a thread. Released, the two are never decoded, counted cancelled (499),
    and a request sent afterwards is decoded and answered."""
    gate = DecodeGate(held=2)
    gate.install(monkeypatch)
    running = start_server(settings_for(folders["animals"], decode_threads=2))
    url, answers = running.base_url, Queue()

    def send() -> None:
        answers.put(httpx.post(f"{url}/predict", content=image, timeout=TIMEOUT).status_code)

    try:
        for _ in range(2):
            threading.Thread(target=send, daemon=True).start()
        gate.wait_held()
        leaving = [raw_post(running.port, "/predict", image) for _ in range(2)]
        wait_for(lambda: gate.waiting(running) == 2, "the two images to wait for a decoding thread")
        for sock in leaving:
            sock.close()
        wait_for(lambda: metric(running.metrics(), "swiftformer_cancelled_total", model=NAME) == 2, "the cancels")
        gate.release.set()
        assert [answers.get(timeout=TIMEOUT) for _ in range(2)] == [200, 200]
        send()
        assert answers.get(timeout=TIMEOUT) == 200
        assert len(gate.decoded) == 3  # the two held and the one sent afterwards: the two that left never were
        text = running.metrics()
        assert metric(text, "swiftformer_requests_total", endpoint="/predict", status="499", model=NAME) == 2
    finally:
        gate.release.set()
        running.close()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
