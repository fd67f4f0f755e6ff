"""Writing files so that a crash never leaves half of one: atomic writes, staged folders, JSON.

Every ``save_pretrained``, checkpoint, report and export goes through :func:`atomic_write` or
:func:`staging` + :func:`replace_path`: readers see the old file or the complete new one, never a mix.
What they write on the way is named by :func:`hidden_path` (``.NAME.TAG`` beside the target), so a run
killed half-way leaves files that the next one recognizes (:func:`remove_temporaries`). Writers check their
target first with :func:`check_target`: nothing they did not write is replaced unless asked
(``overwrite=True``). :func:`display_path` and :func:`path_bytes` print and record file names that are not
valid UTF-8. :func:`crash_point` lets the kill-and-resume tests stop a process at a chosen point.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import CheckpointError

# The names hidden_path(..., unique=True) gives: ".NAME.<16 hex digits>.TAG".
_UNIQUE = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.(?P<tag>\w+)$")


def hidden_path(path: str | os.PathLike, tag: str, *, unique: bool = False) -> Path:
    """The hidden sibling ``.NAME.TAG`` of ``path`` (``NAME`` its file name, in the same folder), where the
    library writes on its way to ``path``: same folder, so a rename moves it into place atomically.

    ``tag`` says what it holds (``"tmp"``: an :func:`atomic_write` in progress; ``"overwrite"``: a replacement
    built beside the old one; ``"parts"``: Parquet part files). With ``unique`` a random part makes the name
    one no other writer picks, ``.NAME.<16 hex>.TAG``; without, the name is fixed, so that a run resumed after
    a kill finds what the killed one left."""
    path = Path(path)
    middle = f".{secrets.token_hex(8)}" if unique else ""
    return path.parent / f".{path.name}{middle}.{tag}"


def remove_temporaries(folder: str | os.PathLike, name: str | None = None) -> None:
    """Delete the half-written files that :func:`atomic_write` left in ``folder`` when a process was killed
    (of the file ``name`` only, when given; else of any file)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = _UNIQUE.match(entry.name)
        if match and match["tag"] == "tmp" and (name is None or match["name"] == name) and entry.is_file():
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    Readers never see a half-written file: they see the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are owner-only (0600). Created with 0666, the kernel applies the umask as for
    # any open(), so saved models stay readable by other users and serving containers.
    tmp = hidden_path(path, "tmp", unique=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
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
    old = hidden_path(target, "old", unique=True)
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


def json_text(data: dict[str, Any]) -> str:
    """``data`` as the indented, key-sorted JSON text :func:`write_json` writes."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically (serialized first: no file when it cannot be)."""
    text = json_text(data)
    with atomic_write(path, "w") as handle:
        handle.write(text)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON object, turning a corrupt file into a :class:`CheckpointError` that names it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the file is corrupt or truncated.") from None
    except RecursionError:  # thousands of nested brackets: no config, a hostile file
        raise CheckpointError(f"{path} is nested too deeply to be a config; the file is corrupt.") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}.")
    return data


# ------------------------------------------------------------------------------------------ targets
# Characters that move a terminal's cursor or start an escape sequence (C0, DEL, C1) or break a line (U+2028,
# U+2029): in a name, a terminal would show them as something else, or a fake line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``, ...): what a
    name or message may show on a terminal or in a one-line error without faking lines or moving the cursor."""
    return _CONTROL.sub(lambda m: _SHORT_ESCAPES.get(m[0]) or m[0].encode("unicode_escape").decode("ascii"), text)


def display_path(path: str | os.PathLike | bytes) -> str:
    """``path`` as printable text, whatever its bytes: a name that is not valid UTF-8 (``b"caf\\xe9.jpg"``,
    read by Python as ``"caf\\udce9.jpg"``) comes out with the bad bytes escaped (``caf\\xe9.jpg``)
    instead of raising ``UnicodeEncodeError`` in a print or a log, and control characters escaped
    (:func:`printable`): a name holding a line break or a terminal escape cannot fake a line of output.
    For display only: files that must give the name back use :func:`encode_name` or :func:`path_bytes`."""
    text = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that no file system produced
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return printable(text)


def path_bytes(path: str | os.PathLike | bytes) -> bytes:
    """The bytes of ``path`` as the file system has them (:func:`os.fsencode`), for files that list
    paths: exact for any name, UTF-8 or not."""
    try:
        return os.fsencode(path)
    except UnicodeEncodeError:
        return os.fsdecode(path).encode("utf-8", "backslashreplace")  # a str here: bytes always encode


_NAME_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def encode_name(path: str | os.PathLike | bytes) -> str:
    """``path`` as a text cell (the ``image`` column of batch outputs), exactly and unambiguously, whatever its
    bytes; :func:`decode_name` gives the path back.

    A name that is valid UTF-8 and holds no backslash is stored as it is (every name on a UTF-8 system, but
    for the rare exceptions). The others are escaped: each backslash doubled (``\\\\``), each byte that is not
    UTF-8 written as ``\\xNN`` (two lower-case hex digits). A stored value holding a backslash is therefore
    always an escaped one, and one without never is: two different names never give the same cell (``caf\\xe9``
    cannot be both the byte ``0xe9`` and a literal backslash sequence: the latter is stored ``caf\\\\xe9``)."""
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\\" not in text:
        return text
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def decode_name(cell: str) -> str:
    """The path :func:`encode_name` stored as ``cell``, as :func:`os.fsdecode` gives it (bytes that are not UTF-8
    as surrogates: ``os.fsencode`` of it gives the exact bytes). A value without a backslash is the name itself;
    a backslash not followed by one of the two escapes stays as it is."""
    if "\\" not in cell:
        return cell
    parts, position = [], 0
    for match in _NAME_ESCAPE.finditer(cell):
        parts.append(cell[position : match.start()].encode("utf-8", "surrogateescape"))
        parts.append(b"\\" if match[1] == "\\" else bytes([int(match[1][1:], 16)]))
        position = match.end()
    parts.append(cell[position:].encode("utf-8", "surrogateescape"))
    return os.fsdecode(b"".join(parts))


def _contents(folder: Path, limit: int = 3) -> str:
    """``"best/, checkpoint.pt, metrics.jsonl and 4 more"``: what a folder holds, for a refusal."""
    names: list[str] = []
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            count += 1
            if count <= 1000:
                names.append(display_path(entry.name) + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    names.sort()
    shown = ", ".join(names[:limit])
    return shown + (f" and {count - limit} more" if count > limit else "")


def check_target(path: str | os.PathLike, what: str, overwrite: bool = False, *, hint: str | None = None) -> bool:
    """Refuse to write over anything that is already at ``path``, unless ``overwrite``.

    The one check of everything that writes a folder or file the user names (a training run's output,
    ``convert``'s output folder, ``eval``'s report): a missing path or an empty folder is free; a file or a
    non-empty folder is refused with one line saying what is there and how to proceed, unless ``overwrite``
    (then the caller must replace it atomically: write the new content into :func:`staging` beside it,
    which moves it over the old only once complete).

    Args:
        path: The target file or folder.
        what: What the target is for, e.g. ``"output folder"`` (the message starts with it).
        overwrite: Allow replacing existing content.
        hint: How to proceed, replacing the default "pass overwrite=True to replace it, or choose another
            path" (the command line shows ``overwrite=True`` as its flag, ``--overwrite``).

    Returns:
        True when ``path`` holds something that will be replaced (``overwrite``), False when it is free.

    Raises:
        FileExistsError: ``path`` holds something and ``overwrite`` is false.
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return False
    if path.is_dir():
        with os.scandir(path) as entries:
            if next(entries, None) is None:
                return False
        held = f"holds {_contents(path)}"
    else:
        held = "is a file"
    if overwrite:
        return True
    hint = hint or "pass overwrite=True to replace it, or choose another path"
    raise FileExistsError(f"{what} {display_path(path)} already exists and {held}; {hint}")


@contextlib.contextmanager
def staging(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write a whole new folder into; when the block succeeds it
    replaces ``target`` (:func:`replace_path`: the new folder is complete before the old one goes),
    when it fails it is deleted and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = hidden_path(target, "staging", unique=True)
    staged.mkdir()
    try:
        yield staged
        replace_path(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------ locks
class OutputLock:
    """An exclusive lock on ``target`` for the duration of a run: ``fcntl.flock`` on the hidden file
    ``.NAME.lock`` beside it (:func:`hidden_path`), which records the holder's pid and start time for the
    refusal of a second run. The kernel releases it when the process ends, however it ends (a lock file left
    by a killed run is free, and taken over); a forked child (a decoding worker) does not hold it. :meth:`release`
    (or the end of a ``with`` block) removes it."""

    def __init__(self, target: str | os.PathLike, what: str = "output") -> None:
        self.path = hidden_path(target, "lock")
        self.target, self.what = Path(target), what
        self.handle: IO[str] | None = None
        _LOCKS.add(self)

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`BlockingIOError` (one line naming the holder) if another run has it."""
        import fcntl  # POSIX only, as the rest of the batch outputs' guarantees

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read(200).strip() or "a run that is starting"
                handle.close()
                raise BlockingIOError(
                    f"{self.what} {display_path(self.target)} is in use by another run ({printable(holder)}); "
                    "wait for it to end, or choose another output"
                ) from None
            try:  # the file we locked may have been removed by a run releasing it meanwhile: lock the new one
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {started}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (removed while held: no other run locks a stale file)."""
        if self.handle is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.handle.close()
        self.handle = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @classmethod
    def check(cls, target: str | os.PathLike, what: str = "output") -> None:
        """Raise as :meth:`acquire` would if another run holds the lock of ``target``; leaves nothing behind."""
        lock = cls(target, what)
        if lock.path.exists():
            with lock:
                pass


_LOCKS: weakref.WeakSet[OutputLock] = weakref.WeakSet()


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader's decoding worker): close the locks' inherited descriptors, which hold
    the flock with the parent's, so a run killed with ``kill -9`` frees its output at once, not when its
    workers notice and exit; the child never removes a lock file either."""
    for lock in list(_LOCKS):
        if lock.handle is not None:
            with contextlib.suppress(OSError):
                lock.handle.close()
            lock.handle = None


os.register_at_fork(after_in_child=_drop_inherited_locks)


# ------------------------------------------------------------------------------------------ crash points
def crash_requested(point: str) -> bool:
    """Whether the environment asks :func:`crash_point` to stop this process at ``point``."""
    return point in (os.environ.get("SWIFTFORMER_KILL_AT"), os.environ.get("SWIFTFORMER_PAUSE_AT"))


def crash_point(point: str) -> None:
    """Testing aid for the kill-and-resume tests: stop this process at a named point of a write.

    ``SWIFTFORMER_KILL_AT=POINT`` kills it (SIGKILL: no cleanup runs, as in a power cut or the OOM killer);
    ``SWIFTFORMER_PAUSE_AT=POINT`` writes its pid to the file ``SWIFTFORMER_PAUSE_FILE`` (if set) and sleeps
    (up to 10 minutes), for a test to kill or interrupt it there. Points are named by their callers:
    training ``EPOCH:STEP`` (after that optimizer step, both 0-based) and ``checkpoint:N`` (half-way through
    the checkpoint of epoch N); batch outputs ``chunk:N`` (after the N-th committed chunk) and ``merged``
    (after a Parquet output is in place, before its part files are removed). Unset, it costs two lookups.
    """
    if os.environ.get("SWIFTFORMER_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("SWIFTFORMER_PAUSE_AT") == point:
        flag = os.environ.get("SWIFTFORMER_PAUSE_FILE")
        if flag:
            with atomic_write(flag, "w") as handle:
                handle.write(str(os.getpid()))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.05)
