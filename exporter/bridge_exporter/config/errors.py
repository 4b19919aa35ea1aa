"""Config problems, reported all at once with file:line and what to do."""

from __future__ import annotations

from dataclasses import dataclass

from .limits import MAX_MESSAGE_CHARS, MAX_PROBLEMS, printable


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the problem is about the whole file
    message: str  # what is wrong and what to do

    def __post_init__(self) -> None:
        # One printable line of bounded length whatever was echoed into it: problems are
        # printed one per line, logged and shown on the landing page.
        object.__setattr__(self, "file", printable(self.file))
        object.__setattr__(self, "message", _bounded(printable(self.message)))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


def _bounded(message: str) -> str:
    """Long messages keep their start (what is wrong) and end (what to do)."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    head, tail = MAX_MESSAGE_CHARS * 2 // 3, MAX_MESSAGE_CHARS // 3
    left_out = len(message) - head - tail
    return f"{message[:head]}…({left_out:,} more characters)…{message[-tail:]}"


class ConfigError(Exception):
    """One or more problems; str() lists them one per line, at most MAX_PROBLEMS of them
    and then how many more there are."""

    def __init__(self, problems: list[Problem]):
        self.total = len(problems)  # found, listed or not
        if len(problems) > MAX_PROBLEMS:
            first_left_out = problems[MAX_PROBLEMS]
            more = len(problems) - MAX_PROBLEMS
            problems = [
                *problems[:MAX_PROBLEMS],
                Problem(
                    first_left_out.file,
                    first_left_out.line,
                    f"…and {more:,} more problems from this line on; fix the ones above and "
                    "validate again",
                ),
            ]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
