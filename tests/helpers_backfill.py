"""A backfilled Prometheus history for the dashboard tests: a real /metrics page replayed as
OpenMetrics over a past window (`promtool tsdb create-blocks-from openmetrics`), the shipped
recording rules backfilled over it (`promtool tsdb create-blocks-from rules`, one pass per
dependency level), and the time parameters Grafana sends for a dashboard time range.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
TRAIN_PACKETS = 3  # per round, as the fast inventory's ICMP module sends
DEFAULT_RTT_SECONDS = 0.02


# --- which series a set of queries reads ----------------------------------------------------


def recording_rules(rule_files: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Every recording rule of the files by the name it records, with its group's name."""
    rules: dict[str, dict[str, Any]] = {}
    for path in rule_files:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    rules[rule["record"]] = {**rule, "group": group["name"]}
    return rules


def names_read(exprs: Iterable[str], rules: dict[str, dict[str, Any]]) -> tuple[set, set]:
    """(recording rules, other names) the queries read, following rules into their exprs.
    Other names are every identifier left (functions and labels too): intersect them with
    the exposition's sample names."""
    used_rules: set[str] = set()
    others: set[str] = set()
    pending = [NAME.findall(expr) for expr in exprs]
    while pending:
        for name in pending.pop():
            if name in rules and name not in used_rules:
                used_rules.add(name)
                pending.append(NAME.findall(rules[name]["expr"]))
            elif name not in rules:
                others.add(name)
    return used_rules, others


def rule_levels(rules: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The recording rules in passes: a pass reads only raw series and earlier passes.
    `promtool tsdb create-blocks-from rules` evaluates every rule against the Prometheus
    it is given, so a rule reading another recording rule needs that rule's blocks loaded
    first (Prometheus docs, "Backfilling for Recording Rules": "run the backfill
    again")."""
    depends = {
        name: {n for n in NAME.findall(rule["expr"]) if n in rules and n != name}
        for name, rule in rules.items()
    }
    level: dict[str, int] = {}

    def of(name: str, seen: tuple[str, ...] = ()) -> int:
        if name in seen:
            raise ValueError(f"recording rules depend on each other in a cycle: {seen}")
        if name not in level:
            level[name] = 1 + max((of(d, (*seen, name)) for d in depends[name]), default=-1)
        return level[name]

    for name in rules:
        of(name)
    return [sorted(n for n in rules if level[n] == k) for k in range(max(level.values()) + 1)]


# --- the raw history ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """`root` and the points below it down over [start, end): the root is the cause."""

    root: str
    below: frozenset[str]
    start: float
    end: float

    def down(self, endpoint: str, moment: float) -> bool:
        return endpoint in self.below | {self.root} and self.start <= moment < self.end

    def upstream_down(self, endpoint: str, moment: float) -> bool:
        return endpoint in self.below and self.start <= moment < self.end


@dataclass(frozen=True)
class Session:
    name: str
    start: float
    end: float


def _labels(labels: dict[str, str]) -> str:
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{key}="{escaped(value)}"' for key, value in labels.items())


def replay(
    page: str,
    names: set[str],
    *,
    times: list[float],
    outage: Outage,
    session: Session,
    target: dict[str, str],
) -> str:
    """The exporter page's samples whose names are in `names`, every `times` moment, as the
    exporter would have exposed them: every point up but `outage`'s (bridge_up,
    bridge_upstream_up, bridge_down_since_timestamp_seconds follow it), ICMP counters
    growing by TRAIN_PACKETS a round (no replies while down, each reply in the bucket of
    the point's mean RTT on the page), `session` retimed to its window, other gauges as on
    the page. `target` holds the labels a scrape adds (job, instance)."""
    families = list(text_string_to_metric_families(page))
    rtt = _mean_rtts(families)
    lines: list[str] = []
    for family in families:
        samples = [s for s in family.samples if s.name in names]
        if family.name == "bridge_down_since_timestamp_seconds":
            continue  # written from bridge_up's labels below: the page's outages are not ours
        if not samples:
            continue
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in samples:
            value = _value_over_time(sample.name, sample.labels, sample.value, outage, session)
            text = _labels({**target, **sample.labels})
            series = f"{sample.name}{{{text}}}"
            for index, moment in enumerate(times):
                figure = value(index, moment, rtt.get(sample.labels.get("endpoint", "")))
                if figure is not None:
                    lines.append(f"{series} {float(figure)!r} {moment:.0f}")
        if family.name == "bridge_up" and "bridge_down_since_timestamp_seconds" in names:
            lines.append("# TYPE bridge_down_since_timestamp_seconds gauge")
            for sample in family.samples:
                series = (
                    f"bridge_down_since_timestamp_seconds{{{_labels({**target, **sample.labels})}}}"
                )
                lines += [
                    f"{series} {outage.start:.0f} {moment:.0f}"
                    for moment in times
                    if outage.down(sample.labels["endpoint"], moment)
                ]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _mean_rtts(families: list[Any]) -> dict[str, float]:
    sums, counts = {}, {}
    for family in families:
        for sample in family.samples:
            if sample.name == "bridge_icmp_rtt_seconds_sum":
                sums[sample.labels["endpoint"]] = sample.value
            elif sample.name == "bridge_icmp_rtt_seconds_count":
                counts[sample.labels["endpoint"]] = sample.value
    return {e: sums[e] / counts[e] for e in sums if counts.get(e)}


ValueAt = Callable[[int, float, "float | None"], "float | None"]


def _value_over_time(
    name: str, labels: dict[str, str], value: float, outage: Outage, session: Session
) -> ValueAt:
    endpoint = labels.get("endpoint", "")

    if name == "bridge_up":
        return lambda i, t, _: 0 if outage.down(endpoint, t) else 1
    if name == "bridge_upstream_up":
        return lambda i, t, _: 0 if outage.upstream_down(endpoint, t) else 1
    if name == "bridge_session_start_timestamp_seconds" and labels["session"] == session.name:
        return lambda i, t, _: session.start
    if name == "bridge_session_end_timestamp_seconds" and labels["session"] == session.name:
        return lambda i, t, _: session.end
    if name == "bridge_session_active":
        return lambda i, t, _: (
            1 if labels["session"] == session.name and session.start <= t < session.end else 0
        )
    if name == "bridge_icmp_packets_sent_total":
        return lambda i, t, _: TRAIN_PACKETS * (i + 1)
    if name in (
        "bridge_icmp_packets_received_total",
        "bridge_icmp_rtt_seconds_count",
        "bridge_icmp_rtt_seconds_sum",
        "bridge_icmp_rtt_seconds_bucket",
    ):
        return _Replies(name, labels, outage)
    return lambda i, t, _: value


class _Replies:
    """A reply counter: TRAIN_PACKETS more each round the point is up (counted as it goes,
    the replay asks for the rounds in time order)."""

    def __init__(self, name: str, labels: dict[str, str], outage: Outage):
        self.name, self.labels, self.outage = name, labels, outage
        self.total = 0.0

    def __call__(self, index: int, moment: float, rtt: float | None) -> float:
        mean = DEFAULT_RTT_SECONDS if rtt is None else rtt
        if not self.outage.down(self.labels["endpoint"], moment):
            if self.name == "bridge_icmp_rtt_seconds_sum":
                self.total += TRAIN_PACKETS * mean
            elif self.name != "bridge_icmp_rtt_seconds_bucket" or mean <= float(self.labels["le"]):
                self.total += TRAIN_PACKETS
        return round(self.total, 6)


# --- blocks --------------------------------------------------------------------------------


def move_blocks(source: Path, data: Path) -> list[str]:
    """Every block directory promtool wrote into `source`, moved into a stopped
    Prometheus's data directory (it loads blocks when it starts)."""
    data.mkdir(parents=True, exist_ok=True)
    moved = []
    for block in sorted(p for p in source.iterdir() if (p / "meta.json").exists()):
        shutil.move(str(block), str(data / block.name))
        moved.append(block.name)
    return moved


def rules_file(path: Path, rules: dict[str, dict[str, Any]], names: list[str]) -> Path:
    """The named recording rules in their groups, as a rules file promtool reads."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        rule = {k: v for k, v in rules[name].items() if k != "group"}
        groups.setdefault(rules[name]["group"], []).append(rule)
    document = {"groups": [{"name": g, "rules": r} for g, r in groups.items()]}
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")
    return path


# --- Grafana's time parameters ------------------------------------------------------------

# gtime.RoundInterval (grafana-plugin-sdk-go), from 5 s up: (below this, round to that).
ROUNDING = (
    (7.5, 5),
    (12.5, 10),
    (17.5, 15),
    (25, 20),
    (45, 30),
    (90, 60),
    (210, 120),
    (450, 300),
    (750, 600),
    (1050, 900),
    (1500, 1200),
    (2700, 1800),
    (5400, 3600),
    (9000, 7200),
    (16200, 10800),
    (32400, 21600),
    (86400, 43200),
    (604800, 86400),
)
SAFE_RESOLUTION = 11000  # Grafana never asks Prometheus for more points than this


def round_interval(seconds: float) -> float:
    return next((to for below, to in ROUNDING if seconds < below), 604800)


@dataclass(frozen=True)
class GrafanaTimes:
    """What Grafana's Prometheus datasource sends for one query over [start, end]
    (pkg/promlib/models/query.go): the step, and $__interval, $__rate_interval, $__range."""

    start: float
    end: float
    step: float
    variables: dict[str, str]

    def params(self, expr: str, *, instant: bool) -> tuple[str, dict[str, str]]:
        if instant:
            return "query", {"query": expr, "time": f"{self.end:.3f}"}
        # Grafana aligns both ends down to a multiple of the step.
        start = math.floor(self.start / self.step) * self.step
        end = math.floor(self.end / self.step) * self.step
        return "query_range", {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{self.step:g}",
        }


def grafana_times(
    start: float, end: float, *, max_data_points: int, scrape_interval: float
) -> GrafanaTimes:
    """The interval is range / max data points (the panel's width in pixels), rounded, at
    least the datasource's scrape interval (its timeInterval) and range / 11000;
    $__rate_interval = max(interval + scrape interval, 4 x scrape interval)."""
    span = end - start
    interval = span / max_data_points
    interval = scrape_interval if interval < scrape_interval else round_interval(interval)
    step = max(interval, round_interval(span / SAFE_RESOLUTION))
    rate = max(step + scrape_interval, 4 * scrape_interval)
    variables = {
        "__interval": f"{step:g}s",
        "__rate_interval": f"{rate:g}s",
        "__range": f"{round(span)}s",
    }
    return GrafanaTimes(start, end, step, variables)


def rounds(start: float, end: float, every: float) -> Iterator[float]:
    moment = start
    while moment <= end:
        yield moment
        moment += every
