"""The aiohttp client session shared by the HTTP-based probers (http, stats).

One session serves every target of a prober: made at start (or on first use, for a
prober nobody started) and closed with the prober.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

from .. import __version__
from .base import Prober

USER_AGENT = f"bridge-exporter/{__version__}"


class HttpClientProber(Prober):
    """A prober that sends its requests through one aiohttp ClientSession."""

    # Headers of every request besides User-Agent.
    default_headers: ClassVar[dict[str, str]] = {}
    # True: no keep-alive, so that every probe connects anew.
    force_close: ClassVar[bool] = False

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._client()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # the scheduler bounds concurrency; a pool cap would queue probes
                ttl_dns_cache=60,
                force_close=self.force_close,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT, **self.default_headers},
                cookie_jar=aiohttp.DummyCookieJar(),  # no state carried between probes
            )
        return self._session
