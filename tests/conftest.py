"""Shared test helpers.

Tools the tests need (prometheus, promtool, sipp, fping, ip netns) are installed by
`make test`. When one is missing a test is skipped on a developer machine but FAILS in
CI (CI=true): CI must never go green by skipping what it was meant to prove.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bridge_exporter.reflector import StampReflector
from bridge_exporter.stamp_packet import unix_from_ntp

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

sys.path.insert(0, str(Path(__file__).resolve().parent))


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} (CI must not skip: `make test` installs it)")
    pytest.skip(what)


def need_tool(name: str) -> str:
    path = shutil.which(name) or next(
        (
            p
            for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}")
            if os.path.exists(p)
        ),
        None,
    )
    if not path:
        missing(f"{name} is not installed")
    return path


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def tool():
    return need_tool


async def eventually(
    condition: Callable[[], object], what: str, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Poll (on the running loop) until `condition()` holds: a slow host takes longer, it
    does not fail the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"still waiting after {timeout:g} s for {what}"
        await asyncio.sleep(every)


class LoopStallWatcher:
    """Watches the running event loop; calling it gives the worst lateness seen since it
    started or was last reset.

    Peers that share the test's loop (the simulator, the reflector) answer late when that
    loop stalls (a garbage collection, a busy CI host), and the round trip on the wire
    really is longer. Bounds on such round trips grow by what this watcher saw, an oracle
    independent of the code under test.
    """

    TICK = 0.002

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.TICK)
            self.worst = max(self.worst, loop.time() - before - self.TICK)

    def __call__(self) -> float:
        return self.worst

    def reset(self) -> None:
        self.worst = 0.0

    def stop(self) -> None:
        self._task.cancel()


@pytest.fixture
async def worst_loop_stall():
    """A LoopStallWatcher on the test's event loop."""
    watcher = LoopStallWatcher()
    await asyncio.sleep(0)
    yield watcher
    watcher.stop()


@pytest.fixture
def answer_ages(monkeypatch) -> list[tuple[int, float]]:
    """(sequence, seconds) for each STAMP answer, in the order the reflector sent them:
    the time from the send time the packet carries to the reflector's reply, which is the
    round trip the wire really saw, whatever the shared event loop did meanwhile."""
    ages: list[tuple[int, float]] = []
    answer = StampReflector._answer

    def timed_answer(self, request, *args):
        ages.append((request.sequence, time.time() - unix_from_ntp(request.timestamp)))
        answer(self, request, *args)

    monkeypatch.setattr(StampReflector, "_answer", timed_answer)
    return ages


def rfc3550_jitter_of(transits: list[float]) -> float:
    """RFC 3550 section 6.4.1 interarrival jitter, written here independently of the
    prober: J += (|D| - J) / 16 over successive transit times in arrival order."""
    jitter = 0.0
    for before, after in itertools.pairwise(transits):
        jitter += (abs(after - before) - jitter) / 16
    return jitter
