"""One point, picked by variable: its figures over time, its history beside its parent's,
and links back to the wall and to the exporter's ad-hoc debug probe."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
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
    endpoint_variable,
    exporter_url_variable,
    grid,
    link,
    module_variable,
    scope_variables,
    state_expr,
    state_mappings,
    target,
    thresholds,
)

POINT = 'endpoint="$endpoint"'
# The parent's id under the `endpoint` label, to select its own series.
PARENT_AS_ENDPOINT = (
    'label_replace(max by (parent) (bridge_endpoint_info{endpoint="$endpoint"}),'
    ' "endpoint", "$1", "parent", "(.+)")'
)
STATE_STEPS = thresholds(
    (None, "red"), (1, "orange"), (2, "green"), (3, "yellow"), (4, "dark-orange")
)


def parent_state() -> str:
    return f"{state_expr('')} * on(endpoint) group_left() {PARENT_AS_ENDPOINT}"


def by_prober(metric: str, prober: str) -> str:
    return f'{metric}{{{POINT}}} and on(instance, probe) bridge_module_info{{prober="{prober}"}}'


def packet_rate(train: str, kind: str) -> str:
    return (
        f"sum by (probe) (rate(bridge_{train}_packets_{kind}_total{{{POINT}}}[$__rate_interval]))"
    )


def build(ctx: Context) -> db.Dashboard:
    t = ctx.text
    board = base_dashboard(ctx, "endpoint", refresh="30s", time_from="now-6h")
    variables = [
        *scope_variables(ctx),
        endpoint_variable(ctx),
        module_variable(ctx),
        exporter_url_variable(ctx),
    ]
    for variable in variables:
        board = board.with_variable(variable)
    board = board.link(link(t("link_overview"), f"/d/{ctx.uid('overview')}"))
    board = board.link(
        link(
            t("link_probe"),
            "${exporter_url}/probe?target=${endpoint}&module=${module}&debug=true",
            keep_time=False,
        ).target_blank(True)
    )

    board = board.with_panel(
        state_stat(ctx, "state_now", state_expr(POINT)).grid_pos(grid(0, 0, 6, 5))
    )
    board = board.with_panel(
        state_stat(ctx, "parent_state_now", parent_state()).grid_pos(grid(6, 0, 6, 5))
    )
    board = board.with_panel(
        stat.Panel()
        .title(t("probe_success"))
        .datasource(DATASOURCE)
        .with_target(
            target(f"max by (probe) (bridge_probe_success{{{POINT}}})", "{{probe}}", instant=True)
        )
        .unit("none")
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "1": dm.ValueMappingResult(text=t("ok"), color="green", index=0),
                        "0": dm.ValueMappingResult(text=t("failed"), color="red", index=1),
                    }
                )
            ]
        )
        .thresholds(thresholds((None, "red"), (1, "green")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .grid_pos(grid(12, 0, 12, 5))
    )
    board = board.with_panel(
        statetimeline.Panel()
        .title(t("history"))
        .datasource(DATASOURCE)
        .with_target(target(state_expr(POINT), t("this_point"), ref="A"))
        .with_target(target(parent_state(), t("parent"), ref="B"))
        .unit("none")
        .mappings(state_mappings(ctx))
        .thresholds(STATE_STEPS)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .legend(cb.VizLegendOptions().show_legend(False))
        .grid_pos(grid(0, 5, 24, 5))
    )
    graphs = [
        ("rtt", [(f"bridge_rtt_seconds{{{POINT}}}", "{{probe}}")], "s", RTT_STEPS),
        (
            "rtt_p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le, probe) "
                    f"(rate(bridge_icmp_rtt_seconds_bucket{{{POINT}}}[$__rate_interval])))",
                    "{{probe}} p95",
                )
            ],
            "s",
            RTT_STEPS,
        ),
        ("jitter", [(f"bridge_jitter_seconds{{{POINT}}}", "{{probe}}")], "s", JITTER_STEPS),
        (
            "loss",
            [
                (
                    f"1 - {packet_rate(train, 'received')} / ({packet_rate(train, 'sent')} > 0)",
                    "{{probe}}",
                )
                for train in ("icmp", "stamp")
            ],
            "percentunit",
            LOSS_STEPS,
        ),
        ("mos", [(f"bridge_mos{{{POINT}}}", "MOS")], "none", MOS_STEPS),
        ("sip_latency", [(by_prober("bridge_rtt_seconds", "sip"), "{{probe}}")], "s", RTT_STEPS),
        ("sip_code", [(by_prober("bridge_sip_response_code", "sip"), "{{probe}}")], "none", None),
    ]
    for index, (title, queries, unit, steps) in enumerate(graphs):
        panel = time_graph(ctx, t(title), queries, unit, steps)
        board = board.with_panel(
            panel.grid_pos(grid((index % 2) * 12, 10 + (index // 2) * 8, 12, 8))
        )
    return board


def state_stat(ctx: Context, title: str, expr: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(ctx.text(title))
        .datasource(DATASOURCE)
        .with_target(target(expr, instant=True))
        .unit("none")
        .mappings(state_mappings(ctx))
        .thresholds(STATE_STEPS)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def time_graph(
    ctx: Context,
    title: str,
    queries: list[tuple[str, str]],
    unit: str,
    steps: db.ThresholdsConfig | None,
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit)
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(target(expr, legend, ref=chr(ord("A") + index)))
    if steps is not None:
        panel = panel.thresholds(steps).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    if unit == "none" and steps is None:  # SIP codes: points, not a slope between codes
        panel = panel.draw_style(cm.GraphDrawStyle.POINTS).decimals(0)
    return panel.legend(
        cb.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.LIST)
    )
