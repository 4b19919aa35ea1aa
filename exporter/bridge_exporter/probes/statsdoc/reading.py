"""From fetched documents to metric values: parse each, evaluate every expression.

Runs in a sandbox child (probes/sandbox_child.py), never on the exporter's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..base import ProbeFailed
from .documents import Fetched, parse_document
from .expressions import Expression, evaluate
from .presets import IN_CALL


@dataclass
class Reading:
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # debug lines, in order
    failure: tuple[str, str] | None = None  # (reason, detail) of a ProbeFailed


def read_documents(
    documents: list[Fetched], format_name: str, expressions: tuple[Expression, ...]
) -> Reading:
    """The values `expressions` find in `documents`, or the failure that stopped them
    (values found before a missing in-call state are kept)."""
    reading = Reading()
    try:
        parsed = {
            document.name: parse_document(document, format_name, reading.notes.append)
            for document in documents
        }
        _evaluate(expressions, parsed, reading.values, reading.notes.append)
    except ProbeFailed as exc:
        reading.failure = (exc.reason, str(exc))
    return reading


def _evaluate(
    expressions: tuple[Expression, ...],
    documents: dict[str, Any],
    values: dict[str, float],
    note: Callable[[str], None],
) -> None:
    in_call_missing = False
    for expression in expressions:
        value, detail = evaluate(expression, documents[expression.document])
        if value is None:
            note(f"{expression.metric}: not reported, {detail} ({expression.text})")
            in_call_missing = in_call_missing or expression.metric == IN_CALL
        else:
            values[expression.metric] = value
            note(f"{expression.metric} = {value:g} from {expression.text} ({detail})")
    if in_call_missing:
        raise ProbeFailed(
            f"missing_{IN_CALL}", "the in-call state was not found: figures cannot be judged"
        )
