"""SIP over UDP through one shared socket per address family (issue 10): through the real
exporter's /probe, many probes at once (two of them to the same endpoint) go out of one
socket and each gets its own answer; a closed port is still `refused` and its ICMP error
harms no other probe; an answer from another address or port is not an answer; and no
datagram, however malformed, crashes the reader or completes the wrong transaction."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_exporter.probes import ProbeResult, Target
from bridge_exporter.probes.base import Seconds
from bridge_exporter.probes.sip import SipProber, SipSettings
from bridge_exporter.sipmsg import build_response, parse_message
from conftest import free_port
from helpers_exporter import ExporterProcess, Scrape, wait_until, write_inventory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from thread_peers import ThreadUdpPeer

LOG = logging.getLogger("test.sip_shared")
ANSWER_DELAY = 1.0  # long enough to see every probe in flight at once


class DelayedSipPeer:
    """A SIP device on its own thread: answers the first copy of each OPTIONS with `code`
    after `delay` seconds, and records where each request came from."""

    def __init__(self, sock: socket.socket, code: int, delay: float = ANSWER_DELAY) -> None:
        self.sock = sock
        self.sock.settimeout(0.01)
        self.code = code
        self.delay = delay
        self.sources: list[tuple] = []
        self.call_ids: list[str] = []
        self._due: list[tuple[float, bytes, tuple]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for item in [item for item in self._due if item[0] <= now]:
                self._due.remove(item)
                self.sock.sendto(item[1], item[2])
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            request = parse_message(data)
            if request is None or request.method != "OPTIONS":
                continue
            call_id = request.header("call-id") or ""
            self.sources.append(source)
            if call_id not in self.call_ids:
                self.call_ids.append(call_id)
                answer = build_response(request, self.code, "Answer", received=source[:2])
                self._due.append((now + self.delay, answer, source))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def bind_udp_on_one_port(addresses: list[str]) -> list[socket.socket]:
    """UDP sockets bound to one port number on each of `addresses` (so one module's port
    reaches every endpoint)."""
    for _ in range(20):
        port = free_port(addresses[0], kind=socket.SOCK_DGRAM)
        bound: list[socket.socket] = []
        try:
            for address in addresses:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                bound.append(sock)
                sock.bind((address, port))
            return bound
        except OSError:
            for sock in bound:
                sock.close()
    raise AssertionError(f"no UDP port free on all of {addresses}")


def udp_sockets_of(pid: int) -> dict[str, list[int]]:
    """The local ports of the process's UDP sockets, by table ("udp": IPv4, "udp6")."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports: dict[str, list[int]] = {}
    for table in ("udp", "udp6"):
        rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        ports[table] = [
            int(row.split()[1].rsplit(":", 1)[1], 16) for row in rows if row.split()[9] in inodes
        ]
    return ports


# --- through the real exporter --------------------------------------------------------------

ADDRESSES = ["127.77.0.1", "127.77.0.2", "127.77.0.3", "127.77.0.4", "::1"]
CODES = [200, 202, 404, 486, 200]  # any final code is up; each endpoint its own


@pytest.fixture(scope="module")
def peers_and_exporter(tmp_path_factory) -> Iterator[tuple[list[DelayedSipPeer], ExporterProcess]]:
    sockets = bind_udp_on_one_port(ADDRESSES)
    sip_port = sockets[0].getsockname()[1]
    peers = [DelayedSipPeer(sock, code) for sock, code in zip(sockets, CODES, strict=True)]
    closed_port = free_port("127.77.0.1", kind=socket.SOCK_DGRAM)
    workdir = tmp_path_factory.mktemp("sip-shared")
    endpoints = [
        {
            "id": f"e{index}",
            "name": f"Point {index}",
            "tier": "province" if index else "central",
            **({"parent": "e0"} if index else {}),
            "address": address,
            "modules": ["idle"],
        }
        for index, address in enumerate(ADDRESSES)
    ]
    config = write_inventory(
        workdir / "bridge.yml",
        {
            "interval": "1h",  # background rounds stay out of the way; /probe drives
            "tiers": [{"name": "central"}, {"name": "province"}],
            "modules": {
                "idle": {"prober": "tcp", "timeout": "1s", "tcp": {"port": free_port()}},
                "sip": {
                    "prober": "sip",
                    "timeout": "4s",
                    "sip": {"port": sip_port, "t1": "3s"},  # no retransmission before the answer
                },
                "sip_closed": {
                    "prober": "sip",
                    "timeout": "3s",
                    "sip": {"port": closed_port, "t1": "100ms"},
                },
            },
            "endpoints": endpoints,
        },
    )
    process = ExporterProcess(config, workdir).start()
    try:
        process.wait_ready()
        yield peers, process
        process.stop()
    finally:
        process.kill()
        for peer in peers:
            peer.close()


def probe_result(process: ExporterProcess, query: str) -> Scrape:
    status, text = process.get(f"/probe?{query}")
    assert status == 200, text
    return Scrape(text)


def test_concurrent_probes_share_one_socket_per_family_and_each_gets_its_own_answer(
    peers_and_exporter,
):
    peers, process = peers_and_exporter
    assert process.process is not None
    targets = ["e0", "e0", "e1", "e2", "e3", "e4"]  # e0 twice at once
    before = [len(peer.call_ids) for peer in peers]
    wanted = [before[i] + targets.count(f"e{i}") for i in range(len(peers))]
    with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        futures = [
            pool.submit(probe_result, process, f"target={target}&module=sip") for target in targets
        ]
        # Every request has reached its device, no answer has come back (1 s delay): all
        # six probes are in flight now.
        wait_until(
            lambda: all(len(p.call_ids) >= n for p, n in zip(peers, wanted, strict=True)),
            10,
            "every probe's OPTIONS at its device",
            every=0.02,
        )
        in_flight = [udp_sockets_of(process.process.pid) for _ in range(5)]
        scrapes = [future.result(timeout=20) for future in futures]
    for sample in in_flight:
        assert len(sample["udp"]) == 1 and len(sample["udp6"]) == 1, in_flight
    for target, scrape in zip(targets, scrapes, strict=True):
        index = int(target[1:])
        labels = {"endpoint": target, "probe": "sip"}
        assert scrape.value("bridge_probe_success", **labels) == 1, scrape.text
        assert scrape.value("bridge_sip_response_code", **labels) == CODES[index]
    # Both probes of e0 were their own transactions, each answered.
    assert len(set(peers[0].call_ids[before[0] :])) == 2
    # Every request left from the shared socket of its family.
    shared = in_flight[0]
    assert {source[1] for peer in peers[:4] for source in peer.sources} == set(shared["udp"])
    assert {source[1] for source in peers[4].sources} == set(shared["udp6"])


def test_a_closed_port_is_refused_and_its_icmp_error_harms_no_other_probe(peers_and_exporter):
    # One request names both modules: the probe of the closed port sends first, and the
    # kernel's port unreachable is pending on the shared socket when the other probe sends.
    _peers, process = peers_and_exporter
    for _ in range(3):
        scrape = probe_result(process, "target=e1&module=sip_closed&module=sip")
        refused = scrape.samples("bridge_probe_failure_info", endpoint="e1", probe="sip_closed")
        assert [sample.labels["reason"] for sample in refused] == ["refused"], scrape.text
        assert scrape.value("bridge_probe_duration_seconds", endpoint="e1", probe="sip_closed") < 1
        assert scrape.value("bridge_probe_success", endpoint="e1", probe="sip") == 1
        assert scrape.value("bridge_sip_response_code", endpoint="e1", probe="sip") == CODES[1]
    status, text = process.get("/probe?target=e1&module=sip_closed&debug=true")
    assert status == 200
    assert "FAILED (refused)" in text
    assert "refused: ConnectionRefusedError" in text
    # The shared socket outlives the probes (no socket per probe).
    assert process.process is not None
    assert len(udp_sockets_of(process.process.pid)["udp"]) == 1


# --- the prober itself, through its public probe() -------------------------------------------


async def test_pending_icmp_error_does_not_fail_the_next_send():
    # Deterministic form of the case above: the closed port's ICMP error is queued during
    # the first send; the second probe sends before the reader has run.
    prober = SipProber()
    peer = await UdpAnswerer.start()
    try:
        closed = free_port(kind=socket.SOCK_DGRAM)
        refused, answered = await asyncio.gather(
            prober.probe(Target("closed", "127.0.0.1"), SipSettings(port=closed), 2.0, LOG),
            prober.probe(Target("live", "127.0.0.1"), SipSettings(port=peer.port), 2.0, LOG),
        )
    finally:
        peer.close()
        await prober.close()
    assert refused.reason == "refused", refused.debug
    assert answered.success and answered.status_code == 200, answered.debug


class UdpAnswerer(asyncio.DatagramProtocol):
    """Answers every OPTIONS with 200, or, with `answer_from`, from that other socket."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.answer_from: socket.socket | None = None
        self.requests: list[bytes] = []

    @classmethod
    async def start(cls) -> UdpAnswerer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return peer

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.requests.append(data)
        request = parse_message(data)
        if request is None:
            return
        answer = build_response(request, 200, "OK", received=addr[:2])
        if self.answer_from is not None:
            self.answer_from.sendto(answer, addr)
        else:
            assert self.transport is not None
            self.transport.sendto(answer, addr)

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


@pytest.mark.parametrize("other_source", ["other port", "other address"])
async def test_an_answer_from_another_address_or_port_is_not_an_answer(other_source):
    # The right Call-ID, branch and CSeq, but not from where the request went: a
    # connected socket never saw it, and the shared one must not count it either.
    peer = await UdpAnswerer.start()
    impostor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    impostor.bind(("127.0.0.1" if other_source == "other port" else "127.0.0.9", 0))
    peer.answer_from = impostor
    prober = SipProber()
    try:
        result = await prober.probe(
            Target("ep", "127.0.0.1"), SipSettings(port=peer.port, t1=Seconds(0.1)), 0.6, LOG
        )
        peer.answer_from = None  # the device itself answers now
        later = await prober.probe(Target("ep", "127.0.0.1"), SipSettings(port=peer.port), 2, LOG)
    finally:
        peer.close()
        impostor.close()
        await prober.close()
    assert len(peer.requests) >= 2, "the impostor must have answered"
    assert not result.success, result.debug
    assert result.reason == "timeout" and result.status_code is None
    assert later.success and later.status_code == 200, later.debug


# --- fuzz: whatever arrives on the shared socket -------------------------------------------


def _response(
    request: bytes, code: int, *, call_id: str | None = None, branch: str | None = None,
    cseq: str | None = None, cut: int | None = None,
) -> bytes:  # fmt: skip
    message = parse_message(request)
    assert message is not None
    if call_id is not None:
        message.headers["call-id"] = [call_id]
    if branch is not None:
        message.headers["via"] = [message.header("via").replace("branch=", f"branch={branch}")]
    if cseq is not None:
        message.headers["cseq"] = [cseq]
    data = build_response(message, code, "Fuzz")
    return data if cut is None else data[:cut]


# (sender, what) pairs; sender "peer" is where the requests went, "stranger" is not.
# What is never the right final answer to a live transaction; `{a}`/`{b}` name them.
datagram = st.one_of(
    st.tuples(st.sampled_from(["peer", "stranger"]), st.binary(max_size=300)),
    st.tuples(
        st.sampled_from(["peer", "stranger"]),
        st.fixed_dictionaries(
            {
                "to": st.sampled_from(["a", "b", "ended", "unknown"]),
                "code": st.sampled_from([100, 180, 200, 404, 503, 699]),
                "change": st.sampled_from(["none", "branch", "cseq", "call_id", "cut"]),
                "cut": st.integers(0, 400),
            }
        ),
    ),
)


def _render(what, requests: dict[str, bytes]) -> tuple[bytes, bool]:
    """The datagram, and whether it is the right final answer for a live transaction
    from its peer (the fuzz never sends those from the peer: they would rightly count)."""
    if isinstance(what, bytes):
        return what, False
    request = requests[what["to"]] if what["to"] in requests else requests["ended"]
    change = what["change"]
    kwargs: dict = {}
    if what["to"] == "unknown" or change == "call_id":
        kwargs["call_id"] = "f" * 32
    if change == "branch":
        kwargs["branch"] = "z9hG4bKother"
    if change == "cseq":
        kwargs["cseq"] = "2 OPTIONS"
    if change == "cut":
        kwargs["cut"] = what["cut"]
    data = _response(request, what["code"], **kwargs)
    # A cut that still parses kept every header (parsing needs the blank line after them).
    rightful = (
        what["to"] in ("a", "b")
        and change in ("none", "cut")
        and what["code"] >= 200
        and parse_message(data) is not None
    )
    return data, rightful


async def _shared_socket_under_fuzz(datagrams) -> tuple[list, dict[str, ProbeResult]]:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    stranger.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    prober = SipProber()
    long_wait = SipSettings(port=peer.getsockname()[1], t1=Seconds(5))
    results: dict[str, ProbeResult] = {}
    try:
        # A transaction that has ended: its late answers must go nowhere.
        ended = asyncio.ensure_future(prober.probe(Target("ended", "127.0.0.1"), long_wait, 5, LOG))
        ended_request, source = await loop.sock_recvfrom(peer, 65535)
        peer.sendto(_response(ended_request, 200), source)
        results["ended"] = await ended
        a = asyncio.ensure_future(prober.probe(Target("a", "127.0.0.1"), long_wait, 5, LOG))
        b = asyncio.ensure_future(prober.probe(Target("b", "127.0.0.1"), long_wait, 5, LOG))
        # a sends first: both start in this step, and nothing before the send waits.
        requests = {"ended": ended_request}
        requests["a"], source = await loop.sock_recvfrom(peer, 65535)
        requests["b"], source = await loop.sock_recvfrom(peer, 65535)
        for sender, what in datagrams:
            data, rightful = _render(what, requests)
            if rightful and sender == "peer":
                continue
            (peer if sender == "peer" else stranger).sendto(data, source)
        await asyncio.sleep(0.05)  # let the reader take them all
        assert not a.done() and not b.done(), "a fuzzed datagram ended a transaction"
        peer.sendto(_response(requests["a"], 200), source)
        peer.sendto(_response(requests["b"], 486), source)
        results["a"], results["b"] = await a, await b
    finally:
        peer.close()
        stranger.close()
        await prober.close()
    return loop_errors, results


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(datagram, max_size=12))
@example([("peer", b"")])
@example([("peer", b"\x00" * 300)])
@example([("stranger", {"to": "a", "code": 200, "change": "none", "cut": 0})])
@example([("peer", {"to": "ended", "code": 200, "change": "none", "cut": 0})])
@example([("peer", {"to": "a", "code": 200, "change": "branch", "cut": 0})])
@example([("peer", {"to": "b", "code": 200, "change": "cut", "cut": 120})])
def test_no_datagram_crashes_the_reader_or_completes_the_wrong_transaction(datagrams):
    loop_errors, results = asyncio.run(_shared_socket_under_fuzz(datagrams))
    assert loop_errors == []
    assert results["ended"].success and results["ended"].status_code == 200
    assert results["a"].success and results["a"].status_code == 200, results["a"].debug
    assert results["b"].success and results["b"].status_code == 486, results["b"].debug


# --- opening and closing the shared socket --------------------------------------------------

STARVED_PROBE = """
import asyncio, json, logging, resource, sys
from bridge_exporter.probes import Target
from bridge_exporter.probes.sip import SipProber, SipSettings

async def main(port):
    prober, log, hoard = SipProber(), logging.getLogger("starved"), []
    target, settings = Target("p", "127.0.0.1"), SipSettings(port=port)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    try:
        while True:
            hoard.append(open("/dev/null"))
    except OSError:
        pass
    starved = await prober.probe(target, settings, 2.0, log)
    for handle in hoard[-8:]:
        handle.close()
    fed = await prober.probe(target, settings, 2.0, log)
    await prober.close()
    print(json.dumps([[r.reason, r.status_code, r.debug[-1:]] for r in (starved, fed)]))

asyncio.run(main(int(sys.argv[1])))
"""


class AnswerOnThread(ThreadUdpPeer):
    def answer(self, data: bytes, peer: tuple) -> bytes | None:
        request = parse_message(data)
        return None if request is None else build_response(request, 200, "OK", received=peer)


def test_no_descriptor_for_the_shared_socket_is_the_exporters_trouble_and_passes(tmp_path):
    # Out of descriptors, the shared socket cannot open: local_resource_exhausted, as the
    # socket per probe said; once descriptors are free again the next probe opens it.
    peer = AnswerOnThread()
    try:
        done = subprocess.run(
            [sys.executable, "-c", STARVED_PROBE, str(peer.port)],
            capture_output=True, text=True, timeout=30, cwd=tmp_path,
        )  # fmt: skip
    finally:
        peer.close()
    assert done.returncode == 0, done.stderr
    (starved_reason, starved_code, starved_debug), (fed_reason, fed_code, _) = json.loads(
        done.stdout
    )
    assert starved_reason == "local_resource_exhausted", starved_debug
    assert starved_code is None
    assert (fed_reason, fed_code) == ("", 200)


async def test_closing_the_prober_ends_the_transactions_waiting_on_it():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    prober = SipProber()
    try:
        settings = SipSettings(port=silent.getsockname()[1])
        waiting = asyncio.ensure_future(prober.probe(Target("ep", "127.0.0.1"), settings, 5, LOG))
        await asyncio.sleep(0.2)
        await prober.close()
        result = await asyncio.wait_for(waiting, 2)  # not the 5 s timeout
    finally:
        silent.close()
    assert not result.success
    assert result.reason == "network_error"
    assert any("SIP prober was closed" in line for line in result.debug), result.debug
