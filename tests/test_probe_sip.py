"""The `sip` prober against real peers on loopback: sipp as a user agent server, and small
misbehaving peers written here (silent, garbage, wrong transaction, slow, chunked, TLS)."""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import re
import socket
import ssl
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_exporter import __version__
from bridge_exporter.probes import ProbeResult, Target
from bridge_exporter.probes.base import Seconds
from bridge_exporter.probes.sip import SipProber, SipSettings, _request_template
from bridge_exporter.sipmsg import (
    SipMessage,
    build_response,
    header_params,
    parse_message,
    stream_frame_length,
)
from conftest import free_port, need_tool
from hypothesis import given, settings
from hypothesis import strategies as st
from scheduler_round import one_round, single_module_inventory
from thread_peers import ThreadUdpPeer, block_loop_once

LOG = logging.getLogger("test.sip")
SIPP_SCENARIOS = Path(__file__).resolve().parent / "sipp"
SLACK = 0.5  # what a hung peer may cost beyond the timeout


async def run_probe(address: str, timeout: float = 2.0, **settings) -> ProbeResult:
    prober = SipProber()
    try:
        return await prober.probe(Target("ep-1", address), SipSettings(**settings), timeout, LOG)
    finally:
        await prober.close()


# --- sipp, a real user agent server ----------------------------------------------------


def _port_is_bound(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe_socket:
        try:
            probe_socket.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


@pytest.fixture
def sipp_uas(tmp_path: Path) -> Iterator[Callable[[str, str], int]]:
    """Start sipp answering OPTIONS with scenario `uas_options_<code>.xml`; returns its port."""
    sipp = need_tool("sipp")
    processes: list[subprocess.Popen] = []

    def start(code: str, transport: str) -> int:
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        port = free_port(kind=kind)
        screen_path = tmp_path / f"sipp-{code}-{transport}.out"
        with open(screen_path, "wb") as screen:
            process = subprocess.Popen(
                [sipp, "-sf", str(SIPP_SCENARIOS / f"uas_options_{code}.xml"),
                 "-i", "127.0.0.1", "-p", str(port), "-t", "u1" if transport == "udp" else "t1",
                 "-mp", str(free_port(kind=socket.SOCK_DGRAM)),
                 "-cp", str(free_port(kind=socket.SOCK_DGRAM)),
                 "-nd", "-trace_err"],
                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=screen, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(process)
        deadline = time.monotonic() + 10
        while not _port_is_bound(port, kind):
            if process.poll() is not None or time.monotonic() > deadline:
                output = screen_path.read_text(errors="replace")
                pytest.fail(f"sipp did not start listening on {port}/{transport}:\n{output}")
            time.sleep(0.05)
        return port

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=5)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_answering_200_is_success(sipp_uas, transport):
    port = sipp_uas("200", transport)
    result = await run_probe("127.0.0.1", port=port, transport=transport)
    assert result.success, result.debug
    assert result.status_code == 200
    assert result.reason == ""
    assert result.rtt_seconds is not None and 0 < result.rtt_seconds < 2.0
    # The duration covers the whole probe (socket, connection), the RTT send to answer.
    assert result.duration_seconds >= result.rtt_seconds
    assert "< SIP/2.0 200 OK" in result.debug
    narrowed = await run_probe(
        "127.0.0.1", port=port, transport=transport, valid_status_codes=[200, 204]
    )
    assert narrowed.success and narrowed.status_code == 200


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_answering_404_is_up_unless_the_codes_are_narrowed(sipp_uas, transport):
    port = sipp_uas("404", transport)
    result = await run_probe("127.0.0.1", port=port, transport=transport)
    assert result.success, result.debug  # any final answer proves the SIP stack is up
    assert result.status_code == 404
    narrowed = await run_probe(
        "127.0.0.1", port=port, transport=transport, valid_status_codes=[200]
    )
    assert not narrowed.success
    assert narrowed.reason == "status_404"
    assert narrowed.status_code == 404


# --- peers written here ----------------------------------------------------------------


class UdpPeer(asyncio.DatagramProtocol):
    """Records every datagram it gets; `behaviour` decides what to send back."""

    def __init__(self, behaviour: Callable[[UdpPeer, bytes, tuple], None]) -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[float, bytes]] = []
        self.sent_at: dict[int, float] = {}  # status code -> when it was sent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.requests.append((time.monotonic(), data))
        self.behaviour(self, data, addr)

    def answer(self, request: bytes, addr, code: int, reason: str, **changes: str) -> None:
        """Send a response to `request`; `changes` overwrite headers (call_id="x")."""
        message = parse_message(request)
        assert message is not None
        for name, value in changes.items():
            message.headers[name.replace("_", "-")] = [value]
        self.sent_at[code] = time.monotonic()
        assert self.transport is not None
        self.transport.sendto(build_response(message, code, reason, received=addr[:2]), addr)


async def start_udp_peer(behaviour, host: str = "127.0.0.1", port: int = 0):
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: UdpPeer(behaviour), local_addr=(host, port)
    )
    return transport, peer, transport.get_extra_info("sockname")[1]


def answer_200(peer: UdpPeer, data: bytes, addr) -> None:
    peer.answer(data, addr, 200, "OK")


def first_request_only(respond):
    """Answer only the first request; retransmissions are just counted."""

    def behaviour(peer: UdpPeer, data: bytes, addr) -> None:
        if len(peer.requests) == 1:
            respond(peer, data, addr)

    return behaviour


async def test_request_is_a_well_formed_options():
    transport, peer, port = await start_udp_peer(answer_200)
    try:
        result = await run_probe("127.0.0.1", port=port, user="hall")
    finally:
        transport.close()
    assert result.success and result.status_code == 200
    raw = peer.requests[0][1]
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line must end with CRLF"
    assert raw.endswith(b"\r\n\r\n")
    request = parse_message(raw)
    assert request is not None
    assert request.first_line == f"OPTIONS sip:hall@127.0.0.1:{port} SIP/2.0"
    assert re.fullmatch(
        r"SIP/2\.0/UDP 127\.0\.0\.1:\d+;branch=z9hG4bK[0-9a-f]{8,};rport", request.header("via")
    )
    assert request.header("max-forwards") == "70"
    assert header_params(request.header("from"))["tag"]
    assert "tag" not in header_params(request.header("to"))
    assert request.header("to") == f"<sip:hall@127.0.0.1:{port}>"
    assert request.cseq() == (1, "OPTIONS")
    assert request.header("contact").startswith("<sip:bridge-exporter@127.0.0.1:")
    assert request.header("accept") == "application/sdp"
    assert request.header("user-agent") == f"bridge-exporter/{__version__}"
    assert request.header("content-length") == "0"
    assert "> " + request.first_line in result.debug

    transport, peer, port = await start_udp_peer(answer_200)
    try:
        again = await run_probe("127.0.0.1", port=port)
    finally:
        transport.close()
    assert again.success
    second = parse_message(peer.requests[0][1])
    assert second.first_line == f"OPTIONS sip:127.0.0.1:{port} SIP/2.0"
    assert second.header("call-id") != request.header("call-id")
    assert second.via_branch() != request.via_branch()


# What a SIP URI's user part may hold (RFC 3261 25.1), "%" escapes included.
_USER_TEXT = st.text(alphabet="abcXYZ019-_.!~*'()%&=+$,;?/", max_size=12)


@settings(max_examples=40, deadline=None)
@given(user=_USER_TEXT, from_user=_USER_TEXT.filter(bool))
def test_any_user_and_from_user_go_out_as_written(user: str, from_user: str) -> None:
    """The request is built from a per-endpoint template with slots for the random
    parts: whatever the inventory's user names hold ("%" too), they reach the device as
    written and the answer still matches."""

    async def probe() -> tuple[ProbeResult, list]:
        transport, peer, port = await start_udp_peer(answer_200)
        try:
            result = await run_probe("127.0.0.1", port=port, user=user, from_user=from_user)
        finally:
            transport.close()
        return result, [port, *peer.requests]

    result, (port, *requests) = asyncio.run(probe())
    assert (result.success, result.status_code) == (True, 200), result.debug
    request = parse_message(requests[0][1])
    assert request is not None
    target = f"sip:{user}@127.0.0.1:{port}" if user else f"sip:127.0.0.1:{port}"
    assert request.first_line == f"OPTIONS {target} SIP/2.0"
    assert request.header("to") == f"<{target}>"
    assert request.header("from").startswith(f"<sip:{from_user}@127.0.0.1>;tag=")
    assert re.fullmatch(r"[0-9a-f]{32}", request.header("call-id"))
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{20}", request.via_branch())


async def test_silent_udp_peer_times_out_after_retransmissions(worst_loop_stall):
    transport, peer, port = await start_udp_peer(lambda peer, data, addr: None)
    try:
        started = time.monotonic()
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, t1=0.1)
        elapsed = time.monotonic() - started
    finally:
        transport.close()
    assert not result.success
    assert result.reason == "timeout"
    assert result.status_code is None
    assert elapsed <= 1.0 + SLACK
    assert result.duration_seconds <= 1.0 + SLACK
    # T1 = 0.1 s doubling: sends at 0, 0.1, 0.3 and 0.7 s.
    assert len(peer.requests) >= 3
    assert all(data == peer.requests[0][1] for _, data in peer.requests), "same transaction"
    gaps = [b[0] - a[0] for a, b in zip(peer.requests, peer.requests[1:], strict=False)]
    # Each wait is armed when its send happens, so a late timer lengthens a gap; the peer
    # shares this loop, and reading one request late shortens the next gap by as much.
    stall = worst_loop_stall()
    assert all(gap >= 0.1 * 2**k - 0.005 - stall for k, gap in enumerate(gaps)), (
        f"intervals must double: {gaps}"
    )


async def test_garbage_answers_are_ignored_and_reported_as_invalid_response():
    def garbage(peer: UdpPeer, data: bytes, addr) -> None:
        assert peer.transport is not None
        peer.transport.sendto(b"\x16\x03\x01\x00\xffHTTP/1.1 400 Bad Request\r\n\r\n", addr)

    transport, _peer, port = await start_udp_peer(garbage)
    try:
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, t1=0.2)
    finally:
        transport.close()
    assert not result.success
    assert result.reason == "invalid_response"
    assert result.duration_seconds <= 1.0 + SLACK
    assert any("not a SIP response" in line for line in result.debug)


async def test_answer_with_a_wrong_call_id_is_never_success():
    transport, peer, port = await start_udp_peer(
        first_request_only(lambda p, d, a: p.answer(d, a, 200, "OK", call_id="not-ours"))
    )
    try:
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, t1=0.2)
    finally:
        transport.close()
    assert not result.success
    assert result.reason == "timeout"
    assert result.status_code is None
    assert any("ignored" in line and "Call-ID" in line for line in result.debug)
    assert len(peer.requests) >= 2, "an unmatched answer must not stop retransmissions"


async def test_unmatched_answers_are_skipped_until_the_right_one():
    def confusing(peer: UdpPeer, data: bytes, addr) -> None:
        via = parse_message(data).header("via")
        peer.answer(data, addr, 500, "Wrong", via=via.replace("branch=z9hG4bK", "branch=z9hG4bKx"))
        peer.answer(data, addr, 501, "Wrong", cseq="2 OPTIONS")
        peer.answer(data, addr, 502, "Wrong", cseq="1 INVITE")
        peer.answer(data, addr, 486, "Busy Here")

    transport, _peer, port = await start_udp_peer(first_request_only(confusing))
    try:
        result = await run_probe("127.0.0.1", timeout=2.0, port=port)
    finally:
        transport.close()
    assert result.success, result.debug
    assert result.status_code == 486
    ignored = [line for line in result.debug if line.startswith("ignored: not the answer")]
    assert len(ignored) == 3
    assert any("Via branch" in line for line in ignored)
    assert any("CSeq '2 OPTIONS'" in line for line in ignored)
    assert any("CSeq '1 INVITE'" in line for line in ignored)


async def test_only_100_trying_keeps_retransmitting_every_t2_until_the_timeout(worst_loop_stall):
    # RFC 3261 section 17.1.2.2: in the Proceeding state (after a 1xx) timer E keeps
    # firing, every T2. T1 = 50 ms, T2 = 200 ms: sends at 0 and 0.05 s (the timer set
    # before the 100), then every 0.2 s: 0.25, 0.45, 0.65, 0.85 s.
    transport, peer, port = await start_udp_peer(lambda p, d, a: p.answer(d, a, 100, "Trying"))
    try:
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, t1=0.05, t2=0.2)
    finally:
        transport.close()
    assert not result.success
    assert result.reason == "timeout_after_provisional"
    assert result.status_code == 100
    assert result.duration_seconds <= 1.0 + SLACK
    assert all(data == peer.requests[0][1] for _, data in peer.requests), "same transaction"
    times = [t for t, _ in peer.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 4, f"retransmissions must go on after the 100 Trying: {gaps}"
    # After the first retransmission every interval is T2 (late timers only lengthen it;
    # the peer on this loop reading a request late moves one gap either way).
    stall = worst_loop_stall()
    assert all(0.2 - 0.02 - stall <= gap <= 0.2 + 0.15 + stall for gap in gaps[1:]), gaps


async def test_100_trying_then_200_to_a_retransmission_is_success():
    def trying_then_ok(peer: UdpPeer, data: bytes, addr) -> None:
        if len(peer.requests) == 1:
            peer.answer(data, addr, 100, "Trying")
        else:
            peer.answer(data, addr, 200, "OK")

    transport, peer, port = await start_udp_peer(trying_then_ok)
    try:
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, t1=0.05, t2=0.2)
    finally:
        transport.close()
    assert result.success, result.debug
    assert result.status_code == 200
    assert len(peer.requests) >= 2
    assert result.rtt_seconds < 1.0


async def test_100_trying_then_200_is_success_with_the_final_rtt():
    def slow(peer: UdpPeer, data: bytes, addr) -> None:
        peer.answer(data, addr, 100, "Trying")
        asyncio.get_running_loop().call_later(0.3, peer.answer, data, addr, 200, "OK")

    transport, peer, port = await start_udp_peer(first_request_only(slow))
    try:
        result = await run_probe("127.0.0.1", timeout=2.0, port=port, t1=0.1)
    finally:
        transport.close()
    assert result.success, result.debug
    assert result.status_code == 200
    assert 0.3 <= result.rtt_seconds < 2.0
    assert result.duration_seconds >= result.rtt_seconds
    # Timer E set before the 100 fires once (at T1 = 0.1 s); the next one is T2 = 4 s away.
    assert len(peer.requests) <= 2


class SipPeerOnThread(ThreadUdpPeer):
    """Answers OPTIONS with 200 from its own thread; `before_answering()` runs first."""

    def __init__(self, before_answering: Callable[[], None]) -> None:
        self.before_answering = before_answering
        super().__init__()

    def answer(self, data: bytes, peer: tuple) -> bytes | None:
        request = parse_message(data)
        assert request is not None
        self.before_answering()
        return build_response(request, 200, "OK", received=peer[:2])


async def test_a_busy_event_loop_does_not_inflate_the_udp_round_trip():
    # The 200 arrives while the event loop is stuck for 0.5 s (as when the exporter
    # renders /metrics for 10,000 endpoints); its kernel receive timestamp still says
    # when it arrived.
    before_answering, blocking = block_loop_once(asyncio.get_running_loop(), 0.5)
    peer = SipPeerOnThread(before_answering)
    try:
        started = time.monotonic()
        result = await run_probe("127.0.0.1", timeout=3.0, port=peer.port, t1=2.0)
        elapsed = time.monotonic() - started
    finally:
        peer.close()
    print(f"loop blocked 0.5 s: SIP OPTIONS RTT {result.rtt_seconds * 1e3:.3f} ms")
    assert blocking.is_set() and elapsed >= 0.5
    assert result.success and result.status_code == 200, result.debug
    assert result.rtt_seconds < 0.25  # half the block: one that counted it reads >= 0.5 s
    assert result.duration_seconds >= 0.5  # the probe did last that long, though


async def test_udp_to_a_closed_port_is_refused():
    port = free_port(kind=socket.SOCK_DGRAM)  # nothing listens there any more
    result = await run_probe("127.0.0.1", timeout=2.0, port=port)
    assert not result.success
    assert result.reason == "refused"  # ICMP port unreachable, not a wait for the timeout
    assert result.duration_seconds < 1.0


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.5"])
async def test_probing_the_probers_own_udp_port_is_refused(address):
    # The shared UDP socket holds its port on every local address, so an endpoint given
    # that port would hear our own OPTIONS come back, never an answer. Nothing else can
    # listen there: the truth is "refused", at once, not a timeout or invalid_response.
    prober = SipProber()
    transport, _peer, peer_port = await start_udp_peer(answer_200)
    try:
        warm = await prober.probe(Target("ep-1", "127.0.0.1"), SipSettings(port=peer_port), 2, LOG)
        own_port = prober.udp_ports()["ipv4"]
        result = await prober.probe(Target("ep-1", address), SipSettings(port=own_port), 2, LOG)
    finally:
        transport.close()
        await prober.close()
    assert warm.success, warm.debug
    assert not result.success
    assert result.reason == "refused", result.debug
    assert any("our own OPTIONS came back" in line for line in result.debug)
    assert result.duration_seconds < 1.0


async def test_ipv6_loopback():
    transport, peer, port = await start_udp_peer(answer_200, host="::1")
    try:
        result = await run_probe("::1", port=port)
        bracketed = await run_probe(f"[::1]:{port}", port=1)  # address port overrides
    finally:
        transport.close()
    assert result.success, result.debug
    assert bracketed.success, bracketed.debug
    request = parse_message(peer.requests[0][1])
    assert request.first_line == f"OPTIONS sip:[::1]:{port} SIP/2.0"
    assert re.fullmatch(r"SIP/2\.0/UDP \[::1\]:\d+;branch=\S+;rport", request.header("via"))


async def test_hostname_is_resolved_and_kept_in_the_request_uri():
    # localhost may resolve to 127.0.0.1 or ::1 first: listen on both.
    port = free_port(kind=socket.SOCK_DGRAM)
    transport4, peer4, _ = await start_udp_peer(answer_200, "127.0.0.1", port)
    transport6, peer6, _ = await start_udp_peer(answer_200, "::1", port)
    try:
        result = await run_probe("localhost", port=port)
    finally:
        transport4.close()
        transport6.close()
    assert result.success, result.debug
    request = parse_message((peer4.requests or peer6.requests)[0][1])
    assert request.first_line == f"OPTIONS sip:localhost:{port} SIP/2.0"


async def test_tcp_refused():
    port = free_port()
    result = await run_probe("127.0.0.1", port=port, transport="tcp")
    assert not result.success
    assert result.reason == "refused"


async def start_tcp_peer(handler, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
    server = await asyncio.start_server(handler, host, 0, ssl=tls)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> SipMessage:
    data = await reader.readuntil(b"\r\n\r\n")
    request = parse_message(data)
    assert request is not None
    return request


async def test_tcp_answer_in_chunks_is_framed_by_content_length():
    body = b"chunked answer body: all of it must arrive"

    async def chunked(reader, writer):
        request = await read_request(reader)
        response = build_response(request, 200, "OK", {"Content-Type": "text/plain"}, body=body)
        cut = len(response) - len(body) // 2  # inside the body: headers alone are not enough
        writer.write(response[:cut])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(response[cut:])
        await writer.drain()
        await reader.read()  # the prober hangs up
        writer.close()

    server, port = await start_tcp_peer(chunked)
    try:
        result = await run_probe("127.0.0.1", port=port, transport="tcp")
    finally:
        server.close()
    assert result.success, result.debug
    assert result.status_code == 200
    assert result.rtt_seconds >= 0.2
    assert "< " + body.decode() in result.debug


async def test_each_tcp_request_carries_its_own_connections_port():
    """Over TCP the local port is new for every connection: it fills a slot of the
    endpoint's request template instead of making a template per connection."""
    seen: list[tuple[int, SipMessage]] = []

    async def answer(reader, writer):
        request = await read_request(reader)
        seen.append((writer.get_extra_info("peername")[1], request))
        writer.write(build_response(request, 200, "OK"))
        await writer.drain()
        await reader.read()
        writer.close()

    templates = _request_template.cache_info().currsize
    server, port = await start_tcp_peer(answer)
    try:
        results = [await run_probe("127.0.0.1", port=port, transport="tcp") for _ in range(4)]
    finally:
        server.close()
    assert [result.success for result in results] == [True] * 4
    assert len({source for source, _ in seen}) == 4
    for source, request in seen:
        assert request.header("via").startswith(f"SIP/2.0/TCP 127.0.0.1:{source};branch=")
        assert (
            request.header("contact") == f"<sip:bridge-exporter@127.0.0.1:{source};transport=tcp>"
        )
    assert _request_template.cache_info().currsize <= templates + 1


async def test_silent_tcp_peer_times_out_and_closing_peer_is_reported():
    async def silent(reader, writer):
        await reader.read()
        writer.close()

    async def hang_up(reader, writer):
        await read_request(reader)
        writer.close()

    server, port = await start_tcp_peer(silent)
    try:
        started = time.monotonic()
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, transport="tcp")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert not result.success and result.reason == "timeout"
    assert elapsed <= 1.0 + SLACK

    server, port = await start_tcp_peer(hang_up)
    try:
        closed = await run_probe("127.0.0.1", timeout=1.0, port=port, transport="tcp")
    finally:
        server.close()
    assert not closed.success and closed.reason == "connection_closed"


async def test_tcp_garbage_then_nothing_is_invalid_response():
    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server, port = await start_tcp_peer(garbage)
    try:
        result = await run_probe("127.0.0.1", timeout=1.0, port=port, transport="tcp")
    finally:
        server.close()
    assert not result.success
    assert result.reason == "invalid_response"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1."""
    openssl = need_tool("openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key),
         "-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_verifies_the_server_certificate(certificate):
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    seen_vias: list[str] = []

    async def answer(reader, writer):
        try:
            request = await read_request(reader)
        except (OSError, asyncio.IncompleteReadError):
            return  # a client that rejected our certificate
        seen_vias.append(request.header("via"))
        writer.write(build_response(request, 200, "OK"))
        await writer.drain()
        writer.close()

    server, port = await start_tcp_peer(answer, tls=server_context)
    try:
        trusted = await run_probe("127.0.0.1", port=port, transport="tls", tls_ca_file=str(cert))
        by_name = await run_probe(
            "127.0.0.1",
            port=port,
            transport="tls",
            tls_ca_file=str(cert),
            tls_server_name="localhost",
        )
        untrusted = await run_probe("127.0.0.1", port=port, transport="tls")
        wrong_name = await run_probe(
            "127.0.0.1",
            port=port,
            transport="tls",
            tls_ca_file=str(cert),
            tls_server_name="other.example",
        )
        insecure = await run_probe(
            "127.0.0.1", port=port, transport="tls", tls_insecure_skip_verify=True
        )
        missing_ca = await run_probe(
            "127.0.0.1", port=port, transport="tls", tls_ca_file="/nonexistent/ca.pem"
        )
    finally:
        server.close()
    assert trusted.success and trusted.status_code == 200, trusted.debug
    assert by_name.success, by_name.debug
    assert untrusted.reason == "tls_error"
    assert wrong_name.reason == "tls_error"
    assert insecure.success, insecure.debug
    assert missing_ca.reason == "bad_settings"  # as the tcp prober says it
    assert all(via.startswith("SIP/2.0/TLS 127.0.0.1:") for via in seen_vias)
    assert len(seen_vias) == 3


async def test_duration_covers_connection_and_tls_handshake_through_the_scheduler(certificate):
    # The kernel completes the TCP handshake, but the peer accepts the connection (and so
    # answers the TLS handshake) only 0.4 s later, then answers at once: the probe lasted
    # 0.4 s or more though the OPTIONS round trip itself was quick.
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def answer(reader, writer):
        try:
            request = await read_request(reader)
        except (OSError, asyncio.IncompleteReadError):
            return
        writer.write(build_response(request, 200, "OK"))
        await writer.drain()
        writer.close()

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]

    async def accept_late() -> asyncio.Server:
        await asyncio.sleep(0.4)
        return await asyncio.start_server(answer, sock=listening, ssl=server_context)

    server = asyncio.create_task(accept_late())
    try:
        done = await one_round(
            single_module_inventory(
                "sip", f"{{transport: tls, port: {port}, tls_ca_file: '{cert}'}}", "3s",
                "127.0.0.1",
            )
        )  # fmt: skip
    finally:
        (await server).close()
    result = done.result
    assert result.success and result.status_code == 200, result.debug
    assert result.rtt_seconds < 0.3
    assert result.duration_seconds >= 0.4


async def test_bad_settings_and_addresses_fail_without_raising():
    bad_transport = await run_probe("127.0.0.1", transport="sctp")
    assert bad_transport.reason == "bad_settings"
    bad_port = await run_probe("127.0.0.1:sip")
    assert bad_port.reason == "resolve_failed"
    superscript_port = await run_probe("127.0.0.1:5²")  # "²".isdigit(), but int("²") fails
    assert superscript_port.reason == "resolve_failed"
    # (No unresolvable-name case here: resolving one would ask the system's DNS server,
    # which is off loopback. Name failures are covered inside a loopback-only network
    # namespace in test_probe_icmp.py.)


def test_retransmission_timers_default_to_rfc_3261_and_t2_may_not_undercut_t1():
    settings = SipSettings()
    assert isinstance(settings.t1, Seconds) and settings.t1 == 0.5
    assert isinstance(settings.t2, Seconds) and settings.t2 == 4.0
    assert settings.problems() == []
    assert SipSettings(t1=Seconds(0.5), t2=Seconds(0.5)).problems() == []
    assert SipSettings(t1=Seconds(1.0), t2=Seconds(0.5)).problems() == [
        "t2 (the longest retransmission interval) must be at least t1"
    ]


# --- the message parser the simulator shares --------------------------------------------


def test_long_header_names_from_anyone_are_not_kept() -> None:
    """Header names are cached for speed, but whoever reaches the prober's port chooses
    them: long ones must not be kept after their message is parsed."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(300):
            name = f"X-{index:05d}-" + "n" * 20_000
            assert parse_message(f"SIP/2.0 200 OK\r\n{name}: x\r\n\r\n".encode()) is not None
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept} bytes kept after parsing"


def test_parser_reads_compact_folded_and_combined_headers():
    raw = (
        b"\r\n"
        b"SIP/2.0 180 Ringing\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtop;rport=5060,"
        b" SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKlower\r\n"
        b"VIA: SIP/2.0/TCP 127.0.0.3;branch=z9hG4bKthird\r\n"
        b'f: "Hall, main" <sip:hall@127.0.0.1>;tag=abc\r\n'
        b"t: <sip:point@127.0.0.1>\r\n"
        b"i: call-1\r\n"
        b"CSeq: 7\r\n OPTIONS\r\n"
        b"l: 4\r\n"
        b"\r\n"
        b"bodyEXTRA"
    )
    message = parse_message(raw)
    assert message is not None
    assert message.is_response and message.status_code == 180
    assert message.reason_phrase == "Ringing"
    assert message.headers["via"] == [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtop;rport=5060",
        "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKlower",
        "SIP/2.0/TCP 127.0.0.3;branch=z9hG4bKthird",
    ]
    assert message.via_branch() == "z9hG4bKtop"
    assert message.header("From") == '"Hall, main" <sip:hall@127.0.0.1>;tag=abc'
    assert message.header("call-id") == message.header("i") == "call-1"
    assert message.cseq() == (7, "OPTIONS")
    assert message.body == b"body"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02 garbage",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCall-ID: x\r\n",  # no blank line after the headers
        b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"SIP/2.0 200 OK\r\nContent-Length: ten\r\n\r\n",
    ],
)
def test_parser_rejects_what_is_not_a_sip_message(raw):
    assert parse_message(raw) is None


def test_build_response_answers_as_a_uas():
    request = parse_message(
        b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKone;rport\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKtwo\r\n"
        b"From: <sip:a@127.0.0.1>;tag=from1\r\n"
        b"To: <sip:127.0.0.1:5060>\r\n"
        b"Call-ID: abc@127.0.0.1\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert request is not None and request.method == "OPTIONS"
    response = parse_message(
        build_response(
            request, 200, "OK", [("Allow", "OPTIONS")], to_tag="t1", received=("127.0.0.9", 41000)
        )
    )
    assert response is not None and response.status_code == 200
    assert response.headers["via"] == [
        "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKone;rport=41000;received=127.0.0.9",
        "SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKtwo",
    ]
    assert response.header("from") == "<sip:a@127.0.0.1>;tag=from1"
    assert response.header("to") == "<sip:127.0.0.1:5060>;tag=t1"
    assert response.header("call-id") == "abc@127.0.0.1"
    assert response.cseq() == (1, "OPTIONS")
    assert response.header("allow") == "OPTIONS"
    assert response.header("content-length") == "0"
    trying = parse_message(build_response(request, 100, "Trying"))
    assert "tag" not in header_params(trying.header("to"))
    assert header_params(parse_message(build_response(request, 404, "Not Found")).header("to"))[
        "tag"
    ]


def test_stream_frame_length_waits_for_the_whole_body():
    message = b"SIP/2.0 200 OK\r\nl: 5\r\nCall-ID: x\r\n\r\nhello"
    assert stream_frame_length(message[:20]) is None
    assert stream_frame_length(message[:-1]) is None
    assert stream_frame_length(message) == len(message)
    assert stream_frame_length(b"\r\n\r\n" + message + b"SIP/2.0") == 4 + len(message)
