"""The `report` subcommand: arguments, gathering from Prometheus, writing one format."""

from __future__ import annotations

import argparse
import sys
import time
import zoneinfo
from pathlib import Path

from ..check import Progress
from ..config import ConfigError, load_inventory
from ..config.sessions import DEFAULT_TIMEZONE
from ..i18n import text
from . import compute
from .query import MAX_POINTS_PER_QUERY, Prometheus, PrometheusError, chunk_count
from .timeparse import TimeParseError, parse_time

FORMATS = ("html", "md", "csv", "json")
TRAINS = ("stamp", "icmp")  # the graded train first, as the exporter grades
# Above this range the tier chart reads the recording rule's 5-minute ratios, if recorded.
RULES_FROM_SECONDS = 6 * 3600
TIER_RULE = "tier:bridge_up:avg_over_time5m"


def _seconds(value: str) -> float:
    from ..config.values import parse_duration

    try:
        seconds = float(parse_duration(value))
    except Exception:
        raise argparse.ArgumentTypeError(f"{value!r}: write a duration, e.g. 15s or 1m") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the step must be more than 0")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus.url", dest="prometheus_url", required=True)
    parser.add_argument("--session", help="the session's window and points (needs --config.file)")
    parser.add_argument("--config.file", dest="config_file", help="inventory with the session")
    parser.add_argument("--from", dest="time_from", help="start, e.g. '2021-03-27 07:30'")
    parser.add_argument("--to", dest="time_to", help="end, e.g. '2021-03-27 11:30'")
    parser.add_argument(
        "--timezone", default=None, help=f"for --from/--to and shown times ({DEFAULT_TIMEZONE})"
    )
    parser.add_argument(
        "--step", type=_seconds, default=15.0, help="sample spacing: the scrape interval (15s)"
    )
    parser.add_argument("--format", choices=FORMATS, default="html")
    parser.add_argument("--lang", choices=["en", "vi"], default="en")
    parser.add_argument("--output", help="file to write (default: standard output)")


def _fail(message: str, code: int = 1) -> int:
    print(f"bridge-exporter report: {message}", file=sys.stderr)
    return code


def run_report(args: argparse.Namespace) -> int:
    try:
        window = _window(args)
    except (ValueError, ConfigError) as exc:
        return _fail(str(exc), 2 if isinstance(exc, TimeParseError | UsageError) else 1)
    prometheus = Prometheus(args.prometheus_url)
    try:
        report = gather(prometheus, window, args.step, args.lang)
    except PrometheusError as exc:
        return _fail(str(exc))
    output = render(report, args.format, args.lang)
    if args.output:
        try:
            Path(args.output).write_text(output, encoding="utf-8")
        except OSError as exc:
            return _fail(f"{args.output}: cannot write the report ({exc.strerror})")
    else:
        sys.stdout.write(output)
    return 0


class UsageError(ValueError):
    pass


class Window:
    def __init__(self, start, end, tz, title, session, infos, tier_order):
        self.start: float = start
        self.end: float = end
        self.tz: str = tz
        self.title: str = title
        self.session: str | None = session
        self.infos: dict[str, compute.PointInfo] | None = infos  # None: every point seen
        self.tier_order: list[str] = tier_order


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone {name!r}: not an IANA zone, e.g. Asia/Ho_Chi_Minh") from None


def _window(args: argparse.Namespace) -> Window:
    if args.timezone:
        _zone(args.timezone)  # checked before any query, whichever window is asked for
    if args.session:
        if not args.config_file:
            raise UsageError("--session needs --config.file, the inventory that defines it")
        if args.time_from or args.time_to:
            raise UsageError("give either --session or --from and --to, not both")
        inventory = load_inventory(args.config_file)
        session = next((s for s in inventory.sessions if s.name == args.session), None)
        if session is None:
            known = ", ".join(s.name for s in inventory.sessions) or "-"
            raise UsageError(
                f"{args.config_file}: no session {args.session!r} (sessions: {known}); "
                "name one of them"
            )
        infos = {
            e.id: compute.PointInfo(e.id, e.name, e.tier, e.parent, e.delegates or 0)
            for e in inventory.endpoints.values()
            if e.id in session.endpoints
        }
        return Window(
            session.start,
            session.end,
            args.timezone or session.timezone,
            session.title,
            session.name,
            infos,
            list(inventory.tier_names),
        )
    if not (args.time_from and args.time_to):
        raise UsageError("give --session NAME --config.file FILE, or --from T --to T")
    tz_name = args.timezone or DEFAULT_TIMEZONE
    tz = _zone(tz_name)
    start, end = parse_time(args.time_from, tz), parse_time(args.time_to, tz)
    if end <= start:
        raise UsageError(f"--to ({args.time_to}) must be after --from ({args.time_from})")
    return Window(start, end, tz_name, "", None, None, [])


def gather(prometheus: Prometheus, window: Window, step: float, lang: str) -> compute.Report:
    span = window.end - window.start
    step = max(step, span / MAX_POINTS_PER_QUERY)
    last = window.end - step  # the grid's last point: [start, end) has span/step samples
    if last < window.start:
        last = window.start
    queries = 4 + 2 * len(TRAINS) + 2
    progress = Progress(
        chunk_count(window.start, last, step) + queries, text(lang, "report.progress")
    )
    try:
        raw = prometheus.query_range("bridge_up", window.start, last, step, progress.step)
        up: dict[str, dict[float, float]] = {}
        labels_of: dict[str, dict[str, str]] = {}
        for key, samples in raw.items():
            labels = dict(key)
            point = labels.get("endpoint")
            if not point:
                continue
            labels_of.setdefault(point, labels)
            merged = up.setdefault(point, {})
            for moment, value in samples:  # several exporters (shards, pairs): up if any is
                merged[moment] = max(value, merged.get(moment, 0.0))
        infos = window.infos or _infos_from_prometheus(prometheus, labels_of, last, span, progress)
        tier_order = window.tier_order or _tier_order(infos)
        quality = _quality(prometheus, last, last - window.start, progress)
        interval = _probe_interval(prometheus, last, span)
    finally:
        progress.close()
    report = compute.build(
        title=window.title,
        session=window.session,
        start=window.start,
        end=window.end,
        step=step,
        timezone=window.tz,
        source=prometheus.url,
        generated=time.time(),
        tier_order=tier_order,
        infos=infos,
        up={p: sorted(samples.items()) for p, samples in up.items() if p in infos},
        quality=quality,
        # Each point is probed at its own moment of the interval, so a district's communes
        # may go down up to one interval (and one sample) before the district does.
        skew=interval + step,
    )
    if span >= RULES_FROM_SECONDS:
        _tier_series_from_rules(prometheus, report, last)
    return report


def _probe_interval(prometheus: Prometheus, at: float, span: float) -> float:
    """The exporters' probe interval over the range (0 when Prometheus has none)."""
    found = prometheus.query(
        f"max(max_over_time(bridge_exporter_probe_interval_seconds[{int(span) + 1}s]))", at
    )
    return float(found[0]["value"][1]) if found else 0.0


def _infos_from_prometheus(prometheus, labels_of, at, span, progress) -> dict:
    window = f"{int(span) + 1}s"
    info = {
        r["metric"].get("endpoint"): r["metric"]
        for r in prometheus.query(f"last_over_time(bridge_endpoint_info[{window}])", at)
    }
    progress.step()
    delegates = {
        r["metric"].get("endpoint"): float(r["value"][1])
        for r in prometheus.query(f"last_over_time(bridge_endpoint_delegates[{window}])", at)
    }
    progress.step()
    infos = {}
    for point, labels in labels_of.items():
        facts = info.get(point, {})
        infos[point] = compute.PointInfo(
            point,
            facts.get("name", point),
            labels.get("tier", facts.get("tier", "")),
            facts.get("parent") or None,
            int(delegates.get(point, 0)),
        )
    return infos


def _tier_order(infos: dict[str, compute.PointInfo]) -> list[str]:
    depth: dict[str, int] = {}
    for point, info in infos.items():
        level = len(compute.ancestors(point, infos))
        depth[info.tier] = min(level, depth.get(info.tier, level))
    return sorted(depth, key=lambda t: (depth[t], t))


def _by_endpoint(prometheus: Prometheus, promql: str, at: float) -> dict[str, float]:
    values = {}
    for item in prometheus.query(promql, at):
        value = float(item["value"][1])
        if item["metric"].get("endpoint") and value == value:  # skip NaN
            values[item["metric"]["endpoint"]] = value
    return values


def _quality(prometheus: Prometheus, at: float, span: float, progress) -> dict[str, dict]:
    """Per point over the whole range: loss from the packet counters (the graded train:
    STAMP when it sent packets, else ICMP), mean RTT from the RTT histogram's sum and
    count, mean jitter and MOS of the rounds."""
    window = f"{max(int(span), 1)}s"
    quality: dict[str, dict[str, float]] = {}
    for train in reversed(TRAINS):  # STAMP last, so it wins where both measured
        sent = _by_endpoint(
            prometheus,
            f"sum by (endpoint) (increase(bridge_{train}_packets_sent_total[{window}]))",
            at,
        )
        received = _by_endpoint(
            prometheus,
            f"sum by (endpoint) (increase(bridge_{train}_packets_received_total[{window}]))",
            at,
        )
        progress.step()
        rtt = _by_endpoint(
            prometheus,
            f"sum by (endpoint) (increase(bridge_{train}_rtt_seconds_sum[{window}]))"
            f" / sum by (endpoint) (increase(bridge_{train}_rtt_seconds_count[{window}]) > 0)",
            at,
        )
        progress.step()
        for point, count in sent.items():
            # A train that never got a reply over the whole range did not measure the
            # path (no reflector there): it gives way, as in the exporter's grade.
            if count > 0 and received.get(point, 0.0) > 0:
                # Loss and RTT from the same train, never one from each.
                quality[point] = {
                    "loss_ratio": max(0.0, 1 - received[point] / count),
                    **({"rtt_seconds": rtt[point]} if point in rtt else {}),
                }
    for key, promql in (
        ("jitter_seconds", f"avg by (endpoint) (avg_over_time(bridge_jitter_seconds[{window}]))"),
        ("mos", f"avg by (endpoint) (avg_over_time(bridge_mos[{window}]))"),
    ):
        for point, value in _by_endpoint(prometheus, promql, at).items():
            quality.setdefault(point, {})[key] = value
        progress.step()
    return quality


def _tier_series_from_rules(prometheus: Prometheus, report: compute.Report, last: float) -> None:
    """Long ranges: the tier chart from the recording rule where Prometheus has it."""
    step = max(report.step, 300.0)
    series = prometheus.query_range(TIER_RULE, report.start, last, step)
    by_tier = {dict(k).get("tier"): v for k, v in series.items()}
    for tier in report.tiers:
        if by_tier.get(tier.tier):
            tier.series = by_tier[tier.tier]


def render(report: compute.Report, fmt: str, lang: str) -> str:
    if fmt == "html":
        from .render_html import render_html

        return render_html(report, lang)
    if fmt == "md":
        from .render_md import render_markdown

        return render_markdown(report, lang)
    if fmt == "csv":
        from .render_csv import render_csv

        return render_csv(report, lang)
    from .render_json import render_json

    return render_json(report)
