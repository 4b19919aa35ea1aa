"""The running exporter: config, state, scheduler and probers, with a safe reload path."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .config import ConfigError, Endpoint, Inventory, load_inventory
from .metrics import BridgeMetrics, ReloadStatus
from .probes import ProbeResult
from .scheduler import Probers, Scheduler, run_probe
from .state import State

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, config_path: str | Path, inventory: Inventory):
        self.config_path = str(config_path)
        self.probers = Probers()
        self.state = State(inventory)
        self.scheduler = Scheduler(inventory, self.state, self.probers)
        self.reload_status = ReloadStatus(successful=True, success_timestamp=time.time())
        self.started = time.time()
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self.metrics = BridgeMetrics(
            lambda: self.state,
            lambda: self.scheduler,
            self.reload_status,
            self.probers.startup_problems,
        )
        # The standard process_* and python_* series.
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    async def render_metrics(self) -> bytes:
        return (await self.metrics.render_async()).encode() + generate_latest(self.registry)

    @property
    def inventory(self) -> Inventory:
        return self.state.inventory

    @classmethod
    async def create(cls, config_path: str | Path) -> Exporter:
        """Load the config (ConfigError if bad: a first start has no good state to keep)."""
        inventory = load_inventory(config_path)
        return cls(config_path, inventory)

    async def start(self) -> None:
        await self.probers.start_for(self.inventory)
        self.scheduler.start()
        self.ready = True
        log.info(
            "probing %d endpoints in %d tiers every %gs from %s",
            len(self.inventory.endpoints),
            len(self.inventory.tiers),
            self.inventory.interval,
            self.config_path,
        )

    async def stop(self) -> None:
        self.ready = False
        await self.scheduler.stop()
        await self.probers.close()

    async def reload(self) -> tuple[bool, str]:
        """Load the config file again. A bad file keeps the running config."""
        async with self._reload_lock:
            try:
                inventory = await asyncio.to_thread(load_inventory, self.config_path)
            except Exception as exc:  # a ConfigError, or a loader bug: keep running either way
                message = (
                    str(exc) if isinstance(exc, ConfigError) else f"{self.config_path}: {exc!r}"
                )
                self.reload_status.successful = False
                self.reload_status.last_error = message
                log.error("config reload failed, keeping the running config:\n%s", message)
                return False, message
            await self.scheduler.replace_inventory(inventory)
            self.reload_status.successful = True
            self.reload_status.success_timestamp = time.time()
            self.reload_status.last_error = ""
            log.info(
                "config reloaded: %d endpoints from %s", len(inventory.endpoints), self.config_path
            )
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
        """Run the named inventory modules (the endpoint's own when none) now, concurrently."""
        modules = self.inventory.modules_of(endpoint, module_names)

        async def one(module):
            prober = await self.probers.get(module.prober)
            return module.name, module.prober, await run_probe(prober, endpoint, module, logger)

        return list(await asyncio.gather(*(one(m) for m in modules)))
