"""The child side of sandbox.py: answers requests over stdin/stdout until stdin closes.

Started as `python -I -m bridge_exporter.probes.sandbox_child MEMORY_LIMIT RETIRE_AFTER`.
Each request is a JSON header (its `kind` picks the handler, `seconds` is its budget)
and binary blobs; each answer is JSON. A MemoryError (the heap limit reached over a
hostile document) is an answer, a bug in a handler is reported as `bug` with its
traceback. A request still running CHILD_GRACE_SECONDS past its budget ends the child by
SIGALRM's default action, from the kernel: that holds even if the exporter died without
killing it (a backtracking `re` never returns to Python code that a handler could use).
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

from .sandbox import LENGTH, REQUEST_HEADER

Handler = Callable[[dict[str, Any], list[bytes]], dict[str, Any]]

CHILD_GRACE_SECONDS = 1.0

_patterns: dict[str, re.Pattern[str]] = {}


def search_regex(request: dict[str, Any], blobs: list[bytes]) -> dict[str, Any]:
    """{"pattern": str} and the text (UTF-8, surrogates passed) -> {"found": bool}."""
    pattern = request["pattern"]
    if pattern not in _patterns:
        if len(_patterns) >= 64:  # a round reuses a few patterns; a reload may change them
            _patterns.clear()
        _patterns[pattern] = re.compile(pattern)
    text = blobs[0].decode("utf-8", "surrogatepass")
    return {"found": _patterns[pattern].search(text) is not None}


def read_stats(request: dict[str, Any], blobs: list[bytes]) -> dict[str, Any]:
    """{"format", "expressions": [Expression fields], "documents": [[name, url, status,
    content_type]]} and one body per document -> {"values", "notes", "failure"}."""
    from .statsdoc.documents import Fetched
    from .statsdoc.expressions import Expression
    from .statsdoc.reading import read_documents

    expressions = tuple(
        Expression(metric, text, document, function, tuple(paths), conversion)
        for metric, text, document, function, paths, conversion in request["expressions"]
    )
    documents = [
        Fetched(name, url, status, content_type, body)
        for (name, url, status, content_type), body in zip(request["documents"], blobs, strict=True)
    ]
    reading = read_documents(documents, request["format"], expressions)
    return {"values": reading.values, "notes": reading.notes, "failure": reading.failure}


HANDLERS: dict[str, Handler] = {"regex": search_regex, "stats": read_stats}


def _read_request(stdin: BinaryIO) -> tuple[dict[str, Any], list[bytes]] | None:
    frame = stdin.read(REQUEST_HEADER.size)
    if len(frame) < REQUEST_HEADER.size:
        return None
    header_size, blob_count = REQUEST_HEADER.unpack(frame)
    request = json.loads(stdin.read(header_size))
    blobs = []
    for _ in range(blob_count):
        (size,) = LENGTH.unpack(stdin.read(LENGTH.size))
        blobs.append(stdin.read(size))
    return request, blobs


def _answer(request: dict[str, Any], blobs: list[bytes]) -> dict[str, Any]:
    try:
        return HANDLERS[request["kind"]](request, blobs)
    except MemoryError:
        return {"memory_exhausted": True, "retire": True}
    except Exception:
        return {"bug": traceback.format_exc()}


def _peak_rss_bytes() -> int:
    """This process's own peak resident memory. Not ru_maxrss: Linux carries that over an
    exec from the parent, so a child of a large exporter would look large from birth."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(memory_limit: int, retire_after: int) -> None:
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit already: keep it
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    while (received := _read_request(stdin)) is not None:
        request, blobs = received
        signal.setitimer(signal.ITIMER_REAL, max(request["seconds"], 0.0) + CHILD_GRACE_SECONDS)
        answer = _answer(request, blobs)
        if answer.get("memory_exhausted"):
            answer["memory_limit_bytes"] = memory_limit
        signal.setitimer(signal.ITIMER_REAL, 0)
        if _peak_rss_bytes() > retire_after:
            answer["retire"] = True
        data = json.dumps(answer).encode("ascii")
        stdout.write(LENGTH.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
