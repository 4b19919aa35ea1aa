"""What every dashboard shares: the provisioned datasource, the network's tiers, the
chained variables, the point-state expression and small panel helpers."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from .strings import Text

DATASOURCE_UID = "bridge-prometheus"  # grafana/provisioning/datasources/prometheus.yml
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
DEFAULT_TIERS = ("central", "province", "district", "commune")  # examples/thai-binh.yml
DEFAULT_EXPORTER_URL = "http://localhost:9198"  # docker-compose.yml publishes it there

# One number per point for maps and timelines (value mappings in state_mappings):
# 0 down with every ancestor up (the root cause), 1 down because an ancestor is down,
# 2 up and good, 3 up and degraded, 4 up and poor (2 + bridge_quality_grade).
STATE_DOWN, STATE_CUT_OFF, STATE_UP = 0, 1, 2


def state_expr(selector: str) -> str:
    return (
        f"max by (endpoint) (bridge_up{{{selector}}}"
        f" * (2 + (bridge_quality_grade{{{selector}}} or bridge_up{{{selector}}} * 0))"
        f" + (1 - bridge_up{{{selector}}}) * (1 - bridge_upstream_up{{{selector}}}))"
    )


def with_names(expr: str, labels: str = "name") -> str:
    """`expr` (one series per endpoint) with the point's name (and parent) beside its id."""
    return f"({expr}) * on(endpoint) group_left({labels}) endpoint:bridge_endpoint_info:parent_name"


@dataclass(frozen=True)
class Context:
    """One dashboard's build: its language, the network's tiers, the uids it links to."""

    text: Text
    tiers: tuple[str, ...] = DEFAULT_TIERS

    @property
    def language(self) -> str:
        return self.text.language

    def uid(self, dashboard: str) -> str:
        return f"bridge-{dashboard}-{self.language}"

    @property
    def ancestor_tiers(self) -> tuple[str, ...]:
        """Tiers that have points below them: one chained variable each."""
        return self.tiers[:-1]

    def scope(self, *, tier: bool = True) -> str:
        """Label matchers for the tier and ancestor variables (All matches every point,
        those without that ancestor's label included)."""
        matchers = [f'{name}=~"${name}"' for name in self.ancestor_tiers]
        if tier:
            matchers.insert(0, 'tier=~"$tier"')
        return ", ".join(matchers)


# --- variables ---------------------------------------------------------------------------


def query_variable(name: str, label: str, query: str, *, multi: bool) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )
    if multi:
        variable = (
            variable.multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
    return variable


def scope_variables(ctx: Context) -> list[db.QueryVariable]:
    """`tier`, then one variable per ancestor tier, each narrowed by those above it:
    picking a district narrows the commune list."""
    variables = [
        query_variable(
            "tier", ctx.text("var_tier"), "label_values(bridge_endpoint_info, tier)", multi=True
        )
    ]
    above: list[str] = []
    for name in ctx.ancestor_tiers:
        matchers = ", ".join(f'{a}=~"${a}"' for a in above)
        selector = f"bridge_endpoint_info{{{matchers}}}" if matchers else "bridge_endpoint_info"
        query = f"label_values({selector}, {name})"
        variables.append(query_variable(name, name, query, multi=True))
        above.append(name)
    return variables


def endpoint_variable(ctx: Context) -> db.QueryVariable:
    query = f"label_values(bridge_endpoint_info{{{ctx.scope()}}}, endpoint)"
    return query_variable("endpoint", ctx.text("var_endpoint"), query, multi=False)


def module_variable(ctx: Context) -> db.QueryVariable:
    """The endpoint's probe modules, for the exporter's /probe (one module per request)."""
    query = 'label_values(bridge_probe_success{endpoint="$endpoint"}, probe)'
    return query_variable("module", ctx.text("var_module"), query, multi=False)


def exporter_url_variable(ctx: Context) -> db.TextBoxVariable:
    """Where the browser reaches the exporter (its `instance` label is Prometheus's view)."""
    return (
        db.TextBoxVariable("exporter_url")
        .label(ctx.text("var_exporter_url"))
        .default_value(DEFAULT_EXPORTER_URL)
    )


# --- panels ------------------------------------------------------------------------------


def target(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    table: bool = False,
) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    query = query.instant() if instant else query.range()
    if table:
        query = query.format(pm.PromQueryFormat.TABLE)
    return query


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


GOOD_HIGH = thresholds((None, "red"), (0.5, "green"))  # 1 good, 0 bad
# Defaults of the inventory's thresholds (README "Quality semantics"); tiers may differ.
RTT_STEPS = thresholds((None, "green"), (0.3, "yellow"), (0.8, "red"))
JITTER_STEPS = thresholds((None, "green"), (0.03, "yellow"), (0.05, "red"))
LOSS_STEPS = thresholds((None, "green"), (0.01, "yellow"), (0.05, "red"))
MOS_STEPS = thresholds((None, "red"), (3.6, "yellow"), (4.0, "green"))


def state_mappings(ctx: Context) -> list[dm.ValueMapping]:
    t = ctx.text
    return [
        dm.ValueMap(
            options={
                "0": dm.ValueMappingResult(text=t("state_down"), color="red", index=0),
                "1": dm.ValueMappingResult(text=t("state_cut_off"), color="orange", index=1),
                "2": dm.ValueMappingResult(text=t("state_up"), color="green", index=2),
                "3": dm.ValueMappingResult(text=t("state_degraded"), color="yellow", index=3),
                "4": dm.ValueMappingResult(text=t("state_poor"), color="dark-orange", index=4),
            }
        )
    ]


def yes_no_mappings(ctx: Context, yes: str, no: str) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                "1": dm.ValueMappingResult(text=ctx.text(yes), color="green", index=0),
                "0": dm.ValueMappingResult(text=ctx.text(no), color="red", index=1),
            }
        )
    ]


def transformation(kind: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=kind, options=options)


def organize(rename: dict[str, str], hide: tuple[str, ...] = ()) -> dm.DataTransformerConfig:
    return transformation(
        "organize",
        {
            "excludeByName": {name: True for name in hide},
            "renameByName": rename,
            "indexByName": {name: index for index, name in enumerate(rename)},
        },
    )


def override_unit(field: str, unit: str) -> tuple[dm.MatcherConfig, list[dm.DynamicConfigValue]]:
    return (
        dm.MatcherConfig(id_val="byName", options=field),
        [dm.DynamicConfigValue(id_val="unit", value=unit)],
    )


def link(title: str, url: str, *, keep_time: bool = True) -> db.DashboardLink:
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(url)
        .keep_time(keep_time)
        .include_vars(False)
        .target_blank(False)
    )


def grid(x: int, y: int, w: int, h: int) -> dm.GridPos:
    return dm.GridPos(x=x, y=y, w=w, h=h)


def base_dashboard(ctx: Context, name: str, *, refresh: str, time_from: str) -> db.Dashboard:
    return (
        db.Dashboard(ctx.text(name))
        .uid(ctx.uid(name))
        .tags(["bridge", ctx.language])
        .refresh(refresh)
        .time(time_from, "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
