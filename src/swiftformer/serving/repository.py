"""The models a server serves, by name and version: the one lookup every protocol uses, and the v2 model
repository extension (index, load, unload).

A model is served as one or more numbered versions (``PATH/1/``, ``PATH/2/``: Triton's layout, or
``NAME@VERSION=PATH``); :meth:`ModelRepository.get` gives a name's latest version, or the one asked for,
or ServeError 404 naming what is wrong. Loading replaces a name's versions once the new ones are warmed
up; unloading takes a name out of the lookup at once (new requests get 404) and lets the requests already
admitted finish before its batchers stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..io.files import printable
from .errors import ServeError
from .explain import Explainer
from .metrics import ServeMetrics
from .settings import ModelSettings

logger = logging.getLogger("swiftformer.serving")

READY, LOADING, UNAVAILABLE = "READY", "LOADING", "UNAVAILABLE"
LOAD_TIMEOUT = 600.0  # seconds a loaded model may take to warm up (compiling every batch size)

# What a load request's parameters may set, and their JSON types.
LOAD_PARAMETERS: dict[str, type] = {"path": str, "precision": str, "backend": str, "compile": bool}

# Builds (does not start) every version of a model: what :meth:`ModelRepository.load` runs in a thread.
Loader = Callable[[ModelSettings], list["ServedModel"]]


@dataclass
class ServedModel:
    """One version of one model: its backend (see ``app.py``: classifier, metrics, admission, classify, ...)."""

    name: str
    version: int
    backend: Any
    settings: ModelSettings | None = None
    explainer: Explainer = field(init=False)

    def __post_init__(self) -> None:
        self.explainer = Explainer(self.backend.classifier)

    @property
    def classifier(self) -> Any:
        return self.backend.classifier

    @property
    def state(self) -> tuple[str, str]:
        """``(READY | LOADING | UNAVAILABLE, reason)`` for the repository index."""
        if self.backend.ready:
            return READY, ""
        failure = getattr(self.backend, "failure", None)
        if failure is not None:
            return UNAVAILABLE, f"warming up failed: {failure}"
        return LOADING, "warming up"


def model_versions(model: ModelSettings) -> dict[int, str]:
    """``{version: path}`` of a model: its own version, the numbered subfolders of a folder that has no
    ``config.json`` itself (Triton's layout), else version 1."""
    if model.version is not None:
        return {model.version: model.path}
    folder = Path(model.path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        numbered = {
            int(child.name): str(child) for child in folder.iterdir() if child.is_dir() and child.name.isdigit()
        }
        if numbered:
            return dict(sorted(numbered.items()))
    return {1: model.path}


class ModelRepository:
    """Served models by name and version; ``loader`` None: a fixed set (``load``/``unload`` answer 501)."""

    def __init__(
        self,
        metrics: ServeMetrics,
        *,
        default: str,
        loader: Loader | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.metrics, self.default, self._loader, self._on_close = metrics, default, loader, on_close
        self._models: dict[str, dict[int, ServedModel]] = {}
        self._known: dict[str, ModelSettings | None] = {}  # every name ever served, for the index and reloads
        self._unavailable: dict[str, str] = {}  # name -> why it is not served
        self._loading: set[str] = set()  # names whose load is under way
        self._changing: asyncio.Lock | None = None  # one load or unload at a time (created on the event loop)

    # ------------------------------------------------------------------ the lookup
    def add(self, models: list[ServedModel]) -> None:
        """Serve ``models`` (versions of one name), replacing that name's versions."""
        name = models[0].name
        self._models[name] = {served.version: served for served in models}
        self._known[name] = models[0].settings
        self._unavailable.pop(name, None)

    def get(self, name: str | None = None, version: str | None = None) -> ServedModel:
        """The model ``name`` (default: :attr:`default`) at ``version`` (default: its latest), or ServeError 404."""
        name = name or self.default
        versions = self._models.get(name)
        if versions is None:
            shown = printable(name)[:80]
            if name in self._known:
                raise ServeError(
                    404,
                    "not_found",
                    f"model '{shown}' is not loaded ({self._unavailable.get(name, 'unloaded')}); "
                    f"POST /v2/repository/models/{shown}/load loads it",
                )
            served = ", ".join(f"'{n}'" for n in self._models) or "none"
            raise ServeError(404, "not_found", f"unknown model '{shown}'; this server serves {served}")
        if version in (None, ""):
            return versions[max(versions)]
        if not (version.isascii() and version.isdigit()) or int(version) not in versions:  # "²" is a digit to str
            listed = ", ".join(map(str, sorted(versions)))
            raise ServeError(
                404, "not_found", f"model '{name}' has no version '{printable(version)[:20]}' (versions: {listed})"
            )
        return versions[int(version)]

    def versions(self, name: str) -> list[int]:
        return sorted(self._models.get(name, {}))

    def served(self) -> list[ServedModel]:
        """Every version of every model served."""
        return [served for versions in list(self._models.values()) for served in versions.values()]

    def label(self, name: str | None) -> str:
        """The ``model`` metric label of a request naming ``name``: the name when it is known, else ``""`` (a
        made-up name in a URL must not make a new series)."""
        name = name or self.default
        return name if name in self._known else ""

    @property
    def ready(self) -> bool:
        """Every model served is warmed up and taking requests (and there is one)."""
        served = self.served()
        return bool(served) and all(model.backend.ready for model in served)

    def index(self) -> list[dict[str, str]]:
        """The v2 repository index: ``{"name", "version", "state", "reason"}`` per version served, and one
        UNAVAILABLE row per name not served (unloaded, or its load failed)."""
        rows = []
        for name in [*self._known, *(self._loading - set(self._known))]:
            if name not in self._models:
                state, reason = (
                    (LOADING, "loading") if name in self._loading else (UNAVAILABLE, self._unavailable[name])
                )
                rows.append({"name": name, "version": "", "state": state, "reason": reason})
                continue
            for version, served in sorted(self._models[name].items()):
                state, reason = served.state
                rows.append({"name": name, "version": str(version), "state": state, "reason": reason})
        return rows

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for served in self.served():
            served.backend.start()

    def drain(self) -> None:
        """Refuse new requests on every model (safe in a signal handler)."""
        for served in self.served():
            drain = getattr(served.backend, "drain", None)
            if drain is not None:
                drain()

    def stop(self) -> None:
        """Answer what is queued, stop every model, then the workers."""
        for served in self.served():
            served.backend.stop()
        if self._on_close is not None:
            self._on_close()

    # ------------------------------------------------------------------ the repository extension
    def _lock(self) -> asyncio.Lock:
        if self._changing is None:
            self._changing = asyncio.Lock()
        return self._changing

    def _check_can_change(self) -> Loader:
        if self._loader is None:
            raise ServeError(
                501, "not_implemented", "this server's models are fixed (Ray Serve: one model per application)"
            )
        return self._loader

    def settings_for_load(self, name: str, parameters: dict[str, Any]) -> ModelSettings | None:
        """The settings a load request's ``parameters`` give (``path``, ``precision``, ``backend``, ``compile``;
        without ``path`` those the name was served with, changed by the others); None: nothing to load from.
        ServeError 400 naming a bad parameter."""
        unknown = sorted(set(parameters) - set(LOAD_PARAMETERS))
        if unknown:
            raise ServeError(
                400, "bad_request", f"unknown load parameters {unknown}; known: {', '.join(LOAD_PARAMETERS)}"
            )
        for key, kind in LOAD_PARAMETERS.items():
            if key in parameters and not isinstance(parameters[key], kind):
                raise ServeError(400, "bad_request", f"load parameter {key} must be a {kind.__name__}")
        known = self._known.get(name)
        try:
            if "path" in parameters:
                return ModelSettings(name=name, **parameters)
            return None if known is None else replace(known, **parameters)
        except ValueError as err:
            raise ServeError(400, "bad_request", str(err)) from None

    async def load(self, name: str, model: ModelSettings | None = None) -> list[ServedModel]:
        """Load ``model`` as ``name`` (default: the settings ``name`` was last served with), warm it up, serve
        it in place of the name's current versions (those are retired once their admitted requests are
        answered). ServeError 404 for an unknown name without a path, 400 naming why loading failed."""
        loader = self._check_can_change()
        model = model or self._known.get(name)
        if model is None:
            raise ServeError(
                404, "not_found", f"unknown model '{printable(name)[:80]}': give its folder as parameters.path"
            )
        async with self._lock():
            self._loading.add(name)
            try:
                loaded = await self._load_and_warm_up(name, loader, model)
            finally:
                self._loading.discard(name)
            previous = self._models.get(name, {})
            self.add(loaded)
        await asyncio.to_thread(lambda: [served.backend.retire() for served in previous.values()])
        logger.info("loaded model %s, versions %s, from %s", name, [s.version for s in loaded], model.path)
        return loaded

    async def _load_and_warm_up(self, name: str, loader: Loader, model: ModelSettings) -> list[ServedModel]:
        """Every version of ``model`` loaded (in a thread) and warmed up (on the model workers), or ServeError 400."""
        try:
            loaded = await asyncio.to_thread(loader, model)
        except Exception as err:  # anything that is not a model: one line, and the server goes on
            raise self._failed(name, model, str(err).splitlines()[0] if str(err) else type(err).__name__) from None
        for served in loaded:
            served.backend.start()
        warmed = await asyncio.to_thread(lambda: [s.backend.wait_ready(LOAD_TIMEOUT) for s in loaded])
        if not all(warmed):
            failure = next((s.backend.failure for s in loaded if s.backend.failure is not None), None)
            await asyncio.to_thread(lambda: [s.backend.stop() for s in loaded])
            raise self._failed(name, model, f"warming up failed: {failure}" if failure else "warm-up timed out")
        return loaded

    def _failed(self, name: str, model: ModelSettings, reason: str) -> ServeError:
        if name not in self._models:  # a failed reload keeps the versions served
            self._known.setdefault(name, None)
            self._unavailable[name] = reason
        return ServeError(400, "bad_model", f"cannot load model '{name}' from {printable(model.path)}: {reason}")

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` at once (new requests: 404), and return once its admitted requests are
        answered and its batchers stopped. ServeError 404 when it is not served."""
        self._check_can_change()
        async with self._lock():
            versions = self._models.pop(name, None)
            if versions is None:
                self.get(name)  # the 404 saying why
            self._unavailable[name] = "unloaded"
        await asyncio.to_thread(lambda: [served.backend.retire() for served in (versions or {}).values()])
        logger.info("unloaded model %s", name)
