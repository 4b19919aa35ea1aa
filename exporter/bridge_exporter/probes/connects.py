"""TCP connects in flight, watched through one epoll instance of their own.

asyncio's sock_connect() adds each socket to the loop's selector and takes it out again:
two epoll_ctl calls, a selector key, a handle and a done-callback per connect. At
thousands of connects a second that bookkeeping cost more than the TCP prober's own
work. Here a connecting socket is added once, one-shot, to a private epoll whose one
descriptor the loop watches, and every connect that completed is settled in one pass;
closing the socket takes it out of the epoll again (the kernel does that on close).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import socket
import struct
import weakref

from ..perloop import PerLoop

_WRITABLE_ONCE = select.EPOLLOUT | select.EPOLLONESHOT
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EINTR})  # EINTR: it goes on regardless
_BATCH = 512  # events read per pass; more stay ready for the next pass
# struct tcp_info (linux/tcp.h): tcpi_rtt, microseconds, a u32 at byte 68 of 104.
_TCP_INFO_BYTES = 104
_TCPI_RTT = struct.Struct("=I")
_TCPI_RTT_OFFSET = 68


class Connects:
    """The connects in flight on one event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly, for PerLoop; the epoll is closed when this is freed with its loop.
        self._loop = weakref.ref(loop)
        self._epoll = select.epoll()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        loop.add_reader(self._epoll.fileno(), self._settle)

    async def connect(self, sock: socket.socket, sockaddr: tuple) -> None:
        """Connect the non-blocking `sock`; raise OSError as socket.connect() would.
        The caller closes the socket, also when this is cancelled."""
        error = sock.connect_ex(sockaddr)
        if error in _IN_PROGRESS:
            descriptor = sock.fileno()
            waiter = self._loop().create_future()  # type: ignore[union-attr]
            self._epoll.register(descriptor, _WRITABLE_ONCE)
            self._waiters[descriptor] = waiter
            try:
                await waiter
            except BaseException:
                # Closing the socket takes it out of the epoll only if no other descriptor
                # (a dup, a forked child's) refers to it: else a late event for it would
                # settle whichever connect gets this descriptor number next.
                self._waiters.pop(descriptor, None)
                with contextlib.suppress(OSError):
                    self._epoll.unregister(descriptor)
                raise
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, f"{os.strerror(error)} ({sockaddr[0]} port {sockaddr[1]})")

    def _settle(self) -> None:
        waiters = self._waiters
        for descriptor, _ in self._epoll.poll(0, _BATCH):
            waiter = waiters.pop(descriptor, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


connects_of = PerLoop(Connects).of  # the connects of a loop, one watcher per loop


def handshake_rtt(sock: socket.socket) -> float | None:
    """The round trip of a just-connected socket's handshake as the kernel measured it
    (its smoothed RTT, whose first sample is the SYN / SYN-ACK exchange; with TCP
    timestamps, that of a retransmitted SYN too), in seconds. Unlike the time until the
    event loop noticed the connect, it does not grow when the exporter is busy. None where
    the kernel has no sample (a SYN retransmitted to a peer without TCP timestamps) or
    TCP_INFO is not available."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCPI_RTT_OFFSET + _TCPI_RTT.size:
        return None
    (micros,) = _TCPI_RTT.unpack_from(info, _TCPI_RTT_OFFSET)
    return micros / 1e6 if micros else None
