"""Can the wall be trusted: is the exporter scraped, probing on time, not overloaded,
running the inventory it was given."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common as cm

from .common import (
    DATASOURCE,
    Context,
    base_dashboard,
    grid,
    link,
    target,
    thresholds,
    yes_no_mappings,
)

JOB = 'job="bridge"'  # prometheus/prometheus.yml; the alert rules select it too


def build(ctx: Context) -> db.Dashboard:
    t = ctx.text
    board = base_dashboard(ctx, "health", refresh="30s", time_from="now-6h")
    board = board.link(link(t("link_overview"), f"/d/{ctx.uid('overview')}"))
    stats = [
        big(
            t("exporter_up"),
            f"up{{{JOB}}}",
            "{{instance}}",
            "none",
            yes_no_mappings(ctx, "ok", "failed"),
        ),
        big(
            t("reload_ok"),
            f"bridge_exporter_config_last_reload_successful{{{JOB}}}",
            "{{instance}}",
            "none",
            yes_no_mappings(ctx, "ok", "failed"),
        ),
        big(
            t("prober_ready"),
            f"bridge_exporter_prober_ready{{{JOB}}}",
            "{{prober}}",
            "none",
            yes_no_mappings(ctx, "ready", "not_ready"),
        ),
        big(
            t("reload_time"),
            f"bridge_exporter_config_last_reload_success_timestamp_seconds{{{JOB}}} * 1000",
            "{{instance}}",
            "dateTimeFromNow",
            None,
        ),
    ]
    widths = [4, 4, 10, 6]
    x = 0
    for panel, width in zip(stats, widths, strict=True):
        board = board.with_panel(panel.grid_pos(grid(x, 0, width, 5)))
        x += width
    graphs = [
        (
            "rounds",
            per_second("bridge_exporter_rounds_total"),
            "ops",
            None,
        ),
        (
            "overruns",
            per_second("bridge_exporter_round_overruns_total"),
            "ops",
            thresholds((None, "green"), (0.001, "red")),
        ),
        ("in_flight", f"bridge_exporter_probes_in_flight{{{JOB}}}", "none", None),
        (
            "prober_errors",
            per_second("bridge_exporter_prober_errors_total"),
            "ops",
            thresholds((None, "green"), (0.001, "red")),
        ),
        (
            "scrape_duration",
            f"scrape_duration_seconds{{{JOB}}}",
            "s",
            thresholds((None, "green"), (5, "yellow"), (10, "red")),
        ),
        (
            "result_age",
            f"max by (instance) (time() - bridge_last_probe_timestamp_seconds{{{JOB}}})",
            "s",
            None,
        ),
        ("memory", f"process_resident_memory_bytes{{{JOB}}}", "bytes", None),
        ("cpu", f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])", "percentunit", None),
    ]
    for index, (title, expr, unit, steps) in enumerate(graphs):
        panel = (
            timeseries.Panel()
            .title(t(title))
            .datasource(DATASOURCE)
            .with_target(target(expr, "{{instance}}"))
            .unit(unit)
            .min(0)
        )
        if steps is not None:
            panel = panel.thresholds(steps).thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
            )
        board = board.with_panel(
            panel.grid_pos(grid((index % 2) * 12, 5 + (index // 2) * 8, 12, 8))
        )
    return board


def per_second(counter: str) -> str:
    return f"sum by (instance) (rate({counter}{{{JOB}}}[$__rate_interval]))"


def big(title: str, expr: str, legend: str, unit: str, mappings: list | None) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(target(expr, legend, instant=True))
        .unit(unit)
        .thresholds(thresholds((None, "red"), (1, "green")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if not mappings:
        return panel.color_mode(cm.BigValueColorMode.NONE)
    return panel.mappings(mappings)
