"""Large batch jobs: classify (``predict``) or embed (``embed``) any number of images into a file.

    from swiftformer.batch import JobSpec, run_batch

    spec = JobSpec("predict", "runs/xs/best", top_k=5)
    task, processor, notes = spec.build()
    summary = run_batch(["photos/", "@more.txt"], task, processor, output="preds.parquet", resume=True)
    print(summary.line())

* :mod:`~swiftformer.batch.inputs`: files, folders (recursive), globs and ``@LIST`` files, expanded lazily;
* :mod:`~swiftformer.batch.tasks`: what is computed per batch (:class:`JobSpec`, :class:`ClassifyTask`,
  :class:`EmbedTask`, :func:`image_features`);
* :mod:`~swiftformer.batch.output_files`: JSON lines, CSV and Parquet outputs written in complete chunks, resumable;
* :mod:`~swiftformer.batch.runner`: one process, decoding in ``DataLoader`` workers, bounded memory;
* :mod:`~swiftformer.batch.ray_data`: the same job as a Ray Data pipeline (``pip install 'swiftformer[ray]'``).

See docs/batch-inference.md.
"""

from __future__ import annotations

from ..io.files import decode_name, encode_name
from .inputs import count_inputs, expand_inputs, image_key, resume_key, skip_done
from .output_files import COLUMN_KINDS, FORMATS, check_output, open_output, output_format, read_output
from .runner import Summary, default_workers, run_batch
from .tasks import ClassifyTask, EmbedTask, FusedFeatures, JobSpec, image_features

__all__ = [
    "COLUMN_KINDS",
    "FORMATS",
    "ClassifyTask",
    "EmbedTask",
    "FusedFeatures",
    "JobSpec",
    "Summary",
    "check_output",
    "count_inputs",
    "decode_name",
    "default_workers",
    "encode_name",
    "expand_inputs",
    "image_features",
    "image_key",
    "open_output",
    "output_format",
    "read_output",
    "resume_key",
    "run_batch",
    "skip_done",
]
