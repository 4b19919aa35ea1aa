"""The probing engine at scale, against blackbox_exporter and fping in the same run.

On simulated loopback endpoints (127.20.x.y; ICMP answered by the kernel, SIP over UDP and
TCP by benchmarks/loopback_peers.py), in this order:

1. full: `bridge-exporter` probing N endpoints x (icmp x5 + sip udp + tcp) every 15 s for
   --seconds, while /metrics is scraped every --scrape-every seconds: CPU per
   endpoint-round (process CPU / rounds in the measured window, which starts after one
   interval), overruns, peak RSS (VmHWM), /metrics latency p50/p99 and size;
   with --profile, py-spy samples the exporter during this phase;
2. icmp: the same exporter on an icmp-only inventory: CPU per echo;
3. blackbox_exporter (the Debian package) on 127.0.0.1, its /probe driven at concurrency
   64 over --peer-targets of the same addresses, module icmp then tcp_connect: CPU per
   probe;
4. fping -C 5 -q -p 200 over the same addresses: CPU per echo (user + system).

With --shards N, the full load runs a second time as N exporters (`--shard I/N`) on this
host, each scraped as its own target: the way to use more than one core.

    .venv/bin/python benchmarks/engine_round.py --endpoints 10000 --seconds 90 \
        --out benchmarks/results/engine_10000.txt [--profile]

Needs root or CAP_NET_RAW for ICMP (as the exporter itself), fping and
prometheus-blackbox-exporter (apt-get install fping prometheus-blackbox-exporter),
py-spy for --profile (pip install py-spy; not a runtime dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
EXPORTER = str(Path(PYTHON).with_name("bridge-exporter"))
SIP_PORT, TCP_PORT = 25060, 21720
EXPORTER_PORT, BLACKBOX_PORT = 19701, 19715
TICKS = os.sysconf("SC_CLK_TCK")


def address(index: int) -> str:
    return f"127.20.{index // 250}.{index % 250 + 1}"


def inventory_text(endpoints: int, modules: list[str]) -> str:
    names = ", ".join(modules)
    lines = [
        "interval: 15s",
        "tiers: [central, province, commune]",
        "modules:",
        "  icmp: {prober: icmp, timeout: 5s}",
        f"  sip: {{prober: sip, timeout: 5s, sip: {{transport: udp, port: {SIP_PORT}}}}}",
        f"  tcp: {{prober: tcp, timeout: 5s, tcp: {{port: {TCP_PORT}}}}}",
        "endpoints:",
        f"  - {{id: c, name: C, tier: central, address: {address(0)}, modules: [{names}]}}",
    ]
    provinces = min(63, max(1, endpoints - 1))
    for index in range(1, endpoints):
        if index <= provinces:
            tier, parent = "province", "c"
        else:
            tier, parent = "commune", f"e{(index % provinces) + 1}"
        ident = f"e{index}"
        lines.append(
            f"  - {{id: {ident}, name: {ident}, tier: {tier}, parent: {parent}, "
            f"address: {address(index)}, modules: [{names}]}}"
        )
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def scrape(session: aiohttp.ClientSession, url: str) -> tuple[float, bytes, int]:
    """(seconds, the decompressed body, bytes on the wire), asking for gzip as Prometheus."""
    began = time.perf_counter()
    async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        body = await response.read()
        gzipped = response.headers.get("Content-Encoding") == "gzip"
    seconds = time.perf_counter() - began
    return seconds, gzip.decompress(body) if gzipped else body, len(body)


async def wait_ready(
    session: aiohttp.ClientSession, url: str, process: subprocess.Popen, seconds: float = 120
) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode}")
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:g} s")


async def run_exporter(
    workdir: Path,
    endpoints: int,
    modules: list[str],
    seconds: float,
    scrape_every: float,
    profile: Path | None,
    latency_seconds: float = 0.0,
    latency_every: float = 1.0,
    shards: int = 1,
) -> dict[str, float]:
    """Window 1 (`seconds`, a scrape every `scrape_every` as Prometheus would): CPU per
    round, overruns. Window 2 (`latency_seconds`, scrapes back to back with
    `latency_every` between): /metrics latency under full probing load, and what the
    extra scrapes cost. With `shards` > 1, that many exporters (`--shard I/N`) share the
    inventory on this host, each scraped as its own target: CPU, rounds and overruns are
    summed, latencies pooled, RSS given per process (the largest) and in all."""
    name = "-".join(modules) + (f"-{shards}shards" if shards > 1 else "")
    config = workdir / f"inventory-{name}.yml"
    config.write_text(inventory_text(endpoints, modules))
    log = open(workdir / f"exporter-{name}.log", "w")  # noqa: SIM115
    ports = [EXPORTER_PORT + index for index in range(shards)]
    processes = []
    for index, port in enumerate(ports):
        command = [EXPORTER, "--config.file", str(config), "--web.listen-address",
                   f"127.0.0.1:{port}", "--log.level", "warn"]  # fmt: skip
        if shards > 1:
            command += ["--shard", f"{index + 1}/{shards}"]
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    timeout = aiohttp.ClientTimeout(total=120)
    latencies: list[float] = []
    sizes: list[int] = []
    wire: list[int] = []
    spy = None

    def cpu() -> float:
        return sum(cpu_seconds(process.pid) for process in processes)

    def total(texts: list[str], metric: str) -> float:
        return sum(metric_value(text, metric) for text in texts)

    try:
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:

            async def scrape_all(record: bool) -> list[str]:
                answers = await asyncio.gather(*(scrape(session, url) for url in urls))
                if record:
                    for latency, body, size in answers:
                        latencies.append(latency)
                        sizes.append(len(body))
                        wire.append(size)
                return [body.decode() for _, body, _ in answers]

            for process, port in zip(processes, ports, strict=True):
                await wait_ready(session, f"http://127.0.0.1:{port}/-/healthy", process)
            await asyncio.sleep(15)  # one interval: every endpoint has started
            texts = await scrape_all(record=False)
            rounds0 = total(texts, "bridge_exporter_rounds_total")
            overruns0 = total(texts, "bridge_exporter_round_overruns_total")
            cpu0, t0 = cpu(), time.monotonic()
            if profile is not None:
                spy = subprocess.Popen(
                    ["py-spy", "record", "--native", "--format", "raw", "--rate", "50",
                     "--duration", str(int(min(seconds, 60))), "--pid", str(processes[0].pid),
                     "--output", str(profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={**os.environ, "PATH": f"{Path(PYTHON).parent}:{os.environ['PATH']}"},
                )  # fmt: skip
            next_scrape = t0
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(max(0.0, next_scrape - time.monotonic()))
                next_scrape += scrape_every
                texts = await scrape_all(record=True)
            cpu1, t1 = cpu(), time.monotonic()
            rounds = total(texts, "bridge_exporter_rounds_total") - rounds0
            overruns_window1 = total(texts, "bridge_exporter_round_overruns_total") - overruns0
            extra: list[float] = []
            while time.monotonic() - t1 < latency_seconds:
                before = len(latencies)
                texts = await scrape_all(record=True)
                extra += latencies[before:]
                await asyncio.sleep(latency_every)
            if extra:
                cpu2, t2 = cpu(), time.monotonic()
            overruns = total(texts, "bridge_exporter_round_overruns_total") - overruns0
            rounds_all = total(texts, "bridge_exporter_rounds_total") - rounds0
            overruns_all = total(texts, "bridge_exporter_round_overruns_total")
            probes_in_flight = total(texts, "bridge_exporter_probes_in_flight")
            ups = len(
                {
                    line.split(" ", 1)[0]
                    for text in texts
                    for line in text.splitlines()
                    if line.startswith("bridge_up{") and line.endswith(" 1.0")
                }
            )
            rss = [peak_rss_mib(process.pid) for process in processes]
            samples = [line for line in texts[0].splitlines() if line and line[0] != "#"]
            histogram = [line for line in samples if "_rtt_seconds_" in line.split("{", 1)[0]]
            measured_rtts = rtts_by_probe(texts)
        if spy is not None:
            spy.wait(timeout=120)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    spent = cpu1 - cpu0
    more = {}
    if extra:
        # CPU in window 2 beyond window 1's rate of probing, per extra scrape.
        idle_rate = spent / (t1 - t0)
        more = {
            "latency_window_s": t2 - t1,
            "latency_scrapes": len(extra),
            "cpu_per_scrape_s": ((cpu2 - cpu1) - idle_rate * (t2 - t1)) / len(extra),
        }
    figures = {
        "window_s": t1 - t0,
        "cpu_s": spent,
        "cores_used": spent / (t1 - t0),
        "rounds": rounds,
        "cpu_per_round_us": spent / rounds * 1e6 if rounds else float("nan"),
        "overruns_window1": overruns_window1,
        "overruns": overruns,
        "overruns_since_start": overruns_all,
        "endpoints_up_at_end": ups,
        "probes_in_flight_at_end": probes_in_flight,
        "peak_rss_mib": max(rss),
        "scrapes": len(latencies),
        "metrics_p50_s": percentile(latencies, 0.5),
        "metrics_p99_s": percentile(latencies, 0.99),
        "metrics_max_s": max(latencies) if latencies else float("nan"),
        "metrics_bytes": statistics.median(sizes) if sizes else float("nan"),
        "metrics_gzip_bytes": statistics.median(wire) if wire else float("nan"),
        "series": len(samples),
        "rtt_histogram_series": len(histogram),
        "rtt_histogram_bytes": sum(len(line) + 1 for line in histogram),
        "rounds_both_windows": rounds_all,
        **more,
    }
    # What loopback round trips (tens of microseconds) read as under this load: how much
    # the engine's own delays add to a measured RTT, per probe.
    for probe, values in sorted(measured_rtts.items()):
        figures[f"rtt_{probe}_p50_ms"] = percentile(values, 0.5) * 1000
        figures[f"rtt_{probe}_p99_ms"] = percentile(values, 0.99) * 1000
    if shards > 1:
        figures["peak_rss_all_shards_mib"] = sum(rss)
        figures["shards"] = shards
    return figures


def rtts_by_probe(texts: list[str]) -> dict[str, list[float]]:
    """bridge_rtt_seconds of every endpoint in the last scrape, by probe label."""
    found: dict[str, list[float]] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith("bridge_rtt_seconds{"):
                probe = line.split('probe="', 1)[1].split('"', 1)[0]
                found.setdefault(probe, []).append(float(line.rpartition(" ")[2]))
    return found


BLACKBOX_CONFIG = """modules:
  icmp:
    prober: icmp
    timeout: 5s
    icmp: {preferred_ip_protocol: ip4}
  tcp:
    prober: tcp
    timeout: 5s
    tcp: {preferred_ip_protocol: ip4}
"""


async def run_blackbox(workdir: Path, targets: list[str]) -> dict[str, float]:
    binary = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    if binary is None:
        raise SystemExit("blackbox_exporter missing: apt-get install prometheus-blackbox-exporter")
    config = workdir / "blackbox.yml"
    config.write_text(BLACKBOX_CONFIG)
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{BLACKBOX_PORT}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    figures: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            await wait_ready(session, f"http://127.0.0.1:{BLACKBOX_PORT}/-/healthy", process)
            for module, suffix in (("icmp", ""), ("tcp", f":{TCP_PORT}")):
                queue = [t + suffix for t in targets]
                ok = 0

                base = f"http://127.0.0.1:{BLACKBOX_PORT}"

                async def worker(
                    queue: list[str] = queue, kind: str = module, base: str = base
                ) -> None:
                    nonlocal ok
                    while queue:
                        target = queue.pop()
                        probe_url = f"{base}/probe?target={target}&module={kind}"
                        async with session.get(probe_url) as response:
                            ok += b"probe_success 1" in await response.read()

                cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
                await asyncio.gather(*(worker() for _ in range(64)))
                cpu = cpu_seconds(process.pid) - cpu0
                figures[f"blackbox_{module}_cpu_per_probe_us"] = cpu / len(targets) * 1e6
                figures[f"blackbox_{module}_success"] = ok
                figures[f"blackbox_{module}_seconds"] = time.monotonic() - t0
    finally:
        process.terminate()
        process.wait(timeout=30)
    return figures


def run_fping(workdir: Path, targets: list[str], count: int = 5) -> dict[str, float]:
    if shutil.which("fping") is None:
        raise SystemExit("fping missing: apt-get install fping")
    listing = workdir / "fping-targets.txt"
    listing.write_text("\n".join(targets) + "\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        ["fping", "-C", str(count), "-q", "-p", "200", "-i", "1", "-f", str(listing)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    answered = sum(
        1 for line in done.stderr.splitlines() for v in line.split(":", 1)[-1].split() if v != "-"
    )
    echoes = len(targets) * count
    return {
        "fping_cpu_per_echo_us": (user + system) / echoes * 1e6,
        "fping_user_per_echo_us": user / echoes * 1e6,
        "fping_system_per_echo_us": system / echoes * 1e6,
        "fping_replies": answered,
        "fping_echoes": echoes,
        "fping_seconds": time.monotonic() - began,
    }


def summarize_profile(path: Path, top: int = 25) -> str:
    """py-spy raw (collapsed) stacks: share of samples by leaf frame, and in the GC."""
    if not path.exists():
        return "(no profile)"
    leaves: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaves[frames[-1]] += count
        joined = stack.lower()
        if "gc_collect" in joined or "collect_main" in joined or "gc_collect_main" in joined:
            groups["garbage collector"] += count
        elif "render" in joined or "exposition" in joined or "metrics.py" in joined:
            groups["/metrics rendering"] += count
        elif "_run_once" in joined and ("select" in frames[-1] or "epoll" in joined):
            groups["waiting in epoll"] += count
        elif "icmp.py" in joined:
            groups["icmp prober"] += count
        elif "sip.py" in joined or "sipmsg.py" in joined:
            groups["sip prober"] += count
        elif "tcp.py" in joined:
            groups["tcp prober"] += count
        elif "scheduler.py" in joined:
            groups["scheduler (incl. its asyncio)"] += count
        else:
            groups["other (event loop, aiohttp, ...)"] += count
    if not total:
        return "(empty profile)"
    out = [f"{total} samples; by part (first match wins: gc, render, epoll, prober, scheduler):"]
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in groups.most_common()]
    out.append(f"top {top} leaf frames:")
    out += [f"  {100 * n / total:5.1f} %  {name[:110]}" for name, n in leaves.most_common(top)]
    return "\n".join(out)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return "\n".join(
        [
            f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
            f"nproc: {os.cpu_count()}",
            *lscpu.splitlines()[:10],
            f"python: {platform.python_version()}",
            f"uptime: {uptime()}",
        ]
    )


async def main_async(args: argparse.Namespace) -> str:
    out: list[str] = [f"# engine_round.py {' '.join(sys.argv[1:])}", machine(), ""]
    peers = subprocess.Popen(
        [PYTHON, str(HERE / "loopback_peers.py"), "--sip-port", str(SIP_PORT),
         "--tcp-port", str(TCP_PORT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert peers.stdout is not None
    peers.stdout.readline()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            profile = workdir / "profile.txt" if args.profile else None
            full = await run_exporter(
                workdir, args.endpoints, ["icmp", "sip", "tcp"], args.seconds,
                args.scrape_every, profile, args.latency_seconds, args.latency_every,
            )  # fmt: skip
            out.append(f"## full: {args.endpoints} endpoints x (icmp x5 + sip udp + tcp) / 15 s")
            out += [f"{k}: {v:.6g}" for k, v in full.items()]
            if profile is not None:
                out += ["", "## profile of the full run (py-spy --native, 50 Hz)"]
                out.append(summarize_profile(profile))
                if args.out:
                    raw = args.out.with_suffix(".pyspy-raw.txt.gz")
                    raw.write_bytes(gzip.compress(profile.read_bytes()))
            if args.shards > 1:
                sharded = await run_exporter(
                    workdir, args.endpoints, ["icmp", "sip", "tcp"], args.shard_seconds,
                    args.scrape_every, None, args.latency_seconds, args.latency_every,
                    shards=args.shards,
                )  # fmt: skip
                out += ["", f"## full, as {args.shards} shards on this host (--shard I/N)"]
                out += [f"{k}: {v:.6g}" for k, v in sharded.items()]
            icmp = await run_exporter(
                workdir, args.endpoints, ["icmp"], args.icmp_seconds, args.scrape_every, None
            )
            icmp_echo = icmp["cpu_per_round_us"] / 5
            out += ["", f"## icmp only: {args.endpoints} endpoints x icmp x5 / 15 s"]
            out += [f"{k}: {v:.6g}" for k, v in icmp.items()]
            out.append(f"cpu_per_echo_us: {icmp_echo:.6g}")
            targets = [address(i) for i in range(min(args.peer_targets, args.endpoints))]
            peer = await run_blackbox(workdir, targets)
            peer.update(run_fping(workdir, targets))
            out += ["", f"## peers over the first {len(targets)} addresses"]
            out += [f"{k}: {v:.6g}" for k, v in peer.items()]
            pair = peer["blackbox_icmp_cpu_per_probe_us"] + peer["blackbox_tcp_cpu_per_probe_us"]
            out += [
                "",
                "## ratios (same run)",
                f"exporter_round / blackbox(icmp+tcp): {full['cpu_per_round_us'] / pair:.3g}"
                f"  ({full['cpu_per_round_us']:.0f} us / {pair:.0f} us; goal <= 0.5)",
                f"exporter icmp echo / fping echo: "
                f"{icmp_echo / peer['fping_cpu_per_echo_us']:.3g}"
                f"  ({icmp_echo:.1f} us / {peer['fping_cpu_per_echo_us']:.1f} us; goal <= 1.5)",
                f"uptime after: {uptime()}",
            ]
    finally:
        peers.terminate()
        peers.wait(timeout=10)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=90, help="measured window, full run")
    parser.add_argument("--icmp-seconds", type=float, default=45)
    parser.add_argument(
        "--shards", type=int, default=1, help="also run the full load as N shards on this host"
    )
    parser.add_argument("--shard-seconds", type=float, default=90, help="window 1, sharded run")
    parser.add_argument(
        "--scrape-every", type=float, default=15.0, help="scrape period while CPU is measured"
    )
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--latency-every", type=float, default=1.0, help="pause between latency scrapes"
    )
    parser.add_argument("--peer-targets", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="py-spy the full run")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print(report, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
