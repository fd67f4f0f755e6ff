"""The one error type of the server: an HTTP status, a machine-readable kind and a message."""

from __future__ import annotations

import re

# An object's default repr, "<_io.BytesIO object at 0x7f...>" (what another library's message may quote).
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


class ServeError(Exception):
    """A request the server refuses or cannot answer; becomes ``{"error": message, "kind": kind}``.

    ``kind`` labels the ``swiftformer_errors_total`` metric: ``bad_image``, ``empty``, ``image_too_large``,
    ``too_large``, ``too_many_images``, ``bad_request``, ``not_found``, ``queue_full``, ``not_ready``,
    ``shutting_down``, ``internal``, ``busy``, ``bad_host``, ``timeout``, ``non_finite``, ``cancelled`` (499: the
    client went away), ``bad_model`` (a model load that failed), ``not_implemented``.

    An object's repr in ``message`` (``<_io.BytesIO object at 0x...>``) is reduced to ``a BytesIO object``: a
    message never shows a memory address.
    """

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        message = _OBJECT_REPR.sub(lambda m: f"a {m[1].rsplit('.', 1)[-1]} object", message)
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}
