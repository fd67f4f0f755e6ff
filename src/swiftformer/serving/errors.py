"""The one error type of the server: an HTTP status, a machine-readable kind and a message."""

from __future__ import annotations


class ServeError(Exception):
    """A request the server refuses or cannot answer; becomes ``{"error": message, "kind": kind}``.

    ``kind`` labels the ``swiftformer_errors_total`` metric: ``bad_image``, ``empty``, ``image_too_large``,
    ``too_large``, ``too_many_images``, ``bad_request``, ``not_found``, ``queue_full``, ``not_ready``,
    ``shutting_down``, ``internal``.
    """

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}
