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
from .limits import NOT_TEXT, describe_character, shorten, shown

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# Decimal, so that 700ms is 0.7 and not 0.7000000000000001.
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600, "d": 86400}
# \Z, not $: `$` also matches before a final line break, which would let "central\n" in.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_IPV6_ZONE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # fe80::1%eth0: an interface name or number


class ValueProblem(ValueError):
    """A value that cannot be used; the message says what to write instead."""


def text_problem(text: str, max_chars: int) -> str | None:
    """What is wrong with `text` as one line of display text, or None: it must not be
    blank, longer than `max_chars`, or hold control characters, line breaks or lone
    surrogates. The answer completes "<field> ...", e.g. "name is blank; ..."."""
    bad = NOT_TEXT.search(text)
    if bad:
        return (
            f"holds {describe_character(bad.group())} at character {bad.start() + 1}; "
            "write it as one line of plain text"
        )
    if not text.strip():
        return "is blank; write some text or leave the key out"
    if len(text) > max_chars:
        return f"is {len(text):,} characters long; shorten it to at most {max_chars:,}"
    return None


def parse_duration(value: Any) -> float:
    """`250ms`, `5s`, `1m30s`, `2h` or a plain number of seconds; must be >= 0."""
    if isinstance(value, bool):
        raise ValueProblem(f"{shown(value)} is not a duration; write e.g. 200ms, 5s or 1m")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e300 else math.inf  # float(10**400) raises
    elif isinstance(value, str):
        text = value.strip()
        magnitude = text.removeprefix("-")  # so that "-1s" is reported as negative
        parts = _DURATION_PART.findall(magnitude)
        if not parts or "".join(n + u for n, u in parts) != magnitude:
            raise ValueProblem(
                f"{shown(value)} is not a duration; write e.g. 200ms, 5s, 1m30s or 2h"
            )
        seconds = float(sum(Decimal(n) * _UNIT_SECONDS[u] for n, u in parts))
        if magnitude != text:
            seconds = -seconds
    else:
        raise ValueProblem(f"{shown(value)} is not a duration; write e.g. 200ms, 5s or 1m")
    if not math.isfinite(seconds):
        raise ValueProblem(f"{shown(value)} is not a finite duration; write e.g. 200ms, 5s or 1m")
    if seconds < 0:
        raise ValueProblem(f"{shown(value)} is negative; durations must be >= 0")
    return seconds


def check_address(value: Any) -> str:
    """An IPv4 or IPv6 literal or an RFC 1123 host name."""
    if not isinstance(value, str) or not value:
        raise ValueProblem("address must be an IPv4 or IPv6 address or a host name")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is not None:
        zone = getattr(address, "scope_id", None)
        if zone is not None and not _IPV6_ZONE.match(zone):
            raise ValueProblem(
                f"{shown(value)}: the zone after % must be an interface name or number "
                "(letters, digits, '.', '_', '-'), e.g. fe80::1%eth0"
            )
        return value
    if re.fullmatch(r"[\d.]+", value) or ":" in value:
        raise ValueProblem(f"{shown(value)} is not a valid IP address; fix the numbers")
    name = value.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueProblem(
            f"{shown(value)} is not a valid host name (letters, digits and hyphens, "
            "dot-separated, at most 253 characters)"
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
        raise ValueProblem(f"{name} must be true or false, not {shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueProblem(f"{name} must be a whole number, not {shown(value)}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e300:
            return float(value)
        raise ValueProblem(f"{name} must be a number, not {shown(value)}")
    if hint is str:
        if not isinstance(value, str):
            raise ValueProblem(f"{name} must be a string, not {shown(value)}; quote it")
        bad = NOT_TEXT.search(value)
        if bad:  # a line break in a URL, SIP or HTTP header would inject a line there
            raise ValueProblem(
                f"{name} holds {describe_character(bad.group())} at character "
                f"{bad.start() + 1}; write it on one line without control characters"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValueProblem(f"{name} must be a list")
        (item_hint,) = typing.get_args(hint)
        return [_convert(v, item_hint, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueProblem(f"{name} must be a mapping")
        _, value_hint = typing.get_args(hint)
        return {
            _convert(str(k), str, f"a key of {name}"): _convert(
                v, value_hint, f"{name}.{shorten(str(k), 40)}"
            )
            for k, v in value.items()
        }
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
                (key, f"unknown setting {shown(key)}; known settings: {', '.join(sorted(fields))}")
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
