"""From sampled series to the report's figures: availability, outages, MTTR, quality.

Availability of a point is the share of its samples (one per step over the range) in which
bridge_up was 1; a tier's pools its points' samples. An outage runs from the first sample
at 0 to the first sample back at 1 (or the end of the range: ongoing). It was caused
upstream when an ancestor's outage had begun by its start and not yet ended. MTTR is the
mean duration of the root-cause outages (not caused upstream) that ended in the range:
a district's outage counts once, not once per commune behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

QUALITY_KEYS = ("loss_ratio", "rtt_seconds", "jitter_seconds", "mos")
WORST_POINTS = 5


@dataclass(frozen=True)
class PointInfo:
    id: str
    name: str
    tier: str
    parent: str | None
    delegates: int = 0


@dataclass
class Outage:
    endpoint: str
    start: float
    end: float
    ongoing: bool
    caused_by: str | None = None  # the down ancestor that caused it, if any

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class PointReport:
    info: PointInfo
    samples: int
    up_samples: int
    outages: list[Outage]
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def availability(self) -> float | None:
        return self.up_samples / self.samples if self.samples else None

    @property
    def downtime(self) -> float:
        return sum(o.duration for o in self.outages)


@dataclass
class TierReport:
    tier: str
    points: int
    samples: int
    up_samples: int
    outages: int
    series: list[tuple[float, float]]  # (time, share of the tier's points up)

    @property
    def availability(self) -> float | None:
        return self.up_samples / self.samples if self.samples else None


@dataclass
class Report:
    title: str
    session: str | None
    start: float
    end: float
    step: float
    timezone: str
    source: str
    generated: float
    tiers: list[TierReport]
    points: list[PointReport]
    outages: list[Outage]
    mttr_seconds: float | None
    delegates_affected: int

    @property
    def availability(self) -> float | None:
        samples = sum(t.samples for t in self.tiers)
        return sum(t.up_samples for t in self.tiers) / samples if samples else None

    @property
    def root_outages(self) -> list[Outage]:
        return [o for o in self.outages if o.caused_by is None]

    def worst_points(self) -> list[PointReport]:
        measured = [p for p in self.points if "mos" in p.quality]
        return sorted(measured, key=lambda p: (p.quality["mos"], p.info.id))[:WORST_POINTS]


def outages_of(endpoint: str, samples: list[tuple[float, float]], end: float) -> list[Outage]:
    found: list[Outage] = []
    down_since: float | None = None
    for moment, value in samples:
        if value < 0.5 and down_since is None:
            down_since = moment
        elif value >= 0.5 and down_since is not None:
            found.append(Outage(endpoint, down_since, moment, ongoing=False))
            down_since = None
    if down_since is not None:
        found.append(Outage(endpoint, down_since, end, ongoing=True))
    return found


def ancestors(point: str, infos: dict[str, PointInfo]) -> list[str]:
    chain, seen = [], {point}
    parent = infos[point].parent if point in infos else None
    while parent and parent not in seen:
        chain.append(parent)
        seen.add(parent)
        parent = infos[parent].parent if parent in infos else None
    return chain


def attribute_upstream(
    outages: dict[str, list[Outage]], infos: dict[str, PointInfo], skew: float = 0.0
) -> None:
    """Name the topmost ancestor whose outage covers each outage's start, or begins at most
    `skew` seconds after it (the point may be probed before its ancestor in a round)."""
    for point, own in outages.items():
        chain = list(reversed(ancestors(point, infos)))  # root first
        for outage in own:
            outage.caused_by = next(
                (
                    a
                    for a in chain
                    if any(o.start - skew <= outage.start < o.end for o in outages.get(a, []))
                ),
                None,
            )


def build(
    *,
    title: str,
    session: str | None,
    start: float,
    end: float,
    step: float,
    timezone: str,
    source: str,
    generated: float,
    tier_order: list[str],
    infos: dict[str, PointInfo],
    up: dict[str, list[tuple[float, float]]],
    quality: dict[str, dict[str, float]],
    skew: float = 0.0,
) -> Report:
    outages = {p: outages_of(p, up.get(p, []), end) for p in infos}
    attribute_upstream(outages, infos, skew)
    points = [
        PointReport(
            info,
            samples=len(up.get(p, [])),
            up_samples=sum(1 for _, v in up.get(p, []) if v >= 0.5),
            outages=outages[p],
            quality=quality.get(p, {}),
        )
        for p, info in infos.items()
    ]
    tiers = [t for t in tier_order if any(p.info.tier == t for p in points)]
    tiers += sorted({p.info.tier for p in points} - set(tiers))
    tier_reports = []
    for tier in tiers:
        members = [p for p in points if p.info.tier == tier]
        by_time: dict[float, list[float]] = {}
        for member in members:
            for moment, value in up.get(member.info.id, []):
                by_time.setdefault(moment, []).append(value)
        tier_reports.append(
            TierReport(
                tier,
                points=len(members),
                samples=sum(p.samples for p in members),
                up_samples=sum(p.up_samples for p in members),
                outages=sum(len(p.outages) for p in members),
                series=[(t, sum(v) / len(v)) for t, v in sorted(by_time.items())],
            )
        )
    every = sorted((o for p in points for o in p.outages), key=lambda o: (o.start, o.endpoint))
    recovered = [o.duration for o in every if o.caused_by is None and not o.ongoing]
    return Report(
        title=title,
        session=session,
        start=start,
        end=end,
        step=step,
        timezone=timezone,
        source=source,
        generated=generated,
        tiers=tier_reports,
        points=points,
        outages=every,
        mttr_seconds=sum(recovered) / len(recovered) if recovered else None,
        delegates_affected=sum(p.info.delegates for p in points if p.outages),
    )
