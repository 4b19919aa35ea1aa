"""The wall: is anything wrong, where, since when and why, readable across the room."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, geomap, stat, statetimeline, table
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    DATASOURCE,
    JITTER_STEPS,
    LOSS_STEPS,
    MOS_STEPS,
    RTT_STEPS,
    Context,
    base_dashboard,
    grid,
    link,
    organize,
    scope_variables,
    state_expr,
    state_mappings,
    target,
    thresholds,
    transformation,
    with_names,
)

TOP = 10  # points in each "worst" panel


def build(ctx: Context) -> db.Dashboard:
    t = ctx.text
    board = base_dashboard(ctx, "overview", refresh="10s", time_from="now-3h")
    for variable in scope_variables(ctx):
        board = board.with_variable(variable)
    board = board.link(link(t("link_endpoint"), f"/d/{ctx.uid('endpoint')}"))
    board = board.link(link(t("link_session"), f"/d/{ctx.uid('session')}"))

    width = max(2, 12 // len(ctx.tiers))
    for index, tier in enumerate(ctx.tiers):
        board = board.with_panel(tier_stat(ctx, tier).grid_pos(grid(index * width, 0, width, 6)))
    x = width * len(ctx.tiers)
    board = board.with_panel(points_down(ctx).grid_pos(grid(x, 0, 3, 6)))
    board = board.with_panel(delegates_down(ctx).grid_pos(grid(x + 3, 0, 3, 6)))
    board = board.with_panel(session_now(ctx).grid_pos(grid(x + 6, 0, 24 - x - 9, 6)))
    board = board.with_panel(session_clock(ctx).grid_pos(grid(21, 0, 3, 6)))
    board = board.with_panel(down_table(ctx).grid_pos(grid(0, 6, 14, 11)))
    board = board.with_panel(state_map(ctx).grid_pos(grid(14, 6, 10, 11)))

    worst = [
        (
            "worst_loss",
            "topk",
            "endpoint:bridge_packet_loss:ratio_rate5m",
            "percentunit",
            LOSS_STEPS,
        ),
        (
            "worst_jitter",
            "topk",
            "endpoint:bridge_jitter_seconds:avg_over_time5m",
            "s",
            JITTER_STEPS,
        ),
        ("worst_rtt", "topk", "endpoint:bridge_rtt_seconds:mean_rate5m", "s", RTT_STEPS),
        ("worst_mos", "bottomk", "endpoint:bridge_mos:avg_over_time5m", "none", MOS_STEPS),
    ]
    board = board.with_row(db.Row(t("row_quality")).grid_pos(grid(0, 17, 24, 1)))
    for index, (title, pick, record, unit, steps) in enumerate(worst):
        panel = worst_points(ctx, t(title), pick, record, unit, steps)
        board = board.with_panel(panel.grid_pos(grid(index * 6, 18, 6, 9)))

    board = board.with_row(db.Row(t("row_tiers")).grid_pos(grid(0, 27, 24, 1)))
    y = 28
    for index, tier in enumerate(ctx.tiers):
        height = min(4 + 5 * index, 24)
        board = board.with_panel(tier_timeline(ctx, tier).grid_pos(grid(0, y, 24, height)))
        y += height
    return board


def tier_stat(ctx: Context, tier: str) -> stat.Panel:
    """Points up (coloured against the tier's availability target) and the tier's total."""
    up = f'sum(bridge_tier_endpoints_up{{tier="{tier}"}})'
    total = f'sum(bridge_tier_endpoints{{tier="{tier}"}})'
    needed = f'max(bridge_tier_availability_target_ratio{{tier="{tier}"}}) * {total}'
    return (
        stat.Panel()
        .title(ctx.text("tier_up", tier=tier))
        .datasource(DATASOURCE)
        .with_target(target(up, ctx.text("up"), ref="A", instant=True))
        .with_target(target(total, ctx.text("total"), ref="B", instant=True))
        .with_target(target(needed, "target", ref="C", instant=True))
        .with_transformation(
            transformation(
                "configFromData",
                {
                    "configRefId": "C",
                    "mappings": [{"fieldName": "target", "handlerKey": "threshold1"}],
                    "applyTo": {"id": "byFrameRefID", "options": "A"},
                },
            )
        )
        .unit("none")
        .decimals(0)
        .thresholds(thresholds((None, "red"), (0, "green")))
        .override_by_name(
            ctx.text("total"),
            [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "text"})],
        )
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .orientation(cm.VizOrientation.VERTICAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def points_down(ctx: Context) -> stat.Panel:
    return (
        stat.Panel()
        .title(ctx.text("points_down"))
        .datasource(DATASOURCE)
        .with_target(target(f"sum(1 - bridge_up{{{ctx.scope()}}})", instant=True))
        .unit("none")
        .decimals(0)
        .thresholds(thresholds((None, "green"), (1, "red")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def delegates_down(ctx: Context) -> stat.Panel:
    return (
        stat.Panel()
        .title(ctx.text("delegates_down"))
        .datasource(DATASOURCE)
        .with_target(target("sum(tier:bridge_endpoint_delegates_down:sum)", instant=True))
        .unit("none")
        .decimals(0)
        .thresholds(thresholds((None, "green"), (1, "red")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


ACTIVE = "(max by (session) (bridge_session_active) == 1)"


def session_now(ctx: Context) -> stat.Panel:
    expr = f"max by (session, title) (bridge_session_info) * on(session) group_left() {ACTIVE}"
    return (
        stat.Panel()
        .title(ctx.text("session_now"))
        .datasource(DATASOURCE)
        .with_target(target(expr, "{{title}}", instant=True))
        .unit("none")
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue"))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def session_clock(ctx: Context) -> stat.Panel:
    """Time to the active session's start while it is in its readiness window, else to its
    end."""
    start = "max by (session) (bridge_session_start_timestamp_seconds)"
    end = "max by (session) (bridge_session_end_timestamp_seconds)"
    starts = ctx.text("phase_starts")
    ends = ctx.text("phase_ends")
    to_start = f"({start} - time() > 0) and on(session) {ACTIVE}"
    to_end = f"({end} - time()) and on(session) {ACTIVE}"
    expr = (
        f'label_replace({to_start}, "phase", "{starts}", "", "")'
        f' or on(session) label_replace({to_end}, "phase", "{ends}", "", "")'
    )
    return (
        stat.Panel()
        .title(ctx.text("session_clock"))
        .datasource(DATASOURCE)
        .with_target(target(expr, "{{phase}}", instant=True))
        .unit("dtdurations")
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue"))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def down_table(ctx: Context) -> table.Panel:
    """Every point down now: since when (ms for Grafana's date units), tier, parent, and
    whether its upstream is the cause. The name links to the endpoint dashboard."""
    since = f"max by (endpoint, tier) (bridge_down_since_timestamp_seconds{{{ctx.scope()}}})"
    upstream = "max by (endpoint) (bridge_upstream_up)"
    by_upstream = f"{since} and on(endpoint) ({upstream} == 0)"
    by_itself = f"{since} and on(endpoint) ({upstream} == 1)"
    expr = with_names(
        f'label_replace({by_upstream}, "cause", "{ctx.text("cause_upstream")}", "", "")'
        f' or on(endpoint) label_replace({by_itself}, "cause", "{ctx.text("cause_self")}", "", "")',
        "name, parent_name",
    )
    t = ctx.text
    endpoint_url = (
        f"/d/{ctx.uid('endpoint')}?var-endpoint=${{__data.fields.endpoint}}&${{__url_time_range}}"
    )
    return (
        table.Panel()
        .title(t("down_table"))
        .datasource(DATASOURCE)
        .with_target(target(f"({expr}) * 1000", instant=True, table=True))
        .with_transformation(
            organize(
                {
                    "name": t("col_name"),
                    "Value": t("col_since"),
                    "tier": t("col_tier"),
                    "parent_name": t("col_parent"),
                    "cause": t("col_cause"),
                    "endpoint": "id",
                },
                hide=("Time", "parent"),
            )
        )
        .unit("dateTimeAsLocal")
        .override_by_name(
            t("col_name"),
            [
                dm.DynamicConfigValue(
                    id_val="links",
                    value=[{"title": t("link_endpoint"), "url": endpoint_url}],
                )
            ],
        )
        .override_by_name(
            t("col_cause"),
            [
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
                dm.DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                t("cause_self"): {"color": "red", "index": 0},
                                t("cause_upstream"): {"color": "orange", "index": 1},
                            },
                        }
                    ],
                ),
            ],
        )
        .sort_by([cb.TableSortByFieldState().display_name(t("col_since")).desc(False)])
        .cell_height(cm.TableCellHeight.LG)
    )


def state_map(ctx: Context) -> geomap.Panel:
    expr = (
        "max by (endpoint, name, latitude, longitude) (bridge_endpoint_info"
        f'{{{ctx.scope()}, latitude!=""}}) * on(endpoint) group_left() {state_expr(ctx.scope())}'
    )
    markers = (
        cb.MapLayerOptions()
        .type("markers")
        .name(ctx.text("map"))
        .location(
            cb.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "Value"},
                    "size": {"fixed": 8},
                    "opacity": 0.9,
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "name", "mode": "field"},
                    "textConfig": {"fontSize": 9, "offsetY": -12},
                },
            }
        )
        .tooltip(True)
    )
    number = {"destinationType": "number"}
    return (
        geomap.Panel()
        .title(ctx.text("map"))
        .datasource(DATASOURCE)
        .with_target(target(expr, instant=True, table=True))
        .with_transformation(
            transformation(
                "convertFieldType",
                {
                    "conversions": [
                        {"targetField": "latitude", **number},
                        {"targetField": "longitude", **number},
                    ]
                },
            )
        )
        .unit("none")
        .mappings(state_mappings(ctx))
        .thresholds(
            thresholds(
                (None, "red"), (1, "orange"), (2, "green"), (3, "yellow"), (4, "dark-orange")
            )
        )
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .view(geomap.MapViewConfig().id("fit").all_layers(True).zoom(9))
        .layers([markers])
    )


def worst_points(
    ctx: Context, title: str, pick: str, record: str, unit: str, steps: db.ThresholdsConfig
) -> bargauge.Panel:
    expr = f"{pick}({TOP}, {with_names(f'max by (endpoint) ({record}{{{ctx.scope()}}})')})"
    return (
        bargauge.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(target(expr, "{{name}}", instant=True))
        .unit(unit)
        .thresholds(steps)
        .min(1 if unit == "none" else 0)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def tier_timeline(ctx: Context, tier: str) -> statetimeline.Panel:
    scope = f'{ctx.scope(tier=False)}, tier="{tier}"'
    return (
        statetimeline.Panel()
        .title(ctx.text("timeline_tier", tier=tier))
        .datasource(DATASOURCE)
        .with_target(target(with_names(state_expr(scope)), "{{name}}"))
        .unit("none")
        .mappings(state_mappings(ctx))
        .thresholds(
            thresholds(
                (None, "red"), (1, "orange"), (2, "green"), (3, "yellow"), (4, "dark-orange")
            )
        )
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.9)
        .legend(cb.VizLegendOptions().show_legend(False))
    )
