"""A /metrics page as a snapshot of kept text, joined and gzipped off the event loop.

At 10,000 endpoints the page is some 54 MB. Joining it into one bytes object (and again to
append the process_* series, and once more to gzip it) held it two or three times over
during a scrape and did the joining on the event loop. Here a scrape takes a snapshot on
the loop (references to the kept per-endpoint texts, no copying); a worker thread then
feeds it in ~1 MiB pieces to ISA-L's deflate (one call for the whole page: 4.0 MB gzipped
at 10,000 endpoints, sent with its length), or, for a client that does not take gzip,
counts its length and makes the pieces one after another while the loop sends them.
Deflate releases the GIL, so compressing runs on a second core while the loop goes on
probing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from isal import isal_zlib

# Bytes per piece fed to deflate or handed to the HTTP writer: few enough GIL hand-overs and
# loop wake-ups per scrape, little memory held per scrape.
PIECE_BYTES = 1 << 20
# Pieces a scrape's worker may make before the loop has sent them: what a slow client
# holds in memory beyond the snapshot.
PIECES_AHEAD = 4
# Intel's ISA-L deflate (python-isal): on a 54 MB page at level 1, 0.04 s and 4.0 MB
# against zlib's 0.17 s and 4.4 MB at its level 1 (zlib's default level 6 costs 3.3x
# more again). Both release the GIL while they work.
GZIP_LEVEL = 1
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip member, as gzip.compress writes

T = TypeVar("T")
# A part is one bytes object (headers, aggregates) or a column: one bytes per endpoint.
Part = bytes | Sequence[bytes]

# Scrapes do not wait behind other users of asyncio's default pool (a config reload, the
# bcrypt checks of basic auth); two workers let two scrapes run side by side.
_executor: ThreadPoolExecutor | None = None


def _scrape_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="metrics-scrape")
    return _executor


class MetricsPage:
    """An immutable snapshot of a /metrics page: parts in page order, never changed
    after it is made (columns are copies of the live ones), so it can be read in a
    worker thread while the loop goes on updating the live texts."""

    def __init__(self, parts: list[Part]):
        self._parts = parts

    def followed_by(self, text: bytes) -> MetricsPage:
        return MetricsPage([*self._parts, text])

    def pieces(self, piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
        """The page as bytes pieces of about `piece_bytes` each (runs in a worker)."""
        pending: list[bytes] = []
        size = 0
        for part in self._parts:
            if isinstance(part, bytes):
                pending.append(part)
                size += len(part)
            else:
                total = sum(map(len, part))
                if not total:
                    continue
                count, start = len(part), 0
                while start < count:
                    # As many endpoints as fill the piece, by the column's mean text size.
                    step = max(1, -(-(piece_bytes - size) * count // total))
                    run = part[start : start + step]
                    start += step
                    pending.extend(run)
                    size += sum(map(len, run))
                    if size >= piece_bytes:
                        yield b"".join(pending)
                        pending, size = [], 0
                continue
            if size >= piece_bytes:
                yield b"".join(pending)
                pending, size = [], 0
        if size:
            yield b"".join(pending)

    def gzip_pieces(self, piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
        """The page gzipped (one gzip member), in pieces of about `piece_bytes`."""
        compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, _GZIP_WBITS)
        out: list[bytes] = []
        size = 0
        for piece in self.pieces(piece_bytes):
            compressed = compressor.compress(piece)
            if compressed:
                out.append(compressed)
                size += len(compressed)
                if size >= piece_bytes:
                    yield b"".join(out)
                    out, size = [], 0
        out.append(compressor.flush())
        yield b"".join(out)

    def gzipped(self) -> bytes:
        """The page gzipped, in one bytes object (a worker's call: /metrics, gzip asked)."""
        return b"".join(self.gzip_pieces())

    def size(self) -> int:
        """Bytes in the page (a worker's call: /metrics, sent plain, with its length)."""
        return sum(len(p) if isinstance(p, bytes) else sum(map(len, p)) for p in self._parts)

    def join(self) -> bytes:
        """The whole page at once (tests, tools; /metrics streams it)."""
        return b"".join(self.pieces())

    def stream(self) -> PageStream:
        """The plain page, piece by piece as a worker makes them."""
        return PageStream(self.pieces())


async def in_scrape_worker(work: Callable[[], T]) -> T:
    """`work()` in a scrape worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_scrape_executor(), work)


class PageStream:
    """Async iterator over the pieces of a page, made in a worker thread.

    One worker call makes piece after piece, each handed to the loop as soon as it is
    made, so a scrape costs the loop one wake-up per piece and never leaves the worker
    waiting for the loop's turn. When PIECES_AHEAD pieces are made but not yet sent (a
    slow client) the call ends, freeing the thread, and the sender starts another as it
    catches up: a client that stops reading holds no thread. close() (the answer is sent,
    or the client went away) stops the worker. Nothing starts until the first piece is
    asked for, so a HEAD request costs no work."""

    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces
        self._queue: asyncio.Queue[bytes | BaseException | None] | None = None
        self._lock = threading.Lock()
        self._ahead = 0  # pieces made and not yet sent; under _lock
        self._working = False  # a worker call is running or about to; under _lock
        self._closed = False  # under _lock
        self._returned = 0  # pieces given to the sender (loop side only)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            with self._lock:
                start = self._working = not self._closed
        else:
            with self._lock:
                if self._returned:  # the previous piece is written by now
                    self._ahead -= 1
                start = not self._working and not self._closed and self._ahead < PIECES_AHEAD
                self._working = self._working or start
        if start:
            loop.run_in_executor(_scrape_executor(), self._work, loop, self._queue)
        item = await self._queue.get()
        if item is None:
            self.close()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        self._returned += 1
        return item

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _work(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | BaseException | None]
    ) -> None:
        """A worker call: pieces until the page ends, PIECES_AHEAD wait unsent, or the
        stream is closed."""

        def hand(item: bytes | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under a scrape (the exporter stopping)
                self.close()

        while True:
            with self._lock:
                if self._closed or self._ahead >= PIECES_AHEAD:
                    self._working = False
                    return
            try:
                piece = next(self._pieces, None)
            except Exception as exc:  # a bug: the answer is cut short and the error logged
                self.close()
                hand(exc)
                return
            if piece is None:
                self.close()
                hand(None)
                return
            with self._lock:
                self._ahead += 1
            hand(piece)
