"""What several commands share: hub options, loading a model or its processor, one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """``--revision``, ``--cache-dir``, ``--local-files-only``: huggingface_hub options for ``--model``."""
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("--cache-dir", help="hub cache folder")
    parser.add_argument("--local-files-only", action="store_true", help="never use the network")


def hub_options(args: argparse.Namespace) -> dict[str, Any]:
    """The hub keyword arguments of ``from_pretrained`` from the parsed flags (absent flags: defaults)."""
    return {
        "revision": getattr(args, "revision", None),
        "local_files_only": getattr(args, "local_files_only", False),
        "cache_dir": getattr(args, "cache_dir", None),
    }


def fail(message: str) -> int:
    """Print ``swiftformer: error: MESSAGE`` on stderr; the exit status of a user error (2)."""
    print(f"swiftformer: error: {message}", file=sys.stderr)
    return 2


def load_processor(model_ref: str, hub: dict[str, Any]):
    """The model's ``preprocessor_config.json``, or ImageNet defaults with a note when it has none."""
    from ..image_processing import SwiftFormerImageProcessor
    from ..io.hub import PREPROCESSOR_NAME, resolve_file

    if resolve_file(model_ref, PREPROCESSOR_NAME, missing_ok=True, **hub) is None:
        print(f"note: {model_ref} has no {PREPROCESSOR_NAME}; using the ImageNet defaults", file=sys.stderr)
        return SwiftFormerImageProcessor()
    return SwiftFormerImageProcessor.from_pretrained(model_ref, **hub)
