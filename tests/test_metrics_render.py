"""Every endpoint series /metrics renders, read back by Prometheus' own parser, equals what
the probes found: whatever a device answers (failure text with quotes, %, NUL or any
Unicode, infinities, NaN, figures of its own) and however the results change shape from
one round to the next."""

from __future__ import annotations

import json
import math
import re

from bridge_exporter.config import parse_inventory
from bridge_exporter.probes.base import ProbeResult
from bridge_exporter.runtime import Exporter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

RTT_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.5)  # README
MODULES = {"ping": "icmp", "sip": "sip", "tcp": "tcp"}
SETTINGS = {"tcp": ", tcp: {port: 5060}"}
NAMES = ['Điểm cầu "Hưng Hà" 100%', "Xã %s Tân Lễ \\ %d", "plain"]


def _exporter(name: str) -> Exporter:
    text = "\n".join([
        "tiers: [province, commune]",
        "modules:",
        *(
            f"  {module}: {{prober: {prober}{SETTINGS.get(module, '')}}}"
            for module, prober in MODULES.items()
        ),
        "endpoints:",
        "  - {id: tinh, name: Tỉnh, tier: province, address: 127.0.0.1, modules: [ping]}",
        f"  - {{id: xa, name: {json.dumps(name)}, tier: commune, parent: tinh,"
        f" address: 127.0.0.2, modules: [{', '.join(MODULES)}],"
        f" labels: {{room: {json.dumps(name)}}}}}",
    ])  # fmt: skip
    inventory = parse_inventory(text, "render.yml")
    return Exporter("render.yml", inventory)


figure = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
results = st.builds(
    ProbeResult,
    success=st.booleans(),
    duration_seconds=st.floats(min_value=0, max_value=60),
    reason=st.one_of(st.just(""), st.text(max_size=30)),
    rtt_seconds=figure,
    rtt_min_seconds=figure,
    rtt_max_seconds=figure,
    jitter_seconds=figure,
    packet_loss_ratio=figure,
    packets_sent=st.integers(0, 5),
    packets_received=st.integers(0, 5),
    rtt_samples=st.lists(st.floats(min_value=0, max_value=3), max_size=5),
    status_code=st.one_of(st.none(), st.integers(100, 699)),
    values=st.dictionaries(
        st.sampled_from(["media_bitrate_bits_per_second", "media_loss_ratio", "not-a-name"]),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
)
rounds = st.lists(st.fixed_dictionaries({m: results for m in MODULES}), min_size=1, max_size=3)


VALUE = re.compile(r"-?\d+(\.\d+)?(e[+-]\d+)?|[+-]Inf|NaN")


def _samples(text: str) -> dict[tuple, float]:
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            assert VALUE.fullmatch(line.rpartition(" ")[2]), line
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("endpoint") != "xa":
                continue
            key = (sample.name, sample.labels.get("probe"), sample.labels.get("reason"))
            key += (sample.labels.get("le"),)
            assert key not in found, f"{key} twice"
            found[key] = sample.value
    return found


def _expected(rounds_: list[dict[str, ProbeResult]]) -> dict[tuple, float]:
    """From the results alone, as the README's metrics reference describes the series."""
    last = rounds_[-1]
    expected: dict[tuple, float] = {("bridge_endpoint_info", None, None, None): 1.0}
    for module, result in last.items():
        prober = MODULES[module]
        expected[("bridge_probe_success", module, None, None)] = float(result.success)
        expected[("bridge_probe_duration_seconds", module, None, None)] = result.duration_seconds
        if result.reason:
            expected[("bridge_probe_failure_info", module, result.reason, None)] = 1.0
        if result.status_code is not None:
            expected[("bridge_probe_status_code", module, None, None)] = result.status_code
            if prober == "sip":
                expected[("bridge_sip_response_code", module, None, None)] = result.status_code
        for name, value in (
            ("bridge_rtt_seconds", result.rtt_seconds),
            ("bridge_rtt_min_seconds", result.rtt_min_seconds),
            ("bridge_rtt_max_seconds", result.rtt_max_seconds),
            ("bridge_jitter_seconds", result.jitter_seconds),
            ("bridge_packet_loss_ratio", result.packet_loss_ratio),
        ):
            if value is not None:
                expected[(name, module, None, None)] = value
        for key, value in result.values.items():
            if key != "not-a-name":
                expected[(f"bridge_{key}", module, None, None)] = value
    # The ping train's cumulative counters over every round that measured something.
    unmeasured = ("refused", "local_resource_exhausted")  # no reflector; the exporter's lack
    measured = [r["ping"] for r in rounds_ if r["ping"].packets_sent]
    measured = [r for r in measured if r.reason not in unmeasured]
    if measured:
        samples = [s for r in measured for s in r.rtt_samples]
        train = ("ping", None)
        expected[("bridge_icmp_packets_sent_total", *train, None)] = sum(
            r.packets_sent for r in measured
        )
        expected[("bridge_icmp_packets_received_total", *train, None)] = sum(
            r.packets_received for r in measured
        )
        for bound in RTT_BOUNDS:
            count = sum(1 for s in samples if s <= bound)
            expected[("bridge_icmp_rtt_seconds_bucket", *train, repr(bound))] = count
        expected[("bridge_icmp_rtt_seconds_bucket", *train, "+Inf")] = len(samples)
        expected[("bridge_icmp_rtt_seconds_count", *train, None)] = len(samples)
        expected[("bridge_icmp_rtt_seconds_sum", *train, None)] = math.fsum(samples)
    return expected


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), rounds_=rounds)
def test_each_series_reads_back_as_the_probes_found_it(name, rounds_):
    exporter = _exporter(name)
    endpoint = exporter.inventory.endpoints["xa"]
    for round_results in rounds_:
        for module in exporter.inventory.modules_of(endpoint):
            exporter.state.record(endpoint, module, round_results[module.name])
        exporter.state.finish_round(endpoint, 0.5)
    found = _samples(exporter.metrics.render())
    expected = _expected(rounds_)
    for key, value in expected.items():
        assert key in found, f"{key} missing"
        assert _same(found[key], value), (key, found[key], value)
    found_names = {key[0] for key in found}
    probe_series = {key for key in found if key[1] is not None}
    assert probe_series == {key for key in expected if key[1] is not None}
    assert {"bridge_up", "bridge_last_probe_timestamp_seconds"} <= found_names
    assert found[("bridge_up", None, None, None)] == float(
        all(r.success for r in rounds_[-1].values())
    )


async def test_a_scrape_shows_every_round_that_ended_before_it():
    """Rounds that end are rendered in batches (every RENDER_BATCH_SECONDS); a scrape in
    between still serves each endpoint's last finished round, never an older one."""
    exporter = _exporter("plain")
    endpoint = exporter.inventory.endpoints["xa"]
    modules = exporter.inventory.modules_of(endpoint)
    for duration in (0.25, 0.5, 0.75, 1.5):
        for module in modules:
            exporter.state.record(endpoint, module, ProbeResult(True, duration))
        exporter.state.finish_round(endpoint, duration)
        page = await exporter.metrics.page_async()
        found = _samples(b"".join(page.pieces()).decode())
        assert found[("bridge_round_duration_seconds", None, None, None)] == duration
        for module in modules:
            key = ("bridge_probe_duration_seconds", module.name, None, None)
            assert found[key] == duration
