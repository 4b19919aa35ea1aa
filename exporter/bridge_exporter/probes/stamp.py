"""Voice-like UDP quality test: a STAMP Session-Sender (RFC 8762, unauthenticated mode).

A train of `count` test packets of `size` octets, `interval` apart (160 octets every 20 ms
looks like a G.711 voice stream), goes to a STAMP reflector on one connected UDP socket.
A reply counts only if it echoes the Session-Sender Sequence Number AND Timestamp of a
packet we sent, so both stateless and stateful reflectors work, while our own packets
coming back (an echo service, or a socket the kernel happened to connect to itself) do
not: read as a reflector packet, a sender packet echoes sequence 0 with timestamp 0.
A socket connected to itself (the kernel picked the target's own port for it, possible
when nothing listens there) is replaced before anything is sent. Figures:

- round-trip time per answered packet: the kernel's receive timestamp (SO_TIMESTAMPNS)
  minus the send time, both on the wall clock, so a busy event loop that reads replies
  late does not lengthen them; the monotonic clock (send to read) when the kernel gives
  no timestamp or the wall clock was stepped. The reflector's residence time (its
  transmit minus receive timestamp) is NOT subtracted, because a reflector that holds
  packets stands for the network (that is how the simulator imposes delay); its mean is
  reported as `stamp_reflector_residence_seconds` for information;
- loss ratio = unanswered / sent;
- jitter = RFC 3550 section 6.4.1 interarrival jitter, J += (|D| - J) / 16 over the
  replies in arrival order, where D is the difference between successive round-trip
  times (the round trip plays the role of the transit time; clock offsets cancel);
- `stamp_jitter_mad_seconds` = mean absolute difference of successive round-trip times
  in sequence order, the definition the ICMP prober uses, so the two compare.

An ICMP error (port unreachable while a reflector restarts, host unreachable) or a failed
send costs only the packets it concerns: a train with replies reports its figures. Only
a refusal before any reply ends the train early (reason `refused`: nothing listens); a
train without replies fails with the reason of its first socket error, else `no_reply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..stamp_packet import (
    BASE_SIZE,
    MAX_SIZE,
    PacketError,
    ReflectorPacket,
    SenderPacket,
    ntp_from_unix,
)
from . import reasons
from .base import (
    ProbeFailed,
    Prober,
    ProbeResult,
    Seconds,
    Target,
    debug_note,
    mean_successive_difference,
)
from .netutil import (
    Arrival,
    Instant,
    ResolveError,
    TimestampedUdp,
    classify_os_error,
    connect_udp,
    resolve,
)

_MAX_NOTED_ANOMALIES = 5


@dataclass
class StampSettings:
    # Seconds is an immutable float, so a shared default instance is safe (RUF009).
    port: int = 862  # IANA port for STAMP / TWAMP test packets
    count: int = 50  # packets per round
    interval: Seconds = Seconds(0.02)  # noqa: RUF009 - between packets; 20 ms = a voice frame
    size: int = 160  # UDP payload octets; at least the 44-octet STAMP packet
    wait: Seconds = Seconds(1.0)  # noqa: RUF009 - how long late replies are awaited

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it)."""
        found = []
        if not BASE_SIZE <= self.size <= MAX_SIZE:
            found.append(
                f"size {self.size} is out of range: a STAMP packet takes "
                f"{BASE_SIZE} to {MAX_SIZE} octets"
            )
        if not 1 <= self.port <= 65535:
            found.append(f"port {self.port} is not a UDP port")
        if self.count < 1:
            found.append(f"count {self.count}: at least one packet is needed")
        if self.interval < 0 or self.wait < 0:
            found.append("interval and wait cannot be negative")
        return found


@dataclass(frozen=True)
class _Sent:
    at: Instant
    timestamp: int  # the NTP timestamp the packet carried, which a reply must echo


class _Session:
    """The receiving half of one probe: matches replies to what was sent."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note
        self.sent: dict[int, _Sent] = {}  # by sequence number
        self.rtt_by_sequence: dict[int, float] = {}
        self.rtt_in_arrival_order: list[float] = []
        self.residence: list[float] = []
        self.ttls: set[int] = set()
        self.anomalies = 0
        self.errors: list[OSError] = []  # socket errors (ICMP errors arrive as these)
        self.expected: int | None = None  # known once sending is over
        self.stop = asyncio.Event()  # refused before any reply, or every sent packet answered

    def datagram_received(self, data: bytes, arrival: Arrival) -> None:
        try:
            reply = ReflectorPacket.decode(data)
        except PacketError as error:
            self._anomaly(f"ignored a datagram: {error}")
            return
        sequence = reply.sender_sequence
        sent = self.sent.get(sequence)
        if sent is None:
            self._anomaly(f"ignored a reply for sequence {sequence}, which was not sent")
            return
        if reply.sender_timestamp != sent.timestamp:
            self._anomaly(
                f"ignored a datagram for sequence {sequence} that does not echo the timestamp "
                "sent with it: not a reflector's answer (our own packet, or an echo service?)"
            )
            return
        if sequence in self.rtt_by_sequence:
            self._anomaly(f"ignored a duplicate reply for sequence {sequence}")
            return
        rtt = arrival.since(sent.at)
        self.rtt_by_sequence[sequence] = rtt
        self.rtt_in_arrival_order.append(rtt)
        self.residence.append(reply.residence_seconds)
        self.ttls.add(reply.sender_ttl)
        if self.expected is not None and len(self.rtt_by_sequence) >= self.expected:
            self.stop.set()

    def error_received(self, exc: OSError) -> None:
        """An ICMP error for one of our packets, or a failed send. The first refusal
        before any reply ends the train (nothing listens there); anything else is noted
        and the train goes on: one lost packet must not cost the figures of the others."""
        self.errors.append(exc)
        refused = isinstance(exc, ConnectionRefusedError)
        if len(self.errors) <= _MAX_NOTED_ANOMALIES:
            what = "ICMP port unreachable" if refused else "socket error"
            self.note(f"{what} ({classify_os_error(exc)}): {exc}")
        if refused and not self.rtt_by_sequence:
            self.note("refused before any reply: nothing listens on the STAMP port")
            self.stop.set()

    def _anomaly(self, text: str) -> None:
        self.anomalies += 1
        if self.anomalies <= _MAX_NOTED_ANOMALIES:
            self.note(text)


class StampProber(Prober):
    kind = "stamp"
    Settings = StampSettings

    async def probe_until(
        self, target: Target, settings: StampSettings, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = ProbeResult(success=False)
        note = debug_note(result, log, self.kind, target.endpoint_id)
        try:
            await self._run(target, settings, deadline, result, note)
        finally:
            result.duration_seconds = loop.time() - started
        return result

    async def _run(
        self,
        target: Target,
        settings: StampSettings,
        deadline: float,
        result: ProbeResult,
        note: Callable[[str], None],
    ) -> None:
        # Settings made in code rather than loaded from an inventory were never checked.
        problems = settings.problems()
        if problems:
            result.reason = reasons.BAD_SETTINGS
            for problem in problems:
                note(problem)
            return
        session = _Session(note)
        try:
            channel = await self._open(target.address, settings.port, deadline, session, note)
        except ProbeFailed as failure:
            result.reason = failure.reason
            note(str(failure))
            return
        try:
            await self._exchange(channel, session, settings, deadline, note)
            channel.read_queued()  # replies a busy loop has not read yet arrived in time
        finally:
            channel.close()
        _summarize(session, result, note)

    async def _open(
        self,
        address: str,
        port: int,
        deadline: float,
        session: _Session,
        note: Callable[[str], None],
    ) -> TimestampedUdp:
        try:
            async with asyncio.timeout_at(deadline):
                family, sockaddr = await resolve(address, port)
        except TimeoutError:
            text = f"resolving {address} took the whole timeout"
            raise ProbeFailed(reasons.TIMEOUT, text) from None
        except ResolveError as error:
            raise ProbeFailed(reasons.RESOLVE_FAILED, str(error)) from None
        except OSError as error:  # e.g. EMFILE while the resolver loads what it needs
            raise ProbeFailed(classify_os_error(error), f"resolving {address}: {error}") from None
        try:
            sock, given_up = connect_udp(family, sockaddr)
            channel = TimestampedUdp(sock, session.datagram_received, session.error_received)
        except OSError as error:
            raise ProbeFailed(
                classify_os_error(error),
                f"cannot open a UDP socket to {sockaddr[0]} port {port}: {error}",
            ) from None
        if given_up:
            note(
                f"the kernel gave our socket the target's own address and port "
                f"({sockaddr[0]} port {port}), so it was connected to itself: replaced it"
            )
        if not channel.kernel_timestamps:
            note("no kernel receive timestamps: RTTs include event-loop delays")
        return channel

    async def _exchange(
        self,
        channel: TimestampedUdp,
        session: _Session,
        settings: StampSettings,
        deadline: float,
        note: Callable[[str], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        peer = channel.remote
        count = _packets_that_fit(settings, deadline - loop.time())
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
            now = Instant.now()
            timestamp = ntp_from_unix(now.wall)
            session.sent[sequence] = _Sent(now, timestamp)
            channel.send(SenderPacket(sequence, timestamp).encode(settings.size))
        session.expected = len(session.sent)
        if len(session.rtt_by_sequence) >= session.expected:
            return
        last_sent = max((sent.at.monotonic for sent in session.sent.values()), default=first)
        listening = min(last_sent + settings.wait - time.monotonic(), deadline - loop.time())
        await _wait(session.stop, listening)


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
        async with asyncio.timeout(seconds):
            await event.wait()


def _summarize(session: _Session, result: ProbeResult, note: Callable[[str], None]) -> None:
    sent = len(session.sent)
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
    lost = [s for s in session.sent if s not in session.rtt_by_sequence]
    if lost:
        shown = ", ".join(str(s) for s in lost[:20]) + (", ..." if len(lost) > 20 else "")
        note(f"{len(lost)} lost (sequence numbers {shown})")
    if session.anomalies > _MAX_NOTED_ANOMALIES:
        note(f"{session.anomalies} stray datagrams ignored in all")
    if len(session.errors) > _MAX_NOTED_ANOMALIES:
        note(f"{len(session.errors)} socket errors in all")
    if received:
        result.success = True
    elif session.errors:
        result.reason = classify_os_error(session.errors[0])
    else:
        result.reason = reasons.NO_REPLY
        note("no reply: the reflector is down, filtered, or not a STAMP reflector")


def rfc3550_jitter(transits: list[float]) -> float:
    """RFC 3550 interarrival jitter over transit times given in arrival order."""
    jitter = 0.0
    for previous, current in itertools.pairwise(transits):
        jitter += (abs(current - previous) - jitter) / 16
    return jitter
