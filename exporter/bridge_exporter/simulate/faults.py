"""Faults the simulator imposes on an endpoint (or a whole subtree).

The same field names are used in scenario files, in the control API's JSON and here.
Durations (`*_seconds`) may be written as numbers of seconds or as `200ms`, `5s`, `1m`;
`loss_ratio` as a number from 0 to 1 or as a percentage string like `"3%"`. The allowed
range of every field is in limits.py.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from ..config.values import ValueProblem
from . import limits


@dataclass
class Fault:
    down: bool = False  # nothing answers (SIP, H.323, STAMP, HTTP); connections refused/ignored
    flap_period_seconds: float = 0.0  # >0: alternate up/down every period
    delay_seconds: float = 0.0  # added one-way-ish delay before answering (STAMP, SIP)
    jitter_seconds: float = 0.0  # random extra delay, uniform in [0, 2*jitter] minus jitter
    loss_ratio: float = 0.0  # drop this share of STAMP packets / SIP UDP requests
    sip_status: int = 200  # final SIP answer code (e.g. 503)
    sip_delay_seconds: float = 0.0  # slow SIP answer
    garbage: bool = False  # answer SIP and HTTP with bytes that are not the protocol

    def is_down(self, now: float) -> bool:
        """`now` counts from when the fault was set, so a flapping endpoint starts up."""
        if self.down:
            return True
        if self.flap_period_seconds > 0:
            return int(now / self.flap_period_seconds) % 2 == 1
        return False

    def network_delay(self, rng: random.Random) -> float:
        """How long one answer is held back: the delay give or take the jitter, >= 0."""
        return max(0.0, self.delay_seconds + rng.uniform(-self.jitter_seconds, self.jitter_seconds))

    @property
    def healthy(self) -> bool:
        return self == Fault()

    def changed_fields(self) -> dict[str, Any]:
        """The fields that differ from a healthy endpoint, for JSON and logs."""
        healthy = Fault()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(healthy, f.name)
        }

    def describe(self) -> str:
        """One short human line: `down`, `delay 80ms ± 20ms, loss 3%`, `SIP 503`."""
        parts: list[str] = []
        if self.down:
            parts.append("down")
        if self.flap_period_seconds > 0:
            parts.append(f"flapping every {_short(self.flap_period_seconds)}")
        if self.delay_seconds and self.jitter_seconds:
            parts.append(f"delay {_short(self.delay_seconds)} ± {_short(self.jitter_seconds)}")
        elif self.delay_seconds:
            parts.append(f"delay {_short(self.delay_seconds)}")
        elif self.jitter_seconds:
            parts.append(f"jitter ± {_short(self.jitter_seconds)}")
        if self.loss_ratio:
            parts.append(f"loss {self.loss_ratio * 100:g}%")
        if self.sip_status != 200:
            parts.append(f"SIP {self.sip_status}")
        if self.sip_delay_seconds:
            parts.append(f"SIP answer after {_short(self.sip_delay_seconds)}")
        if self.garbage:
            parts.append("garbage answers")
        return ", ".join(parts) or "no fault"


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Fault))
assert set(FIELD_NAMES) <= set(limits.LIMITS), "every fault field needs a limit"


def parse_fault_field(name: str, value: Any) -> Any:
    """One field's value, checked against limits.LIMITS; raises ValueProblem saying what
    to write instead."""
    if name not in FIELD_NAMES:
        raise ValueProblem(
            f"unknown fault field {limits.shown(name)}; known fields: {', '.join(FIELD_NAMES)}"
        )
    return limits.check(name, value)


def fault_problems(fault: Fault) -> list[str]:
    """What is out of range in a Fault built in Python rather than parsed."""
    problems = []
    for name in FIELD_NAMES:
        try:
            limits.check(name, getattr(fault, name))
        except ValueProblem as exc:
            problems.append(str(exc))
    return problems


def fault_from_mapping(data: dict[str, Any]) -> tuple[Fault, list[tuple[str, str]]]:
    """A Fault from `{field: value}`; returns (fault, problems as (field, message)).

    Fields with problems keep their healthy default so that every problem is reported.
    """
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, value in data.items():
        try:
            values[name] = parse_fault_field(str(name), value)
        except ValueProblem as exc:
            problems.append((str(name), str(exc)))
    return Fault(**values), problems


def _short(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"
