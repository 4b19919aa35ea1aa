"""What the simulator accepts: one table of field -> allowed range, and why.

The control API (`PUT /faults/ID`), scenario files and `Simulator.set_fault` all check
values here, so a value refused by one is refused by all with the same message. Every
range is finite: an unbounded delay holds answers (and their timers) for ever, and a flap
period shorter than the flap check asks for state changes the simulator cannot make (a
period of 1e-320 s once overflowed in the flap task, which died, so no endpoint flapped
any more and every later fault failed to apply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ..config.values import ValueProblem, parse_duration

# Flapping endpoints change state with time alone; this is how often that is checked.
FLAP_CHECK_SECONDS = 0.1
# The largest control API body read; a fault with every field set is a few hundred bytes.
CONTROL_BODY_MAX_BYTES = 16 * 1024

_MINUTE, _DAY = 60.0, 86400.0
_SHOWN_CHARS = 40  # of a bad value quoted in a message
_DURATION_HOW = ' (a number of seconds or text like "200ms", "5s", "1m")'

Kind = Literal["flag", "seconds", "ratio", "sip_code"]


@dataclass(frozen=True)
class Limit:
    kind: Kind
    low: float = 0.0
    high: float = 0.0
    why: str = ""
    zero_means: str = ""  # set when 0 is allowed below `low`, meaning this (e.g. "off")

    def allowed(self) -> str:
        """The allowed values in words: `from 0 to 60s`, `true or false`."""
        if self.kind == "flag":
            return "true or false"
        if self.kind == "ratio":
            return f"from {self.low:g} to {self.high:g} (or {self.low:.0%} to {self.high:.0%})"
        if self.kind == "sip_code":
            return f"a whole number from {self.low:g} to {self.high:g}"
        span = f"from {format_seconds(self.low)} to {format_seconds(self.high)}"
        return f"0 ({self.zero_means}) or {span}" if self.zero_means else span

    def parse(self, name: str, value: Any) -> Any:
        """`value` checked and converted (seconds and ratios to float); raises ValueProblem
        naming the field, the allowed range and why."""
        if self.kind == "flag":
            if isinstance(value, bool):
                return value
            raise ValueProblem(f"{name} must be {self.allowed()}, not {shown(value)}")
        if self.kind == "sip_code":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueProblem(f"{name} must be {self.allowed()}, not {shown(value)}")
            if not self.low <= value <= self.high:
                raise self._out_of_range(name, value)
            return value
        number = _seconds(value) if self.kind == "seconds" else _ratio(value)
        if number is None:
            how = _DURATION_HOW if self.kind == "seconds" else ""
            raise ValueProblem(f"{name} must be {self.allowed()}{how}, not {shown(value)}")
        if self.zero_means and number == 0:
            return 0.0
        if not self.low <= number <= self.high:  # NaN fails this too
            raise self._out_of_range(name, value)
        return number

    def _out_of_range(self, name: str, value: Any) -> ValueProblem:
        return ValueProblem(f"{name} must be {self.allowed()}, not {shown(value)}: {self.why}")


LIMITS: dict[str, Limit] = {
    # Fault fields (faults.Fault): the control API's JSON and a scenario step's `fault:`.
    "down": Limit("flag"),
    "flap_period_seconds": Limit(
        "seconds",
        2 * FLAP_CHECK_SECONDS,
        _DAY,
        why=f"flapping is checked every {format(FLAP_CHECK_SECONDS * 1000, 'g')}ms, so an up "
        "or down state shorter than two checks could be skipped; over a day it never flips "
        "in a session (use down: true)",
        zero_means="no flapping",
    ),
    "delay_seconds": Limit(
        "seconds",
        0.0,
        _MINUTE,
        why="longer than any probe timeout already reads as no answer, and every held "
        "answer keeps a timer until it is sent",
    ),
    "jitter_seconds": Limit(
        "seconds",
        0.0,
        1.0,
        why="20 times the 50ms critical jitter threshold, which is every grade there is; "
        "real jitter buffers give up long before",
    ),
    "loss_ratio": Limit("ratio", 0.0, 1.0, why="a share of packets"),
    "sip_status": Limit(
        "sip_code",
        200,
        699,
        why="it is the final answer to OPTIONS; a 1xx is provisional and would leave the "
        "prober waiting (use sip_delay_seconds or down for that)",
    ),
    "sip_delay_seconds": Limit(
        "seconds",
        0.0,
        _MINUTE,
        why="past SIP's 32s transaction timeout (Timer F) an answer is never awaited",
    ),
    "garbage": Limit("flag"),
    # Where a fault goes: the control API's JSON and a scenario step.
    "subtree": Limit("flag"),
    # Scenario timing.
    "at": Limit("seconds", 0.0, 7 * _DAY, why="a scenario covers sessions, not weeks of waiting"),
    "repeat_every": Limit(
        "seconds",
        2 * FLAP_CHECK_SECONDS,
        7 * _DAY,
        why="shorter cycles re-apply every step faster than the simulator's state checks "
        "and log a line per cycle; longer ones never repeat in a session",
    ),
}


def check(name: str, value: Any) -> Any:
    """`LIMITS[name].parse(name, value)`."""
    return LIMITS[name].parse(name, value)


def format_seconds(seconds: float) -> str:
    """`200ms`, `60s`, `1d`: as a user would write the limit in a scenario file."""
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds >= _DAY and seconds % _DAY == 0:
        return f"{seconds / _DAY:g}d"
    return f"{seconds:g}s"


def shown(value: Any) -> str:
    """A bad value as quoted in a message: short, whatever its size or type."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        # repr() of an int over 4300 digits raises, and a 100-digit number says nothing more.
        sign = "-" if value < 0 else ""
        return f"{sign}a number of about {int(value.bit_length() * math.log10(2))} digits"
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return text


def _seconds(value: Any) -> float | None:
    """Seconds from a number or a duration string (negative kept, to be reported as out
    of range); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _as_float(value)
    if not isinstance(value, str) or len(value) > _SHOWN_CHARS:
        return None
    text = value.strip()
    magnitude = text.removeprefix("-")
    try:
        seconds = parse_duration(magnitude)
    except (ValueProblem, ArithmeticError):
        return None
    return -seconds if magnitude != text else seconds


def _ratio(value: Any) -> float | None:
    """A ratio from a number or a percentage string like `"3%"`; None when neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _as_float(value)
    if not isinstance(value, str) or len(value) > _SHOWN_CHARS:
        return None
    text = value.strip()
    if not text.endswith("%"):
        return None
    try:
        return float(Decimal(text[:-1].strip()) / 100)
    except (InvalidOperation, ArithmeticError):
        return None


def _as_float(value: int | float) -> float:
    """An int too large for a float becomes ±inf (out of any range) instead of raising."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
