"""Finding files of a model folder or hub repository, and writing files atomically.

Every ``from_pretrained`` in the library goes through :func:`resolve_file`, so a local folder and a
hub id (``"MBZUAI/swiftformer-xs"``) behave the same, with the cache, revision, token and offline
conventions of :mod:`huggingface_hub`. Every ``save_pretrained`` goes through :func:`atomic_write`,
so a crash never leaves a half-written file behind.
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

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
WEIGHTS_NAME = "pytorch_model.bin"
PREPROCESSOR_NAME = "preprocessor_config.json"


class CheckpointError(ValueError):
    """A checkpoint or config file exists but cannot be used (corrupt, truncated, mismatched)."""


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    missing_ok: bool = False,
) -> Path | None:
    """Return the local path of ``filename`` inside a model folder or hub repository.

    Args:
        name_or_path: A local directory, or a hub repository id such as ``"MBZUAI/swiftformer-xs"``.
        filename: The file to find, e.g. ``"config.json"``.
        revision, cache_dir, local_files_only, token: Passed to :func:`huggingface_hub.hf_hub_download`.
        missing_ok: Return ``None`` instead of raising when the repository exists but lacks the file.

    Raises:
        FileNotFoundError: A local folder lacks the file, or the path names no folder.
        OSError: The hub cannot be reached (offline) and the file is not cached, or the repository
            or revision does not exist. The message says how to point at a local folder instead.
    """
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_dir():
        candidate = path / filename
        if candidate.is_file():
            return candidate
        if missing_ok:
            return None
        raise FileNotFoundError(f"{candidate} does not exist: the folder {path} has no {filename}.")
    if path.exists():
        raise FileNotFoundError(f"{path} is a file; expected a model folder (with {filename}) or a hub id.")

    name = os.fspath(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep != "/" and os.sep in name:
        raise FileNotFoundError(f"No such folder: {name!r} (and it is not a hub id of the form 'owner/name').")
    if name.lower().endswith((".pth", ".pt", ".bin", ".safetensors", ".ckpt")):  # a weights file, not a repo
        raise FileNotFoundError(f"No such file: {name!r}.")

    # Imported here: huggingface_hub is only needed for hub ids.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            hf_hub_download(
                repo_id=name,
                filename=filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
            )
        )
    except HFValidationError as err:
        raise FileNotFoundError(f"{name!r} is neither an existing folder nor a valid hub id: {err}") from None
    except LocalEntryNotFoundError:
        # Raised when offline (HF_HUB_OFFLINE=1, local_files_only=True, or no network) and the file
        # is not in the cache. It is also what a missing optional file looks like when offline.
        if missing_ok and _cached_repo_exists(name, revision, cache_dir):
            return None
        raise OSError(
            f"Cannot load {filename!r} of {name!r}: the Hugging Face Hub is unreachable or offline mode is on "
            f"(HF_HUB_OFFLINE / local_files_only), and the file is not in the cache. Download the model once "
            f"with network access (e.g. `hf download {name} --local-dir ./{name.split('/')[-1]}`) and pass "
            f"that local folder instead of the hub id.{_typo_hint(path)}"
        ) from None
    except EntryNotFoundError:
        if missing_ok:
            return None
        raise FileNotFoundError(f"The hub repository {name!r} has no file {filename!r}.") from None
    except RevisionNotFoundError:
        raise OSError(f"The hub repository {name!r} has no revision {revision!r}.") from None
    except RepositoryNotFoundError:
        raise OSError(
            f"{name!r} is not a local folder, and no hub repository of that name is accessible "
            f"(check the spelling, or pass token= for a private repository).{_typo_hint(path)}"
        ) from None


def _typo_hint(path: Path) -> str:
    """For a hub lookup that failed: "runs/best" mistyped as "runs/bset" looks like a hub id."""
    if not path.parent.is_dir():
        return ""
    return (f" There is a local folder {str(path.parent)!r} but no {path.name!r} in it: if you meant a local "
            f"path, check its spelling.")


def _cached_repo_exists(name: str, revision: str | None, cache_dir: str | os.PathLike | None) -> bool:
    """Whether some file of the repository is cached, i.e. it is a known repository seen offline."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, CONFIG_NAME, cache_dir=cache_dir, revision=revision)
    return isinstance(found, str)


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
