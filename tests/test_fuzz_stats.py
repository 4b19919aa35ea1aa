"""Fuzzing the `stats` prober with what a device might send: valid, truncated and hostile
JSON and XML (entity bombs, DOCTYPEs, deep nesting, huge numbers, NaN and Infinity,
bytes that are not UTF-8, encodings Python cannot use, wrong or garbled Content-Type),
served raw by a loopback HTTP server to the real prober.

Whatever arrives, the probe returns (no exception, which the scheduler would report as
prober_error), a failure carries a documented reason, figures are finite, debug lines can
be written as UTF-8 (for /probe?debug=true), and the exporter's memory does not grow with
what devices send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_exporter.probes import sandbox
from bridge_exporter.probes.base import ProbeResult, Target
from bridge_exporter.probes.stats import METRICS, StatsProber, StatsSettings
from bridge_exporter.simulate import media
from bridge_exporter.simulate.media import MediaSample
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

LOG = logging.getLogger("test.fuzz_stats")
TARGET = Target("commune-07", "127.0.0.1")
# Reasons the stats prober documents for a device's answer (status_<code> aside).
DOCUMENT_REASONS = {"parse_error", "unsafe_xml", "missing_media_in_call", "body_too_large"}
ERROR_STATUSES = [401, 404, 500, 503]
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Rig:
    """A raw loopback HTTP server and a started StatsProber on one loop in a thread: the
    server answers every request with `response`, bytes as they are."""

    def __init__(self) -> None:
        self.response = b""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.prober = StatsProber()
        self.port = self._run(self._start())

    def _run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    async def _start(self) -> int:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(self.response)
                await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(answer, "127.0.0.1", 0)
        await self.prober.start()
        return self._server.sockets[0].getsockname()[1]

    def probe(self, response: bytes, stats: StatsSettings) -> ProbeResult:
        self.response = response
        return self._run(self.prober.probe(TARGET, stats, 15.0, LOG))

    def close(self) -> None:
        async def stop() -> None:
            await self.prober.close()
            self._server.close()

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    started = Rig()
    yield started
    started.close()


def http_response(body: bytes, content_type: bytes, status: int = 200) -> bytes:
    head = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n" % (status, len(body))
    if content_type:
        head += b"Content-Type: " + content_type + b"\r\n"
    return head + b"\r\n" + body


def settings_for(preset: str, port: int, format_name: str = "auto") -> StatsSettings:
    """The preset reading every document (for poly, both) from the fuzzed answer."""
    documents = {"conferences": "http://{address}/doc"} if preset == "poly_rest" else {}
    return StatsSettings(
        preset=preset, url="http://{address}/doc", documents=documents, port=port,
        format=format_name,
    )  # fmt: skip


def check(result: ProbeResult) -> None:
    """What every probe result must be, whatever the device sent."""
    event(f"reason {result.reason or 'none'}")
    if result.success:
        assert result.reason == ""
    else:
        assert result.reason in DOCUMENT_REASONS or re.fullmatch(r"status_\d{3}", result.reason), (
            result.reason,
            result.debug,
        )
    assert set(result.values) <= set(METRICS), result.values
    assert all(math.isfinite(value) for value in result.values.values()), result.values
    "\n".join(result.debug).encode("utf-8")  # /probe?debug=true writes them as UTF-8


# --- documents ----------------------------------------------------------------------------

POLY_KEYS = [
    "mediaDirection", "mediaType", "jitter", "packetLoss", "packetsReceived",
    "actualBitRate", "videoResolution", "videoFrameRate", "connections", "state",
]  # fmt: skip
WORDS = ["RX", "TX", "VIDEO", "AUDIO", "CONNECTED", "1920x1080", "99999999999x1", "on", "nan"]

numbers = (
    st.integers(-(10**6), 10**6)
    | st.integers(10**300, 10**1000)  # past the float range
    | st.floats()  # NaN and Infinity included: json.dumps writes them
    | st.sampled_from(WORDS)
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(POLY_KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=40,
)
poly_stream = st.fixed_dictionaries(
    {"mediaDirection": st.sampled_from(["RX", "TX"])},
    optional={key: numbers for key in POLY_KEYS[1:]},
)
json_documents = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.lists(poly_stream, max_size=8).map(lambda value: json.dumps(value).encode()),
    st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 50_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.integers(300, 6000).map(lambda digits: b'[{"jitter":1' + b"0" * digits + b"}]"),
    st.sampled_from([b"NaN", b"[Infinity]", b'{"jitter": 1e999}', b"", b"\xef\xbb\xbf[]"]),
)

xml_names = st.sampled_from(
    ["Status", "Call", "MediaChannels", "Channel", "Direction", "Netstat", "Jitter", "Video",
     "ChannelRole", "ResolutionX", "FrameRate", "Type", "LastIntervalLost"]
)  # fmt: skip
xml_texts = st.one_of(
    st.none(),
    st.sampled_from(["Incoming", "Main", "Video", "12", "1e999", "nan", "-0", "9" * 400]),
    st.text(max_size=10),
)


def _element(tag: str, text: str | None, children: list[ET.Element]) -> ET.Element:
    element = ET.Element(tag)
    element.text = text
    element.extend(children)
    return element


xml_trees = st.recursive(
    st.builds(_element, xml_names, xml_texts, st.just([])),
    lambda inner: st.builds(_element, xml_names, xml_texts, st.lists(inner, max_size=4)),
    max_leaves=30,
)
samples = st.builds(
    MediaSample,
    in_call=st.booleans(),
    packet_loss_ratio=st.floats(0, 1),
    jitter_seconds=st.floats(0, 1),
    bitrate_bits_per_second=st.floats(0, 1e10),
    video_width=st.integers(0, 10**6),
    video_height=st.integers(0, 10**6),
    frame_rate=st.floats(0, 1000),
)

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
        for n in range(1, 10)
    )
    + b"]><Status><Call>&lol9;</Call></Status>"
)
QUADRATIC_BLOWUP = (
    b'<!DOCTYPE s [<!ENTITY a "' + b"x" * 50_000 + b'">]><Status>' + b"&a;" * 2_000 + b"</Status>"
)
EXTERNAL_ENTITY = b'<!DOCTYPE s [<!ENTITY e SYSTEM "file:///etc/passwd">]><Status>&e;</Status>'
PARAMETER_ENTITY = b'<!DOCTYPE s [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><Status/>'
ENCODINGS = ["utf-8", "UTF-16", "latin-1", "rot13", "idna", "utf-7", "no-such", "cp1258"]


def _with_encoding(encoding: str, body: bytes) -> bytes:
    return b'<?xml version="1.0" encoding="%s"?>' % encoding.encode() + body


xml_documents = st.one_of(
    samples.map(lambda sample: media.cisco_status_xml(sample).encode()),
    xml_trees.map(lambda tree: ET.tostring(tree)),
    st.builds(_with_encoding, st.sampled_from(ENCODINGS), xml_trees.map(ET.tostring)),
    st.integers(1, 100_000).map(lambda depth: b"<a>" * depth + b"</a>" * depth),
    st.sampled_from(
        [BILLION_LAUGHS, QUADRATIC_BLOWUP, EXTERNAL_ENTITY, PARAMETER_ENTITY,
         BILLION_LAUGHS.decode().replace('"1.0"?>', '"1.0" encoding="UTF-16"?>').encode("utf-16"),
         b"<!-- x --><!DOCTYPE Status><Status/>", b"<Status>\x00</Status>", b"<"]
    ),
)  # fmt: skip


@st.composite
def damaged(draw, documents) -> bytes:
    """A document as it was, cut short, or with bytes that are not UTF-8 put in."""
    body = draw(documents)
    match draw(st.sampled_from(["as is", "as is", "truncated", "garbled"])):
        case "truncated":
            return body[: draw(st.integers(0, max(0, len(body) - 1)))]
        case "garbled":
            at = draw(st.integers(0, len(body)))
            return body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    return body


CONTENT_TYPES = [
    b"application/json", b"text/xml", b"application/xml; charset=utf-8", b"text/plain", b"",
    b"application/json; charset=rot13", b"text/xml; charset=\xff\xfe", b"\xc3\x28/json",
    b"text/html", b"application/octet-stream",
]  # fmt: skip
statuses = st.sampled_from([200] * 16 + ERROR_STATUSES)


@FUZZ
@given(
    body=damaged(json_documents) | st.binary(max_size=300),
    content_type=st.sampled_from(CONTENT_TYPES),
    status=statuses,
    format_name=st.sampled_from(["auto", "json"]),
)
@example(  # a JSON integer past the float range
    body=b'[{"mediaDirection":"RX","jitter":1' + b"0" * 400 + b"}]",
    content_type=b"application/json", status=200, format_name="auto",
)  # fmt: skip
@example(body=b"[" * 100_000, content_type=b"application/json", status=200, format_name="json")
def test_json_answers_never_escape_as_exceptions(rig, body, content_type, status, format_name):
    result = rig.probe(
        http_response(body, content_type, status), settings_for("poly_rest", rig.port, format_name)
    )
    check(result)
    if status != 200:
        assert result.reason == f"status_{status}"


@FUZZ
@given(
    body=damaged(xml_documents) | st.binary(max_size=300),
    content_type=st.sampled_from(CONTENT_TYPES),
    status=statuses,
    format_name=st.sampled_from(["auto", "xml"]),
)
@example(body=BILLION_LAUGHS, content_type=b"text/xml", status=200, format_name="auto")
@example(body=QUADRATIC_BLOWUP, content_type=b"text/xml", status=200, format_name="auto")
@example(  # an encoding Python knows but cannot decode text with
    body=_with_encoding("rot13", b"<Status/>"), content_type=b"text/xml", status=200,
    format_name="auto",
)  # fmt: skip
def test_xml_answers_never_escape_as_exceptions(rig, body, content_type, status, format_name):
    result = rig.probe(
        http_response(body, content_type, status), settings_for("cisco_xapi", rig.port, format_name)
    )
    check(result)
    if status != 200:
        assert result.reason == f"status_{status}"
    if b"<!DOCTYPE" in body and body.startswith((b"<?xml", b"<!")) and status == 200:
        assert result.reason in ("unsafe_xml", "parse_error"), result.debug


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, QUADRATIC_BLOWUP, EXTERNAL_ENTITY, PARAMETER_ENTITY],
    ids=["billion-laughs", "quadratic-blowup", "external-entity", "parameter-entity"],
)
def test_entity_declarations_are_refused_as_unsafe(rig, body):
    result = rig.probe(http_response(body, b"text/xml"), settings_for("cisco_xapi", rig.port))
    assert (result.success, result.reason) == (False, "unsafe_xml"), result.debug
    assert "<!DOCTYPE>" in result.debug[-1]


def _rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def test_a_document_that_needs_too_much_memory_is_a_parse_error(monkeypatch):
    """8 MiB of empty objects needs some 200 MiB parsed: in a sandbox child limited to
    less, the probe fails with parse_error, and the exporter's own memory stays flat."""
    monkeypatch.setattr(sandbox, "MEMORY_LIMIT_BYTES", 128 << 20)
    small = Rig()  # its children start with the lower limit
    try:
        body = b"[" + b"{}," * ((8 << 20) // 3 - 10) + b"{}]"
        mapping = {"media_in_call": "exists([*])"}
        stats = StatsSettings(url="http://{address}/doc", port=small.port, mapping=mapping)
        before = _rss_bytes()
        result = small.probe(http_response(body, b"application/json"), stats)
        grown = _rss_bytes() - before
    finally:
        small.close()
    assert (result.success, result.reason) == (False, "parse_error"), result.debug
    assert "128 MiB" in result.debug[-1]
    assert grown < 64 << 20, f"the exporter process grew {grown >> 20} MiB"
