"""HTTP(S) probe: one request, judged by status code and optionally by the body.

For the web interfaces of MCUs, recorders and gateways. One client session serves every
target; each probe opens a fresh connection so that it measures what a new client meets.

`body_regex` runs in a killable child process (sandbox.py) with a budget of
BODY_REGEX_SECONDS: a pattern that backtracks catastrophically over a device's body fails
that probe with `body_regex_timeout` and never stalls the event loop, so every other probe
runs on time.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from . import reasons
from .base import ProbeFailed, ProbeResult, Target, debug_note, guarded
from .devicetext import decode_body, printable
from .httpclient import (
    CREDENTIAL_HEADERS,
    REQUEST_ERRORS,
    HttpClientProber,
    basic_authorization,
    read_password_file,
    request_error_reason,
    request_following_redirects,
    secret_file_problem,
    shown_url,
    url_password_problem,
)
from .netutil import bracket
from .sandbox import WorkerBusy, WorkerTimeout

MAX_BODY_BYTES = 1 << 20
# A sane pattern searches a MiB in milliseconds; one that takes a second is backtracking
# catastrophically and would take hours. Capped further by what is left of the timeout.
BODY_REGEX_SECONDS = 1.0
# The match must give up before the probe's own timeout fires, so that its reason wins.
_BODY_REGEX_MARGIN_SECONDS = 0.05


@dataclass
class HttpSettings:
    url: str = "http://{address}/"  # {address} becomes the endpoint's address
    method: str = "GET"
    valid_status_codes: list[int] = field(default_factory=list)  # empty: any 2xx
    # The body (first MiB) must match, else body_mismatch; body_regex_timeout when the
    # search runs past BODY_REGEX_SECONDS.
    body_regex: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tls_insecure_skip_verify: bool = False
    basic_auth_user: str | None = None
    basic_auth_password_file: str | None = None  # secrets come from files, never inline
    follow_redirects: bool = True
    # A redirect to another host than the URL's is the answer (a 3xx), not followed,
    # unless this is true. Headers and credentials never go to another host either way.
    follow_redirects_to_other_hosts: bool = False

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it).
        The password file is read at probe time only: it may exist only where the
        exporter runs; if it exists here, it must not be readable by others."""
        try:
            _url(Target("validate", "localhost"), self)
            _body_pattern(self)
            if self.basic_auth_password_file is not None and self.basic_auth_user is None:
                return ["basic_auth_password_file needs basic_auth_user"]
            if self.basic_auth_user is not None and ":" in self.basic_auth_user:
                return ["basic_auth_user must not contain ':'"]
        except ProbeFailed as exc:
            return [str(exc)]
        problems = [
            f"headers: {name} must not be written inline (secrets come from files): use "
            "basic_auth_user and basic_auth_password_file"
            for name in self.headers
            if name.lower() in CREDENTIAL_HEADERS
        ]
        if problem := url_password_problem(self.url):
            problems.append(problem)
        path = self.basic_auth_password_file
        if path is not None and (problem := secret_file_problem(path)):
            problems.append(f"basic_auth_password_file: {problem}")
        return problems


@dataclass
class _Request:
    url: URL
    headers: dict[str, str]
    body_pattern: re.Pattern[str] | None


class HttpProber(HttpClientProber):
    kind = "http"
    Settings = HttpSettings
    force_close = True  # every probe measures what a new client meets

    async def probe_until(
        self, target: Target, settings: HttpSettings, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        result = ProbeResult(success=False)
        note = debug_note(result, log, self.kind, target.endpoint_id)

        async def run() -> None:
            request = _prepare(target, settings)
            note(f"{settings.method.upper()} {shown_url(request.url)}")
            await self._exchange(request, settings, deadline, result, note)

        return await guarded(
            run,
            result,
            note,
            deadline,
            "no complete answer",
            expected=(*REQUEST_ERRORS, ValueError),
            reason_for=request_error_reason,
        )

    async def _exchange(
        self,
        request: _Request,
        settings: HttpSettings,
        deadline: float,
        result: ProbeResult,
        note,
    ) -> None:
        async with request_following_redirects(
            self._client(),
            settings.method.upper(),
            request.url,
            deadline,
            note,
            follow=settings.follow_redirects,
            other_hosts=settings.follow_redirects_to_other_hosts,
            origin_options={"headers": request.headers},
            ssl=not settings.tls_insecure_skip_verify,  # False: no verification
        ) as response:
            result.status_code = response.status
            version = response.version
            http_version = f"HTTP/{version.major}.{version.minor}" if version else "HTTP"
            reason = printable(response.reason or "")
            note(f"{http_version} {response.status} {reason}".rstrip())

            body, complete = await _read_limited(response.content, MAX_BODY_BYTES)
            length = response.content_length
            if length is None and complete:
                length = len(body)
            if length is not None:
                result.values["http_content_length_bytes"] = float(length)

            valid = settings.valid_status_codes
            if not (response.status in valid if valid else 200 <= response.status < 300):
                expected = ", ".join(map(str, valid)) if valid else "2xx"
                raise ProbeFailed(f"status_{response.status}", f"expected status {expected}")
            if request.body_pattern is not None:
                text = decode_body(body, response.charset)
                scope = "body" if complete else f"first {MAX_BODY_BYTES} bytes of the body"
                pattern = request.body_pattern.pattern
                if not await self._body_matches(pattern, text, scope, deadline):
                    raise ProbeFailed("body_mismatch", f"{scope} does not match /{pattern}/")
                note(f"body matches /{pattern}/")

    async def _body_matches(self, pattern: str, text: str, scope: str, deadline: float) -> bool:
        until = deadline - _BODY_REGEX_MARGIN_SECONDS
        budget = min(BODY_REGEX_SECONDS, until - asyncio.get_running_loop().time())
        request = {"kind": "regex", "pattern": pattern}
        blob = text.encode("utf-8", "surrogatepass")  # a unicode_escape body may have them
        try:
            answer = await self._workers.call(request, [blob], budget, until)
        except WorkerBusy as exc:
            raise ProbeFailed(reasons.LOCAL_RESOURCE_EXHAUSTED, str(exc)) from None
        except WorkerTimeout:
            if budget < BODY_REGEX_SECONDS:
                raise ProbeFailed(
                    "timeout", f"/{pattern}/ was still searching the {scope} at the timeout"
                ) from None
            raise ProbeFailed(
                "body_regex_timeout",
                f"/{pattern}/ took more than {BODY_REGEX_SECONDS:g} s over the {scope}"
                f" ({len(text)} characters) and was stopped: it backtracks catastrophically"
                " on this body; simplify it (no nested quantifiers such as (a+)+)",
            ) from None
        if answer.get("memory_exhausted"):
            raise ProbeFailed(
                "body_regex_timeout",
                f"/{pattern}/ needed more memory than a worker may use over the {scope} and "
                "was stopped; simplify it",
            )
        return bool(answer["found"])


def _prepare(target: Target, settings: HttpSettings) -> _Request:
    """Everything that depends only on the settings; problems are `bad_settings`."""
    url = _url(target, settings)
    auth = _authorization(settings)
    pattern = _body_pattern(settings)
    headers = dict(settings.headers)
    if auth is not None:
        headers["Authorization"] = auth
    return _Request(url=url, headers=headers, body_pattern=pattern)


def _authorization(settings: HttpSettings) -> str | None:
    user, path = settings.basic_auth_user, settings.basic_auth_password_file
    if user is None:
        if path is not None:
            raise ProbeFailed("bad_settings", "basic_auth_password_file needs basic_auth_user")
        return None
    password = ""
    if path is not None:
        try:
            password = read_password_file(path)
        except OSError as exc:
            raise ProbeFailed(
                "bad_settings", f"basic_auth_password_file {path!r}: {exc.strerror}"
            ) from exc
    try:
        return basic_authorization(user, password)
    except ValueError as exc:
        raise ProbeFailed("bad_settings", "basic_auth_user must not contain ':'") from exc


def _url(target: Target, settings: HttpSettings) -> URL:
    try:
        url = URL(settings.url.replace("{address}", bracket(target.address)))
    except (ValueError, TypeError) as exc:
        raise ProbeFailed("bad_settings", f"url {settings.url!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProbeFailed(
            "bad_settings", f"url {settings.url!r} must be http:// or https:// with a host"
        )
    return url


def _body_pattern(settings: HttpSettings) -> re.Pattern[str] | None:
    if settings.body_regex is None:
        return None
    try:
        return re.compile(settings.body_regex)
    except re.error as exc:
        raise ProbeFailed("bad_settings", f"body_regex {settings.body_regex!r}: {exc}") from exc


async def _read_limited(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether that was the whole body."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), content.at_eof()
