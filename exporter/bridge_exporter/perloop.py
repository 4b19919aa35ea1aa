"""One object per event loop, made on first use and dropped with its loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """`of(loop)`: the loop's T, made by `factory(loop)` the first time. The T must hold
    its loop weakly (weakref.ref), or the registry would keep every loop alive."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, loop: asyncio.AbstractEventLoop) -> T:
        made = self._by_loop.get(loop)
        if made is None:
            made = self._by_loop[loop] = self._factory(loop)
        return made
