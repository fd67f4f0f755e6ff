"""The module paths of swiftformer 0.1 (a flat package), kept importable for one release.

``import swiftformer.hub`` / ``from swiftformer.train import Trainer`` keep working: each old path is an
alias of the module that holds its code now (the same module object, so patches and ``isinstance``
agree), or, where one old module was split, a view that forwards each name to its new home. A
``DeprecationWarning`` names the new path. Installed by ``swiftformer/__init__.py``; remove in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

# old module → the new module(s) that hold its names, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "hub": ("io.hub", "io.files", "errors"),
    "weights": ("io.checkpoints",),
    "modeling_tf": ("keras.models",),
    "export_tf": ("export.keras",),
    "train": ("training.trainer",),
    "train_config": ("training.config",),
    "data": ("training.data",),
    "evaluate": ("training.evaluate",),
    "distributed": ("training.distributed",),
    "plots": ("training.plots",),
}
PACKAGE = __name__.rpartition(".")[0]


class _Forwarding(types.ModuleType):
    """An old module split in several: every attribute comes from the first new module that has it."""

    def __init__(self, name: str, targets: list[types.ModuleType]) -> None:
        super().__init__(name, f"Moved: see {', '.join(t.__name__ for t in targets)}.")
        self._targets = targets

    def __getattr__(self, attr: str) -> Any:
        for target in self._targets:
            if hasattr(target, attr):
                return getattr(target, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted({name for target in self._targets for name in dir(target)})


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str) -> None:
        self.old = old

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        short = self.old.rpartition(".")[2]
        new = [f"{PACKAGE}.{target}" for target in MOVED[short]]
        warnings.warn(
            f"{self.old} moved to {new[0]}; the old path will be removed in swiftformer 0.3",
            DeprecationWarning,
            stacklevel=4,
        )
        modules = [importlib.import_module(name) for name in new]
        return modules[0] if len(modules) == 1 else _Forwarding(self.old, modules)

    def exec_module(self, module: types.ModuleType) -> None:  # already executed under its new name
        pass


class _LegacyFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        parent, _, short = fullname.rpartition(".")
        if parent != PACKAGE or short not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(fullname))


def install() -> None:
    if not any(isinstance(finder, _LegacyFinder) for finder in sys.meta_path):
        sys.meta_path.append(_LegacyFinder())  # last: real modules of these names always win
