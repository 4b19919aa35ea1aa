"""ICMP echo ("ping") prober: a train of echo requests per target, through shared sockets.

One socket per address family serves every target of the process. A single reader
(`loop.add_reader`) hands each echo reply to the request waiting for it, so 10,000
targets probed at once cost no extra sockets or threads.

Socket kinds, best first:
- raw (SOCK_RAW, needs CAP_NET_RAW): we choose the echo identifier (random per process)
  and match replies on identifier + sequence;
- ping socket (SOCK_DGRAM + IPPROTO_ICMP, allowed by net.ipv4.ping_group_range): the
  kernel rewrites the identifier to the socket's own, so replies match on sequence only.
Either way each request carries a random 8-byte cookie and a send stamp in its payload,
and a reply counts only if it echoes them back: a late reply for a sequence number that
has since been reused is ignored rather than credited to the wrong request.

Figures of one probe (one train of `count` requests):
- packet_loss_ratio = 1 - received / sent;
- rtt_seconds = mean RTT of the answered requests, with rtt_min/max_seconds;
- jitter_seconds = mean absolute difference between the RTTs of successive answered
  requests, in send order (as mtr and icmplib report it); 0 with one reply, None with none.
RTTs use the kernel's receive timestamp when available, so a busy event loop does not
inflate them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ticks import TICK_SECONDS, timers_of
from . import reasons
from .base import (
    ProbeFailed,
    Prober,
    ProbeResult,
    Seconds,
    Target,
    debug_note,
    mean_successive_difference,
    wants_debug_text,
)
from .netutil import (
    ask_for_receive_timestamps,
    classify_os_error,
    elapsed_between,
    kernel_receive_time,
)

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129

# Linux socket options the socket module does not name.
SOL_RAW = 255
ICMP_FILTER = 1  # level SOL_RAW: bitmask of ICMP types (< 32) to drop
ICMP6_FILTER = 1  # level IPPROTO_ICMPV6: 256-bit mask of ICMPv6 types to drop
SO_RCVBUFFORCE = 33

TOKEN_SIZE = 16  # random 8-byte cookie + 8-byte send stamp at the start of the payload
SEQUENCE_SPACE = 1 << 16
SOCKET_BUFFER_BYTES = 8 << 20  # room for a burst of replies from thousands of targets
RECV_BUDGET = 512  # replies handled per reader callback before yielding to the loop
READ_EVERY_SENDS = 64
SEQUENCE_RETRY_SECONDS = 0.01  # how often a train waits for a free sequence number

NOT_PERMITTED_PROBLEM = (
    "ICMP probes cannot run: this process may not open raw or ping sockets. "
    "Fix: sysctl -w net.ipv4.ping_group_range='0 2147483647' (allow ping sockets for all "
    "groups) or give the exporter CAP_NET_RAW (systemd AmbientCapabilities=CAP_NET_RAW, "
    "docker --cap-add NET_RAW, or setcap cap_net_raw+ep on the real Python binary, not "
    "on a virtualenv's script)."
)


DEFAULT_INTERVAL = Seconds(0.2)
DEFAULT_PACKET_TIMEOUT = Seconds(1.0)


@dataclass
class IcmpSettings:
    count: int = 5
    interval: Seconds = DEFAULT_INTERVAL
    # ICMP payload bytes, as `ping -s`; at least 16 are always sent (cookie + stamp).
    size: int = 56
    # How long each request waits for its reply, capped by the probe's timeout.
    packet_timeout: Seconds = DEFAULT_PACKET_TIMEOUT
    # "auto": what the address is, or what a hostname resolves to (IPv4 preferred).
    ip_version: str = "auto"

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it)."""
        found = []
        if self.ip_version not in ("auto", "4", "6"):
            found.append(f'ip_version must be "auto", "4" or "6", not {self.ip_version!r}')
        if self.count < 1:
            found.append(f"count must be at least 1, not {self.count}")
        if self.packet_timeout <= 0:
            found.append("packet_timeout must be longer than 0s")
        if not 0 <= self.size <= 65000:
            found.append(f"size must be between 0 and 65000 bytes, not {self.size}")
        return found


def icmp_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement sum of big-endian 16-bit words, complemented.

    2**16 is 1 modulo 0xFFFF, so the sum of the words equals the whole packet read as
    one big number modulo 0xFFFF (with 0xFFFF for a non-zero multiple), at C speed."""
    if len(data) % 2:
        data += b"\0"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


@functools.lru_cache(maxsize=16)
def _filler(length: int) -> bytes:
    return bytes(i & 0xFF for i in range(max(0, length)))


@functools.lru_cache(maxsize=16)
def _filler_sum(length: int) -> int:
    """The filler's share of an RFC 1071 sum (it starts on a 16-bit word boundary), modulo
    0xFFFF as in icmp_checksum: a request's checksum then only adds up its few header and
    token words."""
    filler = _filler(length)
    if len(filler) % 2:
        filler += b"\0"
    return int.from_bytes(filler, "big") % 0xFFFF


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


class _Request:
    """One echo request waiting for its reply. (Its train holds it and it holds its
    train: the train breaks that cycle when it ends, so ended trains are freed at once
    rather than left to the cyclic garbage collector, thousands a second.)"""

    __slots__ = ("checksum", "position", "sent_monotonic", "sent_wall", "token", "train",
                 "wait_limit")  # fmt: skip

    def __init__(
        self, train: _Train | None, position: int, token: bytes, wait_limit: float
    ) -> None:
        self.train = train
        self.position = position  # in the train's send order
        self.token = token
        self.wait_limit = wait_limit  # seconds; a later reply counts as lost
        self.sent_wall = self.sent_monotonic = 0.0  # set when sent
        self.checksum = 0  # of the request (raw IPv4), to check the reply's cheaply


class _Train:
    """One probe's train of echo requests, driven by coarse timers (ticks.py): one per
    send and one for the whole train's expiry, and one future for the probe to wait on.
    (A coroutine sleep, a future and a timer per packet cost more CPU than the ping.)"""

    __slots__ = (
        "address", "channel", "count", "deadline", "done", "expires", "first_send",
        "interval", "loop", "note", "packet_timeout", "pending", "requests", "rtts",
        "send_error", "sending", "size", "timer",
    )  # fmt: skip

    def __init__(
        self,
        channel: _Channel,
        address: tuple[Any, ...],
        settings: IcmpSettings,
        deadline: float,
        note: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.loop = loop
        self.channel = channel
        self.address = address
        self.size = max(int(settings.size), TOKEN_SIZE)
        self.count = settings.count
        self.interval = float(settings.interval)
        self.packet_timeout = float(settings.packet_timeout)
        self.deadline = deadline
        self.note = note
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.rtts: list[float | None] = []  # per request sent, in send order; None: no reply
        self.requests: list[tuple[int, _Request]] = []
        self.pending = 0  # sent, neither answered nor expired
        self.sending = True
        self.expires = 0.0  # when the last request sent stops waiting (loop time)
        self.send_error: OSError | None = None
        self.timer: asyncio.TimerHandle | None = None  # waiting for a free sequence number
        self.first_send = self.loop.time()

    def start(self) -> None:
        if self.first_send >= self.deadline:
            self._stop_sending(0)
        else:
            self._send(0)

    def _send(self, index: int) -> None:
        self.timer = None
        if not self.sending:
            return  # the train ended (cancelled) while this send waited for its tick
        loop, channel = self.loop, self.channel
        now = loop.time()
        if index and now >= self.deadline:
            self._stop_sending(index)
            return
        sequence = channel.take_sequence()
        if sequence is None:  # 65,536 requests in flight: wait for one to end
            if now + SEQUENCE_RETRY_SECONDS < self.deadline:
                self.timer = loop.call_later(SEQUENCE_RETRY_SECONDS, self._send, index)
            else:
                self.note("timeout reached while waiting for a free sequence number")
                self._stop_sending(None)
            return
        token = random.getrandbits(64).to_bytes(8, "big") + time.time_ns().to_bytes(8, "big")
        wait_limit = min(self.packet_timeout, self.deadline - now)
        request = _Request(self, len(self.rtts), token, wait_limit)
        packet = channel.build_request(sequence, token, self.size, request)
        channel.in_flight[sequence] = request
        self.rtts.append(None)
        self.requests.append((sequence, request))
        self.pending += 1  # before sending: the send may read the reply at once
        try:
            channel.send(packet, self.address, request)
        except OSError as exc:
            channel.release(sequence, request)
            self.pending -= 1
            self.send_error = self.send_error or exc
            self.note(f"icmp_seq={sequence}: send failed: {_errno_name(exc)} ({exc.strerror})")
        else:
            self.expires = max(self.expires, now + wait_limit)
        following = index + 1
        if following >= self.count:
            self._stop_sending(None)
            return
        send_at = self.first_send + following * self.interval
        if send_at >= self.deadline:
            self._stop_sending(following)
        elif send_at + TICK_SECONDS >= self.deadline:
            # A tick late could be past the deadline, and the request would not be sent.
            self.timer = loop.call_at(send_at, self._send, following)
        else:
            # A coarse timer (ticks.py): a send runs up to one tick late; RTTs count from
            # the actual send, so only the spacing between a train's requests moves.
            channel.timers.call_at(send_at, self._send, following)

    def _stop_sending(self, unsent_from: int | None) -> None:
        if unsent_from is not None:
            self.note(f"timeout reached: {self.count - unsent_from} requests not sent")
        self.sending = False
        if self.pending:
            self.channel.timers.call_at(self.expires, self._expire)
        else:
            self.finish()

    def answer(self, request: _Request, rtt: float) -> None:
        self.rtts[request.position] = rtt if rtt <= request.wait_limit else None
        self.pending -= 1
        if not self.pending and not self.sending:
            self.finish()

    def _expire(self, _: None) -> None:
        if self.done.done():
            return
        # When the loop is busy the replies may be sitting in the socket buffer, received
        # in time (their kernel timestamps say so): read everything queued before giving up.
        self.channel.on_readable(budget=SEQUENCE_SPACE)
        self.finish()

    def finish(self) -> None:
        """End the train: what has not been answered is lost."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for sequence, request in self.requests:
            self.channel.release(sequence, request)
            request.train = None
        self.pending = 0
        self.sending = False
        if not self.done.done():
            self.done.set_result(None)


class _Channel:
    """One shared socket of one address family, and the requests in flight on it."""

    def __init__(
        self, family: int, sock: socket.socket, mode: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.family = family
        self.sock = sock
        self.mode = mode
        self.timers = timers_of(loop)
        self.identifier = random.getrandbits(16)
        if mode == "raw":
            _pass_only_our_identifier(sock, family, self.identifier)
        self.in_flight: dict[int, _Request] = {}
        self.next_sequence = random.getrandbits(16)
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)
        self.stray_replies = 0
        self._sends_since_read = 0
        if family == socket.AF_INET:
            self._echo_request, self._echo_reply = ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY
        else:
            self._echo_request, self._echo_reply = ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY

    # Sequence numbers: handed out round-robin over the whole 16-bit space, skipping any
    # still in flight, so a number comes back only after 65,535 others were used.
    def take_sequence(self) -> int | None:
        """A free sequence number, or None when all 65,536 are in flight."""
        if len(self.in_flight) >= SEQUENCE_SPACE:
            return None
        sequence = self.next_sequence
        while sequence in self.in_flight:
            sequence = (sequence + 1) % SEQUENCE_SPACE
        self.next_sequence = (sequence + 1) % SEQUENCE_SPACE
        return sequence

    def release(self, sequence: int, request: _Request) -> bool:
        """Stop waiting for the request's reply; False if it was not waiting."""
        if self.in_flight.get(sequence) is request:
            del self.in_flight[sequence]
            return True
        return False

    def build_request(self, sequence: int, token: bytes, size: int, request: _Request) -> bytes:
        checksum = 0  # ICMPv6 checksums cover the IPv6 pseudo-header: the kernel fills them in
        if self.family == socket.AF_INET:
            # icmp_checksum of the whole packet, from its parts (see _filler_sum).
            words = (
                self.identifier + sequence + int.from_bytes(token, "big") % 0xFFFF
                + _filler_sum(size - TOKEN_SIZE)
            )  # fmt: skip
            request.checksum = words % 0xFFFF  # what the reply, type 0, adds up to
            checksum = ~((words + (self._echo_request << 8)) % 0xFFFF or 0xFFFF) & 0xFFFF
        header = struct.pack("!BBHHH", self._echo_request, 0, checksum, self.identifier, sequence)
        return header + token + _filler(size - TOKEN_SIZE)

    def send(self, packet: bytes, address: tuple[Any, ...], request: _Request) -> None:
        request.sent_wall = time.time()
        request.sent_monotonic = time.monotonic()
        self.sock.sendto(packet, address)
        # A burst of sends (thousands of probes starting together) keeps the loop from
        # running the reader; read in between so replies don't overflow the buffer.
        self._sends_since_read += 1
        if self._sends_since_read >= READ_EVERY_SENDS:
            self.on_readable()

    def on_readable(self, budget: int = RECV_BUDGET) -> None:
        self._sends_since_read = 0
        for _ in range(budget):
            try:
                length, ancillary, _flags, _source = self.sock.recvmsg_into([self._view], 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # e.g. an ICMP error queued on the socket; nothing to hand to anyone.
                continue
            self._dispatch(length, ancillary, time.monotonic())

    def _dispatch(self, length: int, ancillary: list[Any], read_monotonic: float) -> None:
        start = 0
        if self.family == socket.AF_INET and self.mode == "raw":
            start = (self._buffer[0] & 0x0F) * 4  # raw IPv4 sockets include the IP header
        if length < start + 8 + TOKEN_SIZE:
            return
        kind, _code, _sum, identifier, sequence = struct.unpack_from("!BBHHH", self._buffer, start)
        # Echo requests to ourselves loop back on raw sockets: only replies are ours.
        if kind != self._echo_reply:
            return
        if self.mode == "raw" and identifier != self.identifier:
            return  # another program's ping
        request = self.in_flight.get(sequence)
        token = bytes(self._view[start + 8 : start + 8 + TOKEN_SIZE])
        if request is None or request.token != token:
            self.stray_replies += 1
            return
        # A raw IPv4 socket hands over what arrived without checking the ICMP checksum (the
        # kernel checks it for ping sockets and ICMPv6): a corrupted reply is no reply.
        if start and not self._checksum_holds(request, start, length):
            self.stray_replies += 1
            return
        train = request.train
        if train is not None and self.release(sequence, request):
            kernel_wall = kernel_receive_time(ancillary)
            rtt = elapsed_between(
                request.sent_wall, request.sent_monotonic, kernel_wall, read_monotonic
            )
            train.answer(request, rtt)

    def _checksum_holds(self, request: _Request, start: int, length: int) -> bool:
        """Whether a raw IPv4 reply's ICMP checksum is right. A reply that echoes our
        payload exactly (the usual case) adds up to the request's sum plus its checksum
        field; anything else is summed in full."""
        train = request.train
        echoed = self._view[start + 8 + TOKEN_SIZE : length]
        if train is not None and echoed == _filler(train.size - TOKEN_SIZE):
            type_and_code, checksum = struct.unpack_from("!HH", self._buffer, start)
            return (request.checksum + type_and_code + checksum) % 0xFFFF == 0
        return icmp_checksum(bytes(self._view[start:length])) == 0

    def close(self) -> None:
        for train in {request.train for request in self.in_flight.values()}:
            train.finish()
        self.in_flight.clear()
        self.sock.close()


def _open_socket(family: int, mode: str) -> socket.socket:
    protocol = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    kind = socket.SOCK_RAW if mode == "raw" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setblocking(False)
        _enlarge_buffers(sock)
        ask_for_receive_timestamps(sock)
        if mode == "raw":
            _pass_only_echo_replies(sock, family)
    except OSError:
        sock.close()
        raise
    return sock


@functools.lru_cache(maxsize=65536)  # every probe asks, and ipaddress parsing is slow
def _literal_family(address: str) -> int | None:
    """AF_INET or AF_INET6 for an IP address literal, None for a name."""
    try:
        literal = ipaddress.ip_address(address)
    except ValueError:
        return None
    return socket.AF_INET if literal.version == 4 else socket.AF_INET6


def _enlarge_buffers(sock: socket.socket) -> None:
    try:  # beyond net.core.rmem_max, when we hold CAP_NET_ADMIN
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)


# Classic BPF, as struct sock_filter {u16 code; u8 jt, jf; u32 k}: load the ICMP identifier
# (after the IPv4 header on a raw IPv4 socket; ICMPv6 sockets start at the ICMP header),
# keep the packet if it is ours, else drop it.
_BPF_LDX_MSH_B, _BPF_LD_H_IND, _BPF_LD_H_ABS, _BPF_JEQ_K, _BPF_RET_K = (
    0xB1, 0x48, 0x28, 0x15, 0x06,
)  # fmt: skip
_BPF_KEEP = 0x40000  # bytes of the packet to keep: all of it
SO_ATTACH_FILTER = 26


def _identifier_filter(family: int, identifier: int) -> list[tuple[int, int, int, int]]:
    load = (
        [(_BPF_LDX_MSH_B, 0, 0, 0), (_BPF_LD_H_IND, 0, 0, 4)]
        if family == socket.AF_INET
        else [(_BPF_LD_H_ABS, 0, 0, 4)]
    )
    return [*load, (_BPF_JEQ_K, 0, 1, identifier), (_BPF_RET_K, 0, 0, _BPF_KEEP),
            (_BPF_RET_K, 0, 0, 0)]  # fmt: skip


def _pass_only_our_identifier(sock: socket.socket, family: int, identifier: int) -> None:
    """A raw socket gets a copy of every echo reply the host receives: other pingers',
    and other exporters' on the same host (shards). Let the kernel drop the replies to
    other identifiers, so their cost is not ours (the reader checks the identifier too)."""
    program = _identifier_filter(family, identifier)
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    with contextlib.suppress(OSError):  # not fatal: the reader checks the identifier too
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _pass_only_echo_replies(sock: socket.socket, family: int) -> None:
    """A raw socket gets a copy of every ICMP message the host receives; let the kernel
    drop all but echo replies so a busy host does not flood the reader."""
    try:
        if family == socket.AF_INET:
            blocked = ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", blocked))
        else:
            words = [0xFFFFFFFF] * 8
            words[ICMP6_ECHO_REPLY >> 5] &= ~(1 << (ICMP6_ECHO_REPLY & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
    except OSError:
        pass  # not fatal: the reader checks the type itself


class IcmpProber(Prober):
    """ICMP echo prober; see the module docstring for the figures it reports."""

    kind = "icmp"
    Settings = IcmpSettings

    def __init__(self, allowed_modes: tuple[str, ...] = ("raw", "dgram")) -> None:
        self._allowed_modes = allowed_modes
        self._channels: dict[int, _Channel] = {}
        self._not_permitted: set[int] = set()
        self._unavailable: dict[int, str] = {}
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._log = logging.getLogger(__name__)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        for family in (socket.AF_INET, socket.AF_INET6):
            channel = self._open_channel(family)
            if channel is not None:
                self._channels[family] = channel
                loop.add_reader(channel.sock.fileno(), channel.on_readable)
        problem = self.startup_problem()
        if problem:
            self._log.warning("%s", problem)

    def _open_channel(self, family: int) -> _Channel | None:
        denied = False
        for mode in self._allowed_modes:
            try:
                assert self._loop is not None
                return _Channel(family, _open_socket(family, mode), mode, self._loop)
            except PermissionError:
                denied = True
            except OSError as exc:  # e.g. IPv6 disabled in this kernel
                self._unavailable[family] = _errno_name(exc)
                return None
        if denied:
            self._not_permitted.add(family)
        return None

    async def close(self) -> None:
        if not self._started:
            return
        loop = asyncio.get_running_loop()
        for channel in self._channels.values():
            loop.remove_reader(channel.sock.fileno())
            channel.close()
        self._channels.clear()
        self._started = False

    def startup_problem(self) -> str | None:
        if self._not_permitted:
            return NOT_PERMITTED_PROBLEM
        return None

    def socket_mode(self) -> str:
        """The socket kind IPv4 probes use ("raw", "dgram" or "none"; IPv6's if only
        IPv6 could be opened), for the landing page."""
        for family in (socket.AF_INET, socket.AF_INET6):
            if family in self._channels:
                return self._channels[family].mode
        return "none"

    def sockets(self) -> dict[str, socket.socket]:
        """The shared sockets by family ("ipv4", "ipv6"), for status and tests."""
        names = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
        return {names[family]: channel.sock for family, channel in self._channels.items()}

    def channel(self, family: int) -> _Channel | None:
        """The shared socket and in-flight requests of one address family."""
        return self._channels.get(family)

    async def probe_until(
        self, target: Target, settings: Any, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        if not self._started:
            await self.start()
        loop = self._loop  # the one the shared sockets' readers run on
        assert loop is not None
        began = loop.time()
        result = ProbeResult(success=False)
        note = debug_note(result, log, self.kind, target.endpoint_id)

        def finish(reason: str) -> ProbeResult:
            result.reason = reason
            result.duration_seconds = loop.time() - began
            return result

        if not self._channels and self._not_permitted:
            note(NOT_PERMITTED_PROBLEM)
            return finish(reasons.ICMP_NOT_PERMITTED)

        try:
            family, address = await self._resolve(
                target.address, settings.ip_version, deadline, note
            )
        except ProbeFailed as failure:
            note(str(failure))
            return finish(failure.reason)
        channel = self._channels.get(family)
        if channel is None:
            if family in self._not_permitted:
                note(NOT_PERMITTED_PROBLEM)
                return finish(reasons.ICMP_NOT_PERMITTED)
            version = "4" if family == socket.AF_INET else "6"
            note(f"no IPv{version} ICMP socket: {self._unavailable.get(family, 'unavailable')}")
            return finish(
                reasons.IPV4_UNAVAILABLE if family == socket.AF_INET else reasons.IPV6_UNAVAILABLE
            )

        verbose = wants_debug_text(log)
        if verbose:
            note(
                f"pinging {address[0]} with a {channel.mode} socket: count={settings.count} "
                f"interval={settings.interval}s packet_timeout={settings.packet_timeout}s"
            )
        rtts, send_error = await self._send_train(
            channel, address, settings, deadline, note, verbose
        )
        self.summarize(rtts, result)
        if result.packets_received:
            result.success = True
            return finish("")
        if send_error is not None:
            return finish(classify_os_error(send_error))
        return finish(reasons.NO_REPLY)

    async def _resolve(
        self, address: str, ip_version: str, deadline: float, note: Callable[[str], None]
    ) -> tuple[int, tuple[Any, ...]]:
        """(family, sockaddr) to ping; ProbeFailed when there is none by the deadline."""
        wanted = {"4": socket.AF_INET, "6": socket.AF_INET6}.get(ip_version)
        family = _literal_family(address)
        if family is not None:  # fast path: no resolver thread for 10,000 literals
            if wanted is not None and wanted != family:
                version = 4 if family == socket.AF_INET else 6
                raise ProbeFailed(
                    reasons.RESOLVE_FAILED,
                    f"{address} is an IPv{version} address but ip_version={ip_version}",
                )
            return family, ((address, 0) if family == socket.AF_INET else (address, 0, 0, 0))
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                infos = await loop.getaddrinfo(
                    address, None, family=wanted or 0, type=socket.SOCK_DGRAM
                )
        except TimeoutError:
            text = f"resolving {address} took the whole timeout"
            raise ProbeFailed(reasons.TIMEOUT, text) from None
        except (OSError, UnicodeError) as exc:
            # socket.gaierror is resolve_failed; EMFILE and the like are not the name's fault.
            reason = classify_os_error(exc) if isinstance(exc, OSError) else reasons.RESOLVE_FAILED
            raise ProbeFailed(reason, f"could not resolve {address}: {exc}") from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, stable
        for family, _type, _proto, _name, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                note(f"{address} resolved to {sockaddr[0]}")
                return family, sockaddr
        raise ProbeFailed(reasons.RESOLVE_FAILED, f"{address} has no IPv4 or IPv6 address")

    async def _send_train(
        self,
        channel: _Channel,
        address: tuple[Any, ...],
        settings: IcmpSettings,
        deadline: float,
        note: Callable[[str], None],
        verbose: bool = True,
    ) -> tuple[list[float | None], OSError | None]:
        """Send the requests on schedule; return each sent request's RTT (None if
        unanswered) in send order, and the first send error (or None). `verbose` notes
        each request's fate."""
        assert self._loop is not None
        train = _Train(channel, address, settings, deadline, note, self._loop)
        try:
            train.start()
            await train.done
        finally:
            train.finish()  # also when cancelled: release the sequence numbers
        if not verbose:
            return train.rtts, train.send_error
        for (sequence, _), rtt in zip(train.requests, train.rtts, strict=True):
            if rtt is None:
                note(f"icmp_seq={sequence}: no reply")
            else:
                note(f"icmp_seq={sequence}: reply in {rtt * 1000:.3f} ms")
        return train.rtts, train.send_error

    @staticmethod
    def summarize(rtts: list[float | None], result: ProbeResult | None = None) -> ProbeResult:
        """Fill in the train's figures from each sent request's RTT (None: no reply).

        Jitter is the mean absolute difference between the RTTs of successive answered
        requests in send order (as mtr and icmplib): 0 with one reply, None with none."""
        result = result or ProbeResult(success=False)
        answered = [rtt for rtt in rtts if rtt is not None]
        result.packets_sent = len(rtts)
        result.packets_received = len(answered)
        result.rtt_samples = answered
        if rtts:
            result.packet_loss_ratio = 1.0 - len(answered) / len(rtts)
        if answered:
            result.rtt_seconds = sum(answered) / len(answered)
            result.rtt_min_seconds = min(answered)
            result.rtt_max_seconds = max(answered)
            result.jitter_seconds = mean_successive_difference(answered)
        return result
