"""What the HTTP-based probers (http, stats) share: the aiohttp client session, the
request timeout for a deadline, the failure reasons of a request's errors, and basic
authentication.

One session serves every target of a prober: made at start (or on first use, for a
prober nobody started) and closed with the prober.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import stat
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from .. import __version__
from . import reasons
from .base import Prober
from .devicetext import printable
from .netutil import classify_os_error
from .sandbox import WorkerPool

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
        # What a device sent is searched or parsed in killable child processes
        # (sandbox.py), started on first use: a hostile answer costs a child's CPU and
        # capped memory, never the event loop's.
        self._workers = WorkerPool()

    async def start(self) -> None:
        self._client()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._workers.close()

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
    if isinstance(exc, aiohttp.RedirectClientError | RedirectRefused):
        return reasons.INVALID_RESPONSE
    if isinstance(exc, aiohttp.InvalidURL):
        return reasons.BAD_SETTINGS
    # A malformed status line or header, a broken body, too many redirects.
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return reasons.INVALID_RESPONSE
    return reasons.NETWORK_ERROR


# A password file others may read, or group or others may change, is refused. Group read
# is allowed: `root:exporter 0640` is how a service is usually given a secret.
SECRET_FILE_FORBIDDEN_BITS = stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP


class SecretFileTooOpen(PermissionError):
    """A secret file whose permissions give it away (errno EACCES)."""


def secret_file_mode_problem(path: str, mode: int) -> str | None:
    """Why a secret file with this st_mode is refused, with the fix; None when it is not."""
    if not mode & SECRET_FILE_FORBIDDEN_BITS:
        return None
    who = "read or changed by other users" if mode & 0o006 else "changed by its group"
    return (
        f"it can be {who} (mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}` "
        "(or 640 with a group only the exporter is in)"
    )


def secret_file_problem(path: str) -> str | None:
    """For validate: a secret file that exists here but is too open. A missing file is
    no problem yet: it may exist only where the exporter runs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return secret_file_mode_problem(path, mode)


def read_password_file(path: str) -> str:
    """The password kept in the file at `path`: its UTF-8 text without the trailing
    newline. Raises OSError (SecretFileTooOpen for a file others may read), or
    UnicodeDecodeError when the file is not UTF-8."""
    with open(path, encoding="utf-8") as secret:
        problem = secret_file_mode_problem(path, os.fstat(secret.fileno()).st_mode)
        if problem is not None:
            raise SecretFileTooOpen(errno.EACCES, problem, path)
        return secret.read().rstrip("\r\n")


def shown_url(url: URL) -> str:
    """A URL for logs and debug lines: a password in it is masked."""
    return str(url.with_password("xxxxx") if url.password else url)


def url_password_problem(text: str) -> str | None:
    """A URL template that holds a password inline: secrets come from files."""
    try:
        url = URL(text)
    except (ValueError, TypeError):
        return None
    if url.password is None:
        return None
    return (
        f"url {shown_url(url)!r} holds a password: secrets are read from files only; "
        "remove it from the URL and use the module's password file setting"
    )


# Headers that carry credentials: never inline in the inventory, never to another host.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _keeps_credentials(current: URL, following: URL) -> bool:
    """Whether a hop may carry what was meant for `current` (aiohttp's rule): the same
    origin, or the same host upgraded from http to https."""
    if following.origin() == current.origin():
        return True
    return following.host == current.host and (current.scheme, following.scheme) == (
        "http",
        "https",
    )


@contextlib.asynccontextmanager
async def request_following_redirects(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    deadline: float,
    note: Callable[[str], None],
    *,
    follow: bool = True,
    other_hosts: bool = False,
    origin_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A request whose redirects are followed here rather than by aiohttp, so that:
    a redirect to a host other than `url`'s is not followed unless `other_hosts` (the
    3xx is then the answer, judged like any status); and `origin_options` (inline
    headers, credentials) go only to hops that keep `url`'s origin, never elsewhere."""
    host = url.host
    trusted = True
    hops = 0
    while True:
        extra = (origin_options or {}) if trusted else {}
        response = await session.request(
            method,
            url,
            allow_redirects=False,
            timeout=client_timeout(deadline),
            **options,
            **extra,
        )
        location = response.headers.get("Location")
        if not follow or response.status not in REDIRECT_STATUSES or location is None:
            break
        try:
            following = url.join(URL(location))
        except (ValueError, TypeError):
            response.release()
            raise RedirectRefused(f"redirect to a malformed URL {printable(location)!r}") from None
        shown = printable(shown_url(following))
        if following.scheme not in ("http", "https") or not following.host:
            note(f"not following the redirect to {shown}: not an http(s) URL")
            break
        if following.host != host and not other_hosts:
            note(
                f"not following the redirect to {shown}: another host than {host} "
                "(follow_redirects_to_other_hosts: true allows it)"
            )
            break
        hops += 1
        if hops > MAX_REDIRECTS:
            response.release()
            raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects")
        note(f"redirected: {response.status} to {shown}")
        response.release()
        trusted = trusted and _keeps_credentials(url, following)
        if (response.status == 303 and method != "HEAD") or (
            response.status in (301, 302) and method == "POST"
        ):
            method = "GET"
        url = following
    try:
        yield response
    finally:
        response.release()


class RedirectRefused(aiohttp.ClientError):
    """A redirect that cannot be followed: the device's fault (invalid_response)."""


def basic_authorization(user: str, password: str) -> str:
    """The Authorization header value (RFC 7617, UTF-8). Raises ValueError for a user
    name with a colon, which the header cannot carry."""
    if ":" in user:
        raise ValueError('a ":" is not allowed in a basic auth username')
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
