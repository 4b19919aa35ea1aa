"""What the HTTP-based probers (http, stats) share: the aiohttp client session, the
request timeout for a deadline, the failure reasons of a request's errors, and basic
authentication.

One session serves every target of a prober: made at start (or on first use, for a
prober nobody started) and closed with the prober.
"""

from __future__ import annotations

import asyncio
import base64
from typing import ClassVar

import aiohttp

from .. import __version__
from . import reasons
from .base import Prober
from .netutil import classify_os_error

USER_AGENT = f"bridge-exporter/{__version__}"
# What a request can raise besides ProbeFailed and TimeoutError.
REQUEST_ERRORS = (aiohttp.ClientError, OSError)


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


def client_timeout(deadline: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeout for a request that must end by `deadline` (event-loop time)."""
    remaining = deadline - asyncio.get_running_loop().time()
    return aiohttp.ClientTimeout(total=max(0.0, remaining))


def request_error_reason(exc: Exception) -> str:
    """The failure reason for one of REQUEST_ERRORS, or for a ValueError (a method or
    header aiohttp refuses) bad_settings."""
    if isinstance(exc, aiohttp.ClientError):
        return client_error_reason(exc)
    if isinstance(exc, OSError):
        return classify_os_error(exc)
    return reasons.BAD_SETTINGS


def client_error_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return reasons.RESOLVE_FAILED
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return reasons.TLS_ERROR
    if isinstance(exc, aiohttp.ClientConnectorError):
        return classify_os_error(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return reasons.CONNECTION_CLOSED
    if isinstance(exc, OSError):  # ClientOSError, ClientConnectionResetError
        return classify_os_error(exc)
    # Before InvalidURL: a redirect to a malformed URL is the server's fault, not ours.
    if isinstance(exc, aiohttp.RedirectClientError):
        return reasons.INVALID_RESPONSE
    if isinstance(exc, aiohttp.InvalidURL):
        return reasons.BAD_SETTINGS
    # A malformed status line or header, a broken body, too many redirects.
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return reasons.INVALID_RESPONSE
    return reasons.NETWORK_ERROR


def read_password_file(path: str) -> str:
    """The password kept in the file at `path`: its UTF-8 text without the trailing
    newline. Raises OSError, or UnicodeDecodeError when the file is not UTF-8."""
    with open(path, encoding="utf-8") as secret:
        return secret.read().rstrip("\r\n")


def basic_authorization(user: str, password: str) -> str:
    """The Authorization header value (RFC 7617, UTF-8). Raises ValueError for a user
    name with a colon, which the header cannot carry."""
    if ":" in user:
        raise ValueError('a ":" is not allowed in a basic auth username')
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
