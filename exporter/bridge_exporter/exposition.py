"""Prometheus text exposition (format 0.0.4) for the exporter's own series, built fast.

A national network has 10,000 endpoints and some 400,000 series. prometheus_client's
generic path validates and escapes every label of every sample: 22 s per scrape for
10,000 endpoints on this machine. Here each endpoint's label set is escaped once per
inventory and reused for all its series, so rendering is string joins (see benchmarks/).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

# A lone UTF-16 surrogate cannot be encoded as UTF-8: one would fail the whole scrape.
# The inventory loader refuses them; this keeps any other source (a device's answer in
# a failure reason) from doing it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _encodable(text: str) -> str:
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def escape_label_value(value: str) -> str:
    value = _encodable(value)
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: Mapping[str, str]) -> str:
    """`a="x",b="y"`: the inside of the braces. Empty values are left out, as Prometheus
    treats an empty label as absent."""
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items() if v != "")


def join_labels(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def format_value(value: float) -> str:
    """As prometheus_client writes values: `1.0`, `0.25`, `1.7e-05`, `+Inf`, `NaN`."""
    if value - value == 0:  # finite (NaN and infinities give NaN): the common case, fast
        return repr(float(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return _encodable(text).replace("\\", "\\\\").replace("\n", "\\n")


class Family:
    """One metric family: HELP and TYPE lines, then its samples."""

    __slots__ = ("help", "kind", "lines", "name")

    def __init__(self, name: str, kind: str, help_text: str):
        self.name = name
        self.kind = kind  # gauge, counter, histogram
        self.help = help_text
        self.lines: list[str] = []

    def add(self, labels: str, value: float, suffix: str = "") -> None:
        """Add a sample; `labels` is a label_text() string (may be empty)."""
        if labels:
            self.lines.append(f"{self.name}{suffix}{{{labels}}} {format_value(value)}\n")
        else:
            self.lines.append(f"{self.name}{suffix} {format_value(value)}\n")

    def add_histogram(
        self, labels: str, buckets: Iterable[tuple[str, int]], total: float, count: int
    ) -> None:
        """`buckets` are cumulative (upper bound text, count) pairs ending with +Inf."""
        prefix = f"{labels}," if labels else ""
        for bound, cumulative in buckets:
            self.lines.append(f'{self.name}_bucket{{{prefix}le="{bound}"}} {cumulative}\n')
        self.add(labels, total, "_sum")
        self.add(labels, count, "_count")

    def header(self) -> str:
        return f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"

    def take(self) -> str:
        """The samples added so far, as text; the family is left empty for the next use."""
        text = "".join(self.lines)
        self.lines.clear()
        return text

    def render(self) -> str:
        return self.header() + "".join(self.lines)


def render(families: Iterable[Family]) -> str:
    return "".join(family.render() for family in families)
