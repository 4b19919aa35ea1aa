"""What the exporter knows now: the latest result per endpoint and probe module, up/down
transitions, outage start times, and cumulative packet counters.

Written by the scheduler, read by the metrics Collector, the landing page and the CLI.
All of them run on the one event loop thread, so no locking is needed.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from .config.model import Endpoint, Inventory, Module
from .probes.base import ProbeResult
from .probes.reasons import LOCAL_RESOURCE_EXHAUSTED, REFUSED
from .quality import Grade, NetworkFigures, grade, mos

# Round-trip buckets from LAN to a bad satellite or 4G hop, with edges at the default
# grade limits (300 ms, 800 ms). Few on purpose: two histograms per endpoint are most of
# the series of a 10,000-endpoint network.
RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.5)
BUCKET_TEXTS = tuple(map(repr, RTT_BUCKETS))  # `le` label values, formatted once
# Probers whose packet trains feed the counters and the RTT histogram, and which give
# quality figures, best first: the voice-like STAMP train, then ICMP.
TRAIN_PROBERS = ("stamp", "icmp")
# Trains whose figures say nothing of the network: no reflector there, or the exporter
# ran out of resources part way.
UNMEASURED = frozenset({REFUSED, LOCAL_RESOURCE_EXHAUSTED})


@dataclass
class ProbeRecord:
    module: Module
    result: ProbeResult
    timestamp: float  # wall-clock end of the probe


@dataclass
class PacketCounters:
    """Cumulative, so loss and RTT percentiles over any window are exact in PromQL."""

    sent: int = 0
    received: int = 0
    rtt_bucket_counts: list[int] = field(default_factory=lambda: [0] * len(RTT_BUCKETS))
    rtt_count: int = 0
    rtt_sum: float = 0.0

    def add(self, result: ProbeResult) -> None:
        self.sent += result.packets_sent
        self.received += result.packets_received
        for sample in result.rtt_samples:
            index = bisect.bisect_left(RTT_BUCKETS, sample)
            if index < len(RTT_BUCKETS):
                self.rtt_bucket_counts[index] += 1
            self.rtt_count += 1
            self.rtt_sum += sample


@dataclass
class EndpointState:
    records: dict[str, ProbeRecord] = field(default_factory=dict)  # by module name
    counters: dict[str, PacketCounters] = field(default_factory=dict)  # by module name
    up: bool | None = None  # None until the first round ends
    state_changes: int = 0
    last_change_timestamp: float | None = None
    last_round_timestamp: float | None = None
    last_round_duration: float | None = None
    down_since: float | None = None
    # Bumped at every change, so /metrics re-renders only the endpoints that changed.
    version: int = 0


class Quality(NamedTuple):
    source: str  # the module whose figures were used
    figures: NetworkFigures
    mos: float
    grade: Grade


class State:
    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.endpoints: dict[str, EndpointState] = {e: EndpointState() for e in inventory.endpoints}
        # Called with the endpoint id when a round's results are in (metrics.py renders
        # the endpoint's series then, so a scrape only joins text).
        self.round_listeners: list[Callable[[str], None]] = []

    def replace_inventory(self, inventory: Inventory) -> None:
        """Keep history for endpoints that remain; forget removed ones and removed modules."""
        kept: dict[str, EndpointState] = {}
        for endpoint_id, endpoint in inventory.endpoints.items():
            state = self.endpoints.get(endpoint_id) or EndpointState()
            names = set(endpoint.modules)
            state.records = {n: r for n, r in state.records.items() if n in names}
            state.counters = {n: c for n, c in state.counters.items() if n in names}
            kept[endpoint_id] = state
        self.endpoints = kept
        self.inventory = inventory

    def record(self, endpoint: Endpoint, module: Module, result: ProbeResult) -> None:
        state = self.endpoints.get(endpoint.id)
        if state is None:  # removed by a reload while the probe ran
            return
        state.records[module.name] = ProbeRecord(module, result, time.time())
        state.version += 1
        # A train refused (no reflector) or cut short by the exporter's own lack of
        # resources measured nothing: it must not count as sent-and-lost in the counters.
        if (
            module.prober in TRAIN_PROBERS
            and result.packets_sent
            and result.reason not in UNMEASURED
        ):
            state.counters.setdefault(module.name, PacketCounters()).add(result)

    def finish_round(self, endpoint: Endpoint, duration: float) -> None:
        """Decide up/down from the required modules of this round and note transitions.

        A round whose required probes failed only because the exporter itself ran out of
        descriptors, buffers or memory measured nothing: the endpoint keeps its up/down
        state, outage start and last-round time (so bridge_last_probe_timestamp_seconds
        ages and shows the measurements missing)."""
        state = self.endpoints.get(endpoint.id)
        if state is None:
            return
        self._finish_round(state, endpoint, duration)
        for listener in self.round_listeners:
            listener(endpoint.id)

    def _finish_round(self, state: EndpointState, endpoint: Endpoint, duration: float) -> None:
        state.version += 1
        now = time.time()
        modules = self.inventory.modules_of(endpoint)
        checked = [m for m in modules if m.required] or modules
        failed = [
            record
            for m in checked
            if (record := state.records.get(m.name)) is None or not record.result.success
        ]
        if failed and all(
            r is not None and r.result.reason == LOCAL_RESOURCE_EXHAUSTED for r in failed
        ):
            return
        up = not failed
        if state.up is not None and up != state.up:
            state.state_changes += 1
        if state.up != up:
            state.last_change_timestamp = now
            state.down_since = None if up else now
        state.up = up
        state.last_round_timestamp = now
        state.last_round_duration = duration

    def upstream_up(self, endpoint: Endpoint) -> bool:
        """True unless an ancestor is known to be down (unknown counts as up)."""
        return all(
            (state := self.endpoints.get(a)) is None or state.up is not False
            for a in endpoint.ancestors
        )

    def first_down_ancestor(self, endpoint: Endpoint) -> str | None:
        return next(
            (a for a in endpoint.ancestors if (s := self.endpoints.get(a)) and s.up is False), None
        )

    def quality(self, endpoint: Endpoint) -> Quality | None:
        """Figures of the best packet train of the last round. A train sent and wholly
        lost is loss 1.0 (poor, MOS 1.0), not a reason to fall back to another prober: a
        firewall dropping media while ping passes must show. A train that could not be
        measured (nothing sent, or the reflector port refused: no reflector there) gives
        way to the next prober, as does one the exporter could not finish for lack of
        local resources."""
        state = self.endpoints.get(endpoint.id)
        if state is None:
            return None
        for kind in TRAIN_PROBERS:
            for record in state.records.values():
                result = record.result
                measured = result.packets_sent > 0 and result.reason not in UNMEASURED
                if record.module.prober != kind or not measured:
                    continue
                figures = NetworkFigures(
                    rtt_seconds=result.rtt_seconds or 0.0,
                    jitter_seconds=result.jitter_seconds or 0.0,
                    loss_ratio=1.0
                    if not result.packets_received
                    else result.packet_loss_ratio or 0.0,
                )
                limits = self.inventory.tier(endpoint.tier).thresholds
                return Quality(record.module.name, figures, mos(figures), grade(figures, limits))
        return None
