"""The per-tier `rtt_histogram: false` option: a tier's endpoints stop exporting the RTT
histogram (the largest share of a national network's series), and nothing else changes.
Seen as a user sees it: `bridge-exporter validate` and /metrics of the real exporter.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import missing
from helpers_exporter import ExporterProcess, exporter_command, write_inventory

HISTOGRAM = "bridge_icmp_rtt_seconds"


def inventory(commune_histogram: object) -> dict:
    return {
        "interval": "2s",
        "tiers": [{"name": "province"}, {"name": "commune", "rtt_histogram": commune_histogram}],
        "modules": {"icmp": {"prober": "icmp", "timeout": "1s", "icmp": {"count": 2}}},
        "endpoints": [
            {"id": "p1", "name": "P", "tier": "province", "address": "127.77.0.1",
             "modules": ["icmp"]},
            {"id": "x1", "name": "X", "tier": "commune", "parent": "p1",
             "address": "127.77.0.2", "modules": ["icmp"]},
        ],
    }  # fmt: skip


def test_validate_names_the_line_of_a_non_boolean_rtt_histogram(tmp_path: Path) -> None:
    config = write_inventory(tmp_path / "bridge.yml", inventory("no thanks"))
    done = subprocess.run(
        [*exporter_command(), "validate", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = config.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "rtt_histogram" in text)
    assert f"{config}:{line}: tier commune: rtt_histogram must be true or false" in done.stderr


def test_a_tier_without_rtt_histogram_keeps_every_other_series(tmp_path: Path) -> None:
    config = write_inventory(tmp_path / "bridge.yml", inventory(False))
    exporter = ExporterProcess(config, tmp_path).start().wait_ready()
    try:
        scrape = exporter.wait_for(
            lambda s: len(s.samples("bridge_icmp_packets_sent_total")) == 2,
            15,
            "a round of both endpoints",
        )
        if scrape.value("bridge_exporter_prober_ready", prober="icmp") == 0:
            missing("ICMP needs CAP_NET_RAW or net.ipv4.ping_group_range")
        with_buckets = {s.labels["endpoint"] for s in scrape.samples(HISTOGRAM + "_bucket")}
        counts = scrape.by_endpoint(HISTOGRAM + "_count")
        assert with_buckets == {"p1"} and set(counts) == {"p1"}
        received = scrape.by_endpoint("bridge_icmp_packets_received_total")
        assert set(received) == {"p1", "x1"} and min(received.values()) >= 2
        assert scrape.by_endpoint("bridge_up") == {"p1": 1.0, "x1": 1.0}
        assert set(scrape.by_endpoint("bridge_rtt_seconds")) == {"p1", "x1"}
    finally:
        exporter.stop()
