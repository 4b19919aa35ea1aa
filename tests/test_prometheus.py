"""The exporter as Prometheus sees it: a real Prometheus scrapes the real exporter process
every second and answers PromQL over the per-tier and ancestor labels; promtool lints
the exposition.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tool
from helpers_exporter import (
    ExporterProcess,
    LoopbackServers,
    wait_until,
    write_inventory,
)
from helpers_stack import Prometheus

TIER_COUNTS = {"central": 1, "province": 2, "district": 3, "commune": 4}
TIER_UP = {"central": 1, "province": 1, "district": 3, "commune": 3}
# id: (tier, parent, address, reachable)
ENDPOINTS = {
    "hall": ("central", None, "127.88.30.1", True),
    "tinh-a": ("province", "hall", "127.88.31.1", True),
    "tinh-b": ("province", "hall", "127.88.31.2", False),
    "huyen-a1": ("district", "tinh-a", "127.88.32.1", True),
    "huyen-a2": ("district", "tinh-a", "127.88.32.2", True),
    "huyen-b1": ("district", "tinh-b", "127.88.32.3", True),
    "xa-a1-1": ("commune", "huyen-a1", "127.88.33.1", True),
    "xa-a1-2": ("commune", "huyen-a1", "127.88.33.2", True),
    "xa-a2-1": ("commune", "huyen-a2", "127.88.33.3", False),
    "xa-b1-1": ("commune", "huyen-b1", "127.88.33.4", True),
}


@pytest.fixture(scope="module")
def exporter(tmp_path_factory) -> Iterator[ExporterProcess]:
    workdir = tmp_path_factory.mktemp("exporter")
    servers = LoopbackServers()
    endpoints = []
    for endpoint_id, (tier, parent, address, reachable) in ENDPOINTS.items():
        port = servers.tcp(address) if reachable else servers.refused(address)
        spec = {"id": endpoint_id, "name": f"Điểm cầu {endpoint_id}", "tier": tier}
        if parent:
            spec["parent"] = parent
        spec.update(address=address, overrides={"tcp": {"port": port}})
        endpoints.append(spec)
    inventory = {
        "interval": "1s",
        "tiers": [{"name": t, "modules": ["tcp"]} for t in TIER_COUNTS],
        "modules": {"tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": 1}}},
        "endpoints": endpoints,
    }
    exporter = ExporterProcess(write_inventory(workdir / "bridge.yml", inventory), workdir)
    try:
        with exporter.running() as process:
            yield process
    finally:
        servers.close()


def scrape_config(workdir: Path, target: str) -> Path:
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: bridge\n"
        f"    static_configs:\n      - targets: ['{target}']\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory) -> Iterator[Prometheus]:
    binary = need_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    server = Prometheus(binary, scrape_config(workdir, f"127.0.0.1:{exporter.port}"), workdir)
    try:
        wait_until(
            lambda: server.by_label('up{job="bridge"}', "job") == {"bridge": 1.0},
            15,
            "Prometheus' first successful scrape of the exporter",
        )
        yield server
    finally:
        server.stop()


def test_prometheus_sees_tier_counts_and_up_sums(prometheus):
    wait_until(
        lambda: prometheus.by_label("bridge_tier_endpoints", "tier") == TIER_COUNTS,
        10,
        "bridge_tier_endpoints with one series per tier",
    )
    wait_until(
        lambda: prometheus.by_label("sum by (tier) (bridge_up)", "tier") == TIER_UP,
        10,
        "sum by (tier) (bridge_up) to count the endpoints up",
    )
    assert prometheus.by_label("bridge_tier_endpoints_up", "tier") == TIER_UP
    # A commune behind the refused province is up but its upstream is not.
    assert prometheus.by_label("bridge_upstream_up == 0", "endpoint") == {
        "huyen-b1": 0.0,
        "xa-b1-1": 0.0,
    }


def test_ancestor_label_filters_a_district_subtree(prometheus):
    series = prometheus.query('bridge_up{district="huyen-a1"}')
    assert {s["metric"]["endpoint"] for s in series} == {"huyen-a1", "xa-a1-1", "xa-a1-2"}
    for s in series:
        assert s["metric"]["province"] == "tinh-a" and s["metric"]["central"] == "hall"
    # Empty lower tiers are absent in Prometheus, so a tier's own series are selectable.
    district_only = prometheus.query('bridge_up{district="huyen-a1", commune=""}')
    assert [s["metric"]["endpoint"] for s in district_only] == ["huyen-a1"]
    assert "commune" not in district_only[0]["metric"]
    names = prometheus.by_label('bridge_endpoint_info{province="tinh-b"}', "name")
    assert set(names) == {"Điểm cầu tinh-b", "Điểm cầu huyen-b1", "Điểm cầu xa-b1-1"}


def test_promtool_finds_no_problems_in_the_exposition(exporter):
    promtool = need_tool("promtool")
    status, body = exporter.get("/metrics")
    assert status == 200
    assert "bridge_up{" in body
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


def test_exporter_stops_promptly_while_prometheus_scrapes(prometheus, exporter):
    wait_until(
        lambda: prometheus.by_label('up{job="bridge"}', "job") == {"bridge": 1.0}, 5, "scraping"
    )
    assert exporter.stop() < 5
