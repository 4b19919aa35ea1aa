"""A two-tier network end to end: tiers are configuration, not code.

examples/two-tier.yml (province, commune: Việt Nam's local government since 2025) is
served by the simulator and probed by the exporter in-process; the series carry the
two tier labels only and a fault on the province shows on its communes' upstream.
"""

from __future__ import annotations

import asyncio

from bridge_exporter.config import load_inventory
from bridge_exporter.runtime import Exporter
from bridge_exporter.simulate import Fault, Simulator
from conftest import EXAMPLES
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str, name: str) -> list:
    return [
        s for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == name
    ]  # fmt: skip


async def _scrape_after_rounds(exporter: Exporter, rounds: int) -> str:
    target = exporter.scheduler.stats.rounds + rounds
    for _ in range(200):
        if exporter.scheduler.stats.rounds >= target:
            break
        await asyncio.sleep(0.1)
    return (await exporter.render_metrics()).decode()


async def test_two_tier_network_probed_end_to_end(tmp_path):
    source = (EXAMPLES / "two-tier.yml").read_text(encoding="utf-8")
    config = tmp_path / "two-tier.yml"
    config.write_text(source.replace("interval: 15s", "interval: 2s"), encoding="utf-8")
    inventory = load_inventory(config)
    async with Simulator(inventory) as simulator:
        exporter = await Exporter.create(config)
        await exporter.start()
        try:
            text = await _scrape_after_rounds(exporter, len(inventory.endpoints))
            ups = _samples(text, "bridge_up")
            assert len(ups) == 7 and all(s.value == 1 for s in ups)
            for sample in ups:
                assert sample.labels["province"] == "tinh-uy"
                assert not {"central", "district"} & set(sample.labels)
            commune = next(s for s in ups if s.labels["endpoint"] == "xa-ven-bien")
            assert (commune.labels["province"], commune.labels["commune"]) == (
                "tinh-uy",
                "xa-ven-bien",
            )
            totals = {s.labels["tier"]: s.value for s in _samples(text, "bridge_tier_endpoints")}
            assert totals == {"province": 1, "commune": 6}

            simulator.set_fault("tinh-uy", Fault(down=True))
            # Its next round ends when the silent SIP probe times out (4 s).
            for _ in range(150):
                if exporter.state.endpoints["tinh-uy"].up is False:
                    break
                await asyncio.sleep(0.1)
            text = (await exporter.render_metrics()).decode()
            up = {s.labels["endpoint"]: s.value for s in _samples(text, "bridge_up")}
            upstream = {s.labels["endpoint"]: s.value for s in _samples(text, "bridge_upstream_up")}
            assert up["tinh-uy"] == 0
            assert upstream["xa-ven-bien"] == 0 and up["xa-ven-bien"] == 1
        finally:
            await exporter.stop()
