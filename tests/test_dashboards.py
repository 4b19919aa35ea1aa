"""Grafana dashboards as code (grafana/): the committed JSON is what the generator writes,
its structure holds (uids, datasource, units, titles in both languages, variables, rates),
and every panel query, variables substituted, returns data from a real Prometheus that
scraped the real exporter probing the simulated Thái Bình network with the demo scenario.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
import urllib.parse
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, REPO, free_port, need_tool
from helpers_backfill import (
    Outage,
    Session,
    grafana_times,
    move_blocks,
    names_read,
    recording_rules,
    replay,
    rounds,
    rule_levels,
    rules_file,
)
from helpers_exporter import ExporterProcess, exporter_command, http_request, wait_until
from helpers_stack import Prometheus, rewrite_prometheus_config

GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
LANGUAGES = ("en", "vi")
NAMES = ("overview", "endpoint", "session", "health")
# Grafana's own variables, set by Grafana itself, never defined in a dashboard.
BUILTIN_VARIABLES = {
    "__rate_interval",
    "__range",
    "__interval",
    "__data",
    "__url_time_range",
    "__all",
}
VARIABLE = re.compile(r"\$\{?(\w+)")


def load(language: str, name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / language / f"{name}.json").read_text(encoding="utf-8"))


def all_dashboards() -> list[tuple[str, str, dict[str, Any]]]:
    return [(lang, name, load(lang, name)) for lang in LANGUAGES for name in NAMES]


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def provisioned_uid() -> str:
    config = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    (datasource,) = config["datasources"]
    return datasource["uid"]


# --- generated files ---------------------------------------------------------------------


def test_committed_json_is_exactly_what_the_generator_writes(tmp_path):
    done = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")}
    committed = {p.relative_to(DASHBOARDS).as_posix() for p in DASHBOARDS.rglob("*.json")}
    assert written == committed == {f"{lang}/{name}.json" for lang in LANGUAGES for name in NAMES}
    stale = [
        name
        for name in sorted(written)
        if (tmp_path / name).read_bytes() != (DASHBOARDS / name).read_bytes()
    ]
    assert not stale, f"regenerate with `python grafana/generate.py`: {stale}"


def test_the_generator_follows_an_inventorys_tiers(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(GRAFANA / "generate.py"),
            "--inventory",
            str(EXAMPLES / "two-tier.yml"),
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    tiers = [t["name"] for t in yaml.safe_load((EXAMPLES / "two-tier.yml").read_text())["tiers"]]
    board = json.loads((tmp_path / "en/overview.json").read_text(encoding="utf-8"))
    variables = [v["name"] for v in board["templating"].get("list", [])]
    assert variables == ["tier", *tiers[:-1]]
    assert "district" not in json.dumps(board)


# --- structure ---------------------------------------------------------------------------


def test_every_dashboard_is_valid_json_with_a_unique_stable_uid():
    uids = [board["uid"] for _, _, board in all_dashboards()]
    assert len(set(uids)) == len(uids) == len(LANGUAGES) * len(NAMES)
    for lang, name, board in all_dashboards():
        assert board["uid"] == f"bridge-{name}-{lang}"
        ids = [p.get("id") for p in board["panels"]]
        assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids), name


def test_every_panel_and_query_uses_the_provisioned_datasource():
    uid = provisioned_uid()
    for lang, name, board in all_dashboards():
        for panel in panels(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, (lang, name)
            assert panel["targets"], f"{lang}/{name}: {panel['title']} has no query"
            for query in panel["targets"]:
                assert query["datasource"]["uid"] == uid, (lang, name, panel["title"])
        for variable in board["templating"].get("list", []):
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == uid


def test_every_panel_has_a_unit_and_a_title_in_both_languages():
    for name in NAMES:
        english, vietnamese = panels(load("en", name)), panels(load("vi", name))
        assert [p["id"] for p in english] == [p["id"] for p in vietnamese], name
        for en, vi in zip(english, vietnamese, strict=True):
            for panel in (en, vi):
                assert panel["title"].strip(), f"{name}: panel {panel['id']} has no title"
                assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {panel['title']}"
        differing = [
            en["title"]
            for en, vi in zip(english, vietnamese, strict=True)
            if en["title"] != vi["title"]
        ]
        assert len(differing) == len(english), f"{name}: untranslated titles"
        assert load("en", name)["title"] != load("vi", name)["title"]


def test_every_variable_used_is_defined():
    for lang, name, board in all_dashboards():
        defined = {v["name"] for v in board["templating"].get("list", [])}
        text = json.dumps([board["panels"], board.get("links", []), board["templating"]])
        used = set(VARIABLE.findall(text)) - BUILTIN_VARIABLES - {"1"}
        assert used <= defined, f"{lang}/{name}: undefined {sorted(used - defined)}"


def test_rates_use_rate_interval():
    for lang, name, board in all_dashboards():
        for panel in panels(board):
            for query in panel["targets"]:
                for window in re.findall(
                    r"\b(?:rate|irate|increase)\([^\[]*\[([^\]]*)\]", query["expr"]
                ):
                    assert window == "$__rate_interval", (lang, name, panel["title"], query["expr"])


def test_ancestor_variables_are_chained_with_label_values():
    board = load("en", "overview")
    queries = {v["name"]: v["query"] for v in board["templating"].get("list", [])}
    assert (
        queries["province"] == 'label_values(bridge_endpoint_info{central=~"$central"}, province)'
    )
    assert queries["district"] == (
        'label_values(bridge_endpoint_info{central=~"$central", province=~"$province"}, district)'
    )
    endpoint = {v["name"]: v["query"] for v in load("en", "endpoint")["templating"]["list"]}
    assert 'district=~"$district"' in endpoint["endpoint"]


def test_links_lead_from_the_wall_to_the_endpoint_and_to_the_exporters_debug_probe():
    for lang in LANGUAGES:
        overview = json.dumps(load(lang, "overview"))
        assert f"/d/bridge-endpoint-{lang}?var-endpoint=${{__data.fields.endpoint}}" in overview
        endpoint = load(lang, "endpoint")
        urls = [link["url"] for link in endpoint["links"]]
        assert "${exporter_url}/probe?target=${endpoint}&module=${module}&debug=true" in urls
        assert f"/d/bridge-overview-{lang}" in urls


def test_provisioning_uses_the_folders_and_paths_compose_mounts():
    providers = yaml.safe_load(
        (GRAFANA / "provisioning/dashboards/bridge.yml").read_text(encoding="utf-8")
    )["providers"]
    assert {p["options"]["path"] for p in providers} == {
        f"/var/lib/grafana/dashboards/{lang}" for lang in LANGUAGES
    }
    assert len({p["folder"] for p in providers}) == len(LANGUAGES)
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose
    assert 'GF_UNIFIED_ALERTING_ENABLED: "false"' in compose


# --- every query against a real stack ------------------------------------------------------

SCENARIO_SPEEDUP = 4  # the demo scenario's times divided by this: the district goes at 15 s
# Probes, scrapes and rule evaluations, as shipped (15 s each) but faster. A scrape may take
# this long before it fails: the 104 points' /metrics took up to 0.19 s here under load.
INTERVAL_SECONDS = 2


def fast_inventory(path: Path) -> Path:
    """examples/thai-binh.yml probed every 2 s with short timeouts and trains, and its
    district briefing moved into its readiness window (starts in 30 min), as make demo does."""
    inventory = yaml.safe_load((EXAMPLES / "thai-binh.yml").read_text(encoding="utf-8"))
    inventory["interval"] = f"{INTERVAL_SECONDS}s"
    for module in inventory["modules"].values():
        module["timeout"] = "1500ms"
    inventory["modules"]["icmp"]["icmp"] = {"count": 3, "interval": "100ms"}
    inventory["modules"]["stamp"]["stamp"].update(count=10, interval="10ms")
    now = dt.datetime.now(zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh"))
    for session in inventory["sessions"]:
        if session["name"].startswith("giao-ban"):
            session["start"] = f"{now + dt.timedelta(minutes=30):%Y-%m-%d %H:%M}"
            session["end"] = f"{now + dt.timedelta(hours=2, minutes=30):%Y-%m-%d %H:%M}"
    path.write_text(yaml.safe_dump(inventory, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def fast_scenario(path: Path) -> Path:
    """The demo scenario, faster, and the district never restored (the demo restores it
    after 3 minutes, 45 s here): the panels that show what is down now have it to show
    however long the stack takes to start."""
    scenario = yaml.safe_load((EXAMPLES / "scenarios/demo.yml").read_text(encoding="utf-8"))
    scenario["steps"] = [step for step in scenario["steps"] if not step.get("clear")]

    def faster(duration: str) -> str:
        unit = {"s": 1, "m": 60}[duration[-1]]
        return f"{float(duration[:-1]) * unit / SCENARIO_SPEEDUP:g}s"

    scenario["repeat_every"] = faster(scenario["repeat_every"])
    for step in scenario["steps"]:
        step["at"] = faster(step["at"])
        fault = step.get("fault", {})
        if "flap_period_seconds" in fault:
            fault["flap_period_seconds"] = faster(fault["flap_period_seconds"])
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


class Stack:
    """simulate + exporter + Prometheus (the shipped prometheus.yml and rules, every 2 s)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.exporter: ExporterProcess | None = None
        self.prometheus: Prometheus | None = None

    def start(self) -> Stack:
        inventory = fast_inventory(self.workdir / "bridge.yml")
        control = f"127.0.0.1:{free_port()}"
        with (self.workdir / "simulator.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    [
                        *exporter_command(),
                        "simulate",
                        f"--config.file={inventory}",
                        f"--scenario={fast_scenario(self.workdir / 'scenario.yml')}",
                        f"--control.listen-address={control}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_until(lambda: http_request(f"http://{control}/faults")[0] == 200, 30, "simulator")
        self.exporter = ExporterProcess(inventory, self.workdir).start().wait_ready()
        port = free_port()
        config = rewrite_prometheus_config(
            self.workdir / "prometheus",
            exporter=f"127.0.0.1:{self.exporter.port}",
            prometheus=f"127.0.0.1:{port}",
            alertmanager=f"127.0.0.1:{free_port()}",  # nothing listens: alerts are not the point
            interval=f"{INTERVAL_SECONDS}s",
        )
        self.prometheus = Prometheus(need_tool("prometheus"), config, self.workdir, port)
        return self

    def stop(self) -> None:
        if self.prometheus:
            self.prometheus.stop()
        if self.exporter:
            self.exporter.kill()
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("dashboards"))
    try:
        running.start()
        prometheus = running.prometheus
        assert prometheus is not None
        started = time.time()
        # The scenario's district loss (Hưng Hà and its communes) seen by the rules, with
        # the up rounds before it in the range.
        wait_until(
            lambda: (
                prometheus.query('tier:bridge_endpoints_down:sum{tier="commune"} >= 11')
                and prometheus.query('bridge_down_since_timestamp_seconds{endpoint="tb-hung-ha"}')
            ),
            90,
            "the Hưng Hà district down in Prometheus",
            every=1,
        )
        time.sleep(2 * INTERVAL_SECONDS)  # two evaluations of the rules over the outage
        running.started = started  # type: ignore[attr-defined]
        yield running
    finally:
        running.stop()


def label_values(prometheus: Prometheus, query: str) -> list[str]:
    """Grafana's label_values(SELECTOR, LABEL) as its Prometheus datasource runs it."""
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    selector, label = match.groups()
    params = urllib.parse.urlencode({"match[]": selector})
    status, body = http_request(f"{prometheus.url}/api/v1/label/{label}/values?{params}")
    assert status == 200, body
    return json.loads(body)["data"]


def substitute(expr: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def test_picking_a_district_narrows_the_endpoint_list(stack):
    board = load("en", "endpoint")
    query = {v["name"]: v["query"] for v in board["templating"].get("list", [])}["endpoint"]
    everything = {"tier": ".*", "central": ".*", "province": ".*", "district": ".*"}
    all_points = label_values(stack.prometheus, substitute(query, everything))
    hung_ha = label_values(
        stack.prometheus, substitute(query, {**everything, "district": "tb-hung-ha"})
    )
    inventory = yaml.safe_load((EXAMPLES / "thai-binh.yml").read_text(encoding="utf-8"))
    expected = {e["id"] for e in inventory["endpoints"] if e.get("parent") == "tb-hung-ha"}
    assert len(all_points) == len(inventory["endpoints"])
    assert set(hung_ha) == expected | {"tb-hung-ha"}


def test_every_panel_query_returns_data(stack):
    prometheus = stack.prometheus
    # Instant queries at a moment after clean scrapes: one failed scrape (a stall of the
    # host) leaves every series stale until the next one, and an instant then finds none.
    now = prometheus.clean_instant("bridge", INTERVAL_SECONDS)
    elapsed = int(now - stack.started) + 5
    values = {
        "tier": ".*",
        "central": ".*",
        "province": ".*",
        "district": ".*",
        "endpoint": "tb-hung-ha-hung-nhan",  # a commune behind the lost district: has a parent
        # Grafana: max(4 x scrape interval, step + scrape interval)
        "__rate_interval": f"{4 * INTERVAL_SECONDS}s",
        "__range": f"{elapsed}s",
        "__interval": f"{INTERVAL_SECONDS}s",
    }
    empty, checked = [], 0
    for lang, name, board in all_dashboards():
        for panel in panels(board):
            for query in panel["targets"]:
                expr = substitute(query["expr"], values)
                assert "$" not in expr.replace("$1", ""), f"unsubstituted: {expr}"
                if query.get("instant"):
                    params = {"query": expr, "time": f"{now:.3f}"}
                    path = "query"
                else:
                    params = {
                        "query": expr,
                        "start": f"{now - elapsed:.3f}",
                        "end": f"{now:.3f}",
                        "step": str(INTERVAL_SECONDS),
                    }
                    path = "query_range"
                status, body = http_request(
                    f"{prometheus.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
                )
                assert status == 200, f"{lang}/{name} {panel['title']}: {body}"
                checked += 1
                if not json.loads(body)["data"]["result"]:
                    empty.append(f"{lang}/{name}: {panel['title']} [{query['refId']}]: {expr}")
    assert checked > 80
    failed = prometheus.failed_scrapes("bridge")
    assert not empty, f"queries without data ({failed} failed scrapes):\n" + "\n".join(empty)


# --- the session review over a backfilled range ---------------------------------------------

HISTORY_ENDS_AGO = 3 * 3600  # out of Prometheus's head block: only backfilled blocks hold it
SESSION_SECONDS = 3 * 3600
LEAD_IN_SECONDS = 15 * 60  # history before the session, so its first 5m windows are full
TAIL_SECONDS = 5 * 60
OUTAGE_AFTER, OUTAGE_SECONDS = 60 * 60, 20 * 60  # Hưng Hà lost from 1 h in, for 20 minutes
# The history is scraped (and its rules evaluated) every minute, not every 15 s as shipped:
# a quarter of the samples keeps the test fast, and every 5m window still holds 5 rounds.
HISTORY_INTERVAL = 60.0
SCREEN_WIDTH = 1920  # pixels: a panel of width w (of 24) asks for w/24 of them as data points
# Panel ids of grafana/bridge_dashboards/session.py, in build order.
SESSIONS_PANEL, POINT_AVAILABILITY_PANEL, OUTAGES_PANEL, MOS_PANEL = 1, 4, 5, 6


def datasource_scrape_interval() -> float:
    """The provisioned datasource's timeInterval, which Grafana takes as the scrape interval."""
    config = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    (datasource,) = config["datasources"]
    text = datasource["jsonData"]["timeInterval"]
    assert text.endswith("s"), text
    return float(text[:-1])


@dataclass
class Backfilled:
    prometheus: Prometheus
    session: Session
    outage: Outage
    rules: list[list[str]]


@pytest.fixture(scope="module")
def backfilled(stack, tmp_path_factory) -> Iterator[Backfilled]:
    """The live exporter's /metrics replayed over a session that ended hours ago, with the
    recording rules the session dashboard reads backfilled over it, level by level."""
    promtool, binary = need_tool("promtool"), need_tool("prometheus")
    workdir = tmp_path_factory.mktemp("backfill")
    status, page = http_request(f"http://127.0.0.1:{stack.exporter.port}/metrics")
    assert status == 200, page
    history_end = time.time() // 60 * 60 - HISTORY_ENDS_AGO
    session_end = history_end - TAIL_SECONDS
    inventory = yaml.safe_load((EXAMPLES / "thai-binh.yml").read_text(encoding="utf-8"))
    (name,) = [s["name"] for s in inventory["sessions"] if s["name"].startswith("giao-ban")]
    session = Session(name, session_end - SESSION_SECONDS, session_end)
    below = frozenset(e["id"] for e in inventory["endpoints"] if e.get("parent") == "tb-hung-ha")
    start = session.start + OUTAGE_AFTER
    outage = Outage("tb-hung-ha", below, start, start + OUTAGE_SECONDS)

    rules = recording_rules(sorted((REPO / "prometheus/rules").glob("*.yml")))
    exprs = [
        q["expr"] for lang in LANGUAGES for p in panels(load(lang, "session")) for q in p["targets"]
    ]
    used, others = names_read(exprs, rules)
    times = list(rounds(session.start - LEAD_IN_SECONDS, history_end, HISTORY_INTERVAL))
    port = free_port()
    target = {"job": "bridge", "instance": f"127.0.0.1:{free_port()}"}  # nothing listens
    source = workdir / "history.om"
    source.write_text(
        replay(
            page,
            others | {"bridge_upstream_up"},
            times=times,
            outage=outage,
            session=session,
            target=target,
        ),
        encoding="utf-8",
    )
    data = workdir / "prometheus-data"
    run_tool(promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data))
    config = rewrite_prometheus_config(
        workdir / "prometheus",
        exporter=target["instance"],
        prometheus=f"127.0.0.1:{port}",
        alertmanager=f"127.0.0.1:{free_port()}",
    )
    prometheus = Prometheus(binary, config, workdir, port)
    levels = [[n for n in level if n in used] for level in rule_levels(rules)]
    levels = [level for level in levels if level]
    try:
        for index, level in enumerate(levels):
            staging = workdir / f"rules-{index}"
            run_tool(
                promtool, "tsdb", "create-blocks-from", "rules",
                f"--start={times[0]:.0f}", f"--end={times[-1]:.0f}",
                f"--url={prometheus.url}", f"--eval-interval={HISTORY_INTERVAL:g}s",
                f"--output-dir={staging}", "--quiet",
                str(rules_file(workdir / f"rules-{index}.yml", rules, level)),
            )  # fmt: skip
            prometheus.stop()
            assert move_blocks(staging, data), f"promtool wrote no blocks for {level}"
            prometheus = Prometheus(binary, config, workdir, port)
        yield Backfilled(prometheus, session, outage, levels)
    finally:
        prometheus.stop()


def run_tool(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"


def test_session_review_queries_return_data_over_a_backfilled_session(backfilled):
    """Both session.json dashboards over the backfilled session's window, every query as
    Grafana sends it (range queries aligned to the step, instant ones at the end)."""
    history = backfilled
    assert len(history.rules) > 1  # rules reading recording rules: more than one pass
    values = {"tier": ".*", "central": ".*", "province": ".*", "district": ".*"}
    empty, checked, results = [], 0, {}
    for lang in LANGUAGES:
        for panel in panels(load(lang, "session")):
            width = round(panel["gridPos"]["w"] / 24 * SCREEN_WIDTH)
            times = grafana_times(
                history.session.start,
                history.session.end,
                max_data_points=panel.get("maxDataPoints", width),
                scrape_interval=datasource_scrape_interval(),
            )
            for query in panel["targets"]:
                expr = substitute(query["expr"], {**values, **times.variables})
                assert "$" not in expr.replace("$1", ""), f"unsubstituted: {expr}"
                path, params = times.params(expr, instant=bool(query.get("instant")))
                status, body = http_request(
                    f"{history.prometheus.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
                )
                assert status == 200, f"{lang} {panel['title']}: {body}"
                checked += 1
                result = json.loads(body)["data"]["result"]
                results[lang, panel["id"], query["refId"]] = result
                if not result:
                    empty.append(f"{lang}: {panel['title']} [{query['refId']}]: {expr}")
    assert checked > 20
    assert not empty, "queries without data over the backfilled range:\n" + "\n".join(empty)
    # The right data: the replayed history's figures, by hand.
    lost = history.outage.below | {history.outage.root}
    start, end = history.outage.start, history.outage.end
    inventory = yaml.safe_load((EXAMPLES / "thai-binh.yml").read_text(encoding="utf-8"))
    for lang in LANGUAGES:
        sessions = {
            (r["metric"]["session"], ref): float(r["value"][1])
            for ref in "AB"
            for r in results[lang, SESSIONS_PANEL, ref]
        }
        name = history.session.name
        assert sessions[name, "A"] == history.session.start * 1000
        assert sessions[name, "B"] == history.session.end * 1000
        outages = {ref: by_endpoint(results[lang, OUTAGES_PANEL, ref]) for ref in "ABC"}
        assert outages["A"] == {e: start * 1000 for e in lost}
        # The last subquery step still down: within one $__interval (15 s) before the end.
        assert all(end - 15 <= v / 1000 < end for v in outages["B"].values()), outages["B"]
        assert all(end - start - 15 <= v < end - start for v in outages["C"].values())
        availability = by_endpoint(results[lang, POINT_AVAILABILITY_PANEL, "A"])
        assert len(availability) == len(inventory["endpoints"])
        expected = 1 - OUTAGE_SECONDS / SESSION_SECONDS
        assert {e: round(v, 3) for e, v in availability.items() if v < 1} == {
            e: round(expected, 3) for e in lost
        }
        bands = [float(results[lang, MOS_PANEL, ref][0]["value"][1]) for ref in "ABC"]
        assert sum(bands) == len(inventory["endpoints"])  # every point in one MOS band


def by_endpoint(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["endpoint"]: float(r["value"][1]) for r in result}


def test_the_probe_link_answers_for_every_module_of_a_point(stack):
    """ "Probe it now" as a user clicks it: the module variable's values for a point, each
    substituted into the link, get the exporter's debug probe (one module per request)."""
    board = load("en", "endpoint")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    (link,) = [x["url"] for x in board["links"] if "/probe?" in x["url"]]
    point = "tb-hung-ha-hung-nhan"
    modules = label_values(
        stack.prometheus, substitute(variables["module"]["query"], {"endpoint": point})
    )
    assert set(modules) == {"icmp", "sip", "stamp"}
    for module in modules:
        url = substitute(
            link, {"exporter_url": stack.exporter.url, "endpoint": point, "module": module}
        )
        status, body = http_request(url)
        assert status == 200, body
        assert f"Module {module} " in body
