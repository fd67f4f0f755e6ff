"""The library's exception types: what went wrong is in the type, what to do about it in the message.

Each one subclasses the builtin a caller would catch without knowing this library (``ValueError`` for
bad files and inputs, ``RuntimeError`` for a conversion that failed), so ``except ValueError`` keeps
working where these are raised.
"""

from __future__ import annotations

from typing import Any


class CheckpointError(ValueError):
    """A checkpoint or config file exists but cannot be used (corrupt, truncated, mismatched)."""


class CheckpointShapeError(CheckpointError, RuntimeError):
    """Weights whose shapes differ from the model's (e.g. another ``num_labels``).

    Also a ``RuntimeError``, which is what torch's ``load_state_dict`` and transformers' ``from_pretrained``
    raise for size mismatches, so code written against either keeps catching it.
    """


class ExportError(RuntimeError):
    """An export could not be produced: a converter failed or an optional runtime is missing."""


class ExportVerificationError(ExportError):
    """The exported model ran, but its outputs differ from the PyTorch model's beyond the tolerance.

    ``report`` holds the measured differences; nothing was written to the target path.
    """

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report
