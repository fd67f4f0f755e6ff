"""Writing files so that a crash never leaves half of one: atomic writes, staged folders, JSON.

Every ``save_pretrained``, checkpoint, report and export goes through :func:`atomic_write` or
:func:`staging` + :func:`replace_path`: readers see the old file or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import CheckpointError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    Readers never see a half-written file: they see the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are owner-only (0600). Created with 0666, the kernel applies the umask as for
    # any open(), so saved models stay readable by other users and serving containers.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_path(staged: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a finished file or folder ``staged`` (beside ``target``) over ``target``.

    A file moves in one atomic rename. A folder cannot replace a folder in one rename, so the old one is
    renamed away first, the new one renamed in (the old one is put back if that fails), then the old one
    deleted: readers see the old or the new folder, never a mix.
    """
    staged, target = Path(staged), Path(target)
    if not (target.exists() or target.is_symlink()) or not (staged.is_dir() or target.is_dir()):
        os.replace(staged, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
    os.replace(target, old)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON object, turning a corrupt file into a :class:`CheckpointError` that names it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the file is corrupt or truncated.") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}.")
    return data
