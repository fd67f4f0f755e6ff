"""Finding the files of a model folder or hub repository, and the file names a model folder uses.

Every ``from_pretrained`` in the library goes through :func:`resolve_file`, so a local folder and a
hub id (``"MBZUAI/swiftformer-xs"``) behave the same, with the cache, revision, token and offline
conventions of :mod:`huggingface_hub`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, overload

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
WEIGHTS_NAME = "pytorch_model.bin"
PREPROCESSOR_NAME = "preprocessor_config.json"


# Without missing_ok (the default), a path or an error: never None.
@overload
def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = ...,
    cache_dir: str | os.PathLike | None = ...,
    local_files_only: bool = ...,
    token: str | bool | None = ...,
    missing_ok: Literal[False] = ...,
) -> Path: ...
@overload
def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = ...,
    cache_dir: str | os.PathLike | None = ...,
    local_files_only: bool = ...,
    token: str | bool | None = ...,
    missing_ok: bool,
) -> Path | None: ...
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
    if name.lower().endswith((".pth", ".pt", ".bin", ".safetensors", ".ckpt")):  # a weights file, not a repo
        raise FileNotFoundError(f"No such file: {name!r}.")
    if name.startswith((".", "/", "~")) or name.count("/") != 1 or (os.sep != "/" and os.sep in name):
        raise FileNotFoundError(f"No such folder: {name!r} (and it is not a hub id of the form 'owner/name').")

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
                cache_dir=None if cache_dir is None else Path(cache_dir),
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


def hub_offline(local_files_only: bool = False) -> bool:
    """Whether hub lookups may only read the cache: ``local_files_only``, or ``HF_HUB_OFFLINE`` set."""
    if local_files_only:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _typo_hint(path: Path) -> str:
    """For a hub lookup that failed: "runs/best" mistyped as "runs/bset" looks like a hub id."""
    if not path.parent.is_dir():
        return ""
    return (
        f" There is a local folder {str(path.parent)!r} but no {path.name!r} in it: if you meant a local "
        f"path, check its spelling."
    )


def _cached_repo_exists(name: str, revision: str | None, cache_dir: str | os.PathLike | None) -> bool:
    """Whether some file of the repository is cached, i.e. it is a known repository seen offline."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        name, CONFIG_NAME, cache_dir=None if cache_dir is None else Path(cache_dir), revision=revision
    )
    return isinstance(found, str)
