"""Voice-like UDP quality test: a STAMP Session-Sender (RFC 8762, unauthenticated mode).

A train of `count` test packets of `size` octets, `interval` apart (160 octets every 20 ms
looks like a G.711 voice stream), goes to a STAMP reflector on one connected UDP socket.
Replies are matched by the Session-Sender Sequence Number they carry, so both stateless
and stateful reflectors work. Figures:

- round-trip time per answered packet from this host's monotonic clock (send to receive);
  the reflector's residence time (its transmit minus receive timestamp) is NOT
  subtracted, because a reflector that holds packets stands for the network (that is
  how the simulator imposes delay); its mean is reported as
  `stamp_reflector_residence_seconds` for information;
- loss ratio = unanswered / sent;
- jitter = RFC 3550 section 6.4.1 interarrival jitter, J += (|D| - J) / 16 over the
  replies in arrival order, where D is the difference between successive round-trip
  times (the round trip plays the role of the transit time; clock offsets cancel);
- `stamp_jitter_mad_seconds` = mean absolute difference of successive round-trip times
  in sequence order, the definition the ICMP prober uses, so the two compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..stamp_packet import BASE_SIZE, MAX_SIZE, PacketError, ReflectorPacket, SenderPacket, ntp_now
from .base import Prober, ProbeResult, Seconds, Target, debug_note

# Stop this long before the timeout so that the result, not the scheduler's backstop
# cancellation, reports what happened.
_MARGIN_SECONDS = 0.05
_MAX_NOTED_ANOMALIES = 5


@dataclass
class StampSettings:
    # Seconds is an immutable float, so a shared default instance is safe (RUF009).
    port: int = 862  # IANA port for STAMP / TWAMP test packets
    count: int = 50  # packets per round
    interval: Seconds = Seconds(0.02)  # noqa: RUF009 - between packets; 20 ms = a voice frame
    size: int = 160  # UDP payload octets; at least the 44-octet STAMP packet
    wait: Seconds = Seconds(1.0)  # noqa: RUF009 - how long late replies are awaited


class _Session(asyncio.DatagramProtocol):
    """The receiving half of one probe: matches replies to what was sent."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note
        self.sent_at: dict[int, float] = {}  # sequence -> monotonic send time
        self.rtt_by_sequence: dict[int, float] = {}
        self.rtt_in_arrival_order: list[float] = []
        self.residence: list[float] = []
        self.ttls: set[int] = set()
        self.anomalies = 0
        self.refused = False
        self.other_error: OSError | None = None
        self.expected: int | None = None  # known once sending is over
        self.stop = asyncio.Event()  # refused, or every sent packet answered

    def datagram_received(self, data: bytes, addr: Any) -> None:
        received_at = time.monotonic()
        try:
            reply = ReflectorPacket.decode(data)
        except PacketError as error:
            self._anomaly(f"ignored a datagram: {error}")
            return
        sequence = reply.sender_sequence
        sent_at = self.sent_at.get(sequence)
        if sent_at is None:
            self._anomaly(f"ignored a reply for sequence {sequence}, which was not sent")
            return
        if sequence in self.rtt_by_sequence:
            self._anomaly(f"ignored a duplicate reply for sequence {sequence}")
            return
        rtt = received_at - sent_at
        self.rtt_by_sequence[sequence] = rtt
        self.rtt_in_arrival_order.append(rtt)
        self.residence.append(reply.residence_seconds)
        self.ttls.add(reply.sender_ttl)
        if self.expected is not None and len(self.rtt_by_sequence) >= self.expected:
            self.stop.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            if not self.refused:
                self.note("ICMP port unreachable: nothing listens on the STAMP port")
            self.refused = True
            self.stop.set()
        elif isinstance(exc, OSError) and self.other_error is None:
            self.other_error = exc
            self.note(f"socket error: {exc}")

    def _anomaly(self, text: str) -> None:
        self.anomalies += 1
        if self.anomalies <= _MAX_NOTED_ANOMALIES:
            self.note(text)


class StampProber(Prober):
    kind = "stamp"
    Settings = StampSettings

    async def probe(
        self, target: Target, settings: Any, timeout: float, log: logging.Logger
    ) -> ProbeResult:
        started = time.monotonic()
        deadline = started + max(0.0, timeout - min(_MARGIN_SECONDS, timeout * 0.05))
        settings = settings or StampSettings()
        result = ProbeResult(success=False)
        note = debug_note(result, log, self.kind, target.endpoint_id)
        try:
            await self._run(target, settings, deadline, result, note)
        finally:
            result.duration_seconds = time.monotonic() - started
        return result

    async def _run(
        self,
        target: Target,
        settings: StampSettings,
        deadline: float,
        result: ProbeResult,
        note: Callable[[str], None],
    ) -> None:
        problem = _settings_problem(settings)
        if problem:
            result.reason = "bad_settings"
            note(problem)
            return
        loop = asyncio.get_running_loop()
        session = _Session(note)
        host = target.address.strip("[]")
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_datagram_endpoint(lambda: session, remote_addr=(host, settings.port)),
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except TimeoutError:
            result.reason = "timeout"
            note(f"resolving {host} took the whole timeout")
            return
        except socket.gaierror as error:
            result.reason = "resolve_failed"
            note(f"cannot resolve {host}: {error}")
            return
        except OSError as error:
            result.reason = "socket_error"
            note(f"cannot open a UDP socket to {host} port {settings.port}: {error}")
            return
        try:
            await self._exchange(transport, session, settings, deadline, note)
        finally:
            transport.close()
        _summarize(session, result, note)

    async def _exchange(
        self,
        transport: asyncio.DatagramTransport,
        session: _Session,
        settings: StampSettings,
        deadline: float,
        note: Callable[[str], None],
    ) -> None:
        peer = transport.get_extra_info("peername")
        count = _packets_that_fit(settings, deadline - time.monotonic())
        if count < settings.count:
            note(
                f"{settings.count} packets {settings.interval * 1000:g} ms apart do not fit in "
                f"the timeout: sending {count}"
            )
        note(
            f"sending {count} packets of {settings.size} octets "
            f"{settings.interval * 1000:g} ms apart to {peer[0]} port {peer[1]}"
        )
        first = time.monotonic()
        for sequence in range(count):
            pause = first + sequence * settings.interval - time.monotonic()
            if pause > 0:
                await _wait(session.stop, pause)
            if session.stop.is_set():
                break
            packet = SenderPacket(sequence, ntp_now()).encode(settings.size)
            session.sent_at[sequence] = time.monotonic()
            transport.sendto(packet)
        session.expected = len(session.sent_at)
        if len(session.rtt_by_sequence) >= session.expected:
            return
        last_sent = max(session.sent_at.values(), default=first)
        listen_until = min(last_sent + settings.wait, deadline)
        await _wait(session.stop, listen_until - time.monotonic())


def _settings_problem(settings: StampSettings) -> str | None:
    if not BASE_SIZE <= settings.size <= MAX_SIZE:
        return (
            f"size {settings.size} is out of range: a STAMP packet takes "
            f"{BASE_SIZE} to {MAX_SIZE} octets"
        )
    if not 1 <= settings.port <= 65535:
        return f"port {settings.port} is not a UDP port"
    if settings.count < 1:
        return f"count {settings.count}: at least one packet is needed"
    if settings.interval < 0 or settings.wait < 0:
        return "interval and wait cannot be negative"
    return None


def _packets_that_fit(settings: StampSettings, available: float) -> int:
    """As many packets as fit in the time left, keeping some of it to hear the replies."""
    if settings.count == 1 or settings.interval <= 0:
        return settings.count
    listening = min(settings.wait, available / 4)
    fit = int((available - listening) / settings.interval) + 1
    return max(1, min(settings.count, fit))


async def _wait(event: asyncio.Event, seconds: float) -> None:
    if seconds <= 0 or event.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


def _summarize(session: _Session, result: ProbeResult, note: Callable[[str], None]) -> None:
    sent = len(session.sent_at)
    received = len(session.rtt_by_sequence)
    result.packets_sent = sent
    result.packets_received = received
    if sent:
        result.packet_loss_ratio = (sent - received) / sent
    if received:
        rtts = session.rtt_in_arrival_order
        result.rtt_samples = list(rtts)
        result.rtt_seconds = statistics.fmean(rtts)
        result.rtt_min_seconds = min(rtts)
        result.rtt_max_seconds = max(rtts)
        residence = statistics.fmean(session.residence)
        result.values["stamp_reflector_residence_seconds"] = residence
        note(
            f"{received} of {sent} answered; RTT min/avg/max "
            f"{result.rtt_min_seconds * 1000:.3f}/{result.rtt_seconds * 1000:.3f}/"
            f"{result.rtt_max_seconds * 1000:.3f} ms; reflector held packets "
            f"{residence * 1000:.3f} ms on average; TTL on arrival at the reflector: "
            f"{', '.join(str(ttl) for ttl in sorted(session.ttls))}"
        )
    if received >= 2:
        result.jitter_seconds = rfc3550_jitter(session.rtt_in_arrival_order)
        in_sequence = [session.rtt_by_sequence[s] for s in sorted(session.rtt_by_sequence)]
        mad = mean_successive_difference(in_sequence)
        result.values["stamp_jitter_mad_seconds"] = mad
        note(
            f"jitter (RFC 3550) {result.jitter_seconds * 1000:.3f} ms; mean successive "
            f"RTT difference {mad * 1000:.3f} ms"
        )
    lost = [s for s in session.sent_at if s not in session.rtt_by_sequence]
    if lost:
        shown = ", ".join(str(s) for s in lost[:20]) + (", ..." if len(lost) > 20 else "")
        note(f"{len(lost)} lost (sequence numbers {shown})")
    if session.anomalies > _MAX_NOTED_ANOMALIES:
        note(f"{session.anomalies} stray datagrams ignored in all")
    if session.refused:
        result.reason = "refused"
    elif received == 0:
        result.reason = "no_reply"
        note("no reply: the reflector is down, filtered, or not a STAMP reflector")
    else:
        result.success = True


def rfc3550_jitter(transits: list[float]) -> float:
    """RFC 3550 interarrival jitter over transit times given in arrival order."""
    jitter = 0.0
    for previous, current in itertools.pairwise(transits):
        jitter += (abs(current - previous) - jitter) / 16
    return jitter


def mean_successive_difference(values: list[float]) -> float:
    return statistics.fmean(abs(b - a) for a, b in itertools.pairwise(values))
