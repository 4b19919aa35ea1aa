"""Background probe rounds.

Each endpoint has its own loop: a round runs all its modules concurrently, each bounded by
the module's timeout, and the next round starts one interval after the previous start.
Starts are spread evenly over the interval so a network of thousands does not burst (in
steps of START_GRID_SECONDS, each step's endpoints starting together). A round that
outlasts the interval is never overlapped by the next: the missed starts are counted as
overruns and the loop resumes on the next free slot. A semaphore bounds the probes in
flight across all endpoints; a probe's deadline (its module's timeout) is set when it gets
its slot, and the prober works to it (see run_probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import weakref
import zlib
from dataclasses import dataclass

from .config.model import Endpoint, Inventory, Module
from .logs import BurstLog
from .perloop import PerLoop
from .probes import Prober, ProbeResult, Target, prober_class, reasons
from .probes.base import mark_terse
from .resources import RAISE_HINT, ResourceErrors
from .state import State
from .ticks import timers_of

# Background probes' debug text is read by nobody (/probe builds its own): terse.
log = mark_terse(logging.getLogger(__name__))


@dataclass
class SchedulerStats:
    rounds: int = 0
    overruns: int = 0
    probes: int = 0
    probe_errors: int = 0  # prober bugs (raised, or overran the deadline): failures
    in_flight: int = 0


class Probers:
    """One instance per prober kind, started lazily, shared by every module of that kind."""

    def __init__(self) -> None:
        self._instances: dict[str, Prober] = {}

    async def get(self, kind: str) -> Prober:
        prober = self._instances.get(kind)
        if prober is None:
            prober = prober_class(kind)()
            prober.adopt_loop(asyncio.get_running_loop())
            self._instances[kind] = prober
            await prober.start()
            problem = prober.startup_problem()
            if problem:
                log.error("%s", problem)
        return prober

    def started(self, kind: str) -> Prober | None:
        """The instance of `kind` if it has been started (no coroutine for the common case)."""
        return self._instances.get(kind)

    async def start_for(self, inventory: Inventory) -> None:
        """Start the probers the endpoints use. (A module no endpoint uses starts its
        prober at its first /probe: an idle raw ICMP socket still reads every echo reply
        the host receives.)"""
        kinds = {
            module.prober
            for endpoint in inventory.endpoints.values()
            for module in inventory.modules_of(endpoint)
        }
        for kind in sorted(kinds):
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


# How long past a probe's deadline the backstop waits before cancelling the prober. A
# prober returns its own result (and reason) by the deadline; the backstop only catches
# one that does not, a bug. The grace must outlast how late the event loop runs timers
# under full load (tens of milliseconds with thousands of probes starting together, more
# while a large scrape renders), so that a prober finishing on time is never cut off;
# and stay small next to a probe interval, since a stuck prober keeps its slot till then.
BACKSTOP_GRACE_SECONDS = 1.0
# Round starts fall on a grid of this step (a hundredth of the interval when that is
# smaller), so the endpoints due in the same step start together: the event loop wakes
# once for them all and runs their starts back to back. At 10,000 endpoints every 15 s
# that is 67 per step instead of one every 1.5 ms, and 20 % less CPU per round: each
# sleep and wake of the loop costs some 30 us here, and work done in a batch finds the
# CPU's caches warm. A TCP round trip is the kernel's measure, so this does not inflate it.
START_GRID_SECONDS = 0.1


class Backstop:
    """Cancels the probes of one event loop that are still running BACKSTOP_GRACE_SECONDS
    past their deadline. One sweep every SWEEP_SECONDS over the probes in flight, not a
    timer per probe: thousands of probes a second each set and cancelled one, for a case
    that only a prober bug brings about. A probe is cut off up to one sweep late."""

    SWEEP_SECONDS = 0.25

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._watched: dict[int, tuple[asyncio.Task, float]] = {}  # token: (task, cut-off)
        self._tokens = itertools.count()
        self._sweeping = False

    def watch(self, task: asyncio.Task, cutoff: float) -> int:
        token = next(self._tokens)
        self._watched[token] = (task, cutoff)
        if not self._sweeping:
            self._sweeping = True
            self._loop().call_later(self.SWEEP_SECONDS, self._sweep)  # type: ignore[union-attr]
        return token

    def release(self, token: int) -> bool:
        """Stop watching (once per token); True if the backstop cancelled the probe's task,
        as only a cut takes a token out before its release."""
        return self._watched.pop(token, None) is None

    def _sweep(self) -> None:
        loop = self._loop()
        if loop is None:
            return
        now = loop.time()
        overdue = [token for token, (_, cutoff) in self._watched.items() if cutoff <= now]
        for token in overdue:
            task, _ = self._watched.pop(token)
            task.cancel()
        self._sweeping = bool(self._watched)
        if self._sweeping:
            loop.call_later(self.SWEEP_SECONDS, self._sweep)


backstop_of = PerLoop(Backstop).of  # the backstop of a loop, one per loop


async def run_probe(
    prober: Prober,
    endpoint: Endpoint,
    module: Module,
    logger: logging.Logger,
    stats: SchedulerStats | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> ProbeResult:
    """Run one probe. Its deadline is set here, once: the module's timeout from now (the
    probe holds its concurrency slot already). The prober works to that deadline and
    returns its own result. A prober that raises, or that is still running
    BACKSTOP_GRACE_SECONDS after the deadline, is an exporter bug: logged (to the process
    log too when `logger` is a /probe request's), counted in `stats.probe_errors`, and
    reported as prober_error or (cancelled) timeout."""
    loop = loop or asyncio.get_running_loop()
    started = loop.time()
    deadline = started + module.timeout
    target = Target(endpoint.id, endpoint.address)
    task = asyncio.current_task(loop)
    assert task is not None, "run_probe runs in a task"
    cancellations = task.cancelling()  # others' before ours: not ours to judge
    backstop = backstop_of(loop)
    token = backstop.watch(task, deadline + BACKSTOP_GRACE_SECONDS)
    try:
        try:
            result = await prober.probe_until(target, module.settings, deadline, logger)
        finally:
            cut = backstop.release(token)
            if cut:
                task.uncancel()  # ours, balanced whatever the prober made of it
    except asyncio.CancelledError:
        if not cut or task.cancelling() > cancellations:
            raise  # a reload's or a shutdown's (perhaps beside ours): the round ends
        line = (
            f"the {module.prober} prober was still running {BACKSTOP_GRACE_SECONDS:g} s "
            "after its deadline and was cancelled: an exporter bug"
        )
        result = _prober_bug(endpoint, logger, stats, line, reasons.TIMEOUT)
    except Exception as exc:  # a prober bug must not stop the others
        if task.cancelling() > cancellations:  # it turned someone's cancellation into this
            raise asyncio.CancelledError from exc
        line = f"the {module.prober} prober raised {type(exc).__name__}: {exc}"
        result = _prober_bug(endpoint, logger, stats, line, reasons.PROBER_ERROR, exc)
    else:
        if task.cancelling() > cancellations:  # it swallowed someone's cancellation
            raise asyncio.CancelledError
    if not result.duration_seconds:
        result.duration_seconds = loop.time() - started
    return result


def _prober_bug(
    endpoint: Endpoint,
    logger: logging.Logger,
    stats: SchedulerStats | None,
    line: str,
    reason: str,
    exc: Exception | None = None,
) -> ProbeResult:
    for bug_log in {log, logger}:
        bug_log.error("%s: %s", endpoint.id, line, exc_info=exc)
    if stats is not None:
        stats.probe_errors += 1
    return ProbeResult(success=False, reason=reason, debug=[line])


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """asyncio.sleep() on a coarse timer (ticks.py), without its get_running_loop() (a
    getpid() system call on 3.11)."""
    waiter = loop.create_future()
    handle = timers_of(loop).call_at(when, _wake, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Scheduler:
    def __init__(
        self,
        inventory: Inventory,
        state: State,
        probers: Probers,
        resource_errors: ResourceErrors | None = None,
    ):
        self.inventory = inventory
        self.state = state
        self.probers = probers
        self.stats = SchedulerStats()
        self.resource_errors = resource_errors or ResourceErrors()
        self._resource_log = BurstLog(log, "probes failed for lack of local resources")
        self._semaphore = asyncio.Semaphore(inventory.concurrency)
        self._tasks: dict[str, asyncio.Task] = {}
        self._epoch: float | None = None  # the start grid's origin, fixed for the process

    def probe_slot(self) -> asyncio.Semaphore:
        """The semaphore that bounds probes in flight (replaced when `concurrency` changes):
        ad-hoc probes (/probe) take their slots from it too."""
        return self._semaphore

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
        The offset is a stable hash of the id, rounded down to the start grid's step, so
        starts are spread evenly and an endpoint keeps its slot across reloads."""
        assert self._epoch is not None
        interval = self.inventory.interval
        offset = (zlib.crc32(endpoint_id.encode()) / 2**32) * interval
        step = min(START_GRID_SECONDS, interval / 100)
        first = self._epoch + math.floor(offset / step) * step
        late = asyncio.get_running_loop().time() - first
        if late <= 0:
            return first
        # A slot that began less than a step ago is still this one's (at start-up the
        # endpoints of the first step are due the moment the epoch is set).
        return first + math.ceil((late - step) / interval) * interval

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
            if next_start > loop.time():
                await _sleep_until(loop, next_start)
            await self.run_round(endpoint, loop)
            next_start += interval
            late = loop.time() - next_start
            if late > 0:
                missed = math.ceil(late / interval)
                self.stats.overruns += missed
                next_start += missed * interval

    async def run_round(
        self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        loop = loop or asyncio.get_running_loop()
        started = loop.time()
        modules = self.inventory.modules_of(endpoint)
        if not modules:
            self.state.finish_round(endpoint, 0.0)
            self.stats.rounds += 1
            return
        first, *others = modules
        # The first module runs in this task, the others in their own (no gather: fewer
        # tasks and loop lookups per round).
        tasks = [loop.create_task(self._probe(endpoint, m, loop)) for m in others]
        try:
            await self._probe(endpoint, first, loop)
            for task in tasks:
                await task
        finally:
            for task in tasks:
                task.cancel()  # only if this round was cancelled (a reload): no-op otherwise
        self.state.finish_round(endpoint, loop.time() - started)
        self.stats.rounds += 1

    async def _probe(
        self, endpoint: Endpoint, module: Module, loop: asyncio.AbstractEventLoop
    ) -> None:
        prober = self.probers.started(module.prober) or await self.probers.get(module.prober)
        async with self._semaphore:
            self.stats.in_flight += 1
            try:
                result = await run_probe(prober, endpoint, module, log, self.stats, loop)
            finally:
                self.stats.in_flight -= 1
        self.stats.probes += 1
        if result.reason == reasons.LOCAL_RESOURCE_EXHAUSTED:
            self._note_resource_error(endpoint, module, result)
        self.state.record(endpoint, module, result)

    def _note_resource_error(self, endpoint: Endpoint, module: Module, result: ProbeResult) -> None:
        """The exporter's trouble, not the endpoint's: counted, logged once per burst."""
        self.resource_errors.add("probe")
        detail = result.debug[-1] if result.debug else result.reason
        self._resource_log.event(
            "probe %s of %s could not run, the exporter is out of local resources (%s); "
            "endpoints keep their last state until probes run again. Raise the fd limit "
            "(%s) or lower `concurrency`. Further such failures are counted in "
            "bridge_exporter_local_resource_errors_total and summarised here",
            module.name, endpoint.id, detail, RAISE_HINT,
        )  # fmt: skip
