"""Inline SVG charts drawn in Python: no script, no network, fit for a mailed file."""

from __future__ import annotations

from html import escape

from ..i18n import format_clock, zone
from .compute import Report

COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
DOWN_OWN, DOWN_UPSTREAM = "#d62728", "#f2a541"
WIDTH, LEFT, RIGHT = 860, 150, 20


def _x(moment: float, report: Report) -> float:
    span = max(report.end - report.start, 1.0)
    return LEFT + (moment - report.start) / span * (WIDTH - LEFT - RIGHT)


def _time_axis(report: Report, y: float) -> list[str]:
    tz = zone(report.timezone)
    parts = [f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#444"/>']
    for index in range(6):
        moment = report.start + (report.end - report.start) * index / 5
        x = _x(moment, report)
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#444"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle">{format_clock(moment, tz)}</text>'
        )
    return parts


def _svg(height: float, parts: list[str], label: str) -> str:
    return (
        f'<svg role="img" aria-label="{escape(label)}" '
        f'width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
        'font-family="sans-serif" font-size="11">' + "".join(parts) + "</svg>"
    )


def tier_availability(report: Report, label: str) -> str:
    top, plot = 10, 180
    bottom = top + plot
    parts = [
        f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" height="{plot}" '
        'fill="#f7f7f7"/>'
    ]
    for share in (0.0, 0.5, 1.0):
        y = bottom - share * plot
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{share:.0%}</text>')
    for index, tier in enumerate(report.tiers):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(f"{_x(t, report):.1f},{bottom - v * plot:.1f}" for t, v in tier.series)
        if points:
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        legend_y = top + 14 * index + 12
        parts.append(f'<rect x="8" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="22" y="{legend_y}">{escape(tier.tier)}</text>')
    parts += _time_axis(report, bottom)
    return _svg(bottom + 24, parts, label)


def outage_timeline(report: Report, label: str) -> str:
    rows = [p for p in report.points if p.outages]
    row_height, top = 18, 6
    parts = []
    for index, point in enumerate(rows):
        y = top + index * row_height
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 12}" text-anchor="end">{escape(point.info.id)}</text>'
        )
        parts.append(
            f'<rect x="{LEFT}" y="{y + 2}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{row_height - 4}" fill="#e8f5e9"/>'
        )
        for outage in point.outages:
            x1, x2 = _x(outage.start, report), _x(outage.end, report)
            colour = DOWN_UPSTREAM if outage.caused_by else DOWN_OWN
            parts.append(
                f'<rect x="{x1:.1f}" y="{y + 2}" width="{max(x2 - x1, 1.5):.1f}" '
                f'height="{row_height - 4}" fill="{colour}"/>'
            )
    axis_y = top + max(len(rows), 1) * row_height + 2
    parts += _time_axis(report, axis_y)
    return _svg(axis_y + 24, parts, label)


def histogram(values: list[float], edges: list[float], label: str, colour: str = "#1f77b4") -> str:
    """Bars counting the values in [edge_i, edge_i+1); the last bar takes the rest."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        index = next((i for i in range(len(edges) - 1) if value < edges[i + 1]), len(counts) - 1)
        counts[max(index, 0)] += 1
    top, plot = 10, 140
    bottom = top + plot
    most = max(counts) or 1
    slot = (WIDTH - LEFT - RIGHT) / len(counts)
    parts = [f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#444"/>']
    for index, count in enumerate(counts):
        height = count / most * plot
        x = LEFT + index * slot
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{bottom - height:.1f}" width="{slot - 4:.1f}" '
            f'height="{height:.1f}" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{bottom - height - 3:.1f}" '
            f'text-anchor="middle">{count}</text>'
        )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{bottom + 14}" text-anchor="middle">'
            f"{edges[index]:g}–{edges[index + 1]:g}</text>"
        )
    return _svg(bottom + 22, parts, label)
