"""One probe round of one endpoint through the real Scheduler, as a background round runs
it: Scheduler.run_round -> run_probe (the deadline, the backstop) -> the prober -> State.
Tests read what /metrics would render from: the State's record and the scheduler stats."""

from __future__ import annotations

from dataclasses import dataclass

from bridge_exporter.config import parse_inventory
from bridge_exporter.probes import ProbeResult
from bridge_exporter.scheduler import Probers, Scheduler, SchedulerStats
from bridge_exporter.state import State

ENDPOINT = "site"


def single_module_inventory(prober: str, settings: str, timeout: str, address: str) -> str:
    """An inventory of one endpoint at `address` with one module named after `prober`;
    `settings` is the prober's settings in YAML flow style, e.g. "{port: 5060}"."""
    return (
        "interval: 10s\n"
        "tiers: [site, point]\n"
        "modules:\n"
        f"  {prober}: {{prober: {prober}, timeout: {timeout}, {prober}: {settings}}}\n"
        "endpoints:\n"
        f"  - {{id: {ENDPOINT}, name: Site, tier: site, address: '{address}', "
        f"modules: [{prober}]}}\n"
    )


@dataclass
class Round:
    results: dict[str, ProbeResult]  # by module name
    stats: SchedulerStats
    state: State

    @property
    def result(self) -> ProbeResult:
        (only,) = self.results.values()
        return only


async def one_round(inventory_text: str, probers: Probers | None = None) -> Round:
    """Run one round of the inventory's only endpoint through a real Scheduler."""
    inventory = parse_inventory(inventory_text, "round.yml")
    state = State(inventory)
    probers = probers or Probers()
    scheduler = Scheduler(inventory, state, probers)
    (endpoint,) = inventory.endpoints.values()
    try:
        await scheduler.run_round(endpoint)
    finally:
        await probers.close()
    records = state.endpoints[endpoint.id].records
    return Round({name: r.result for name, r in records.items()}, scheduler.stats, state)
