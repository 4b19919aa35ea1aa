"""CSV for spreadsheets: one section per table (a title line, a header, rows), sections
separated by an empty line."""

from __future__ import annotations

import csv
import io

from ..i18n import text
from . import tables
from .compute import Report


def render_csv(report: Report, lang: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    sections = [
        (
            text(lang, "report.summary"),
            ([text(lang, "report.summary"), ""], tables.summary(report, lang)),
        ),
        (text(lang, "report.by_tier"), tables.tiers(report, lang)),
        (text(lang, "report.outages"), tables.outages(report, lang)),
        (text(lang, "report.by_point"), tables.points(report, lang)),
        (text(lang, "report.worst"), tables.worst(report, lang)),
    ]
    for index, (title, (header, rows)) in enumerate(sections):
        if index:
            out.write("\n")
        writer.writerow([title])
        writer.writerow(header)
        writer.writerows(rows)
    return out.getvalue()
