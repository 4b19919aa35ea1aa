"""Scenario files: faults set and cleared at given times, optionally repeating.

    description: one district link lost for three minutes, every five minutes
    repeat_every: 5m            # optional: replay the steps every 5 minutes
    steps:
      - at: 60s                 # from the start (of each cycle)
        endpoint: tb-hung-ha    # an endpoint id from the inventory
        subtree: true           # also every endpoint below it (default false)
        fault: {down: true}     # fault fields, see faults.py
      - at: 4m
        endpoint: tb-hung-ha
        clear: true             # remove the fault set on tb-hung-ha

Every problem (unknown key or endpoint id, bad duration, a value outside the ranges in
limits.py, which the control API applies too) is reported at once with file:line, as the
inventory loader does.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.errors import ConfigError
from ..config.loader import Checker, read_config_text
from ..config.model import Inventory
from ..config.values import ValueProblem
from ..config.yamlnodes import LinedList, LinedMap, load_lined_yaml
from .faults import Fault, fault_from_mapping
from .limits import check

log = logging.getLogger("bridge_exporter.simulate")

TOP_KEYS = {"description", "repeat_every", "steps"}
STEP_KEYS = {"at", "endpoint", "subtree", "fault", "clear"}


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the start of the scenario (or of each cycle)
    endpoint: str
    fault: Fault | None  # None: clear the fault set on `endpoint`
    subtree: bool = False
    line: int = 0


@dataclass(frozen=True)
class Scenario:
    source: str
    steps: tuple[Step, ...]  # sorted by time
    repeat_every: float | None = None
    description: str = ""


def load_scenario(path: str | Path, inventory: Inventory) -> Scenario:
    """Read and check a scenario file against the inventory; raises ConfigError."""
    return parse_scenario(read_config_text(path), str(path), inventory)


def parse_scenario(text: str, source: str, inventory: Inventory) -> Scenario:
    data, problems = load_lined_yaml(text, source)
    if problems:
        raise ConfigError(problems)
    checker = _Checker(source, inventory)
    scenario = checker.scenario(data)
    if checker.problems:
        raise ConfigError(checker.problems)
    assert scenario is not None
    return scenario


class _Checker(Checker):
    def __init__(self, source: str, inventory: Inventory):
        super().__init__(source)
        self.inventory = inventory

    def scenario(self, data: Any) -> Scenario | None:
        if not isinstance(data, LinedMap):
            self.add(1 if data is not None else 0, "a scenario must be a mapping with `steps:`")
            return None
        self.unknown_keys(data, TOP_KEYS, "the scenario")
        repeat_every = self.limited(data, "repeat_every")
        description = data.get("description", "")
        if not isinstance(description, str):
            self.add(data.line_of("description"), "description must be text; quote it")
            description = ""
        raw_steps = data.get("steps")
        if not isinstance(raw_steps, LinedList):
            self.add(
                data.line_of("steps") if "steps" in data else data.line,
                "`steps:` must be a list of {at, endpoint, fault | clear} items "
                "(`steps: []` for a healthy network)",
            )
            return None
        steps = []
        for index, raw in enumerate(raw_steps):
            step = self.step(raw, raw_steps.line_of(index), repeat_every)
            if step is not None:
                steps.append(step)
        steps.sort(key=lambda s: s.at)
        return Scenario(self.path, tuple(steps), repeat_every, description)

    def step(self, raw: Any, line: int, repeat_every: float | None) -> Step | None:
        if not isinstance(raw, LinedMap):
            self.add(line, "a step must be a mapping: {at: 30s, endpoint: id, fault: {...}}")
            return None
        ok = not self.unknown_keys(raw, STEP_KEYS, "a step")
        at = self.limited(raw, "at")
        if "at" not in raw:
            self.add(line, "a step needs `at:` (when, from the start: e.g. 30s or 2m)")
        if at is None:
            ok = False
        elif repeat_every is not None and at >= repeat_every:
            self.add(
                raw.line_of("at"),
                f"at {raw['at']} is not before repeat_every; a step must fall inside one cycle",
            )
            ok = False
        endpoint = self.endpoint(raw, line)
        ok = ok and endpoint is not None
        subtree = self.limited(raw, "subtree")
        if "subtree" in raw and subtree is None:
            ok = False
        fault = self.fault_or_clear(raw, line)
        if fault is False:
            ok = False
        if not ok or at is None or endpoint is None or fault is False:
            return None
        return Step(at, endpoint, fault, bool(subtree), line)

    def limited(self, data: LinedMap, key: str) -> Any:
        """`data[key]` checked against limits.LIMITS; None when absent or (reported) bad."""
        if key not in data:
            return None
        try:
            return check(key, data[key])
        except ValueProblem as exc:
            self.add(data.line_of(key), str(exc))
            return None

    def endpoint(self, raw: LinedMap, line: int) -> str | None:
        if "endpoint" not in raw:
            self.add(line, "a step needs `endpoint:` (an endpoint id from the inventory)")
            return None
        endpoint = raw["endpoint"]
        if isinstance(endpoint, str) and endpoint in self.inventory.endpoints:
            return endpoint
        close = difflib.get_close_matches(str(endpoint), list(self.inventory.endpoints), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.add(
            raw.line_of("endpoint"),
            f"unknown endpoint {endpoint!r}: not an id in {self.inventory.source}{hint}",
        )
        return None

    def fault_or_clear(self, raw: LinedMap, line: int) -> Fault | bool | None:
        """The step's Fault, None for `clear: true`, False after a problem."""
        has_fault, has_clear = "fault" in raw, "clear" in raw
        if has_fault == has_clear:
            self.add(line, "a step needs exactly one of `fault: {...}` or `clear: true`")
            return False
        if has_clear:
            if raw["clear"] is not True:
                self.add(raw.line_of("clear"), "clear must be true (leave it out otherwise)")
                return False
            if raw.get("subtree"):
                self.add(raw.line_of("subtree"), "subtree goes with fault:, not with clear:")
                return False
            return None
        fault_data = raw["fault"]
        if not isinstance(fault_data, LinedMap) or not fault_data:
            self.add(raw.line_of("fault"), "fault must be a mapping such as {down: true}")
            return False
        fault, problems = fault_from_mapping(fault_data)
        for key, message in problems:
            self.add(fault_data.line_of(key), message)
        return False if problems else fault


async def run_scenario(scenario: Scenario, apply: Callable[[Step], None]) -> None:
    """Apply each step at its time; with repeat_every, forever (until cancelled)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    cycle = 0
    while True:
        base = start + cycle * (scenario.repeat_every or 0.0)
        if cycle:
            log.info("scenario %s: cycle %d starts", scenario.source, cycle + 1)
        for step in scenario.steps:
            delay = base + step.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            apply(step)
        if scenario.repeat_every is None or not scenario.steps:
            log.info("scenario %s: all steps applied; faults stay as they are", scenario.source)
            return
        cycle += 1
        await asyncio.sleep(max(0.0, start + cycle * scenario.repeat_every - loop.time()))
