"""Fidelity: faults the simulator imposes are what the exporter reports.

The simulator delays each STAMP reply and each SIP answer by d + U(-j, +j) and drops a
share p of the UDP packets; the probers, driven by the scheduler's run_probe exactly as the
exporter drives them, must report matching figures. Tolerances (5 sigma, seeded):
- STAMP mean RTT: d plus loopback and event-loop slack (< 5 ms); the mean of U(-j, j) is 0
  with standard error j/sqrt(3n).
- STAMP loss: |measured - p| <= 5 sqrt(p(1-p)/n) (binomial).
- STAMP worst RTT: the reflector shares the test's event loop, so a stall of that loop
  (a garbage collection, a busy CI host) holds an answer past its planned time and the
  wire round trip really is longer. The oracle is what the reflector saw: the age of the
  slowest answer when it left (now minus the send time the packet carries), plus loopback
  slack. Uniform holds over ~320 answers also put the worst at or above d + 0.9 j.
- STAMP jitter (RFC 3550 over arrival order) must show the imposed spread: between j/3 and
  j; for i.i.d. U(-j, j) delays the expected |D| is 2j/3 and reordering moves it a little.
- SIP: a dropped OPTIONS over UDP is retransmitted after T1, so each probe's RTT is
  d + U(-j, j) on first-try answers and >= T1 later otherwise: first-try RTTs lie within
  [d - j, d + j + slack] and the share of retransmitted probes matches p (binomial). The
  answers come from the same event loop, so the upper bound grows by twice the worst stall
  a watcher on that loop saw (a request read late, then an answer sent late).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import statistics
import time

import pytest
from bridge_exporter.config import parse_inventory
from bridge_exporter.reflector import StampReflector
from bridge_exporter.scheduler import Probers, run_probe
from bridge_exporter.simulate import Fault, Simulator
from bridge_exporter.stamp_packet import unix_from_ntp
from conftest import free_port

LOG = logging.getLogger("test_fidelity")
DELAY, JITTER, LOSS = 0.040, 0.010, 0.2
SLACK = 0.005


def _inventory(sip_port: int, stamp_port: int, count: int):
    return parse_inventory(
        f"""
interval: 60s
tiers: [{{name: hub}}, {{name: site}}]
modules:
  sip:
    prober: sip
    timeout: 3s
    sip: {{port: {sip_port}, t1: 300ms}}
  stamp:
    prober: stamp
    timeout: 10s
    stamp: {{port: {stamp_port}, count: {count}, interval: 5ms, wait: 500ms}}
endpoints:
  - {{id: hub, name: Hub, tier: hub, address: 127.62.0.1, modules: [sip]}}
  - {{id: site, name: Điểm cầu thử, tier: site, parent: hub, address: 127.62.0.2,
     modules: [sip, stamp]}}
""",
        "fidelity.yml",
    )


@pytest.fixture
async def network():
    sip_port = free_port("127.62.0.2")
    stamp_port = free_port("127.62.0.2", socket.SOCK_DGRAM)
    inventory = _inventory(sip_port, stamp_port, count=400)
    probers = Probers()
    async with Simulator(inventory, seed=3550) as simulator:
        simulator.set_fault(
            "site", Fault(delay_seconds=DELAY, jitter_seconds=JITTER, loss_ratio=LOSS)
        )
        yield inventory, simulator, probers
    await probers.close()


@pytest.fixture
def answer_ages(monkeypatch) -> list[float]:
    """Seconds from each packet's send time (carried in it) to the reflector's answer."""
    ages: list[float] = []
    answer = StampReflector._answer

    def timed_answer(self, request, *args):
        ages.append(time.time() - unix_from_ntp(request.timestamp))
        answer(self, request, *args)

    monkeypatch.setattr(StampReflector, "_answer", timed_answer)
    return ages


async def test_stamp_figures_match_the_imposed_delay_jitter_and_loss(network, answer_ages):
    inventory, _, probers = network
    endpoint = inventory.endpoints["site"]
    module = inventory.modules["stamp"]
    asyncio.get_running_loop().call_later(1.0, time.sleep, 0.06)
    result = await run_probe(await probers.get("stamp"), endpoint, module, LOG)
    n = result.packets_sent
    assert n == 400
    loss_bound = 5 * math.sqrt(LOSS * (1 - LOSS) / n)
    assert abs(result.packet_loss_ratio - LOSS) <= loss_bound, result.packet_loss_ratio
    received = result.packets_received
    mean_bound = 5 * JITTER / math.sqrt(3 * received)
    assert DELAY - mean_bound <= result.rtt_seconds <= DELAY + mean_bound + SLACK, (
        result.rtt_seconds
    )
    assert result.rtt_min_seconds >= DELAY - JITTER - 0.001
    assert len(answer_ages) == received
    assert DELAY + 0.9 * JITTER <= result.rtt_max_seconds <= max(answer_ages) + SLACK, (
        result.rtt_max_seconds,
        max(answer_ages),
    )
    assert JITTER / 3 <= result.jitter_seconds <= JITTER, result.jitter_seconds


@pytest.fixture
async def worst_loop_stall():
    """A watcher on the test's event loop; returns a function giving the worst lateness."""
    loop = asyncio.get_running_loop()
    tick, worst = 0.002, [0.0]

    async def watch() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(tick)
            worst[0] = max(worst[0], loop.time() - before - tick)

    watcher = asyncio.create_task(watch())
    yield lambda: worst[0]
    watcher.cancel()


async def test_sip_latency_and_retransmissions_match_the_imposed_faults(network, worst_loop_stall):
    inventory, _, probers = network
    endpoint = inventory.endpoints["site"]
    module = inventory.modules["sip"]
    prober = await probers.get("sip")
    runs, batch = 100, 10
    results = []
    # Small batches: simulator and prober share this event loop, and a burst of 100
    # concurrent transactions would add the loop's own queueing delay to every answer.
    for _ in range(runs // batch):
        results += await asyncio.gather(
            *(run_probe(prober, endpoint, module, LOG) for _ in range(batch))
        )
    assert all(r.success and r.status_code == 200 for r in results)
    t1 = module.settings.t1
    first_try = [r.rtt_seconds for r in results if r.rtt_seconds < t1]
    retried = runs - len(first_try)
    # One OPTIONS is dropped with probability p; its retransmission too with p, and so on:
    # the share of probes needing a retransmission is p.
    assert abs(retried / runs - LOSS) <= 5 * math.sqrt(LOSS * (1 - LOSS) / runs), retried
    highest = DELAY + JITTER + 4 * SLACK + 2 * worst_loop_stall()
    assert all(DELAY - JITTER - 0.001 <= rtt <= highest for rtt in first_try), (
        max(first_try),
        highest,
    )
    mean_bound = 5 * JITTER / math.sqrt(3 * len(first_try))
    assert abs(statistics.fmean(first_try) - DELAY) <= mean_bound + SLACK
    assert all(r.rtt_seconds >= t1 for r in results if r.rtt_seconds >= t1)


async def test_a_healthy_endpoint_next_to_the_faulty_one_is_unaffected(network):
    inventory, _, probers = network
    hub = inventory.endpoints["hub"]
    result = await run_probe(await probers.get("sip"), hub, inventory.modules["sip"], LOG)
    assert result.success and result.rtt_seconds < DELAY / 2
