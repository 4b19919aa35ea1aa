"""After a session: availability per tier and per point over the dashboard's time range
(set it to the session's start and end: the sessions table links do), the outages, the
quality distributions. Built on the recording rules so months stay fast."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    DATASOURCE,
    LOSS_STEPS,
    MOS_STEPS,
    RTT_STEPS,
    Context,
    base_dashboard,
    grid,
    organize,
    override_unit,
    scope_variables,
    target,
    thresholds,
    transformation,
    with_names,
)

AVAILABILITY_STEPS = thresholds((None, "red"), (0.95, "yellow"), (0.99, "green"))


def build(ctx: Context) -> db.Dashboard:
    t = ctx.text
    board = base_dashboard(ctx, "session", refresh="", time_from="now-24h")
    for variable in scope_variables(ctx):
        board = board.with_variable(variable)
    panels = [
        (sessions_table(ctx), grid(0, 0, 24, 6)),
        (tier_availability(ctx), grid(0, 6, 10, 8)),
        (tier_availability_over_time(ctx), grid(10, 6, 14, 8)),
        (point_availability(ctx), grid(0, 14, 10, 14)),
        (outages(ctx), grid(10, 14, 14, 14)),
        (mos_distribution(ctx), grid(0, 28, 8, 8)),
        (rtt_distribution(ctx), grid(8, 28, 16, 8)),
    ]
    tier_graphs = [
        ("tier_loss", "tier:bridge_icmp_packet_loss:ratio_rate5m", "percentunit", LOSS_STEPS),
        ("tier_rtt_p95", "tier:bridge_icmp_rtt_seconds:p95_rate5m", "s", RTT_STEPS),
        ("tier_jitter", "tier:bridge_icmp_jitter_seconds:avg_over_time5m", "s", None),
        ("tier_mos", "tier:bridge_mos:avg_over_time5m", "none", MOS_STEPS),
    ]
    for index, (title, record, unit, steps) in enumerate(tier_graphs):
        panel = (
            timeseries.Panel()
            .title(t(title))
            .datasource(DATASOURCE)
            .with_target(target(f'{record}{{tier=~"$tier"}}', "{{tier}}"))
            .unit(unit)
        )
        if steps is not None:
            panel = panel.thresholds(steps)
        panels.append((panel, grid((index % 2) * 12, 36 + (index // 2) * 8, 12, 8)))
    for panel, position in panels:
        board = board.with_panel(panel.grid_pos(position))
    return board


def sessions_table(ctx: Context) -> table.Panel:
    """Every session of the inventory; a click opens this dashboard over its window."""
    t = ctx.text
    info = "max by (session, title) (last_over_time(bridge_session_info[$__range]))"
    start = "max by (session) (last_over_time(bridge_session_start_timestamp_seconds[$__range]))"
    end = "max by (session) (last_over_time(bridge_session_end_timestamp_seconds[$__range]))"
    url = f"/d/{ctx.uid('session')}?from=${{__data.fields.start}}&to=${{__data.fields.end}}"
    return (
        table.Panel()
        .title(t("sessions"))
        .datasource(DATASOURCE)
        .with_target(
            target(
                f"{info} * on(session) group_left() {start} * 1000",
                ref="A",
                instant=True,
                table=True,
            )
        )
        .with_target(
            target(
                f"{info} * on(session) group_left() {end} * 1000", ref="B", instant=True, table=True
            )
        )
        .with_transformation(transformation("merge", {}))
        .with_transformation(
            organize(
                {
                    "title": t("col_session"),
                    "Value #A": "start",
                    "Value #B": "end",
                    "session": "id",
                },
                hide=("Time",),
            )
        )
        .unit("dateTimeAsLocal")
        .override_by_name(
            t("col_session"),
            [
                dm.DynamicConfigValue(
                    id_val="links", value=[{"title": t("link_session"), "url": url}]
                )
            ],
        )
        .sort_by([cb.TableSortByFieldState().display_name("start").desc(True)])
    )


def tier_availability(ctx: Context) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(ctx.text("tier_availability"))
        .datasource(DATASOURCE)
        .with_target(
            target(
                'avg_over_time(tier:bridge_up:avg_over_time5m{tier=~"$tier"}[$__range])',
                "{{tier}}",
                instant=True,
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(2)
        .thresholds(AVAILABILITY_STEPS)
        .display_mode(cm.BarGaugeDisplayMode.LCD)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def tier_availability_over_time(ctx: Context) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(ctx.text("tier_availability_time"))
        .datasource(DATASOURCE)
        .with_target(target('tier:bridge_up:avg_over_time1h{tier=~"$tier"}', "{{tier}}"))
        .unit("percentunit")
        .max(1)
        .thresholds(AVAILABILITY_STEPS)
    )


def point_availability(ctx: Context) -> table.Panel:
    t = ctx.text
    availability = f"avg_over_time(endpoint:bridge_up:avg_over_time5m{{{ctx.scope()}}}[$__range])"
    expr = with_names(f"max by (endpoint, tier) ({availability})", "name, parent_name")
    return (
        table.Panel()
        .title(t("point_availability"))
        .datasource(DATASOURCE)
        .with_target(target(expr, instant=True, table=True))
        .with_transformation(
            organize(
                {
                    "name": t("col_name"),
                    "Value": t("col_availability"),
                    "tier": t("col_tier"),
                    "parent_name": t("col_parent"),
                    "endpoint": "id",
                },
                hide=("Time", "parent"),
            )
        )
        .unit("percentunit")
        .decimals(2)
        .thresholds(AVAILABILITY_STEPS)
        .override_by_name(
            t("col_availability"),
            [
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                )
            ],
        )
        .sort_by([cb.TableSortByFieldState().display_name(t("col_availability")).desc(False)])
    )


def outages(ctx: Context) -> table.Panel:
    """One row per outage in the range: bridge_down_since_timestamp_seconds holds the
    outage's start while it lasts, so its value, made a label (count_values), tells the
    outages apart; the last step it is seen is the end (to the subquery's step). It counts
    only while bridge_up is 0: history without staleness markers (backfilled blocks) keeps
    a vanished series for the 5-minute lookback, which would stretch every outage."""
    t = ctx.text
    scope = ctx.scope()
    since = (
        f"(max by (endpoint, tier) (bridge_down_since_timestamp_seconds{{{scope}}})"
        f" and on(endpoint, tier) (max by (endpoint, tier) (bridge_up{{{scope}}}) == 0))"
    )
    outage = (
        f"({since} * on(endpoint, tier) group_left(since)"
        f' count_values by (endpoint, tier) ("since", {since}))'
    )
    window = "[$__range:$__interval]"
    queries = {
        "A": f"min_over_time({outage}{window}) * 1000",
        "B": f"max_over_time(timestamp({outage}){window}) * 1000",
        "C": f"max_over_time(timestamp({outage}){window}) - min_over_time({outage}{window})",
    }
    panel = table.Panel().title(t("outages")).datasource(DATASOURCE)
    for ref, expr in queries.items():
        named = with_names(expr, "name, parent_name")
        panel = panel.with_target(target(named, ref=ref, instant=True, table=True))
    start, end, duration = t("col_start"), t("col_end"), t("col_duration")
    return (
        panel.with_transformation(transformation("merge", {}))
        .with_transformation(
            organize(
                {
                    "name": t("col_name"),
                    "Value #A": start,
                    "Value #B": end,
                    "Value #C": duration,
                    "tier": t("col_tier"),
                    "parent_name": t("col_parent"),
                    "endpoint": "id",
                },
                hide=("Time", "parent", "since"),
            )
        )
        .unit("dtdurations")
        .with_override(*override_unit(start, "dateTimeAsLocal"))
        .with_override(*override_unit(end, "dateTimeAsLocal"))
        .sort_by([cb.TableSortByFieldState().display_name(start).desc(True)])
    )


def mos_distribution(ctx: Context) -> bargauge.Panel:
    mean = f"avg_over_time(endpoint:bridge_mos:avg_over_time5m{{{ctx.scope()}}}[$__range])"
    bands = [
        ("A", f"count({mean} >= 4) or vector(0)", "mos_good"),
        ("B", f"count({mean} < 4 and {mean} >= 3.6) or vector(0)", "mos_fair"),
        ("C", f"count({mean} < 3.6) or vector(0)", "mos_poor"),
    ]
    panel = bargauge.Panel().title(ctx.text("mos_distribution")).datasource(DATASOURCE)
    for ref, expr, legend in bands:
        panel = panel.with_target(target(expr, ctx.text(legend), ref=ref, instant=True))
    return (
        panel.unit("none")
        .decimals(0)
        .min(0)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .override_by_name(ctx.text("mos_good"), [fixed_color("green")])
        .override_by_name(ctx.text("mos_fair"), [fixed_color("yellow")])
        .override_by_name(ctx.text("mos_poor"), [fixed_color("red")])
    )


def rtt_distribution(ctx: Context) -> bargauge.Panel:
    """Share of ICMP packets per RTT bucket over the range, from the per-tier bucket rates
    (tier_le:...:rate5m, summed over the range: every 5-minute rate weighs alike)."""
    record = "tier_le:bridge_icmp_rtt_seconds_bucket:rate5m"
    buckets = f'sum by (le) (sum_over_time({record}{{tier=~"$tier"}}[$__range]))'
    total = f'scalar(sum(sum_over_time({record}{{tier=~"$tier", le="+Inf"}}[$__range])))'
    return (
        bargauge.Panel()
        .title(ctx.text("rtt_distribution"))
        .datasource(DATASOURCE)
        .with_target(target(f"{buckets} / {total}", "≤ {{le}} s", instant=True))
        .unit("percentunit")
        .min(0)
        .max(1)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.VERTICAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def fixed_color(color: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})
