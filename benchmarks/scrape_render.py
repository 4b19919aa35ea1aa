"""Scrape rendering at national scale: bridge-exporter's exposition vs prometheus_client.

Builds a 10,000-endpoint, 4-tier inventory (63 provinces x 10 districts x 15 communes),
fills every endpoint's state with icmp, sip and stamp results as after a round, then times
(1) BridgeMetrics.render(), what /metrics serves, and (2) prometheus_client's
generate_latest() rendering exactly the same series (parsed back into Metric objects, the
parse not timed). Same process, same run; the figure that matters is the ratio.

    .venv/bin/python benchmarks/scrape_render.py [--endpoints-per-district 15]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from bridge_exporter.config import parse_inventory
from bridge_exporter.probes.base import ProbeResult
from bridge_exporter.runtime import Exporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def inventory_text(communes_per_district: int) -> str:
    lines = [
        "interval: 30s",
        "tiers: [central, province, district, commune]",
        "modules:",
        "  icmp: {prober: icmp}",
        "  sip: {prober: sip}",
        "  stamp: {prober: stamp, required: false}",
        "endpoints:",
        "  - {id: c, name: Trung ương, tier: central, address: 127.0.0.1, modules: [icmp]}",
    ]
    for p in range(63):
        lines.append(
            f"  - {{id: p{p}, name: Tỉnh {p}, tier: province, parent: c, "
            f"address: 127.1.{p}.1, modules: [icmp, sip]}}"
        )
        for d in range(10):
            lines.append(
                f"  - {{id: p{p}d{d}, name: Huyện {d}, tier: district, parent: p{p}, "
                f"address: 127.2.{p}.{d + 1}, modules: [icmp, sip, stamp]}}"
            )
            for k in range(communes_per_district):
                lines.append(
                    f"  - {{id: p{p}d{d}k{k}, name: Xã {k}, tier: commune, parent: p{p}d{d}, "
                    f"address: 127.3.{p}.{d * 15 + k + 1}, modules: [icmp, sip, stamp]}}"
                )
    return "\n".join(lines)


def filled_exporter(communes_per_district: int) -> Exporter:
    inventory = parse_inventory(inventory_text(communes_per_district), "bench.yml")
    exporter = Exporter("bench.yml", inventory)
    for endpoint in inventory.endpoints.values():
        for module in inventory.modules_of(endpoint):
            result = ProbeResult(
                True, 0.01, rtt_seconds=0.012, rtt_min_seconds=0.008, rtt_max_seconds=0.02,
                jitter_seconds=0.001, packet_loss_ratio=0.0, packets_sent=5,
                packets_received=5, rtt_samples=[0.008, 0.01, 0.012, 0.014, 0.02],
                status_code=200 if module.prober == "sip" else None,
            )  # fmt: skip
            exporter.state.record(endpoint, module, result)
        exporter.state.finish_round(endpoint, 0.5)
    return exporter


class _Parsed:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


def best_of(runs: int, action) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints-per-district", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    exporter = filled_exporter(args.endpoints_per_district)
    text = exporter.metrics.render()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Parsed(list(text_string_to_metric_families(text))))
    ours = best_of(args.runs, exporter.metrics.render)
    peer = best_of(args.runs, lambda: generate_latest(registry))
    endpoints = len(exporter.inventory.endpoints)
    print(
        f"# Scrape rendering, {endpoints} endpoints, {text.count(chr(10))} lines, "
        f"{len(text.encode()) / 2**20:.0f} MiB"
    )
    print(f"python {platform.python_version()}, {platform.machine()}, best/median of {args.runs}")
    print(f"bridge-exporter render():        {ours[0]:.2f} s / {ours[1]:.2f} s")
    print(f"prometheus_client generate_latest: {peer[0]:.2f} s / {peer[1]:.2f} s")
    print(f"ratio (peer / ours, best):         {peer[0] / ours[0]:.1f}x")


if __name__ == "__main__":
    main()
