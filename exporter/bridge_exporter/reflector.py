"""A stateless STAMP Session-Reflector (RFC 8762 section 4.3, unauthenticated mode).

Every test packet is answered with the sender's own sequence number (stateless mode), the
time it arrived, the time the answer leaves, the sender's fields and the TTL (IPv4) or Hop
Limit (IPv6) it arrived with. The reply is as large as the request.

The simulator imposes network faults here: an `Impairment` factory is asked per packet
whether to drop it, or how long to hold it before answering (the hold is part of the
"network" the prober measures, so it counts in the reflector's residence time).

The socket is read with `recvmsg` (a reader on the event loop) rather than through a
DatagramProtocol because only `recvmsg` returns the received TTL / Hop Limit, which RFC
8762 section 4.3.1 asks the reflector to copy into its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .stamp_packet import (
    DEFAULT_ERROR_ESTIMATE,
    PacketError,
    ReflectorPacket,
    SenderPacket,
    ntp_from_unix,
)

log = logging.getLogger(__name__)

STAMP_PORT = 862
# linux/in.h; the socket module does not export it.
_IP_RECVTTL = 12
_ANCILLARY_SPACE = 256
_READS_PER_WAKEUP = 64  # leave the loop to other work under a flood


@dataclass
class Impairment:
    """Network faults the reflector imposes on each packet it answers."""

    delay_seconds: float = 0.0
    jitter_seconds: float = 0.0  # the hold is delay + uniform(-jitter, +jitter), at least 0
    loss_ratio: float = 0.0  # probability that a packet is dropped
    down: bool = False  # drop everything
    rng: random.Random | None = None  # a seeded generator makes a run reproducible

    def hold_seconds(self) -> float | None:
        """How long to hold this packet before answering, or None to drop it."""
        if self.down:
            return None
        rng = self.rng or random
        if self.loss_ratio > 0 and rng.random() < self.loss_ratio:
            return None
        hold = self.delay_seconds
        if self.jitter_seconds > 0:
            hold += rng.uniform(-self.jitter_seconds, self.jitter_seconds)
        return max(0.0, hold)


class StampReflector:
    """One listening socket. Counters: received (test packets), reflected, dropped (by
    the impairment), ignored (not STAMP), send_errors."""

    def __init__(
        self,
        sock: socket.socket,
        impairment: Callable[[], Impairment] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._sock = sock
        self._impairment = impairment
        self._loop = loop
        self._pending: set[asyncio.TimerHandle] = set()
        self._closed = False
        self.received = 0
        self.reflected = 0
        self.dropped = 0
        self.ignored = 0
        self.send_errors = 0
        self.address: tuple = sock.getsockname()
        loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._sock.close()

    def _on_readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, ancillary, _flags, peer = self._sock.recvmsg(65535, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # e.g. ECONNREFUSED left by an ICMP error for an earlier answer.
                log.debug("stamp reflector: receive error: %s", error)
                continue
            self._on_datagram(data, ancillary, peer)

    def _on_datagram(self, data: bytes, ancillary: list, peer: tuple) -> None:
        receive_timestamp = ntp_from_unix(time.time())
        try:
            request = SenderPacket.decode(data)
        except PacketError as error:
            self.ignored += 1
            log.debug("stamp reflector: ignored a datagram from %s: %s", peer[0], error)
            return
        self.received += 1
        hold = self._impairment().hold_seconds() if self._impairment else 0.0
        if hold is None:
            self.dropped += 1
            return
        ttl = _received_ttl(ancillary)
        if hold <= 0:
            self._answer(request, receive_timestamp, ttl, len(data), peer, None)
            return
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            self._answer(request, receive_timestamp, ttl, len(data), peer, handle)

        handle = self._loop.call_later(hold, fire)
        self._pending.add(handle)

    def _answer(
        self,
        request: SenderPacket,
        receive_timestamp: int,
        ttl: int,
        size: int,
        peer: tuple,
        handle: asyncio.TimerHandle | None,
    ) -> None:
        if handle is not None:
            self._pending.discard(handle)
        if self._closed:
            return
        reply = ReflectorPacket(
            sequence=request.sequence,  # stateless: the sender's own number
            timestamp=ntp_from_unix(time.time()),
            error_estimate=DEFAULT_ERROR_ESTIMATE,
            receive_timestamp=receive_timestamp,
            sender_sequence=request.sequence,
            sender_timestamp=request.timestamp,
            sender_error_estimate=request.error_estimate,
            sender_ttl=ttl,
            padding=request.padding,
        )
        try:
            self._sock.sendto(reply.encode(size), peer)
        except OSError as error:
            self.send_errors += 1
            log.debug("stamp reflector: could not answer %s: %s", peer[0], error)
            return
        self.reflected += 1


def _received_ttl(ancillary: list) -> int:
    for level, kind, data in ancillary:
        if (level, kind) in (
            (socket.IPPROTO_IP, socket.IP_TTL),
            (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT),
        ) and len(data) >= 4:
            return struct.unpack("=i", data[:4])[0] & 0xFF
    return 0  # unknown: no packet arrives with TTL 0


async def _bind(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    if host in ("", "*"):
        # All addresses: one IPv6 socket that also takes IPv4, or IPv4 alone.
        candidates = [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
    else:
        infos = await loop.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        candidates = [(family, address) for family, _, _, _, address in infos[:1]]
    last_error: OSError | None = None
    for family, address in candidates:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setblocking(False)
            sock.bind(address)
        except OSError as error:
            sock.close()
            last_error = error
            continue
        _ask_for_ttl(sock, family)
        return sock
    raise last_error or OSError(f"cannot listen on {host}:{port}")


def _ask_for_ttl(sock: socket.socket, family: int) -> None:
    # Best effort: without it the reflector still answers, with TTL 0 (unknown).
    options = []
    if sys.platform.startswith("linux"):
        options.append((socket.IPPROTO_IP, _IP_RECVTTL))  # also IPv4 on a dual-stack socket
    if family == socket.AF_INET6:
        options.append((socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT))
    for level, option in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, 1)


async def start_reflector(
    host: str, port: int, impairment: Callable[[], Impairment] | None = None
) -> StampReflector:
    """Listen for STAMP test packets on host:port (port 0 picks a free one; host "" means
    every address) and answer them until `.close()`. `impairment`, if given, is called
    for every packet and its answer decides whether and when the packet is reflected."""
    sock = await _bind(host, port)
    reflector = StampReflector(sock, impairment, asyncio.get_running_loop())
    log.info("stamp reflector listening on %s port %d", reflector.address[0], reflector.port)
    return reflector


async def run_reflector(
    listen: list[tuple[str, int]], *, impairment: Callable[[], Impairment] | None = None
) -> None:
    """Serve STAMP on every (host, port) in `listen` until cancelled.

    The usual port is 862, the port IANA registered for TWAMP/STAMP test packets and the
    one RFC 8762 reflectors listen on by default; it is below 1024, so binding it needs
    root or CAP_NET_BIND_SERVICE.
    """
    reflectors: list[StampReflector] = []
    try:
        for host, port in listen:
            reflectors.append(await start_reflector(host, port, impairment))
        await asyncio.Event().wait()
    finally:
        for reflector in reflectors:
            reflector.close()


__all__ = [
    "STAMP_PORT",
    "Impairment",
    "StampReflector",
    "run_reflector",
    "start_reflector",
]
