"""Where a batch job's rows go: JSON lines, CSV or Parquet, written in complete chunks, resumable.

The format follows the extension of the output (:data:`FORMATS`). Every format is written so that a run
killed at any moment leaves an output that ``resume`` continues, with every input exactly once at the end:

* **JSON lines, CSV**: each batch's rows are appended in one write. A kill can only tear the last line
  (record); :class:`OutputWriter` cuts such a tail off when it resumes, so what remains is whole rows.
* **Parquet** cannot be appended to. Rows are written as *part files* (``part-000000.parquet``, ...) in a hidden
  folder beside the output, ``.NAME.parts/``, each one complete (a temporary file renamed into place) every
  ``chunk_rows`` rows or ``chunk_seconds`` seconds. When the run ends, the existing output (when resuming) and
  the parts are copied, one row group at a time, into the finished file, written atomically; its metadata
  records the last part it holds (``swiftformer.merged_parts``), so a kill between that rename and the removal
  of the parts never counts a row twice.

Replacing (``overwrite``) never touches the old output before the new one is complete: JSON lines and CSV are
written to ``.NAME.overwrite`` beside it and renamed over it at the end, Parquet parts go to
``.NAME.overwrite.parts/``. An interrupted replacement continues with ``resume`` *and* ``overwrite``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..io.files import (
    OutputLock,
    atomic_write,
    check_target,
    crash_point,
    display_path,
    hidden_path,
    printable,
    remove_temporaries,
    replace_path,
)

# extension -> format
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}

# Every column a batch job writes, with its kind: how CSV cells and Parquet types encode it. Lists are JSON
# arrays in CSV cells.
COLUMN_KINDS = {
    "image": "string",
    "label": "string",
    "index": "int",
    "score": "float",
    "labels": "list<string>",
    "indices": "list<int>",
    "scores": "list<float>",
    "logits": "list<float>",
    "embedding": "list<float>",
    "error": "string",
}

MERGED_PARTS_KEY = b"swiftformer.merged_parts"
_PART = re.compile(r"^part-(\d{6,})\.parquet$")
# Library messages name parameters (resume=True ...); the command line shows its flags (cli.common.as_flags).
RESUME_HINT = "continue that run with resume=True, replace it with overwrite=True, or choose another output"


def output_format(path: str | os.PathLike) -> str:
    """``"jsonl"``, ``"csv"`` or ``"parquet"`` from the extension; ValueError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"output {display_path(path)}: unknown format {suffix or '(no extension)'!r}; use one of "
            + ", ".join(FORMATS)
        )
    return FORMATS[suffix]


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # an optional dependency: only Parquet outputs need it
        raise ImportError("Parquet outputs need pyarrow: pip install 'swiftformer[batch]' (or pyarrow)") from None
    return pa, pq


def arrow_schema(columns: Sequence[str]) -> Any:
    """The pyarrow schema of ``columns`` (names of :data:`COLUMN_KINDS`); floats are float32, as computed."""
    pa, _ = _arrow()
    types = {
        "string": pa.string(),
        "int": pa.int64(),
        "float": pa.float32(),
        "list<string>": pa.list_(pa.string()),
        "list<int>": pa.list_(pa.int64()),
        "list<float>": pa.list_(pa.float32()),
    }
    return pa.schema([(name, types[COLUMN_KINDS[name]]) for name in columns])


def _columns_differ(path: Path, found: Sequence[str], expected: Sequence[str]) -> ValueError:
    return ValueError(
        f"{display_path(path)} holds the columns {', '.join(found) or '(none)'}, but this run writes "
        f"{', '.join(expected)} (another kind of job, or another logits setting): resume with the same options, or "
        "choose another output"
    )


# ---------------------------------------------------------------------------------------------- writers
class OutputWriter:
    """Appends rows (dicts of :data:`COLUMN_KINDS` columns) to an output in complete chunks.

    Open one with :func:`open_output`. ``done_count`` and :meth:`done_keys` describe the rows already there
    when resuming (as they were when it was opened); :meth:`write` commits rows; :meth:`finish` completes the
    output; :meth:`interrupt` commits what is buffered and leaves the output resumable.
    """

    format = ""

    def __init__(
        self,
        target: Path,
        columns: Sequence[str],
        *,
        resume: bool,
        overwrite: bool,
        chunk_rows: int = 4096,
        chunk_seconds: float = 60.0,
    ) -> None:
        self.target = target
        self.columns = list(columns)
        self.resume, self.overwrite = resume, overwrite
        self.chunk_rows, self.chunk_seconds = max(1, chunk_rows), chunk_seconds
        self.done_count = 0
        self.chunks = 0  # committed by this run
        self.lock: OutputLock | None = None  # open_output's, released when the run ends
        remove_temporaries(target.parent, target.name)  # of the finished Parquet file a killed run was writing

    def done_keys(self) -> Iterator[str]:
        """The ``image`` column of the rows the output held when opened, in order."""
        return iter(())

    def write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Commit buffered rows, keep the output resumable (nothing is renamed or merged)."""

    def release(self) -> None:
        """Release the output's lock (:class:`~swiftformer.io.files.OutputLock`): another run may open it."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _committed(self) -> None:
        self.chunks += 1
        crash_point(f"chunk:{self.chunks}")  # testing aid (io.files.crash_point)


class _LineWriter(OutputWriter):
    """JSON lines and CSV: appended in place (or to ``.NAME.overwrite``, renamed over the output at the end)."""

    def __init__(self, target: Path, columns: Sequence[str], **options: Any) -> None:
        super().__init__(target, columns, **options)
        self.work = hidden_path(target, "overwrite") if self.overwrite else target
        if self.work.exists() and not self.work.is_file():
            raise ValueError(f"output {display_path(self.work)} is not a file")
        self.work.parent.mkdir(parents=True, exist_ok=True)
        self.size = 0  # bytes of complete rows when opened
        if self.work.exists():
            # The whole file is checked before anything in it changes: only a file of ours is cut or replaced.
            size, count = self._verify()
            if self.overwrite and not self.resume:
                self.work.unlink()  # an earlier, interrupted replacement: ours, started over
            else:
                if os.path.getsize(self.work) != size:
                    with open(self.work, "r+b") as handle:
                        handle.truncate(size)  # a torn last row: written again
                self.size, self.done_count = size, count
        self.handle = open(self.work, "ab")  # noqa: SIM115 - closed in finish / interrupt
        if self.size == 0:
            self.handle.truncate(0)
            self._start()

    def _verify(self) -> tuple[int, int]:
        """Read the whole file, changing nothing: (size of its whole rows, their number). Raises ValueError
        unless it is an output of this kind with these columns whose only flaw may be a torn last row."""
        raise NotImplementedError

    def _start(self) -> None:
        """Write what starts an empty file (CSV: the header)."""

    def _encode(self, rows: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.handle.write(self._encode(rows))
        self.handle.flush()
        self._committed()

    def interrupt(self) -> None:
        try:
            self.handle.close()  # raises what the disk refused (full): the lock goes all the same
        finally:
            self.release()

    def finish(self) -> None:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            if self.work != self.target:
                replace_path(self.work, self.target)
        finally:
            self.release()

    def _read_range(self) -> Iterator[bytes]:
        """The lines of the work file up to ``self.size`` (what it held when opened), with their ends."""
        remaining = self.size
        with open(self.work, "rb") as handle:
            while remaining > 0:
                line = handle.readline(remaining)
                if not line:
                    return
                remaining -= len(line)
                yield line


def _tail_start(path: Path) -> int:
    """The size of ``path`` up to and including its last line break (0 without any)."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            step = min(1 << 16, position)
            position -= step
            handle.seek(position)
            block = handle.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                return position + cut + 1
    return 0


# The last whole-file check of a line output: (path, inode, size, mtime, columns) -> its result, so that the
# check_output of the command line and the open_output of the run read a large output once.
_VERIFIED: dict[tuple[Any, ...], tuple[int, int]] = {}


def verified(path: Path, columns: Sequence[str], kind: str) -> tuple[int, int]:
    """:func:`verify_jsonl` or :func:`verify_csv` of ``path`` (``kind``), remembered while the file is unchanged."""
    info = os.stat(path)
    key = (os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns, tuple(columns), kind)
    if key not in _VERIFIED:
        result = (verify_jsonl if kind == "jsonl" else verify_csv)(path, columns)
        _VERIFIED.clear()
        _VERIFIED[key] = result
    return _VERIFIED[key]


def _damaged(path: Path, where: str, what: str) -> ValueError:
    return ValueError(
        f"{display_path(path)}, {where}: {what}; the file is damaged or was written by something else, and is "
        "left as it is: choose another output"
    )


# Characters json.dumps(ensure_ascii=False) leaves as they are that some readers take for line breaks or controls.
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u2028\u2029]")


class JsonLinesWriter(_LineWriter):
    format = "jsonl"

    def _verify(self) -> tuple[int, int]:
        return verified(self.work, self.columns, "jsonl")

    def _encode(self, rows: list[dict[str, Any]]) -> bytes:
        text = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows)
        # json escapes C0 controls; these others too, as \uXXXX: no reader that splits on them finds a torn row
        text = _JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
        return text.encode("utf-8", "backslashreplace")

    def done_keys(self) -> Iterator[str]:
        for line in self._read_range():  # checked by _verify
            yield json.loads(line)["image"]


def _csv_cell(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind.startswith("list"):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    if kind == "float":
        return repr(float(value))
    return str(value)


def _csv_value(kind: str, cell: str) -> Any:
    if cell == "":  # None was written (no string column holds an empty string: paths, labels, messages)
        return None
    if kind.startswith("list"):
        return json.loads(cell)
    if kind == "int":
        return int(cell)
    if kind == "float":
        return float(cell)
    return cell


def _allow_long_fields() -> None:
    """Embeddings and logits make long CSV cells (csv's default limit is 128 KiB per field)."""
    if csv.field_size_limit() < 1 << 30:
        csv.field_size_limit(1 << 30)


def csv_records(lines: Iterator[bytes]) -> Iterator[tuple[list[str], int, bool]]:
    """CSV records of binary ``lines`` as ``(fields, bytes consumed so far, complete)``; a record is complete
    when its last line ends with a line break and its quotes are closed (a record may span lines: a quoted
    field can hold a line break). A quote left open at the end is a torn record (``complete`` False); any other
    malformed record raises ``csv.Error``."""
    _allow_long_fields()
    consumed = 0
    last_line_complete = True

    def text_lines() -> Iterator[str]:
        nonlocal consumed, last_line_complete
        for line in lines:
            consumed += len(line)
            last_line_complete = line.endswith(b"\n")
            yield line.decode("utf-8", "surrogateescape")

    reader = csv.reader(text_lines(), strict=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "unexpected end of data" not in str(err):
                raise
            yield [], consumed, False  # a quote left open at the end: a torn record
            return
        yield fields, consumed, last_line_complete


# What makes a CSV field quoted: the delimiter, the quote, and every control character (line breaks of any
# kind, \r alone included, which csv's writer leaves unquoted with a "\n" line end, and pandas then splits on).
_CSV_QUOTE = re.compile('[,"\x00-\x1f\x7f-\x9f\u2028\u2029]')


def csv_line(fields: Sequence[str]) -> str:
    """One CSV record with its line end: a field is quoted (its quotes doubled) when it holds a comma, a quote or
    any control character, so that Python's ``csv``, pandas and this module read every field back exactly."""
    return (
        ",".join('"' + field.replace('"', '""') + '"' if _CSV_QUOTE.search(field) else field for field in fields) + "\n"
    )


class CsvWriter(_LineWriter):
    format = "csv"

    def _verify(self) -> tuple[int, int]:
        return verified(self.work, self.columns, "csv")

    def _start(self) -> None:
        self.handle.write(self._encode_records([self.columns]))
        self.handle.flush()

    @staticmethod
    def _encode_records(records: list[list[str]]) -> bytes:
        return "".join(map(csv_line, records)).encode("utf-8", "backslashreplace")

    def _encode(self, rows: list[dict[str, Any]]) -> bytes:
        kinds = [COLUMN_KINDS[c] for c in self.columns]
        return self._encode_records(
            [[_csv_cell(kind, row.get(c)) for c, kind in zip(self.columns, kinds)] for row in rows]
        )

    def done_keys(self) -> Iterator[str]:
        records = csv_records(self._read_range())
        next(records, None)  # the header
        for fields, _, _ in records:
            yield fields[0]


def verify_jsonl(path: Path, columns: Sequence[str]) -> tuple[int, int]:
    """Check a JSON lines output whole, changing nothing: (size of its whole rows, their number)."""
    size, count = 0, 0
    with open(path, "rb") as handle:
        for count, line in enumerate(iter(handle.readline, b""), 1):
            if not line.endswith(b"\n"):  # the last line, torn by a kill: what it holds so far must fit a row
                if not (line.startswith(b'{"image"') or b'{"image"'.startswith(line)):
                    raise _damaged(path, f"line {count}", "not a row of swiftformer (the last line)")
                return size, count - 1
            try:
                row = json.loads(line)
            except (ValueError, TypeError):
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("image"), str):
                if count == 1:
                    raise ValueError(
                        f"{display_path(path)} is not a JSON lines output of swiftformer (its first line is "
                        "not a JSON object with an 'image'); it is left as it is: choose another output"
                    )
                raise _damaged(path, f"line {count}", "not a row of swiftformer (a JSON object with an 'image')")
            if list(row) != list(columns):
                raise _columns_differ(path, list(row), list(columns))
            size += len(line)
    return size, count


def verify_csv(path: Path, columns: Sequence[str]) -> tuple[int, int]:
    """Check a CSV output whole, changing nothing: (size of its whole records, their number)."""
    size = os.path.getsize(path)
    good, count, header = 0, 0, None
    with open(path, "rb") as handle:
        records = csv_records(iter(handle.readline, b""))
        while True:
            try:
                item = next(records, None)
            except csv.Error:  # e.g. a line break in an unquoted field, where no row of ours has one
                raise _damaged(path, f"row {count + 1}", "not CSV as swiftformer writes it") from None
            if item is None:
                break
            fields, consumed, complete = item
            if not complete:  # only the last record can be: a torn header or row, cut off
                if header is None and not _torn_header(path, columns, size):
                    raise _columns_differ(path, fields or ["(an unfinished first line)"], list(columns))
                break
            if header is None:
                if fields != list(columns):
                    raise _columns_differ(path, fields, list(columns))
                header = fields
            elif len(fields) != len(header):
                raise _damaged(path, f"row {count + 1}", f"{len(fields)} fields, not {len(header)}")
            else:
                count += 1
            good = consumed
    return good, count


def _torn_header(path: Path, columns: Sequence[str], size: int) -> bool:
    """Whether the whole file (of ``size`` bytes) is the start of this run's header line."""
    header = csv_line(list(columns)).encode()
    if size > len(header):
        return False
    with open(path, "rb") as handle:
        return header.startswith(handle.read(size))


class ParquetWriter(OutputWriter):
    format = "parquet"

    def __init__(self, target: Path, columns: Sequence[str], **options: Any) -> None:
        super().__init__(target, columns, **options)
        _arrow()  # pyarrow installed, or one clear line
        self.schema = arrow_schema(self.columns)
        self.parts = hidden_path(target, "overwrite.parts" if self.overwrite else "parts")
        if self.overwrite and not self.resume:
            _remove_parts(self.parts)
        self.base = target if (not self.overwrite and target.is_file()) else None
        merged = -1
        if self.base is not None:
            merged, rows = _parquet_base(self.base, self.columns)
            self.done_count += rows
        self.part_files: list[Path] = []
        self.next_part = merged + 1
        if self.parts.is_dir():
            self._adopt_parts(merged)
        self.buffer: list[dict[str, Any]] = []
        self.last_commit = time.monotonic()

    def _adopt_parts(self, merged: int) -> None:
        """Keep the complete part files a killed run left (in order), drop those the output already holds."""
        pa, pq = _arrow()
        remove_temporaries(self.parts)
        numbered = []
        for entry in self.parts.iterdir():
            match = _PART.match(entry.name)
            if match is None:
                continue
            number = int(match.group(1))
            if number <= merged:  # merged into the output before the kill, not yet removed
                entry.unlink(missing_ok=True)
                continue
            numbered.append((number, entry))
        for number, entry in sorted(numbered):
            try:
                meta = pq.read_metadata(entry)
                names = pq.read_schema(entry).names
            except (OSError, pa.ArrowException):
                entry.unlink(missing_ok=True)  # cannot happen with renamed parts; a torn copy from elsewhere
                continue
            if names != self.columns:
                raise _columns_differ(entry, names, self.columns)
            self.part_files.append(entry)
            self.done_count += meta.num_rows
            self.next_part = max(self.next_part, number + 1)

    def done_keys(self) -> Iterator[str]:
        _, pq = _arrow()
        for path in ([self.base] if self.base is not None else []) + list(self.part_files):
            for batch in pq.ParquetFile(path).iter_batches(columns=["image"], batch_size=65536):
                yield from batch.column(0).to_pylist()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.buffer.extend(rows)
        if len(self.buffer) >= self.chunk_rows or time.monotonic() - self.last_commit >= self.chunk_seconds:
            self._commit()

    def _commit(self) -> None:
        self.last_commit = time.monotonic()
        if not self.buffer:
            return
        pa, pq = _arrow()
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        path = self.parts / f"part-{self.next_part:06d}.parquet"
        self.parts.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            pq.write_table(table, handle)
        self.part_files.append(path)
        self.next_part += 1
        self.buffer = []
        self._committed()

    def interrupt(self) -> None:
        try:
            self._commit()
        finally:
            self.release()

    def finish(self) -> None:
        try:
            self._finish()
        finally:
            self.release()

    def _finish(self) -> None:
        self._commit()
        _, pq = _arrow()
        if self.base is not None and not self.part_files:
            shutil.rmtree(self.parts, ignore_errors=True)  # nothing new: the output is complete as it is
            return
        if self.overwrite:
            # The replaced output's unfinished parts go first: once the new output is in place, a resume after a
            # kill would take their numbers, counted in another run's numbering, for parts not yet merged.
            _drop_parts(hidden_path(self.target, "parts"))
        schema = self.schema.with_metadata({MERGED_PARTS_KEY: str(self.next_part - 1).encode()})
        with atomic_write(self.target) as handle, pq.ParquetWriter(handle, schema) as out:
            for path in ([self.base] if self.base is not None else []) + self.part_files:
                source = pq.ParquetFile(path)
                for group in range(source.num_row_groups):  # one row group in memory at a time
                    out.write_table(source.read_row_group(group).cast(self.schema))
        crash_point("merged")
        shutil.rmtree(self.parts, ignore_errors=True)


def _check_parts_folder(parts: Path) -> None:
    """Refuse a parts folder that holds anything but part files and their temporaries: not made by a run of
    swiftformer, so never removed."""
    if not (parts.exists() or parts.is_symlink()):
        return
    if parts.is_symlink() or not parts.is_dir():
        other: str | None = "a file, not a folder"
    else:
        other = next((e.name for e in parts.iterdir() if not (_PART.match(e.name) or e.name.endswith(".tmp"))), None)
    if other is not None:
        raise ValueError(
            f"{display_path(parts)} is not a folder of part files of swiftformer (it holds {display_path(other)}); "
            "it is left as it is: move it away to continue"
        )


def _drop_parts(parts: Path) -> None:
    """Delete the part files (and their temporaries) in ``parts``, then the folder if that left it empty: what a
    run did not write stays."""
    if not parts.is_dir() or parts.is_symlink():
        return
    for entry in parts.iterdir():
        if _PART.match(entry.name) or entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        parts.rmdir()


def _remove_parts(parts: Path) -> None:
    """Remove an interrupted replacement's part files (checked first: :func:`_check_parts_folder`)."""
    _check_parts_folder(parts)
    shutil.rmtree(parts, ignore_errors=True)


def _pending(target: Path) -> str | None:
    """What an interrupted run left beside ``target`` for ``resume`` to continue, described, or None."""
    parts = hidden_path(target, "parts")
    if parts.is_dir():
        count = sum(1 for entry in parts.iterdir() if _PART.match(entry.name))
        if count:
            return f"an interrupted run left {count} part file(s) in {display_path(parts)}"
    return None


def check_output(
    path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, columns: Sequence[str] | None = None
) -> str:
    """Refuse an output :func:`open_output` would refuse, before any work; returns its format.

    Without ``resume`` an existing output is refused (:func:`~swiftformer.io.files.check_target`), and so are
    the part files of an interrupted Parquet run, unless ``overwrite``. With ``resume`` the output may be
    missing (the run starts). A folder is refused whatever the flags (an output is one file). An output another
    run holds is refused. Given the run's ``columns``, what the run would read is checked whole too (the output to resume, an interrupted
    replacement to start over: a file of another kind, damaged, or with other columns is refused).

    Raises:
        FileExistsError: an output, or an interrupted run's parts, without ``resume`` or ``overwrite``.
        BlockingIOError: another run is writing the output (its lock, :class:`~swiftformer.io.files.OutputLock`).
        ValueError: an unknown extension; a folder.
    """
    OutputLock.check(path)
    kind = _check_existing(Path(path), resume=resume, overwrite=overwrite)
    if columns is not None:
        _check_contents(Path(path), kind, list(columns), resume=resume, overwrite=overwrite)
    return kind


def _check_contents(target: Path, kind: str, columns: list[str], *, resume: bool, overwrite: bool) -> None:
    """What the writer of ``target`` would read, checked whole (nothing changes)."""
    if kind == "parquet":
        if overwrite and not resume:
            _check_parts_folder(hidden_path(target, "overwrite.parts"))
        elif not overwrite and target.is_file():
            _parquet_base(target, columns)
        return
    work = hidden_path(target, "overwrite") if overwrite else target
    if work.is_file() and (resume or overwrite):
        verified(work, columns, kind)


def _parquet_base(path: Path, columns: list[str]) -> tuple[int, int]:
    """(the last part a finished Parquet output holds, -1 for none; its rows), after checking its columns."""
    pa, pq = _arrow()
    try:
        schema = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"{display_path(path)} is not a readable Parquet file ({printable(str(err))})") from None
    if schema.names != columns:
        raise _columns_differ(path, schema.names, columns)
    try:
        merged = int((schema.metadata or {}).get(MERGED_PARTS_KEY, b"-1"))
    except ValueError:
        raise ValueError(f"{display_path(path)} is not a Parquet output of swiftformer (its metadata)") from None
    return merged, rows


def _check_existing(target: Path, *, resume: bool, overwrite: bool) -> str:
    """:func:`check_output` but for the lock (held by the caller, :func:`open_output`)."""
    kind = output_format(target)
    if target.is_dir():  # an output is one file: a folder is neither resumed nor replaced, empty or not
        raise ValueError(f"output {display_path(target)} is a folder, not a {kind} file; name a file")
    _check_writable_folder(target)
    if not resume:
        check_target(target, "output", overwrite, hint=RESUME_HINT)
        pending = _pending(target)
        if pending and not overwrite:
            raise FileExistsError(
                f"output {display_path(target)} is unfinished: {pending}; continue it with resume=True, or start "
                "over with overwrite=True"
            )
    return kind


def _check_writable_folder(target: Path) -> None:
    """Refuse, before any work, an output whose folder cannot be made or written in: the nearest existing
    ancestor of ``target`` must be a folder this process may write in (the lock and the output go there)."""
    folder = target.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"output {display_path(target)}: {display_path(folder)} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"output {display_path(target)}: cannot write in the folder {display_path(folder)}")


def open_output(
    path: str | os.PathLike,
    columns: Sequence[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    chunk_rows: int = 4096,
    chunk_seconds: float = 60.0,
) -> OutputWriter:
    """The writer of ``path`` (format by extension) for rows of ``columns``, after :func:`check_output`.

    Without ``resume`` the output starts empty; with ``overwrite`` it replaces the existing one when
    complete. With ``resume`` the rows already there are kept (a torn last row cut off) and the run appends.

    The output is locked until the writer's ``finish`` or ``interrupt`` (:class:`~swiftformer.io.files.OutputLock`,
    ``.NAME.lock`` beside it): a second run on it is refused with the first one's pid and start time. A file is
    read whole and found to be an output of this kind, with these columns, before anything in it changes (a
    torn last row cut off, an interrupted replacement started over).

    Raises:
        FileExistsError: an output, or an interrupted run's parts, without ``resume`` or ``overwrite``.
        BlockingIOError: another run holds the output.
        ValueError: an unknown extension; an output to resume with other columns, or that is not one (damaged,
            or written by something else: left as it is).
    """
    kind = output_format(path)
    lock = OutputLock(path).acquire()  # before anything is read: a second run on this output is refused
    try:
        _check_existing(Path(path), resume=resume, overwrite=overwrite)
        cls = {"jsonl": JsonLinesWriter, "csv": CsvWriter, "parquet": ParquetWriter}[kind]
        writer = cls(
            Path(path), columns, resume=resume, overwrite=overwrite, chunk_rows=chunk_rows, chunk_seconds=chunk_seconds
        )
    except BaseException:
        lock.release()
        raise
    writer.lock = lock
    return writer


# ---------------------------------------------------------------------------------------------- reading
def read_output(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The rows of a finished output as dicts, whatever its format (CSV cells decoded to the columns' types:
    lists from their JSON, numbers, empty cells as None)."""
    path = Path(path)
    kind = output_format(path)
    if kind == "parquet":
        _, pq = _arrow()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    elif kind == "jsonl":
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)
    else:
        _allow_long_fields()
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for record in reader:
                yield {c: _csv_value(COLUMN_KINDS.get(c, "string"), v) for c, v in zip(header, record)}
