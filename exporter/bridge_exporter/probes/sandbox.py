"""Work over what a device sent, done in child processes that can be killed.

Two things a device's answer drives are too costly for the event loop: a `body_regex`
search (Python's `re` backtracks: `(a+)+$` over "aaaa…b" runs for hours) and the parsing
and evaluation of a stats document (an 8 MiB hostile JSON takes seconds and some hundred
MiB). On the loop either would stall every probe of the exporter; a thread cannot be
stopped and shares the GIL and the heap. A child process can be killed, runs on another
core, and has its own memory, capped.

So a pool per prober keeps up to MAX_WORKERS children (`python -m
bridge_exporter.probes.sandbox_child`, importing this very package), started on first use
and reused. Each call sends
one request and waits up to its budget; a child that overruns (or whose caller is
cancelled, so its answer would be stale) is killed, and a fresh one starts on next use.
A child that grew past RETIRE_AFTER_BYTES asks to be retired, so one hostile document's
heap is not kept for the life of the exporter.

Costs: ~25 MB and ~0.2 s to start a child (once), and a copy of the body through a pipe
per call (at most the prober's body limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# More than one, so that one overrun does not queue the healthy calls behind it; about one
# per core, so that a network of devices with large documents uses every core; bounded, so
# a burst of pathological devices costs bounded CPU and memory.
MAX_WORKERS = min(16, max(4, os.cpu_count() or 1))
# A child's heap limit (RLIMIT_DATA): past it, the request fails with MemoryError in the
# child, not in the exporter. An 8 MiB document needs ~300 MiB at worst.
MEMORY_LIMIT_BYTES = 1 << 30
# A child whose peak memory passed this is retired after its answer.
RETIRE_AFTER_BYTES = 256 << 20

REQUEST_HEADER = struct.Struct("!II")  # request JSON length, number of blobs
LENGTH = struct.Struct("!I")  # a blob's or the answer's length
# The folder holding the bridge_exporter package, first on the child's path: the child
# runs the same code as the exporter however it was installed or started.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerTimeout(Exception):
    """The call did not finish within its budget; its child was killed."""


class WorkerBusy(Exception):
    """Every child stayed busy until the caller's deadline: the exporter's own capacity,
    not the device's fault (a probe reports it as local_resource_exhausted)."""


class WorkerLost(RuntimeError):
    """A child died, answered nonsense or failed on a bug: the exporter's own trouble,
    not the device's (a probe reports it as prober_error)."""


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> _Worker:
        python_path = os.pathsep.join(filter(None, (_PACKAGE_ROOT, os.environ.get("PYTHONPATH"))))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge_exporter.probes.sandbox_child",
            str(MEMORY_LIMIT_BYTES),
            str(RETIRE_AFTER_BYTES),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": python_path},
            cwd=_PACKAGE_ROOT,  # not wherever the exporter was started
        )
        return cls(process)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def call(self, frame: bytes) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(frame)
            await stdin.drain()
            (size,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
            answer = json.loads(await stdout.readexactly(size))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise WorkerLost(f"the worker process stopped or answered nonsense: {exc!r}") from exc
        if "bug" in answer:
            raise WorkerLost(f"the worker process failed:\n{answer['bug']}")
        return answer

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


def request_frame(request: dict[str, Any], blobs: Sequence[bytes]) -> bytes:
    header = json.dumps(request).encode("ascii")
    parts = [REQUEST_HEADER.pack(len(header), len(blobs)), header]
    for blob in blobs:
        parts += [LENGTH.pack(len(blob)), blob]
    return b"".join(parts)


class WorkerPool:
    """At most MAX_WORKERS children, started on first use; `close()` ends them. Use from
    one event loop."""

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self._max_workers = max_workers
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Worker] = []
        self._reaping: set[asyncio.Task[int]] = set()
        self._closed = False

    async def call(
        self, request: dict[str, Any], blobs: Sequence[bytes], budget: float, until: float
    ) -> dict[str, Any]:
        """The child's answer to `request` (JSON-able; `kind` names the handler in
        sandbox_child) with `blobs` (bytes) alongside. Waiting for a free child lasts until
        `until` (loop time, the caller's deadline less its margin): past it, WorkerBusy.
        The budget, in seconds, starts once a child is free and ends by `until` at the
        latest; past it the child is killed and WorkerTimeout raised. A call with no time
        left fails at once and leaves the children alone."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_workers)
        try:
            async with asyncio.timeout_at(until):
                await self._slots.acquire()
        except TimeoutError:
            raise WorkerBusy(
                f"all {self._max_workers} worker processes stayed busy until the deadline"
            ) from None
        try:
            return await self._call_worker(request, blobs, min(budget, until - loop.time()))
        finally:
            self._slots.release()

    async def _call_worker(
        self, request: dict[str, Any], blobs: Sequence[bytes], budget: float
    ) -> dict[str, Any]:
        if budget <= 0:
            raise WorkerTimeout("no time left for the worker")
        frame = request_frame({**request, "seconds": budget}, blobs)
        # One worker per call, back to the pool only after a clean answer.
        worker = self._take_idle() or await _Worker.start()
        answer: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(budget):
                answer = await worker.call(frame)
        except TimeoutError:
            raise WorkerTimeout(f"no answer within {budget:g} s") from None
        finally:
            # Anything but a clean answer (a timeout, a cancelled caller) leaves the
            # child busy or broken: it is never asked again.
            if answer is not None and not answer.get("retire") and not self._closed:
                self._idle.append(worker)
            else:
                self._discard(worker)
        return answer

    async def close(self) -> None:
        self._closed = True  # a call still in flight discards its child when it answers
        while self._idle:
            self._discard(self._idle.pop())
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    def _take_idle(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
        return None

    def _discard(self, worker: _Worker) -> None:
        """Kill the child and reap it in the background (this may run in a cancelled
        task, which cannot wait)."""
        worker.kill()
        task = asyncio.get_running_loop().create_task(worker.process.wait())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)
