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
import weakref

from ..perloop import PerLoop

_WRITABLE_ONCE = select.EPOLLOUT | select.EPOLLONESHOT
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EINTR})  # EINTR: it goes on regardless
_BATCH = 512  # events read per pass; more stay ready for the next pass


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
