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

- path, JSON: dotted keys with `[n]` (index, negative from the end), `[*]` (every element
  or value) and `[key='value']` (keep the list elements, or the object, whose `key` has
  that value: `[mediaDirection='RX']`); an optional leading `$`. Example:
  `[mediaDirection='RX'][mediaType='VIDEO'].videoFrameRate`.
- path, XML: an ElementTree XPath (tags, `*`, `.//`, `[tag='text']`, `[n]`, ...) that starts
  at the root element's name, as Cisco writes `/Status/Call`; a leading `/` is optional.
  Numbers come from the element's text.
- function: `first` (what a bare path means), `max`, `min`, `sum`, `avg` over the matches;
  `count` and `exists` (0/1) of the matches; `ratio(a, b)` = sum(a) / sum(b);
  `loss(lost, received)` = sum(lost) / (sum(lost) + sum(received)), a loss ratio from
  packet counts.
- conversion, applied to each match before the function: `s`, `ms`, `us` (to seconds),
  `bps`, `kbps`, `mbps` (to bit/s), `percent` (to a ratio), `width` / `height` (the parts of
  "1920x1080").

Booleans count as 1/0 (also the texts true/false, on/off, yes/no). Matches that are not
numbers are skipped (and said in the debug output).

Results
-------
Success once every document was fetched and parsed, with `status_code` the first
document's HTTP status. A metric whose path matches nothing (only `count` and `exists`
give 0 then) is left out, with a debug line: a call that is not up has no jitter. Only a
mapped `media_in_call` that cannot be read fails the probe (`missing_media_in_call`), as
without it "no figures" cannot be told from "no call". Failure reasons: timeout, refused
(and the other connection reasons of the http prober), status_<code>, parse_error,
unsafe_xml (a DOCTYPE or ENTITY declaration, or an encoding that hides them, is refused
before parsing: no entity expansion bombs), body_too_large, auth_file_unreadable,
bad_settings, missing_media_in_call.

Presets (the simulator serves exactly these documents, see simulate/media.py):
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
import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from .base import ProbeFailed, ProbeResult, Target, debug_note, guarded
from .httpclient import (
    REQUEST_ERRORS,
    HttpClientProber,
    basic_authorization,
    read_password_file,
    request_error_reason,
)
from .netutil import bracket

MAX_BODY_BYTES = 8 << 20  # a full Cisco /Status document is well under 1 MiB
MAIN = ""  # the name of the main document (`url`)
IN_CALL = "media_in_call"

METRICS = (
    "media_packet_loss_ratio",
    "media_jitter_seconds",
    "media_bitrate_bits_per_second",
    "media_video_width_pixels",
    "media_video_height_pixels",
    "media_frame_rate_fps",
    IN_CALL,
)
FORMATS = ("auto", "json", "xml")
AUTH_SCHEMES = ("none", "basic", "digest")
SINGLE_PATH_FUNCTIONS = ("first", "max", "min", "sum", "avg", "count", "exists")
TWO_PATH_FUNCTIONS = ("ratio", "loss")
# Division keeps whole milliseconds exact: 18 / 1000 == 0.018 but 18 * 0.001 != 0.018.
SCALES: dict[str, Callable[[float], float]] = {
    "s": lambda v: v,
    "ms": lambda v: v / 1_000,
    "us": lambda v: v / 1_000_000,
    "bps": lambda v: v,
    "kbps": lambda v: v * 1_000,
    "mbps": lambda v: v * 1_000_000,
    "percent": lambda v: v / 100,
}
RESOLUTION_PARTS = {"width": 1, "height": 2}
CONVERSIONS = (*SCALES, *RESOLUTION_PARTS)

_CISCO_IN = "Status/MediaChannels/Call/Channel[Direction='Incoming']"
_CISCO_VIDEO = f"{_CISCO_IN}[Type='Video']/Video[ChannelRole='Main']"
_POLY_RX = "[mediaDirection='RX']"
_POLY_VIDEO = f"{_POLY_RX}[mediaType='VIDEO']"


@dataclass(frozen=True)
class Preset:
    url: str
    documents: dict[str, str]
    mapping: dict[str, str]


PRESETS: dict[str, Preset] = {
    "cisco_xapi": Preset(
        url="http://{address}/getxml?location=/Status",
        documents={},
        mapping={
            IN_CALL: "exists(Status/Call)",
            "media_packet_loss_ratio": (
                f"loss({_CISCO_IN}/Netstat/LastIntervalLost,"
                f" {_CISCO_IN}/Netstat/LastIntervalReceived)"
            ),
            "media_jitter_seconds": f"max({_CISCO_IN}/Netstat/Jitter)|ms",
            "media_bitrate_bits_per_second": f"sum({_CISCO_IN}/Netstat/ChannelRate)",
            "media_video_width_pixels": f"max({_CISCO_VIDEO}/ResolutionX)",
            "media_video_height_pixels": f"max({_CISCO_VIDEO}/ResolutionY)",
            "media_frame_rate_fps": f"max({_CISCO_VIDEO}/FrameRate)",
        },
    ),
    "poly_rest": Preset(
        url="http://{address}/api/rest/mediastats",
        documents={"conferences": "http://{address}/api/rest/conferences"},
        mapping={
            IN_CALL: "conferences:exists([*].connections[state='CONNECTED'])",
            "media_packet_loss_ratio": f"loss({_POLY_RX}.packetLoss, {_POLY_RX}.packetsReceived)",
            "media_jitter_seconds": f"max({_POLY_RX}.jitter)|ms",
            "media_bitrate_bits_per_second": f"sum({_POLY_RX}.actualBitRate)|kbps",
            "media_video_width_pixels": f"max({_POLY_VIDEO}.videoResolution)|width",
            "media_video_height_pixels": f"max({_POLY_VIDEO}.videoResolution)|height",
            "media_frame_rate_fps": f"max({_POLY_VIDEO}.videoFrameRate)",
        },
    ),
}


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

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it).
        The password file is read at probe time only."""
        try:
            plan = _plan_for(self)
            for _, template in plan.documents:
                _url(template, "localhost", self.port)
            if plan.auth != "none" and not self.username:
                return [f"auth {plan.auth} needs a username"]
        except ProbeFailed as exc:
            return [str(exc)]
        return []


@dataclass(frozen=True)
class _Expression:
    metric: str
    text: str
    document: str  # MAIN or a name from `documents`
    function: str
    paths: tuple[str, ...]
    conversion: str  # "" for none


@dataclass(frozen=True)
class _Plan:
    documents: tuple[tuple[str, str], ...]  # (name, url template) to fetch, in order
    expressions: tuple[_Expression, ...]
    format: str
    auth: str


@dataclass
class _Fetched:
    name: str
    url: URL
    status: int
    content_type: str
    body: bytes


class StatsProber(HttpClientProber):
    kind = "stats"
    Settings = StatsSettings
    default_headers: ClassVar[dict[str, str]] = {"Accept": "application/json, text/xml"}

    async def probe(
        self, target: Target, settings: StatsSettings, timeout: float, log: logging.Logger
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
                note(f"GET {url}" + (f" (document {name})" if name else ""))
            fetched = await self._fetch_all(urls, request_options, settings, timeout)
            documents = {}
            for document in fetched:
                if result.status_code is None:
                    result.status_code = document.status
                documents[document.name] = _parse(document, plan.format, note)
            _evaluate(plan, documents, result, note)

        return await guarded(
            run,
            result,
            note,
            timeout,
            "no complete answer",
            expected=REQUEST_ERRORS,
            reason_for=request_error_reason,
        )

    async def _fetch_all(
        self,
        urls: list[tuple[str, URL]],
        request_options: Callable[[], dict[str, Any]],
        settings: StatsSettings,
        timeout: float,
    ) -> list[_Fetched]:
        session = self._client()

        async def fetch(name: str, url: URL) -> _Fetched:
            async with session.get(
                url,
                ssl=not settings.tls_insecure_skip_verify,  # False: no verification
                timeout=aiohttp.ClientTimeout(total=timeout),
                **request_options(),
            ) as response:
                body = await _read_limited(response.content, url)
                return _Fetched(name, url, response.status, response.content_type, body)

        outcomes = await asyncio.gather(
            *(fetch(name, url) for name, url in urls), return_exceptions=True
        )
        fetched = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            fetched.append(outcome)
        return fetched


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
    expressions = tuple(_expression(metric, text, documents) for metric, text in mapping.items())
    wanted = {expression.document for expression in expressions}
    return _Plan(
        documents=tuple((name, documents[name]) for name in documents if name in wanted),
        expressions=expressions,
        format=format_name,
        auth=auth,
    )


_DOCUMENT_PREFIX = re.compile(r"\s*([A-Za-z_]\w*)\s*:(?!:)")
_FUNCTION_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.DOTALL)


def _expression(metric: str, text: str, documents: dict[str, str]) -> _Expression:
    def bad(problem: str) -> ProbeFailed:
        return ProbeFailed("bad_settings", f"mapping {metric}: {text!r}: {problem}")

    body, *conversions = _split_top_level(text, "|")
    if len(conversions) > 1:
        raise bad("at most one `|conversion`")
    conversion = conversions[0].strip() if conversions else ""
    if conversion and conversion not in CONVERSIONS:
        raise bad(f"unknown conversion {conversion!r} (known: {', '.join(CONVERSIONS)})")

    document = MAIN
    prefix = _DOCUMENT_PREFIX.match(body)
    if prefix:
        document = prefix.group(1)
        body = body[prefix.end() :]
        if document not in documents:
            named = ", ".join(name for name in documents if name) or "none"
            raise bad(f"no document named {document!r} in documents (named: {named})")
    elif MAIN not in documents:
        raise bad("no url to read it from: set url or a preset")

    call = _FUNCTION_CALL.match(body)
    if call:
        function = call.group(1)
        paths = tuple(path.strip() for path in _split_top_level(call.group(2), ","))
    else:
        function, paths = "first", (body.strip(),)
    if function in SINGLE_PATH_FUNCTIONS:
        arity = 1
    elif function in TWO_PATH_FUNCTIONS:
        arity = 2
    else:
        known = ", ".join((*SINGLE_PATH_FUNCTIONS, *TWO_PATH_FUNCTIONS))
        raise bad(f"unknown function {function!r} (known: {known})")
    if len(paths) != arity or not all(paths):
        raise bad(f"{function}() takes {arity} path{'s' if arity > 1 else ''}")
    if conversion and function in ("count", "exists"):
        raise bad(f"{function}() counts matches: a conversion does not apply")
    return _Expression(metric, text.strip(), document, function, paths, conversion)


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split at `separator` outside quotes, brackets and parentheses."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


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
            # aiohttp drops the header if a redirect leads to another host.
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


_UNSAFE_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_WIDE_XML_STARTS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"<\x00", b"\x00<", b"\x00\x00")


def _parse(document: _Fetched, format_name: str, note: Callable[[str], None]) -> Any:
    """The document's JSON value, or for XML an element holding the root element (so that
    paths start with the root's name)."""
    if not 200 <= document.status < 300:
        raise ProbeFailed(
            f"status_{document.status}", f"GET {document.url} answered {document.status}"
        )
    body = document.body
    if format_name == "auto":
        format_name = _detect_format(document.content_type, body)
    note(
        f"{document.url}: {document.status}, {document.content_type},"
        f" {len(body)} bytes read as {format_name}"
    )
    if format_name == "json":
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ProbeFailed("parse_error", f"{document.url}: not JSON: {exc}") from exc
    if b"\x00" in body:
        # NUL is never XML in an ASCII-based encoding: either UTF-16/32, where the check
        # below cannot see declarations, or not XML at all.
        if body.startswith(_WIDE_XML_STARTS):
            raise ProbeFailed(
                "unsafe_xml",
                f"{document.url}: XML in a UTF-16/32 encoding is refused (declarations"
                " could not be checked); UTF-8 or another ASCII-based one works",
            )
        raise ProbeFailed("parse_error", f"{document.url}: not XML: NUL bytes in the document")
    declaration = _UNSAFE_DECLARATION.search(body)
    if declaration:
        raise ProbeFailed(
            "unsafe_xml",
            f"{document.url}: the document declares <!{declaration.group(1).decode()}>;"
            " DOCTYPE and ENTITY declarations are refused (entity expansion attacks)",
        )
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ProbeFailed("parse_error", f"{document.url}: not XML: {exc}") from exc
    holder = ET.Element("document")
    holder.append(root)
    return holder


def _detect_format(content_type: str, body: bytes) -> str:
    if "json" in content_type:
        return "json"
    if "xml" in content_type:
        return "xml"
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"<":
        return "xml"
    if start in (b"{", b"["):
        return "json"
    raise ProbeFailed(
        "parse_error", f"cannot tell JSON from XML ({content_type}); set format: json or xml"
    )


def _evaluate(
    plan: _Plan, documents: dict[str, Any], result: ProbeResult, note: Callable[[str], None]
) -> None:
    in_call_missing = False
    for expression in plan.expressions:
        document = documents[expression.document]
        is_xml = isinstance(document, ET.Element)
        value, detail = _value(expression, document, is_xml)
        if value is None:
            note(f"{expression.metric}: not reported, {detail} ({expression.text})")
            in_call_missing = in_call_missing or expression.metric == IN_CALL
        else:
            result.values[expression.metric] = value
            note(f"{expression.metric} = {value:g} from {expression.text} ({detail})")
    if in_call_missing:
        raise ProbeFailed(
            f"missing_{IN_CALL}", "the in-call state was not found: figures cannot be judged"
        )


def _value(expression: _Expression, document: Any, is_xml: bool) -> tuple[float | None, str]:
    """The metric's value (None when the document does not have it) and how it was found."""
    matched = [_select(document, path, is_xml, expression) for path in expression.paths]
    if expression.function == "count":
        return float(len(matched[0])), f"{len(matched[0])} matches"
    if expression.function == "exists":
        return (1.0 if matched[0] else 0.0), f"{len(matched[0])} matches"

    series: list[list[float]] = []
    skipped = 0
    for matches in matched:
        numbers = []
        for match in matches:
            number = _number(match.text if is_xml else match, expression.conversion)
            if number is None:
                skipped += 1
            else:
                numbers.append(number)
        series.append(numbers)
    detail = " + ".join(f"{len(numbers)} values" for numbers in series)
    if skipped:
        detail += f", {skipped} matches not numbers"
    for path, numbers in zip(expression.paths, series, strict=True):
        if not numbers:
            return None, f"no number at {path}" + (f" ({detail})" if skipped else "")
    first = series[0]
    match expression.function:
        case "first":
            return first[0], detail
        case "max":
            return max(first), detail
        case "min":
            return min(first), detail
        case "sum":
            return math.fsum(first), detail
        case "avg":
            return math.fsum(first) / len(first), detail
        case "ratio":
            whole = math.fsum(series[1])
            if not whole:
                return None, f"{detail}, divisor is 0"
            return math.fsum(first) / whole, detail
        case _:  # loss
            lost = math.fsum(first)
            total = lost + math.fsum(series[1])
            if not total:
                return None, f"{detail}, no packets counted"
            return lost / total, detail


def _select(document: Any, path: str, is_xml: bool, expression: _Expression) -> list[Any]:
    if is_xml:
        if path.startswith("//"):
            path = "." + path
        elif path.startswith("/"):
            path = path[1:]
        try:
            return document.findall(path)
        except (SyntaxError, TypeError, KeyError, ValueError) as exc:
            raise ProbeFailed(
                "bad_settings", f"mapping {expression.metric}: XML path {path!r}: {exc}"
            ) from exc
    try:
        steps = _json_steps(path)
    except ValueError as exc:
        raise ProbeFailed(
            "bad_settings", f"mapping {expression.metric}: JSON path {path!r}: {exc}"
        ) from exc
    return _json_select(document, steps)


_JSON_STEP = re.compile(
    r"""(?P<dot>\.)?(?P<key>[^.\[\]]+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<star>\*)\s*\]
      | \[\s*(?P<field>[^=\[\]]+?)\s*=\s*
           (?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\]'"]*?))\s*\]""",
    re.VERBOSE,
)


@functools.lru_cache(maxsize=512)
def _json_steps(path: str) -> tuple[tuple[str, Any, Any], ...]:
    if path.startswith("$"):
        path = path[1:].removeprefix(".")
    position = 0
    steps: list[tuple[str, Any, Any]] = []
    while position < len(path):
        step = _JSON_STEP.match(path, position)
        if step is None:
            raise ValueError(f"cannot read it from character {position + 1}")
        if step.group("key") is not None:
            # "a.b" and "$.a": a key after another step needs its dot, the first one not.
            if bool(step.group("dot")) != (position > 0):
                raise ValueError(f"misplaced '.' near character {position + 1}")
            steps.append(("key", step.group("key"), None))
        elif step.group("index") is not None:
            steps.append(("index", int(step.group("index")), None))
        elif step.group("star") is not None:
            steps.append(("all", None, None))
        else:
            quoted = (step.group("single"), step.group("double"), step.group("bare"))
            value = next((text for text in quoted if text is not None), "")
            steps.append(("filter", step.group("field").strip(), value))
        position = step.end()
    if not steps:
        raise ValueError("empty path")
    return tuple(steps)


def _json_select(document: Any, steps: tuple[tuple[str, Any, Any], ...]) -> list[Any]:
    nodes = [document]
    for kind, first, second in steps:
        selected: list[Any] = []
        for node in nodes:
            if kind == "key":
                if isinstance(node, dict) and first in node:
                    selected.append(node[first])
            elif kind == "index":
                if isinstance(node, list) and -len(node) <= first < len(node):
                    selected.append(node[first])
            elif kind == "all":
                if isinstance(node, list):
                    selected.extend(node)
                elif isinstance(node, dict):
                    selected.extend(node.values())
            else:
                candidates = node if isinstance(node, list) else [node]
                selected.extend(
                    candidate
                    for candidate in candidates
                    if isinstance(candidate, dict)
                    and first in candidate
                    and _json_text(candidate[first]) == second
                )
        nodes = selected
    return [node for node in nodes if node is not None]


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_BOOLEAN_WORDS = {"true": 1.0, "on": 1.0, "yes": 1.0, "false": 0.0, "off": 0.0, "no": 0.0}
_RESOLUTION = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)")


def _number(raw: Any, conversion: str) -> float | None:
    """A JSON value or XML text as a number in base units, or None if it is not one."""
    if conversion in RESOLUTION_PARTS:
        found = _RESOLUTION.match(raw) if isinstance(raw, str) else None
        return float(found.group(RESOLUTION_PARTS[conversion])) if found else None
    if isinstance(raw, bool):
        number = 1.0 if raw else 0.0
    elif isinstance(raw, int | float):
        number = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower() in _BOOLEAN_WORDS:
            number = _BOOLEAN_WORDS[text.lower()]
        else:
            try:
                number = float(text)
            except ValueError:
                return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return SCALES[conversion](number) if conversion else number
