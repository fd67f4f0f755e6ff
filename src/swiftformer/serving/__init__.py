"""An HTTP inference server for SwiftFormer classifiers (``swiftformer serve``; docs/serving.md).

FastAPI + uvicorn, one or several models (and their versions), with dynamic batching: images of
concurrent requests for a model that arrive within ``max_wait_ms`` of each other run as one forward
pass. Endpoints: ``POST /predict?model=`` (the ``swiftformer predict --json`` schema), the Open
Inference Protocol v2 (``/v2/...``, JSON and the binary tensor data extension, the model repository
extension), ``GET /metrics`` (Prometheus) and a demo page at ``/``.

Nothing here is imported by ``import swiftformer``: FastAPI, uvicorn and prometheus-client are the
``serve`` extra (``pip install .[serve]``) and are imported by the submodules that use them.

    from swiftformer.serving import ModelSettings, ServeSettings, serve
    serve(ServeSettings(models=(ModelSettings("runs/xs/best", name="xs"),), max_batch_size=8))  # until SIGTERM
"""

from __future__ import annotations

from .errors import ServeError
from .settings import ModelSettings, ServeSettings

__all__ = ["ModelSettings", "ServeError", "ServeSettings", "create_app", "load_classifier", "serve"]


def __getattr__(name: str):
    # FastAPI, uvicorn and torch load only when a server is built, so the settings import light.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    if name == "load_classifier":
        from .model import load_classifier

        return load_classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
