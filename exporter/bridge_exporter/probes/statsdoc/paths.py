"""Paths into a parsed document: JSON paths over a JSON value, ElementTree XPath over XML.

- JSON: dotted keys with `[n]` (index, negative from the end), `[*]` (every element or
  value) and `[key='value']` (keep the list elements, or the object, whose `key` has that
  scalar value: `[mediaDirection='RX']`); an optional leading `$`. Example:
  `[mediaDirection='RX'][mediaType='VIDEO'].videoFrameRate`.
- XML: an ElementTree XPath (tags, `*`, `.//`, `[tag='text']`, `[n]`, ...) that starts at
  the root element's name, as Cisco writes `/Status/Call`; a leading `/` is optional.
  Numbers come from the element's text.

Selection is iterative, so a deeply nested document cannot exhaust the stack here.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from typing import Any

from ..base import ProbeFailed

JsonStep = tuple[str, Any, Any]

_JSON_STEP = re.compile(
    r"""(?P<dot>\.)?(?P<key>[^.\[\]]+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<star>\*)\s*\]
      | \[\s*(?P<field>[^=\[\]]+?)\s*=\s*
           (?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\]'"]*?))\s*\]""",
    re.VERBOSE,
)


def select(document: Any, path: str, metric: str) -> list[Any]:
    """What `path` matches in `document` (JSON values, or XML elements when the document
    is an element). With `format: json` or `xml` every path was checked when the settings
    were loaded (check_path); a path that does not fit the kind of document the device
    chose to send (`format: auto`) is the device's answer not fitting: `parse_error`."""
    kind = "XML" if isinstance(document, ET.Element) else "JSON"
    try:
        if kind == "XML":
            return document.findall(_xml_path(path))
        return json_select(document, json_steps(path))
    except (SyntaxError, TypeError, KeyError, ValueError) as exc:
        raise ProbeFailed(
            "parse_error",
            f"the device sent a {kind} document, but mapping {metric}'s path {path!r} is not a "
            f"{kind} path ({exc}); write the mapping for what the device sends, or set `format:`",
        ) from exc


def check_path(path: str, format_name: str) -> None:
    """Raise ValueError when `path` cannot be read as a path of that format."""
    try:
        if format_name == "xml":
            ET.Element("root").findall(_xml_path(path))
        elif format_name == "json":
            json_steps(path)
    except SyntaxError as exc:
        raise ValueError(str(exc)) from exc
    except (TypeError, KeyError) as exc:  # ElementTree's way of failing on some bad paths
        raise ValueError("ElementTree cannot read it") from exc


def _xml_path(path: str) -> str:
    if path.startswith("//"):
        return "." + path
    if path.startswith("/"):
        return path[1:]
    return path


@functools.lru_cache(maxsize=512)
def json_steps(path: str) -> tuple[JsonStep, ...]:
    """The steps of a JSON path; ValueError says where it cannot be read."""
    if path.startswith("$"):
        path = path[1:].removeprefix(".")
    position = 0
    steps: list[JsonStep] = []
    while position < len(path):
        step = _JSON_STEP.match(path, position)
        if step is None:
            raise ValueError(f"cannot read it from character {position + 1}")
        if step.group("key") is not None:
            # "a.b" and "$.a": a key after another step needs its dot, the first one not.
            if bool(step.group("dot")) != (position > 0):
                raise ValueError(f"misplaced '.' near character {position + 1}")
            steps.append(("key", step.group("key"), None))
        elif step.group("index") is not None:
            steps.append(("index", int(step.group("index")), None))
        elif step.group("star") is not None:
            steps.append(("all", None, None))
        else:
            quoted = (step.group("single"), step.group("double"), step.group("bare"))
            value = next((text for text in quoted if text is not None), "")
            steps.append(("filter", step.group("field").strip(), value))
        position = step.end()
    if not steps:
        raise ValueError("empty path")
    return tuple(steps)


def json_select(document: Any, steps: tuple[JsonStep, ...]) -> list[Any]:
    nodes = [document]
    for kind, first, second in steps:
        selected: list[Any] = []
        for node in nodes:
            if kind == "key":
                if isinstance(node, dict) and first in node:
                    selected.append(node[first])
            elif kind == "index":
                if isinstance(node, list) and -len(node) <= first < len(node):
                    selected.append(node[first])
            elif kind == "all":
                if isinstance(node, list):
                    selected.extend(node)
                elif isinstance(node, dict):
                    selected.extend(node.values())
            else:
                candidates = node if isinstance(node, list) else [node]
                selected.extend(
                    candidate
                    for candidate in candidates
                    if isinstance(candidate, dict)
                    and first in candidate
                    and _json_text(candidate[first]) == second
                )
        nodes = selected
    return [node for node in nodes if node is not None]


def _json_text(value: Any) -> str | None:
    """A scalar as a filter compares it; None for an object or a list, which no filter
    value names (and whose text could be as large and as deep as the document)."""
    if isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
