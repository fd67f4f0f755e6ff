"""Access control and TLS of ``swiftformer serve`` (``swiftformer.serving.auth``, the TLS options of ``server.py``):
API and admin keys on HTTP and gRPC, keys never shown, the refusal of a non-loopback host without a key, HTTPS and
gRPC over TLS with a throw-away CA (trustme), verified."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
grpcclient = pytest.importorskip("tritonclient.grpc")
trustme = pytest.importorskip("trustme")
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from _helpers import make_images  # noqa: E402
from _serving import NAME, TIMEOUT, RunningServer, metric, settings_for, start_server  # noqa: E402
from swiftformer.cli import main  # noqa: E402
from swiftformer.serving import ModelSettings, ServeSettings  # noqa: E402
from swiftformer.serving.auth import Access, KeyCheck, gather_keys, is_loopback, route_access  # noqa: E402
from swiftformer.serving.grpc_v2 import method_access  # noqa: E402
from swiftformer.serving.server import check_tls_files  # noqa: E402

KEY, OTHER_KEY, ADMIN_KEY = "k3y-Alpha-0123456789", "k3y-Beta-9876543210", "adm1n-Gamma-5555"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> bytes:
    return make_images(tmp_path_factory.mktemp("images"), {"a.png": (64, 64, 3)})[0].read_bytes()


# ------------------------------------------------------------------------------ the rules, without a server
@pytest.mark.parametrize(
    "path, access",
    [
        ("/", Access.OPEN),
        ("/openapi.json", Access.OPEN),
        ("/v2/health/live", Access.HEALTH),
        ("/v2/health/ready", Access.HEALTH),
        ("/v2", Access.HEALTH),
        ("/metrics", Access.HEALTH),
        ("/v2/models/tiny/ready", Access.HEALTH),
        ("/v2/models/tiny/versions/1/ready", Access.HEALTH),
        ("/v2/models/tiny", Access.INFERENCE),
        ("/v2/models/tiny/infer", Access.INFERENCE),
        ("/v2/models/tiny/versions/1/infer", Access.INFERENCE),
        ("/predict", Access.INFERENCE),
        ("/explain", Access.INFERENCE),
        ("/a/route/added/later", Access.INFERENCE),
        ("/v2/repository/index", Access.ADMIN),
        ("/v2/repository/models/tiny/load", Access.ADMIN),
    ],
)
def test_route_groups(path, access):
    assert route_access(path) is access


def test_grpc_method_groups():
    service = "/inference.GRPCInferenceService/"
    assert method_access(service + "ServerLive") is Access.HEALTH
    assert method_access(service + "ModelReady") is Access.HEALTH
    assert method_access(service + "ModelInfer") is Access.INFERENCE
    assert method_access(service + "ModelMetadata") is Access.INFERENCE
    assert method_access(service + "RepositoryModelLoad") is Access.ADMIN


def test_key_check():
    check = KeyCheck([KEY, OTHER_KEY], [], protect_health=False)
    assert check.problem(Access.INFERENCE, f"Bearer {OTHER_KEY}") is None
    assert check.problem(Access.INFERENCE, f"bearer  {KEY} ") is None
    assert check.problem(Access.INFERENCE, None)[:2] == (401, "unauthorized")
    assert check.problem(Access.INFERENCE, f"Basic {KEY}")[:2] == (401, "unauthorized")
    assert check.problem(Access.INFERENCE, f"Bearer {KEY}x")[:2] == (401, "unauthorized")
    assert check.problem(Access.HEALTH, None) is None
    assert check.problem(Access.ADMIN, f"Bearer {KEY}")[:2] == (403, "forbidden")  # no admin key configured
    assert KeyCheck([KEY], [], protect_health=True).problem(Access.HEALTH, None)[0] == 401
    admin = KeyCheck([KEY], [ADMIN_KEY], protect_health=False)
    assert admin.problem(Access.ADMIN, f"Bearer {KEY}")[0] == 401
    assert admin.problem(Access.ADMIN, f"Bearer {ADMIN_KEY}") is None
    assert admin.problem(Access.INFERENCE, f"Bearer {ADMIN_KEY}") is None
    assert KeyCheck([], [], protect_health=True).problem(Access.INFERENCE, None) is None  # no keys: open


def test_keys_from_flags_files_and_environment(tmp_path, monkeypatch):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# team keys\n{OTHER_KEY}\n\n  {KEY}  \n")
    monkeypatch.setenv("SWIFTFORMER_API_KEYS", f"{ADMIN_KEY}, {KEY}")
    assert gather_keys([KEY], [keys], "SWIFTFORMER_API_KEYS") == (KEY, OTHER_KEY, ADMIN_KEY)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        gather_keys([], [tmp_path / "empty.txt"], "UNSET_VARIABLE")


def test_key_options_on_the_command_line(tmp_path, capsys):
    missing = tmp_path / "missing-keys.txt"
    code = main(["serve", "--model", "/no/such/model", "--api-key-file", str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"cannot read the key file {missing}" in err
    code = main(["serve", "--model", "/no/such/model", "--api-key", "two words"])
    err = capsys.readouterr().err
    assert code == 2 and "--api-key: key #1" in err and "two words" not in err
    assert main(["serve", "--model", "xs", "--ray", "--grpc-port", "0"]) == 2
    assert "under --ray, Ray Serve's proxy holds the connections" in capsys.readouterr().err


def test_page_asks_for_a_key_only_when_the_server_has_keys():
    from swiftformer.serving.page import render_page

    assert 'id="key-row" hidden' in render_page([("tiny", 4)], "tiny", 1.0)
    shown = render_page([("tiny", 4)], "tiny", 1.0, needs_key=True)
    assert 'id="key-row" >' in shown and 'sessionStorage.getItem("swiftformer-api-key")' in shown
    assert "headers: authorized()" in shown


def test_keys_are_never_shown():
    settings = ServeSettings(models=(ModelSettings("xs"),), api_keys=(KEY,), admin_keys=(ADMIN_KEY,))
    assert KEY not in repr(settings) and ADMIN_KEY not in repr(settings)
    with pytest.raises(ValueError) as caught:
        ServeSettings(models=(ModelSettings("xs"),), api_keys=(KEY, "has space"))
    assert "key #2" in str(caught.value) and "space" in str(caught.value) and "has space" not in str(caught.value)


def test_non_loopback_host_needs_a_key_or_insecure(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
    # the check runs before anything loads or binds: no model folder is needed to see it
    code = main(["serve", "--model", "/no/such/model", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "refusing to listen on 0.0.0.0 (beyond this machine) without an API key" in err and "--insecure" in err
    ServeSettings(models=(ModelSettings("xs"),), host="0.0.0.0", api_keys=(KEY,))
    ServeSettings(models=(ModelSettings("xs"),), host="0.0.0.0", insecure=True)


# ------------------------------------------------------------------------------ a server with keys
@pytest.fixture(scope="module")
def keyed(model_dir) -> Iterator[RunningServer]:
    running = start_server(settings_for(model_dir, grpc_port=0, api_keys=(KEY, OTHER_KEY)))
    yield running
    running.close()


def test_http_routes_need_the_key(keyed, image, caplog):
    url = keyed.base_url
    caplog.set_level(logging.DEBUG)
    for route in ("/predict", f"/v2/models/{NAME}", f"/v2/models/{NAME}/infer", "/explain"):
        method = httpx.get if route == f"/v2/models/{NAME}" else httpx.post
        for headers in ({}, {"Authorization": f"Bearer {KEY[:-1]}"}, {"Authorization": KEY}):
            answer = method(
                f"{url}{route}", headers=headers, timeout=TIMEOUT, **({} if method is httpx.get else {"content": image})
            )
            assert answer.status_code == 401, (route, answer.text)
            assert answer.headers["www-authenticate"] == 'Bearer realm="swiftformer"'
            assert float(answer.headers["x-process-time-ms"]) >= 0  # timed as every response
            assert answer.json()["kind"] == "unauthorized" and "\n" not in answer.json()["error"]
            assert KEY[:-1] not in answer.text
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text  # counted too, under the route they were for
    assert metric(text, "swiftformer_requests_total", endpoint="/predict", status="401") == 3
    assert metric(text, "swiftformer_requests_total", endpoint="/v2/models/{model_name}/infer", status="401") == 3
    answer = httpx.post(f"{url}/predict", content=image, headers=BEARER, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    other = httpx.get(f"{url}/v2/models/{NAME}", headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=TIMEOUT)
    assert other.status_code == 200
    for route in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready", "/metrics", "/"):
        assert httpx.get(f"{url}{route}", timeout=TIMEOUT).status_code == 200, route
    assert KEY not in caplog.text and KEY[:-1] not in caplog.text


def test_repository_routes_are_forbidden_without_an_admin_key(keyed):
    answer = httpx.post(f"{keyed.base_url}/v2/repository/index", headers=BEARER, timeout=TIMEOUT)
    assert answer.status_code == 403 and answer.json()["kind"] == "forbidden"


def test_tritonclient_sends_the_key(keyed, image):
    data = np.array([image], dtype=np.object_)
    http = httpclient.InferenceServerClient(url=f"127.0.0.1:{keyed.port}", network_timeout=TIMEOUT)
    try:
        inputs = [httpclient.InferInput("images", [1], "BYTES")]
        inputs[0].set_data_from_numpy(data)
        result = http.infer(NAME, inputs, headers=dict(BEARER))  # a copy: tritonclient adds its headers to the dict
        assert result.as_numpy("probabilities").shape == (1, 4)
        with pytest.raises(InferenceServerException) as caught:
            http.infer(NAME, inputs)
        assert caught.value.status() == "401"
    finally:
        http.close()


def test_grpc_needs_the_key(keyed, image):
    client = grpcclient.InferenceServerClient(keyed.grpc_url)
    try:
        data = np.array([image], dtype=np.object_)
        inputs = [grpcclient.InferInput("images", [1], "BYTES")]
        inputs[0].set_data_from_numpy(data)
        assert client.is_server_live() and client.is_model_ready(NAME)  # health: open by default
        for headers in (None, {"authorization": f"Bearer {KEY[:-1]}"}):
            with pytest.raises(InferenceServerException) as caught:
                client.infer(NAME, inputs, headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            assert "Authorization: Bearer KEY" in caught.value.message() or "not an API key" in caught.value.message()
            assert KEY[:-1] not in caught.value.message()
        with pytest.raises(InferenceServerException) as caught:
            client.get_model_metadata(NAME)
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        result = client.infer(NAME, inputs, headers={"authorization": f"Bearer {KEY}"})
        assert result.as_numpy("probabilities").shape == (1, 4)
        text = httpx.get(f"{keyed.base_url}/metrics", timeout=TIMEOUT).text  # refused calls are counted too
        assert metric(text, "swiftformer_requests_total", endpoint="grpc:ModelInfer", status="401") == 2
        assert metric(text, "swiftformer_requests_total", endpoint="grpc:ModelMetadata", status="401") == 1
    finally:
        client.close()


def test_protected_health_and_admin_key(model_dir):
    settings = settings_for(model_dir, grpc_port=0, api_keys=(KEY,), admin_keys=(ADMIN_KEY,), protect_health=True)
    running = start_server(settings)
    url = running.base_url
    client = grpcclient.InferenceServerClient(running.grpc_url)
    try:
        for route in ("/v2/health/ready", "/metrics", "/v2"):
            assert httpx.get(f"{url}{route}", timeout=TIMEOUT).status_code == 401, route
            assert httpx.get(f"{url}{route}", headers=BEARER, timeout=TIMEOUT).status_code == 200, route
        assert httpx.get(f"{url}/", timeout=TIMEOUT).status_code == 200  # the page asks for the key itself
        assert 'id="key-row" >' in httpx.get(f"{url}/", timeout=TIMEOUT).text  # shown, not hidden
        with pytest.raises(InferenceServerException) as caught:
            client.is_server_live()
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        assert client.is_server_live(headers={"authorization": f"Bearer {KEY}"})
        # the admin key passes the repository routes' check and every other route; an API key is not an admin key
        repository = f"{url}/v2/repository/index"
        assert httpx.post(repository, headers=BEARER, timeout=TIMEOUT).status_code == 401
        assert (
            httpx.post(repository, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=TIMEOUT).status_code == 200
        )
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert httpx.get(f"{url}/v2/models/{NAME}", headers=admin, timeout=TIMEOUT).status_code == 200
    finally:
        client.close()
        running.close()


# ------------------------------------------------------------------------------ TLS
@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for pem in cert.cert_chain_pems:
        pem.write_to_path(str(files["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


def test_https_and_grpc_over_tls_verified(model_dir, tls, image):
    settings = settings_for(model_dir, grpc_port=0, ssl_certfile=str(tls["cert"]), ssl_keyfile=str(tls["key"]))
    running = start_server(settings)
    try:
        assert running.base_url.startswith("https://")
        trusting = ssl.create_default_context(cafile=str(tls["ca"]))
        answer = httpx.post(f"{running.base_url}/predict", content=image, verify=trusting, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{running.base_url}/v2/health/live", verify=ssl.create_default_context(), timeout=TIMEOUT)
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to a TLS port
            httpx.get(f"http://127.0.0.1:{running.port}/v2/health/live", timeout=TIMEOUT)

        client = grpcclient.InferenceServerClient(running.grpc_url, ssl=True, root_certificates=str(tls["ca"]))
        try:
            assert client.is_server_ready()
            inputs = [grpcclient.InferInput("images", [1], "BYTES")]
            inputs[0].set_data_from_numpy(np.array([image], dtype=np.object_))
            probs = client.infer(NAME, inputs).as_numpy("probabilities")
            expected = {p["index"]: p["score"] for p in answer.json()[0]["predictions"]}
            for index, score in expected.items():
                assert probs[0, index] == pytest.approx(score, abs=1e-6)
        finally:
            client.close()
        untrusting = grpcclient.InferenceServerClient(running.grpc_url, ssl=True)  # the system's roots only
        try:
            with pytest.raises(InferenceServerException) as caught:
                untrusting.is_server_live(client_timeout=TIMEOUT)
            assert caught.value.status() == "StatusCode.UNAVAILABLE"
        finally:
            untrusting.close()
    finally:
        running.close()


def test_tls_files_are_checked_at_start(tls, tmp_path, capsys):
    good = {"ssl_certfile": str(tls["cert"]), "ssl_keyfile": str(tls["key"])}
    check_tls_files(ServeSettings(models=(ModelSettings("xs"),), **good))
    with pytest.raises(ValueError, match="No such file or directory"):
        check_tls_files(
            ServeSettings(
                models=(ModelSettings("xs"),),
                ssl_certfile=str(tmp_path / "missing.pem"),
                ssl_keyfile=good["ssl_keyfile"],
            )
        )
    other_key = tmp_path / "other.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    with pytest.raises(ValueError, match="cannot use the TLS certificate"):
        check_tls_files(
            ServeSettings(models=(ModelSettings("xs"),), ssl_certfile=good["ssl_certfile"], ssl_keyfile=str(other_key))
        )
    code = main(
        ["serve", "--model", "xs", "--ssl-certfile", str(tmp_path / "missing.pem"), "--ssl-keyfile", str(other_key)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "missing.pem" in err
