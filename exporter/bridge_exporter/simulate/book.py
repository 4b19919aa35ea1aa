"""Which fault is set where, and which one applies to each endpoint.

Precedence: a fault set on the endpoint itself (with or without `subtree`) wins; else the
fault of the nearest ancestor that was set with `subtree=True`; else none. Faults do not
merge: a commune with its own `loss_ratio` fault under a district set `down` with
`subtree` keeps only its own fault. Clearing a fault makes the next one up apply again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config.model import Inventory
from ..config.values import ValueProblem
from .faults import Fault, fault_problems
from .limits import shown

log = logging.getLogger("bridge_exporter.simulate")

HEALTHY = Fault()


@dataclass(frozen=True)
class FaultEntry:
    endpoint: str  # where the fault was set
    fault: Fault
    subtree: bool
    since: float  # time.monotonic() when set; flapping counts from here
    affected: int  # endpoints it applies to when set

    def is_down(self, now: float) -> bool:
        return self.fault.is_down(now - self.since)


class FaultBook:
    """Faults by endpoint id; calls `on_change` after every change."""

    def __init__(self, inventory: Inventory, on_change: Callable[[], None] | None = None):
        self.inventory = inventory
        self.on_change = on_change
        self._set: dict[str, FaultEntry] = {}
        self._effective: dict[str, FaultEntry] = {}

    def entries(self) -> list[FaultEntry]:
        return list(self._set.values())

    def set_on(self, endpoint_id: str) -> FaultEntry | None:
        """The fault set on this very endpoint (not one inherited from an ancestor)."""
        return self._set.get(endpoint_id)

    def set(self, endpoint_id: str, fault: Fault, subtree: bool = False) -> bool:
        """Set a fault; False (and nothing logged) when the same fault is already set, so
        a repeating scenario does not restart a flapping endpoint's rhythm.

        Raises KeyError for an unknown id and ValueProblem for a value outside
        limits.LIMITS, before anything changes: a fault in the book is one the flap task
        and the servers can apply."""
        if endpoint_id not in self.inventory.endpoints:
            raise KeyError(endpoint_id)
        problems = fault_problems(fault)
        if not isinstance(subtree, bool):
            problems.append(f"subtree must be true or false, not {shown(subtree)}")
        if problems:
            raise ValueProblem("; ".join(problems))
        current = self._set.get(endpoint_id)
        if current is not None and current.fault == fault and current.subtree == subtree:
            return False
        affected = self._count_affected(endpoint_id, subtree)
        self._set[endpoint_id] = FaultEntry(
            endpoint_id, Fault(**vars(fault)), subtree, time.monotonic(), affected
        )
        scope = f"subtree, {affected} endpoints" if subtree else "this endpoint only"
        log.info("fault set on %s (%s): %s", endpoint_id, scope, fault.describe())
        self._changed()
        return True

    def clear(self, endpoint_id: str) -> bool:
        """Clear the fault set on this endpoint; False if it had none."""
        if endpoint_id not in self.inventory.endpoints:
            raise KeyError(endpoint_id)
        entry = self._set.pop(endpoint_id, None)
        if entry is None:
            return False
        log.info(
            "fault cleared on %s (%s endpoints): was %s",
            endpoint_id,
            entry.affected,
            entry.fault.describe(),
        )
        self._changed()
        return True

    def clear_all(self) -> int:
        count = len(self._set)
        if count:
            self._set.clear()
            log.info("all %d faults cleared", count)
            self._changed()
        return count

    def entry_for(self, endpoint_id: str) -> FaultEntry | None:
        """The fault that applies to this endpoint (see the module's precedence rule)."""
        return self._effective.get(endpoint_id)

    def fault_for(self, endpoint_id: str) -> Fault:
        entry = self._effective.get(endpoint_id)
        return entry.fault if entry else HEALTHY

    def is_down(self, endpoint_id: str, now: float | None = None) -> bool:
        entry = self._effective.get(endpoint_id)
        return entry is not None and entry.is_down(time.monotonic() if now is None else now)

    def flapping(self) -> list[str]:
        """Endpoints whose down state changes with time alone."""
        return [
            endpoint_id
            for endpoint_id, entry in self._effective.items()
            if entry.fault.flap_period_seconds > 0 and not entry.fault.down
        ]

    def _count_affected(self, endpoint_id: str, subtree: bool) -> int:
        if not subtree:
            return 1
        return len(self.inventory.subtree(endpoint_id))

    def _changed(self) -> None:
        self._effective = {}
        for endpoint in self.inventory.endpoints.values():
            entry = self._set.get(endpoint.id)
            if entry is None:
                for ancestor in reversed(endpoint.ancestors):
                    candidate = self._set.get(ancestor)
                    if candidate is not None and candidate.subtree:
                        entry = candidate
                        break
            if entry is not None:
                self._effective[endpoint.id] = entry
        if self.on_change is not None:
            self.on_change()
