"""Timers on a coarse clock, for the thousands a second the probe path sets.

An asyncio timer is a TimerHandle pushed on the loop's heap and popped again, each step
comparing handles in Python; a cancelled one stays on the heap until it is popped. At
10,000 endpoints the probe path sets several per probe (round starts, deadlines, the
backstop, every ICMP send), and they cost more than the packets. Here every timer due in
the same tick (TICK_SECONDS) shares one asyncio timer: setting one is a list append and
cancelling it clears one slot. A timer runs up to one tick late, which nothing on this
path minds: RTTs are measured from when a packet was actually sent, and deadlines are
seconds long.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from typing import Any

from .perloop import PerLoop

TICK_SECONDS = 0.005


class Tick:
    """One timer: `cancel()` keeps its callback from running."""

    __slots__ = ("argument", "callback")

    def __init__(self, callback: Callable[[Any], None] | None, argument: Any) -> None:
        self.callback = callback
        self.argument = argument

    def cancel(self) -> None:
        self.callback = self.argument = None


class TickTimers:
    """The coarse timers of one event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: timers_of() keeps this for as long as the loop lives, not longer.
        self._loop = weakref.ref(loop)
        self._due: dict[int, list[Tick]] = {}

    def call_at(self, when: float, callback: Callable[[Any], None], argument: Any = None) -> Tick:
        """Run `callback(argument)` at the first tick at or after loop time `when`."""
        tick = math.ceil(when / TICK_SECONDS)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = []
            self._loop().call_at(tick * TICK_SECONDS, self._run, tick)  # type: ignore[union-attr]
        timer = Tick(callback, argument)
        due.append(timer)
        return timer

    def _run(self, tick: int) -> None:
        for timer in self._due.pop(tick, ()):
            callback = timer.callback
            if callback is not None:
                timer.callback = None
                try:
                    callback(timer.argument)
                except Exception as exc:  # a bug in one must not stop the tick's others
                    self._loop().call_exception_handler(  # type: ignore[union-attr]
                        {"message": "coarse timer callback failed", "exception": exc}
                    )


timers_of = PerLoop(TickTimers).of  # the coarse timers of a loop, one set per loop
