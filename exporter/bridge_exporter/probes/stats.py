"""Media statistics an endpoint reports about its own call, read over HTTP (JSON or XML).

Where ICMP and STAMP measure the network path, this asks the codec itself what it
receives: packet loss, jitter, bit rate, picture size and frame rate, and whether it is in
a call at all. Each figure becomes `result.values[<metric>]` (exported as `bridge_<metric>`).

Settings
--------
- `preset`: "cisco_xapi" or "poly_rest" (ready-made URLs and mapping, below) or none.
- `url`: the main document; `{address}` becomes the endpoint's address (IPv6 bracketed).
  Empty: the preset's URL.
- `port`: when not 0, the port of every URL (so a preset can be used on another port).
- `documents`: more documents by name, `name: url`, for figures a device serves apart
  (a mapping value reads one with a `name:` prefix). Merged over the preset's.
- `format`: "json", "xml", or "auto" (by Content-Type, else by the first character).
- `mapping`: metric name -> value expression (syntax below). Merged over the preset's
  mapping; an empty expression removes a preset's entry. Metric names form a closed set:
  media_packet_loss_ratio, media_jitter_seconds, media_bitrate_bits_per_second,
  media_video_width_pixels, media_video_height_pixels, media_frame_rate_fps, media_in_call.
- `auth`: "none", "basic" or "digest" (RFC 7616); `username`; `password_file`: the
  password is read from this file (trailing newline dropped) at every probe, never
  written inline. No file: an empty password.
- `tls_insecure_skip_verify`: accept any certificate (codecs often have self-signed ones).

Value expressions
-----------------
    [document:] path | function(path) | function(path, path) [| conversion]

The language (functions, conversions) is described in statsdoc/expressions.py, the JSON
paths and XML XPaths in statsdoc/paths.py.

Results
-------
Success once every document was fetched and parsed, with `status_code` the first
document's HTTP status. A metric whose path matches nothing (only `count` and `exists`
give 0 then) is left out, with a debug line: a call that is not up has no jitter. Only a
mapped `media_in_call` that cannot be read fails the probe (`missing_media_in_call`), as
without it "no figures" cannot be told from "no call". Failure reasons: timeout, refused
(and the other connection reasons of the http prober), status_<code>, parse_error (also:
a document that needs more memory than a reader child may use), unsafe_xml (a DOCTYPE or
ENTITY declaration, refused by defusedxml in any encoding: no entity expansion bombs),
body_too_large, auth_file_unreadable, bad_settings, missing_media_in_call.

Documents are parsed and evaluated in a sandbox child process (sandbox.py), never on the
event loop: a huge or hostile document costs that child's CPU and capped memory.

Presets (statsdoc/presets.py; the simulator serves exactly these documents, see
simulate/media.py):
- cisco_xapi: `http://{address}/getxml?location=/Status`, the RoomOS/CE xAPI status.
  Incoming channels only: jitter is the largest `Netstat/Jitter` (ms), loss is
  `LastIntervalLost` over lost + `LastIntervalReceived` (the last interval, not the whole
  call), bit rate the sum of `ChannelRate`, picture from the main incoming video channel;
  in call when `Status/Call` exists. Codecs usually want `auth: basic` and often https.
- poly_rest: `http://{address}/api/rest/mediastats` (RX streams: `jitter` ms,
  `packetLoss` / `packetsReceived`, `actualBitRate` kbit/s, `videoResolution`,
  `videoFrameRate`) and the document `conferences` at `/api/rest/conferences` (in call
  when a connection is CONNECTED).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from . import reasons
from .base import ProbeFailed, ProbeResult, Target, debug_note, guarded
from .httpclient import (
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
from .statsdoc.documents import FORMATS, Fetched
from .statsdoc.expressions import MAIN, Expression, parse_expression
from .statsdoc.paths import check_path
from .statsdoc.presets import METRICS, PRESETS

__all__ = ["METRICS", "PRESETS", "StatsProber", "StatsSettings"]

MAX_BODY_BYTES = 8 << 20  # a full Cisco /Status document is well under 1 MiB
AUTH_SCHEMES = ("none", "basic", "digest")
# Reading must give up before the probe's own timeout fires, so that its note is kept.
_READ_MARGIN_SECONDS = 0.05
# Reading a device's documents (parse and evaluate, in a worker process) may take this long
# at most, whatever the module's timeout: a full Cisco /Status takes ~50 ms, an 8 MiB
# hostile document under 1 s; the cap keeps one device from holding a worker for long.
READ_SECONDS = 2.0


@dataclass
class StatsSettings:
    preset: str | None = None  # "cisco_xapi" or "poly_rest"
    url: str = ""  # empty: the preset's; {address} becomes the endpoint's address
    port: int = 0  # not 0: the port of every URL
    documents: dict[str, str] = field(default_factory=dict)  # more documents: name -> url
    format: str = "auto"  # "json", "xml" or "auto"
    mapping: dict[str, str] = field(default_factory=dict)  # metric -> value expression
    auth: str = "none"  # "none", "basic" or "digest"
    username: str | None = None
    password_file: str | None = None  # secrets come from files, never inline
    tls_insecure_skip_verify: bool = False
    # A redirect to another host than the document's is not followed unless this is true;
    # credentials never go to another host either way.
    follow_redirects_to_other_hosts: bool = False

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it).
        The password file is read at probe time only; if it exists here, it must not be
        readable by others."""
        try:
            plan = _plan_for(self)
            for _, template in plan.documents:
                _url(template, "localhost", self.port)
            if plan.auth != "none" and not self.username:
                return [f"auth {plan.auth} needs a username"]
        except ProbeFailed as exc:
            return [str(exc)]
        problems = [p for _, t in plan.documents if (p := url_password_problem(t))]
        if self.password_file is not None and (problem := secret_file_problem(self.password_file)):
            problems.append(f"password_file: {problem}")
        return problems


@dataclass(frozen=True)
class _Plan:
    documents: tuple[tuple[str, str], ...]  # (name, url template) to fetch, in order
    expressions: tuple[Expression, ...]
    format: str
    auth: str


class StatsProber(HttpClientProber):
    kind = "stats"
    Settings = StatsSettings
    default_headers: ClassVar[dict[str, str]] = {"Accept": "application/json, text/xml"}

    async def probe_until(
        self, target: Target, settings: StatsSettings, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        result = ProbeResult(success=False)
        note = debug_note(result, log, self.kind, target.endpoint_id)

        async def run() -> None:
            plan = _plan_for(settings)
            request_options = _request_options(plan, settings)
            urls = [
                (name, _url(template, target.address, settings.port))
                for name, template in plan.documents
            ]
            for name, url in urls:
                note(f"GET {shown_url(url)}" + (f" (document {name})" if name else ""))
            fetched = await self._fetch_all(urls, request_options, settings, deadline, note)
            result.status_code = fetched[0].status
            await self._read(fetched, plan, deadline, result, note)

        return await guarded(
            run,
            result,
            note,
            deadline,
            "no complete answer",
            expected=REQUEST_ERRORS,
            reason_for=request_error_reason,
        )

    async def _fetch_all(
        self,
        urls: list[tuple[str, URL]],
        request_options: Callable[[], dict[str, Any]],
        settings: StatsSettings,
        deadline: float,
        note: Callable[[str], None],
    ) -> list[Fetched]:
        session = self._client()

        async def fetch(name: str, url: URL) -> Fetched:
            async with request_following_redirects(
                session,
                "GET",
                url,
                deadline,
                note,
                other_hosts=settings.follow_redirects_to_other_hosts,
                origin_options=request_options(),
                ssl=not settings.tls_insecure_skip_verify,  # False: no verification
            ) as response:
                body = await _read_limited(response.content, url)
                return Fetched(name, str(url), response.status, response.content_type, body)

        outcomes = await asyncio.gather(
            *(fetch(name, url) for name, url in urls), return_exceptions=True
        )
        fetched = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            fetched.append(outcome)
        return fetched

    async def _read(
        self,
        fetched: list[Fetched],
        plan: _Plan,
        deadline: float,
        result: ProbeResult,
        note: Callable[[str], None],
    ) -> None:
        """Parse the documents and evaluate the plan's expressions in a sandbox child:
        values into `result`, the child's debug lines through `note`."""
        request = {
            "kind": "stats",
            "format": plan.format,
            "expressions": [astuple(expression) for expression in plan.expressions],
            "documents": [[d.name, d.url, d.status, d.content_type] for d in fetched],
        }
        until = deadline - _READ_MARGIN_SECONDS
        budget = until - asyncio.get_running_loop().time()
        capped = budget > READ_SECONDS
        try:
            answer = await self._workers.call(
                request, [d.body for d in fetched], min(budget, READ_SECONDS), until
            )
        except WorkerBusy as exc:
            raise ProbeFailed(reasons.LOCAL_RESOURCE_EXHAUSTED, str(exc)) from None
        except WorkerTimeout:
            if capped:
                raise ProbeFailed(
                    "parse_error",
                    f"parsing and evaluating the documents took more than {READ_SECONDS:g} s",
                ) from None
            raise ProbeFailed(
                "timeout", "parsing and evaluating the documents did not finish in time"
            ) from None
        if answer.get("memory_exhausted"):
            raise ProbeFailed(
                "parse_error",
                "the documents need more memory than a reader may use"
                f" ({answer['memory_limit_bytes'] >> 20} MiB) to be parsed",
            )
        for line in answer["notes"]:
            note(line)
        result.values.update(answer["values"])
        if answer["failure"]:
            raise ProbeFailed(*answer["failure"])


def _plan_for(settings: StatsSettings) -> _Plan:
    return _compile(
        settings.preset,
        settings.url,
        tuple(settings.documents.items()),
        settings.format,
        tuple(settings.mapping.items()),
        settings.auth,
    )


@functools.lru_cache(maxsize=256)
def _compile(
    preset_name: str | None,
    url: str,
    documents_items: tuple[tuple[str, str], ...],
    format_name: str,
    mapping_items: tuple[tuple[str, str], ...],
    auth: str,
) -> _Plan:
    """The settings checked and merged with the preset; problems are `bad_settings`."""
    if format_name not in FORMATS:
        raise ProbeFailed(
            "bad_settings", f"format {format_name!r} is not one of {', '.join(FORMATS)}"
        )
    if auth not in AUTH_SCHEMES:
        raise ProbeFailed("bad_settings", f"auth {auth!r} is not one of {', '.join(AUTH_SCHEMES)}")
    documents: dict[str, str] = {}
    mapping: dict[str, str] = {}
    if preset_name is not None:
        preset = PRESETS.get(preset_name)
        if preset is None:
            raise ProbeFailed(
                "bad_settings", f"preset {preset_name!r} is not one of {', '.join(PRESETS)}"
            )
        documents = {MAIN: preset.url, **preset.documents}
        mapping = dict(preset.mapping)
    if url:
        documents[MAIN] = url
    documents.update(documents_items)
    mapping.update(mapping_items)
    mapping = {metric: text for metric, text in mapping.items() if text.strip()}

    unknown = sorted(set(mapping) - set(METRICS))
    if unknown:
        raise ProbeFailed(
            "bad_settings",
            f"unknown metric names in mapping: {', '.join(unknown)} (known: {', '.join(METRICS)})",
        )
    if not mapping:
        raise ProbeFailed("bad_settings", "nothing to read: set a preset or a mapping")
    expressions = tuple(
        parse_expression(metric, text, documents) for metric, text in mapping.items()
    )
    for expression in expressions:
        for path in expression.paths:
            try:
                check_path(path, format_name)
            except ValueError as exc:
                raise ProbeFailed(
                    "bad_settings",
                    f"mapping {expression.metric}: {path!r} is not "
                    f"{'an XML' if format_name == 'xml' else 'a JSON'} path ({exc})",
                ) from exc
    wanted = {expression.document for expression in expressions}
    return _Plan(
        documents=tuple((name, documents[name]) for name in documents if name in wanted),
        expressions=expressions,
        format=format_name,
        auth=auth,
    )


def _url(template: str, address: str, port: int) -> URL:
    text = template.replace("{address}", bracket(address))
    try:
        url = URL(text)
        if port:
            url = url.with_port(port)
    except (ValueError, TypeError) as exc:
        raise ProbeFailed("bad_settings", f"url {text!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProbeFailed("bad_settings", f"url {text!r} must be http:// or https:// with a host")
    return url


def _request_options(plan: _Plan, settings: StatsSettings) -> Callable[[], dict[str, Any]]:
    """Per-request keyword arguments carrying the credentials (read from the file now)."""
    if plan.auth == "none":
        return dict
    if not settings.username:
        raise ProbeFailed("bad_settings", f"auth {plan.auth} needs a username")
    password = ""
    if settings.password_file is not None:
        try:
            password = read_password_file(settings.password_file)
        except (OSError, UnicodeDecodeError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ProbeFailed(
                "auth_file_unreadable", f"password_file {settings.password_file!r}: {problem}"
            ) from exc
    username = settings.username
    try:
        if plan.auth == "basic":
            header = basic_authorization(username, password)
            # Sent only to the document's own origin (request_following_redirects).
            return lambda: {"headers": {"Authorization": header}}
        aiohttp.DigestAuthMiddleware(username, password)  # checks the username now
    except ValueError as exc:
        raise ProbeFailed("bad_settings", f"username {username!r}: {exc}") from exc
    # A digest middleware keeps the server's nonce and a request counter: one per request.
    return lambda: {
        "middlewares": (aiohttp.DigestAuthMiddleware(username, password, preemptive=False),)
    }


async def _read_limited(content: aiohttp.StreamReader, url: URL) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProbeFailed("body_too_large", f"{url}: more than {MAX_BODY_BYTES} bytes")
