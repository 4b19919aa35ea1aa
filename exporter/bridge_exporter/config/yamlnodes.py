"""YAML loading that remembers where every key and list item came from.

Validation messages must name the line to fix, so the inventory is composed into nodes
and converted by hand: mappings become `LinedMap` (with the line of each key) and lists
`LinedList` (with the line of each item). Duplicate keys are reported, not silently
overwritten as PyYAML would.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import Problem


class LinedMap(dict):
    line: int
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LinedList(list):
    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


# `<<:` merge keys: the one YAML 1.1 feature that a hand-made converter must implement.
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Converter:
    """Nodes -> LinedMap / LinedList / plain values, problems collected on the way.

    An anchored node (a `<<:` template or any `*alias`) is converted once per load, so its
    problems are reported once; every further use gets a copy, never a shared object.
    """

    def __init__(self, constructor: yaml.SafeLoader, path: str):
        self.constructor = constructor
        self.path = path
        self.problems: list[Problem] = []
        self._converted: dict[int, LinedMap | LinedList] = {}  # id(node) -> its conversion
        self._bad_merges: set[int] = set()  # ids of non-mapping `<<:` sources, reported

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(self.path, _line(node), message))

    def convert(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self.constructor.construct_object(node, deep=True)
        done = self._converted.get(id(node))
        if done is not None:
            return _copy(done)
        # Stored only once complete: a node that contains itself recurses until the
        # RecursionError that load_lined_yaml reports.
        result = self._mapping(node) if isinstance(node, yaml.MappingNode) else self._list(node)
        self._converted[id(node)] = result
        return result

    def _mapping(self, node: yaml.MappingNode) -> LinedMap:
        result = LinedMap()
        result.line, result.key_lines = _line(node), {}
        merges = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.constructor.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                self.problem(key_node, "a key must be a plain word, not a list or map")
                continue
            if key in result:
                self.problem(
                    key_node,
                    f"duplicate key {key!r} (first at line {result.key_lines[key]}); keep only one",
                )
                continue
            result.key_lines[key] = _line(key_node)
            result[key] = self.convert(value_node)
        for value_node in merges:
            self._merge(result, value_node)
        return result

    def _list(self, node: yaml.SequenceNode) -> LinedList:
        items = LinedList()
        items.line, items.item_lines = _line(node), []
        for item in node.value:
            items.item_lines.append(_line(item))
            items.append(self.convert(item))
        return items

    def _merge(self, result: LinedMap, source: yaml.Node) -> None:
        """`<<: *template` or `<<: [*a, *b]`: copy keys the mapping does not set itself;
        with a list, earlier mappings win (YAML merge key type)."""
        sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
        for node in sources:
            merged = self.convert(node)
            if not isinstance(merged, LinedMap):
                if id(node) not in self._bad_merges:
                    self._bad_merges.add(id(node))
                    self.problem(node, "`<<:` must be given a mapping or a list of mappings")
                continue
            if merged is self._converted.get(id(node)):
                merged = _copy(merged)  # its first use: the cached original stays pristine
            for key, value in merged.items():
                if key not in result:
                    result.key_lines[key] = merged.line_of(key)
                    result[key] = value


def _copy(value: Any) -> Any:
    """A deep copy of converted data, lines included (scalars are immutable)."""
    if isinstance(value, LinedMap):
        copied = LinedMap((key, _copy(item)) for key, item in value.items())
        copied.line, copied.key_lines = value.line, dict(value.key_lines)
        return copied
    if isinstance(value, LinedList):
        items = LinedList(_copy(item) for item in value)
        items.line, items.item_lines = value.line, list(value.item_lines)
        return items
    return value


# libyaml is some 20 times faster (a 10,000-endpoint inventory loads in about a second
# instead of tens); the pure-Python parser words syntax errors better, so a file that
# libyaml rejects is parsed again by it for the message.
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def load_lined_yaml(text: str, path: str) -> tuple[Any, list[Problem]]:
    """Parse `text`; return (data, problems). A syntax error is one problem with its line."""
    if _FAST_LOADER is not None:
        try:
            return _load(text, path, _FAST_LOADER)
        except (yaml.YAMLError, RecursionError):
            pass
    try:
        return _load(text, path, yaml.SafeLoader)
    except RecursionError:
        message = (
            "an alias refers to itself (e.g. `x: &a [*a]`) or the nesting is too deep; "
            "remove the self-reference"
        )
        return None, [Problem(path, 0, message)]
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, path)]
    except yaml.YAMLError as exc:
        return None, [Problem(path, 0, f"YAML error: {exc}")]


def _load(text: str, path: str, loader_class: type) -> tuple[Any, list[Problem]]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        converter = _Converter(loader, path)
        data = converter.convert(node) if node is not None else None
    finally:
        loader.dispose()
    return data, converter.problems


def _syntax_problem(exc: yaml.MarkedYAMLError, path: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark and "end of stream" in str(exc.problem):
        mark = exc.context_mark  # an unclosed quote or bracket: where it was opened
    line = mark.line + 1 if mark else 0
    what = exc.problem or exc.context
    if exc.context and exc.problem and exc.context_mark:
        # e.g. an unclosed quote: the problem shows at the end, the fix is where it began
        what += f" ({exc.context} at line {exc.context_mark.line + 1})"
    hint = "indent with spaces, not tabs" if "'\\t'" in str(what) else "fix the syntax"
    return Problem(path, line, f"YAML syntax error: {what}; {hint}")
