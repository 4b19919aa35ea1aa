"""Background probe rounds.

Each endpoint has its own loop: a round runs all its modules concurrently, each bounded by
the module's timeout, and the next round starts one interval after the previous start.
Starts are spread evenly over the interval so a network of thousands does not burst. A
round that outlasts the interval is never overlapped by the next: the missed starts are
counted as overruns and the loop resumes on the next free slot. A semaphore bounds the
probes in flight across all endpoints; the timeout clock starts when a probe gets its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import zlib
from dataclasses import dataclass

from .config.model import Endpoint, Inventory, Module
from .probes import Prober, ProbeResult, Target, prober_class
from .state import State

log = logging.getLogger(__name__)


@dataclass
class SchedulerStats:
    rounds: int = 0
    overruns: int = 0
    probes: int = 0
    probe_errors: int = 0  # probers that raised (a bug): reported as failures
    in_flight: int = 0


class Probers:
    """One instance per prober kind, started lazily, shared by every module of that kind."""

    def __init__(self) -> None:
        self._instances: dict[str, Prober] = {}

    async def get(self, kind: str) -> Prober:
        prober = self._instances.get(kind)
        if prober is None:
            prober = prober_class(kind)()
            self._instances[kind] = prober
            await prober.start()
            problem = prober.startup_problem()
            if problem:
                log.error("%s", problem)
        return prober

    async def start_for(self, inventory: Inventory) -> None:
        for kind in sorted({m.prober for m in inventory.modules.values()}):
            await self.get(kind)

    def startup_problems(self) -> dict[str, str]:
        return {
            kind: problem
            for kind, prober in self._instances.items()
            if (problem := prober.startup_problem())
        }

    def instances(self) -> dict[str, Prober]:
        return dict(self._instances)

    async def close(self) -> None:
        for prober in self._instances.values():
            with contextlib.suppress(Exception):
                await prober.close()
        self._instances.clear()


async def run_probe(
    prober: Prober, endpoint: Endpoint, module: Module, logger: logging.Logger
) -> ProbeResult:
    """Run one probe with its timeout enforced here too, whatever the prober does."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    target = Target(endpoint.id, endpoint.address)
    try:
        async with asyncio.timeout(module.timeout):
            result = await prober.probe(target, module.settings, module.timeout, logger)
    except TimeoutError:
        result = ProbeResult(success=False, reason="timeout")
    except Exception as exc:  # a prober bug must not stop the others
        logger.exception("prober %s failed on %s", module.prober, endpoint.id)
        result = ProbeResult(success=False, reason=f"prober_error:{type(exc).__name__}")
    if not result.duration_seconds:
        result.duration_seconds = loop.time() - started
    return result


class Scheduler:
    def __init__(self, inventory: Inventory, state: State, probers: Probers):
        self.inventory = inventory
        self.state = state
        self.probers = probers
        self.stats = SchedulerStats()
        self._semaphore = asyncio.Semaphore(inventory.concurrency)
        self._tasks: dict[str, asyncio.Task] = {}
        self._epoch: float | None = None  # the start grid's origin, fixed for the process

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._epoch is None:
            self._epoch = loop.time()
        for endpoint in self.inventory.endpoints.values():
            self._start_loop(endpoint)

    def _start_loop(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        self._tasks[endpoint.id] = loop.create_task(
            self._endpoint_loop(endpoint, self._next_slot(endpoint.id)),
            name=f"probe:{endpoint.id}",
        )

    def _next_slot(self, endpoint_id: str) -> float:
        """The endpoint's next start on its fixed grid: epoch + offset + k * interval.
        The offset is a stable hash of the id, so starts are spread evenly and an endpoint
        keeps its slot across reloads."""
        assert self._epoch is not None
        interval = self.inventory.interval
        first = self._epoch + (zlib.crc32(endpoint_id.encode()) / 2**32) * interval
        now = asyncio.get_running_loop().time()
        if now <= first:
            return first
        return first + math.ceil((now - first) / interval) * interval

    async def stop(self) -> None:
        await self._cancel(list(self._tasks))

    async def _cancel(self, endpoint_ids: list[str]) -> None:
        tasks = [self._tasks.pop(i) for i in endpoint_ids if i in self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def replace_inventory(self, inventory: Inventory) -> None:
        """Apply a reloaded inventory. Endpoints whose definition (and modules) did not
        change keep running undisturbed on their slots; the others restart on theirs."""
        old = self.inventory
        await self.probers.start_for(inventory)
        unchanged = set()
        if inventory.interval == old.interval:
            for endpoint_id, endpoint in inventory.endpoints.items():
                before = old.endpoints.get(endpoint_id)
                if (
                    before == endpoint
                    and old.modules_of(before) == inventory.modules_of(endpoint)
                    and endpoint_id in self._tasks
                ):
                    unchanged.add(endpoint_id)
        await self._cancel([i for i in self._tasks if i not in unchanged])
        self.inventory = inventory
        self.state.replace_inventory(inventory)
        if inventory.concurrency != old.concurrency:
            self._semaphore = asyncio.Semaphore(inventory.concurrency)
        for endpoint_id, endpoint in inventory.endpoints.items():
            if endpoint_id not in unchanged:
                self._start_loop(endpoint)

    async def _endpoint_loop(self, endpoint: Endpoint, next_start: float) -> None:
        loop = asyncio.get_running_loop()
        interval = self.inventory.interval
        while True:
            delay = next_start - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.run_round(endpoint)
            next_start += interval
            late = loop.time() - next_start
            if late > 0:
                missed = math.ceil(late / interval)
                self.stats.overruns += missed
                next_start += missed * interval

    async def run_round(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        modules = self.inventory.modules_of(endpoint)
        await asyncio.gather(*(self._probe(endpoint, m) for m in modules))
        self.state.finish_round(endpoint, loop.time() - started)
        self.stats.rounds += 1

    async def _probe(self, endpoint: Endpoint, module: Module) -> None:
        prober = await self.probers.get(module.prober)
        async with self._semaphore:
            self.stats.in_flight += 1
            try:
                result = await run_probe(prober, endpoint, module, log)
            finally:
                self.stats.in_flight -= 1
        self.stats.probes += 1
        if result.reason.startswith("prober_error"):
            self.stats.probe_errors += 1
        self.state.record(endpoint, module, result)
