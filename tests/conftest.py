"""Shared fixtures (a hub that can never reach the network) and the suite's options.

``--fake-cpu NAME`` (or ``SWIFTFORMER_FAKE_CPU=NAME``) runs the whole suite as one of
:data:`swiftformer.hardware.FAKE_CPUS` (``amx``, ``avx512-bf16``, ``avx2-vnni``, ``avx2``): every ``"auto"``
decision, in this process and in the subprocesses the tests start, is then the one that CPU would get, so a test
that assumes the CPU it was written on fails on any machine. ``make test-fast`` runs that way in CI.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from swiftformer import hardware

# torch's compiler (it loads triton) before any test imports TensorFlow: triton loaded after TensorFlow segfaults
# (the library's TensorFlow entry points do the same; a test's pytest.importorskip("tensorflow") would not).
importlib.import_module("torch._dynamo")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fake-cpu",
        choices=sorted(hardware.FAKE_CPUS),
        default=None,
        help=f"decide precision and backend as this CPU would (sets {hardware.FAKE_CPU_ENV} for subprocesses too)",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--fake-cpu")
    if name:
        os.environ[hardware.FAKE_CPU_ENV] = name
    if os.environ.get(hardware.FAKE_CPU_ENV):
        hardware.fake_cpu(os.environ[hardware.FAKE_CPU_ENV])  # an unknown name stops the run at once
    hardware.cpu_info.cache_clear()


def pytest_report_header(config: pytest.Config) -> str:
    return f"cpu for 'auto': {hardware.hardware_line()}"


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline mode on (env and huggingface_hub's import-time constant), an empty HF_HOME/cache under
    ``tmp_path``, and sockets that raise, so any attempted network access fails the test loudly.

    Yields the (empty) hub cache folder.
    """
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf_home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HOME", str(cache.parent))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))

    attempts: list[tuple] = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise RuntimeError(f"test tried to use the network: {args!r}")  # not OSError: no retries

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    yield cache
    # Checked after the test too, in case a library swallowed the error above.
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture
def transformers():
    """The reference implementation; tests that need it are skipped where it is not installed."""
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder (perturbed smallest classifier, four labels, 64² processor), one per test module."""
    from _helpers import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A PNG and a JPEG of different sizes, one pair per test module."""
    from _helpers import make_images

    return make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
def tiny_model():
    """A perturbed tiny classifier (every stage distinct) in eval mode, new for each test."""
    from _helpers import tiny_classifier

    return tiny_classifier()
