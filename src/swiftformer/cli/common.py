"""What several commands share: hub options, one-line errors."""

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
