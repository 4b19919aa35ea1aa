"""The exporter's own trouble is never reported as the network's: the real exporter
process under a low open-file limit, slow HTTP clients, and a full descriptor table.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_exporter.config import parse_inventory
from bridge_exporter.probes import ProbeResult
from bridge_exporter.state import State
from conftest import free_port
from helpers_exporter import (
    ExporterProcess,
    LoopbackServers,
    Scrape,
    exporter_command,
    wait_until,
    write_inventory,
)

LOCAL = "local_resource_exhausted"
COMMUNES_PER_PROVINCE = 19
ENDPOINTS = 1 + 3 + 3 * COMMUNES_PER_PROVINCE  # 61: more probes than 64 descriptors carry
LOW_LIMIT = 64
# The promises: a slow request head is cut within this long; an unread body this long
# after the answer.
HEAD_CUT_SECONDS = 20.0
BODY_CUT_SECONDS = 8.0


class LimitedExporter(ExporterProcess):
    """The exporter started with RLIMIT_NOFILE set to (soft, hard), as `ulimit -n` would."""

    def __init__(self, config: Path, log_dir: Path, soft: int, hard: int, *extra: str):
        super().__init__(config, log_dir, "--log.format=json", *extra)
        self.soft, self.hard = soft, hard

    def start(self) -> LimitedExporter:
        args = [
            *exporter_command(),
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.soft, self.hard))

        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit
            )
        return self

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.splitlines() if line.startswith("{")]

    def messages(self, pattern: str) -> list[dict]:
        return [r for r in self.records() if re.search(pattern, r["msg"])]

    def open_files_limit(self) -> tuple[str, str]:
        """(soft, hard) as the kernel reports them for the process."""
        assert self.process is not None
        limits = Path(f"/proc/{self.process.pid}/limits").read_text()
        soft, hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()
        return soft, hard


def _network(port: int, concurrency: int) -> dict:
    """A hall, 3 provinces and their communes, every one a healthy TCP service."""
    endpoints = [{"id": "hall", "name": "Hội trường", "tier": "central"}]
    for p in range(3):
        endpoints.append({"id": f"p{p}", "name": f"Tỉnh {p}", "tier": "province", "parent": "hall"})
        endpoints += [
            {"id": f"p{p}-c{c}", "name": f"Xã {c}", "tier": "commune", "parent": f"p{p}"}
            for c in range(COMMUNES_PER_PROVINCE)
        ]
    for endpoint in endpoints:
        endpoint.update(address="127.88.70.1", modules=["tcp"])
    return {
        "interval": "1s",
        "concurrency": concurrency,
        "tiers": [{"name": t} for t in ("central", "province", "commune")],
        "modules": {"tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": port}}},
        "endpoints": endpoints,
    }


@pytest.fixture(scope="module")
def servers() -> Iterator[LoopbackServers]:
    peers = LoopbackServers()
    yield peers
    peers.close()


@pytest.fixture(scope="module")
def tcp_port(servers) -> int:
    return servers.tcp("127.88.70.1")


def _all_up(scrape: Scrape) -> bool:
    return len(scrape.by_endpoint("bridge_up")) == ENDPOINTS and all(
        v == 1 for v in scrape.by_endpoint("bridge_up").values()
    )


def _get(connection: http.client.HTTPConnection, path: str) -> str:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read().decode()
    assert response.status == 200, body
    return body


def _fill_descriptor_table(port: int, count: int) -> list[socket.socket]:
    """Connections that send nothing: the exporter accepts them until it has no
    descriptor left; the rest wait in its listen queue."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def test_fd_exhaustion_is_the_exporters_trouble_not_the_networks(tcp_port, tmp_path):
    config = write_inventory(tmp_path / "bridge.yml", _network(tcp_port, concurrency=1000))
    exporter = LimitedExporter(config, tmp_path, LOW_LIMIT, LOW_LIMIT).start()
    held: list[socket.socket] = []
    try:
        exporter.wait_ready()
        exporter.wait_for(_all_up, 10, "every endpoint up")

        # Start-up says what the limit carries, and what to do about it.
        [budget] = exporter.messages(r"^fd limit \d+")
        carried = int(re.search(r"carries (\d+) probes in flight", budget["msg"]).group(1))
        assert budget["level"] == "warning", budget
        assert budget["msg"].startswith(f"fd limit {LOW_LIMIT} (the hard limit) carries ")
        assert 20 <= carried < LOW_LIMIT - 16, budget
        assert (
            f"concurrency is 1000 and a round of every endpoint has {ENDPOINTS} probes"
            in (budget["msg"])
        )
        assert f"lower `concurrency` to {carried} or raise the limit" in budget["msg"]
        assert "ulimit -n / LimitNOFILE=" in budget["msg"]

        # A kept-alive connection, opened now, still gets answers with the table full.
        scraper = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
        before = Scrape(_get(scraper, "/metrics"))
        assert before.value("bridge_exporter_local_resource_errors_total", operation="probe") == 0

        held = _fill_descriptor_table(exporter.port, 2 * LOW_LIMIT)
        wait_until(
            lambda: exporter.messages("could not run, the exporter is out of local resources"),
            10,
            "the log to say probes cannot run",
        )
        time.sleep(2.0)  # every endpoint has had a round or two with no descriptor free

        asked_at = time.time()
        during = Scrape(_get(scraper, "/metrics"))
        assert during.by_endpoint("bridge_up") == {e: 1.0 for e in before.by_endpoint("bridge_up")}
        assert set(during.by_endpoint("bridge_upstream_up").values()) == {1.0}
        assert during.value("bridge_exporter_local_resource_errors_total", operation="probe") > 0
        unmeasured = during.by_endpoint("bridge_probe_failure_info", reason=LOCAL)
        assert len(unmeasured) >= ENDPOINTS // 2, unmeasured
        for endpoint in unmeasured:
            # The probe shows what happened, but its round did not pretend a measurement:
            # the last one measured is at least a round (1 s) older than the failed one.
            assert during.value("bridge_probe_success", endpoint=endpoint, probe="tcp") == 0
            last = during.value("bridge_last_probe_timestamp_seconds", endpoint=endpoint)
            assert asked_at - last >= 0.8, (endpoint, asked_at - last)
        assert "ran out of local resources" in _get(scraper, "/")
        scraper.close()

        for sock in held:
            sock.close()
        released_at = time.time()
        after = exporter.wait_for(
            lambda s: (
                min(s.by_endpoint("bridge_last_probe_timestamp_seconds").values()) > released_at
            ),
            10,
            "every endpoint probed again after the descriptors came back",
        )
        assert _all_up(after)
        assert set(after.by_endpoint("bridge_state_changes_total").values()) == {0.0}
        assert after.value("bridge_exporter_local_resource_errors_total", operation="accept") > 0
        assert after.samples("bridge_probe_failure_info") == []

        # One line per burst, then a count once it is over; never asyncio's line per retry.
        wait_until(
            lambda: (
                exporter.messages(r"^\d+ more accept errors in the last")
                and exporter.messages(r"^\d+ more probes failed for lack of local resources")
            ),
            15,
            "the bursts' summaries",
        )
        assert len(exporter.messages("^cannot accept connections: .*Too many open files")) == 1
        assert len(exporter.messages("could not run, the exporter is out of local resources")) == 1
        assert exporter.messages("socket.accept") == []
        assert exporter.stop() < 5
    finally:
        for sock in held:
            sock.close()
        exporter.kill()


def test_soft_fd_limit_is_raised_to_the_hard_limit(tcp_port, tmp_path):
    config = write_inventory(tmp_path / "bridge.yml", _network(tcp_port, concurrency=1000))
    exporter = LimitedExporter(config, tmp_path, LOW_LIMIT, 4096).start()
    try:
        exporter.wait_ready()
        assert exporter.open_files_limit() == ("4096", "4096")
        [budget] = exporter.messages(r"^fd limit \d+")
        assert budget["level"] == "info", budget
        assert budget["msg"].startswith(f"fd limit 4096 (raised from {LOW_LIMIT}) carries ")
        scrape = exporter.wait_for(_all_up, 10, "every endpoint up")
        assert scrape.value("process_max_fds") == 4096
        exporter.stop()
    finally:
        exporter.kill()


def test_reload_to_a_larger_concurrency_says_what_the_limit_carries(tcp_port, tmp_path):
    config = write_inventory(tmp_path / "bridge.yml", _network(tcp_port, concurrency=10))
    exporter = LimitedExporter(config, tmp_path, LOW_LIMIT, LOW_LIMIT).start()
    try:
        exporter.wait_ready()
        wait_until(lambda: exporter.messages(r"^fd limit \d+"), 5, "the start-up budget line")
        [first] = exporter.messages(r"^fd limit \d+")
        assert first["level"] == "info" and "concurrency is 10 " in first["msg"], first

        write_inventory(config, _network(tcp_port, concurrency=1000))
        exporter.signal(signal.SIGHUP)
        wait_until(lambda: len(exporter.messages(r"^fd limit \d+")) == 2, 5, "a second line")
        second = exporter.messages(r"^fd limit \d+")[1]
        assert second["level"] == "warning", second
        assert "concurrency is 1000 " in second["msg"]
        assert re.search(r"lower `concurrency` to \d+ or raise the limit", second["msg"])
        exporter.stop()
    finally:
        exporter.kill()


def test_simulate_raises_the_limit_and_says_how_many_endpoints_it_carries(tmp_path):
    sip_port, tcp_port = free_port(), free_port()
    config = tmp_path / "sim.yml"
    config.write_text(
        "tiers: [province, commune]\n"
        "modules:\n"
        f"  sip: {{prober: sip, timeout: 1s, sip: {{port: {sip_port}}}}}\n"
        f"  h323: {{prober: h323, timeout: 1s, h323: {{port: {tcp_port}}}}}\n"
        "endpoints:\n"
        "  - {id: p, name: P, tier: province, address: 127.88.73.1, modules: [sip, h323]}\n"
        "  - {id: c, name: C, tier: commune, parent: p, address: 127.88.73.2, "
        "modules: [h323]}\n",
        encoding="utf-8",
    )
    log_path = tmp_path / "simulate.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *exporter_command(),
                "simulate",
                f"--config.file={config}",
                f"--control.listen-address=127.0.0.1:{free_port()}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_LIMIT, 4096)),
        )
    try:
        line = wait_until(
            lambda: re.search(r"msg=\"(fd limit [^\"]*)\"", log_path.read_text()),
            10,
            "the simulator's fd limit line",
        ).group(1)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        assert re.search(r"Max open files\s+4096\s+4096", limits), limits
        # p listens on SIP UDP + TCP and H.323, c on H.323: 4 sockets, 2.0 an endpoint.
        assert line.startswith(f"fd limit 4096 (raised from {LOW_LIMIT}) carries about "), line
        assert "simulated endpoints (2.0 listening sockets each" in line, line
        assert line.endswith("the inventory has 2"), line
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0


def test_a_round_is_decided_by_its_real_failures_not_by_local_ones():
    inventory = parse_inventory(
        "tiers: [province, commune]\n"
        "modules:\n"
        "  sip: {prober: sip, timeout: 1s, required: true}\n"
        "  h323: {prober: h323, timeout: 1s, required: true}\n"
        "endpoints:\n"
        "  - {id: p, name: P, tier: province, address: 127.88.71.1, modules: [sip, h323]}\n"
        "  - {id: c, name: C, tier: commune, parent: p, address: 127.88.71.2, "
        "modules: [sip, h323]}\n",
        "rounds.yml",
    )
    state = State(inventory)
    p, c = inventory.endpoints["p"], inventory.endpoints["c"]

    def round_of(endpoint, sip: ProbeResult, h323: ProbeResult) -> None:
        state.record(endpoint, inventory.modules["sip"], sip)
        state.record(endpoint, inventory.modules["h323"], h323)
        state.finish_round(endpoint, 0.1)

    ok, local = ProbeResult(success=True), ProbeResult(success=False, reason=LOCAL)
    refused = ProbeResult(success=False, reason="refused")

    round_of(p, local, local)  # nothing measured yet: still unknown, not down
    assert state.endpoints["p"].up is None and state.upstream_up(c)
    round_of(p, ok, ok)
    round_of(c, ok, ok)
    first = state.endpoints["p"].last_round_timestamp
    round_of(p, ok, local)  # one required probe unmeasured: the round decides nothing
    assert state.endpoints["p"].up is True and state.upstream_up(c)
    assert state.endpoints["p"].last_round_timestamp == first
    round_of(p, refused, local)  # a real failure beside a local one: down
    assert state.endpoints["p"].up is False and not state.upstream_up(c)
    down_since = state.endpoints["p"].down_since
    round_of(p, local, local)  # still down, from the same moment
    assert state.endpoints["p"].up is False
    assert state.endpoints["p"].down_since == down_since
    assert state.endpoints["p"].state_changes == 1


# --- slow HTTP clients ----------------------------------------------------------------------


class RawClient:
    """A raw TCP connection to the exporter that notes when the server closed it."""

    def __init__(self, port: int, first_bytes: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.received = b""
        self.closed_after: float | None = None
        self._reading = threading.Lock()  # polled by a CloseWatch's thread and by trickle()
        if first_bytes:
            self.sock.sendall(first_bytes)

    def poll(self) -> None:
        with self._reading:
            self._read_available()

    def _read_available(self) -> None:
        if self.closed_after is not None:
            return
        while select.select([self.sock], [], [], 0)[0]:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed_after = time.monotonic() - self.opened
                return
            self.received += data

    def trickle(self, data: bytes) -> None:
        if self.closed_after is None:
            try:
                self.sock.sendall(data)
            except OSError:
                self.poll()


class CloseWatch:
    """Polls raw clients from a thread of its own the moment they have something to read,
    so each notes when the server closed it to within milliseconds: the test's own loop
    comes round only once a second or so, after its requests."""

    def __init__(self, clients: list[RawClient]):
        self._clients = clients
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            open_clients = [c for c in self._clients if c.closed_after is None]
            if not open_clients:
                return
            readable, _, _ = select.select([c.sock for c in open_clients], [], [], 0.05)
            for client in open_clients:
                if client.sock in readable:
                    client.poll()

    def __enter__(self) -> CloseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_slow_clients_are_cut_off_while_others_are_served(tcp_port, tmp_path):
    config = write_inventory(tmp_path / "bridge.yml", _network(tcp_port, concurrency=100))
    exporter = ExporterProcess(config, tmp_path).start()
    clients: list[RawClient] = []
    try:
        exporter.wait_ready()
        port = exporter.port
        trickler = RawClient(port, b"GET /metrics HTTP/1.1\r\nHost: exporter\r\nX-Slow: ")
        silent = RawClient(port, b"")
        body = RawClient(
            port, b"GET / HTTP/1.1\r\nHost: exporter\r\nContent-Length: 100000\r\n\r\npartial"
        )
        clients = [trickler, silent, body]
        started = time.monotonic()
        served, trickled = 0, started
        with CloseWatch(clients):
            while time.monotonic() - started < HEAD_CUT_SECONDS + 5:
                if time.monotonic() - trickled >= 1.0:
                    trickler.trickle(b"a")  # a header byte a second: never a whole head
                    trickled = time.monotonic()
                if all(c.closed_after is not None for c in clients):
                    break
                # Everyone else is served meanwhile (some 20 times; 10 on a slow host).
                assert exporter.get("/-/healthy")[0] == 200
                assert exporter.scrape().value("bridge_exporter_endpoints") == ENDPOINTS
                served += 1
                time.sleep(0.5)

        assert served >= 10
        for name, client in (("trickling", trickler), ("silent", silent)):
            assert client.closed_after is not None, f"the {name} client is still connected"
            assert 10 <= client.closed_after <= HEAD_CUT_SECONDS, (name, client.closed_after)
            assert client.received == b"", (name, client.received[:200])
        # The body that never comes: the page is answered, then the connection is closed.
        assert body.received.startswith(b"HTTP/1.1 200 OK"), body.received[:200]
        assert body.closed_after is not None and body.closed_after <= BODY_CUT_SECONDS
        exporter.stop()
    finally:
        for client in clients:
            client.sock.close()
        exporter.kill()
