"""Fidelity: faults the simulator imposes are what the exporter reports.

The simulator delays each STAMP reply and each SIP answer by d + U(-j, +j) and drops a
share p of the UDP packets; the probers, driven by the scheduler's run_probe exactly as the
exporter drives them, must report matching figures. Tolerances (5 sigma, seeded):
- STAMP mean RTT: at least d less 5 standard errors (the mean of U(-j, j) is 0 with
  standard error j/sqrt(3n)), at most the answers' real mean age (below) plus 5 ms.
- STAMP loss: |measured - p| <= 5 sqrt(p(1-p)/n) (binomial).
- STAMP worst RTT: the reflector shares the test's event loop, so a stall of that loop
  (a garbage collection, a busy CI host) holds an answer past its planned time and the
  wire round trip really is longer. The oracle is what the reflector saw: the age of the
  slowest answer when it left (now minus the send time the packet carries), plus loopback
  slack. Uniform holds over ~320 answers also put the worst at or above d + 0.9 j.
- STAMP jitter (RFC 3550 over arrival order) must show the imposed spread (at least j/3;
  for i.i.d. U(-j, j) delays the expected |D| is 2j/3) and equal, within 1 ms, RFC 3550's
  jitter of the answers' real ages in the order they left (computed in conftest).
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

import pytest
from bridge_exporter.config import parse_inventory
from bridge_exporter.scheduler import Probers, run_probe
from bridge_exporter.simulate import Fault, Simulator
from conftest import free_port, rfc3550_jitter_of

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


async def test_stamp_figures_match_the_imposed_delay_jitter_and_loss(network, answer_ages):
    inventory, _, probers = network
    endpoint = inventory.endpoints["site"]
    module = inventory.modules["stamp"]
    result = await run_probe(await probers.get("stamp"), endpoint, module, LOG)
    n = result.packets_sent
    assert n == 400
    loss_bound = 5 * math.sqrt(LOSS * (1 - LOSS) / n)
    assert abs(result.packet_loss_ratio - LOSS) <= loss_bound, result.packet_loss_ratio
    received = result.packets_received
    assert len(answer_ages) == received
    ages = [age for _, age in answer_ages]
    # The fault as imposed: a late timer only lengthens a hold, so the lower bounds hold
    # whatever the loop did; the upper ones are judged against the answers' real ages.
    mean_bound = 5 * JITTER / math.sqrt(3 * received)
    assert DELAY - mean_bound <= result.rtt_seconds <= statistics.fmean(ages) + SLACK
    assert result.rtt_min_seconds >= DELAY - JITTER - 0.001
    assert DELAY + 0.9 * JITTER <= result.rtt_max_seconds <= max(ages) + SLACK, (
        result.rtt_max_seconds,
        max(ages),
    )
    # Jitter: the imposed spread shows (E|D| = 2j/3 for i.i.d. U(-j, j)), and the figure
    # is RFC 3550's over what the wire saw, in the order the answers left.
    assert result.jitter_seconds >= JITTER / 3, result.jitter_seconds
    assert abs(result.jitter_seconds - rfc3550_jitter_of(ages)) <= 0.001


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


async def test_a_healthy_endpoint_next_to_the_faulty_one_is_unaffected(network, worst_loop_stall):
    inventory, _, probers = network
    hub = inventory.endpoints["hub"]
    result = await run_probe(await probers.get("sip"), hub, inventory.modules["sip"], LOG)
    assert result.success and result.rtt_seconds < DELAY / 2 + 2 * worst_loop_stall()
