"""/metrics streamed from a snapshot, as a scraper sees it: a real exporter process over
HTTP, with and without gzip, while rounds end under the scrape.

A worker thread joins the page from a snapshot of the kept per-endpoint texts, gzips it
or streams it plain piece by piece, with its length. So these check what could go wrong
there: the gzipped page is the plain page, promtool accepts it, a HEAD request still
answers, and scrapes racing rounds that end (endpoints flapping) and each other still give
every series exactly once, consistent with itself.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import subprocess
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from bridge_exporter.config import parse_inventory
from bridge_exporter.metrics_page import PIECES_AHEAD, MetricsPage
from bridge_exporter.probes.base import ProbeResult
from bridge_exporter.runtime import Exporter
from conftest import free_port, need_tool
from helpers_exporter import ExporterProcess, LoopbackServers, Scrape, wait_until, write_inventory
from hypothesis import given, settings
from hypothesis import strategies as st

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Long ids: every series carries its endpoint's id twice and each ancestor's once, so a
# few hundred endpoints make a page of more than one 1 MiB piece.
PAD = "d" * 96
# Series that change between two scrapes whatever the endpoints do.
MOVING = ("process_", "python_gc_", "bridge_exporter_probes_in_flight")


class FlappingTcp:
    """A TCP port on a loopback address that accepts for `period` seconds, then refuses
    (nothing listening) for `period`, and again."""

    def __init__(self, host: str, period: float):
        self.host = host
        self.period = period
        self.port = free_port(host)
        self.cycles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with socket.create_server((self.host, self.port), backlog=256) as server:
                server.settimeout(0.02)
                end = time.monotonic() + self.period
                while time.monotonic() < end and not self._stop.is_set():
                    try:
                        connection, _ = server.accept()
                        connection.close()
                    except TimeoutError:
                        pass
            self._stop.wait(self.period)
            self.cycles += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def get(url: str, path: str, *, gzipped: bool = False, method: str = "GET"):
    """(status, headers, body as sent) over HTTP/1.1 with http.client."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Accept-Encoding": "gzip"} if gzipped else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def scrape_text(url: str, gzipped: bool) -> str:
    """One /metrics answer, checked to be whole and labelled as it should, decoded."""
    status, headers, body = get(url, "/metrics", gzipped=gzipped)
    assert status == 200, body[:500]
    assert headers["Content-Type"] == CONTENT_TYPE
    assert headers["Transfer-Encoding"] is None  # naive HTTP/1.1 clients read it too
    assert int(headers["Content-Length"]) == len(body)
    if gzipped:
        assert headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(body)
    else:
        assert headers["Content-Encoding"] is None
    return body.decode("utf-8")


def steady_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(MOVING)]


def promtool_accepts(text: str) -> None:
    done = subprocess.run(
        [need_tool("promtool"), "check", "metrics"],
        input=text, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # promtool lints names too (exit 3 for lint-only findings); anything it cannot parse
    # or calls a duplicate is an error.
    problems = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode in (0, 3) and not problems, done.stderr[-2000:]


def tree(provinces: int, communes: int) -> Iterator[tuple[str, str, str | None]]:
    """(id, tier, parent) of a three-tier tree, the central hall first."""
    yield "hall", "central", None
    for p in range(provinces):
        province = f"tinh-{p}-{PAD}"
        yield province, "province", "hall"
        for c in range(communes):
            yield f"xa-{p}-{c}-{PAD}", "commune", province


# --- the page is the same page, gzipped or not, and promtool takes it ----------------------


@pytest.fixture(scope="module")
def quiet_exporter(tmp_path_factory) -> Iterator[ExporterProcess]:
    """604 endpoints whose rounds cannot end during the test (SIP over UDP to a socket
    that never answers, 60 s timeout): the page stays the same from scrape to scrape."""
    workdir = tmp_path_factory.mktemp("quiet")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.77.0.1", 0))
    endpoints = [
        {"id": i, "name": f"Điểm cầu {i[:12]}", "tier": tier, "address": "127.77.0.1"}
        | ({"parent": parent} if parent else {})
        for i, tier, parent in tree(3, 200)
    ]
    inventory = {
        "interval": "120s",
        "tiers": [{"name": t, "modules": ["sip"]} for t in ("central", "province", "commune")],
        "modules": {
            "sip": {
                "prober": "sip",
                "timeout": "60s",
                "sip": {"transport": "udp", "port": sink.getsockname()[1]},
            }
        },
        "endpoints": endpoints,
    }
    exporter = ExporterProcess(write_inventory(workdir / "quiet.yml", inventory), workdir)
    try:
        with exporter.running() as process:
            yield process
    finally:
        sink.close()


def test_gzipped_page_is_the_plain_page_and_promtool_accepts_it(quiet_exporter):
    url = quiet_exporter.url
    plain = scrape_text(url, gzipped=False)
    zipped = scrape_text(url, gzipped=True)
    assert len(plain.encode()) > 1 << 20, "the page should span several 1 MiB pieces"
    assert steady_lines(zipped) == steady_lines(plain)
    scrape = Scrape(plain)
    assert len(scrape.samples("bridge_endpoint_info")) == 1 + 3 + 3 * 200
    # The process_* series come last, after every bridge_* family, as before.
    names = [line.split()[2] for line in plain.splitlines() if line.startswith("# TYPE ")]
    first_process = names.index("process_virtual_memory_bytes")
    assert all(not n.startswith("bridge_") or n.startswith("bridge_exporter") for n in
               names[first_process:]), names[first_process:]  # fmt: skip
    promtool_accepts(plain)


def test_head_answers_without_a_body(quiet_exporter):
    for gzipped in (False, True):
        status, headers, body = get(quiet_exporter.url, "/metrics", gzipped=gzipped, method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["Content-Type"] == CONTENT_TYPE
        assert int(headers["Content-Length"]) > (1 << 20 if not gzipped else 1000)
        assert headers["Content-Encoding"] == ("gzip" if gzipped else None)
    # And the connection's next scrape is whole.
    assert Scrape(scrape_text(quiet_exporter.url, gzipped=True)).samples("bridge_upstream_up")


# --- scrapes racing rounds that end, and each other ---------------------------------------


@pytest.fixture(scope="module")
def flapping_exporter(tmp_path_factory) -> Iterator[tuple[ExporterProcess, dict, FlappingTcp]]:
    """184 endpoints probed every second over TCP, half of them (a province among them)
    on a port that accepts and refuses by turns every 0.3 s."""
    workdir = tmp_path_factory.mktemp("flapping")
    servers = LoopbackServers()
    steady_port = servers.tcp("127.77.1.2")
    flapper = FlappingTcp("127.77.1.1", 0.3)
    endpoints, parents = [], {}
    for index, (endpoint_id, tier, parent) in enumerate(tree(3, 60)):
        flaps = index % 2 == 1
        spec = {"id": endpoint_id, "name": f"Điểm cầu {index}", "tier": tier}
        if parent:
            spec["parent"] = parent
        spec["address"] = "127.77.1.1" if flaps else "127.77.1.2"
        spec["overrides"] = {"tcp": {"port": flapper.port if flaps else steady_port}}
        endpoints.append(spec)
        parents[endpoint_id] = parent
    inventory = {
        "interval": "1s",
        "tiers": [{"name": t, "modules": ["tcp"]} for t in ("central", "province", "commune")],
        "modules": {"tcp": {"prober": "tcp", "timeout": "0.5s", "tcp": {"port": 1}}},
        "endpoints": endpoints,
    }
    exporter = ExporterProcess(write_inventory(workdir / "flapping.yml", inventory), workdir)
    try:
        with exporter.running() as process:
            yield process, parents, flapper
    finally:
        flapper.close()
        servers.close()


def check_consistent(text: str, parents: dict[str, str | None]) -> dict[str, float]:
    """Every series once; every endpoint once per per-endpoint family; the tier sums and
    bridge_upstream_up agree with the bridge_up of the same page. Returns bridge_up."""
    scrape = Scrape(text)
    keys = Counter(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in scrape.families.values()
        for sample in family.samples
    )
    repeated = [key for key, count in keys.items() if count > 1]
    assert not repeated, f"series given more than once: {repeated[:3]}"
    for name in ("bridge_endpoint_info", "bridge_upstream_up", "bridge_state_changes_total"):
        assert sorted(scrape.by_endpoint(name)) == sorted(parents), name
    up = scrape.by_endpoint("bridge_up")
    for tier in ("central", "province", "commune"):
        in_tier = [s.labels["endpoint"] for s in scrape.samples("bridge_up", tier=tier)]
        counted = sum(up[e] for e in in_tier)
        assert scrape.value("bridge_tier_endpoints_up", tier=tier) == counted, tier
    for endpoint, value in scrape.by_endpoint("bridge_upstream_up").items():
        ancestors, parent = [], parents[endpoint]
        while parent is not None:
            ancestors.append(parent)
            parent = parents[parent]
        assert value == (0.0 if any(up.get(a) == 0.0 for a in ancestors) else 1.0), endpoint
    return up


def test_scrapes_racing_flapping_rounds_and_each_other_give_each_series_once(
    flapping_exporter,
):
    process, parents, flapper = flapping_exporter
    wait_until(
        lambda: len(process.scrape().samples("bridge_up")) == len(parents),
        30, "every endpoint's first round",
    )  # fmt: skip

    def scrapes(gzipped: bool) -> list[dict[str, float]]:
        return [check_consistent(scrape_text(process.url, gzipped), parents) for _ in range(8)]

    # Two scrapes at a time, gzipped and plain, while rounds end all the time; until more
    # than ten endpoints were seen both up and down (a fast host's 16 scrapes may all fall
    # within one 1 s round).
    results: list[dict[str, float]] = []
    give_up = time.monotonic() + 30
    while True:
        with ThreadPoolExecutor(2) as pool:
            both = [pool.submit(scrapes, True), pool.submit(scrapes, False)]
            results += [up for scraping in both for up in scraping.result()]
        seen = {e: {up[e] for up in results} for e in parents}
        flapped = [e for e, values in seen.items() if values == {0.0, 1.0}]
        if len(flapped) > 10:
            break
        assert time.monotonic() < give_up, (
            f"only {len(flapped)} endpoints changed in {len(results)} scrapes over 30 s "
            f"({flapper.cycles} flaps)"
        )
    promtool_accepts(scrape_text(process.url, gzipped=True))


async def test_a_page_is_a_snapshot_that_rounds_ending_after_it_leave_alone():
    """What the handler streams is fixed when the scrape starts: an endpoint whose round
    ends while the page is still being sent keeps its old text in that page (the race
    above is too quick to show it at this size), and the next page has the new one."""
    inventory = parse_inventory(
        "tiers: [province, commune]\n"
        "modules: {tcp: {prober: tcp, tcp: {port: 1}}}\n"
        "endpoints:\n"
        "  - {id: tinh, name: T, tier: province, address: 127.0.0.1, modules: [tcp]}\n"
        "  - {id: xa, name: X, tier: commune, parent: tinh, address: 127.0.0.2, modules: [tcp]}\n",
        "snapshot.yml",
    )
    exporter = Exporter("snapshot.yml", inventory)  # not started: rounds end by hand here

    def end_round(endpoint_id: str, success: bool) -> None:
        endpoint = inventory.endpoints[endpoint_id]
        exporter.state.record(endpoint, inventory.modules["tcp"], ProbeResult(success, 0.01))
        exporter.state.finish_round(endpoint, 0.02)

    end_round("tinh", True)
    end_round("xa", True)
    page = await exporter.metrics_page()
    before = page.join()
    end_round("tinh", False)
    assert page.join() == before
    old, new = Scrape(before.decode()), Scrape((await exporter.render_metrics()).decode())
    assert old.value("bridge_up", endpoint="tinh") == 1.0
    assert old.value("bridge_upstream_up", endpoint="xa") == 1.0
    assert new.value("bridge_up", endpoint="tinh") == 0.0
    assert new.value("bridge_upstream_up", endpoint="xa") == 0.0
    assert new.value("bridge_tier_endpoints_up", tier="province") == 0.0


# --- the pieces themselves ---------------------------------------------------------------

texts = st.binary(max_size=40)
parts = st.lists(st.one_of(texts, st.lists(texts, max_size=30)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(parts=parts, piece_bytes=st.integers(1, 200))
def test_pieces_and_gzip_pieces_are_the_page_in_order(parts, piece_bytes):
    whole = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in parts)
    page = MetricsPage(parts)
    pieces = list(page.pieces(piece_bytes))
    assert b"".join(pieces) == whole
    assert all(pieces), "no empty piece"
    assert page.size() == len(whole)
    zipped = list(page.gzip_pieces(piece_bytes))
    assert gzip.decompress(b"".join(zipped)) == whole
    assert zlib.decompress(b"".join(zipped), wbits=31) == whole  # one gzip member
    assert gzip.decompress(page.gzipped()) == whole


async def test_clients_that_stop_reading_hold_no_worker_thread():
    """More stalled scrapes than scrape workers: each holds PIECES_AHEAD pieces, not a
    thread, so a later scrape still gets its whole page (with the worker waiting for
    room instead, this one would wait for ever)."""
    page = MetricsPage([[bytes([65 + i % 26]) * 1000 for i in range(10_000)]])
    whole = page.join()
    stalled = [page.stream() for _ in range(5)]
    for stream in stalled:
        assert await anext(stream)  # the first piece, then nothing more is read
    try:
        pieces = [piece async for piece in page.stream()]
        assert b"".join(pieces) == whole and len(pieces) > PIECES_AHEAD
    finally:
        for stream in stalled:
            stream.close()
