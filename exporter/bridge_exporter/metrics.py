"""A prometheus_client Collector that renders the current state at scrape time.

Series are built fresh on every scrape from the inventory and the state, so an endpoint
removed by a reload disappears at once and no stale label set lingers.
Probes run in background rounds, not at scrape time: values are those of each endpoint's
last round, and `bridge_last_probe_timestamp_seconds` says how old they are.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .config.model import Endpoint
from .probes.base import ProbeResult
from .scheduler import Scheduler
from .state import TRAIN_PROBERS, State

_METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ROUND_NOTE = "Measured in background rounds; see bridge_last_probe_timestamp_seconds."


class ProbeFamilies:
    """The per-probe series of probe results; shared by /metrics and /probe."""

    def __init__(self, labels: list[str]):
        self.labels = labels

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*labels, *extra])

        self.success = gauge("bridge_probe_success", f"1 if the probe succeeded. {ROUND_NOTE}")
        self.duration = gauge("bridge_probe_duration_seconds", "How long the probe took.")
        self.failure = gauge(
            "bridge_probe_failure_info", "Why the probe failed, in `reason`; 1.", ("reason",)
        )
        self.status = gauge("bridge_probe_status_code", "SIP or HTTP status code of the answer.")
        self.sip_code = gauge("bridge_sip_response_code", "SIP response code (final if any).")
        self.rtt = gauge("bridge_rtt_seconds", "Mean round-trip time of the last round.")
        self.rtt_min = gauge("bridge_rtt_min_seconds", "Smallest round-trip time of the round.")
        self.rtt_max = gauge("bridge_rtt_max_seconds", "Largest round-trip time of the round.")
        self.jitter = gauge(
            "bridge_jitter_seconds",
            "Jitter of the last round: RFC 3550 interarrival jitter for stamp, mean absolute "
            "difference of successive RTTs for icmp.",
        )
        self.loss = gauge("bridge_packet_loss_ratio", "Share of packets lost in the last round.")
        self.extra: dict[str, GaugeMetricFamily] = {}
        self._gauge = gauge

    def add(self, labels: list[str], prober_kind: str, result: ProbeResult) -> None:
        self.success.add_metric(labels, 1 if result.success else 0)
        self.duration.add_metric(labels, result.duration_seconds)
        if result.reason:
            self.failure.add_metric([*labels, result.reason], 1)
        if result.status_code is not None:
            self.status.add_metric(labels, result.status_code)
            if prober_kind == "sip":
                self.sip_code.add_metric(labels, result.status_code)
        for family, value in (
            (self.rtt, result.rtt_seconds),
            (self.rtt_min, result.rtt_min_seconds),
            (self.rtt_max, result.rtt_max_seconds),
            (self.jitter, result.jitter_seconds),
            (self.loss, result.packet_loss_ratio),
        ):
            if value is not None:
                family.add_metric(labels, value)
        for key, value in result.values.items():
            name = f"bridge_{key}"
            if not _METRIC_NAME.match(name):
                continue
            family = self.extra.get(name)
            if family is None:
                family = self.extra[name] = self._gauge(
                    name, f"{key.replace('_', ' ').capitalize()} (prober figure, last round)."
                )
            family.add_metric(labels, value)

    def families(self) -> Iterator[Metric]:
        yield from (self.success, self.duration, self.failure, self.status, self.sip_code)
        yield from (self.rtt, self.rtt_min, self.rtt_max, self.jitter, self.loss)
        yield from self.extra.values()


@dataclass
class ReloadStatus:
    successful: bool = True
    success_timestamp: float = 0.0
    last_error: str = ""


class BridgeCollector(Collector):
    def __init__(
        self,
        state_ref: Callable[[], State],
        scheduler_ref: Callable[[], Scheduler | None],
        reload_status: ReloadStatus,
        startup_problems: Callable[[], dict[str, str]],
    ):
        self._state_ref = state_ref
        self._scheduler_ref = scheduler_ref
        self._reload = reload_status
        self._startup_problems = startup_problems

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: the label sets depend on the inventory

    def collect(self) -> Iterator[Metric]:
        state = self._state_ref()
        yield from self._endpoint_metrics(state)
        yield from self._tier_metrics(state)
        yield from self._exporter_metrics(state)

    def _endpoint_metrics(self, state: State) -> Iterator[Metric]:
        inventory = state.inventory
        tiers = list(inventory.tier_names)
        base = ["endpoint", "tier", *tiers]
        per_probe = [*base, "probe"]

        def gauge(name: str, doc: str, labels: list[str] = base) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        info = gauge(
            "bridge_endpoint_info",
            "Inventory facts about an endpoint; always 1.",
            [*base, "name", "parent", "address", *self._free_label_names(state)],
        )
        up = gauge(
            "bridge_up", f"1 if every required probe succeeded in the last round. {ROUND_NOTE}"
        )
        upstream = gauge("bridge_upstream_up", "1 unless an ancestor endpoint is down now.")
        changes = CounterMetricFamily(
            "bridge_state_changes", "Up/down transitions since the exporter started.", labels=base
        )
        last_change = gauge(
            "bridge_last_change_timestamp_seconds", "When bridge_up last changed (Unix time)."
        )
        down_since = gauge(
            "bridge_down_since_timestamp_seconds", "Start of the current outage (Unix time)."
        )
        last_probe = gauge(
            "bridge_last_probe_timestamp_seconds", "When the endpoint's last round ended."
        )
        round_duration = gauge(
            "bridge_round_duration_seconds", "How long the endpoint's last round took."
        )
        delegates = gauge("bridge_endpoint_delegates", "Delegates expected at the endpoint.")
        mos = gauge("bridge_mos", "Estimated MOS (E-model simplification, 1.0 to 4.5).")
        grade = gauge("bridge_quality_grade", "Quality grade: 0 good, 1 degraded, 2 poor.")
        probe_families = ProbeFamilies(per_probe)
        counters: dict[
            str, tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily]
        ] = {}
        for kind in TRAIN_PROBERS:
            counters[kind] = (
                CounterMetricFamily(
                    f"bridge_{kind}_packets_sent", f"{kind} packets sent.", labels=per_probe
                ),
                CounterMetricFamily(
                    f"bridge_{kind}_packets_received", f"{kind} replies received.", labels=per_probe
                ),
                HistogramMetricFamily(
                    f"bridge_{kind}_rtt_seconds", f"{kind} round-trip times.", labels=per_probe
                ),
            )

        free_names = self._free_label_names(state)
        for endpoint in inventory.endpoints.values():
            endpoint_state = state.endpoints.get(endpoint.id)
            if endpoint_state is None:
                continue
            labels = self._labels(state, endpoint)
            info.add_metric(
                [
                    *labels,
                    endpoint.name,
                    endpoint.parent or "",
                    endpoint.address,
                    *(endpoint.labels.get(n, "") for n in free_names),
                ],
                1,
            )
            upstream.add_metric(labels, 1 if state.upstream_up(endpoint) else 0)
            changes.add_metric(labels, endpoint_state.state_changes)
            if endpoint.delegates is not None:
                delegates.add_metric(labels, endpoint.delegates)
            if endpoint_state.up is not None:
                up.add_metric(labels, 1 if endpoint_state.up else 0)
            if endpoint_state.last_change_timestamp is not None:
                last_change.add_metric(labels, endpoint_state.last_change_timestamp)
            if endpoint_state.down_since is not None:
                down_since.add_metric(labels, endpoint_state.down_since)
            if endpoint_state.last_round_timestamp is not None:
                last_probe.add_metric(labels, endpoint_state.last_round_timestamp)
                round_duration.add_metric(labels, endpoint_state.last_round_duration or 0.0)
            for name, record in endpoint_state.records.items():
                probe_families.add([*labels, name], record.module.prober, record.result)
            for name, counter in endpoint_state.counters.items():
                record = endpoint_state.records.get(name)
                if record is None or record.module.prober not in counters:
                    continue
                sent, received, histogram = counters[record.module.prober]
                probe_labels = [*labels, name]
                sent.add_metric(probe_labels, counter.sent)
                received.add_metric(probe_labels, counter.received)
                histogram.add_metric(probe_labels, counter.cumulative_buckets(), counter.rtt_sum)
            quality = state.quality(endpoint)
            if quality is not None:
                mos.add_metric(labels, round(quality.mos, 3))
                grade.add_metric(labels, int(quality.grade))

        yield from (info, up, upstream, changes, last_change, down_since, last_probe)
        yield from (round_duration, delegates, mos, grade)
        yield from probe_families.families()
        for family_set in counters.values():
            yield from family_set

    @staticmethod
    def _free_label_names(state: State) -> list[str]:
        names: set[str] = set()
        for endpoint in state.inventory.endpoints.values():
            names.update(endpoint.labels)
        return sorted(names)

    @staticmethod
    def _labels(state: State, endpoint: Endpoint) -> list[str]:
        tier_labels = state.inventory.tier_labels(endpoint)
        return [endpoint.id, endpoint.tier, *tier_labels.values()]

    def _tier_metrics(self, state: State) -> Iterator[Metric]:
        inventory = state.inventory
        total = GaugeMetricFamily(
            "bridge_tier_endpoints", "Endpoints in the tier.", labels=["tier"]
        )
        up = GaugeMetricFamily(
            "bridge_tier_endpoints_up",
            "Endpoints of the tier up in their last round.",
            labels=["tier"],
        )
        delegates = GaugeMetricFamily(
            "bridge_tier_delegates", "Delegates expected at the tier's endpoints.", labels=["tier"]
        )
        for tier in inventory.tiers:
            members = [e for e in inventory.endpoints.values() if e.tier == tier.name]
            total.add_metric([tier.name], len(members))
            up.add_metric([tier.name], sum(1 for e in members if state.endpoints[e.id].up is True))
            delegates.add_metric([tier.name], sum(e.delegates or 0 for e in members))
        yield from (total, up, delegates)

    def _exporter_metrics(self, state: State) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "bridge_exporter_build_info",
            "Exporter version and Python version; always 1.",
            labels=["version", "python_version"],
        )
        build.add_metric([__version__, ".".join(map(str, sys.version_info[:3]))], 1)
        yield build
        scheduler = self._scheduler_ref()
        if scheduler is not None:
            stats = scheduler.stats
            yield CounterMetricFamily(
                "bridge_exporter_rounds", "Endpoint probe rounds completed.", value=stats.rounds
            )
            yield CounterMetricFamily(
                "bridge_exporter_round_overruns",
                "Round starts skipped because the previous round of that endpoint was still "
                "running (interval too short for the modules' timeouts).",
                value=stats.overruns,
            )
            yield CounterMetricFamily(
                "bridge_exporter_probes", "Probes completed.", value=stats.probes
            )
            yield CounterMetricFamily(
                "bridge_exporter_prober_errors",
                "Probes whose prober raised instead of returning a result (a bug; see the log).",
                value=stats.probe_errors,
            )
            yield GaugeMetricFamily(
                "bridge_exporter_probes_in_flight", "Probes running now.", value=stats.in_flight
            )
            yield GaugeMetricFamily(
                "bridge_exporter_probe_interval_seconds",
                "Configured time between an endpoint's rounds.",
                value=scheduler.inventory.interval,
            )
        problems = GaugeMetricFamily(
            "bridge_exporter_prober_ready",
            "0 if a prober could not start (e.g. ICMP without permission; see the log).",
            labels=["prober"],
        )
        startup = self._startup_problems()
        kinds = sorted({m.prober for m in state.inventory.modules.values()})
        for kind in kinds:
            problems.add_metric([kind], 0 if kind in startup else 1)
        yield problems
        yield GaugeMetricFamily(
            "bridge_exporter_endpoints", "Endpoints in the inventory.",
            value=len(state.inventory.endpoints),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "bridge_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded.",
            value=1 if self._reload.successful else 0,
        )
        yield GaugeMetricFamily(
            "bridge_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix time).",
            value=self._reload.success_timestamp,
        )
