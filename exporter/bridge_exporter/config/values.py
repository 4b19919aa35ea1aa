"""Typed values in the inventory: durations, label names, addresses, prober settings."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import types
import typing
from decimal import Decimal
from typing import Any

from ..probes.base import Seconds

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# Decimal, so that 700ms is 0.7 and not 0.7000000000000001.
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600, "d": 86400}
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class ValueProblem(ValueError):
    """A value that cannot be used; the message says what to write instead."""


def parse_duration(value: Any) -> float:
    """`250ms`, `5s`, `1m30s`, `2h` or a plain number of seconds; must be >= 0."""
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is not a duration; write e.g. 200ms, 5s or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        magnitude = text.removeprefix("-")  # so that "-1s" is reported as negative
        parts = _DURATION_PART.findall(magnitude)
        if not parts or "".join(n + u for n, u in parts) != magnitude:
            raise ValueProblem(f"{value!r} is not a duration; write e.g. 200ms, 5s, 1m30s or 2h")
        seconds = float(sum(Decimal(n) * _UNIT_SECONDS[u] for n, u in parts))
        if magnitude != text:
            seconds = -seconds
    else:
        raise ValueProblem(f"{value!r} is not a duration; write e.g. 200ms, 5s or 1m")
    if not math.isfinite(seconds):
        raise ValueProblem(f"{value!r} is not a finite duration; write e.g. 200ms, 5s or 1m")
    if seconds < 0:
        raise ValueProblem(f"{value!r} is negative; durations must be >= 0")
    return seconds


def check_address(value: Any) -> str:
    """An IPv4 or IPv6 literal or an RFC 1123 host name."""
    if not isinstance(value, str) or not value:
        raise ValueProblem("address must be an IPv4 or IPv6 address or a host name")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", value) or ":" in value:
        raise ValueProblem(f"{value!r} is not a valid IP address; fix the numbers")
    name = value.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueProblem(
            f"{value!r} is not a valid host name (letters, digits and hyphens, dot-separated)"
        )
    return value


def _convert(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = next(o for o in options if o is not type(None))
        return _convert(value, inner, name)
    if hint is Seconds:
        try:
            return Seconds(parse_duration(value))
        except ValueProblem as exc:
            raise ValueProblem(f"{name}: {exc}") from exc
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueProblem(f"{name} must be true or false, not {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueProblem(f"{name} must be a whole number, not {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueProblem(f"{name} must be a number, not {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueProblem(f"{name} must be a string, not {value!r}; quote it")
    if origin is list:
        if not isinstance(value, list):
            raise ValueProblem(f"{name} must be a list")
        (item_hint,) = typing.get_args(hint)
        return [_convert(v, item_hint, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueProblem(f"{name} must be a mapping")
        _, value_hint = typing.get_args(hint)
        return {str(k): _convert(v, value_hint, f"{name}.{k}") for k, v in value.items()}
    return value


def build_settings(settings_cls: type, raw: dict | None) -> tuple[Any, list[tuple[str, str]]]:
    """Make a prober's Settings from a YAML mapping.

    Returns (settings, problems) where each problem is (key, message); keys with problems
    keep their defaults so that every problem in the file can be reported in one pass.
    """
    raw = raw or {}
    hints = typing.get_type_hints(settings_cls)
    fields = {f.name for f in dataclasses.fields(settings_cls)}
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(
                (key, f"unknown setting {key!r}; known settings: {', '.join(sorted(fields))}")
            )
            continue
        try:
            values[key] = _convert(value, hints[key], key)
        except ValueProblem as exc:
            problems.append((key, str(exc)))
    settings = settings_cls(**values)
    check = getattr(settings, "problems", None)
    if callable(check):
        problems.extend(("", message) for message in check())
    return settings, problems


def replace_settings(settings: Any, raw: dict) -> tuple[Any, list[tuple[str, str]]]:
    """Per-endpoint override: start from a module's settings, replace the given keys."""
    base = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    return build_settings(type(settings), {**base, **raw})
