"""The probe engine in-process: start spreading, and reloads that leave the cadence alone."""

from __future__ import annotations

import asyncio
import socket

import pytest
from bridge_exporter.config import parse_inventory
from bridge_exporter.scheduler import Probers, Scheduler
from bridge_exporter.state import State

ENDPOINTS = 20
INTERVAL = 1.0


def _inventory(port: int, extra: str = "", s3_port: int | None = None):
    """Hub and 20 sites probing one TCP port; `s3_port` overrides site 3's port."""
    lines = [
        f"interval: {INTERVAL}s",
        "tiers: [hub, site]",
        "modules:",
        f"  tcp: {{prober: tcp, timeout: 500ms, tcp: {{port: {port}}}}}",
        "endpoints:",
        "  - {id: hub, name: Hub, tier: hub, address: 127.0.0.1, modules: [tcp]}",
    ]
    lines += [
        f"  - {{id: s{i}, name: Site {i}, tier: site, parent: hub, address: 127.0.0.1, "
        f"modules: [tcp]}}"
        for i in range(ENDPOINTS)
    ]
    if s3_port is not None:
        lines[lines.index(next(x for x in lines if "id: s3," in x))] = (
            "  - {id: s3, name: Site 3, tier: site, parent: hub, address: 127.0.0.1, "
            f"modules: [tcp], overrides: {{tcp: {{port: {s3_port}}}}}}}"
        )
    return parse_inventory("\n".join(lines) + "\n" + extra, "sched.yml")


class Recorder(State):
    """A State that remembers when each endpoint's rounds ended."""

    def __init__(self, inventory):
        super().__init__(inventory)
        self.rounds: dict[str, list[float]] = {}

    def finish_round(self, endpoint, duration):
        super().finish_round(endpoint, duration)
        self.rounds.setdefault(endpoint.id, []).append(asyncio.get_running_loop().time())


@pytest.fixture
async def listener():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _run(inventory):
    state = Recorder(inventory)
    probers = Probers()
    await probers.start_for(inventory)
    scheduler = Scheduler(inventory, state, probers)
    scheduler.start()
    return state, probers, scheduler


async def test_starts_are_spread_over_the_interval(listener):
    state, probers, scheduler = await _run(_inventory(listener))
    try:
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(INTERVAL + 0.3)
        firsts = sorted(times[0] - started for times in state.rounds.values())
        assert len(firsts) == ENDPOINTS + 1
        # Spread, not a burst: the first rounds cover most of the interval.
        assert firsts[-1] - firsts[0] > 0.5 * INTERVAL
        assert all(state.endpoints[i].up for i in state.endpoints)
    finally:
        await scheduler.stop()
        await probers.close()


async def test_reloads_keep_unchanged_endpoints_on_their_cadence(listener):
    state, probers, scheduler = await _run(_inventory(listener))
    try:
        await asyncio.sleep(0.2)
        window_start = asyncio.get_running_loop().time()
        # A reload every 0.25 s, each adding one endpoint: the 21 old ones are unchanged.
        for number in range(12):
            extra = "".join(
                f"  - {{id: n{i}, name: New {i}, tier: site, parent: hub, "
                f"address: 127.0.0.1, modules: [tcp]}}\n"
                for i in range(number + 1)
            )
            await scheduler.replace_inventory(_inventory(listener, extra))
            await asyncio.sleep(0.25)
        window = asyncio.get_running_loop().time() - window_start
        for endpoint_id in ["hub", *(f"s{i}" for i in range(ENDPOINTS))]:
            in_window = [t for t in state.rounds.get(endpoint_id, []) if t >= window_start]
            # One round per interval (3 s window: 2 to 4), not one per reload (12).
            assert window / INTERVAL - 1.5 <= len(in_window) <= window / INTERVAL + 1.5, (
                endpoint_id,
                len(in_window),
            )
        assert state.endpoints["n0"].up is True  # added endpoints are probed too
    finally:
        await scheduler.stop()
        await probers.close()


async def test_a_changed_endpoint_restarts_with_its_new_settings(listener):
    state, probers, scheduler = await _run(_inventory(listener))
    try:
        await asyncio.sleep(INTERVAL + 0.2)
        assert state.endpoints["s3"].up is True
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            refused_port = closed.getsockname()[1]
        inventory = _inventory(listener, s3_port=refused_port)
        await scheduler.replace_inventory(inventory)
        await asyncio.sleep(INTERVAL + 0.2)
        assert state.endpoints["s3"].up is False
        assert state.endpoints["s3"].records["tcp"].result.reason == "refused"
        assert state.endpoints["s4"].up is True
    finally:
        await scheduler.stop()
        await probers.close()
