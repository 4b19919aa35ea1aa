"""The report's tables as localized rows of text, shared by the HTML, Markdown and CSV
writers (so the three show the same figures)."""

from __future__ import annotations

from ..i18n import format_duration, format_percent, format_time, text, zone
from .compute import Outage, Report

Table = tuple[list[str], list[list[str]]]  # header, rows


def _optional(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else format_percent(ratio)


def summary(report: Report, lang: str) -> list[tuple[str, str]]:
    mttr = report.mttr_seconds
    return [
        (text(lang, "report.points"), str(len(report.points))),
        (text(lang, "report.availability"), _percent(report.availability) + " %"),
        (text(lang, "report.outage_count"), str(len(report.outages))),
        (text(lang, "report.root_outages"), str(len(report.root_outages))),
        (text(lang, "report.mttr"), format_duration(mttr) if mttr is not None else "-"),
        (text(lang, "report.delegates_affected"), str(report.delegates_affected)),
    ]


def tiers(report: Report, lang: str) -> Table:
    header = [text(lang, k) for k in ("col.tier", "col.points", "col.availability")]
    header.append(text(lang, "report.outage_count"))
    rows = [[t.tier, str(t.points), _percent(t.availability), str(t.outages)] for t in report.tiers]
    return header, rows


def points(report: Report, lang: str) -> Table:
    header = [
        text(lang, k)
        for k in (
            "col.endpoint",
            "col.name",
            "col.tier",
            "col.parent",
            "col.availability",
            "report.outage_count",
            "col.downtime",
            "col.delegates",
        )
    ]
    rows = [
        [
            p.info.id,
            p.info.name,
            p.info.tier,
            p.info.parent or "-",
            _percent(p.availability),
            str(len(p.outages)),
            format_duration(p.downtime),
            str(p.info.delegates),
        ]
        for p in sorted(report.points, key=lambda p: (p.availability or 0, p.info.id))
    ]
    return header, rows


def cause(outage: Outage, lang: str) -> str:
    if outage.caused_by:
        return f"{text(lang, 'report.upstream')}: {outage.caused_by}"
    return text(lang, "report.own")


def outages(report: Report, lang: str) -> Table:
    tz = zone(report.timezone)
    names = {p.info.id: p.info for p in report.points}
    header = [
        text(lang, k)
        for k in (
            "col.endpoint",
            "col.name",
            "col.start",
            "col.end",
            "col.duration",
            "col.cause",
            "col.delegates",
        )
    ]
    rows = []
    for outage in report.outages:
        info = names[outage.endpoint]
        end = format_time(lang, outage.end, tz)
        if outage.ongoing:
            end = f"{text(lang, 'report.ongoing')} ({end})"
        rows.append(
            [
                outage.endpoint,
                info.name,
                format_time(lang, outage.start, tz),
                end,
                format_duration(outage.duration),
                cause(outage, lang),
                str(info.delegates),
            ]
        )
    return header, rows


def worst(report: Report, lang: str) -> Table:
    header = [
        text(lang, k)
        for k in ("col.endpoint", "col.name", "col.loss", "col.rtt", "col.jitter", "col.mos")
    ]
    rows = [
        [
            p.info.id,
            p.info.name,
            _optional(p.quality.get("loss_ratio"), 100, 2),
            _optional(p.quality.get("rtt_seconds"), 1000),
            _optional(p.quality.get("jitter_seconds"), 1000),
            _optional(p.quality.get("mos"), 1, 2),
        ]
        for p in report.worst_points()
    ]
    return header, rows


def heading(report: Report, lang: str) -> tuple[str, str]:
    tz = zone(report.timezone)
    title = text(lang, "report.title") + (f": {report.title}" if report.title else "")
    when = text(
        lang,
        "report.range",
        start=format_time(lang, report.start, tz, seconds=False),
        end=format_time(lang, report.end, tz, seconds=False),
        zone=report.timezone,
    )
    return title, when
