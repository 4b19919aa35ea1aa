"""Helpers shared by the probers: resolving, error classification, URL brackets, TLS,
and connected UDP sockets that report the kernel's receive time of every datagram.

Endpoint addresses in an inventory are IPv4 or IPv6 literals (optionally with an IPv6
zone, `fe80::1%eth0`, or in brackets) or host names. Literals never touch the resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import reasons

FAMILY_PREFERENCES = ("auto", "ip4", "ip6")


class ResolveError(Exception):
    """The address could not be turned into a socket address (reason `resolve_failed`)."""


def strip_brackets(address: str) -> str:
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        return address[1:-1]
    return address


def bracket(address: str) -> str:
    """The address as the host part of a URL: IPv6 in brackets, its zone escaped (RFC 6874)."""
    host = strip_brackets(address)
    if ":" not in host:
        return host
    if "%" in host and "%25" not in host:
        host = host.replace("%", "%25", 1)
    return f"[{host}]"


def _family_filter(family_pref: str) -> int:
    if family_pref == "ip4":
        return socket.AF_INET
    if family_pref == "ip6":
        return socket.AF_INET6
    if family_pref == "auto":
        return socket.AF_UNSPEC
    raise ValueError(f"family preference must be one of {FAMILY_PREFERENCES}, not {family_pref!r}")


@functools.lru_cache(maxsize=1 << 16)
def _literal(address: str, port: int, family_pref: str) -> tuple[int, tuple] | None:
    """resolve() of a literal address (no resolver involved), or None for a host name.
    Cached: the answer never changes, and every probe of every round asks."""
    host = strip_brackets(address)
    if not host:
        return None
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None
    return _first(host, infos, _family_filter(family_pref))


def _first(host: str, infos: tuple | list, family: int) -> tuple[int, tuple]:
    for info_family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_UNSPEC, info_family):
            return int(info_family), sockaddr
    wanted = "IPv4" if family == socket.AF_INET else "IPv6"
    raise ResolveError(f"{host!r} has no {wanted} address")


async def resolve(address: str, port: int, family_pref: str = "auto") -> tuple[int, tuple]:
    """Resolve an endpoint address to (family, sockaddr) for `port`.

    `family_pref` is "auto" (the system's order, RFC 6724), "ip4" or "ip6" (only that
    family). Raises ResolveError when there is no usable address.
    """
    found = _literal(address, port, family_pref)
    if found is not None:
        return found
    host = strip_brackets(address)
    family = _family_filter(family_pref)
    if not host:
        raise ResolveError("empty address")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve {host!r}: {exc}") from exc
    return _first(host, infos, family)


_UNREACHABLE = {
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EADDRNOTAVAIL,
    errno.EAFNOSUPPORT,
}
# EAGAIN from a TCP connect: no local port left; from a send: no buffer space.
_LOCAL_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN}
_BLOCKED_LOCALLY = {errno.EPERM, errno.EACCES}


def classify_os_error(exc: OSError) -> str:
    """The failure reason (see reasons.py) for an error of socket(), connect(), send() or
    recv(): tls_error, resolve_failed, timeout, refused, unreachable, reset,
    local_resource_exhausted, blocked_locally, or network_error for anything else."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return reasons.TLS_ERROR
    if isinstance(exc, socket.gaierror):
        return reasons.RESOLVE_FAILED
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return reasons.TIMEOUT
    # By class, not errno: OSError(errno.ECONNRESET) is a ConnectionResetError, and aiohttp
    # raises ConnectionResetError without an errno.
    if isinstance(exc, ConnectionRefusedError):
        return reasons.REFUSED
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return reasons.RESET
    if exc.errno in _UNREACHABLE:
        return reasons.UNREACHABLE
    if exc.errno in _LOCAL_RESOURCES:
        return reasons.LOCAL_RESOURCE_EXHAUSTED
    if exc.errno in _BLOCKED_LOCALLY:
        return reasons.BLOCKED_LOCALLY
    return reasons.NETWORK_ERROR


def tls_context(insecure: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context that trusts `ca_file` (a PEM bundle) or else the system store;
    `insecure` turns certificate and name checks off. Raises OSError (ssl.SSLError is one)
    when the CA file cannot be read or loaded."""
    ca_stamp = os.stat(ca_file).st_mtime_ns if ca_file else None
    return _tls_context(insecure, ca_file, ca_stamp)


# Building a verifying context loads the CA store (milliseconds): share one per setup, and
# build a new one when the CA file changes.
@functools.lru_cache(maxsize=64)
def _tls_context(insecure: bool, ca_file: str | None, ca_stamp: int | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# --- UDP with kernel receive timestamps -------------------------------------------------

SO_TIMESTAMPNS = 35  # asm-generic value (x86, arm, riscv); the socket module does not name it
_ANCILLARY_SPACE = 64
_MAX_DATAGRAM = 65535
_READS_PER_WAKEUP = 64  # leave the loop to other work under a flood
_READS_TO_DRAIN = 4096  # more than a receive buffer holds
# A wall-clock RTT may exceed the monotonic one by this much (clock granularity) before
# we decide the wall clock was stepped and fall back to the monotonic figure.
_CLOCK_SLACK_SECONDS = 0.001
_SELF_CONNECT_ATTEMPTS = 5


@dataclass(slots=True)  # not frozen: a frozen init costs several times more
class Instant:
    """One moment on two clocks: the wall clock, which the kernel's receive timestamps
    use, and the monotonic clock, which a stepped wall clock does not disturb."""

    wall: float
    monotonic: float

    @classmethod
    def now(cls) -> Instant:
        return cls(time.time(), time.monotonic())


@dataclass(slots=True)
class Arrival:
    """When a datagram arrived: the kernel's wall-clock receive time (None when the
    kernel delivered none) and the monotonic time our code read it."""

    kernel_wall: float | None
    read_monotonic: float

    def since(self, sent: Instant) -> float:
        """Seconds from `sent` to this arrival (see elapsed_between)."""
        return elapsed_between(sent.wall, sent.monotonic, self.kernel_wall, self.read_monotonic)


def elapsed_between(
    sent_wall: float, sent_monotonic: float, kernel_wall: float | None, read_monotonic: float
) -> float:
    """Seconds from a send (on both clocks) to an arrival: the kernel's receive time, so a
    busy event loop does not count; the monotonic time we read it if there is no kernel
    time or the wall clock was stepped in between."""
    read_seconds = read_monotonic - sent_monotonic
    if kernel_wall is not None:
        kernel_seconds = kernel_wall - sent_wall
        if 0 <= kernel_seconds <= read_seconds + _CLOCK_SLACK_SECONDS:
            return kernel_seconds
    return read_seconds


def kernel_receive_time(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The SO_TIMESTAMPNS receive time (wall clock, seconds) in recvmsg ancillary data."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 8:
            seconds, nanoseconds = struct.unpack_from("=qq" if len(data) >= 16 else "=ii", data)
            return seconds + nanoseconds / 1e9
    return None


def ask_for_receive_timestamps(sock: socket.socket) -> bool:
    """Best effort: True if the kernel will stamp every datagram this socket receives."""
    if sys.platform != "linux":
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def connect_udp(family: int, remote: tuple) -> tuple[socket.socket, int]:
    """A non-blocking UDP socket connected to `remote` from a port the kernel picks, and
    how many sockets were given up on the way because they were connected to themselves.

    When nothing listens on the remote port the kernel may pick that very port on the
    same address as ours: the socket then receives what it sends. Such a socket is kept
    open (so its port cannot be picked again) while another is opened, then closed."""
    given_up: list[socket.socket] = []
    try:
        for _ in range(_SELF_CONNECT_ATTEMPTS):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect(remote)
            except OSError:
                sock.close()
                raise
            if not is_connected_to_itself(sock):
                return sock, len(given_up)
            given_up.append(sock)
        raise OSError(errno.EADDRINUSE, "every local port the kernel picked was the remote one")
    finally:
        for sock in given_up:
            sock.close()


def is_connected_to_itself(sock: socket.socket) -> bool:
    try:
        return sock.getsockname()[:2] == sock.getpeername()[:2]
    except OSError:
        return False


class TimestampedUdp:
    """A connected UDP socket read on the event loop with recvmsg, so that every datagram
    comes with its kernel receive time: a reply read late by a busy loop still tells when
    it arrived. `on_datagram(data, arrival)` gets each datagram, `on_error(exc)` each
    socket error (ICMP port unreachable arrives as ConnectionRefusedError)."""

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, Arrival], None],
        on_error: Callable[[OSError], None],
    ) -> None:
        self.sock = sock
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._closed = False
        try:  # the socket is ours from here on: close it if we cannot use it
            self.kernel_timestamps = ask_for_receive_timestamps(sock)
            self.local: tuple = sock.getsockname()
            self.remote: tuple = sock.getpeername()
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise

    def send(self, data: bytes) -> bool:
        """Send one datagram; False (and the error to on_error) if the socket refused it."""
        try:
            self.sock.send(data)
        except OSError as exc:
            self._on_error(exc)
            return False
        return True

    def read_queued(self) -> None:
        """Hand over every datagram already queued (e.g. before deciding a wait is over)."""
        self._on_readable(_READS_TO_DRAIN)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _on_readable(self, budget: int = _READS_PER_WAKEUP) -> None:
        for _ in range(budget):
            if self._closed:
                return
            try:
                data, ancillary, _flags, _peer = self.sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._on_error(exc)
                continue
            self._on_datagram(data, Arrival(kernel_receive_time(ancillary), time.monotonic()))
