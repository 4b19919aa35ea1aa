"""Text a device sent, made safe to use: a body decoded by a charset the device names, and
header values written to debug output."""

from __future__ import annotations


def decode_body(body: bytes, charset: str | None) -> str:
    """The body as text in its declared charset (UTF-8 when none), undecodable bytes
    replaced. A charset Python does not know or that is no text encoding (rot13, hex),
    or a codec that refuses replacement (idna, punycode), falls back to UTF-8."""
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except (LookupError, UnicodeError):
        return body.decode("utf-8", errors="replace")


def printable(text: str) -> str:
    """Device-sent header text made safe for debug output: aiohttp keeps undecodable
    header bytes as lone surrogates, which cannot be written as UTF-8; they are shown as
    the bytes they stand for (\\xff)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")
