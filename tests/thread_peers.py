"""UDP peers on their own threads, to answer while a test's event loop is blocked.

The kernel-timestamp tests need a reply to arrive while the event loop is stuck (as when
the exporter renders /metrics for 10,000 endpoints), so the peer cannot live on that loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time


class ThreadUdpPeer:
    """Answers each datagram with `answer(data, peer)` (None: no answer) from a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def answer(self, data: bytes, peer: tuple) -> bytes | None:
        raise NotImplementedError

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            reply = self.answer(data, peer)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def block_loop_once(loop: asyncio.AbstractEventLoop, seconds: float):
    """A hook for a peer to call before answering: the first call returns only once the
    event loop is stuck in a `seconds`-long blocking call, so that answer arrives while
    nobody reads it. Returns (hook, event set once the loop was blocked)."""
    blocking = threading.Event()

    def block() -> None:
        blocking.set()
        time.sleep(seconds)

    def hook() -> None:
        if not blocking.is_set():
            loop.call_soon_threadsafe(block)
            assert blocking.wait(5), "the event loop never ran the blocking call"

    return hook, blocking
