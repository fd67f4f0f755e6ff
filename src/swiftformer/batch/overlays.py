"""``predict --explain DIR``: beside each prediction, an overlay PNG of where the model looked for its top
class (docs/explain.md), in the same pass over the images.

The predictions come from the job's task (the fast path by default); the heatmap is computed by
:func:`swiftformer.explain.explain_with_scores` on the *eager* model, for the class the task predicted, so
the overlay shows the class and score that were printed or written. The fast path cannot give the maps
(no hooks, no backward pass: docs/explain.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import explain as ex
from ..io.files import display_path
from ..modeling import SwiftFormerForImageClassification


class ExplainOverlays:
    """Called by :func:`~swiftformer.batch.runner.run_batch` (``on_results``) with each group of images it
    classified: writes ``DIR/<image name>_<method>_<stage>.png`` for every image that has a prediction.

    An overlay is never written over a file that existed before the run unless ``replace`` (``--overwrite``,
    or ``--resume``, whose earlier run may have left the overlays of images it had not committed yet), nor
    over one written in this run for another image of the same name (folders searched recursively can hold
    several ``img001.jpg``), nor ever over a file of ``protect`` (the images named on the command line).
    Such an image keeps its prediction, and ``on_problem(path, message)`` is told.

    Args:
        model: The eager classifier the predictions come from (fp32; left unchanged).
        processor: The job's processor (to show the image as the model saw it).
        folder: Where the overlays go (created at the first one).
        method, layer: As :func:`swiftformer.explain.explain` (default Grad-CAM at its measured stage).
    """

    def __init__(
        self,
        model: SwiftFormerForImageClassification,
        processor: Any,
        folder: str | os.PathLike,
        *,
        method: str = "gradcam",
        layer: str | Sequence[str] | None = None,
        replace: bool = False,
        protect: Iterable[str | os.PathLike] = (),
        on_problem: Callable[[str, str], None] | None = None,
    ) -> None:
        if method not in ex.METHODS:
            raise ValueError(f"method must be one of {', '.join(ex.METHODS)}, got {method!r}")
        self.model, self.processor, self.folder = model, processor, Path(folder)
        self.method = method
        self.layers = ex.resolve_layers(model, layer, method)  # an unknown stage fails here, before any work
        self.replace = replace
        self.protect = {os.path.abspath(path) for path in protect}
        self.on_problem = on_problem
        self.written: dict[str, str] = {}  # overlay file -> the image it shows (strings: a path object is larger)
        self.problems = 0

    def file_for(self, path: str) -> Path:
        """The overlay file of the image ``path`` (named as ``swiftformer explain`` names it)."""
        name = f"{Path(path).stem}_{self.method.replace('++', 'pp')}_{'+'.join(self.layers)}.png"
        return self.folder / name

    def _problem(self, path: str, message: str) -> None:
        self.problems += 1
        if self.on_problem is not None:
            self.on_problem(path, message)

    def __call__(self, paths: Sequence[str], pixel_values: torch.Tensor, results: Sequence[Any]) -> None:
        """Overlays for ``paths`` (one group of equal-size images, ``pixel_values`` (B, 3, H, W)) whose task
        ``results`` are predictions (dicts with ``index``, ``label``, ``score``); error results are skipped."""
        chosen: list[int] = []
        files: list[Path] = []
        for i, (path, result) in enumerate(zip(paths, results)):
            if not isinstance(result, dict):
                continue  # no prediction (unreadable image, non-finite logits): nothing to explain
            file = self.file_for(path)
            if str(file) in self.written or file in files:
                other = self.written.get(str(file)) or paths[chosen[files.index(file)]]
                self._problem(
                    path,
                    f"no overlay: {display_path(file)} is the overlay of {display_path(other)} (same file name); "
                    "explain this image with swiftformer explain",
                )
            elif os.path.abspath(file) in self.protect:
                self._problem(path, f"no overlay: {display_path(file)} is one of the input images")
            elif (file.exists() or file.is_symlink()) and not self.replace:
                self._problem(path, f"no overlay: {display_path(file)} already exists; pass --overwrite to replace it")
            else:
                chosen.append(i)
                files.append(file)
        if not chosen:
            return
        explanation = ex.explain_with_scores(
            self.model,
            pixel_values[chosen],
            target=[results[i]["index"] for i in chosen],  # the predicted class, whatever the eager top class
            method=self.method,
            layer=self.layers,
        )
        for k, (i, file) in enumerate(zip(chosen, files)):
            result = results[i]
            caption = ex.caption_for(result["label"], result["index"], result["score"], self.method, self.layers)
            picture = ex.overlay(ex.model_view(pixel_values[i], self.processor), explanation.maps[k], caption)
            try:
                ex.save_overlay(file.with_suffix(""), picture)
            except OSError as err:  # a full disk or a read-only folder: the prediction stands
                self._problem(paths[i], f"no overlay: cannot write {display_path(file)}: {err.strerror or err}")
                continue
            self.written[str(file)] = paths[i]
