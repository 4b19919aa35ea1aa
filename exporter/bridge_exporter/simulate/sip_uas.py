"""A SIP user agent server for the simulator: answers OPTIONS, refuses the rest.

Stateless: every request (a UDP retransmission included) gets its own answer, which is
what a prober sees from a real endpoint that keeps no transaction state for OPTIONS.
Faults shape the answer: network delay and jitter, UDP loss, a slow answer preceded by
100 Trying, another final code (503), or bytes that are not SIP at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..probes.netutil import bracket
from ..sipmsg import SipMessage, build_response, parse_message, stream_frame_length
from .faults import Fault

log = logging.getLogger("bridge_exporter.simulate")

SERVER_HEADER = "bridge-exporter-simulator"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
# A provisional answer first when the final one takes longer than this (RFC 3261 would
# leave a non-INVITE client retransmitting; 100 Trying tells it the request arrived).
TRYING_AFTER_SECONDS = 0.2
MAX_STREAM_BUFFER = 65536

REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
}


@dataclass
class UasContext:
    """What the UAS needs to know about its endpoint, read afresh for every request."""

    address: str
    port: int
    fault: Callable[[], Fault]
    is_down: Callable[[], bool]
    rng: random.Random


def plan_answers(
    context: UasContext, data: bytes, source: tuple[str, int], transport: str
) -> list[tuple[float, bytes]]:
    """What to send back for `data` and after how many seconds; [] to stay silent."""
    request = parse_message(data)
    if request is None or request.is_response or request.method == "ACK":
        return []  # malformed input and responses are ignored; ACK is never answered
    fault = context.fault()
    network_delay = fault.network_delay(context.rng)
    if fault.garbage:
        return [(network_delay, _garbage(context.rng))]
    received = source if transport == "UDP" else None
    if request.method != "OPTIONS":
        answer = build_response(
            request, 501, REASONS[501], [("Allow", ALLOW), ("Server", SERVER_HEADER)]
        )
        return [(network_delay, answer)]
    answers: list[tuple[float, bytes]] = []
    if fault.sip_delay_seconds > TRYING_AFTER_SECONDS:
        trying = build_response(
            request, 100, REASONS[100], [("Server", SERVER_HEADER)], received=received
        )
        answers.append((network_delay, trying))
    code = fault.sip_status
    final = build_response(
        request,
        code,
        REASONS.get(code, "Unknown"),
        _final_headers(context, request, code, transport),
        received=received,
    )
    answers.append((network_delay + fault.sip_delay_seconds, final))
    return answers


def _final_headers(
    context: UasContext, request: SipMessage, code: int, transport: str
) -> list[tuple[str, str]]:
    headers = [("Server", SERVER_HEADER)]
    if 200 <= code < 300:
        contact = f"sip:{bracket(context.address)}:{context.port};transport={transport.lower()}"
        headers += [
            ("Contact", f"<{contact}>"),
            ("Allow", ALLOW),
            ("Accept", "application/sdp"),
            ("Accept-Language", "en, vi"),
            ("Supported", "replaces, timer"),
        ]
    elif code == 503:
        headers.append(("Retry-After", "60"))
    return headers


def _garbage(rng: random.Random) -> bytes:
    # Never a valid SIP start line: the first byte is not a letter.
    return b"\x00" + rng.randbytes(rng.randint(16, 200))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class SipUdpProtocol(asyncio.DatagramProtocol):
    """Bound for the simulator's whole life: a down endpoint is silent, not refused."""

    def __init__(self, context: UasContext):
        self.context = context
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        context = self.context
        if context.is_down() or not _is_loopback(addr[0]):
            return
        fault = context.fault()
        if fault.loss_ratio > 0 and context.rng.random() < fault.loss_ratio:
            return
        loop = asyncio.get_running_loop()
        for delay, answer in plan_answers(context, data, addr, "UDP"):
            if delay <= 0:
                self._send(answer, addr)
            else:
                loop.call_later(delay, self._send, answer, addr)

    def _send(self, answer: bytes, addr: tuple) -> None:
        # A fault set while the answer was "in flight" swallows it, as a dead link would.
        if self.transport is None or self.transport.is_closing() or self.context.is_down():
            return
        self.transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("sip udp %s: %s", self.context.address, exc)


class SipTcpProtocol(asyncio.Protocol):
    """One TCP connection; messages are framed by Content-Length (RFC 3261 18.3)."""

    def __init__(self, context: UasContext):
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.peer: tuple = ("", 0)
        self.buffer = b""
        self.timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("", 0)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while (length := stream_frame_length(self.buffer)) is not None:
            frame, self.buffer = self.buffer[:length], self.buffer[length:]
            for delay, answer in plan_answers(self.context, frame, self.peer, "TCP"):
                if delay <= 0:
                    self._send(answer)
                else:
                    self.timers = [t for t in self.timers if t.when() > loop.time()]
                    self.timers.append(loop.call_later(delay, self._send, answer))
        if len(self.buffer) > MAX_STREAM_BUFFER:
            log.debug("sip tcp %s: no SIP framing in 64 KiB, closing", self.context.address)
            self.transport.close()  # type: ignore[union-attr]

    def _send(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class IdleTcpProtocol(asyncio.Protocol):
    """Accepts a connection and reads whatever comes (H.323 call signalling, plain TCP
    checks): connecting is all the `h323` and `tcp` probers test."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass
