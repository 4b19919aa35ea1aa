"""TCP listeners that can be closed and re-opened synchronously.

A `down` endpoint must refuse new connections at once (so its listening socket is
closed) and drop the ones it has (keep-alive HTTP would otherwise keep answering).
asyncio's Server cannot be re-opened and starts asynchronously, so this accepts by hand:
open() binds and listens before it returns, close() stops listening before it returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Callable

log = logging.getLogger("bridge_exporter.simulate")

_BACKLOG = 128
_ACCEPTS_PER_WAKEUP = 32


class TcpListener:
    def __init__(self, host: str, port: int, protocol_factory: Callable[[], asyncio.BaseProtocol]):
        self.host = host
        self.port = port
        self._factory = protocol_factory
        self._sock: socket.socket | None = None
        # Transports, not protocols: aiohttp's RequestHandler cannot be weakly referenced.
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._pending: set[asyncio.Task] = set()

    def open(self) -> None:
        """Bind and listen now; raises OSError (e.g. address in use)."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]  # resolves port 0 (tests)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)
        self._sock = sock

    def close(self) -> None:
        """Stop listening (new connections are refused) and abort the open ones."""
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            if self._sock is None:
                return
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave it in the backlog, try later
                log.warning("accept on %s:%s failed: %s", self.host, self.port, exc)
                return
            conn.setblocking(False)
            task = asyncio.get_running_loop().create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                self._factory, sock=conn
            )
        except OSError:
            conn.close()
            return
        if self._sock is None:  # closed while this connection was being set up
            transport.abort()
            return
        self._transports.add(transport)
