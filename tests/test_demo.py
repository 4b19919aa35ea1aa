"""`make demo` end to end: the simulated Thái Bình network probed by the real exporter.

The README promises that `make demo` serves /metrics with 104 `bridge_up` series, tier
totals 1/2/12/89, and shows its scenario's faults in /metrics and on the landing page.
This runs the very command (with a scenario whose faults start at once, so the test does
not wait a minute for the demo scenario's first fault) and checks what a user would see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import pytest
from conftest import REPO, free_port
from prometheus_client.parser import text_string_to_metric_families

SCENARIO = """\
description: faults from the first round, for the test
steps:
  - {at: 0s, endpoint: tb-hung-ha, subtree: true, fault: {down: true}}
  - {at: 0s, endpoint: tb-vu-thu-tam-quang, fault: {sip_status: 503}}
  - at: 0s
    endpoint: tb-thai-thuy-diem-dien
    fault: {delay_seconds: 200ms, jitter_seconds: 40ms, loss_ratio: 0.08}
"""
HUNG_HA_COMMUNES = 11


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not os.path.exists("/usr/bin/make"):
        pytest.fail("make is needed for `make demo`")
    scenario = tmp_path_factory.mktemp("demo") / "scenario.yml"
    scenario.write_text(SCENARIO)
    listen = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DEMO_LISTEN": listen,
        "DEMO_CONTROL": f"127.0.0.1:{free_port()}",
        "DEMO_SCENARIO": str(scenario),
    }
    log = tmp_path_factory.mktemp("demo-log") / "demo.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["make", "-s", "demo"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://{listen}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"make demo exited early:\n{log.read_text()}")
            try:
                text = _get(f"{base}/metrics")
                ups = [s for s in _samples(text) if s.name == "bridge_up"]
                if len(ups) == 104:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no complete first round within 60 s:\n{log.read_text()}")
            time.sleep(1)
        yield base, text, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_demo_serves_104_endpoints_and_tier_totals(demo):
    _, text, log = demo
    samples = _samples(text)
    assert len([s for s in samples if s.name == "bridge_up"]) == 104
    totals = {s.labels["tier"]: s.value for s in samples if s.name == "bridge_tier_endpoints"}
    assert totals == {"central": 1, "province": 2, "district": 12, "commune": 89}
    (hall,) = [
        s for s in samples
        if s.name == "bridge_endpoint_info" and s.labels["endpoint"] == "dien-hong"
    ]  # fmt: skip
    assert hall.labels["name"] == "Phòng họp Diên Hồng, Nhà Quốc hội (Hà Nội)"
    assert (hall.labels["latitude"], hall.labels["longitude"]) == ("21.0375", "105.8368")
    rtt_limits = {
        (s.labels["tier"], s.labels["level"]): s.value
        for s in samples
        if s.name == "bridge_tier_rtt_threshold_seconds"
    }
    # examples/thai-binh.yml lets communes have 400 ms before they are degraded.
    assert rtt_limits[("commune", "warning")] == 0.4
    assert rtt_limits[("district", "warning")] == 0.3
    assert rtt_limits[("district", "critical")] == 0.8
    assert "Bridge exporter demo" in log.read_text()


def test_demo_shows_the_upcoming_session_in_its_readiness_window(demo):
    _, text, log = demo
    active = {
        s.labels["session"]: s.value for s in _samples(text) if s.name == "bridge_session_active"
    }
    assert active == {"nq-dai-hoi-xiii-2021-03-27": 0, "giao-ban-huyen-2027-01-05": 1}
    assert "session giao-ban-huyen-2027-01-05 moved to" in log.read_text()


def test_demo_metrics_show_the_scenario_faults(demo):
    _, text, _ = demo
    samples = _samples(text)

    def value(name: str, endpoint: str, **labels: str) -> float:
        matches = [
            s.value
            for s in samples
            if s.name == name
            and s.labels.get("endpoint") == endpoint
            and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert matches, f"no {name} for {endpoint} {labels}"
        return matches[0]

    assert value("bridge_up", "tb-hung-ha") == 0
    communes = [
        s for s in samples
        if s.name == "bridge_up" and s.labels.get("district") == "tb-hung-ha"
        and s.labels["tier"] == "commune"
    ]  # fmt: skip
    assert len(communes) == HUNG_HA_COMMUNES
    assert all(s.value == 0 for s in communes)
    assert value("bridge_upstream_up", "tb-hung-ha-tan-le") == 0
    assert value("bridge_upstream_up", "tb-dong-hung-dong-la") == 1
    up = {s.labels["tier"]: s.value for s in samples if s.name == "bridge_tier_endpoints_up"}
    assert up == {"central": 1, "province": 2, "district": 11, "commune": 89 - HUNG_HA_COMMUNES}

    # A SIP 503 still proves the SIP stack answers: up, with the code exposed.
    assert value("bridge_sip_response_code", "tb-vu-thu-tam-quang", probe="sip") == 503
    assert value("bridge_up", "tb-vu-thu-tam-quang") == 1

    # 200 ms +/- 40 ms of delay and 8 % loss: a degraded or poor commune, lower MOS.
    assert value("bridge_quality_grade", "tb-thai-thuy-diem-dien") >= 1
    assert value("bridge_mos", "tb-thai-thuy-diem-dien") < value("bridge_mos", "tb-tien-hai")
    assert value("bridge_rtt_seconds", "tb-thai-thuy-diem-dien", probe="stamp") > 0.15


def test_demo_landing_page_lists_what_is_down_and_why(demo):
    base, _, _ = demo
    page = _get(f"{base}/")
    down_section = page.split("Down now")[1].split("Degraded quality")[0]
    assert "(12)" in down_section.split("</h2>")[0]
    assert "tb-hung-ha" in down_section
    assert "Điểm cầu Xã Tân Lễ" in down_section
    assert "upstream tb-hung-ha is down" in down_section
    assert "refused" in down_section or "timeout" in down_section
    degraded = page.split("Degraded quality")[1]
    assert "tb-thai-thuy-diem-dien" in degraded
