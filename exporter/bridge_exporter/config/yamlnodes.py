"""YAML loading that remembers where every key and list item came from.

Validation messages must name the line to fix, so the inventory is composed into nodes
and converted by hand: mappings become `LinedMap` (with the line of each key) and lists
`LinedList` (with the line of each item). Duplicate keys are reported, not silently
overwritten as PyYAML would.

Whatever the text, loading it is bounded (config/limits.py): the text is checked for
characters that would make line numbers lie, then one pass over the parser's events
measures nesting, value lengths and the size after alias expansion before anything is
built. Both parsers (libyaml and pure Python) give the same verdict.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import Problem
from .limits import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_SCALAR_CHARS,
    describe_character,
    printable,
    shorten,
    shown,
)


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
            return self._scalar(node)
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
            if isinstance(key_node, yaml.MappingNode | yaml.SequenceNode):
                self.problem(key_node, "a key must be a plain word, not a list or map")
                continue
            key = self._scalar(key_node)
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

    def _scalar(self, node: yaml.Node) -> Any:
        """The node's value as YAML types it; one problem (and the text as written) for a
        value that cannot be read or holds a character no text may hold."""
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            self.problem(node, _untyped_tag(node))
            return printable(node.value)
        except (ValueError, TypeError, AttributeError, OverflowError):  # e.g. 2021-13-45
            self.problem(node, _unreadable(node))
            return printable(node.value)
        if isinstance(value, str) and (bad := _NEVER_TEXT.search(value)):
            fix = "write the character itself" if bad.group() != "\x00" else "remove it"
            self.problem(
                node,
                f"the value {shown(value)} holds {describe_character(bad.group())}, which no "
                f"text may hold; {fix}",
            )
            return printable(value)
        return value

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


# NUL and lone surrogates (a "\ud800" escape) are no text anywhere: a surrogate cannot even
# be encoded as UTF-8, so it would break every page the value is shown on.
_NEVER_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_YAML_TYPE_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "timestamp": "a date",
    "bool": "true or false",
    "null": "null",
    "binary": "base64 binary data",
}


def _unreadable(node: yaml.Node) -> str:
    kind = node.tag.rpartition(":")[2]
    what = _YAML_TYPE_NAMES.get(kind, f"a {shorten(kind)} value")
    return (
        f"YAML reads {shown(node.value)} as {what}, but it is not a valid one; put it in "
        "quotes if it is text, or correct it"
    )


def _untyped_tag(node: yaml.Node) -> str:
    tag = node.tag
    if tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
        return f"{shown(node.value)} is YAML syntax, not a value; put it in quotes if it is text"
    return (
        f"the tag {shown(tag)} cannot be used here (an inventory uses plain YAML values); remove it"
    )


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
    """Parse `text`; return (data, problems). A syntax error or a file beyond the limits
    is one problem with its line."""
    problem = _unusable_text(text, path)
    if problem is not None:
        return None, [problem]
    # libyaml accepts a tab where the pure parser refuses one (after a value, inside a
    # plain value or a flow list): a file with a tab is read by the pure parser alone, so
    # that both give the same verdict.
    if _FAST_LOADER is not None and "\t" not in text:
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
        return None, [Problem(path, 0, f"YAML error: {shorten(str(exc))}; fix the file")]


# Characters the YAML reader refuses, and line breaks other than \n and \r\n: YAML counts
# a lone \r, NEL, U+2028 or U+2029 as a new line where editors (and grep -n) do not, so
# every line number after one would be wrong. A byte order mark is one only at the start.
_UNUSABLE_CHARACTER = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]"
    r"|\r(?!\n)|[\x85\u2028\u2029]"
)


def _unusable_text(text: str, path: str) -> Problem | None:
    if len(text) > MAX_FILE_BYTES:
        line = text.count("\n", 0, MAX_FILE_BYTES) + 1
        return Problem(path, line, too_big_message())
    start = 1 if text.startswith("\ufeff") else 0
    found = _UNUSABLE_CHARACTER.search(text, start)
    if found is None:
        return None
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    char = found.group()[0]
    others = len(_UNUSABLE_CHARACTER.findall(text, start)) - 1
    more = f" ({others:,} more such characters follow)" if others else ""
    if char in "\r\x85\u2028\u2029":
        message = (
            f"column {column} holds {describe_character(char)}, which YAML reads as a line "
            "break though most editors do not, so line numbers would be wrong; replace it "
            f"with a normal line end or remove it{more}"
        )
    else:
        message = (
            f"column {column} holds {describe_character(char)}, an invisible character "
            f"YAML does not allow; remove it{more}"
        )
    return Problem(path, line, message)


def too_big_message() -> str:
    return (
        f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB (it passes that size on this "
        "line); an inventory of 10,000 endpoints is about 3 MB: check that this is the "
        "right file, or split it"
    )


def _beyond_limits(text: str, path: str, loader_class: type) -> Problem | None:
    """One pass over the parser's events, building nothing: the first place where the
    nesting, a value's length or the size after alias expansion passes its limit."""
    loader = loader_class(text)
    sizes: dict[str, int] = {}  # anchor -> nodes its value stands for, aliases expanded
    open_anchors: list[str | None] = []  # of the collections being read, outermost first
    open_sizes: list[int] = []
    total = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_sizes) >= MAX_DEPTH:
                    return Problem(path, line, _too_deep_message())
                open_anchors.append(event.anchor)
                open_sizes.append(1)
                size = 1
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = open_anchors.pop(), open_sizes.pop()
                if anchor is not None:
                    sizes[anchor] = size
                if open_sizes:
                    open_sizes[-1] += size
                continue
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR_CHARS:
                    return Problem(path, line, _too_long_message(len(event.value)))
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                size = 1
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    return Problem(path, line, _self_alias_message(event.anchor))
                size = sizes.get(event.anchor, 1)  # an undefined alias: the composer says so
            else:
                continue
            if open_sizes and not isinstance(event, yaml.CollectionStartEvent):
                open_sizes[-1] += size
            total += size
            if total > MAX_NODES:
                alias = event.anchor if isinstance(event, yaml.AliasEvent) else None
                return Problem(path, line, _too_many_message(alias, size))
    finally:
        loader.dispose()
    return None


def _too_deep_message() -> str:
    return (
        f"lists and mappings are nested more than {MAX_DEPTH} deep here (an inventory needs "
        "about 6 levels); flatten the structure"
    )


def _too_long_message(length: int) -> str:
    return (
        f"a value of {length:,} characters starts here; values are limited to "
        f"{MAX_SCALAR_CHARS:,} characters: shorten it"
    )


def _self_alias_message(anchor: str) -> str:
    name = shorten(anchor, 40)
    return (
        f"alias *{name} is used inside its own anchor &{name}, which makes an endless "
        "structure; remove the alias or point it elsewhere"
    )


def _too_many_message(alias: str | None, size: int) -> str:
    limit = f"{MAX_NODES:,}"
    if alias is not None and size > 1:
        return (
            f"with alias *{shorten(alias, 40)} (which stands for {size:,} values) the file "
            f"expands to more than {limit} values: aliases nested inside aliases multiply "
            "(a 'billion laughs' file); write the values out or use fewer aliases"
        )
    return (
        f"the file passes {limit} values (keys, values, lists and mappings) here; an "
        "inventory of 10,000 endpoints has about 300,000: split it"
    )


def _load(text: str, path: str, loader_class: type) -> tuple[Any, list[Problem]]:
    problem = _beyond_limits(text, path, loader_class)
    if problem is not None:
        return None, [problem]
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
    hint = "indent and separate with spaces, not tabs" if "'\\t'" in str(what) else "fix the syntax"
    return Problem(path, line, f"YAML syntax error: {what}; {hint}")
