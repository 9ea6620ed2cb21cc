"""Variant registry: every module in the `baselines` package that defines ``VARIANT``, plus
third-party variants declared under the ``ganbench.variants`` entry-point group.

Discovery runs when asked, never at import time, so importing bench has no side effects.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from bench.errors import GanbenchError
from bench.variant import Variant


def discover() -> dict[str, type[Variant]]:
    import baselines

    found: dict[str, type[Variant]] = {}
    for module_info in sorted(pkgutil.iter_modules(baselines.__path__), key=lambda m: m.name):
        if module_info.ispkg or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"baselines.{module_info.name}")
        variant = getattr(module, "VARIANT", None)
        if variant is not None:
            found[variant.name] = variant
    for entry in entry_points(group="ganbench.variants"):
        variant = entry.load()
        found.setdefault(variant.name, variant)
    return found


def get_variant(name: str) -> type[Variant]:
    variants = discover()
    if name not in variants:
        raise GanbenchError(
            f"unknown variant {name!r}: registered are {', '.join(sorted(variants))}")
    return variants[name]
