"""Endurance runs of the real exporter process (issue 11, item 6), in a network namespace.

Every run happens in a namespace of its own (tests/netlab.py): its loopback holds the
healthy and hung endpoints, a veth pair swallows whatever is routed to the
black-holed ones (198.18.0.0/15 outside the loopback blocks: no reply, no ICMP error), and
the namespace goes away afterwards. Nothing leaves this machine.

- faults: 2,000 endpoints, 30 % black-holed, 5 % hung (TCP accepted, then silence), the
  rest healthy; then a fault-free run of the healthy ones alone. Reports overruns, rounds,
  and the healthy endpoints' median ICMP RTT and SIP-over-TCP probe duration in both.
- soak: 1,000 endpoints every 0.5 s for at least 500 rounds, 10 % black-holed and 5 % hung
  for 8 s of every 16 s; samples open fds and RSS at the end of each fault-free phase.

    sudo .venv/bin/python benchmarks/endurance.py faults|soak|all

prints the figures and updates benchmarks/results/endurance.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
RESULTS = REPO / "benchmarks" / "results" / "endurance.txt"
PEERS = REPO / "tests" / "endurance_peers.py"
SIP_PORT = 5060
EXPORTER_PORT = 9198
BLACKHOLE_ROUTE = "198.18.0.0/15"
SWALLOW_ADDRESS = "198.19.255.254/32"
SWALLOW_GATEWAY = "198.19.255.253"
MODULES = """\
modules:
  icmp: {{prober: icmp, timeout: {icmp_timeout}, icmp: {{count: {icmp_count}, interval: 100ms,
         packet_timeout: {packet_timeout}}}}}
  sip: {{prober: sip, timeout: {sip_timeout}, sip: {{transport: tcp, port: 5060}}}}
"""


# --- outside: the namespace ------------------------------------------------------------------


def run_in_namespace(scenario: str, timeout: float = 600) -> dict:
    """Run `scenario` inside a fresh namespace; its figures."""
    from netlab import isolated_netns

    with isolated_netns("endure") as namespace:
        # A veth pair whose far end drops every frame: they are addressed to a MAC it
        # does not have (a permanent neighbour entry, so no ARP failure is ever reported).
        namespace.run(["ip", "link", "add", "swallow0", "type", "veth", "peer", "name", "void0"])
        for link in ("swallow0", "void0"):
            namespace.run(["ip", "link", "set", link, "up"])
        namespace.run(["ip", "addr", "add", SWALLOW_ADDRESS, "dev", "swallow0"])
        namespace.run(
            ["ip", "neigh", "add", SWALLOW_GATEWAY, "lladdr", "02:00:00:00:00:01",
             "dev", "swallow0", "nud", "permanent"]
        )  # fmt: skip
        namespace.run(
            ["ip", "route", "add", BLACKHOLE_ROUTE, "via", SWALLOW_GATEWAY, "dev", "swallow0",
             "onlink"]
        )  # fmt: skip
        run = namespace.run(
            [sys.executable, __file__, "--inside", scenario], check=False, timeout=timeout
        )
    if run.returncode != 0:
        raise RuntimeError(f"{scenario} failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def update_results(section: str, text: str) -> None:
    """Replace one `## section` of the results file, keeping the others."""
    sections: dict[str, str] = {}
    if RESULTS.exists():
        current = None
        for line in RESULTS.read_text(encoding="utf-8").splitlines():
            if line.startswith("## "):
                current = line[3:].strip()
                sections[current] = ""
            elif current:
                sections[current] += line + "\n"
    sections[section] = text.rstrip("\n") + "\n"
    body = "".join(f"## {name}\n{sections[name]}\n" for name in sorted(sections))
    header = (
        "Endurance runs of the real exporter process (benchmarks/endurance.py, "
        "tests/test_endurance.py)\n\n"
    )
    RESULTS.write_text(header + body, encoding="utf-8")


# --- inside: the exporter, the peers, the faults ---------------------------------------------


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Scrape:
    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str) -> float:
        return next(s.value for s in self.samples if s.name == name)

    def by_endpoint(self, name: str, **labels: str) -> dict[str, float]:
        return {
            s.labels["endpoint"]: s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        }

    def reasons(self, probe: str) -> dict[str, str]:
        return {
            s.labels["endpoint"]: s.labels["reason"]
            for s in self.samples
            if s.name == "bridge_probe_failure_info" and s.labels.get("probe") == probe
        }


def scrape() -> Scrape:
    url = f"http://127.0.0.1:{EXPORTER_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=60) as response:
        return Scrape(response.read().decode("utf-8"))


def inventory(endpoints: list[tuple[str, str]], interval: str, modules: str) -> str:
    """The first endpoint is the central hall, every other one a commune below it."""
    (root_id, root_address), *rest = endpoints
    lines = [
        f"interval: {interval}",
        "tiers: [central, commune]",
        modules.rstrip(),
        "endpoints:",
        f"  - {{id: {root_id}, name: Hall, tier: central, address: {root_address}, "
        "modules: [icmp, sip]}",
    ]
    lines += [
        f"  - {{id: {i}, name: {i}, tier: commune, parent: {root_id}, address: {a}, "
        "modules: [icmp, sip]}"
        for i, a in rest
    ]
    return "\n".join(lines) + "\n"


class Stage:
    """The exporter and the peers for one run, stopped on exit."""

    def __init__(self, stack: ExitStack, workdir: Path, inventory_text: str) -> None:
        self.workdir = workdir
        self.hung_file = workdir / "hung.txt"
        self.hung_file.write_text("")
        config = workdir / "inventory.yml"
        config.write_text(inventory_text)
        self.peers = self._spawn(
            stack, [sys.executable, str(PEERS), str(SIP_PORT), str(self.hung_file)], "peers"
        )
        assert self.peers.stdout is not None
        assert self.peers.stdout.readline().strip() == b"ready"
        self.exporter = self._spawn(
            stack,
            [
                str(Path(sys.executable).with_name("bridge-exporter")),
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
            ],
            "exporter",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape()
                break
            except OSError:
                if time.monotonic() > deadline or self.exporter.poll() is not None:
                    raise
                time.sleep(0.2)

    def _spawn(self, stack: ExitStack, args: list[str], name: str) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("wb")
        stdout = subprocess.PIPE if name == "peers" else log
        process = subprocess.Popen(args, stdout=stdout, stderr=log)

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()

        stack.callback(stop)
        return process

    def set_hung(self, addresses: list[str]) -> None:
        self.hung_file.write_text("\n".join(addresses))
        self.peers.send_signal(signal.SIGHUP)

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.exporter.pid}/fd"))


def wait_rounds(rounds: float, endpoints: int, timeout: float) -> Scrape:
    """Scrape until the exporter has completed `rounds` rounds of every endpoint."""
    deadline = time.monotonic() + timeout
    while True:
        current = scrape()
        if current.value("bridge_exporter_rounds_total") >= rounds * endpoints:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"{rounds} rounds not reached in {timeout} s")
        time.sleep(1)


def median_over(scrapes: list[Scrape], name: str, ids: set[str], **labels: str) -> float:
    values = [
        value
        for one in scrapes
        for endpoint, value in one.by_endpoint(name, **labels).items()
        if endpoint in ids
    ]
    return statistics.median(values)


FAULT_MODULES = MODULES.format(
    icmp_timeout="1s", icmp_count=3, packet_timeout="500ms", sip_timeout="2s"
)


def measure(ids: dict[str, list[str]], endpoints: list[tuple[str, str]], hung: list[str]):
    """One run of the faults scenario: figures over rounds 2-4 (round 1 warms up)."""
    interval = 10.0
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stage = Stage(stack, Path(tmp), inventory(endpoints, "10s", FAULT_MODULES))
        stage.set_hung(hung)
        wait_rounds(1, len(endpoints), timeout=60)
        scrapes = []
        for _ in range(3):
            time.sleep(interval)
            scrapes.append(scrape())
        last = scrapes[-1]
        healthy = set(ids["healthy"])
        sip_up = last.by_endpoint("bridge_probe_success", probe="sip")
        icmp_reasons, sip_reasons = last.reasons("icmp"), last.reasons("sip")
        return {
            "endpoints": len(endpoints),
            "rounds": last.value("bridge_exporter_rounds_total") / len(endpoints),
            "overruns": last.value("bridge_exporter_round_overruns_total"),
            "prober_errors": last.value("bridge_exporter_prober_errors_total"),
            "healthy_sip_up": sum(sip_up.get(i, 0) for i in healthy),
            "healthy": len(healthy),
            "rtt_median_seconds": median_over(scrapes, "bridge_rtt_seconds", healthy),
            "sip_duration_median_seconds": median_over(
                scrapes, "bridge_probe_duration_seconds", healthy, probe="sip"
            ),
            "blackholed_reasons": sorted(
                {(icmp_reasons.get(i, ""), sip_reasons.get(i, "")) for i in ids["blackholed"]}
            ),
            "hung_reasons": sorted(
                {(icmp_reasons.get(i, ""), sip_reasons.get(i, "")) for i in ids["hung"]}
            ),
        }


def faults() -> dict:
    total = 2000
    blackholed_n, hung_n = total * 30 // 100, total * 5 // 100
    endpoints: list[tuple[str, str]] = []
    ids: dict[str, list[str]] = {"healthy": [], "hung": [], "blackholed": []}
    for n in range(total):
        kind = "blackholed" if n % 20 in (1, 4, 7, 10, 13, 16) else "healthy"
        if n % 20 == 19:
            kind = "hung"
        address = (
            f"198.18.{n // 250}.{n % 250 + 1}"
            if kind == "blackholed"
            else f"127.1.{n // 250}.{n % 250 + 1}"
        )
        ids[kind].append(f"e{n}")
        endpoints.append((f"e{n}", address))
    assert (len(ids["blackholed"]), len(ids["hung"])) == (blackholed_n, hung_n)
    hung_addresses = [a for i, a in endpoints if i in set(ids["hung"])]
    with_faults = measure(ids, endpoints, hung_addresses)
    healthy_only = [e for e in endpoints if e[0] in set(ids["healthy"])]
    fault_free = measure(
        {"healthy": ids["healthy"], "hung": [], "blackholed": []}, healthy_only, []
    )
    return {"with_faults": with_faults, "fault_free": fault_free}


SOAK_MODULES = MODULES.format(
    icmp_timeout="300ms", icmp_count=1, packet_timeout="300ms", sip_timeout="300ms"
)
SOAK_BLOCKS = 16  # /26 blocks of 64 loopback addresses: 1,024 addresses for 1,000 endpoints


def block_address(block: int) -> str:
    return f"198.18.{block // 4}.{(block % 4) * 64 + 1}/26"


def soak_address(n: int) -> str:
    block, host = divmod(n, 64)
    return f"198.18.{block // 4}.{(block % 4) * 64 + host}"


def soak(rounds: int = 500, period: float = 16.0) -> dict:
    total = 1000
    for block in range(SOAK_BLOCKS):
        ip("addr", "add", block_address(block), "dev", "lo")
    endpoints = [(f"s{n}", soak_address(n)) for n in range(total)]
    # Faults: blocks 1 and 9 black-holed (their loopback address removed: the route to
    # the dummy interface takes over), 50 endpoints of block 5 hung.
    blackholed_blocks = [1, 9]
    hung = [soak_address(n) for n in range(5 * 64, 5 * 64 + 50)]
    samples: list[dict] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stage = Stage(stack, Path(tmp), inventory(endpoints, "500ms", SOAK_MODULES))
        started = time.monotonic()
        cycle = 0
        while True:
            # Fault-free half: sample at its end, when few probes are in flight.
            time.sleep(period / 2)
            current = scrape()
            done = current.value("bridge_exporter_rounds_total") / total
            samples.append(
                {
                    "seconds": round(time.monotonic() - started, 1),
                    "rounds": round(done, 1),
                    "overruns": current.value("bridge_exporter_round_overruns_total"),
                    "fds": stage.open_fds(),
                    "process_open_fds": current.value("process_open_fds"),
                    "rss_bytes": current.value("process_resident_memory_bytes"),
                    "in_flight": current.value("bridge_exporter_probes_in_flight"),
                }
            )
            if done >= rounds:
                break
            # Faulty half.
            for block in blackholed_blocks:
                ip("addr", "del", block_address(block), "dev", "lo")
            stage.set_hung(hung)
            time.sleep(period / 2)
            for block in blackholed_blocks:
                ip("addr", "add", block_address(block), "dev", "lo")
            stage.set_hung([])
            cycle += 1
        final = scrape()
        prober_errors = final.value("bridge_exporter_prober_errors_total")
    return {
        "endpoints": total,
        "interval_seconds": 0.5,
        "fault_cycles": cycle,
        "blackholed": 64 * len(blackholed_blocks),
        "hung": len(hung),
        "prober_errors": prober_errors,
        "samples": samples,
    }


# --- reading the figures ----------------------------------------------------------------------


def flatness(samples: list[dict], key: str, pick=max) -> tuple[float, float]:
    """(pick of the first third, pick of the last third) after the first two samples
    (warm-up: caches, allocator arenas and the first fault cycle). `min` gives the floor:
    what stays open whatever probes are in flight, which is where a leak shows."""
    settled = samples[2:]
    third = max(1, len(settled) // 3)
    return pick(s[key] for s in settled[:third]), pick(s[key] for s in settled[-third:])


def faults_text(figures: dict) -> str:
    a, b = figures["with_faults"], figures["fault_free"]
    return (
        "faults: 2,000 endpoints (icmp 3 x 100 ms + SIP OPTIONS over TCP, every 10 s)\n"
        f"  with faults: 600 black-holed, 100 hung, {a['healthy']} healthy; "
        f"rounds {a['rounds']:.1f}, overruns {a['overruns']:g}, prober errors "
        f"{a['prober_errors']:g}; healthy SIP up {a['healthy_sip_up']:g}/{a['healthy']}\n"
        f"    black-holed (icmp, sip) reasons: {a['blackholed_reasons']}\n"
        f"    hung (icmp, sip) reasons: {a['hung_reasons']}\n"
        f"    healthy median ICMP RTT {a['rtt_median_seconds'] * 1000:.3f} ms, "
        f"SIP probe {a['sip_duration_median_seconds'] * 1000:.3f} ms\n"
        f"  fault-free ({b['healthy']} healthy alone): rounds {b['rounds']:.1f}, overruns "
        f"{b['overruns']:g}; median ICMP RTT {b['rtt_median_seconds'] * 1000:.3f} ms, "
        f"SIP probe {b['sip_duration_median_seconds'] * 1000:.3f} ms\n"
        f"  RTT difference {abs(a['rtt_median_seconds'] - b['rtt_median_seconds']) * 1000:.3f}"
        f" ms (limit 1 ms)\n"
    )


def soak_text(figures: dict) -> str:
    samples = figures["samples"]
    first, middle, last = samples[0], samples[len(samples) // 2], samples[-1]
    fds = flatness(samples, "fds")
    rss = flatness(samples, "rss_bytes")
    row = (
        "  {label:6} {seconds:6.0f} s  round {rounds:6.1f}  overruns {overruns:6.0f}"
        "  fds {fds:4d}  RSS {rss:6.1f} MiB\n"
    )

    def line(label: str, s: dict) -> str:
        return row.format(
            label=label,
            rss=s["rss_bytes"] / 2**20,
            **{k: s[k] for k in ("seconds", "rounds", "overruns", "fds")},
        )

    return (
        f"soak: {figures['endpoints']} endpoints every {figures['interval_seconds']} s "
        f"(icmp x1 + SIP over TCP), {figures['fault_cycles']} fault cycles of 8 s on / 8 s "
        f"off ({figures['blackholed']} black-holed, {figures['hung']} hung); prober errors "
        f"{figures['prober_errors']:g}\n"
        + line("start", first)
        + line("middle", middle)
        + line("end", last)
        + f"  flat (max of the last third vs the first third after warm-up): fds "
        f"{fds[0]:g} -> {fds[1]:g}, RSS {rss[0] / 2**20:.1f} -> {rss[1] / 2**20:.1f} MiB\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["faults", "soak", "all"])
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps({"faults": faults, "soak": soak}[args.scenario]()))
        return
    for scenario in ["faults", "soak"] if args.scenario == "all" else [args.scenario]:
        figures = run_in_namespace(scenario)
        text = faults_text(figures) if scenario == "faults" else soak_text(figures)
        update_results(scenario, text)
        print(text)


if __name__ == "__main__":
    main()
