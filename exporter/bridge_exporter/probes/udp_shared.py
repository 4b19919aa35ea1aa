"""One non-connected UDP socket per address family, shared by every probe of a prober.

A connected socket per probe costs about seven system calls (socket, connect, getsockname,
setsockopt, two epoll_ctl, close) before the first byte goes out; at 10,000 endpoints that
was most of the SIP prober's CPU. A shared socket costs one sendto per request and one
recvmsg per reply, read by one reader on the event loop, which hands each datagram (with
its kernel receive time and its source address) to `on_datagram`; the prober decides whose
it is.

What a connected socket did for free, done here:
- ICMP errors. An unconnected socket hears of them only with IP_RECVERR / IPV6_RECVERR:
  the kernel then queues the start of the datagram that failed (so the prober can tell
  whose it was), where it was going and a sock_extended_err on the socket's error queue.
  Only the errors a connected socket would have reported (RFC 1122 "hard" errors, as the
  kernel's own tables rank them) are handed to `on_error`, as the OSError a connected
  socket would have raised (ConnectionRefusedError for port unreachable).
- The local address for Via and Contact headers: `LocalAddresses` finds the source
  address the kernel picks for a destination once (a throwaway connected socket) and
  caches it.

A queued error also sets the socket's pending error, which the next recvmsg or sendto
returns instead of doing its work, and keeps epoll reporting EPOLLERR (which the selector
loop hands to the reader) until the error queue is read. So the reader reads the error
queue whenever a read fails or a wake-up finds nothing, and a send that fails is retried
once after the queue is read: the failure may have been someone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from .netutil import Arrival, ask_for_receive_timestamps, kernel_receive_time

IP_RECVERR = 11  # level IPPROTO_IP; the socket module does not name it
IPV6_RECVERR = 25  # level IPPROTO_IPV6
SO_RCVBUFFORCE = 33
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
_EXTENDED_ERROR = struct.Struct("=IBBBBII")  # struct sock_extended_err

SOCKET_BUFFER_BYTES = 4 << 20  # a burst of answers from thousands of endpoints
MAX_DATAGRAM = 65535
ERROR_PAYLOAD_BYTES = 2048  # the start of the failed datagram is enough to tell whose it was
_ANCILLARY_SPACE = 64  # one SO_TIMESTAMPNS
_ERROR_ANCILLARY_SPACE = 256  # sock_extended_err + offender address (+ a timestamp)
READS_PER_WAKEUP = 64  # leave the loop to other work under a flood
ERRORS_PER_WAKEUP = 256
# Wake-ups in a row that read nothing, not even a queued error, before the socket is taken
# for broken (closed and reopened on next use) rather than let it spin the event loop.
FRUITLESS_WAKEUPS_LIMIT = 64

# Which ICMP errors a connected UDP socket reports (the kernel's icmp_err_convert and
# icmpv6_err_convert "fatal" flags); the others (host unreachable from a router, time
# exceeded, packet too big...) it ignores, and so do we.
_ICMP_DEST_UNREACH = 3
_ICMP_PARAMETERPROB = 12
_ICMP_FATAL_UNREACH_CODES = frozenset({2, 3, 6, 7, 8, 9, 10, 13, 14, 15})
_ICMP6_DEST_UNREACH = 1
_ICMP6_PARAMPROB = 4
_ICMP6_FATAL_UNREACH_CODES = frozenset({1, 4, 5, 6})

DatagramHandler = Callable[[bytes, Arrival, tuple[Any, ...]], None]
ErrorHandler = Callable[[bytes, tuple[Any, ...], OSError], None]


def is_reported_error(origin: int, icmp_type: int, code: int) -> bool:
    """Whether a connected UDP socket would have reported this queued error."""
    if origin == SO_EE_ORIGIN_ICMP:
        if icmp_type == _ICMP_DEST_UNREACH:
            return code in _ICMP_FATAL_UNREACH_CODES
        return icmp_type == _ICMP_PARAMETERPROB
    if origin == SO_EE_ORIGIN_ICMP6:
        if icmp_type == _ICMP6_DEST_UNREACH:
            return code in _ICMP6_FATAL_UNREACH_CODES
        return icmp_type == _ICMP6_PARAMPROB
    return origin == SO_EE_ORIGIN_LOCAL  # what send() itself would have said


def extended_error(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int, int, int] | None:
    """(errno, origin, ICMP type, ICMP code) of the sock_extended_err in error-queue
    ancillary data, or None if there is none."""
    for level, kind, data in ancillary:
        if (level, kind) in (
            (socket.IPPROTO_IP, IP_RECVERR),
            (socket.IPPROTO_IPV6, IPV6_RECVERR),
        ) and len(data) >= _EXTENDED_ERROR.size:
            number, origin, icmp_type, code, _pad, _info, _data = _EXTENDED_ERROR.unpack_from(data)
            return number, origin, icmp_type, code
    return None


def _enlarge_buffers(sock: socket.socket) -> None:
    try:  # beyond net.core.rmem_max, when we hold CAP_NET_ADMIN
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)


def open_shared_udp(family: int) -> socket.socket:
    """A non-blocking UDP socket bound to the wildcard address of `family` on a port the
    kernel picks, asking for ICMP errors (a connected socket's refused/unreachable)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            sock.bind(("::", 0))
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            sock.bind(("0.0.0.0", 0))
        _enlarge_buffers(sock)
    except BaseException:
        sock.close()
        raise
    return sock


class SharedUdpSocket:
    """A shared UDP socket read on the event loop: `on_datagram(data, arrival, source)` for
    each datagram, `on_error(start_of_sent_datagram, destination, exc)` for each ICMP error
    a connected socket would have reported, `on_broken(exc)` once if the socket fails for
    good (it is closed then; open a new one)."""

    def __init__(
        self,
        family: int,
        loop: asyncio.AbstractEventLoop,
        on_datagram: DatagramHandler,
        on_error: ErrorHandler,
        on_broken: Callable[[OSError], None],
    ) -> None:
        self.family = family
        self.loop = loop
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._on_broken = on_broken
        self.closed = False
        self._fruitless_wakeups = 0
        self.sock = open_shared_udp(family)
        try:
            self.kernel_timestamps = ask_for_receive_timestamps(self.sock)
            self.port: int = self.sock.getsockname()[1]
            self._fd = self.sock.fileno()
            loop.add_reader(self._fd, self._on_readable)
        except BaseException:
            self.sock.close()
            raise

    def send_to(self, data: bytes, address: tuple[Any, ...]) -> None:
        """Send one datagram; raises the OSError a connected socket's send would have."""
        try:
            self.sock.sendto(data, address)
            return
        except OSError:
            if self.closed:
                raise
        # Perhaps a pending error from an ICMP message about another destination: read
        # the error queue (which hands it to its owner and clears it) and try once more.
        self.read_error_queue()
        self.sock.sendto(data, address)

    def _on_readable(self) -> None:
        sock = self.sock
        handled = 0
        failed = False
        for _ in range(READS_PER_WAKEUP):
            try:
                data, ancillary, _flags, source = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # The pending error of a queued ICMP message: its details are on the error
                # queue. (A closed socket lands here too: the queue read then says so.)
                failed = True
                break
            handled += 1
            self._on_datagram(
                data, Arrival(kernel_receive_time(ancillary), time.monotonic()), source
            )
            if self.closed:
                return
        if handled and not failed:
            self._fruitless_wakeups = 0
            return
        # Woken with nothing to read, or a read failed: an error is queued (or the socket
        # is broken). Reading the queue is what stops epoll reporting EPOLLERR.
        errors = self.read_error_queue()
        if handled or errors:
            self._fruitless_wakeups = 0
            return
        self._fruitless_wakeups += 1
        if self._fruitless_wakeups >= FRUITLESS_WAKEUPS_LIMIT and not self.closed:
            self._break(OSError(errno.EIO, "the shared UDP socket keeps waking with nothing"))

    def read_error_queue(self) -> int:
        """Hand each queued ICMP error to on_error; how many entries were read."""
        read = 0
        for _ in range(ERRORS_PER_WAKEUP):
            if self.closed:
                return read
            try:
                payload, ancillary, _flags, destination = self.sock.recvmsg(
                    ERROR_PAYLOAD_BYTES, _ERROR_ANCILLARY_SPACE, socket.MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                return read
            except OSError as exc:
                self._break(exc)
                return read
            read += 1
            found = extended_error(ancillary)
            if found is None or not destination:
                continue
            number, origin, icmp_type, code = found
            if number and is_reported_error(origin, icmp_type, code):
                # OSError(ECONNREFUSED, ...) is a ConnectionRefusedError, as connect gave.
                self._on_error(payload, destination, OSError(number, os.strerror(number)))
        return read

    def _break(self, exc: OSError) -> None:
        self.close()
        self._on_broken(exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # the loop may be closed
            self.loop.remove_reader(self._fd)
        self.sock.close()


class LocalAddresses:
    """The local address the kernel sends from to each destination address, for headers
    that must name it (SIP Via and Contact). Found once per destination with a throwaway
    connected socket (no packet is sent) and kept for `ttl` seconds, at most `limit` of
    them (the oldest go first)."""

    def __init__(self, limit: int = 65536, ttl: float = 600.0) -> None:
        self._limit = limit
        self._ttl = ttl
        self._known: dict[tuple[int, str], tuple[str, float]] = {}

    def for_destination(self, family: int, address: tuple[Any, ...]) -> str:
        """The local address for `address` (a sockaddr); raises what connect would
        (ENETUNREACH without a route, EMFILE without a descriptor)."""
        key = (family, address[0])
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            return known[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            local = str(probe.getsockname()[0])
        self._known.pop(key, None)
        while len(self._known) >= self._limit:
            del self._known[next(iter(self._known))]
        self._known[key] = (local, now + self._ttl)
        return local

    def clear(self) -> None:
        self._known.clear()
