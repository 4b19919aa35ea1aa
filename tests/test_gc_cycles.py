"""Background rounds leave no reference cycles behind.

At 10,000 endpoints thousands of probes end every second. What they leave in reference
cycles waits for the cyclic garbage collector, whose passes were most of the exporter's CPU
(issue 10); what they leave acyclic is freed at once by reference counting. So the probe
path (the scheduler, the probers, the state, the round-end rendering) must not make
cycles: here a real exporter runs rounds of icmp, sip and tcp against loopback peers that
answer, refuse and stay silent, with the collector off and saving what it finds, and none
of what it finds may come from the exporter.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import types
from collections import Counter
from pathlib import Path

from bridge_exporter.runtime import Exporter
from test_probe_sip import answer_200, start_udp_peer

ROUNDS_SECONDS = 3.0


def _inventory(tcp_open: int, tcp_closed: int, sip_port: int, sip_silent: int) -> str:
    lines = [
        "interval: 500ms",
        "tiers: [hub, site]",
        "modules:",
        "  icmp: {prober: icmp, timeout: 400ms, icmp: {count: 3, interval: 20ms}}",
        f"  tcp: {{prober: tcp, timeout: 400ms, tcp: {{port: {tcp_open}}}}}",
        f"  tcp_closed: {{prober: tcp, timeout: 400ms, tcp: {{port: {tcp_closed}}}}}",
        f"  sip: {{prober: sip, timeout: 400ms, sip: {{transport: udp, port: {sip_port}}}}}",
        "  sip_silent: {prober: sip, timeout: 300ms, "
        f"sip: {{transport: udp, port: {sip_silent}}}}}",
        "endpoints:",
        "  - {id: hub, name: Hub, tier: hub, address: 127.0.0.1, modules: [icmp, tcp, sip]}",
    ]
    lines += [
        f"  - {{id: s{i}, name: Site {i}, tier: site, parent: hub, address: 127.0.0.{i + 2}, "
        "modules: [icmp, tcp, tcp_closed, sip, sip_silent]}"
        for i in range(12)
    ]
    return "\n".join(lines) + "\n"


def _exporter_made(thing: object) -> str | None:
    """Where in the exporter `thing` comes from, or None if from elsewhere."""
    code = None
    if isinstance(thing, types.FrameType):
        code = thing.f_code
    elif isinstance(thing, types.CoroutineType):
        code = thing.cr_code
    elif isinstance(thing, types.FunctionType):
        code = thing.__code__
    if code is not None:
        return code.co_qualname if "bridge_exporter" in code.co_filename else None
    module = type(thing).__module__ or ""
    return type(thing).__qualname__ if module.startswith("bridge_exporter") else None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_rounds_make_no_reference_cycles(tmp_path: Path) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "0.0.0.0", 0)
    tcp_open = listener.sockets[0].getsockname()[1]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        tcp_closed = closed.getsockname()[1]
    transport, _peer, sip_port = await start_udp_peer(answer_200, host="0.0.0.0")
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("0.0.0.0", _free_udp_port()))
    config = tmp_path / "inventory.yml"
    config.write_text(_inventory(tcp_open, tcp_closed, sip_port, silent.getsockname()[1]))
    exporter = await Exporter.create(config)
    thresholds = gc.get_threshold()
    try:
        await exporter.start()
        await asyncio.sleep(1.0)  # past start-up: every endpoint has begun its rounds
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        rounds_before = exporter.scheduler.stats.rounds
        await asyncio.sleep(ROUNDS_SECONDS)
        rounds = exporter.scheduler.stats.rounds - rounds_before
        gc.collect()
        found = Counter(name for thing in gc.garbage if (name := _exporter_made(thing)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        gc.unfreeze()  # the exporter froze the heap at start
        gc.set_threshold(*thresholds)
        await exporter.stop()
        transport.close()
        silent.close()
        listener.close()
    states = exporter.state.endpoints
    reasons = {r.result.reason for s in states.values() for r in s.records.values()}
    # The rounds ran, and down every path: answered, refused, silent.
    assert rounds >= 13 * 4, rounds
    assert {"", "refused", "timeout"} <= reasons, reasons
    assert not found, f"reference cycles left by the probe path: {found.most_common(10)}"
