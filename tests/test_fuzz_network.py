"""Hostile input from the network, fuzzed through the real path (issue 11, item 7).

- STAMP: a loopback reflector of the test answers the real stamp prober with arbitrary
  datagrams (truncated, wrong sequence, wrong timestamp echo, huge, empty, its own packet
  back, a genuine answer from another port, genuine answers with random fields).
- ICMP: the real icmp prober (raw socket) pings 127.0.0.2 in a namespace of the test whose
  kernel does not answer pings, while the test sniffs each echo request and injects
  crafted answers to it (wrong identifier, wrong cookie, wrong sequence, truncated, foreign
  types, bad checksum, garbage) through a raw socket of its own.
- `/probe` parameters: arbitrary query strings sent as raw request lines to the exporter's
  HTTP server (in process, and once to the real exporter process).

Whatever arrives, no exception escapes, a failure carries a reason of probes/reasons.py,
nothing that is not a genuine answer counts as one, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import struct
import threading
import tracemalloc
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from bridge_exporter.probes import ProbeResult, Target, reasons
from bridge_exporter.probes.base import Seconds
from bridge_exporter.probes.icmp import IcmpProber, IcmpSettings, icmp_checksum
from bridge_exporter.probes.stamp import StampProber, StampSettings
from bridge_exporter.runtime import Exporter
from bridge_exporter.stamp_packet import (
    BASE_SIZE,
    MAX_SIZE,
    ReflectorPacket,
    SenderPacket,
)
from bridge_exporter.web import make_runner
from conftest import missing
from helpers_exporter import ExporterProcess, Scrape
from helpers_netns_enter import inside
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from netlab import isolated_netns, netlab_problem

LOG = logging.getLogger("test.fuzz_network")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
U32 = 1 << 32
U64 = 1 << 64


def check_result(result: ProbeResult) -> None:
    """What every probe result must be, whatever the peer sent."""
    if result.success:
        assert result.reason == ""
    else:
        assert reasons.is_known(result.reason), result.reason
        assert result.reason != reasons.PROBER_ERROR
    assert 0 <= result.packets_received <= result.packets_sent
    for figure in (
        result.rtt_seconds,
        result.rtt_min_seconds,
        result.rtt_max_seconds,
        result.jitter_seconds,
        result.packet_loss_ratio,
        *result.values.values(),
    ):
        assert figure is None or math.isfinite(figure), result
    if result.packet_loss_ratio is not None:
        assert 0.0 <= result.packet_loss_ratio <= 1.0
    for rtt in result.rtt_samples:
        assert 0.0 <= rtt < 5.0
    "\n".join(result.debug).encode("utf-8")  # /probe?debug=true can show every line


# --- STAMP ---------------------------------------------------------------------------------

# One answer to one sender packet: (kind, parameter). "genuine" kinds echo the packet's
# sequence and timestamp from the reflector's own port: they, and only they, count.
stamp_answers = st.one_of(
    st.tuples(st.just("garbage"), st.binary(max_size=120)),
    st.tuples(st.just("empty"), st.none()),
    st.tuples(st.just("truncated"), st.integers(0, BASE_SIZE - 1)),
    st.tuples(st.just("wrong_sequence"), st.integers(1, U32 - 1)),
    st.tuples(st.just("wrong_timestamp"), st.integers(1, U64 - 1)),
    st.tuples(st.just("own_packet"), st.none()),
    st.tuples(st.just("huge_garbage"), st.integers(BASE_SIZE, MAX_SIZE)),
    st.tuples(st.just("from_another_port"), st.none()),
    st.tuples(st.just("genuine"), st.tuples(*(st.integers(0, U64 - 1) for _ in range(5)))),
    st.tuples(st.just("genuine_huge"), st.integers(BASE_SIZE, MAX_SIZE)),
    st.tuples(st.just("genuine_twice"), st.none()),
)
GENUINE = {"genuine", "genuine_huge", "genuine_twice"}
STAMP_COUNT = 3


def _reflected(sent: SenderPacket, fields=(0, 0, 0, 0, 0), sequence_shift=0, stamp_shift=0):
    sequence, transmit, receive, error, ttl = fields
    return ReflectorPacket(
        sequence=sequence % U32,
        timestamp=transmit,
        error_estimate=error % (1 << 16),
        receive_timestamp=receive,
        sender_sequence=(sent.sequence + sequence_shift) % U32,
        sender_timestamp=(sent.timestamp + stamp_shift) % U64,
        sender_error_estimate=sent.error_estimate,
        sender_ttl=ttl % 256,
    )


def stamp_datagrams(kind: str, parameter, data: bytes) -> list[tuple[bytes, bool]]:
    """The datagrams answering one sender packet, each with whether it goes from the
    reflector's own port (True) or from another one."""
    sent = SenderPacket.decode(data)
    genuine = _reflected(sent).encode()
    if kind == "garbage":
        return [(parameter, True)]
    if kind == "empty":
        return [(b"", True)]
    if kind == "truncated":
        return [(genuine[:parameter], True)]
    if kind == "wrong_sequence":
        return [(_reflected(sent, sequence_shift=parameter).encode(), True)]
    if kind == "wrong_timestamp":
        return [(_reflected(sent, stamp_shift=parameter).encode(), True)]
    if kind == "own_packet":
        return [(data, True)]
    if kind == "huge_garbage":
        return [(b"\xff" * parameter, True)]
    if kind == "from_another_port":
        return [(genuine, False)]
    if kind == "genuine":
        return [(_reflected(sent, parameter).encode(), True)]
    if kind == "genuine_huge":
        return [(_reflected(sent).encode(parameter), True)]
    assert kind == "genuine_twice"
    return [(genuine, True), (genuine, True)]


class _Reflector(asyncio.DatagramProtocol):
    def __init__(self, plan: list[list[tuple[str, object]]], other: socket.socket) -> None:
        self.plan = plan
        self.other = other  # a second socket: answers from another port
        self.transport: asyncio.DatagramTransport | None = None
        self.genuinely_answered: set[int] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        assert self.transport is not None
        sequence = SenderPacket.decode(data).sequence
        for kind, parameter in self.plan[sequence % len(self.plan)]:
            for datagram, own_port in stamp_datagrams(kind, parameter, data):
                if own_port:
                    self.transport.sendto(datagram, addr)
                else:
                    self.other.sendto(datagram, addr)
            if kind in GENUINE:
                self.genuinely_answered.add(sequence)


async def _stamp_probe(plan) -> tuple[ProbeResult, set[int]]:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        transport, reflector = await loop.create_datagram_endpoint(
            lambda: _Reflector(plan, other), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        try:
            result = await StampProber().probe(
                Target("fuzz", "127.0.0.1"),
                StampSettings(
                    port=port,
                    count=STAMP_COUNT,
                    interval=Seconds(0.002),
                    size=BASE_SIZE,
                    wait=Seconds(0.3),
                ),
                1.0,
                LOG,
            )
        finally:
            transport.close()
    return result, reflector.genuinely_answered


@FUZZ
@given(st.lists(st.lists(stamp_answers, max_size=4), min_size=1, max_size=STAMP_COUNT))
@example([[("truncated", 43)], [("wrong_timestamp", 1)], [("own_packet", None)]])
@example([[("from_another_port", None)], [("empty", None)], [("huge_garbage", MAX_SIZE)]])
@example([[("genuine_twice", None)], [("genuine_huge", MAX_SIZE)], [("wrong_sequence", 1)]])
@example([[("genuine", (U32 - 1, U64 - 1, 0, U64 - 1, 255))]])
def test_any_stamp_answer_counts_only_when_genuine(plan):
    result, genuinely_answered = asyncio.run(_stamp_probe(plan))
    check_result(result)
    assert result.packets_sent == STAMP_COUNT
    # A stray datagram never counts, a genuine answer always does (once per packet).
    assert result.packets_received == len(genuinely_answered), result.debug
    if genuinely_answered:
        assert result.success
    else:
        assert result.reason == reasons.NO_REPLY, result.debug


# --- ICMP ----------------------------------------------------------------------------------

PROBED = "127.0.0.2"  # in the test's namespace, whose kernel ignores echo requests
ICMP_HEADER = struct.Struct("!BBHHH")
ECHO_REPLY, ECHO_REQUEST = 0, 8

icmp_answers = st.one_of(
    st.tuples(st.just("wrong_identifier"), st.integers(1, 0xFFFF)),
    st.tuples(st.just("wrong_cookie"), st.binary(min_size=16, max_size=16)),
    st.tuples(st.just("wrong_sequence"), st.integers(1, 0xFFFF)),
    st.tuples(st.just("truncated"), st.integers(0, 8 + 15)),
    st.tuples(st.just("foreign_type"), st.sampled_from([3, 4, 5, 8, 11, 12, 13, 14, 17, 42])),
    st.tuples(st.just("garbage"), st.binary(max_size=80)),
    st.tuples(st.just("bad_checksum"), st.integers(1, 0xFFFF)),
    st.tuples(st.just("bad_code"), st.integers(1, 0xFF)),
)


def _ipv4(payload: bytes, source: str, destination: str) -> bytes:
    """An IPv4 header (protocol ICMP) in front of `payload`: with IP_HDRINCL the test can
    send ICMP messages shorter than an ICMP header."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(payload), random.getrandbits(16), 0, 64, socket.IPPROTO_ICMP, 0,
        socket.inet_aton(source), socket.inet_aton(destination),
    )  # fmt: skip
    return header + payload


def _echo_reply(identifier: int, sequence: int, payload: bytes, kind: int = ECHO_REPLY) -> bytes:
    header = ICMP_HEADER.pack(kind, 0, 0, identifier, sequence)
    checksum = icmp_checksum(header + payload)
    return header[:2] + struct.pack("!H", checksum) + header[4:] + payload


def crafted_icmp(kind: str, parameter, identifier: int, sequence: int, payload: bytes) -> bytes:
    """An answer to the echo request (identifier, sequence, payload) that is not genuine."""
    if kind == "wrong_identifier":
        return _echo_reply(identifier ^ parameter, sequence, payload)
    if kind == "wrong_cookie":
        cookie = parameter if parameter != payload[:16] else bytes(b ^ 1 for b in parameter)
        return _echo_reply(identifier, sequence, cookie + payload[16:])
    if kind == "wrong_sequence":
        return _echo_reply(identifier, (sequence + parameter) % 0x10000, payload)
    if kind == "truncated":
        return _echo_reply(identifier, sequence, payload)[:parameter]
    if kind == "foreign_type":
        return _echo_reply(identifier, sequence, payload, kind=parameter)
    if kind == "bad_checksum":  # exactly the genuine reply, but corrupted on the way
        packet = bytearray(_echo_reply(identifier, sequence, payload))
        checksum = struct.unpack_from("!H", packet, 2)[0] ^ parameter
        struct.pack_into("!H", packet, 2, checksum)
        return bytes(packet)
    if kind == "bad_code":  # the genuine reply with its code byte corrupted on the way
        packet = bytearray(_echo_reply(identifier, sequence, payload))
        packet[1] = parameter
        return bytes(packet)
    assert kind == "garbage"
    return parameter


@dataclass
class Injector:
    """Sniffs the prober's echo requests in the namespace and answers each with `plan`."""

    identifier: int
    plan: list[tuple[str, object]]
    source: str  # the probed address, which the answers claim to come from
    copies: int = 1
    seen: set[tuple[int, bytes]] = field(default_factory=set)
    injected: int = 0

    def __post_init__(self) -> None:
        self.sniffer = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sniffer.setblocking(False)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def on_readable(self) -> None:
        while True:
            try:
                packet = self.sniffer.recv(65535)
            except BlockingIOError:
                return
            start = (packet[0] & 0x0F) * 4
            if len(packet) < start + 8:
                continue
            kind, _code, _sum, identifier, sequence = ICMP_HEADER.unpack_from(packet, start)
            payload = packet[start + 8 :]
            # Only the prober's requests, each once: the sniffer sees what we inject too.
            if kind != ECHO_REQUEST or identifier != self.identifier:
                continue
            if (sequence, payload[:16]) in self.seen:
                continue
            self.seen.add((sequence, payload[:16]))
            for answer_kind, parameter in self.plan:
                icmp = crafted_icmp(answer_kind, parameter, identifier, sequence, payload)
                for _ in range(self.copies):
                    self.sender.sendto(_ipv4(icmp, self.source, "127.0.0.1"), ("127.0.0.1", 0))
                    self.injected += 1

    def close(self) -> None:
        self.sniffer.close()
        self.sender.close()


async def _icmp_probe(
    plan, count: int = 3, copies: int = 1, address: str = PROBED
) -> tuple[ProbeResult, Injector]:
    prober = IcmpProber(allowed_modes=("raw",))
    await prober.start()
    channel = prober.channel(socket.AF_INET)
    assert channel is not None and channel.mode == "raw"
    injector = Injector(channel.identifier, plan, address, copies)
    loop = asyncio.get_running_loop()
    loop.add_reader(injector.sniffer.fileno(), injector.on_readable)
    try:
        settings_ = IcmpSettings(count=count, interval=Seconds(0.01), packet_timeout=Seconds(0.25))
        result = await prober.probe(Target("fuzz", address), settings_, 1.0, LOG)
        await asyncio.sleep(0.02)  # late crafted answers find no request waiting
        assert channel.in_flight == {}, "requests left waiting after the probe"
    finally:
        loop.remove_reader(injector.sniffer.fileno())
        injector.close()
        await prober.close()
    return result, injector


@pytest.fixture(scope="module")
def silent_namespace():
    problem = netlab_problem()
    if problem:
        missing(f"network namespace tests: {problem}")
    with isolated_netns("fuzzicmp") as namespace:
        namespace.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        yield namespace


def test_the_injector_reaches_the_probers_socket(silent_namespace):
    # Without this, "nothing crafted counted" could mean "nothing crafted arrived".
    with inside(silent_namespace):
        result, injector = asyncio.run(
            _icmp_probe([("wrong_cookie", bytes(16)), ("wrong_sequence", 1)])
        )
    assert injector.seen and injector.injected == 2 * len(injector.seen)
    assert result.packets_sent == 3 and result.packets_received == 0


@FUZZ
@given(st.lists(icmp_answers, min_size=1, max_size=6))
@example([("wrong_identifier", 1), ("wrong_cookie", bytes(16)), ("truncated", 8)])
@example([("foreign_type", 8), ("foreign_type", 3), ("garbage", b"")])
def test_no_crafted_icmp_answer_counts_as_a_reply(silent_namespace, plan):
    with inside(silent_namespace):
        result, injector = asyncio.run(_icmp_probe(plan))
    check_result(result)
    assert injector.seen, "the injector never saw the prober's echo requests"
    assert result.packets_sent == 3
    assert result.packets_received == 0, (plan, result.debug)
    assert not result.success and result.reason == reasons.NO_REPLY


def test_an_echo_reply_with_a_bad_checksum_is_not_a_reply(silent_namespace):
    # Exactly the genuine reply (identifier, sequence, cookie), checksum corrupted.
    with inside(silent_namespace):
        result, injector = asyncio.run(_icmp_probe([("bad_checksum", 0x5555)]))
    assert injector.seen
    assert result.packets_received == 0, result.debug


def test_a_flood_of_crafted_icmp_answers_keeps_memory_bounded(silent_namespace):
    plan = [("wrong_cookie", bytes(16)), ("wrong_identifier", 7), ("wrong_sequence", 3)]
    with inside(silent_namespace):
        asyncio.run(_icmp_probe(plan))  # warm up: imports, caches
        tracemalloc.start()
        try:
            result, injector = asyncio.run(_icmp_probe(plan, count=5, copies=700))
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert injector.injected == 5 * 3 * 700
    assert result.packets_received == 0
    # 10,500 crafted answers handled with a fixed 64 KiB buffer: no per-packet storage.
    assert peak < 2 << 20, f"peak traced memory {peak} bytes"


def test_genuine_replies_still_count_among_crafted_ones():
    # Kernel answering (loopback in the root namespace): figures from genuine replies only.
    plan = [("wrong_cookie", bytes(16)), ("wrong_sequence", 1), ("garbage", b"\0" * 30)]
    result, injector = asyncio.run(_icmp_probe(plan, address="127.0.0.1"))
    check_result(result)
    assert result.success and result.packets_sent == result.packets_received == 3
    assert result.packet_loss_ratio == 0.0
    assert injector.injected == 3 * 3


# --- /probe parameters ---------------------------------------------------------------------

PROBE_INVENTORY = """\
interval: 1h
tiers: [central, province]
modules:
  tcp_refused: {{prober: tcp, timeout: 1s, tcp: {{port: {refused}}}}}
  sip_udp: {{prober: sip, timeout: 300ms, sip: {{port: {refused}}}}}
endpoints:
  - {{id: hall, name: Hall, tier: central, address: 127.0.0.1, modules: [tcp_refused]}}
  - {{id: p-1, name: "Tỉnh 1", tier: province, parent: hall, address: 127.0.0.3,
      modules: [tcp_refused, sip_udp]}}
"""
KNOWN_KEYS = ["target", "module", "debug"]
KNOWN_VALUES = ["hall", "p-1", "127.0.0.1", "127.0.0.3", "tcp_refused", "sip_udp", "true"]
ENCODING_GARBAGE = [
    "%", "%%", "%G1", "%ff", "%FF%FE", "%00", "%C3%28", "%ED%A0%80", "%F4%90%80%80",
    "%E2%82", "+", "%2B", "&", "=", ";", "%26", "%3D", "%0D%0A", "%7F", "%C0%AF",
]  # fmt: skip


def _encoded(text: str) -> bytes:
    return urllib.parse.quote(text, safe="").encode("ascii")


values = st.one_of(
    st.sampled_from(KNOWN_VALUES).map(_encoded),
    st.text(max_size=30).map(_encoded),
    st.sampled_from(ENCODING_GARBAGE).map(str.encode),
    st.integers(1000, 20000).map(lambda n: b"x" * n),  # huge
    st.binary(max_size=20),  # raw: control characters, spaces, invalid UTF-8
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS).map(str.encode), values)
pairs = st.one_of(
    st.tuples(keys, values).map(lambda kv: kv[0] + b"=" + kv[1]),
    keys,  # a key without "="
)
queries = st.lists(pairs, max_size=8).map(b"&".join)


def raw_get(port: int, target: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send one request line as these bytes are; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), answer[:200]
    return int(status_line.split()[1]), body


def check_probe_answer(status: int, body: bytes, query: bytes) -> None:
    assert 200 <= status < 500, (status, query, body[:500])
    assert b"Traceback" not in body, body[:2000]
    text = body.decode("utf-8")  # a readable message, not bytes
    if status >= 400:
        assert text.strip(), f"{status} without a message for {query!r}"


class ServedExporter:
    """The exporter (Exporter + make_runner, as the CLI serves it) in a background loop."""

    def __init__(self, config: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self._run(self._start(config))

    def _run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    async def _start(self, config: Path) -> int:
        self.exporter = await Exporter.create(config)
        await self.exporter.start()
        self.runner = make_runner(self.exporter)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            await self.exporter.stop()

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def probe_inventory(directory: Path) -> Path:
    with socket.socket() as placeholder:  # a port nothing listens on: refused at once
        placeholder.bind(("127.0.0.1", 0))
        refused = placeholder.getsockname()[1]
    path = directory / "probe-fuzz.yml"
    path.write_text(PROBE_INVENTORY.format(refused=refused), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = ServedExporter(probe_inventory(tmp_path_factory.mktemp("probe")))
    yield server
    server.close()


def metrics_still_served(get: Callable[[bytes], tuple[int, bytes]]) -> None:
    status, body = get(b"/metrics")
    assert status == 200
    scrape = Scrape(body.decode("utf-8"))
    assert scrape.value("bridge_tier_endpoints", tier="province") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries)
@example(b"target=hall&target=p-1&module=tcp_refused&module=tcp_refused")
@example(b"target=%ED%A0%80&debug=true")
@example(b"target=p-1&module=%FF%FE&debug=1")
@example(b"target=hall&module=nope&module=" + b"m" * 9000)
@example(b"target=p-1&module=tcp_refused&module=sip_udp&debug=true")
@example(b"target=hall\x00&debug=\x7f")
@example(b"target=127.0.0.3;module=sip_udp")
def test_any_probe_query_is_answered_2xx_or_4xx_with_a_message(served, query):
    status, body = raw_get(served.port, b"/probe?" + query)
    check_probe_answer(status, body, query)
    metrics_still_served(lambda path: raw_get(served.port, path))


HOSTILE_QUERIES = [
    b"target=hall&module=tcp_refused&debug=true",
    b"target=%ED%A0%80%FF&module=%C0%AF",
    b"target=p-1&module=tcp_refused&module=tcp_refused",
    b"target=" + b"%41" * 3000,
    b"target=hall\x01\x02&module=\x7f",
    b"module=sip_udp&target=127.0.0.3&debug=%FF",
]


def test_the_exporter_process_answers_hostile_probe_queries(tmp_path):
    exporter = ExporterProcess(probe_inventory(tmp_path), tmp_path).start()
    try:
        exporter.wait_ready()
        for query in HOSTILE_QUERIES:
            status, body = raw_get(exporter.port, b"/probe?" + query)
            check_probe_answer(status, body, query)
        assert raw_get(exporter.port, b"/probe?target=hall&module=tcp_refused")[0] == 200
        metrics_still_served(lambda path: raw_get(exporter.port, path))
    finally:
        with contextlib.suppress(AssertionError):
            exporter.stop()
        exporter.kill()


def test_a_malformed_request_line_is_not_logged_as_an_error(tmp_path):
    exporter = ExporterProcess(probe_inventory(tmp_path), tmp_path).start()
    try:
        exporter.wait_ready()
        for query in (b"target=" + b"%41" * 3000, b"target=hall\x01\x02"):
            assert raw_get(exporter.port, b"/probe?" + query)[0] == 400
        metrics_still_served(lambda path: raw_get(exporter.port, path))
    finally:
        with contextlib.suppress(AssertionError):
            exporter.stop()
        exporter.kill()
    assert "Traceback" not in exporter.log
    assert "level=error" not in exporter.log
