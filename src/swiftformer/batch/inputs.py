"""What a batch job reads: files, folders (recursive), globs and ``@LIST`` files, expanded lazily.

:func:`expand_inputs` yields image paths one at a time, in a reproducible order, without ever holding the
whole list: a folder of ten million images costs the memory of one path. :func:`skip_done` drops the paths
an earlier run already wrote (``resume``), in constant memory when the output holds a prefix of the inputs
in the same order (the usual case: the same command, killed and run again).
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Iterable, Iterator

from ..image_processing import IMAGE_EXTENSIONS
from ..io.files import decode_name, display_path, encode_name

GLOB_CHARACTERS = frozenset("*?[")


def is_image_name(name: str) -> bool:
    """Whether a file name ends with one of :data:`~swiftformer.image_processing.IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def walk_images(folder: str) -> Iterator[str]:
    """The image files under ``folder``, recursively, sorted by name at every level (folders and files apart:
    a folder's files come before its sub-folders'). Symbolic links to files are followed, to folders not (no
    cycles); unreadable sub-folders are skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            elif is_image_name(entry.name) and entry.is_file():
                yield entry.path
        except OSError:
            continue
    for sub in subfolders:
        yield from walk_images(sub)


def _expand_one(spec: str, *, from_list: bool = False) -> Iterator[str]:
    """One command-line argument (or one line of a list file) → paths."""
    if os.path.isdir(spec):
        yield from walk_images(spec)
    elif os.path.lexists(spec) or from_list or not GLOB_CHARACTERS & set(spec):
        yield spec  # a file named explicitly is always tried, whatever its name; a missing one is an error row
    else:
        matches = sorted(glob.iglob(spec, recursive=True))
        if not matches:
            yield spec  # reported as a missing file, as the shell would pass an unmatched pattern
        found = [
            path
            for match in matches
            for path in (walk_images(match) if os.path.isdir(match) else [match] if is_image_name(match) else [])
        ]
        # "**" matches a folder and what is in it, and follows links to folders (a loop too): each file once, under
        # its shortest name
        shortest: dict[str, str] = {}
        for path in found:
            real = os.path.realpath(path)
            if real not in shortest or (path.count(os.sep), path) < (shortest[real].count(os.sep), shortest[real]):
                shortest[real] = path
        chosen = set(shortest.values())
        for path in found:
            if path in chosen:
                chosen.discard(path)
                yield path


def read_list(list_file: str) -> Iterator[str]:
    """The paths of a list file, one per line (blank lines skipped; a line is a file or a folder, not a
    pattern; relative paths are relative to the current folder). Read lazily, so the list can be huge."""
    try:
        handle = open(list_file, encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as err:
        raise FileNotFoundError(
            f"cannot read the list file '{display_path(list_file)}': {err.strerror or err}"
        ) from None
    with handle:
        for line in handle:
            path = line.rstrip("\r\n")
            if path.strip():
                yield path


def check_inputs(specs: Iterable[str]) -> None:
    """Refuse, before any work, a ``@LIST`` argument whose list file cannot be opened (one-line error)."""
    for spec in specs:
        if spec.startswith("@") and not os.path.lexists(spec):
            name = spec[1:]
            if not os.path.isfile(name):
                raise FileNotFoundError(
                    f"list file '{display_path(name)}' ({display_path(spec)}) does not exist or is not a file"
                )


def expand_inputs(specs: Iterable[str]) -> Iterator[str]:
    """Image paths from command-line arguments, lazily, in order:

    * ``@LIST``: the lines of the file LIST (:func:`read_list`), each a file or a folder;
    * a folder: its image files (by extension) at any depth, sorted (:func:`walk_images`);
    * an existing file: itself, whatever its extension (unreadable files become error rows);
    * a pattern (``*``, ``?``, ``[``; ``**`` for any depth): the matching image files and folders, sorted;
    * anything else: itself (a missing file, reported as an error row).
    """
    for spec in specs:
        if spec.startswith("@") and not os.path.lexists(spec):
            for line in read_list(spec[1:]):
                yield from _expand_one(line, from_list=True)
        else:
            yield from _expand_one(spec)


def count_inputs(specs: Iterable[str]) -> int:
    """How many paths :func:`expand_inputs` yields (one pass over folders and lists, nothing kept)."""
    return sum(1 for _ in expand_inputs(specs))


def image_key(path: str | os.PathLike) -> str:
    """The ``image`` value of a path in an output: the path as given, exactly and unambiguously
    (:func:`~swiftformer.io.files.encode_name`: names that are not UTF-8, or hold a backslash, escaped);
    :func:`~swiftformer.io.files.decode_name` gives the path back."""
    return encode_name(path)


def resume_key(path: str | os.PathLike) -> str:
    """What makes two inputs one for ``resume``: the absolute path with every symbolic link resolved (of the
    folders, and of the file itself), so that ``set40/a.jpg``, ``./set40/a.jpg``, ``/data/set40/a.jpg`` and a link
    to it are the same input. Relative paths are resolved against the current folder: resume a run from the
    folder it was started in (or give absolute paths). A missing file keeps its spelling, made absolute."""
    folder, name = os.path.split(os.path.abspath(path))
    full = os.path.join(_real_folder(folder), name)
    return os.path.realpath(full) if os.path.islink(full) else full


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def skip_done(paths: Iterable[str], done: Iterable[str], skipped: list[int] | None = None) -> Iterator[str]:
    """``paths`` without those that ``done`` (the ``image`` column of an output) holds: the same input, by
    :func:`resume_key` of the path and of the decoded ``image`` value. Each done row accounts for one input (a
    path listed twice and done once runs once more).

    Constant memory while ``done`` is a prefix of the inputs in their order (what an interrupted run of the
    same command leaves); from the first difference on (new or removed files), the rest of ``done`` is held in
    a set. ``skipped``, if given, is a one-element list counting the paths dropped.
    """
    done_iter = (resume_key(decode_name(cell)) for cell in done)
    rest: dict[str, int] | None = None  # key -> how many rows of it remain, once out of order
    counter = skipped if skipped is not None else [0]
    for path in paths:
        key = resume_key(path)
        if rest is None:
            expected = next(done_iter, None)
            if expected == key:
                counter[0] += 1
                continue
            rest = {}
            if expected is not None:
                rest[expected] = 1
            for other in done_iter:
                rest[other] = rest.get(other, 0) + 1
        if rest.get(key):
            rest[key] -= 1
            counter[0] += 1
            continue
        yield path


def inside_inputs(folder: str | os.PathLike, specs: Iterable[str]) -> str | None:
    """The input folder of ``specs`` (command-line arguments) that holds ``folder`` (the same folder, or one
    under it), both with every symbolic link resolved, or None: files written there would be read as inputs."""
    real = os.path.realpath(folder)
    for spec in specs:
        if os.path.isdir(spec):
            top = os.path.realpath(spec)
            if os.path.commonpath([real, top]) == top:
                return spec
    return None
