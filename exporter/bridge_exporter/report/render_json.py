"""JSON for machines: Unix times and ISO 8601 in the report's zone, ratios 0..1, seconds."""

from __future__ import annotations

import datetime as dt
import json

from ..i18n import zone
from .compute import Report


def render_json(report: Report) -> str:
    tz = zone(report.timezone)

    def iso(unix: float) -> str:
        return dt.datetime.fromtimestamp(unix, tz).isoformat()

    document = {
        "title": report.title,
        "session": report.session,
        "start": iso(report.start),
        "end": iso(report.end),
        "timezone": report.timezone,
        "step_seconds": report.step,
        "source": report.source,
        "availability": report.availability,
        "mttr_seconds": report.mttr_seconds,
        "delegates_affected": report.delegates_affected,
        "tiers": [
            {
                "tier": t.tier,
                "points": t.points,
                "availability": t.availability,
                "outages": t.outages,
            }
            for t in report.tiers
        ],
        "points": [
            {
                "endpoint": p.info.id,
                "name": p.info.name,
                "tier": p.info.tier,
                "parent": p.info.parent,
                "delegates": p.info.delegates,
                "availability": p.availability,
                "samples": p.samples,
                "downtime_seconds": p.downtime,
                "outages": len(p.outages),
                "quality": p.quality,
            }
            for p in report.points
        ],
        "outages": [
            {
                "endpoint": o.endpoint,
                "start": iso(o.start),
                "start_unix": o.start,
                "end": iso(o.end),
                "end_unix": o.end,
                "duration_seconds": o.duration,
                "ongoing": o.ongoing,
                "caused_by": o.caused_by,
                "upstream": o.caused_by is not None,
            }
            for o in report.outages
        ],
        "worst_points": [p.info.id for p in report.worst_points()],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
