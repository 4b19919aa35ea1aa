"""Bounds on what a config file may make the loader do, and on what it echoes back.

A config file is input: however it is written, loading it must take bounded memory and
time, and whatever it contains is shown back (in problems, logs, the landing page) only
in a bounded, printable form. The README's "Reliability" section lists these limits.
"""

from __future__ import annotations

import re
from typing import Any

# A 10,000-endpoint inventory is 2-3 MB and MAX_NODES allows about 35,000 endpoints
# (8-10 MB): 16 MiB leaves room for comments. A file that is not an inventory at all (a
# log, a disk image) is refused before it is read into memory, and the pure-Python
# parser (about 1 MB/s; used for a file libyaml rejects or one holding a tab) stays
# well under a minute.
MAX_FILE_BYTES = 16 * 1024 * 1024
# Values (YAML nodes: every key, value, list and mapping) after aliases are expanded.
# A 10,000-endpoint inventory has about 300,000; a "billion laughs" file of a few
# lines of aliases would expand to billions and exhaust memory.
MAX_NODES = 1_000_000
# Lists and mappings inside each other. An inventory needs 6 levels; a deeper nesting
# could only exhaust the parser's stack.
MAX_DEPTH = 32
# Characters in any one value or key. URLs, regular expressions and titles fit easily.
MAX_SCALAR_CHARS = 4096
# Display text (endpoint names, free label values): one line that fits a dashboard.
MAX_TEXT_CHARS = 256
# Identifiers (endpoint ids, module names, tier and label names): they go into label
# values, URLs and file names.
MAX_ID_CHARS = 128
# Delegates expected at one point: the largest halls seat a few thousand; a bigger
# number is a typo (and a number too large for a float would break /metrics).
MAX_DELEGATES = 1_000_000
# Problems listed for one file: more than this follow a pattern the first ones show, and
# listing them all would only flood the terminal, the log and the reload status.
MAX_PROBLEMS = 1000
# How much of a value a problem message repeats.
MAX_ECHO_CHARS = 80
# A problem message as a whole (most are far shorter; this bounds any echo that was not
# shortened where it was made).
MAX_MESSAGE_CHARS = 1000

# Characters that are never text: C0/C1 controls (NUL, tab, CR, LF, NEL, ESC, ...),
# the Unicode line and paragraph separators, and lone UTF-16 surrogates (which cannot
# even be encoded as UTF-8).
NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CHARACTER_NAMES = {
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a carriage return",
    "\x85": "a NEL line break",
    "\u2028": "a Unicode line separator",
    "\u2029": "a Unicode paragraph separator",
    "\x00": "a NUL character",
    "\ufeff": "a byte order mark",
    "\ufffe": "a Unicode noncharacter",
    "\uffff": "a Unicode noncharacter",
}


def describe_character(char: str) -> str:
    """`a line break (U+000A)`: what an invisible character is, for a message."""
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        what = "a lone UTF-16 surrogate"
    else:
        what = _CHARACTER_NAMES.get(char, "a control character")
    return f"{what} (U+{code:04X})"


def shorten(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text) - limit:,} more characters)"


def shown(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """A value as a problem message repeats it: repr() (so that invisible characters show
    as escapes), at most `limit` characters of it."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}…({len(value) - limit:,} more characters)"
    if isinstance(value, list | dict):
        return f"a {'list' if isinstance(value, list) else 'mapping'} of {len(value)} items"
    return shorten(repr(value), limit)


def printable(text: str) -> str:
    """`text` with every NOT_TEXT character written as an escape (\\n, \\x00, \\ud800)."""
    if not NOT_TEXT.search(text):
        return text
    return NOT_TEXT.sub(lambda m: repr(m.group())[1:-1], text)
