"""Typed variant configs: one dataclass per variant; the CLI's --set and suite files use it."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any

from bench.errors import GanbenchError


def _field_types(config_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class)}


def _convert(value: Any, annotation: Any, name: str) -> Any:
    """Coerce a CLI string or a suite-file value to the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, name)
            except GanbenchError as err:
                errors.append(str(err))
        raise GanbenchError(errors[0] if errors else f"bad value for {name}")
    if origin is typing.Literal:
        if value not in args:
            raise GanbenchError(f"{name} must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            items = [v for v in value.replace(" ", "").split(",") if v]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise GanbenchError(f"{name} must be a list, not {value!r}")
        item_type = args[0] if args else str
        return origin(_convert(v, item_type, name) for v in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise GanbenchError(f"{name} must be true or false, not {value!r}")
    if annotation in (int, float, str):
        if annotation is not str and isinstance(value, bool):
            raise GanbenchError(f"{name} must be a {annotation.__name__}, not {value!r}")
        try:
            converted = annotation(value)
        except (TypeError, ValueError, OverflowError):
            raise GanbenchError(
                f"{name} must be a {annotation.__name__}, not {value!r}") from None
        if annotation is float and not math.isfinite(converted):
            raise GanbenchError(f"{name} must be a finite number, not {value!r}")
        if annotation is int and isinstance(value, float) and value != converted:
            raise GanbenchError(f"{name} must be a whole number, not {value!r}")
        return converted
    return value


def build_config(config_class: type, overrides: dict[str, Any] | None = None,
                 base: dict[str, Any] | None = None) -> Any:
    """The config with base defaults (per corpus) and then user overrides, validated."""
    types_by_name = _field_types(config_class)
    values: dict[str, Any] = {}
    for source in (base or {}, overrides or {}):
        for name, value in source.items():
            if name not in types_by_name:
                raise GanbenchError(
                    f"{config_class.__name__} has no field {name!r}; fields: "
                    f"{', '.join(types_by_name)}"
                )
            values[name] = _convert(value, types_by_name[name], name)
    config = config_class(**values)
    try:
        check_bounds(config)
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
    except ValueError as err:
        raise GanbenchError(f"{config_class.__name__}: {err}") from None
    return config


def _parse_bounds(bounds: str) -> tuple[bool, float, float, bool]:
    """'[1, inf)' -> (closed below, 1.0, inf, closed above)."""
    text = bounds.replace(" ", "")
    if len(text) < 5 or text[0] not in "[(" or text[-1] not in "])" or "," not in text:
        raise ValueError(f"bounds {bounds!r}: write an interval such as [0, 1) or (0, inf)")
    low, high = text[1:-1].split(",")
    return text[0] == "[", float(low), float(high), text[-1] == "]"


def bounds_message(bounds: str) -> str:
    """What a value outside ``bounds`` is told: 'at least 1', 'positive', 'in [0, 1)'."""
    closed_low, low, high, _ = _parse_bounds(bounds)
    if math.isinf(high):
        if closed_low:
            return f"at least {low:g}"
        return "positive" if low == 0 else f"above {low:g}"
    return f"in {bounds}"


def in_bounds(value: float, bounds: str) -> bool:
    closed_low, low, high, closed_high = _parse_bounds(bounds)
    above = value >= low if closed_low else value > low
    below = value <= high if closed_high else value < high
    return above and below


def check_bounds(config: Any) -> None:
    """Every field declared with ``bounds`` holds a value inside them (each item of a list);
    raises ValueError naming the first that does not."""
    for config_field in dataclasses.fields(config):
        bounds = config_field.metadata.get("bounds")
        value = getattr(config, config_field.name)
        if bounds is None or value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(in_bounds(item, bounds) for item in items):
            raise ValueError(f"{config_field.name} must be {bounds_message(bounds)}")


def parse_assignments(assignments: list[str] | None) -> dict[str, str]:
    """['lr=0.01', 'hidden_dim=64'] -> {'lr': '0.01', 'hidden_dim': '64'}."""
    out = {}
    for item in assignments or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise GanbenchError(f"bad --set {item!r}: use field=value")
        out[name.strip()] = value.strip()
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def describe_fields(config_class: type) -> list[dict[str, str]]:
    """Name, type, default and help of every field (for `ganbench list`)."""
    rows = []
    hints = _field_types(config_class)
    defaults = config_class()
    for f in dataclasses.fields(config_class):
        annotation = hints[f.name]
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        rows.append({"name": f.name, "type": type_name,
                     "default": repr(getattr(defaults, f.name)),
                     "help": f.metadata.get("help", ""),
                     "bounds": f.metadata.get("bounds", "")})
    return rows


def field(default: Any, help: str, bounds: str | None = None,  # noqa: A002 - as argparse
          **kwargs: Any) -> Any:
    """A dataclass field with its help text and, for numbers, the interval its values must
    lie in (``bounds``, e.g. "[1, inf)", "(0, inf)", "[0, 1)"; each item of a list): one
    declaration per hyperparameter, checked by build_config."""
    metadata = {"help": help}
    if bounds is not None:
        _parse_bounds(bounds)  # a malformed interval fails where it is declared
        metadata["bounds"] = bounds
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)
