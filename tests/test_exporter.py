"""The running exporter end to end: the real `bridge-exporter` process probing real
loopback peers (listening, refusing, hung and healthy HTTP servers), seen through what a
user sees: /metrics, /probe, the landing page, reloads, signals, exit codes and logs.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator

import pytest
from bridge_exporter import __version__
from bridge_exporter.scheduler import BACKSTOP_GRACE_SECONDS
from conftest import free_port
from helpers_exporter import (
    ExporterProcess,
    LoopbackServers,
    Scrape,
    run_exporter_once,
    wait_until,
    write_inventory,
)

TIERS = ["central", "province", "district", "commune"]
HALL_NAME = "Phòng họp Diên Hồng, Nhà Quốc hội (Hà Nội)"
COMMUNE_NAME = "Điểm cầu xã Đông Hòa, huyện Đông Hưng"
HUNG_TIMEOUT = 2.0
SLOW_TIMEOUT = 2.5  # longer than two intervals: every round overruns


class Network:
    """The loopback peers and the inventory that points at them."""

    def __init__(self, servers: LoopbackServers):
        self.servers = servers
        self.hung = servers.hung("127.88.2.2")
        self.slow = servers.hung("127.88.2.3")
        self.web_port = servers.http_ok("127.88.2.1")
        self.refused_port = servers.refused("127.88.1.2")

    def inventory(self) -> dict:
        tcp = self.servers.tcp

        def endpoint(id_, tier, address, modules, parent=None, name=None, **extra):
            spec = {"id": id_, "name": name or f"Điểm cầu {id_}", "tier": tier}
            if parent:
                spec["parent"] = parent
            return {**spec, "address": address, "modules": modules, **extra}

        def port(value: int, module: str = "tcp") -> dict:
            return {"overrides": {module: {"port": value}}}

        return {
            "interval": "1s",
            "tiers": [{"name": t} for t in TIERS],
            "modules": {
                "tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": 1}},
                "h323": {"prober": "h323", "timeout": "1s"},
                "web": {
                    "prober": "http",
                    "timeout": "1s",
                    "http": {"url": f"http://{{address}}:{self.web_port}/"},
                },
                "web_hung": {
                    "prober": "http",
                    "timeout": f"{HUNG_TIMEOUT}s",
                    "http": {"url": f"http://{{address}}:{self.hung.port}/"},
                },
                "web_slow": {
                    "prober": "http",
                    "timeout": f"{SLOW_TIMEOUT}s",
                    "http": {"url": f"http://{{address}}:{self.slow.port}/"},
                },
            },
            "endpoints": [
                endpoint(
                    "hall", "central", "127.88.0.1", ["tcp"], name=HALL_NAME,
                    **port(tcp("127.88.0.1")),
                ),
                endpoint("prov-a", "province", "127.88.1.1", ["tcp"], "hall",
                         **port(tcp("127.88.1.1"))),
                endpoint("prov-b", "province", "127.88.1.2", ["tcp"], "hall",
                         **port(self.refused_port)),
                endpoint("dist-a-web", "district", "127.88.2.1", ["web"], "prov-a"),
                endpoint("dist-a-hung", "district", "127.88.2.2", ["web_hung"], "prov-a"),
                endpoint("dist-a-slow", "district", "127.88.2.3", ["web_slow"], "prov-a"),
                endpoint("dist-b", "district", "127.88.2.4", ["tcp"], "prov-b",
                         **port(tcp("127.88.2.4"))),
                endpoint(
                    "xa-b1", "commune", "127.88.3.1", ["h323"], "dist-b", name=COMMUNE_NAME,
                    **port(tcp("127.88.3.1"), "h323"),
                ),
            ],
        }  # fmt: skip


ALL_ENDPOINTS = {
    "hall", "prov-a", "prov-b", "dist-a-web", "dist-a-hung", "dist-a-slow", "dist-b", "xa-b1",
}  # fmt: skip
DOWN = {"prov-b", "dist-a-hung", "dist-a-slow"}
EXPECTED_TIER_COUNTS = {"central": 1, "province": 2, "district": 4, "commune": 1}
EXPECTED_TIER_UP = {"central": 1, "province": 1, "district": 2, "commune": 1}


@pytest.fixture(scope="module")
def servers() -> Iterator[LoopbackServers]:
    peers = LoopbackServers()
    yield peers
    peers.close()


@pytest.fixture(scope="module")
def network(servers) -> Network:
    return Network(servers)


class Running:
    def __init__(self, exporter: ExporterProcess, network: Network):
        self.exporter = exporter
        self.network = network
        self.started_wall = time.time()
        self.started = time.monotonic()


@pytest.fixture(scope="module")
def running(network, tmp_path_factory) -> Iterator[Running]:
    """The exporter on the network above, JSON logs, once every endpoint has a result."""
    workdir = tmp_path_factory.mktemp("exporter")
    config = write_inventory(workdir / "bridge.yml", network.inventory())
    exporter = ExporterProcess(config, workdir, "--log.format=json")
    run = Running(exporter, network)
    exporter.start()
    try:
        exporter.wait_ready()
        exporter.wait_for(
            lambda s: set(s.by_endpoint("bridge_up")) == ALL_ENDPOINTS,
            timeout=15,
            what="a first round of every endpoint",
        )
        yield run
        exporter.stop()
    finally:
        exporter.kill()


@pytest.fixture
def scrape(running) -> Scrape:
    return running.exporter.scrape()


# --- /metrics -----------------------------------------------------------------------------


def test_bridge_up_per_endpoint_with_tier_and_ancestor_labels(scrape):
    up = scrape.by_endpoint("bridge_up")
    assert up == {e: (0.0 if e in DOWN else 1.0) for e in ALL_ENDPOINTS}

    commune = scrape.labels_of("bridge_up", "xa-b1")
    assert commune == {
        "endpoint": "xa-b1",
        "tier": "commune",
        "central": "hall",
        "province": "prov-b",
        "district": "dist-b",
        "commune": "xa-b1",
    }
    province = scrape.labels_of("bridge_up", "prov-a")
    assert province["tier"] == "province"
    assert (province["central"], province["province"]) == ("hall", "prov-a")
    # Tiers below the endpoint are empty, which Prometheus stores as absent.
    assert province.get("district", "") == "" and province.get("commune", "") == ""
    assert scrape.labels_of("bridge_up", "hall")["central"] == "hall"


def test_probe_success_and_failure_reason_per_probe(scrape):
    assert scrape.value("bridge_probe_success", endpoint="prov-a", probe="tcp") == 1
    assert scrape.value("bridge_probe_success", endpoint="xa-b1", probe="h323") == 1
    assert scrape.value("bridge_probe_success", endpoint="dist-a-web", probe="web") == 1
    assert scrape.value("bridge_probe_success", endpoint="prov-b", probe="tcp") == 0
    refused = scrape.samples("bridge_probe_failure_info", endpoint="prov-b")
    assert [(s.labels["probe"], s.labels["reason"], s.value) for s in refused] == [
        ("tcp", "refused", 1.0)
    ]
    assert scrape.samples("bridge_probe_failure_info", endpoint="prov-a") == []
    assert scrape.value("bridge_probe_status_code", endpoint="dist-a-web", probe="web") == 200


def test_tier_counts_and_upstream(scrape):
    assert {s.labels["tier"]: s.value for s in scrape.samples("bridge_tier_endpoints")} == (
        EXPECTED_TIER_COUNTS
    )
    assert {s.labels["tier"]: s.value for s in scrape.samples("bridge_tier_endpoints_up")} == (
        EXPECTED_TIER_UP
    )
    upstream = scrape.by_endpoint("bridge_upstream_up")
    # dist-b is up itself but sits behind the refused prov-b, and so does its commune.
    assert upstream == {e: (0.0 if e in {"dist-b", "xa-b1"} else 1.0) for e in ALL_ENDPOINTS}


def test_endpoint_info_keeps_vietnamese_names(scrape):
    hall = scrape.labels_of("bridge_endpoint_info", "hall")
    assert hall["name"] == HALL_NAME
    assert hall["address"] == "127.88.0.1"
    assert hall.get("parent", "") == ""
    commune = scrape.labels_of("bridge_endpoint_info", "xa-b1")
    assert (commune["name"], commune["parent"]) == (COMMUNE_NAME, "dist-b")
    assert scrape.value("bridge_endpoint_info", endpoint="xa-b1") == 1
    assert COMMUNE_NAME in scrape.text  # raw UTF-8 in the exposition, not escaped


def test_exporter_own_metrics(running, scrape):
    assert scrape.value("bridge_exporter_build_info", version=__version__) == 1
    assert scrape.value("bridge_exporter_rounds_total") >= len(ALL_ENDPOINTS)
    assert scrape.value("bridge_exporter_probes_total") >= len(ALL_ENDPOINTS)
    assert 0 <= scrape.value("bridge_exporter_probes_in_flight") <= len(ALL_ENDPOINTS)
    assert scrape.value("bridge_exporter_round_overruns_total") >= 0
    assert scrape.value("bridge_exporter_config_last_reload_successful") == 1
    loaded = scrape.value("bridge_exporter_config_last_reload_success_timestamp_seconds")
    assert running.started_wall - 1 <= loaded <= time.time()
    assert scrape.value("bridge_exporter_endpoints") == len(ALL_ENDPOINTS)
    assert scrape.value("bridge_exporter_probe_interval_seconds") == 1
    assert scrape.value("bridge_exporter_prober_ready", prober="http") == 1


# The exporter's own series as the README's metrics reference promises them: type, label
# names and HELP. Rules and dashboards read them; moving them into a prometheus_client
# Collector must not change one.
EXPORTER_SERIES = {
    "bridge_exporter_build_info": (
        "gauge", {"version", "python_version"}, "Exporter version and Python version; always 1."
    ),
    "bridge_exporter_rounds_total": ("counter", set(), "Endpoint probe rounds completed."),
    "bridge_exporter_round_overruns_total": (
        "counter",
        set(),
        "Round starts skipped because the previous round of that endpoint was still running "
        "(interval too short for the modules' timeouts).",
    ),
    "bridge_exporter_probes_total": ("counter", set(), "Probes completed."),
    "bridge_exporter_prober_errors_total": (
        "counter",
        set(),
        "Probes whose prober raised or overran its deadline (a bug; see log).",
    ),
    "bridge_exporter_probes_in_flight": ("gauge", set(), "Probes running now."),
    "bridge_exporter_probe_interval_seconds": (
        "gauge", set(), "Configured time between an endpoint's rounds."
    ),
    "bridge_exporter_prober_ready": (
        "gauge",
        {"prober"},
        "0 if a prober could not start (e.g. ICMP without permission; see the log).",
    ),
    "bridge_exporter_endpoints": ("gauge", set(), "Endpoints in the inventory."),
    "bridge_exporter_config_last_reload_successful": (
        "gauge", set(), "1 if the last configuration load succeeded."
    ),
    "bridge_exporter_config_last_reload_success_timestamp_seconds": (
        "gauge", set(), "When the configuration was last loaded successfully (Unix time)."
    ),
}  # fmt: skip


def _families_in_text(text: str) -> dict[str, tuple[str, str]]:
    """name -> (TYPE, HELP) straight from the exposition's comment lines."""
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {name: (kind, helps.get(name, "")) for name, kind in types.items()}


def test_exporter_own_series_keep_their_names_types_labels_and_help(scrape, tool):
    families = _families_in_text(scrape.text)
    for name, (kind, labels, help_text) in EXPORTER_SERIES.items():
        assert families.get(name) == (kind, help_text), name
        samples = scrape.samples(name)
        assert samples, name
        assert all(set(s.labels) == labels for s in samples), (name, samples)
    # Every bridge_exporter_* family is accounted for: the old ones and the new counter.
    own = {n for n in families if n.startswith("bridge_exporter_")}
    assert own == {*EXPORTER_SERIES, "bridge_exporter_local_resource_errors_total"}
    kind, help_text = families["bridge_exporter_local_resource_errors_total"]
    assert kind == "counter" and "EMFILE" in help_text
    errors = scrape.samples("bridge_exporter_local_resource_errors_total")
    assert {s.labels["operation"]: s.value for s in errors} == {"accept": 0, "probe": 0}
    # Each family once, and the whole page passes Prometheus' own linter.
    assert len(re.findall(r"^# TYPE bridge_exporter_", scrape.text, re.M)) == len(own)
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=scrape.text, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- isolation and overruns ----------------------------------------------------------------


def _within_the_grace(duration: float, timeout: float) -> bool:
    """Ended by the prober's own deadline: a prober that overran it is cut off by the
    scheduler's backstop no sooner than BACKSTOP_GRACE_SECONDS later (and counted as a
    prober error), so anything short of that, however late a busy host ran it, is the
    prober's own timeout."""
    return timeout - 0.05 <= duration < timeout + BACKSTOP_GRACE_SECONDS


def test_hung_peer_costs_its_timeout_and_does_not_delay_others(running):
    exporter = running.exporter

    def stamp(scrape: Scrape, endpoint: str) -> float:
        return scrape.value("bridge_last_probe_timestamp_seconds", endpoint=endpoint)

    # Scrape every 0.2 s until five probes of the healthy endpoint were seen (some 4 s):
    # their times, and how old the latest was at each scrape.
    scrapes: list[Scrape] = []
    ages: list[float] = []
    probes: set[float] = set()
    give_up = time.monotonic() + 20
    while len(probes) < 5:
        assert time.monotonic() < give_up, f"only these healthy probes in 20 s: {probes}"
        scrapes.append(exporter.scrape())
        ages.append(time.time() - stamp(scrapes[-1], "dist-a-web"))
        probes.add(stamp(scrapes[-1], "dist-a-web"))
        time.sleep(0.2)
    first, second = scrapes[0], scrapes[-1]

    # The healthy endpoint keeps its 1 s rhythm while two neighbours hang for 2-2.5 s:
    # its probes come about 1 s apart, not 2 s or more as behind them. The median gap, so
    # that one round a busy host ran late does not decide it.
    gaps = [b - a for a, b in itertools.pairwise(sorted(probes))]
    assert 0.5 < statistics.median(gaps) < 1.5, gaps
    # And its stamp is the wall-clock time of a recent probe: the freshest scrape sees it
    # well under 1.6 s old (any one scrape may fall just before a round a busy host ran late).
    assert min(ages) < 1.6, ages
    for scrape in (first, second):
        fast = scrape.value("bridge_probe_duration_seconds", endpoint="dist-a-web", probe="web")
        assert fast < 0.5, fast

    hung = second.value("bridge_probe_duration_seconds", endpoint="dist-a-hung", probe="web_hung")
    assert _within_the_grace(hung, HUNG_TIMEOUT), hung
    assert second.value("bridge_exporter_prober_errors_total") == 0  # no backstop cut
    assert (
        second.samples("bridge_probe_failure_info", endpoint="dist-a-hung")[0].labels["reason"]
        == "timeout"
    )
    # The hung endpoint's round is one probe: its round lasts that probe's timeout.
    assert second.value("bridge_round_duration_seconds", endpoint="dist-a-hung") >= HUNG_TIMEOUT


def test_slow_rounds_count_overruns_and_never_overlap(running):
    slow = running.network.slow
    # Two slow rounds even when run alone (the second starts 3 s after the first).
    wait_until(lambda: len(slow.starts) >= 2, 15, "a second slow round")
    scrape = running.exporter.scrape()
    assert scrape.value("bridge_exporter_round_overruns_total") > 0
    duration = scrape.value("bridge_probe_duration_seconds", endpoint="dist-a-slow")
    assert _within_the_grace(duration, SLOW_TIMEOUT), duration
    assert scrape.value("bridge_exporter_prober_errors_total") == 0  # no backstop cut

    # What the peer saw: one connection at a time, starting at most once per timeout.
    # The exporter starts a round no sooner than the last one's 2.5 s ended (on its 1 s
    # grid: 3 s later); the peer notes each accept in a thread of this process that a busy
    # host may run late, so a gap may look up to 0.5 s short. Overlapping rounds, paced by
    # the interval, would come 1 s apart.
    starts = list(slow.starts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= SLOW_TIMEOUT - 0.5, gaps
    assert slow.most_open == 1
    elapsed = time.monotonic() - running.started
    assert len(starts) <= elapsed / SLOW_TIMEOUT + 1


# --- /probe ---------------------------------------------------------------------------------


def test_probe_endpoint_by_id_and_module(running):
    status, text = running.exporter.get("/probe?target=prov-a&module=tcp")
    assert status == 200, text
    result = Scrape(text)
    assert result.value("bridge_probe_success", endpoint="prov-a", probe="tcp") == 1

    status, text = running.exporter.get("/probe?target=prov-b&module=tcp")
    assert status == 200, text
    result = Scrape(text)
    assert result.value("bridge_probe_success", endpoint="prov-b", probe="tcp") == 0
    assert result.samples("bridge_probe_failure_info")[0].labels["reason"] == "refused"


def test_probe_debug_shows_logs_and_result(running):
    port = running.network.refused_port
    status, text = running.exporter.get("/probe?target=prov-b&module=tcp&debug=true")
    assert status == 200, text
    logs = text.split("Logs:", 1)[1].split("Module tcp", 1)[0]
    assert f"connecting to 127.88.1.2 port {port}" in logs
    assert "Module tcp (tcp) FAILED (refused)" in text
    assert 'bridge_probe_success{endpoint="prov-b",probe="tcp"} 0.0' in text


def test_probe_refuses_targets_outside_the_inventory(running):
    status, text = running.exporter.get("/probe?target=127.88.9.9&module=tcp")
    assert status == 400
    assert "only probes endpoints of the inventory" in text
    status, text = running.exporter.get("/probe?target=prov-a&module=nope")
    assert status == 400 and "Unknown module 'nope'" in text


def test_probe_target_by_address(running):
    status, text = running.exporter.get("/probe?target=127.88.3.1")
    assert status == 200, text
    result = Scrape(text)
    assert result.value("bridge_probe_success", endpoint="xa-b1", probe="h323") == 1


# --- landing page and health --------------------------------------------------------------


def test_landing_page_counts_tiers_and_lists_endpoints_down(running):
    status, page = running.exporter.get("/")
    assert status == 200
    for tier, total in EXPECTED_TIER_COUNTS.items():
        up = EXPECTED_TIER_UP[tier]
        row = re.search(
            rf"<tr><td>{tier}</td><td>(\d+)</td><td class=ok>(\d+)</td>"
            rf"<td class=\w+>(\d+)</td>",
            page,
        )
        assert row, f"no row for tier {tier}"
        assert tuple(map(int, row.groups())) == (total, up, total - up)
    assert f"Down now ({len(DOWN)})" in page
    down_rows = {m[0]: m[1] for m in re.findall(r"<tr><td>([\w-]+)</td>(.*?)</tr>", page)}
    assert "tcp: refused" in down_rows["prov-b"]
    assert "web_hung: timeout" in down_rows["dist-a-hung"]
    assert "hall" not in down_rows


def test_healthy_and_ready(running):
    assert running.exporter.get("/-/healthy")[0] == 200
    assert running.exporter.get("/-/ready")[0] == 200


def test_json_log_lines_at_the_chosen_level(running):
    # debug=true shows debug lines to the caller; the info-level process log stays clean.
    status, text = running.exporter.get("/probe?target=prov-b&debug=true")
    assert status == 200 and "debug: tcp prov-b: connecting to" in text
    time.sleep(0.2)
    lines = [line for line in running.exporter.log.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any(
        r["msg"] == "probing 8 endpoints in 4 tiers every 1s from " + str(running.exporter.config)
        for r in records
    )
    assert [r for r in records if r["level"] == "debug"] == []


# --- reload ---------------------------------------------------------------------------------

RELOAD_BASE = """\
interval: 1s
tiers:
  - name: province
  - name: commune
modules:
  tcp:
    prober: tcp
    timeout: 1s
    tcp: {{port: {port}}}
endpoints:
  - id: tinh
    name: Hội trường Tỉnh ủy
    tier: province
    address: 127.88.10.1
    modules: [tcp]
"""
RELOAD_COMMUNE = """\
  - id: {id}
    name: Xã {id}
    tier: commune
    parent: tinh
    address: {address}
    modules: [tcp]
"""


def _inventory_text(port: int, communes: dict[str, str]) -> str:
    return RELOAD_BASE.format(port=port) + "".join(
        RELOAD_COMMUNE.format(id=i, address=a) for i, a in communes.items()
    )


def test_reload_by_sighup_and_http_keeps_old_config_on_error(servers, tmp_path):
    port = servers.tcp("127.88.10.1")
    # The module names one port: every endpoint listens on it at its own address.
    for address in ("127.88.10.2", "127.88.10.3"):
        servers.tcp(address, port)
    config = tmp_path / "bridge.yml"
    config.write_text(_inventory_text(port, {"xa-1": "127.88.10.2"}), encoding="utf-8")
    exporter = ExporterProcess(config, tmp_path, "--web.enable-lifecycle").start()
    try:
        exporter.wait_ready()
        exporter.wait_for(
            lambda s: s.by_endpoint("bridge_up") == {"tinh": 1, "xa-1": 1}, 10, "first rounds"
        )

        # Add an endpoint; SIGHUP.
        config.write_text(
            _inventory_text(port, {"xa-1": "127.88.10.2", "xa-2": "127.88.10.3"}),
            encoding="utf-8",
        )
        exporter.signal(signal.SIGHUP)
        scrape = exporter.wait_for(
            lambda s: s.by_endpoint("bridge_up").get("xa-2") == 1, 10, "xa-2 after SIGHUP"
        )
        assert scrape.value("bridge_exporter_config_last_reload_successful") == 1
        assert scrape.value("bridge_tier_endpoints", tier="commune") == 2
        first_load = scrape.value("bridge_exporter_config_last_reload_success_timestamp_seconds")

        # A broken file: 500 naming file:line; the running config keeps probing.
        broken = _inventory_text(port, {"xa-2": "127.88.10.3"}).replace(
            "tier: commune", "tier: comune"
        )
        config.write_text(broken, encoding="utf-8")
        bad_line = broken.splitlines().index("    tier: comune") + 1
        status, text = exporter.get("/-/reload", method="POST")
        assert status == 500
        assert f"{config}:{bad_line}: " in text and "'comune'" in text
        before = exporter.scrape()
        assert before.value("bridge_exporter_config_last_reload_successful") == 0
        assert set(before.by_endpoint("bridge_up")) == {"tinh", "xa-1", "xa-2"}
        after = exporter.wait_for(
            lambda s: all(
                s.value("bridge_last_probe_timestamp_seconds", endpoint=e)
                > before.value("bridge_last_probe_timestamp_seconds", endpoint=e)
                for e in ("tinh", "xa-1", "xa-2")
            ),
            5,
            "the old endpoints to keep being probed",
        )
        assert after.value("bridge_exporter_config_last_reload_successful") == 0
        assert exporter.get("/-/healthy")[0] == 200
        status, page = exporter.get("/")
        assert status == 200 and "Last config reload FAILED" in page

        # Fixed, without xa-1: reload succeeds and xa-1's series are gone.
        config.write_text(_inventory_text(port, {"xa-2": "127.88.10.3"}), encoding="utf-8")
        status, text = exporter.get("/-/reload", method="POST")
        assert status == 200, text
        scrape = exporter.scrape()
        assert scrape.value("bridge_exporter_config_last_reload_successful") == 1
        assert (
            scrape.value("bridge_exporter_config_last_reload_success_timestamp_seconds")
            > first_load
        )
        assert 'endpoint="xa-1"' not in scrape.text
        assert set(scrape.by_endpoint("bridge_endpoint_info")) == {"tinh", "xa-2"}
        assert scrape.value("bridge_tier_endpoints", tier="commune") == 1

        assert exporter.stop() < 5
    finally:
        exporter.kill()


# --- start-up and shutdown ----------------------------------------------------------------


def test_bad_config_at_startup_exits_1_naming_each_problem(tmp_path):
    config = tmp_path / "bad.yml"
    text = _inventory_text(1720, {"xa-1": "127.88.11.2"})
    text = text.replace("prober: tcp", "prober: tcpp").replace("tier: commune", "tier: comune")
    config.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    prober_line = lines.index("    prober: tcpp") + 1
    tier_line = lines.index("    tier: comune") + 1

    done = run_exporter_once(
        [f"--config.file={config}", f"--web.listen-address=127.0.0.1:{free_port()}"], timeout=15
    )
    assert done.returncode == 1, done.stderr
    # Every problem at once, each with the line to fix (wording is the loader's business).
    problems = [line for line in done.stderr.splitlines() if f"{config}:" in line]
    assert any(f"{config}:{prober_line}: " in p and "'tcpp'" in p for p in problems), problems
    assert any(f"{config}:{tier_line}: " in p and "'comune'" in p for p in problems), problems


def test_sigterm_exits_0_promptly_with_a_probe_hanging(servers, tmp_path):
    hung = servers.hung("127.88.12.1")
    config = tmp_path / "bridge.yml"
    config.write_text(
        "interval: 1s\ntiers: [{name: province}, {name: commune}]\n"
        "modules:\n  web:\n    prober: http\n    timeout: 30s\n"
        f"    http: {{url: 'http://{{address}}:{hung.port}/'}}\n"
        "endpoints:\n  - {id: p, name: P, tier: province, address: 127.88.12.1, "
        "modules: [web]}\n",
        encoding="utf-8",
    )
    exporter = ExporterProcess(config, tmp_path).start()
    try:
        exporter.wait_ready()
        exporter.wait_for(
            lambda s: s.value("bridge_exporter_probes_in_flight") == 1, 5, "a probe in flight"
        )
        wait_until(lambda: hung.open_now == 1, 5, "the hung peer to hold the connection")
        # The probe would hang for 30 s: stopping must cancel it, not wait it out.
        assert exporter.stop() < 3
        wait_until(lambda: hung.open_now == 0, 3, "the probe's connection to be closed")
    finally:
        exporter.kill()


# --- packet trains through the whole stack --------------------------------------------------


def test_icmp_counters_histogram_and_mos_on_loopback(tmp_path):
    config = tmp_path / "bridge.yml"
    config.write_text(
        "interval: 1s\ntiers: [{name: province}, {name: commune}]\n"
        "modules:\n  ping:\n    prober: icmp\n    timeout: 1s\n"
        "    icmp: {count: 3, interval: 50ms}\n"
        "endpoints:\n"
        "  - {id: p, name: Tỉnh, tier: province, address: 127.88.40.1, modules: [ping]}\n"
        "  - {id: c, name: Xã, tier: commune, parent: p, address: 127.88.40.2, "
        "modules: [ping]}\n",
        encoding="utf-8",
    )
    exporter = ExporterProcess(config, tmp_path).start()
    try:
        exporter.wait_ready()
        sent = "bridge_icmp_packets_sent_total"
        first = exporter.wait_for(lambda s: s.samples(sent, endpoint="c"), 5, "a first ping round")
        assert first.value("bridge_exporter_prober_ready", prober="icmp") == 1
        second = exporter.wait_for(
            lambda s: s.value(sent, endpoint="c") >= first.value(sent, endpoint="c") + 3,
            5,
            "a second ping round",
        )
        labels = {"endpoint": "c", "probe": "ping"}
        sent_now = second.value(sent, **labels)
        assert sent_now % 3 == 0
        assert second.value("bridge_icmp_packets_received_total", **labels) == sent_now
        assert second.value("bridge_icmp_rtt_seconds_count", **labels) == sent_now
        assert second.value("bridge_icmp_rtt_seconds_bucket", le="+Inf", **labels) == sent_now
        assert second.value("bridge_icmp_rtt_seconds_bucket", le="0.1", **labels) == sent_now
        assert 0 < second.value("bridge_icmp_rtt_seconds_sum", **labels) < sent_now * 0.1
        assert second.value("bridge_packet_loss_ratio", **labels) == 0
        assert 0 < second.value("bridge_rtt_seconds", **labels) < 0.1
        assert second.value("bridge_mos", endpoint="c") >= 4.3
        assert second.value("bridge_quality_grade", endpoint="c") == 0
        assert second.value("bridge_up", endpoint="c") == 1
        exporter.stop()  # the ICMP sockets close cleanly too: exit 0
    finally:
        exporter.kill()
