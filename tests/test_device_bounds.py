"""A device's answer cannot stall the exporter: a backtracking `body_regex` and a huge
stats document are worked on in killable child processes, never on the event loop.

Through the scheduler (in-process, so the event loop's lag can be measured) and through
the real exporter process (what /metrics and /probe show).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from bridge_exporter.config import parse_inventory
from bridge_exporter.scheduler import Probers, Scheduler
from bridge_exporter.state import State
from conftest import free_port
from helpers_exporter import ExporterProcess, LoopbackServers, write_inventory

# `(a+)+$` over "a" * n + "b" backtracks through ~2**n paths: seconds for n = 26 (so a test
# on a loop-blocking implementation ends, and fails), never for n = 40.
BACKTRACKING_PATTERN = "(a+)+$"
SLOW_BODY = "a" * 26 + "b"
ENDLESS_BODY = b"a" * 40 + b"b"
# Far above what a healthy loop shows here, far below the stall of matching inline.
MAX_LOOP_LAG_SECONDS = 0.4
LOG = logging.getLogger("test_device_bounds")

# A hostile but valid stats document just under the 8 MiB body limit: some 240,000 tiny
# streams, which take about a second to parse and evaluate in this process.
STREAM = b'{"mediaDirection":"RX","jitter":2},'
STREAMS = ((8 << 20) - 64) // len(STREAM)
HUGE_DOCUMENT = b"[" + STREAM * STREAMS + b'{"mediaDirection":"TX"}]'
HUGE_MAPPING = {
    "media_in_call": "exists([mediaDirection='RX'])",
    "media_jitter_seconds": "max([mediaDirection='RX'].jitter)|ms",
    "media_frame_rate_fps": "avg([mediaDirection='RX'].jitter)",
    "media_bitrate_bits_per_second": "sum([*].jitter)|kbps",
}


class Device:
    """An in-process web server: healthy, backtracking and huge answers."""

    def __init__(self) -> None:
        self.served: dict[str, asyncio.Event] = {}
        self.port = 0

    def app(self) -> web.Application:
        def answer(path: str, body: bytes, content_type: str):
            self.served[path] = asyncio.Event()

            async def handler(request: web.Request) -> web.StreamResponse:
                response = web.Response(body=body, content_type=content_type)
                await response.prepare(request)
                await response.write_eof()
                self.served[path].set()
                return response

            return handler

        app = web.Application()
        app.router.add_get("/ok", answer("/ok", b"bridge point ready\n", "text/plain"))
        app.router.add_get("/slow", answer("/slow", SLOW_BODY.encode(), "text/plain"))
        app.router.add_get("/huge.json", answer("/huge.json", HUGE_DOCUMENT, "application/json"))
        return app


@pytest.fixture
async def device() -> AsyncIterator[Device]:
    state = Device()
    runner = web.AppRunner(state.app())
    await runner.setup()
    state.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", state.port).start()
    yield state
    await runner.cleanup()


def _inventory(port: int):
    base = f"http://{{address}}:{port}"
    text = f"""
interval: 30s
tiers: [hub, site]
modules:
  web_ok: {{prober: http, timeout: 5s, http: {{url: "{base}/ok", body_regex: "ready"}}}}
  web_slow:
    prober: http
    timeout: 10s
    http: {{url: "{base}/slow", body_regex: "{BACKTRACKING_PATTERN}"}}
  stats_huge:
    prober: stats
    timeout: 20s
    stats:
      url: "{base}/huge.json"
      mapping: {HUGE_MAPPING!r}
endpoints:
  - {{id: hub, name: Hub, tier: hub, address: 127.0.0.1, modules: [web_ok]}}
  - {{id: slow, name: Slow, tier: site, parent: hub, address: 127.0.0.1, modules: [web_slow]}}
  - {{id: huge, name: Huge, tier: site, parent: hub, address: 127.0.0.1, modules: [stats_huge]}}
"""
    return parse_inventory(text, "bounds.yml")


class LoopLag:
    """The event loop's worst lag while it runs: how late a 10 ms sleep wakes up."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - before - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


@pytest.fixture
async def engine(device) -> AsyncIterator[tuple[State, Scheduler]]:
    inventory = _inventory(device.port)
    state = State(inventory)
    probers = Probers()
    before = _child_pids()
    await probers.start_for(inventory)
    yield state, Scheduler(inventory, state, probers)
    await probers.close()
    assert _child_pids() - before == set(), "a sandbox child outlived its prober"


def _result(state: State, endpoint: str, module: str):
    return state.endpoints[endpoint].records[module].result


async def test_backtracking_body_regex_fails_alone_and_never_stalls_the_loop(device, engine):
    state, scheduler = engine
    hub, slow = (scheduler.inventory.endpoints[i] for i in ("hub", "slow"))
    with LoopLag() as lag:
        # Two rounds at once leave two idle workers: the healthy probe below needs no
        # process start while the backtracking one holds a worker.
        await asyncio.gather(scheduler.run_round(hub), scheduler.run_round(hub))
        slow_round = asyncio.create_task(scheduler.run_round(slow))
        await device.served["/slow"].wait()
        await scheduler.run_round(hub)
        healthy_done_while_matching = not slow_round.done()
        await slow_round

    healthy = _result(state, "hub", "web_ok")
    assert (healthy.success, healthy.reason) == (True, ""), healthy.debug
    assert healthy_done_while_matching, "the healthy probe waited for the backtracking match"
    slow_result = _result(state, "slow", "web_slow")
    assert (slow_result.success, slow_result.reason) == (False, "body_regex_timeout")
    assert "backtracks catastrophically" in slow_result.debug[-1]
    assert state.endpoints["slow"].up is False and state.endpoints["hub"].up is True
    assert lag.worst < MAX_LOOP_LAG_SECONDS, f"the event loop stalled {lag.worst:.2f} s"


async def test_huge_stats_document_is_read_off_the_loop(device, engine):
    state, scheduler = engine
    hub, huge = (scheduler.inventory.endpoints[i] for i in ("hub", "huge"))
    with LoopLag() as lag:
        await scheduler.run_round(hub)  # an idle http worker, as in a running exporter
        huge_round = asyncio.create_task(scheduler.run_round(huge))
        await device.served["/huge.json"].wait()
        await scheduler.run_round(hub)
        healthy_done_while_reading = not huge_round.done()
        await huge_round

    assert _result(state, "hub", "web_ok").success
    assert healthy_done_while_reading, "the healthy probe waited for the huge document"
    huge_result = _result(state, "huge", "stats_huge")
    assert huge_result.success, huge_result.debug
    assert huge_result.values == {
        "media_in_call": 1.0,
        "media_jitter_seconds": 0.002,
        "media_frame_rate_fps": 2.0,
        "media_bitrate_bits_per_second": STREAMS * 2 * 1000.0,
    }
    assert lag.worst < MAX_LOOP_LAG_SECONDS, f"the event loop stalled {lag.worst:.2f} s"


# --- the real exporter --------------------------------------------------------------------


class Peers(LoopbackServers):
    def raw(self, host: str, response: bytes) -> int:
        """A server that answers every request with `response`, bytes as they are."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(response)
                await writer.drain()
            writer.close()

        return self._run(self._listen(answer, host))


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    servers = Peers()
    yield servers
    servers.close()


# A device whose status line and charset are garbage: the reason phrase is not UTF-8 and
# Python's idna codec refuses errors="replace".
GARBLED = (
    b"HTTP/1.1 200 \xff\xfeOK\r\nContent-Type: text/plain; charset=idna\r\n"
    b"Content-Length: 19\r\nConnection: close\r\n\r\nbridge point ready\n"
)


def test_exporter_reports_body_regex_timeout_and_keeps_probing(peers, tmp_path):
    endless_port = peers.http_ok("127.0.0.1", ENDLESS_BODY)
    ok_port = peers.http_ok("127.0.0.1", b"bridge point ready\n")
    garbled_port = peers.raw("127.0.0.1", GARBLED)

    def web(port: int, pattern: str) -> dict:
        url = f"http://{{address}}:{port}/"
        return {"prober": "http", "timeout": "3s", "http": {"url": url, "body_regex": pattern}}

    def site(id_: str, module: str) -> dict:
        return {
            "id": id_, "name": id_, "tier": "site", "parent": "hub", "address": "127.0.0.1",
            "modules": [module],
        }  # fmt: skip

    inventory = {
        "interval": "1s",
        "tiers": [{"name": "hub"}, {"name": "site"}],
        "modules": {
            "web_ok": web(ok_port, "ready"),
            "web_endless": web(endless_port, BACKTRACKING_PATTERN),
            "web_garbled": web(garbled_port, "ready"),
        },
        "endpoints": [
            {"id": "hub", "name": "Hub", "tier": "hub", "address": "127.0.0.1",
             "modules": ["web_ok"]},
            site("endless", "web_endless"),
            site("garbled", "web_garbled"),
        ],
    }  # fmt: skip
    config = write_inventory(tmp_path / "bridge.yml", inventory)
    exporter = ExporterProcess(config, tmp_path)
    exporter.start()
    try:
        exporter.wait_ready()

        def reason(scrape, endpoint: str) -> str | None:
            samples = scrape.samples("bridge_probe_failure_info", endpoint=endpoint)
            return samples[0].labels["reason"] if samples else None

        first = exporter.wait_for(
            lambda s: (
                reason(s, "endless") == "body_regex_timeout"
                and s.value("bridge_probe_success", endpoint="hub") == 1
                and s.value("bridge_probe_success", endpoint="garbled") == 1
            ),
            timeout=15,
            what="body_regex_timeout for the endless match, success for the others",
        )
        hub_round = first.value("bridge_last_probe_timestamp_seconds", endpoint="hub")
        exporter.wait_for(
            lambda s: (
                s.value("bridge_last_probe_timestamp_seconds", endpoint="hub") > hub_round
                and reason(s, "endless") == "body_regex_timeout"
            ),
            timeout=10,
            what="a later round of the healthy endpoint",
        )

        status, text = exporter.get("/probe?target=endless&debug=true")
        assert status == 200, text
        assert "FAILED (body_regex_timeout)" in text and "backtracks" in text
        status, text = exporter.get("/probe?target=garbled&debug=true")
        assert status == 200, text
        assert "HTTP/1.1 200 \\xff\\xfeOK" in text and "body matches /ready/" in text
        exporter.stop()
    finally:
        exporter.kill()


async def test_workers_busy_until_the_deadline_is_the_exporters_trouble(device):
    """With every worker held by backtracking matches, a healthy device's probe whose
    deadline passes while it waits for a worker is `local_resource_exhausted` (the
    exporter's capacity, which keeps the endpoint's state), never the device's `timeout`."""
    from bridge_exporter.probes.base import Target
    from bridge_exporter.probes.http import HttpProber, HttpSettings
    from bridge_exporter.probes.sandbox import WorkerPool

    prober = HttpProber()
    prober._workers = WorkerPool(max_workers=1)
    base = f"http://127.0.0.1:{device.port}"
    hog = HttpSettings(url=f"{base}/slow", body_regex=BACKTRACKING_PATTERN)
    healthy = HttpSettings(url=f"{base}/ok", body_regex="ready")
    loop = asyncio.get_running_loop()
    target = Target("p", "127.0.0.1")
    try:
        hogging = loop.create_task(prober.probe_until(target, hog, loop.time() + 5, LOG))
        await asyncio.sleep(0.5)  # the hog holds the only worker now
        waiting = await prober.probe_until(target, healthy, loop.time() + 0.4, LOG)
        hogged = await hogging
        after = await prober.probe_until(target, healthy, loop.time() + 5, LOG)
    finally:
        await prober.close()
    assert waiting.reason == "local_resource_exhausted", waiting.debug
    assert any("worker processes stayed busy" in line for line in waiting.debug)
    assert hogged.reason == "body_regex_timeout"
    assert after.success, after.debug


async def test_a_probe_with_no_time_left_leaves_the_idle_worker_alone(device):
    from bridge_exporter.probes.sandbox import WorkerPool

    pool = WorkerPool(max_workers=1)
    loop = asyncio.get_running_loop()
    try:
        await pool.call({"kind": "regex", "pattern": "a"}, [b"a"], 1.0, loop.time() + 5)
        (worker,) = pool._idle
        pid = worker.process.pid
        with pytest.raises(Exception, match="no time left"):
            await pool.call({"kind": "regex", "pattern": "a"}, [b"a"], -0.01, loop.time() + 5)
        answer = await pool.call({"kind": "regex", "pattern": "a"}, [b"a"], 1.0, loop.time() + 5)
        assert answer["found"]
        assert [w.process.pid for w in pool._idle] == [pid], "the same child served on"
    finally:
        await pool.close()


async def test_workers_of_a_large_exporter_are_reused_not_respawned(device):
    """Linux carries ru_maxrss over an exec: judged by it, every child of an exporter past
    the retire size (a 10,000-endpoint exporter is ~400 MiB) asked to be retired after each
    answer, so every stats probe started a new Python. A child judges its own peak."""
    from bridge_exporter.probes import sandbox

    ballast = bytearray(sandbox.RETIRE_AFTER_BYTES + (64 << 20))
    ballast[:: 1 << 12] = b"\1" * len(ballast[:: 1 << 12])  # resident, not just reserved
    pool = sandbox.WorkerPool(max_workers=1)
    loop = asyncio.get_running_loop()
    try:
        pids = []
        for _ in range(3):
            await pool.call({"kind": "regex", "pattern": "a"}, [b"a"], 2.0, loop.time() + 10)
            pids += [w.process.pid for w in pool._idle]
    finally:
        await pool.close()
        del ballast
    assert len(pids) == 3 and len(set(pids)) == 1, pids
