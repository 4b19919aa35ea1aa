"""MOS estimate and quality grade, as documented in the README ("Quality semantics")."""

from __future__ import annotations

import pytest
from bridge_exporter.config import Thresholds, parse_inventory
from bridge_exporter.probes.base import ProbeResult
from bridge_exporter.quality import Grade, NetworkFigures, grade, mos
from bridge_exporter.state import State

# Worked by hand from the README's formula (latency = RTT/2 + 2 jitter + 10 ms).
MOS_POINTS = [
    # rtt, jitter, loss -> MOS
    ((0.0, 0.0, 0.0), 4.404),  # latency 10 ms: R = 92.95
    ((0.4, 0.0, 0.0), 4.172),  # latency 210 ms: R = 93.2 - 9 = 84.2
    ((0.0, 0.0, 0.05), 4.041),  # R = 92.95 - 12.5 = 80.45
    ((0.1, 0.02, 0.01), 4.292),  # latency 100 ms: R = 90.7 - 2.5 = 88.2
    ((0.0, 0.0, 0.5), 1.0),  # R below 0 is clamped: the floor
]


@pytest.mark.parametrize(("figures", "expected"), MOS_POINTS)
def test_mos_matches_hand_worked_values(figures, expected):
    assert mos(NetworkFigures(*figures)) == pytest.approx(expected, abs=0.001)


def test_mos_is_continuous_at_the_160_ms_knee_and_never_above_4_5():
    below = mos(NetworkFigures(rtt_seconds=2 * 0.1499, jitter_seconds=0.0, loss_ratio=0))
    above = mos(NetworkFigures(rtt_seconds=2 * 0.1501, jitter_seconds=0.0, loss_ratio=0))
    assert abs(below - above) < 0.001
    assert max(mos(NetworkFigures(0, 0, 0)), mos(NetworkFigures(-1, 0, 0))) <= 4.5


def test_mos_falls_as_any_figure_worsens():
    base = mos(NetworkFigures(0.05, 0.005, 0.0))
    assert mos(NetworkFigures(0.5, 0.005, 0.0)) < base
    assert mos(NetworkFigures(0.05, 0.05, 0.0)) < base
    assert mos(NetworkFigures(0.05, 0.005, 0.02)) < base


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ((0.300, 0.030, 0.01), Grade.GOOD),  # at the limits: not above them
        ((0.301, 0.0, 0.0), Grade.DEGRADED),
        ((0.0, 0.031, 0.0), Grade.DEGRADED),
        ((0.0, 0.0, 0.011), Grade.DEGRADED),
        ((0.801, 0.0, 0.0), Grade.POOR),
        ((0.0, 0.051, 0.0), Grade.POOR),
        ((0.0, 0.0, 0.051), Grade.POOR),
        ((0.301, 0.051, 0.0), Grade.POOR),  # the worst figure decides
    ],
)
def test_grade_uses_the_documented_default_limits(figures, expected):
    assert grade(NetworkFigures(*figures), Thresholds()) is expected


INVENTORY = """
thresholds: {rtt_warning: 250ms}
tiers:
  - {name: district, modules: [stamp, icmp]}
  - {name: commune, modules: [stamp, icmp], thresholds: {rtt_warning: 400ms}}
modules:
  stamp: {prober: stamp, required: false}
  icmp: {prober: icmp}
endpoints:
  - {id: d, name: Huyện, tier: district, address: 127.0.0.1}
  - {id: c, name: Xã, tier: commune, parent: d, address: 127.0.0.2}
"""


def _state_with(rtt_by_module: dict[str, float | None]) -> tuple[State, object]:
    inventory = parse_inventory(INVENTORY, "quality.yml")
    state = State(inventory)
    for endpoint in inventory.endpoints.values():
        for module in inventory.modules_of(endpoint):
            rtt = rtt_by_module[module.name]
            received = 0 if rtt is None else 10
            state.record(
                endpoint,
                module,
                ProbeResult(
                    success=received > 0, rtt_seconds=rtt, jitter_seconds=0.002,
                    packet_loss_ratio=0.0 if received else 1.0, packets_sent=10,
                    packets_received=received,
                ),
            )  # fmt: skip
    return state, inventory


def test_grade_uses_each_tier_limits_and_prefers_the_stamp_figures():
    state, inventory = _state_with({"stamp": 0.35, "icmp": 0.01})
    district = state.quality(inventory.endpoints["d"])
    commune = state.quality(inventory.endpoints["c"])
    assert district.source == commune.source == "stamp"
    assert district.grade is Grade.DEGRADED  # top-level rtt_warning 250 ms
    assert commune.grade is Grade.GOOD  # the commune tier allows 400 ms


def test_a_wholly_lost_stamp_train_is_poor_even_when_ping_passes():
    # A firewall that drops media but lets ping through must not look good.
    state, inventory = _state_with({"stamp": None, "icmp": 0.02})
    quality = state.quality(inventory.endpoints["c"])
    assert quality.source == "stamp"
    assert quality.figures.loss_ratio == 1.0
    assert quality.grade is Grade.POOR
    assert quality.mos == 1.0


def test_quality_falls_back_to_icmp_when_there_is_no_reflector():
    state, inventory = _state_with({"stamp": None, "icmp": 0.02})
    endpoint = inventory.endpoints["c"]
    refused = ProbeResult(success=False, reason="refused", packets_sent=1, packet_loss_ratio=1.0)
    state.record(endpoint, inventory.modules["stamp"], refused)
    quality = state.quality(endpoint)
    assert quality.source == "icmp"
    assert quality.figures.rtt_seconds == 0.02
    assert quality.grade is Grade.GOOD
