"""The exporter's own series (bridge_exporter_*): a prometheus_client custom Collector,
built fresh at each scrape from the scheduler's counters, the reload status and the
probers, and registered beside the standard process_* and python_* collectors.

The endpoint series are rendered by metrics.py instead: they are hundreds of thousands,
these are a dozen.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__

if TYPE_CHECKING:
    from .runtime import Exporter


class ExporterCollector(Collector):
    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        exporter = self._exporter
        python = ".".join(map(str, sys.version_info[:3]))
        build = GaugeMetricFamily(
            "bridge_exporter_build_info",
            "Exporter version and Python version; always 1.",
            labels=["version", "python_version"],
        )
        build.add_metric([__version__, python], 1)
        yield build

        stats = exporter.scheduler.stats
        yield CounterMetricFamily(
            "bridge_exporter_rounds_total", "Endpoint probe rounds completed.", stats.rounds
        )
        yield CounterMetricFamily(
            "bridge_exporter_round_overruns_total",
            "Round starts skipped because the previous round of that endpoint was still "
            "running (interval too short for the modules' timeouts).",
            stats.overruns,
        )
        yield CounterMetricFamily("bridge_exporter_probes_total", "Probes completed.", stats.probes)
        yield CounterMetricFamily(
            "bridge_exporter_prober_errors_total",
            "Probes whose prober raised or overran its deadline (a bug; see log).",
            stats.probe_errors,
        )
        yield GaugeMetricFamily(
            "bridge_exporter_probes_in_flight", "Probes running now.", stats.in_flight
        )
        yield GaugeMetricFamily(
            "bridge_exporter_probe_interval_seconds",
            "Configured time between an endpoint's rounds.",
            exporter.scheduler.inventory.interval,
        )

        inventory = exporter.inventory
        ready = GaugeMetricFamily(
            "bridge_exporter_prober_ready",
            "0 if a prober could not start (e.g. ICMP without permission; see the log).",
            labels=["prober"],
        )
        startup = exporter.probers.startup_problems()
        for kind in sorted({m.prober for m in inventory.modules.values()}):
            ready.add_metric([kind], 0 if kind in startup else 1)
        yield ready
        yield GaugeMetricFamily(
            "bridge_exporter_endpoints", "Endpoints in the inventory.", len(inventory.endpoints)
        )
        reload = exporter.reload_status
        yield GaugeMetricFamily(
            "bridge_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded.",
            1 if reload.successful else 0,
        )
        yield GaugeMetricFamily(
            "bridge_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix time).",
            reload.success_timestamp,
        )

        errors = CounterMetricFamily(
            "bridge_exporter_local_resource_errors_total",
            "Operations that failed because the exporter's host ran out of file descriptors, "
            "socket buffers or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), by `operation`: "
            "probe (the probe could not run; its endpoint kept its last state) or accept "
            "(an HTTP connection waited to be accepted).",
            labels=["operation"],
        )
        for operation, count in sorted(exporter.resource_errors.counts.items()):
            errors.add_metric([operation], count)
        yield errors
