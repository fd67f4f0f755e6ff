"""Shared fixtures: a hub that can never reach the network."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


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
