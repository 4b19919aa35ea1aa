"""The exporter's series, rendered from the state as each endpoint's round ends.

Series follow the inventory and the state (as a prometheus_client custom Collector
would), so an endpoint removed by a reload disappears at once and no stale label set
lingers. Rendering goes through exposition.py, which escapes each endpoint's labels once
per inventory instead of once per sample.
Probes run in background rounds, not at scrape time: values are those of each endpoint's
last round, and `bridge_last_probe_timestamp_seconds` says how old they are.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from itertools import accumulate
from operator import attrgetter

from .config.model import Endpoint, Inventory
from .endpoint_text import EndpointText, series_code
from .exposition import Family, join_labels, label_text, render
from .inventory_metrics import InventorySeries
from .metrics_page import MetricsPage, Part
from .probes.base import ProbeResult
from .state import BUCKET_TEXTS, TRAIN_PROBERS, State

log = logging.getLogger(__name__)
_METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Rounds that end are rendered together this often (and before any scrape): rendering
# interleaved with probing ran at half the speed of rendering in a batch (CPU caches).
RENDER_BATCH_SECONDS = 0.1
ROUND_NOTE = "Measured in background rounds; see bridge_last_probe_timestamp_seconds."


def _gauge(name: str, help_text: str) -> Family:
    return Family(name, "gauge", help_text)


def _counter(name: str, help_text: str) -> Family:
    return Family(name, "counter", help_text)


# A result's round-trip figures (None where its prober measures none), in one C call.
figures_of = attrgetter(
    "rtt_seconds", "rtt_min_seconds", "rtt_max_seconds", "jitter_seconds", "packet_loss_ratio"
)


def extra_family(key: str) -> Family | None:
    """The gauge of a prober's own figure (ProbeResult.values), None if `key` cannot make
    a metric name."""
    name = f"bridge_{key}"
    if not _METRIC_NAME.match(name):
        return None
    return _gauge(name, f"{key.replace('_', ' ').capitalize()} (prober figure, last round).")


class ProbeFamilies:
    """The per-probe series of probe results; shared by /metrics and /probe."""

    def __init__(self) -> None:
        self.success = _gauge("bridge_probe_success", f"1 if the probe succeeded. {ROUND_NOTE}")
        self.duration = _gauge("bridge_probe_duration_seconds", "How long the probe took.")
        self.failure = _gauge("bridge_probe_failure_info", "Why the probe failed, in `reason`; 1.")
        self.status = _gauge("bridge_probe_status_code", "SIP or HTTP status code of the answer.")
        self.sip_code = _gauge("bridge_sip_response_code", "SIP response code (final if any).")
        self.rtt = _gauge("bridge_rtt_seconds", "Mean round-trip time of the last round.")
        self.rtt_min = _gauge("bridge_rtt_min_seconds", "Smallest round-trip time of the round.")
        self.rtt_max = _gauge("bridge_rtt_max_seconds", "Largest round-trip time of the round.")
        self.jitter = _gauge(
            "bridge_jitter_seconds",
            "Jitter of the last round: RFC 3550 interarrival jitter for stamp, mean absolute "
            "difference of successive RTTs for icmp.",
        )
        self.loss = _gauge("bridge_packet_loss_ratio", "Share of packets lost in the last round.")
        # The families of the round-trip figures, in figures_of()'s order.
        self.figures = (self.rtt, self.rtt_min, self.rtt_max, self.jitter, self.loss)
        self.extra: dict[str, Family] = {}

    def add(self, labels: str, prober_kind: str, result: ProbeResult) -> None:
        """`labels` is the label_text() of the series, `probe` included."""
        self.success.add(labels, 1 if result.success else 0)
        self.duration.add(labels, result.duration_seconds)
        if result.reason:
            self.failure.add(join_labels(labels, label_text({"reason": result.reason})), 1)
        if result.status_code is not None:
            self.status.add(labels, result.status_code)
            if prober_kind == "sip":
                self.sip_code.add(labels, result.status_code)
        for family, value in zip(self.figures, figures_of(result), strict=True):
            if value is not None:
                family.add(labels, value)
        for key, value in result.values.items():
            family = self.extra.get(key)
            if family is None:
                family = extra_family(key)
                if family is None:
                    continue
                self.extra[key] = family
            family.add(labels, value)

    def families(self) -> Iterator[Family]:
        yield from (self.success, self.duration, self.failure, self.status, self.sip_code)
        yield from (self.rtt, self.rtt_min, self.rtt_max, self.jitter, self.loss)
        yield from self.extra.values()


class _LabelCache:
    """Each endpoint's escaped label text, computed once per inventory: the base labels
    (for the aggregates), and as UTF-8 for EndpointText the base, info and each module's."""

    def __init__(self) -> None:
        self._inventory: Inventory | None = None
        self.base: dict[str, str] = {}
        self.utf8: dict[str, tuple[bytes, bytes, dict[str, bytes]]] = {}

    def refresh(self, inventory: Inventory) -> None:
        if inventory is self._inventory:
            return
        free_names = sorted({n for e in inventory.endpoints.values() for n in e.labels})
        self.base, self.utf8 = {}, {}
        for endpoint in inventory.endpoints.values():
            base = label_text(
                {"endpoint": endpoint.id, "tier": endpoint.tier, **inventory.tier_labels(endpoint)}
            )
            self.base[endpoint.id] = base
            info = {
                "name": endpoint.name,
                "parent": endpoint.parent or "",
                "address": endpoint.address,
                # For map panels (Grafana geomap reads them from labels).
                "latitude": "" if endpoint.latitude is None else repr(endpoint.latitude),
                "longitude": "" if endpoint.longitude is None else repr(endpoint.longitude),
            }
            info.update((n, endpoint.labels.get(n, "")) for n in free_names)
            self.utf8[endpoint.id] = (
                base.encode(),
                join_labels(base, label_text(info)).encode(),
                {
                    module: join_labels(base, label_text({"probe": module})).encode()
                    for module in endpoint.modules
                },
            )
        self._inventory = inventory


class _EndpointSeries:
    """The per-endpoint families, and one endpoint's series listed for EndpointText."""

    def __init__(self, labels: _LabelCache):
        self._labels = labels
        self.info = _gauge("bridge_endpoint_info", "Inventory facts about an endpoint; always 1.")
        self.up = _gauge(
            "bridge_up", f"1 if every required probe succeeded in the last round. {ROUND_NOTE}"
        )
        self.upstream = _gauge("bridge_upstream_up", "1 unless an ancestor endpoint is down now.")
        self.changes = _counter(
            "bridge_state_changes_total", "Up/down transitions since the exporter started."
        )
        self.last_change = _gauge(
            "bridge_last_change_timestamp_seconds", "When bridge_up last changed (Unix time)."
        )
        self.down_since = _gauge(
            "bridge_down_since_timestamp_seconds", "Start of the current outage (Unix time)."
        )
        self.last_probe = _gauge(
            "bridge_last_probe_timestamp_seconds",
            "When the endpoint's last measured round ended (rounds that could not run for lack "
            "of local resources leave it).",
        )
        self.round_duration = _gauge(
            "bridge_round_duration_seconds", "How long the endpoint's last round took."
        )
        self.delegates = _gauge("bridge_endpoint_delegates", "Delegates expected at the endpoint.")
        self.mos = _gauge("bridge_mos", "Estimated MOS (E-model simplification, 1.0 to 4.5).")
        self.grade = _gauge("bridge_quality_grade", "Quality grade: 0 good, 1 degraded, 2 poor.")
        probe = ProbeFamilies()
        self.trains = {
            kind: (
                _counter(f"bridge_{kind}_packets_sent_total", f"{kind} packets sent."),
                _counter(f"bridge_{kind}_packets_received_total", f"{kind} replies received."),
                Family(f"bridge_{kind}_rtt_seconds", "histogram", f"{kind} round-trip times."),
            )
            for kind in TRAIN_PROBERS
        }  # fmt: skip
        # Fixed families first (their indices are the codes below), then prober figures
        # in the order they first appear.
        self._families: list[Family] = [
            self.info, self.up, self.upstream, self.changes, self.last_change,
            self.down_since, self.last_probe, self.round_duration, self.delegates, self.mos,
            self.grade, probe.success, probe.duration, probe.failure, probe.status,
            probe.sip_code, probe.rtt, probe.rtt_min, probe.rtt_max, probe.jitter, probe.loss,
            *(family for trio in self.trains.values() for family in trio),
        ]  # fmt: skip

        def code(family: Family) -> int:
            return series_code(self._families.index(family))

        self._info, self._up, self._changes = code(self.info), code(self.up), code(self.changes)
        self._last_change, self._down_since = code(self.last_change), code(self.down_since)
        self._last_probe, self._round_duration = code(self.last_probe), code(self.round_duration)
        self._delegates = code(self.delegates)
        self._mos, self._grade = code(self.mos), code(self.grade)
        self._success, self._duration = code(probe.success), code(probe.duration)
        self._failure, self._status = code(probe.failure), code(probe.status)
        self._sip_code = code(probe.sip_code)
        self._figures = tuple(map(code, probe.figures))
        self._train_codes = {
            kind: (
                code(sent), code(received),
                series_code(self._families.index(histogram), histogram=True),
            )
            for kind, (sent, received, histogram) in self.trains.items()
        }  # fmt: skip
        self._extra_codes: dict[str, int] = {}
        self.text = EndpointText(self._families, BUCKET_TEXTS)

    def families(self) -> list[Family]:
        """Every per-endpoint family in page order (grows when a prober reports a figure
        not seen before)."""
        return self._families

    def render(self, state: State, endpoint: Endpoint) -> list[bytes] | None:
        """The endpoint's text, one part per family; bridge_upstream_up's is empty
        (BridgeMetrics renders it)."""
        endpoint_state = state.endpoints.get(endpoint.id)
        if endpoint_state is None:
            return None
        base, info, probe_labels = self._labels.utf8[endpoint.id]
        labels = [base, info]
        shape = [self._info + 1, self._changes]
        floats: list[float] = [1, endpoint_state.state_changes]
        ints: list[int] = []
        if endpoint.delegates is not None:
            shape.append(self._delegates)
            floats.append(endpoint.delegates)
        if endpoint_state.up is not None:
            shape.append(self._up)
            floats.append(1 if endpoint_state.up else 0)
        if endpoint_state.last_change_timestamp is not None:
            shape.append(self._last_change)
            floats.append(endpoint_state.last_change_timestamp)
        if endpoint_state.down_since is not None:
            shape.append(self._down_since)
            floats.append(endpoint_state.down_since)
        if endpoint_state.last_round_timestamp is not None:
            shape += (self._last_probe, self._round_duration)
            floats += (endpoint_state.last_round_timestamp, endpoint_state.last_round_duration or 0)
        slots: dict[str, int] = {}
        for name, record in endpoint_state.records.items():
            series = probe_labels.get(name)
            if series is None:
                continue
            slot = slots[name] = len(labels)
            labels.append(series)
            self._add_result(record.module.prober, record.result, slot, labels, shape, floats)
        with_histogram = state.inventory.tier(endpoint.tier).rtt_histogram
        histogram_floats: list[float] = []  # each histogram's sum and count, after the rest
        for name, counter in endpoint_state.counters.items():
            record = endpoint_state.records.get(name)
            codes = record and self._train_codes.get(record.module.prober)
            if codes is None or name not in slots:
                continue
            slot = slots[name]
            sent, received, histogram = codes
            shape += (sent + slot, received + slot)
            floats += (counter.sent, counter.received)
            if with_histogram:
                shape.append(histogram + slot)
                ints += accumulate(counter.rtt_bucket_counts)
                ints.append(counter.rtt_count)
                histogram_floats += (counter.rtt_sum, counter.rtt_count)
        quality = state.quality(endpoint)
        if quality is not None:
            shape += (self._mos, self._grade)
            floats += (round(quality.mos, 3), int(quality.grade))
        floats += histogram_floats
        return self.text.parts(labels, tuple(shape), floats, ints)

    def _add_result(
        self,
        prober_kind: str,
        result: ProbeResult,
        slot: int,
        labels: list[bytes],
        shape: list[int],
        floats: list[float],
    ) -> None:
        shape += (self._success + slot, self._duration + slot)
        floats += (1 if result.success else 0, result.duration_seconds)
        if result.reason:
            shape.append(self._failure + len(labels))
            floats.append(1)
            labels.append(labels[slot] + b"," + label_text({"reason": result.reason}).encode())
        if result.status_code is not None:
            shape.append(self._status + slot)
            floats.append(result.status_code)
            if prober_kind == "sip":
                shape.append(self._sip_code + slot)
                floats.append(result.status_code)
        for code, value in zip(self._figures, figures_of(result), strict=True):
            if value is not None:
                shape.append(code + slot)
                floats.append(value)
        for key, value in result.values.items():
            code = self._extra_codes.get(key)
            if code is None:
                family = extra_family(key)
                if family is None:
                    continue
                code = self._extra_codes[key] = series_code(len(self._families))
                self._families.append(family)
                self.text.families_changed()
            shape.append(code + slot)
            floats.append(value)


class BridgeMetrics:
    """Renders every bridge_* series from the state.

    Each endpoint's series are rendered to UTF-8 after its round ends (State.round_listeners:
    the rounds that ended within RENDER_BATCH_SECONDS together, and all of them before a
    scrape) and kept, family by family, in one column per family (a list with a slot per
    endpoint, in inventory order). A scrape serves each endpoint's text as of its last
    finished round, rendering on the spot only endpoints never rendered since the inventory
    was loaded. It takes a snapshot by copying the columns (references, not text) in one
    step on the loop, so an endpoint whose round ends during a scrape appears once, old or
    new, and the page is joined and compressed from the snapshot in a worker thread
    (metrics_page.py). bridge_upstream_up and the per-tier sums follow the endpoints'
    up/down states: they are rendered again only after one of those changed."""

    def __init__(self, state_ref: Callable[[], State]):
        self._state_ref = state_ref
        self._labels = _LabelCache()
        self._inventory_series = InventorySeries()
        self._inventory: Inventory | None = None
        self._series = _EndpointSeries(self._labels)
        self._positions: dict[str, int] = {}  # endpoint id -> its slot in every column
        self._columns: dict[str, list[bytes]] = {}  # family name -> each endpoint's text
        self._column_list: list[list[bytes]] = []  # the columns in family order
        self._unrendered: set[str] = set()
        self._finished: dict[str, None] = {}  # rounds ended, not rendered yet, in order
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a batch is due
        self._headers: dict[str, bytes] = {}
        self._ups: dict[str, bool | None] = {}  # each endpoint's up as the aggregates saw it
        self._aggregates: tuple[bytes, bytes] | None = None  # upstream, tier families

    def _sync(self, state: State) -> Inventory:
        inventory = state.inventory
        if inventory is not self._inventory:
            self._labels.refresh(inventory)
            self._series = _EndpointSeries(self._labels)
            self._positions = {e: i for i, e in enumerate(inventory.endpoints)}
            self._columns = {}
            self._column_list = []
            self._unrendered = set(inventory.endpoints)
            self._headers = {}
            self._ups = {e: s.up for e, s in state.endpoints.items()}
            self._aggregates = None
            self._inventory = inventory
        return inventory

    def _render_endpoint(self, state: State, endpoint: Endpoint) -> None:
        """Render one endpoint's series into its slot of every column."""
        parts = self._series.render(state, endpoint)
        if parts is None:
            return
        self._unrendered.discard(endpoint.id)
        position = self._positions[endpoint.id]
        for column, part in zip(self._family_columns(), parts, strict=True):
            column[position] = part

    def _family_columns(self) -> list[list[bytes]]:
        """Each per-endpoint family's column, in family order (more when a prober reports
        a figure not seen before)."""
        families = self._series.families()
        if len(self._column_list) != len(families):
            size = len(self._positions)
            self._column_list = [
                self._columns.setdefault(family.name, [b""] * size) for family in families
            ]
        return self._column_list

    def endpoint_finished(self, endpoint_id: str) -> None:
        """Note that an endpoint's round ended (a State listener): its series are rendered
        with the others' at the next batch, or at once outside an event loop."""
        state = self._state_ref()
        inventory = self._sync(state)
        endpoint_state = state.endpoints.get(endpoint_id)
        # A shard's spine points are not exported but their up/down state is everyone's
        # bridge_upstream_up: note it before looking the endpoint up in what is exported.
        if endpoint_state is not None and self._ups.get(endpoint_id) is not endpoint_state.up:
            self._ups[endpoint_id] = endpoint_state.up
            self._aggregates = None
        if endpoint_id not in inventory.endpoints:
            return
        self._finished[endpoint_id] = None
        if self._flush_loop is not None and not self._flush_loop.is_closed():
            return  # a batch is due
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tools, benchmarks): render at once
            self._render_finished(state, inventory)
            return
        self._flush_loop = loop
        loop.call_later(RENDER_BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_loop = None
        state = self._state_ref()
        self._render_finished(state, self._sync(state))

    def _render_finished(self, state: State, inventory: Inventory) -> None:
        """Render the endpoints whose rounds ended since the last time, in that order."""
        finished, self._finished = self._finished, {}
        for endpoint_id in finished:
            endpoint = inventory.endpoints.get(endpoint_id)
            if endpoint is None:
                continue
            try:
                self._render_endpoint(state, endpoint)
            except Exception:  # a bug: the others must still be rendered
                log.exception("rendering the series of %s failed", endpoint_id)

    def render(self) -> str:
        """Everything at once (benchmarks, tests)."""
        state = self._state_ref()
        inventory = self._sync(state)
        for endpoint_id in self._pending():
            self._render_endpoint(state, inventory.endpoints[endpoint_id])
        return self._snapshot(state, inventory).join().decode()

    async def page_async(self, batch: int = 250) -> MetricsPage:
        """A snapshot of the page. Endpoints not rendered yet (after a start or a reload;
        in steady state the rounds render their own) are rendered first, yielding to the
        event loop every `batch` of them so that probes keep their timing; restarts if a
        reload swaps the inventory in between. The snapshot itself is taken in one step."""
        while True:
            state = self._state_ref()
            inventory = self._sync(state)
            for count, endpoint_id in enumerate(self._pending(), 1):
                # Unless its round ended or another scrape rendered it meanwhile.
                if endpoint_id in self._unrendered:
                    self._render_endpoint(state, inventory.endpoints[endpoint_id])
                if count % batch == 0:
                    await asyncio.sleep(0)
                    if self._state_ref().inventory is not inventory:
                        break
            else:
                return self._snapshot(state, inventory)

    def _pending(self) -> list[str]:
        """Endpoints not rendered yet, in inventory order (the order in which a prober's
        extra figures first appear decides the order of their families)."""
        return sorted(self._unrendered, key=self._positions.__getitem__)

    def _header(self, family: Family) -> bytes:
        header = self._headers.get(family.name)
        if header is None:
            header = self._headers[family.name] = family.header().encode()
        return header

    def _snapshot(self, state: State, inventory: Inventory) -> MetricsPage:
        """The page as it is now; no await in here, so it is one consistent moment."""
        self._render_finished(state, inventory)
        if self._aggregates is None:
            self._aggregates = self._render_aggregates(state, inventory)
        upstream_text, tier_text = self._aggregates
        upstream = self._series.upstream
        parts: list[Part] = []
        for family in self._series.families():
            parts.append(self._header(family))
            if family is upstream:
                parts.append(upstream_text)
            elif (column := self._columns.get(family.name)) is not None:
                parts.append(column.copy())
        parts.append(tier_text)
        now = time.time()
        parts.extend(self._inventory_series.render_parts(inventory, self._labels.base, now))
        return MetricsPage(parts)

    def _render_aggregates(self, state: State, inventory: Inventory) -> tuple[bytes, bytes]:
        upstream = self._series.upstream
        for endpoint in inventory.endpoints.values():
            if endpoint.id in state.endpoints:
                upstream.add(
                    self._labels.base[endpoint.id], 1 if state.upstream_up(endpoint) else 0
                )
        return upstream.take().encode(), render(self._tier_families(state)).encode()

    def _tier_families(self, state: State) -> Iterator[Family]:
        total = _gauge("bridge_tier_endpoints", "Endpoints in the tier.")
        up = _gauge("bridge_tier_endpoints_up", "Endpoints of the tier up in their last round.")
        delegates = _gauge("bridge_tier_delegates", "Delegates expected at the tier's endpoints.")
        counts = {t.name: [0, 0, 0] for t in state.inventory.tiers}
        for endpoint in state.inventory.endpoints.values():
            tier = counts[endpoint.tier]
            tier[0] += 1
            tier[1] += state.endpoints[endpoint.id].up is True
            tier[2] += endpoint.delegates or 0
        for name, (members, members_up, people) in counts.items():
            labels = label_text({"tier": name})
            total.add(labels, members)
            up.add(labels, int(members_up))
            delegates.add(labels, people)
        yield from (total, up, delegates)
        yield from self._threshold_families(state)

    @staticmethod
    def _threshold_families(state: State) -> Iterator[Family]:
        """Each tier's grade limits, so dashboards and alerts compare against the same
        numbers the exporter grades with."""
        figures = (
            ("bridge_tier_rtt_threshold_seconds", "rtt", "seconds", "round-trip time"),
            ("bridge_tier_jitter_threshold_seconds", "jitter", "seconds", "jitter"),
            ("bridge_tier_loss_threshold_ratio", "loss", "ratio", "packet loss"),
        )
        for name, figure, unit, words in figures:
            family = _gauge(name, f"The tier's {words} limit above which quality is `level`.")
            for tier in state.inventory.tiers:
                for level in ("warning", "critical"):
                    value = getattr(tier.thresholds, f"{figure}_{level}_{unit}")
                    family.add(label_text({"tier": tier.name, "level": level}), value)
            yield family
