"""A fetched stats document, told apart (JSON or XML) and parsed without trusting it.

XML goes through defusedxml with DTDs forbidden: a DOCTYPE (and so any ENTITY) is refused
as `unsafe_xml` whatever the document's encoding, since expat itself reports it. Anything
else a parser raises over a device's bytes (syntax, an unknown or unusable encoding, JSON
nested past the recursion limit, an integer past Python's digit limit) is `parse_error`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import defusedxml
import defusedxml.ElementTree

from ..base import ProbeFailed
from ..devicetext import printable

FORMATS = ("auto", "json", "xml")


@dataclass
class Fetched:
    name: str
    url: str
    status: int
    content_type: str
    body: bytes


def parse_document(document: Fetched, format_name: str, note: Callable[[str], None]) -> Any:
    """The document's JSON value, or for XML an element holding the root element (so that
    paths start with the root's name)."""
    if not 200 <= document.status < 300:
        raise ProbeFailed(
            f"status_{document.status}", f"GET {document.url} answered {document.status}"
        )
    body = document.body
    if format_name == "auto":
        format_name = detect_format(document.content_type, body)
    note(
        f"{document.url}: {document.status}, {printable(document.content_type)},"
        f" {len(body)} bytes read as {format_name}"
    )
    if format_name == "json":
        return _parse_json(document, note)
    return _parse_xml(document)


def _parse_json(document: Fetched, note: Callable[[str], None]) -> Any:
    body: bytes | str = document.body
    try:
        try:
            return json.loads(body)
        except UnicodeDecodeError:
            # One stray byte (a device name in a legacy code page) should not hide the
            # figures: the text is read as UTF-8 with replacement characters.
            note(f"{document.url}: not valid UTF-8; undecodable bytes replaced")
            return json.loads(document.body.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError) as exc:
        raise ProbeFailed("parse_error", f"{document.url}: not JSON: {exc}") from exc


def _parse_xml(document: Fetched) -> ET.Element:
    try:
        root = defusedxml.ElementTree.fromstring(document.body, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        declared = "<!DOCTYPE>" if isinstance(exc, defusedxml.DTDForbidden) else "<!ENTITY>"
        raise ProbeFailed(
            "unsafe_xml",
            f"{document.url}: the document declares {declared}; DOCTYPE and ENTITY"
            " declarations are refused (entity expansion attacks)",
        ) from exc
    except (ET.ParseError, ValueError, LookupError) as exc:
        # LookupError and ValueError: an encoding declaration that Python does not know
        # or that expat cannot use (rot13, utf-7, ...).
        raise ProbeFailed("parse_error", f"{document.url}: not XML: {exc}") from exc
    holder = ET.Element("document")
    holder.append(root)
    return holder


def detect_format(content_type: str, body: bytes) -> str:
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
        "parse_error",
        f"cannot tell JSON from XML ({printable(content_type)}); set format: json or xml",
    )
