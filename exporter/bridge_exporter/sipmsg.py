"""Just enough SIP message handling (RFC 3261 section 7) for an OPTIONS ping.

Shared by the `sip` prober (parsing responses) and the simulator's user agent server
(parsing requests, building responses). Parsing is lenient where real devices are sloppy
(bare LF line endings, header name case, compact header forms) and strict where a wrong
answer would mislead (start line, header syntax, Content-Length).
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

# RFC 3261 section 7.3.3 and the later RFCs that registered compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose comma-separated values are separate entries (a proxy may fold several
# Via values into one line; the topmost one is the first value).
_LIST_HEADERS = frozenset({"via", "route", "record-route", "contact"})

# How headers are spelled when this module writes them.
_CANONICAL_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
}

_RESPONSE_LINE = re.compile(r"SIP/2\.0 ([1-6]\d\d)(?: (.*))?", re.IGNORECASE)
_REQUEST_LINE = re.compile(r"([A-Za-z0-9!%*_+`'~.-]+) (\S+) SIP/2\.0", re.IGNORECASE)
_Key = TypeVar("_Key")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!%*_+`'~.-]+")


@dataclass
class SipMessage:
    """One parsed SIP request or response."""

    first_line: str
    method: str | None  # requests only, e.g. "OPTIONS"
    request_uri: str | None  # requests only
    status_code: int | None  # responses only
    reason_phrase: str  # responses only ("" for requests)
    # Lower-cased full header names (compact forms expanded) -> values in message order.
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return self.status_code is not None

    def header(self, name: str) -> str | None:
        """The first value of a header (any case, full or compact name), or None."""
        values = self.headers.get(canonical_key(name))
        return values[0] if values else None

    def cseq(self) -> tuple[int, str] | None:
        """(sequence number, method) from CSeq, or None when absent or malformed."""
        value = self.header("cseq")
        if value is None:
            return None
        parts = value.split()
        if len(parts) != 2 or not is_number(parts[0]):
            return None
        return int(parts[0]), parts[1]

    def via_branch(self) -> str | None:
        """The branch parameter of the topmost Via, or None."""
        via = self.header("via")
        return header_params(via).get("branch") if via is not None else None


def is_number(text: str) -> bool:
    """True for ASCII digits only: str.isdigit() also accepts "²", which int() refuses."""
    return text.isascii() and text.isdigit()


# Header names recur on every message, so their keys are cached; only short ones, as
# anyone who can reach the prober's port chooses what a cached name holds.
_CACHED_NAME_LENGTH = 40


def _cached_when_short(function: Callable[[str], _Key]) -> Callable[[str], _Key]:
    cached = functools.lru_cache(maxsize=1024)(function)

    @functools.wraps(function)
    def lookup(name: str) -> _Key:
        return cached(name) if len(name) <= _CACHED_NAME_LENGTH else function(name)

    return lookup


@_cached_when_short
def canonical_key(name: str) -> str:
    """The key a header is stored under in SipMessage.headers."""
    key = name.strip().lower()
    return COMPACT_FORMS.get(key, key)


@_cached_when_short
def _header_key(name: str) -> str | None:
    """canonical_key() of a header name as it appears before the colon, or None when it
    is not a valid header name."""
    name = name.strip()
    return canonical_key(name) if _HEADER_NAME.fullmatch(name) else None


def header_params(value: str) -> dict[str, str]:
    """The `;name=value` parameters of a header value (Via, From, To, Contact).

    Parameters inside `<...>` belong to the URI and are skipped. A parameter without a
    value (`;rport`, `;lr`) maps to "". Names are lower-cased; values are kept as sent.
    """
    close = value.rfind(">")
    tail = value[close + 1 :] if close >= 0 else value
    params: dict[str, str] = {}
    for part in _split_outside_quotes(tail, ";")[1:]:
        name, _, param_value = part.partition("=")
        name = name.strip().lower()
        if name:
            params[name] = param_value.strip().strip('"')
    return params


def parse_message(data: bytes) -> SipMessage | None:
    """Parse one complete SIP message (a datagram, or a frame cut by `stream_frame_length`).

    Returns None when the bytes are not a SIP message: no start line, a malformed header
    line, no blank line after the headers, or a body shorter than Content-Length.
    """
    data = data.lstrip(b"\r\n")
    head_end, separator_length = _find_head_end(data)
    if head_end < 0:
        return None
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = _unfold(head.replace("\r\n", "\n").split("\n"))
    if not lines:
        return None
    first_line = lines[0].strip()
    message = _parse_start_line(first_line)
    if message is None:
        return None
    headers = message.headers
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = _header_key(name) if colon else None
        if key is None:
            return None
        value = value.strip()
        if key in _LIST_HEADERS:
            values = [v for v in map(str.strip, _split_outside_quotes(value, ",")) if v]
            headers.setdefault(key, []).extend(values)
        elif value:
            headers.setdefault(key, []).append(value)
        else:
            headers.setdefault(key, [])
    rest = data[head_end + separator_length :]
    length_text = message.header("content-length")
    if length_text is None:
        message.body = rest  # a datagram's body runs to its end (RFC 3261 18.3)
    else:
        if not is_number(length_text):
            return None
        length = int(length_text)
        if len(rest) < length:
            return None
        message.body = rest[:length]
    return message


def stream_frame_length(buffer: bytes) -> int | None:
    """Bytes taken by the first message in a TCP/TLS stream buffer, or None if the buffer
    does not hold a whole message yet. Leading CRLF keep-alives count towards the length.
    A missing or malformed Content-Length counts as 0 (parse_message then decides)."""
    stripped = buffer.lstrip(b"\r\n")
    skipped = len(buffer) - len(stripped)
    head_end, separator_length = _find_head_end(stripped)
    if head_end < 0:
        return None
    body_length = 0
    for raw_line in stripped[:head_end].split(b"\n")[1:]:
        name, colon, value = raw_line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip()
            body_length = int(text) if text.isdigit() else 0
            break
    total = skipped + head_end + separator_length + body_length
    return total if len(buffer) >= total else None


def build_response(
    request: SipMessage,
    code: int,
    reason: str,
    extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    to_tag: str | None = None,
    received: tuple[str, int] | None = None,
    body: bytes = b"",
) -> bytes:
    """A response to `request` as a UAS writes it (RFC 3261 section 8.2.6).

    Copies every Via (in order), From, Call-ID and CSeq; copies To and adds a tag unless
    it has one (a 100 Trying gets a tag only when `to_tag` is given). `received` is the
    request's source address: it fills `received=` and an empty `;rport` on the top Via
    (RFC 3581). Content-Length is always written, from `body`.
    """
    lines = [f"SIP/2.0 {code} {reason}"]
    for index, via in enumerate(request.headers.get("via", [])):
        if index == 0 and received is not None:
            via = _stamp_received(via, received)
        lines.append(f"Via: {via}")
    if (from_value := request.header("from")) is not None:
        lines.append(f"From: {from_value}")
    if (to_value := request.header("to")) is not None:
        if "tag" not in header_params(to_value) and (code != 100 or to_tag is not None):
            to_value = f"{to_value};tag={to_tag or secrets.token_hex(6)}"
        lines.append(f"To: {to_value}")
    for name in ("call-id", "cseq"):
        if (value := request.header(name)) is not None:
            lines.append(f"{header_display_name(name)}: {value}")
    pairs = extra_headers.items() if isinstance(extra_headers, Mapping) else extra_headers
    lines.extend(f"{name}: {value}" for name, value in pairs)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def header_display_name(key: str) -> str:
    """`call-id` -> `Call-ID`, `content-length` -> `Content-Length`."""
    return _CANONICAL_NAMES.get(key) or "-".join(p.capitalize() for p in key.split("-"))


def _find_head_end(data: bytes) -> tuple[int, int]:
    """Index of the blank line ending the headers and its length, or (-1, 0)."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def _parse_start_line(line: str) -> SipMessage | None:
    if match := _RESPONSE_LINE.fullmatch(line):
        return SipMessage(line, None, None, int(match[1]), match[2] or "")
    if match := _REQUEST_LINE.fullmatch(line):
        return SipMessage(line, match[1].upper(), match[2], None, "")
    return None


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (starting with space or tab) to the header above them."""
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and len(unfolded) > 1:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    return unfolded


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on `separator` except inside "quoted strings" and <angle brackets>."""
    if '"' not in text and "<" not in text:
        return text.split(separator)  # nothing to step over: most headers, most of the time
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    angle_depth = 0
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char == "<":
            angle_depth += 1
        elif not in_quotes and char == ">":
            angle_depth = max(0, angle_depth - 1)
        elif not in_quotes and angle_depth == 0 and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _stamp_received(via: str, source: tuple[str, int]) -> str:
    host, port = source
    parts = _split_outside_quotes(via, ";")
    stamped = [parts[0]]
    for part in parts[1:]:
        name = part.split("=", 1)[0].strip().lower()
        if name == "rport":
            part = f"rport={port}"
        elif name == "received":
            continue
        stamped.append(part)
    stamped.append(f"received={host}")
    return ";".join(stamped)
