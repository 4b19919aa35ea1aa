"""The value-expression language of a `stats` mapping: parsing and evaluation.

    [document:] path | function(path) | function(path, path) [| conversion]

- path: see statsdoc.paths (JSON path or ElementTree XPath).
- function: `first` (what a bare path means), `max`, `min`, `sum`, `avg` over the matches;
  `count` and `exists` (0/1) of the matches; `ratio(a, b)` = sum(a) / sum(b);
  `loss(lost, received)` = sum(lost) / (sum(lost) + sum(received)), a loss ratio from
  packet counts.
- conversion, applied to each match before the function: `s`, `ms`, `us` (to seconds),
  `bps`, `kbps`, `mbps` (to bit/s), `percent` (to a ratio), `width` / `height` (the parts of
  "1920x1080").

Booleans count as 1/0 (also the texts true/false, on/off, yes/no). Matches that are not
finite numbers are skipped (and said in the debug output); a result past the float range
is not reported.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..base import ProbeFailed
from .paths import select

MAIN = ""  # the name of the main document (`url`)
SINGLE_PATH_FUNCTIONS = ("first", "max", "min", "sum", "avg", "count", "exists")
TWO_PATH_FUNCTIONS = ("ratio", "loss")
# Division keeps whole milliseconds exact: 18 / 1000 == 0.018 but 18 * 0.001 != 0.018.
SCALES: dict[str, Callable[[float], float]] = {
    "s": lambda v: v,
    "ms": lambda v: v / 1_000,
    "us": lambda v: v / 1_000_000,
    "bps": lambda v: v,
    "kbps": lambda v: v * 1_000,
    "mbps": lambda v: v * 1_000_000,
    "percent": lambda v: v / 100,
}
RESOLUTION_PARTS = {"width": 1, "height": 2}
CONVERSIONS = (*SCALES, *RESOLUTION_PARTS)

_DOCUMENT_PREFIX = re.compile(r"\s*([A-Za-z_]\w*)\s*:(?!:)")
_FUNCTION_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.DOTALL)
_BOOLEAN_WORDS = {"true": 1.0, "on": 1.0, "yes": 1.0, "false": 0.0, "off": 0.0, "no": 0.0}
_RESOLUTION = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)")


@dataclass(frozen=True)
class Expression:
    metric: str
    text: str
    document: str  # MAIN or a name from `documents`
    function: str
    paths: tuple[str, ...]
    conversion: str  # "" for none


def parse_expression(metric: str, text: str, documents: dict[str, str]) -> Expression:
    """The expression `text` mapped to `metric`; problems are `bad_settings`.
    `documents` are the names that a `name:` prefix may use (MAIN for the url)."""

    def bad(problem: str) -> ProbeFailed:
        return ProbeFailed("bad_settings", f"mapping {metric}: {text!r}: {problem}")

    body, *conversions = split_top_level(text, "|")
    if len(conversions) > 1:
        raise bad("at most one `|conversion`")
    conversion = conversions[0].strip() if conversions else ""
    if conversion and conversion not in CONVERSIONS:
        raise bad(f"unknown conversion {conversion!r} (known: {', '.join(CONVERSIONS)})")

    document = MAIN
    prefix = _DOCUMENT_PREFIX.match(body)
    if prefix:
        document = prefix.group(1)
        body = body[prefix.end() :]
        if document not in documents:
            named = ", ".join(name for name in documents if name) or "none"
            raise bad(f"no document named {document!r} in documents (named: {named})")
    elif MAIN not in documents:
        raise bad("no url to read it from: set url or a preset")

    call = _FUNCTION_CALL.match(body)
    if call:
        function = call.group(1)
        paths = tuple(path.strip() for path in split_top_level(call.group(2), ","))
    else:
        function, paths = "first", (body.strip(),)
    if function in SINGLE_PATH_FUNCTIONS:
        arity = 1
    elif function in TWO_PATH_FUNCTIONS:
        arity = 2
    else:
        known = ", ".join((*SINGLE_PATH_FUNCTIONS, *TWO_PATH_FUNCTIONS))
        raise bad(f"unknown function {function!r} (known: {known})")
    if len(paths) != arity or not all(paths):
        raise bad(f"{function}() takes {arity} path{'s' if arity > 1 else ''}")
    if conversion and function in ("count", "exists"):
        raise bad(f"{function}() counts matches: a conversion does not apply")
    return Expression(metric, text.strip(), document, function, paths, conversion)


def split_top_level(text: str, separator: str) -> list[str]:
    """Split at `separator` outside quotes, brackets and parentheses."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def evaluate(expression: Expression, document: Any) -> tuple[float | None, str]:
    """The metric's value in `document` (None when the document does not have it) and
    how it was found."""
    matched = [select(document, path, expression.metric) for path in expression.paths]
    if expression.function == "count":
        return float(len(matched[0])), f"{len(matched[0])} matches"
    if expression.function == "exists":
        return (1.0 if matched[0] else 0.0), f"{len(matched[0])} matches"

    is_xml = isinstance(document, ET.Element)
    series: list[list[float]] = []
    skipped = 0
    for matches in matched:
        numbers = []
        for match in matches:
            found = number(match.text if is_xml else match, expression.conversion)
            if found is None:
                skipped += 1
            else:
                numbers.append(found)
        series.append(numbers)
    detail = " + ".join(f"{len(numbers)} values" for numbers in series)
    if skipped:
        detail += f", {skipped} matches not numbers"
    for path, numbers in zip(expression.paths, series, strict=True):
        if not numbers:
            return None, f"no number at {path}" + (f" ({detail})" if skipped else "")
    try:
        value, detail = _apply(expression.function, series, detail)
    except OverflowError:  # math.fsum of values near the float limit
        return None, f"{detail}, out of the float range"
    if value is not None and not math.isfinite(value):
        return None, f"{detail}, out of the float range"
    return value, detail


def _apply(function: str, series: list[list[float]], detail: str) -> tuple[float | None, str]:
    first = series[0]
    match function:
        case "first":
            return first[0], detail
        case "max":
            return max(first), detail
        case "min":
            return min(first), detail
        case "sum":
            return math.fsum(first), detail
        case "avg":
            return math.fsum(first) / len(first), detail
        case "ratio":
            whole = math.fsum(series[1])
            if not whole:
                return None, f"{detail}, divisor is 0"
            return math.fsum(first) / whole, detail
        case _:  # loss
            lost = math.fsum(first)
            total = lost + math.fsum(series[1])
            if not total:
                return None, f"{detail}, no packets counted"
            return lost / total, detail


def number(raw: Any, conversion: str) -> float | None:
    """A JSON value or XML text as a finite number in base units, or None if it is not
    one."""
    if conversion in RESOLUTION_PARTS:
        found = _RESOLUTION.match(raw) if isinstance(raw, str) else None
        if not found:
            return None
        part = float(found.group(RESOLUTION_PARTS[conversion]))  # inf past the float range
        return part if math.isfinite(part) else None
    if isinstance(raw, bool):
        value = 1.0 if raw else 0.0
    elif isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # a JSON integer past the float range
            return None
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower() in _BOOLEAN_WORDS:
            value = _BOOLEAN_WORDS[text.lower()]
        else:
            try:
                value = float(text)
            except ValueError:
                return None
    else:
        return None
    if conversion:
        value = SCALES[conversion](value)
    return value if math.isfinite(value) else None
