"""Short row names for tables and plots: the variant plus only the overrides that tell its rows
apart. A suite's full label (``variant[k=v,...]`` with every override) runs to ~100 characters;
the full labels stay in the report's caption table."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def full_label(record: dict[str, Any]) -> str:
    return record.get("label") or record["variant"]


def _default_label(variant: str, overrides: dict[str, Any]) -> str:
    """The label a run gets without a custom one (bench.runner.RunSpec.display_label)."""
    if not overrides:
        return variant
    return f"{variant}[{','.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]"


def short_labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """Full label -> short label, for every record's label. A custom label (a suite block's
    ``label``) is kept as it is; an override shared by every row of a variant is dropped."""
    overrides_of: dict[str, dict[str, Any]] = {}
    custom: set[str] = set()
    for record in records:
        label = full_label(record)
        overrides = record.get("overrides") or {}
        overrides_of[label] = overrides
        if label != _default_label(record["variant"], overrides):
            custom.add(label)
    labels_of_variant: dict[str, list[str]] = defaultdict(list)
    for record in records:
        label = full_label(record)
        if label not in custom and label not in labels_of_variant[record["variant"]]:
            labels_of_variant[record["variant"]].append(label)
    short = {label: label for label in custom}
    for variant, labels in labels_of_variant.items():
        keys = sorted({k for label in labels for k in overrides_of[label]})
        differing = [k for k in keys
                     if len({repr(overrides_of[label].get(k)) for label in labels}) > 1]
        for label in labels:
            shown = [f"{k}={overrides_of[label][k]}" for k in differing
                     if k in overrides_of[label]]
            short[label] = f"{variant} {' '.join(shown)}" if shown else variant
    return short
