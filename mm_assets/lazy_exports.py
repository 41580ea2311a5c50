"""Package exports imported on first use (PEP 562 module `__getattr__`).

Importing a stage's Dagster assets (every run worker, the code server) must not pay for torch
and transformers until a model is actually needed; the packages still export their plain
functions by name."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, names_by_module: dict[str, tuple[str, ...]]):
    where = {name: module for module, names in names_by_module.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(where)
