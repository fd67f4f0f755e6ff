"""What several commands share: hub options, one-line errors, library messages in terms of flags."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
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


# An object's default repr, "<_io.BytesIO object at 0x7f...>": what a message may quote from another library.
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def one_line(message: str) -> str:
    """``message`` as one printable line: control characters escaped (a line break, a terminal escape;
    :func:`~swiftformer.io.files.printable`), an object's repr with its memory address reduced to its type."""
    from ..io.files import printable

    return printable(_OBJECT_REPR.sub(lambda m: f"a {m[1].rsplit('.', 1)[-1]} object", message))


def classification_only(model: str, command: str) -> None:
    """Refuse, with a ``ValueError`` (one line from ``cli.main``), a segmentation model folder for a command
    that only classifiers have."""
    from ..modeling_segmentation import is_segmentation_folder

    if is_segmentation_folder(model):
        raise ValueError(
            f"{command} is for classification models only; {model} is a semantic segmentation model "
            "(swiftformer predict --masks DIR writes its masks)"
        )


def fail(message: str) -> int:
    """Print ``swiftformer: error: MESSAGE`` on stderr, as one line (:func:`one_line`); the exit status of a user
    error (2)."""
    print(f"swiftformer: error: {one_line(message)}", file=sys.stderr)
    return 2


def as_flags(message: str, flags: Mapping[str, str]) -> str:
    """A library message in a command's terms: each parameter of ``flags`` it names becomes the flag that sets
    it (``{"overwrite": "--overwrite", "replace": "--overwrite", "output_dir": "--to"}``).

    The library names a parameter to change as Python code would, ``name=True`` or ``name=VALUE`` (VALUE
    unquoted: a path, or a placeholder such as FILE), or in prose as ``another name``, or bare when the name has an
    underscore (no English word has one); these become ``--flag``, ``--flag VALUE``, ``another --flag`` and
    ``--flag``. A value it reports (``variant='xs'``, ``epochs=0``: quoted, or a number) stays as the config file
    and Python spell it.
    """
    for name, flag in flags.items():
        literal = flag.replace("\\", "\\\\")  # a template for re.sub: a Windows path's backslashes as they are
        word = rf"(?<![\w./-]){re.escape(name)}"
        message = re.sub(rf"{word}=True\b", literal, message)
        message = re.sub(rf"{word}=(?=[A-Za-z_/~.])(?!(?:True|False|None)\b)", literal + " ", message)
        message = re.sub(rf"\banother {re.escape(name)}\b", "another " + literal, message)
        if "_" in name:
            message = re.sub(rf"{word}(?![\w=/-])", literal, message)
    return message


def add_decode_argument(p: argparse.ArgumentParser) -> None:
    """``--exact-decode``, shared by ``predict``, ``embed``, ``serve`` and ``eval``."""
    p.add_argument(
        "--exact-decode",
        action="store_true",
        help="decode every pixel of JPEGs, bit-identical to transformers (default: decode them at the reduced "
        "scale the resize needs, several times faster for photos; same top-1 within the bound in "
        "docs/preprocessing.md)",
    )
