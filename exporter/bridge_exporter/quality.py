"""Voice quality from network figures: an E-model MOS estimate and a quality grade.

MOS (a simplification of ITU-T G.107's E-model, as used by Cisco and most monitoring
tools): effective latency = one-way delay + 2 x jitter + 10 ms codec allowance, where the
one-way delay is half the measured round trip. R = 93.2 - latency/40 below 160 ms, else
93.2 - (latency - 120)/10; then R -= 2.5 per percent of packet loss; R is clamped to
0..100 and MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), clamped to 1.0..4.5.
It assumes a G.711-like codec without loss concealment and symmetric paths: a
comparative figure for spotting bad links, not a listening test.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from .config.model import Thresholds


class Grade(IntEnum):
    GOOD = 0
    DEGRADED = 1
    POOR = 2


class NetworkFigures(NamedTuple):
    rtt_seconds: float
    jitter_seconds: float
    loss_ratio: float


def r_factor(figures: NetworkFigures) -> float:
    latency_ms = figures.rtt_seconds * 1000 / 2 + 2 * figures.jitter_seconds * 1000 + 10
    r = 93.2 - latency_ms / 40 if latency_ms < 160 else 93.2 - (latency_ms - 120) / 10
    r -= 2.5 * figures.loss_ratio * 100
    return min(100.0, max(0.0, r))


def mos(figures: NetworkFigures) -> float:
    r = r_factor(figures)
    value = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
    return min(4.5, max(1.0, value))


def grade(figures: NetworkFigures, limits: Thresholds) -> Grade:
    if (
        figures.rtt_seconds > limits.rtt_critical_seconds
        or figures.jitter_seconds > limits.jitter_critical_seconds
        or figures.loss_ratio > limits.loss_critical_ratio
    ):
        return Grade.POOR
    if (
        figures.rtt_seconds > limits.rtt_warning_seconds
        or figures.jitter_seconds > limits.jitter_warning_seconds
        or figures.loss_ratio > limits.loss_warning_ratio
    ):
        return Grade.DEGRADED
    return Grade.GOOD
