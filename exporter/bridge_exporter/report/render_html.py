"""One self-contained HTML file: inline CSS and inline SVG, no script, nothing fetched."""

from __future__ import annotations

from html import escape

from ..i18n import format_time, text, zone
from . import charts, tables
from .compute import Report

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 60em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #bbb; padding: .25em .6em; text-align: left; }
th { background: #eee; } td.num { text-align: right; }
.meta { color: #555; } figure { margin: 1em 0; } figcaption { font-weight: bold; }
"""
MOS_EDGES = [1.0, 2.0, 3.0, 3.6, 4.0, 4.3, 4.5]
RTT_EDGES_MS = [0, 50, 150, 300, 500, 800, 10_000]


def _table(table: tables.Table) -> str:
    header, rows = table
    head = "".join(f"<th>{escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def render_html(report: Report, lang: str) -> str:
    title, when = tables.heading(report, lang)
    generated = text(
        lang,
        "report.generated",
        when=format_time(lang, report.generated, zone(report.timezone)),
        url=report.source,
    )
    summary = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
        for k, v in tables.summary(report, lang)
    )
    outage_table = tables.outages(report, lang)
    mos = [p.quality["mos"] for p in report.points if "mos" in p.quality]
    rtt = [p.quality["rtt_seconds"] * 1000 for p in report.points if "rtt_seconds" in p.quality]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(when)}<br>{escape(generated)}</p>',
        f"<h2>{escape(text(lang, 'report.summary'))}</h2><table>{summary}</table>",
        f"<h2>{escape(text(lang, 'report.by_tier'))}</h2>",
        _table(tables.tiers(report, lang)),
        _figure(
            text(lang, "report.chart_tiers"),
            charts.tier_availability(report, text(lang, "report.chart_tiers")),
        ),
        f"<h2>{escape(text(lang, 'report.outages'))}</h2>",
        _table(outage_table)
        if outage_table[1]
        else f"<p>{escape(text(lang, 'report.no_outages'))}</p>",
        _figure(
            text(lang, "report.chart_timeline"),
            charts.outage_timeline(report, text(lang, "report.chart_timeline")),
        ),
        f"<h2>{escape(text(lang, 'report.quality'))}</h2>",
        _figure(
            text(lang, "report.chart_mos"),
            charts.histogram(mos, MOS_EDGES, text(lang, "report.chart_mos")),
        ),
        _figure(
            text(lang, "report.chart_rtt"),
            charts.histogram(rtt, RTT_EDGES_MS, text(lang, "report.chart_rtt"), "#9467bd"),
        ),
        f"<h3>{escape(text(lang, 'report.worst'))}</h3>",
        _table(tables.worst(report, lang)),
        f"<h2>{escape(text(lang, 'report.by_point'))}</h2>",
        _table(tables.points(report, lang)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
