"""The running exporter: config, state, scheduler and probers, with a safe reload path."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .config import ConfigError, Endpoint, Inventory, load_inventory
from .metrics import BridgeMetrics
from .metrics_page import MetricsPage
from .probes import ProbeResult
from .resources import FdLimit, ResourceErrors, fd_budget, log_fd_budget
from .scheduler import Probers, Scheduler, run_probe
from .selfmetrics import ExporterCollector
from .sharding import Shard, ShardInfoCollector, ShardView, probed_inventory
from .state import State

log = logging.getLogger(__name__)

# Young-generation collections every this many net allocations of tracked objects
# instead of CPython's 700: a 10,000-endpoint round allocates millions, and each pass
# costs a fixed overhead besides the objects it walks (see benchmarks/README.md).
GC_YOUNG_THRESHOLD = 50_000
# A full collection walks every object not frozen (90 ms at 10,000 endpoints, a pause the
# probes' timers feel) and came every ~10 s; ten times rarer. The probe path makes no
# reference cycles (tests/test_gc_cycles.py), so little waits for it.
GC_OLDEST_THRESHOLD = 100


def settle_heap() -> None:
    """After a load or reload: move everything alive now (the inventory, label caches,
    the scheduler's loops) out of the collector's sight. They live until the next reload,
    and otherwise every full collection walks them all again; with 10,000 endpoints that
    was 40-50 % of the exporter's CPU. Frozen objects are still freed by reference
    counting when a reload drops them."""
    gc.collect()
    gc.freeze()
    _, older, _ = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, GC_OLDEST_THRESHOLD)


@dataclass
class ReloadStatus:
    successful: bool = True
    success_timestamp: float = 0.0
    last_error: str = ""


class Exporter:
    def __init__(self, config_path: str | Path, inventory: Inventory, shard: Shard | None = None):
        self.config_path = str(config_path)
        self.shard = shard  # with a shard, `inventory` is what it probes (sharding.py)
        self.probers = Probers()
        self.state = State(inventory)
        self.resource_errors = ResourceErrors()
        self.scheduler = Scheduler(inventory, self.state, self.probers, self.resource_errors)
        self.fd_limit: FdLimit | None = None  # as start-up left it (cli: raise_fd_limit)
        self._fd_budget_logged: int | None = None  # probes in flight last logged about
        self.reload_status = ReloadStatus(successful=True, success_timestamp=time.time())
        self.started = time.time()
        self.ready = False
        self._reload_lock = asyncio.Lock()
        view = ShardView(self.state, shard) if shard else None
        self.metrics = BridgeMetrics(lambda: view or self.state)
        self.state.round_listeners.append(self.metrics.endpoint_finished)
        # The exporter's own bridge_exporter_* series, and the standard process_* and
        # python_* ones.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ExporterCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        if shard:
            self.registry.register(ShardInfoCollector(shard, lambda: self.inventory))

    async def metrics_page(self) -> MetricsPage:
        """A snapshot of /metrics: the bridge_* series, then the exporter's own and the
        process_* ones (a few kB, rendered here on the loop)."""
        page = await self.metrics.page_async()
        return page.followed_by(generate_latest(self.registry))

    async def render_metrics(self) -> bytes:
        """The whole page as one bytes object (tests, tools; /metrics streams it)."""
        return (await self.metrics_page()).join()

    @property
    def inventory(self) -> Inventory:
        return self.state.inventory

    @classmethod
    async def create(cls, config_path: str | Path, shard: Shard | None = None) -> Exporter:
        """Load the config (ConfigError if bad: a first start has no good state to keep)."""
        inventory = load_inventory(config_path)
        return cls(config_path, probed_inventory(inventory, shard) if shard else inventory, shard)

    async def start(self) -> None:
        await self.probers.start_for(self.inventory)
        self.scheduler.start()
        settle_heap()
        self.ready = True
        log.info(
            "probing %d endpoints in %d tiers every %gs from %s",
            len(self.inventory.endpoints),
            len(self.inventory.tiers),
            self.inventory.interval,
            self.config_path,
        )

    def check_fd_budget(self, inventory: Inventory | None = None) -> None:
        """Log what the descriptor limit carries against the probes in flight the
        inventory may ask for: at start-up once the listeners are open, and after a
        reload that asks for more."""
        budget = fd_budget(inventory or self.inventory, self.fd_limit)
        if self._fd_budget_logged is None or budget.wanted > self._fd_budget_logged:
            log_fd_budget(budget)
            self._fd_budget_logged = budget.wanted

    async def stop(self) -> None:
        self.ready = False
        await self.scheduler.stop()
        await self.probers.close()

    async def reload(self) -> tuple[bool, str]:
        """Load the config file again. A bad file keeps the running config."""
        async with self._reload_lock:
            try:
                inventory = await asyncio.to_thread(load_inventory, self.config_path)
                if self.shard:
                    inventory = probed_inventory(inventory, self.shard)
            except Exception as exc:  # a ConfigError, or a loader bug: keep running either way
                message = (
                    str(exc) if isinstance(exc, ConfigError) else f"{self.config_path}: {exc!r}"
                )
                self.reload_status.successful = False
                self.reload_status.last_error = message
                log.error("config reload failed, keeping the running config:\n%s", message)
                return False, message
            if inventory == self.inventory:
                # Nothing changed (a config tool that sends SIGHUP often): keep the running
                # objects, so scrapes and caches built on them are not restarted for nothing.
                log.info("config reloaded: unchanged, %s", self.config_path)
            else:
                await self.scheduler.replace_inventory(inventory)
                settle_heap()
                log.info(
                    "config reloaded: %d endpoints from %s",
                    len(inventory.endpoints),
                    self.config_path,
                )
                self.check_fd_budget(inventory)
            self.reload_status.successful = True
            self.reload_status.success_timestamp = time.time()
            self.reload_status.last_error = ""
            return True, ""

    def find_endpoint(self, target: str) -> Endpoint | None:
        """An inventory endpoint by id or address: /probe only probes the inventory."""
        endpoints = self.inventory.endpoints
        if target in endpoints:
            return endpoints[target]
        return next((e for e in endpoints.values() if e.address == target), None)

    async def probe_once(
        self, endpoint: Endpoint, module_names: list[str], logger: logging.Logger
    ) -> list[tuple[str, str, ProbeResult]]:
        """Run the named inventory modules (the endpoint's own when none) now, concurrently,
        each in a slot of the scheduler's `concurrency` like a background probe."""
        modules = self.inventory.modules_of(endpoint, module_names)
        stats = self.scheduler.stats

        async def one(module):
            prober = await self.probers.get(module.prober)
            async with self.scheduler.probe_slot():
                stats.in_flight += 1
                try:
                    result = await run_probe(prober, endpoint, module, logger, stats)
                finally:
                    stats.in_flight -= 1
            return module.name, module.prober, result

        return list(await asyncio.gather(*(one(m) for m in modules)))
