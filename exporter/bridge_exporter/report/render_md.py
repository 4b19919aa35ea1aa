"""Markdown, for pasting into official reports."""

from __future__ import annotations

from ..i18n import format_time, text, zone
from . import tables
from .compute import Report


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def _table(table: tables.Table) -> list[str]:
    header, rows = table
    lines = ["| " + " | ".join(map(_escape, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(_escape, row)) + " |" for row in rows]
    return lines


def render_markdown(report: Report, lang: str) -> str:
    title, when = tables.heading(report, lang)
    generated = text(
        lang,
        "report.generated",
        when=format_time(lang, report.generated, zone(report.timezone)),
        url=report.source,
    )
    lines = [f"# {title}", "", when, "", f"_{generated}_", ""]
    lines += [f"## {text(lang, 'report.summary')}", ""]
    lines += _table(
        ([text(lang, "report.summary"), ""], [list(r) for r in tables.summary(report, lang)])
    )
    lines += ["", f"## {text(lang, 'report.by_tier')}", "", *_table(tables.tiers(report, lang))]
    lines += ["", f"## {text(lang, 'report.outages')}", ""]
    outage_table = tables.outages(report, lang)
    lines += _table(outage_table) if outage_table[1] else [text(lang, "report.no_outages")]
    lines += ["", f"## {text(lang, 'report.by_point')}", "", *_table(tables.points(report, lang))]
    lines += ["", f"## {text(lang, 'report.worst')}", "", *_table(tables.worst(report, lang))]
    return "\n".join(lines) + "\n"
