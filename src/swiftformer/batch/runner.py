"""A batch job in one process: inputs streamed through ``DataLoader`` workers, rows written as they come.

The input paths are produced lazily (:func:`~swiftformer.batch.inputs.expand_inputs`, minus what the output
already holds) and handed out a batch at a time by the ``DataLoader``'s batch sampler, so at most
``workers × prefetch`` batches of decoded images exist at once, whatever the number of images. Worker
processes decode and preprocess; the main process runs the model on each batch (images of equal preprocessed
size stacked together) and writes the batch's rows (:mod:`swiftformer.batch.output_files`) in input order.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from ..hardware import process_cores
from ..image_processing import load_image
from ..io.files import display_path
from .inputs import check_inputs, count_inputs, expand_inputs, image_key, skip_done
from .output_files import OutputWriter, open_output

# Fewer inputs than this (and no ``workers``): decode in the main process; starting workers costs more.
SMALL_JOB = 32
DEFAULT_PREFETCH = 2


def default_workers() -> int:
    """Decoding processes by default: as many as the cores this process may run on (its affinity mask,
    :func:`swiftformer.hardware.process_cores`), at most 8. They share the cores with the model's threads: a
    worker whose prefetched batches wait to be taken sleeps, so on small images the model keeps the cores, and on
    photos, where decoding is most of the work, every core decodes (docs/performance.md, "End to end")."""
    return max(1, min(8, process_cores()))


@dataclass
class Summary:
    """What a run did: rows written (``images``; ``errors`` of them with an error), inputs skipped because the
    output already held them, wall time."""

    images: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    output: str | None = None
    interrupted: bool = False
    fast_decode: bool | None = None  # which decode ran (load_image's draft): said in the line; None: not told

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """``"1000 images (3 errors, 200 already in the output) in 12.5 s, 80.0 img/s, fast JPEG decode ->
        preds.parquet"``."""
        errors = f"{self.errors} error{'s' if self.errors != 1 else ''}"
        skipped = f", {self.skipped} already in the output" if self.skipped else ""
        decode = "" if self.fast_decode is None else (", fast JPEG decode" if self.fast_decode else ", exact decode")
        where = f" -> {display_path(self.output)}" if self.output else ""
        return (
            f"{self.images} images ({errors}{skipped}) in {self.seconds:.1f} s, "
            f"{self.images_per_second:.1f} img/s{decode}{where}"
        )


class DecodeImages(Dataset):
    """A map-style dataset whose indices are file paths: ``dataset[path]`` is ``(path, pixel_values (3, H, W)
    or None, error message or None)``. Any failure is the image's error, never the run's.

    ``fast_decode``: JPEGs are decoded at the reduced scale the processor's resize needs (``load_image(path,
    draft=processor)``; several times faster for camera photos, top-1 the same within the bound measured in
    docs/performance.md, "End to end"); False: every pixel, bit-identical to transformers."""

    def __init__(self, processor: Any, fast_decode: bool = True) -> None:
        self.processor = processor
        self.fast_decode = fast_decode

    def __getitem__(self, path: str) -> tuple[str, torch.Tensor | None, str | None]:
        try:
            image = load_image(path, draft=self.processor if self.fast_decode else None)
            pixels = self.processor(image, return_tensors="pt")["pixel_values"][0]
        except (OSError, ValueError) as err:
            return path, None, str(err)
        except Exception as err:  # a decoder bug on one file must not stop a million-image run
            return path, None, f"cannot read image {display_path(path)!r}: {type(err).__name__}: {err}"
        return path, pixels, None

    def __len__(self) -> int:  # pragma: no cover - indices are paths from the batch sampler
        raise TypeError("DecodeImages is indexed by path; its length is that of the input stream")


class PathBatches:
    """The ``DataLoader``'s batch sampler: lists of ``batch_size`` paths, drawn lazily from ``paths``."""

    def __init__(self, paths: Iterable[str], batch_size: int) -> None:
        self.paths, self.batch_size = paths, batch_size

    def __iter__(self) -> Iterator[list[str]]:
        iterator = iter(self.paths)
        while batch := list(itertools.islice(iterator, self.batch_size)):
            yield batch


def collate(items: list[tuple[str, torch.Tensor | None, str | None]]) -> tuple[list, list, list]:
    """(paths, errors (a message or None per image), groups): each group stacks the images of one
    preprocessed size (a shortest-edge resize keeps aspect ratios) as ``(positions, pixel_values)``."""
    paths = [path for path, _, _ in items]
    errors = [error for _, _, error in items]
    by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for position, (_, pixels, _) in enumerate(items):
        if pixels is not None:
            by_shape.setdefault(tuple(pixels.shape), []).append((position, pixels))
    groups = [([p for p, _ in group], torch.stack([x for _, x in group])) for group in by_shape.values()]
    return paths, errors, groups


def make_row(columns: Sequence[str], path: str, result: dict[str, Any] | str) -> dict[str, Any]:
    """One output row: ``image``, the task's columns (None for an error), ``error`` (None for a result)."""
    row = dict.fromkeys(columns)
    row["image"] = image_key(path)
    if isinstance(result, str):
        row["error"] = result
    else:
        row.update(result)
    return row


def progress_bar(enabled: bool | None, inputs: Sequence[str], initial: int) -> Any:
    """A tqdm bar on stderr (a terminal only, when ``enabled`` is None; images/s and ETA), or None. Its
    total is counted in a background thread, so a huge folder does not delay the start."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm import tqdm  # optional: pip install swiftformer[batch]
    except ImportError:
        return None
    bar = tqdm(total=None, initial=initial, unit="img", file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def count() -> None:
        try:
            bar.total = count_inputs(inputs)
        except Exception:  # only the ETA is lost
            return

    threading.Thread(target=count, daemon=True, name="swiftformer-count-inputs").start()
    return bar


def plan(inputs: Sequence[str], writer: OutputWriter | None, skipped: list[int]) -> Iterator[str]:
    """The paths still to do, lazily: the expanded inputs minus the rows the output holds."""
    paths = expand_inputs(inputs)
    return skip_done(paths, writer.done_keys(), skipped) if writer is not None else paths


class BatchTask(Protocol):
    """What :func:`run_batch` runs (:class:`~swiftformer.batch.tasks.ClassifyTask`, ``EmbedTask``): pixel values
    (B, 3, H, W) in, one row (a dict) or error message per image out; ``columns``: the rows' columns."""

    columns: list[str]

    def __call__(self, pixel_values: torch.Tensor) -> list[dict[str, Any] | str]: ...


def run_batch(
    inputs: Sequence[str],
    task: BatchTask,
    processor: Any,
    *,
    columns: Sequence[str] | None = None,
    output: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 16,
    workers: int | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    chunk_rows: int = 4096,
    chunk_seconds: float = 60.0,
    progress: bool | None = None,
    fast_decode: bool = True,
    on_row: Callable[[str, dict[str, Any]], None] | None = None,
    on_results: Callable[[list[str], torch.Tensor, list[Any]], None] | None = None,
) -> Summary:
    """Run ``task`` (a :class:`~swiftformer.batch.tasks.ClassifyTask` or ``EmbedTask``) over every image of
    ``inputs`` (:func:`~swiftformer.batch.inputs.expand_inputs`), writing rows to ``output`` (format by
    extension, :func:`~swiftformer.batch.output_files.open_output`) and/or passing each to ``on_row(path, row)``,
    in input order.

    Args:
        columns: The rows' columns (default ``task.columns``).
        resume: Skip the inputs ``output`` already holds and append the rest (``output`` may not exist yet).
        overwrite: Replace an existing ``output`` (atomically, when the new one is complete).
        workers: Decoding processes (0: in this process). Default: :func:`default_workers`, or 0 for fewer than
            :data:`SMALL_JOB` inputs.
        prefetch: Batches each worker prepares ahead; memory holds at most ``workers × prefetch`` batches.
        chunk_rows, chunk_seconds: Parquet: a part file every ``chunk_rows`` rows or ``chunk_seconds`` seconds
            (JSON lines and CSV commit every batch).
        progress: A tqdm bar on stderr; None: when stderr is a terminal.
        fast_decode: JPEGs decoded at the scale the resize needs (:class:`DecodeImages`); False: exactly.
        on_results: Called with each group of images the task ran on, ``(paths, pixel_values, results)``,
            before their rows are written (the overlays of ``swiftformer explain`` and ``predict --explain``:
            :class:`~swiftformer.batch.overlays.ExplainOverlays`).

    Returns:
        A :class:`Summary`; ``interrupted`` when Ctrl-C stopped the run (what was done is committed: continue
        with ``resume``).
    """
    start = time.perf_counter()
    columns = list(columns or task.columns)
    check_inputs(inputs)
    writer = None
    if output is not None:
        writer = open_output(
            output, columns, resume=resume, overwrite=overwrite, chunk_rows=chunk_rows, chunk_seconds=chunk_seconds
        )
    summary = Summary(output=None if output is None else os.fspath(output), fast_decode=fast_decode)
    skipped = [0]
    loader = decoding_loader(plan(inputs, writer, skipped), processor, batch_size, workers, prefetch, fast_decode)
    batches = iter(loader)  # starts the workers: before the progress bar's counting thread (fork and threads)
    bar = progress_bar(progress, inputs, writer.done_count if writer is not None else 0)
    try:
        for batch_paths, errors, groups in batches:
            results = run_groups(task, batch_paths, errors, groups, on_results)
            rows = [make_row(columns, path, result) for path, result in zip(batch_paths, results)]
            if writer is not None:
                writer.write(rows)
            if on_row is not None:
                for path, row in zip(batch_paths, rows):
                    on_row(path, row)
            summary.images += len(rows)
            summary.errors += sum(row["error"] is not None for row in rows)
            if bar is not None:
                bar.update(len(rows))
        if writer is not None:
            writer.finish()
    except KeyboardInterrupt:
        summary.interrupted = True
        if writer is not None:
            writer.interrupt()
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.interrupt()  # whatever is complete stays, for resume
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.skipped = skipped[0]
    summary.seconds = time.perf_counter() - start
    return summary


def decoding_loader(
    paths: Iterator[str],
    processor: Any,
    batch_size: int,
    workers: int | None,
    prefetch: int,
    fast_decode: bool = True,
) -> DataLoader:
    """A ``DataLoader`` of collated batches (:func:`collate`) of ``paths``, decoded by ``workers`` processes.
    ``workers=None`` looks at the first :data:`SMALL_JOB` paths: fewer, and they are decoded in this process."""
    if workers is None:
        first = list(itertools.islice(paths, SMALL_JOB))
        workers = 0 if len(first) < SMALL_JOB else default_workers()
        paths = itertools.chain(first, paths)
    return DataLoader(
        DecodeImages(processor, fast_decode),
        batch_sampler=PathBatches(paths, batch_size),
        num_workers=workers,
        collate_fn=collate,
        prefetch_factor=prefetch if workers > 0 else None,
    )


def run_groups(
    task: BatchTask,
    paths: list[str],
    errors: list[str | None],
    groups: list[tuple[list[int], torch.Tensor]],
    on_results: Callable[[list[str], torch.Tensor, list[Any]], None] | None = None,
) -> list[Any]:
    """Run ``task`` on each group of a collated batch (:func:`collate`); the batch's results in input order, an
    image that could not be read keeping its error message."""
    results: list[Any] = list(errors)
    for positions, pixel_values in groups:
        group_results = task(pixel_values)
        if on_results is not None:
            on_results([paths[p] for p in positions], pixel_values, group_results)
        for position, result in zip(positions, group_results):
            results[position] = result
    return results
