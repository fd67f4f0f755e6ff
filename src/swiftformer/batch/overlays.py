"""Overlay PNGs of where the model looked, written beside a batch job's predictions: ``predict --explain DIR``
(the top class of each prediction) and ``swiftformer explain`` (any classes, stages and methods), both through
:func:`~swiftformer.batch.runner.run_batch` (docs/explain.md).

The predictions come from the job's task (``predict``: the fast path by default; ``explain``: the eager model);
each heatmap is computed by :func:`swiftformer.explain.explain_with_scores` on the *eager* model, for the class
the task predicted (or the one asked for), so an overlay of the prediction shows the class and score that were
printed or written. The fast path cannot give the maps (no hooks, no backward pass: docs/explain.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import explain as ex
from ..io.files import display_path
from ..modeling import SwiftFormerForImageClassification


def _slug(text: str, limit: int = 40) -> str:
    """A label as a file-name part: ``"tabby, tabby cat"`` → ``"tabby_tabby_cat"``."""
    slug = re.sub(r"[^\w.+-]+", "_", text).strip("_.")
    return slug[:limit].rstrip("_.") or "class"


class ExplainOverlays:
    """Called by :func:`~swiftformer.batch.runner.run_batch` (``on_results``) with each group of images it
    classified: writes, for every image that has a prediction, one overlay per stage group of ``layers`` and
    class of ``targets``, ``DIR/<image name>_<method>_<stages>[_<class>-<label>].png`` (and ``.npy``, the map,
    with ``save_raw``).

    An overlay is never written over a file that existed before the run unless ``replace`` (a replacing or
    resumed run, whose earlier run may have left the overlays of images it had not committed yet), nor over one
    written in this run for another image of the same name (folders searched recursively can hold several
    ``img001.jpg``), nor ever over a file of ``protect`` (the input images). Such an image keeps its prediction,
    and ``on_problem(path, message)`` is told; :meth:`check` refuses all of these before any work, for inputs
    known in advance.

    Args:
        model: The eager classifier the heatmaps come from (fp32; left unchanged).
        processor: The job's processor (to show the image as the model saw it).
        folder: Where the overlays go (created at the first one).
        method: One of :data:`swiftformer.explain.METHODS`.
        layers: The stages to explain at, one overlay each: each a ``layer`` of
            :func:`swiftformer.explain.explain` (a stage name, several whose maps are averaged, or None: the
            method's measured default). Default: the default only.
        targets: The classes to explain, one overlay each: a class index or label name, or None: the class
            the task predicted (its label and score in the caption). Default: the prediction only.
        save_raw: Also write each map as ``.npy`` (H, W) float32 in [0, 1].
        on_written: Called with ``(path, index, label, score, files)`` for every overlay written.

    Raises:
        ValueError: an unknown method, stage or class (the message names the parameter: ``method``,
            ``layer``, ``target``).
    """

    def __init__(
        self,
        model: SwiftFormerForImageClassification,
        processor: Any,
        folder: str | os.PathLike,
        *,
        method: str = "gradcam",
        layers: Sequence[str | Sequence[str] | None] = (None,),
        targets: Sequence[int | str | None] = (None,),
        save_raw: bool = False,
        replace: bool = False,
        protect: Iterable[str | os.PathLike] = (),
        on_problem: Callable[[str, str], None] | None = None,
        on_written: Callable[[str, int, str, float, list[Path]], None] | None = None,
    ) -> None:
        if method not in ex.METHODS:
            raise ValueError(f"method must be one of {', '.join(ex.METHODS)}, got {method!r}")
        self.model, self.processor, self.folder = model, processor, Path(folder)
        self.method, self.save_raw = method, save_raw
        # Unknown stages and classes fail here, before any work; repeats give one overlay.
        self.groups = list(dict.fromkeys(tuple(ex.resolve_layers(model, layer, method)) for layer in layers))
        self.targets = list(
            dict.fromkeys(None if target is None else ex.resolve_target(model.config, target) for target in targets)
        )
        self.replace = replace
        self.protect = {os.path.realpath(path) for path in protect}  # links resolved: a link is its file
        self.on_problem, self.on_written = on_problem, on_written
        self.written: dict[str, str] = {}  # overlay (its path without suffix) -> the image it shows
        self.problems = 0

    # ------------------------------------------------------------------ names
    def base_for(self, path: str, stages: Sequence[str], target: int | None) -> Path:
        """The overlay of image ``path`` at ``stages`` for class ``target`` (None: the prediction), without its
        suffix (``.png``, ``.npy``)."""
        name = f"{Path(path).stem}_{self.method.replace('++', 'pp')}_{'+'.join(stages)}"
        if target is not None:
            name += f"_{target}-{_slug(ex.label_of(self.model.config, target))}"
        return self.folder / name

    def files_of(self, base: Path) -> list[Path]:
        """The files written for the overlay ``base``: its PNG, and with ``save_raw`` its map."""
        return [base.with_name(base.name + suffix) for suffix in ((".png", ".npy") if self.save_raw else (".png",))]

    def _refusal(self, base: Path, owner: str | None) -> tuple[str, Path] | None:
        """Why the overlay ``base`` may not be written, as ``(reason, file)``: ``"taken"`` (by the image
        ``owner``), ``"input"`` (one of ``protect``), ``"exists"`` (without ``replace``); or None."""
        if owner is not None:
            return "taken", self.files_of(base)[0]
        for file in self.files_of(base):
            if os.path.realpath(file) in self.protect:
                return "input", file
            if (file.exists() or file.is_symlink()) and not self.replace:
                return "exists", file
        return None

    def check(self, paths: Iterable[str]) -> None:
        """Refuse, before any work, what :meth:`__call__` would skip for the images ``paths``.

        Raises:
            ValueError: two images would be explained into one file, or a file is one of the input images.
            FileExistsError: a file exists (without ``replace``).
        """
        claimed: dict[str, str] = {}
        for path in paths:
            for stages in self.groups:
                for target in self.targets:
                    base = self.base_for(path, stages, target)
                    refusal = self._refusal(base, claimed.get(str(base)))
                    if refusal is None:
                        claimed[str(base)] = path
                        continue
                    reason, file = refusal
                    if reason == "taken":
                        raise ValueError(
                            f"{display_path(claimed[str(base)])} and {display_path(path)} would both be explained into {display_path(file)}; "
                            "give images of different names, or explain them into another folder"
                        )
                    if reason == "input":
                        raise ValueError(f"{display_path(file)} is one of the input images; choose another folder")
                    raise FileExistsError(
                        f"{display_path(file)} already exists; pass replace=True to replace it, or choose another "
                        "folder"
                    )

    # ------------------------------------------------------------------ writing
    def _problem(self, path: str, message: str) -> None:
        self.problems += 1
        if self.on_problem is not None:
            self.on_problem(path, message)

    def __call__(self, paths: Sequence[str], pixel_values: torch.Tensor, results: Sequence[Any]) -> None:
        """Overlays for ``paths`` (one group of equal-size images, ``pixel_values`` (B, 3, H, W)) whose task
        ``results`` are predictions (dicts with ``index``, ``label``, ``score``); error results are skipped."""
        for stages in self.groups:
            for target in self.targets:
                self._explain(paths, pixel_values, results, stages, target)

    def _explain(
        self,
        paths: Sequence[str],
        pixel_values: torch.Tensor,
        results: Sequence[Any],
        stages: tuple[str, ...],
        target: int | None,
    ) -> None:
        """The overlays of one stage group and class for the images of one group."""
        chosen: list[int] = []
        bases: dict[str, str] = {}  # this call's overlays -> their images
        for i, (path, result) in enumerate(zip(paths, results)):
            if not isinstance(result, dict):
                continue  # no prediction (unreadable image, non-finite logits): nothing to explain
            base = self.base_for(path, stages, target)
            owner = self.written.get(str(base), bases.get(str(base)))
            refusal = self._refusal(base, owner)
            if refusal is None:
                chosen.append(i)
                bases[str(base)] = path
                continue
            reason, file = refusal
            why = {
                "taken": f"is the overlay of {display_path(owner or '')} (same file name); explain it on its own",
                "input": "is one of the input images",
                "exists": "already exists; pass replace=True to replace it",
            }[reason]
            self._problem(path, f"no overlay: {display_path(file)} {why}")
        if not chosen:
            return
        explanation = ex.explain_with_scores(
            self.model,
            pixel_values[chosen],
            # the predicted class (whatever the eager top class), or the one asked for
            target=[results[i]["index"] if target is None else target for i in chosen],
            method=self.method,
            layer=list(stages),
        )
        for k, (i, base) in enumerate(zip(chosen, map(Path, bases))):
            if target is None:
                index, label, score = results[i]["index"], results[i]["label"], results[i]["score"]
            else:
                index, label, score = target, ex.label_of(self.model.config, target), explanation.scores[k]
            caption = ex.caption_for(label, index, score, self.method, stages)
            picture = ex.overlay(ex.model_view(pixel_values[i], self.processor), explanation.maps[k], caption)
            try:
                files = ex.save_overlay(base, picture, explanation.maps[k] if self.save_raw else None)
            except OSError as err:  # a full disk or a read-only folder: the prediction stands
                self._problem(paths[i], f"no overlay: cannot write {display_path(base)}.png: {err.strerror or err}")
                continue
            self.written[str(base)] = paths[i]
            if self.on_written is not None:
                self.on_written(paths[i], index, label, score, files)
