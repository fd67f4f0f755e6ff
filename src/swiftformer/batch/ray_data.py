"""A batch job as a Ray Data pipeline (``predict --ray``, ``embed --ray``): ``pip install 'swiftformer[ray]'``.

The paths still to do (the inputs minus what the output holds) become a dataset; Ray tasks decode and
preprocess them (:class:`~swiftformer.batch.runner.DecodeImages`, any number in parallel), a pool of
``replicas`` actors runs the model (``map_batches`` with a callable class, each actor building the task from
the :class:`~swiftformer.batch.tasks.JobSpec` once), and the driver streams the rows, in input order, into
the same writers as the single-process run (:mod:`swiftformer.batch.output_files`): the same rows, formats, part
files and ``resume``. Image paths must be readable by every Ray node (a shared file system); the driver
holds the list of paths to do.

Without an address (and no ``RAY_ADDRESS``) a new local Ray instance is started on loopback; its own services
still listen on all interfaces (see docs/serving.md#ray-serve).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..image_processing import load_processor
from .inputs import check_inputs, image_key
from .output_files import arrow_schema, open_output
from .runner import DecodeImages, Summary, make_row, plan, progress_bar
from .tasks import JobSpec


def _import_ray():
    try:
        import ray
        import ray.data  # ray without the data extra lacks its dependencies
    except ImportError as err:
        raise ImportError(f"batch jobs on Ray need Ray Data: pip install 'swiftformer[ray]' ({err})") from None
    return ray


def decode_batch(batch: dict[str, np.ndarray], processor: Any, fast_decode: bool = True) -> dict[str, np.ndarray]:
    """Ray task: ``{"image", "path"}`` → ``+ "pixels"`` (an object array of (3, H, W) float32 arrays; (3, 0, 0)
    for an unreadable image) and ``"error"`` ("" or the message); ``fast_decode`` as :class:`DecodeImages`."""
    decode = DecodeImages(processor, fast_decode)
    pixels, errors = [], []
    for raw in batch["path"]:
        _, tensor, error = decode[os.fsdecode(bytes(raw))]
        pixels.append(tensor.numpy() if tensor is not None else np.zeros((3, 0, 0), np.float32))
        errors.append(error or "")
    column = np.empty(len(pixels), dtype=object)
    column[:] = pixels
    return {"image": batch["image"], "pixels": column, "error": np.array(errors, dtype=object)}


class RayPredictor:
    """Ray actor: builds the task of a :class:`JobSpec` once, then turns decoded batches into rows (a
    pyarrow table of the output's columns)."""

    def __init__(self, spec: JobSpec) -> None:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.task, _, _ = spec.build()
        self.columns = spec.columns
        self.schema = arrow_schema(self.columns)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa
        import torch

        results: list[Any] = [str(error) or None for error in batch["error"]]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, pixels in enumerate(batch["pixels"]):
            if results[position] is None:
                by_shape.setdefault(tuple(pixels.shape), []).append(position)
        for positions in by_shape.values():
            stacked = torch.from_numpy(np.stack([batch["pixels"][p] for p in positions]))
            for position, result in zip(positions, self.task(stacked)):
                results[position] = result
        rows = [make_row(self.columns, str(image), result) for image, result in zip(batch["image"], results)]
        return pa.Table.from_pylist(rows, schema=self.schema)


def run_batch_ray(
    inputs: Sequence[str],
    spec: JobSpec,
    *,
    output: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 16,
    replicas: int = 1,
    address: str | None = None,
    chunk_rows: int = 4096,
    chunk_seconds: float = 60.0,
    progress: bool | None = None,
    fast_decode: bool = True,
    on_note: Callable[[str], None] | None = None,
) -> Summary:
    """:func:`~swiftformer.batch.runner.run_batch` as a Ray Data pipeline with ``replicas`` model actors, on
    the cluster at ``address`` (default: ``RAY_ADDRESS``, else a new local instance). Same rows, same output,
    same ``resume``."""
    ray = _import_ray()
    start = time.perf_counter()
    check_inputs(inputs)
    processor, note = load_processor(spec.model, **spec.hub)
    if note and on_note:
        on_note(note)
    writer = open_output(
        output, spec.columns, resume=resume, overwrite=overwrite, chunk_rows=chunk_rows, chunk_seconds=chunk_seconds
    )
    summary = Summary(output=os.fspath(output), fast_decode=fast_decode)
    skipped = [0]
    items = [{"image": image_key(path), "path": os.fsencode(path)} for path in plan(inputs, writer, skipped)]
    summary.skipped = skipped[0]
    started = False
    bar = None
    try:
        if items:
            if not ray.is_initialized():
                if address is None and not os.environ.get("RAY_ADDRESS"):
                    # loopback node address, no dashboard (Ray's own services still listen on all interfaces)
                    ray.init(
                        address="local",
                        _node_ip_address="127.0.0.1",
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                    )
                else:
                    ray.init(address=address, logging_level=logging.WARNING)
                started = True
            with warnings.catch_warnings():  # Ray's own deprecated settings, warned about on first use
                warnings.simplefilter("ignore", DeprecationWarning)
                context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # rows in input order, as without Ray
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            per_actor = min(1.0, cpus / (replicas + 1))  # room for a decoding task beside the actors
            if on_note:
                on_note(f"Ray Data: {replicas} model actor(s) with {per_actor:g} CPU each on {cpus:g} CPUs")
            dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // batch_size, 1000)))
            dataset = dataset.map_batches(
                decode_batch,
                fn_kwargs={"processor": processor, "fast_decode": fast_decode},
                batch_size=batch_size,
                batch_format="numpy",
                num_cpus=per_actor / 2,  # not the actors' share: Ray would fuse decoding into the actors
            )
            dataset = dataset.map_batches(
                RayPredictor,
                fn_constructor_kwargs={"spec": spec},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=replicas),
                num_cpus=per_actor,
            )
            bar = progress_bar(progress, inputs, writer.done_count)
            for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                rows = table.to_pylist()
                writer.write(rows)
                summary.images += len(rows)
                summary.errors += sum(row["error"] is not None for row in rows)
                if bar is not None:
                    bar.update(len(rows))
        writer.finish()
    except KeyboardInterrupt:
        summary.interrupted = True
        writer.interrupt()
    except BaseException:
        try:
            writer.interrupt()
        finally:
            raise
    finally:
        if bar is not None:
            bar.close()
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - start
    return summary
