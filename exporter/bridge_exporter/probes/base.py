"""The small interface every prober implements.

A prober is created once per exporter process (so it can own shared resources such as
the ICMP socket), started, asked to probe many targets concurrently, and closed.
Each prober declares its settings as a dataclass; the config package validates an
inventory's module settings against it (unknown keys, types, durations) so that a bad
setting is reported with file and line before anything runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from ..ticks import Tick, timers_of
from . import reasons


class Seconds(float):
    """A duration in seconds; in YAML written as `200ms`, `5s`, `1m` or a plain number."""


@dataclass
class ProbeResult:
    """What one probe of one endpoint found. Fields a prober does not measure stay None."""

    success: bool
    duration_seconds: float = 0.0
    # Why it failed, one of the reasons in reasons.py ("timeout", "refused",
    # "status_503", ...). Empty on success.
    reason: str = ""
    # Round-trip figures (seconds) and loss for probers that send a train of packets.
    rtt_seconds: float | None = None  # mean round-trip time of the answered packets
    rtt_min_seconds: float | None = None
    rtt_max_seconds: float | None = None
    jitter_seconds: float | None = None
    packet_loss_ratio: float | None = None
    packets_sent: int = 0
    packets_received: int = 0
    # Every answered packet's RTT, fed to the cumulative RTT histogram.
    rtt_samples: list[float] = field(default_factory=list)
    # Protocol status: SIP response code, HTTP status code.
    status_code: int | None = None
    # Prober-specific figures, exposed as bridge_<key> gauges (e.g. media statistics:
    # "media_packet_loss_ratio", "media_bitrate_bits_per_second").
    values: dict[str, float] = field(default_factory=dict)
    # Free-form text lines for /probe?debug=true.
    debug: list[str] = field(default_factory=list)


class ProbeFailed(Exception):
    """Ends a probe early: `reason` becomes the result's reason, the message a debug line."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def mark_terse(log: logging.Logger) -> logging.Logger:
    """Mark a logger whose probes nobody reads the debug text of (background rounds): the
    probers then skip their verbose lines (each packet, each SIP message) unless debug
    logging is on, as that text would only churn the heap until the next round."""
    log.terse = True  # type: ignore[attr-defined]
    return log


def wants_debug_text(log: logging.Logger) -> bool:
    """Whether a prober should build its verbose debug lines for this logger."""
    return not getattr(log, "terse", False) or log.isEnabledFor(logging.DEBUG)


def debug_note(
    result: ProbeResult, log: logging.Logger, kind: str, endpoint_id: str
) -> Callable[[str], None]:
    """A `note(line)` that logs the line at debug level and appends it to result.debug."""

    def note(line: str) -> None:
        log.debug("%s %s: %s", kind, endpoint_id, line)
        result.debug.append(line)

    return note


class DeadlineScope:
    """`async with DeadlineScope(loop, when)`: asyncio.timeout_at(when) for a caller that
    has its loop at hand. Same semantics (the task is cancelled at `when`, and the scope
    raises TimeoutError if that cancellation is what ends it), without asyncio's
    get_running_loop() lookups: on CPython 3.11 each costs a getpid() system call, and with
    thousands of probes per second those were a tenth of the exporter's CPU. Its timer is
    a coarse one (ticks.py): it fires up to one tick late."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_task", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._loop = loop
        self._when = when
        self._handle: Tick | None = None
        self._expired = False
        self._cancelling = 0

    async def __aenter__(self) -> DeadlineScope:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("DeadlineScope should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = timers_of(self._loop).call_at(self._when, self._on_deadline)
        return self

    def _on_deadline(self, _: None = None) -> None:
        self._handle = None
        self._expired = True
        self._task.cancel()

    async def __aexit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._expired:
            # Balance our cancel(); a timeout if ours was the cancellation that ended the
            # block and no one else's is pending.
            pending = self._task.uncancel()
            if pending <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expired(self) -> bool:
        return self._expired


async def guarded(
    run: Callable[[], Awaitable[None]],
    result: ProbeResult,
    note: Callable[[str], None],
    deadline: float,
    timeout_text: str,
    expected: tuple[type[Exception], ...] = (),
    reason_for: Callable[[Exception], str] = lambda exc: reasons.NETWORK_ERROR,
    loop: asyncio.AbstractEventLoop | None = None,
) -> ProbeResult:
    """Run one probe's work until `deadline` (event-loop time) and fill in `result`:
    success when `run` returns, else the reason of a ProbeFailed, "timeout" (noted as
    "<timeout_text> within N s"), or `reason_for(exc)` of an `expected` error. Sets the
    duration. `loop` spares a lookup when the caller has it."""
    loop = loop or asyncio.get_running_loop()
    started = loop.time()
    try:
        async with DeadlineScope(loop, deadline):
            await run()
        result.success = True
    except ProbeFailed as exc:
        result.reason = exc.reason
        note(f"failed ({exc.reason}): {exc}")
    except TimeoutError:
        result.reason = reasons.TIMEOUT
        note(f"{timeout_text} within {max(0.0, deadline - started):.3g} s")
    except expected as exc:
        result.reason = reason_for(exc)
        note(f"failed ({result.reason}): {type(exc).__name__}: {exc}")
    result.duration_seconds = loop.time() - started
    return result


def mean_successive_difference(values: Sequence[float]) -> float:
    """Mean absolute difference between successive values (the jitter the icmp prober
    reports, as mtr does); 0.0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    # fsum over a list: what statistics.fmean does, without its generic iterable handling.
    return math.fsum([abs(b - a) for a, b in itertools.pairwise(values)]) / (len(values) - 1)


class Target(NamedTuple):
    """Where to probe: the endpoint's address (IPv4, IPv6 or hostname) and its id.
    (A named tuple: made for every probe, and a frozen dataclass costs several times more.)"""

    endpoint_id: str
    address: str


class Prober(ABC):
    """One kind of probe (icmp, tcp, http, sip, stamp, stats, ...)."""

    kind: ClassVar[str]
    # A dataclass whose fields (with defaults) are the module settings this prober accepts.
    Settings: ClassVar[type]
    # The event loop every probe of this instance runs on, once known (see running_loop).
    _loop: asyncio.AbstractEventLoop | None = None

    def adopt_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Said by the scheduler's registry, which uses each instance on one loop."""
        self._loop = loop

    def running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop probes run on. Kept: asyncio.get_running_loop() is a getpid() system
        call per use on CPython 3.11, and thousands of probes a second asked for it."""
        return self._loop or asyncio.get_running_loop()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire shared resources (sockets). Must not raise for lack of privileges:
        record the problem and report it per probe as a failure reason instead."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release shared resources."""

    def startup_problem(self) -> str | None:
        """A plain-language problem found at start-up (with its fix), or None."""
        return None

    @abstractmethod
    async def probe_until(
        self, target: Target, settings: Any, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        """Probe one target and return its result by `deadline` (event-loop time, set once
        by the scheduler), with the prober's own reason for a failure (reasons.py).
        Must not raise for anything the network or the device does: those are failed
        results. An exception is an exporter bug (reason prober_error); a prober still
        running well past its deadline is one too (the scheduler's backstop)."""

    async def probe(
        self, target: Target, settings: Any, timeout: float, log: logging.Logger
    ) -> ProbeResult:
        """Probe one target within `timeout` seconds from now (for callers without a
        scheduler: tests, tools)."""
        deadline = asyncio.get_running_loop().time() + timeout
        return await self.probe_until(target, settings, deadline, log)
