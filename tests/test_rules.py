"""The Prometheus side of the stack (prometheus/), checked with the real tools.

promtool checks the config and the rules and runs the rules' unit tests
(prometheus/tests/*.yml); amtool checks the Alertmanager config and its routing tree; a
real Alertmanager inhibits, groups and renders notifications to a webhook and a fake
Telegram API on loopback; a real Prometheus evaluates the rules on the real exporter.
Static checks hold the mixin conventions: every alert has a severity, summaries and
descriptions in both languages, a runbook_url whose anchor exists in RUNBOOK.md, and
promtool cases that fire it at each of its severities and one where it must not fire;
every recording rule is named level:metric:operation.

rewrite_prometheus_config() and rewrite_alertmanager_config() copy the shipped files with
only addresses (and, when asked, intervals) changed: the end-to-end tests reuse them.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, free_port, need_tool
from helpers_exporter import (
    ExporterProcess,
    LoopbackServers,
    http_request,
    wait_until,
    write_inventory,
)
from helpers_stack import (
    PROM_DIR,
    Alertmanager,
    Prometheus,
    Receiver,
    render_secrets,
    rewrite_alertmanager_config,
    rewrite_prometheus_config,
    run,
)

RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
UNIT_TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
RUNBOOK = PROM_DIR / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/bridge-exporter/bridge-exporter/blob/main/prometheus/RUNBOOK.md"
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "summary_vi", "description", "description_vi", "runbook_url"}
RECORDING_NAME = re.compile(r"^[a-z][a-z0-9_]*:bridge_[a-z0-9_]+:[a-z][a-z0-9_]*$")
ALERT_NAME = re.compile(r"^Bridge(?:[A-Z][a-z0-9]*)+$")


def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield path, rule


def alert_rules() -> list[dict[str, Any]]:
    return [rule for _, rule in rules() if "alert" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alert_rules()}


def unit_tests() -> Iterator[dict[str, Any]]:
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            yield from test.get("alert_rule_test", [])


# --- static conventions -------------------------------------------------------------------


def test_recording_rules_are_named_level_metric_operation():
    names = [rule["record"] for _, rule in rules() if "record" in rule]
    assert len(names) > 40
    wrong = [name for name in names if not RECORDING_NAME.match(name)]
    assert wrong == [], f"not level:bridge_metric:operation: {wrong}"


def test_every_alert_is_mixin_style_with_a_runbook_anchor_that_exists():
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert ALERT_NAME.match(name), f"{name}: CamelCase with the Bridge prefix"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        assert all(rule["annotations"][key].strip() for key in ANNOTATIONS), name
        url = rule["annotations"]["runbook_url"]
        assert url == f"{RUNBOOK_URL}#{name.lower()}", f"{name}: runbook_url {url}"
        assert name.lower() in anchors, f"{name}: no '## {name}' section in RUNBOOK.md"


def test_the_runbook_explains_every_alert_in_both_languages():
    sections = re.split(r"^## ", RUNBOOK.read_text(encoding="utf-8"), flags=re.M)
    by_name = {section.split("\n", 1)[0].strip(): section for section in sections}
    for name in alert_names():
        section = by_name[name]
        for item in ("*Ý nghĩa:*", "*Kiểm tra trước:*", "*Xác nhận khắc phục:*"):
            assert item in section, f"RUNBOOK.md {name}: no {item}"
        for item in ("*Meaning:*", "*Check first:*", "*Confirm recovery:*"):
            assert item in section, f"RUNBOOK.md {name}: no {item}"


def test_every_alert_has_unit_tests_that_fire_it_at_each_severity_and_one_quiet():
    fired: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for case in unit_tests():
        expected = case.get("exp_alerts") or []
        if not expected:
            quiet.add(case["alertname"])
        for alert in expected:
            fired.add((case["alertname"], alert["exp_labels"]["severity"]))
    severities = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    assert severities - fired == set(), "alerts no promtool case fires at that severity"
    assert alert_names() - quiet == set(), "alerts with no promtool case where they stay quiet"


def test_alertmanager_names_only_alerts_that_exist():
    config = yaml.safe_load((PROM_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    matchers = [
        matcher
        for rule in config["inhibit_rules"]
        for matcher in rule["source_matchers"] + rule["target_matchers"]
    ]
    named = set()
    for matcher in matchers:
        found = re.fullmatch(r'alertname=~?"(.+)"', matcher)
        if found:
            pattern = re.compile(found.group(1))
            hits = {name for name in alert_names() if pattern.fullmatch(name)}
            assert hits, f"inhibit matcher {matcher} matches no alert of the rules"
            named |= hits
    down = {"BridgeEndpointDown", "BridgeSubtreeLost", "BridgeSessionEndpointNotReady"}
    quality = {
        "BridgeEndpointPacketLossHigh",
        "BridgeEndpointRttHigh",
        "BridgeEndpointJitterHigh",
        "BridgeEndpointMosLow",
    }
    assert down | quality <= named


def test_one_inhibit_rule_per_non_leaf_tier_of_the_example():
    inventory = yaml.safe_load((EXAMPLES / "thai-binh.yml").read_text(encoding="utf-8"))
    non_leaf = [tier["name"] for tier in inventory["tiers"][:-1]]
    config = yaml.safe_load((PROM_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    for tier in non_leaf:
        rule = next(
            (r for r in config["inhibit_rules"] if f'tier="{tier}"' in r["source_matchers"]),
            None,
        )
        assert rule is not None, f"no inhibit rule for a down {tier} point"
        assert rule["equal"] == [tier]
        assert set(rule["target_matchers"]) == {f'{tier}=~".+"', f'tier!="{tier}"'}


def test_prometheus_config_scrapes_three_jobs_no_slower_than_the_probes():
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {
        "bridge": ["exporter:9198"],
        "prometheus": ["prometheus:9090"],
        "alertmanager": ["alertmanager:9093"],
    }
    inventory = yaml.safe_load((EXAMPLES / "thai-binh.yml").read_text(encoding="utf-8"))
    assert config["global"]["scrape_interval"] == inventory["interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    assert "--storage.tsdb.retention.time=" in (PROM_DIR / "prometheus.yml").read_text()


# --- promtool and amtool --------------------------------------------------------------------


def test_promtool_checks_the_config_and_the_rules():
    promtool = need_tool("promtool")
    config = run(promtool, "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in config.stdout
    checked = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("test_file", UNIT_TEST_FILES, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(test_file):
    promtool = need_tool("promtool")
    result = run(promtool, "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_checks_the_alertmanager_config():
    amtool = need_tool("amtool")
    result = run(amtool, "check-config", str(PROM_DIR / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 5 inhibit rules" in result.stdout and " - 1 templates" in result.stdout


ROUTES = [
    ("page", "alertname=BridgeSubtreeLost severity=critical tier=district endpoint=tb-hung-ha"),
    ("page", "alertname=BridgeEndpointDown severity=critical tier=commune endpoint=tb-a"),
    ("page-leadership", "alertname=BridgeEndpointDown severity=critical tier=province endpoint=p"),
    (
        "page-leadership",
        "alertname=BridgeSessionEndpointNotReady severity=critical tier=central endpoint=c",
    ),
    ("ops-ticket", "alertname=BridgeEndpointDown severity=warning tier=commune endpoint=tb-a"),
    ("ops-ticket", "alertname=BridgeEndpointMosLow severity=warning tier=province endpoint=p"),
    ("page", "alertname=BridgeExporterDown severity=critical job=bridge instance=e:9198"),
    ("ops-ticket", "alertname=BridgeExporterDown severity=warning job=bridge instance=e:9198"),
    ("ops-ticket", "alertname=BridgeTierReachabilityLow severity=warning tier=commune"),
]


@pytest.mark.parametrize(("receiver", "labels"), ROUTES, ids=[labels for _, labels in ROUTES])
def test_amtool_routes(receiver, labels):
    amtool = need_tool("amtool")
    result = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={PROM_DIR / 'alertmanager.yml'}",
        f"--verify.receivers={receiver}",
        *labels.split(),
    )
    assert result.returncode == 0, f"{labels} -> {result.stdout.strip()}, want {receiver}"


def test_point_alerts_are_grouped_by_parent():
    config = yaml.safe_load((PROM_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    for route in config["route"]["routes"]:
        if 'endpoint=~".+"' in route["matchers"]:
            assert route["group_by"] == ["parent"], route


# --- alertmanager-secrets.sh ------------------------------------------------------------


def test_secrets_script_puts_the_token_from_its_file_into_a_private_copy(tmp_path):
    amtool = need_tool("amtool")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "telegram_bot_token").write_text("123456789:AAE-test_token\n")
    source = rewrite_alertmanager_config(
        tmp_path / "in",
        webhook_url="http://127.0.0.1:9/alerts",
        telegram_api_url="http://127.0.0.1:9",
        smtp_smarthost="127.0.0.1:9",
        secrets=tmp_path / "secrets",
    )
    rendered = render_secrets(source, tmp_path / "run" / "alertmanager.yml")
    text = rendered.read_text(encoding="utf-8")
    tokens = {
        telegram["bot_token"]
        for receiver in yaml.safe_load(text)["receivers"]
        for telegram in receiver.get("telegram_configs", [])
    }
    assert tokens == {"123456789:AAE-test_token"} and "@file:" not in text
    assert rendered.stat().st_mode & 0o077 == 0, "the copy holding the token is private"
    assert "AAE-test_token" not in (PROM_DIR / "alertmanager.yml").read_text(encoding="utf-8")
    checked = run(amtool, "check-config", str(rendered))
    assert checked.returncode == 0 and " - 1 templates" in checked.stdout, checked.stdout


@pytest.mark.parametrize(
    ("token", "complaint"),
    [(None, "missing or unreadable"), ("", "empty"), ("not a token\n", "expected one line")],
)
def test_secrets_script_refuses_a_bad_secret_naming_file_and_line(tmp_path, token, complaint):
    (tmp_path / "secrets").mkdir()
    if token is not None:
        (tmp_path / "secrets" / "telegram_bot_token").write_text(token)
    source = rewrite_alertmanager_config(
        tmp_path / "in",
        webhook_url="http://127.0.0.1:9/alerts",
        telegram_api_url="http://127.0.0.1:9",
        smtp_smarthost="127.0.0.1:9",
        secrets=tmp_path / "secrets",
    )
    done = run("sh", str(PROM_DIR / "alertmanager-secrets.sh"), str(source), str(tmp_path / "o"))
    assert done.returncode != 0
    line = next(
        n
        for n, text in enumerate(source.read_text().splitlines(), 1)
        if "@file:" in text and not text.lstrip().startswith("#")
    )
    assert complaint in done.stderr and f"line {line}" in done.stderr, done.stderr
    assert not (tmp_path / "o").exists()


# --- a real Alertmanager --------------------------------------------------------------------


SESSION = {"session": "dai-hoi-xiii", "title": "Hội nghị quán triệt Nghị quyết Đại hội XIII"}
HUNG_HA = {"central": "dien-hong", "province": "tb-tinh-uy", "district": "tb-hung-ha"}
DONG_HUNG = {"central": "dien-hong", "province": "tb-tinh-uy", "district": "tb-dong-hung"}


def point_alert(alertname: str, severity: str, endpoint: str, **labels: str) -> dict[str, Any]:
    """An alert as the rules send it: the point's labels, words in both languages."""
    name = labels.pop("name", f"Điểm cầu {endpoint}")
    return {
        "labels": {
            "alertname": alertname,
            "severity": severity,
            "endpoint": endpoint,
            "name": name,
            "job": "bridge",
            "instance": "exporter:9198",
            **labels,
        },
        "annotations": {
            "summary": f"{alertname} at {name}",
            "summary_vi": f"{alertname} tại {name}",
            "description": f"{name}: what happened.",
            "description_vi": f"{name}: chuyện gì xảy ra.",
            "runbook_url": f"{RUNBOOK_URL}#{alertname.lower()}",
        },
    }


# (alert, inhibited?) -- what the rules could send at once, and what Alertmanager must hold.
ALERTS = [
    # tb-hung-ha (a district) is lost during the session: the one page for its branch.
    (
        point_alert(
            "BridgeSubtreeLost",
            "critical",
            "tb-hung-ha",
            tier="district",
            parent="tb-tinh-uy",
            parent_name="Hội trường Tỉnh ủy Thái Bình",
            name="Điểm cầu Huyện Hưng Hà",
            **HUNG_HA,
            **SESSION,
        ),
        False,
    ),
    # ... so its communes' alerts are held, whatever they are.
    (
        point_alert(
            "BridgeEndpointPacketLossHigh",
            "critical",
            "tb-hung-ha-tan-le",
            tier="commune",
            commune="tb-hung-ha-tan-le",
            parent="tb-hung-ha",
            **HUNG_HA,
            **SESSION,
        ),
        True,
    ),
    (
        point_alert(
            "BridgeEndpointDown",
            "warning",
            "tb-hung-ha-canh-tan",
            tier="commune",
            commune="tb-hung-ha-canh-tan",
            parent="tb-hung-ha",
            **HUNG_HA,
        ),
        True,
    ),
    # In tb-quynh-phu's readiness window its readiness page stands for its subtree alert.
    (
        point_alert(
            "BridgeSessionEndpointNotReady",
            "critical",
            "tb-quynh-phu",
            tier="district",
            parent="tb-tinh-uy",
            central="dien-hong",
            province="tb-tinh-uy",
            district="tb-quynh-phu",
            **SESSION,
        ),
        False,
    ),
    (
        point_alert(
            "BridgeSubtreeLost",
            "critical",
            "tb-quynh-phu",
            tier="district",
            parent="tb-tinh-uy",
            central="dien-hong",
            province="tb-tinh-uy",
            district="tb-quynh-phu",
            **SESSION,
        ),
        True,
    ),
    # A commune of tb-dong-hung is down: its own jitter alert is held, not its neighbour's.
    (
        point_alert(
            "BridgeEndpointDown",
            "critical",
            "tb-dong-hung-a",
            tier="commune",
            commune="tb-dong-hung-a",
            parent="tb-dong-hung",
            **DONG_HUNG,
            **SESSION,
        ),
        False,
    ),
    (
        point_alert(
            "BridgeEndpointJitterHigh",
            "critical",
            "tb-dong-hung-a",
            tier="commune",
            commune="tb-dong-hung-a",
            parent="tb-dong-hung",
            **DONG_HUNG,
            **SESSION,
        ),
        True,
    ),
    (
        point_alert(
            "BridgeEndpointJitterHigh",
            "warning",
            "tb-dong-hung-b",
            tier="commune",
            commune="tb-dong-hung-b",
            parent="tb-dong-hung",
            **DONG_HUNG,
        ),
        False,
    ),
    # A province point down pages the leadership route.
    (
        point_alert(
            "BridgeEndpointDown",
            "critical",
            "tb-ubnd",
            tier="province",
            parent="dien-hong",
            central="dien-hong",
            province="tb-ubnd",
            **SESSION,
        ),
        False,
    ),
]


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[tuple[Alertmanager, Receiver]]:
    binary = shutil.which("prometheus-alertmanager") or need_tool("alertmanager")
    receiver = Receiver()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "telegram_bot_token").write_text("123456789:AAE-test_token\n")
    (secrets / "smtp_password").write_text("not-a-real-password\n")
    source = rewrite_alertmanager_config(
        tmp_path / "config",
        webhook_url=f"{receiver.url}/alerts",
        telegram_api_url=receiver.url,
        smtp_smarthost=f"127.0.0.1:{free_port()}",  # nothing listens: mail fails, locally
        secrets=secrets,
        group_wait="2s",
        group_interval="1s",
    )
    config = render_secrets(source, tmp_path / "run" / "alertmanager.yml")
    server = Alertmanager(binary, config, tmp_path)
    try:
        yield server, receiver
    finally:
        server.stop()
        receiver.close()


def test_alertmanager_sends_one_notification_per_parent_and_holds_what_a_fault_explains(
    alertmanager,
):
    server, receiver = alertmanager
    server.post([alert for alert, _ in ALERTS])

    expected_groups = {
        ("page", "tb-tinh-uy"): {
            "tb-hung-ha:BridgeSubtreeLost",
            "tb-quynh-phu:BridgeSessionEndpointNotReady",
        },
        ("page", "tb-dong-hung"): {"tb-dong-hung-a:BridgeEndpointDown"},
        ("ops-ticket", "tb-dong-hung"): {"tb-dong-hung-b:BridgeEndpointJitterHigh"},
        ("page-leadership", "dien-hong"): {"tb-ubnd:BridgeEndpointDown"},
    }

    def notifications() -> dict[tuple[str, str], set[str]]:
        return {
            (body["receiver"], body["groupLabels"]["parent"]): {
                f"{a['labels']['endpoint']}:{a['labels']['alertname']}" for a in body["alerts"]
            }
            for body in receiver.received("/alerts")
        }

    def grouped_as_expected() -> bool:
        got = notifications()
        assert got == expected_groups, f"got {got}"
        return True

    wait_until(grouped_as_expected, 20, "one webhook notification per parent")
    wait_until(lambda: len(receiver.received("/bot")) >= 3, 20, "three Telegram messages")
    assert len(receiver.received("/alerts")) == 4, "one notification per group, no repeats"

    inhibited = {
        f"{a['labels']['endpoint']}:{a['labels']['alertname']}": bool(a["status"]["inhibitedBy"])
        for a in server.alerts()
    }
    assert inhibited == {
        f"{alert['labels']['endpoint']}:{alert['labels']['alertname']}": held
        for alert, held in ALERTS
    }


def test_telegram_message_names_point_tier_parent_and_session_in_both_languages(
    alertmanager,
):
    server, receiver = alertmanager
    server.post([ALERTS[0][0]])
    messages = wait_until(lambda: receiver.received("/bot"), 20, "a Telegram message")
    posts = [path for path, _ in receiver.posts if path.startswith("/bot")]
    assert posts == ["/bot123456789:AAE-test_token/sendMessage"], "token read from its file"
    text = messages[0]["text"]
    title = SESSION["title"]
    for line in (
        "[CRITICAL] BridgeSubtreeLost at Điểm cầu Huyện Hưng Hà",
        "ĐANG XẢY RA / FIRING",
        "BridgeSubtreeLost tại Điểm cầu Huyện Hưng Hà",
        "Điểm cầu: Điểm cầu Huyện Hưng Hà (tb-hung-ha), cấp district, "
        "cấp trên: Hội trường Tỉnh ủy Thái Bình",
        f"Phiên họp: {title} (dai-hoi-xiii)",
        "Điểm cầu Huyện Hưng Hà: chuyện gì xảy ra.",
        "Point: Điểm cầu Huyện Hưng Hà (tb-hung-ha), tier district, "
        "parent: Hội trường Tỉnh ủy Thái Bình",
        f"Session: {title} (dai-hoi-xiii)",
        "Điểm cầu Huyện Hưng Hà: what happened.",
        f"Runbook: {RUNBOOK_URL}#bridgesubtreelost",
    ):
        assert line in text.splitlines(), f"{line!r} not a line of:\n{text}"


def test_email_html_names_the_point_escaped_and_says_when_no_session_needs_it(tmp_path):
    amtool = need_tool("amtool")
    labels = {
        "alertname": "BridgeEndpointDown",
        "severity": "warning",
        "endpoint": "xa-1",
        "name": "Xã <Tân> & Lễ",
        "tier": "commune",
        "parent": "huyen-1",
        "parent_name": "Huyện Hưng Hà",
    }
    alert = point_alert("BridgeEndpointDown", "warning", "xa-1")
    alert.update(labels=labels, status="firing", startsAt="2021-03-26T00:00:00Z")
    data = {
        "receiver": "ops-ticket",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"parent": "huyen-1"},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
    }
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    rendered = run(
        amtool,
        "template",
        "render",
        f"--template.glob={PROM_DIR / 'templates' / '*.tmpl'}",
        '--template.text={{ template "bridge.email.html" . }}',
        "--template.type=html",
        f"--template.data={tmp_path / 'data.json'}",
    )
    assert rendered.returncode == 0, rendered.stderr
    html = rendered.stdout
    assert "<Tân>" not in html and "Xã &lt;Tân&gt; &amp; Lễ" in html
    for line in (
        "Điểm cầu: Xã &lt;Tân&gt; &amp; Lễ (xa-1), cấp commune, cấp trên: Huyện Hưng Hà",
        "Phiên họp: không có phiên nào cần điểm cầu này lúc này",
        "Point: Xã &lt;Tân&gt; &amp; Lễ (xa-1), tier commune, parent: Huyện Hưng Hà",
        "Session: none needs this point now",
    ):
        assert line in html.splitlines(), f"{line!r} not a line of:\n{html}"


# --- a real Prometheus on the real exporter -----------------------------------------------

# id: (tier, parent, reachable)
NETWORK = {
    "hall": ("central", None, True),
    "tinh-a": ("province", "hall", True),
    "tinh-b": ("province", "hall", False),
    "huyen-a1": ("district", "tinh-a", True),
    "huyen-b1": ("district", "tinh-b", False),
    "xa-a1-1": ("commune", "huyen-a1", True),
    "xa-a1-2": ("commune", "huyen-a1", False),
    "xa-b1-1": ("commune", "huyen-b1", False),
}


@pytest.fixture
def prometheus_on_exporter(tmp_path) -> Iterator[str]:
    binary = need_tool("prometheus")
    servers = LoopbackServers()
    endpoints = []
    for number, (endpoint, (tier, parent, reachable)) in enumerate(NETWORK.items(), 1):
        address = f"127.88.40.{number}"
        port = servers.tcp(address) if reachable else servers.refused(address)
        spec = {"id": endpoint, "name": f"Điểm cầu {endpoint}", "tier": tier, "address": address}
        spec.update({"parent": parent} if parent else {})
        spec["overrides"] = {"tcp": {"port": port}}
        endpoints.append(spec)
    inventory = {
        "interval": "1s",
        "tiers": [{"name": t, "modules": ["tcp"]} for t in ("central", "province", "district")]
        + [{"name": "commune", "modules": ["tcp"]}],
        "modules": {"tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": 1}}},
        "endpoints": endpoints,
    }
    exporter = ExporterProcess(write_inventory(tmp_path / "bridge.yml", inventory), tmp_path)
    exporter.start().wait_ready()
    port = free_port()
    config = rewrite_prometheus_config(
        tmp_path / "prometheus",
        exporter=f"127.0.0.1:{exporter.port}",
        prometheus=f"127.0.0.1:{port}",
        alertmanager=f"127.0.0.1:{free_port()}",
        interval="1s",
    )
    prometheus = Prometheus(binary, config, tmp_path, port)
    try:
        yield prometheus.url
    finally:
        prometheus.stop()
        exporter.kill()
        servers.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    status, body = http_request(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_rules_evaluate_on_the_real_exporter_and_only_root_causes_go_pending(
    prometheus_on_exporter,
):
    url = prometheus_on_exporter

    def down_alerts() -> dict[str, dict[str, str]]:
        found = query(url, 'ALERTS{alertname=~"BridgeEndpointDown|BridgeSubtreeLost"}')
        return {series["metric"]["endpoint"]: series["metric"] for series in found}

    # tinh-b, xa-a1-2 and the two points below tinh-b (huyen-b1, xa-b1-1) are refused:
    # only the roots of what is lost alert, not the points lost with their parent.
    alerts = wait_until(
        lambda: len(down_alerts()) == 2 and down_alerts(), 30, "two pending down alerts"
    )
    assert set(alerts) == {"tinh-b", "xa-a1-2"}
    assert alerts["xa-a1-2"]["name"] == "Điểm cầu xa-a1-2"
    assert alerts["xa-a1-2"]["parent_name"] == "Điểm cầu huyen-a1"
    assert alerts["xa-a1-2"]["district"] == "huyen-a1"
    assert alerts["xa-a1-2"]["severity"] == "warning" and "session" not in alerts["xa-a1-2"]

    tiers = wait_until(
        lambda: (
            {s["metric"]["tier"] for s in query(url, "tier:bridge_up:avg_over_time5m")}
            == {"central", "province", "district", "commune"}
        ),
        15,
        "a 5m reachability ratio for every tier",
    )
    assert tiers
    status, body = http_request(f"{url}/api/v1/rules")
    assert status == 200
    broken = [
        (rule["name"], rule.get("lastError"))
        for group in json.loads(body)["data"]["groups"]
        for rule in group["rules"]
        if rule["health"] == "err"
    ]
    assert broken == []
    # Over every evaluation so far (this Prometheus is younger than an hour), not at one
    # instant: a scrape slower than its 1 s timeout would leave no alert at all there.
    ever = query(
        url,
        "count by (endpoint) (count_over_time("
        'ALERTS{alertname=~"BridgeEndpointDown|BridgeSubtreeLost"}[1h]))',
    )
    assert {s["metric"]["endpoint"] for s in ever} == {"tinh-b", "xa-a1-2"}, (
        "an alert for a point below tinh-b, or for one that is up"
    )
