"""One page per real fault, end to end with real processes on loopback: the simulator
serves a small four-tier network, the exporter probes it, Prometheus runs the shipped
rules, Alertmanager the shipped routing, and a test receiver stands for the webhook and
the Telegram Bot API.

The shipped files are used as they are, with only addresses and intervals changed: the
probe interval is 1 s instead of 15 s, so rule evaluation and every `for:` are 15 times
shorter too, and Alertmanager's group waits are a second or two. Scrapes are every 2 s, so
that one may take 2 s before it fails: a failed scrape marks every series stale, which
resolves the page at once and pages again (the exporter answers in milliseconds here).

Two cases: a district and its communes lost while a session needs them is ONE critical
notification naming the district, how many points and delegates are cut off, and none for
the communes, then one resolved notification; a lone commune down outside any session is
a warning (a ticket), not a page.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.request
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, need_tool
from helpers_exporter import ExporterProcess, exporter_command, http_request, wait_until
from helpers_stack import (
    Alertmanager,
    Prometheus,
    Receiver,
    render_secrets,
    rewrite_alertmanager_config,
    rewrite_prometheus_config,
    scale_durations,
)

SHIPPED_INTERVAL_SECONDS = 15  # the example's probe interval the rules' `for:` assume
SESSION_TITLE = "Hội nghị báo cáo chuyên đề"
# id: (tier, parent, delegates, last octet)
NETWORK = {
    "hall": ("central", None, 300, 1),
    "tinh": ("province", "hall", 200, 2),
    "huyen-a": ("district", "tinh", 40, 3),
    "xa-a1": ("commune", "huyen-a", 100, 4),
    "xa-a2": ("commune", "huyen-a", 80, 5),
    "xa-a3": ("commune", "huyen-a", 60, 6),
    "huyen-b": ("district", "tinh", 30, 7),
    "xa-b1": ("commune", "huyen-b", 50, 8),
    "xa-b2": ("commune", "huyen-b", 50, 9),
}
HUYEN_A_BELOW = 3
HUYEN_A_DELEGATES = 40 + 100 + 80 + 60  # the district's own and its communes'


def _inventory() -> str:
    zone = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
    now = dt.datetime.now(zone)
    lines = [
        "interval: 1s",
        "tiers: [central, province, district, commune]",
        "modules:",
        "  sip: {prober: sip, timeout: 800ms, sip: {transport: udp, t1: 100ms, t2: 200ms}}",
        "endpoints:",
    ]
    for endpoint, (tier, parent, delegates, octet) in NETWORK.items():
        parent_text = f", parent: {parent}" if parent else ""
        lines.append(
            f"  - {{id: {endpoint}, name: Điểm cầu {endpoint}, tier: {tier}{parent_text},"
            f" address: 127.77.0.{octet}, delegates: {delegates}, modules: [sip]}}"
        )
    lines += [
        "sessions:",
        "  - name: bao-cao",
        f"    title: {SESSION_TITLE}",
        f"    start: {(now - dt.timedelta(minutes=10)):%Y-%m-%d %H:%M}",
        f"    end: {(now + dt.timedelta(hours=1)):%Y-%m-%d %H:%M}",
        "    endpoints: [{subtree: huyen-a}]",
    ]
    return "\n".join(lines) + "\n"


class Stack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[Any] = []
        self.receiver = Receiver()
        self.control = f"http://127.0.0.1:{free_port()}"

    def start(self) -> Stack:
        config = self.workdir / "bridge.yml"
        config.write_text(_inventory(), encoding="utf-8")
        self._start_simulator(config)
        exporter = ExporterProcess(config, self.workdir).start()
        self.processes.append(exporter)
        exporter.wait_ready()
        self.alertmanager = self._start_alertmanager()
        self.processes.append(self.alertmanager)
        self.prometheus = self._start_prometheus(exporter.port)
        self.processes.append(self.prometheus)
        return self

    def _start_simulator(self, config: Path) -> None:
        log = (self.workdir / "simulator.log").open("wb")
        process = subprocess.Popen(
            [
                *exporter_command(),
                "simulate",
                f"--config.file={config}",
                f"--control.listen-address={self.control.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        wait_until(lambda: http_request(f"{self.control}/faults")[0] == 200, 20, "the simulator")

    def _start_alertmanager(self) -> Alertmanager:
        binary = shutil.which("prometheus-alertmanager") or need_tool("alertmanager")
        secrets = self.workdir / "secrets"
        secrets.mkdir()
        (secrets / "telegram_bot_token").write_text("123456789:AAE-test_token\n")
        (secrets / "smtp_password").write_text("not-a-real-password\n")
        source = rewrite_alertmanager_config(
            self.workdir / "alertmanager",
            webhook_url=f"{self.receiver.url}/alerts",
            telegram_api_url=self.receiver.url,
            smtp_smarthost=f"127.0.0.1:{free_port()}",  # nothing listens: mail fails, locally
            secrets=secrets,
            group_wait="1s",
            group_interval="2s",
        )
        config = render_secrets(source, self.workdir / "run" / "alertmanager.yml")
        return Alertmanager(binary, config, self.workdir)

    def _start_prometheus(self, exporter_port: int) -> Prometheus:
        binary = need_tool("prometheus")
        port = free_port()
        directory = self.workdir / "prometheus"
        config = rewrite_prometheus_config(
            directory,
            exporter=f"127.0.0.1:{exporter_port}",
            prometheus=f"127.0.0.1:{port}",
            alertmanager=self.alertmanager.url.removeprefix("http://"),
            interval="1s",
            scrape_interval="2s",
        )
        for rules in (directory / "rules").glob("*.yml"):
            text = rules.read_text(encoding="utf-8")
            rules.write_text(scale_durations(text, SHIPPED_INTERVAL_SECONDS), encoding="utf-8")
        return Prometheus(binary, config, self.workdir, port)

    def fault(self, endpoint: str, body: dict[str, Any] | None) -> None:
        method = "DELETE" if body is None else "PUT"
        request = urllib.request.Request(
            f"{self.control}/faults/{endpoint}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def notifications(self) -> list[dict[str, Any]]:
        """Webhook notifications about points (tier-wide alerts such as a tier under its
        reachability target are the wall's business here, not the page's)."""
        found = []
        for body in self.receiver.received("/alerts"):
            alerts = [a for a in body["alerts"] if a["labels"].get("endpoint")]
            if alerts:
                found.append({**body, "alerts": alerts})
        return found

    def stop(self) -> None:
        for process in reversed(self.processes):
            if isinstance(process, subprocess.Popen):
                process.terminate()
                process.wait(timeout=10)
            elif isinstance(process, ExporterProcess):
                process.kill()
            else:
                process.stop()
        self.receiver.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("stack"))
    try:
        running.start()
        wait_until(
            lambda: (
                running.prometheus.by_label("sum by (job) (bridge_up)", "job")
                == {"bridge": len(NETWORK)}
            ),
            30,
            "every point up in Prometheus",
        )
        yield running
    finally:
        running.stop()


def _point_alerts(notification: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (a["labels"]["endpoint"], a["labels"]["alertname"]) for a in notification["alerts"]
    )


# After the first notification, how long to keep listening for any that should not come:
# several group intervals (2 s) and rule evaluations (1 s) and the communes' own `for:`.
SETTLE_SECONDS = 10


def _failed_scrapes(stack: Stack) -> str:
    """For a failure message: a count off by a page or a resolution is what a failed scrape
    does (see rewrite_prometheus_config), not necessarily a fault of the rules or routing."""
    return f"Prometheus saw {stack.prometheus.failed_scrapes('bridge')} failed scrapes"


def _settled(stack: Stack, status: str) -> list[dict[str, Any]]:
    wait_until(
        lambda: [n for n in stack.notifications() if n["status"] == status],
        60,
        f"a {status} notification",
    )
    time.sleep(SETTLE_SECONDS)
    return [n for n in stack.notifications() if n["status"] == status]


def test_a_lost_district_in_a_session_is_one_page_then_one_resolution(stack):
    stack.fault("huyen-a", {"down": True, "subtree": True})
    firing = _settled(stack, "firing")
    assert [_point_alerts(n) for n in firing] == [[("huyen-a", "BridgeSubtreeLost")]], (
        _failed_scrapes(stack)
    )
    (page,) = firing
    assert page["receiver"] == "page"
    (alert,) = page["alerts"]
    labels, annotations = alert["labels"], alert["annotations"]
    assert labels["severity"] == "critical"
    assert labels["session"] == "bao-cao" and labels["title"] == SESSION_TITLE
    assert labels["parent"] == "tinh" and labels["district"] == "huyen-a"
    assert f"{HUYEN_A_BELOW} points below it are cut off" in annotations["summary"]
    assert f"{HUYEN_A_DELEGATES} delegates in all" in annotations["description"]
    assert "Điểm cầu huyen-a" in annotations["summary_vi"]
    telegram = stack.receiver.received("/bot")
    assert len(telegram) == 1 and "Điểm cầu huyen-a" in telegram[0]["text"]

    stack.fault("huyen-a", None)
    resolved = _settled(stack, "resolved")
    assert [_point_alerts(n) for n in resolved] == [[("huyen-a", "BridgeSubtreeLost")]], (
        _failed_scrapes(stack)
    )
    firing = [n for n in stack.notifications() if n["status"] == "firing"]
    assert len(firing) == 1, _failed_scrapes(stack)


def test_a_lone_commune_down_outside_any_session_is_a_ticket_not_a_page(stack):
    pages_before = len(stack.receiver.received("/bot"))
    seen_before = len(stack.notifications())
    stack.fault("xa-b1", {"down": True})
    wait_until(lambda: len(stack.notifications()) > seen_before, 60, "a notification about xa-b1")
    time.sleep(SETTLE_SECONDS)
    new = stack.notifications()[seen_before:]
    assert [(_point_alerts(n), n["status"]) for n in new] == [
        ([("xa-b1", "BridgeEndpointDown")], "firing")
    ], _failed_scrapes(stack)
    (ticket,) = new
    assert ticket["receiver"] == "ops-ticket"
    (alert,) = ticket["alerts"]
    assert alert["labels"]["severity"] == "warning"
    assert "session" not in alert["labels"]
    assert len(stack.receiver.received("/bot")) == pages_before, "no Telegram page"
    stack.fault("xa-b1", None)
