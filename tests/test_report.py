"""`bridge-exporter report` through the real CLI against a real Prometheus holding a
KNOWN history: the test writes two hours of exporter series (15 s scrapes) as OpenMetrics,
`promtool tsdb create-blocks-from openmetrics` turns them into blocks, and Prometheus
serves them. Every expected figure below is counted by hand from the outages written here:

- huyen-a (district) down from minute 30 to 50, its communes xa-a1 (to minute 52) and
  xa-a2 (to 50) with it: their outages are the district's (upstream);
- xa-b1, a lone commune, down from minute 70 to 75;
- xa-b2 flapping: down minutes 90-91, 93-94 and 96-97.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import need_tool
from helpers_exporter import exporter_command, run_exporter_once
from helpers_png import colours
from helpers_pty import run_in_pty
from helpers_stack import Prometheus
from hypothesis import given, settings
from hypothesis import strategies as st

STEP = 15
SAMPLES = 480  # two hours
ZONE = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
# id: (tier, parent, delegates)
NETWORK = {
    "hall": ("central", None, 300),
    "tinh": ("province", "hall", 200),
    "huyen-a": ("district", "tinh", 40),
    "xa-a1": ("commune", "huyen-a", 100),
    "xa-a2": ("commune", "huyen-a", 80),
    "huyen-b": ("district", "tinh", 30),
    "xa-b1": ("commune", "huyen-b", 50),
    "xa-b2": ("commune", "huyen-b", 50),
}
TIERS = ["central", "province", "district", "commune"]
# Outages as [first down sample, first sample up again), in samples of 15 s.
MINUTE = 60 // STEP
DOWN = {
    "huyen-a": [(30 * MINUTE, 50 * MINUTE)],
    # Probed a moment before its district in the round: down one sample earlier, and
    # still the district's outage, not one of its own.
    "xa-a1": [(30 * MINUTE - 1, 52 * MINUTE)],
    "xa-a2": [(30 * MINUTE, 50 * MINUTE)],
    "xa-b1": [(70 * MINUTE, 75 * MINUTE)],
    "xa-b2": [(90 * MINUTE, 91 * MINUTE), (93 * MINUTE, 94 * MINUTE), (96 * MINUTE, 97 * MINUTE)],
}
# Counted by hand: 480 samples; huyen-a 80 down, xa-a1 89, xa-a2 80, xa-b1 20, xa-b2 12.
AVAILABILITY_PERCENT = {
    "hall": "100.00",
    "tinh": "100.00",
    "huyen-b": "100.00",
    "huyen-a": "83.33",  # 400/480
    "xa-a1": "81.46",  # 391/480
    "xa-a2": "83.33",
    "xa-b1": "95.83",  # 460/480
    "xa-b2": "97.50",  # 468/480
}
TIER_PERCENT = {
    "central": "100.00",
    "province": "100.00",
    "district": "91.67",  # (400 + 480) / 960
    "commune": "89.53",  # (391 + 400 + 460 + 468) / 1920
}
MTTR_SECONDS = (20 * 60 + 5 * 60 + 3 * 60) / 5  # root causes: huyen-a, xa-b1, xa-b2 x3
MTTR_TEXT = "0:05:36"
DELEGATES_AFFECTED = 40 + 100 + 80 + 50 + 50
TINH_LOSS = 0.10  # tinh receives 9 of every 10 packets


def is_down(point: str, sample: int) -> bool:
    return any(first <= sample < last for first, last in DOWN.get(point, []))


def session_start() -> float:
    """A whole minute about three hours ago (inside Prometheus' retention, out of its head)."""
    now = dt.datetime.now(ZONE).replace(second=0, microsecond=0)
    return (now - dt.timedelta(hours=3)).timestamp()


def labels(point: str) -> str:
    tier, parent, _ = NETWORK[point]
    chain, ancestor = {}, parent
    while ancestor:
        chain[NETWORK[ancestor][0]] = ancestor
        ancestor = NETWORK[ancestor][1]
    chain[tier] = point
    pairs = {"job": "bridge", "instance": "127.0.0.1:9198", "endpoint": point, "tier": tier}
    pairs.update(chain)
    return ",".join(f'{k}="{v}"' for k, v in pairs.items())


def openmetrics(start: float) -> str:
    """The history, one family at a time, each series' samples in time order."""
    lines: list[str] = []
    times = [start + i * STEP for i in range(SAMPLES)]

    def family(name: str, kind: str, value, suffixes=("",)) -> None:
        lines.append(f"# TYPE {name} {kind}")
        for point in NETWORK:
            for suffix in suffixes:
                for index, moment in enumerate(times):
                    sample = value(point, index, suffix)
                    lines.append(f"{name}{suffix}{{{labels(point)}}} {sample} {moment:.0f}")

    def upstream(point: str, index: int, _: str) -> int:
        parent = NETWORK[point][1]
        while parent:
            if is_down(parent, index):
                return 0
            parent = NETWORK[parent][1]
        return 1

    def received(point: str, index: int) -> int:
        return sum(
            0 if is_down(point, i) else 9 if point == "tinh" else 10 for i in range(index + 1)
        )

    family("bridge_up", "gauge", lambda p, i, _: 0 if is_down(p, i) else 1)
    lines.append("# TYPE bridge_exporter_probe_interval_seconds gauge")
    exporter = 'job="bridge",instance="127.0.0.1:9198"'
    lines += [f"bridge_exporter_probe_interval_seconds{{{exporter}}} 15 {t:.0f}" for t in times]
    family("bridge_upstream_up", "gauge", upstream)
    family("bridge_mos", "gauge", lambda p, i, _: 3.2 if p == "xa-b1" else 4.3)
    family("bridge_jitter_seconds", "gauge", lambda p, i, _: 0.002)
    family("bridge_endpoint_delegates", "gauge", lambda p, i, _: NETWORK[p][2])
    family("bridge_icmp_packets_sent", "counter", lambda p, i, _: 10 * (i + 1), ("_total",))
    family("bridge_icmp_packets_received", "counter", lambda p, i, _: received(p, i), ("_total",))
    family(
        "bridge_icmp_rtt_seconds",
        "summary",
        lambda p, i, s: received(p, i) if s == "_count" else round(received(p, i) * 0.02, 3),
        ("_sum", "_count"),
    )
    lines.append("# TYPE bridge_endpoint_info gauge")
    for point, (_, parent, _) in NETWORK.items():
        info = f'{labels(point)},name="Điểm cầu {point}",parent="{parent or ""}"'
        lines += [f"bridge_endpoint_info{{{info}}} 1 {moment:.0f}" for moment in times]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def inventory(start: float) -> str:
    local = dt.datetime.fromtimestamp(start, ZONE)
    lines = [
        "tiers: [central, province, district, commune]",
        "modules:",
        "  sip: {prober: sip, timeout: 1s}",
        "endpoints:",
    ]
    for index, (point, (tier, parent, delegates)) in enumerate(NETWORK.items()):
        parent_text = f", parent: {parent}" if parent else ""
        lines.append(
            f"  - {{id: {point}, name: Điểm cầu {point}, tier: {tier}{parent_text}, "
            f"address: 127.80.0.{index + 1}, delegates: {delegates}, modules: [sip]}}"
        )
    lines += [
        "sessions:",
        "  - name: hoi-nghi",
        "    title: Hội nghị toàn quốc",
        f"    start: {local:%Y-%m-%d %H:%M}",
        f"    end: {local + dt.timedelta(hours=2):%Y-%m-%d %H:%M}",
        "    timezone: Asia/Ho_Chi_Minh",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class History:
    start: float
    config: Path
    prometheus: Prometheus
    workdir: Path

    def report(self, *args: str) -> subprocess.CompletedProcess:
        return run_exporter_once(
            ["report", f"--prometheus.url={self.prometheus.url}", *args], timeout=120
        )

    def session_report(self, fmt: str, lang: str = "en") -> str:
        result = self.report(
            "--session=hoi-nghi",
            f"--config.file={self.config}",
            f"--format={fmt}",
            f"--lang={lang}",
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # piped: no progress
        return result.stdout


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Iterator[History]:
    promtool = need_tool("promtool")
    binary = need_tool("prometheus")
    workdir = tmp_path_factory.mktemp("report")
    start = session_start()
    source = workdir / "history.om"
    source.write_text(openmetrics(start), encoding="utf-8")
    data = workdir / "prometheus-data"
    made = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n", encoding="utf-8")
    prometheus = Prometheus(binary, config, workdir)
    inventory_file = workdir / "bridge.yml"
    inventory_file.write_text(inventory(start), encoding="utf-8")
    try:
        yield History(start, inventory_file, prometheus, workdir)
    finally:
        prometheus.stop()


def local(lang: str, unix: float) -> str:
    moment = dt.datetime.fromtimestamp(unix, ZONE)
    return moment.strftime("%H:%M:%S %d/%m/%Y" if lang == "vi" else "%Y-%m-%d %H:%M:%S")


def test_json_figures_match_the_hand_counted_history(history: History) -> None:
    report = json.loads(history.session_report("json"))
    points = {p["endpoint"]: p for p in report["points"]}
    assert {p: f"{v['availability'] * 100:.2f}" for p, v in points.items()} == AVAILABILITY_PERCENT
    tiers = {t["tier"]: f"{t['availability'] * 100:.2f}" for t in report["tiers"]}
    assert tiers == TIER_PERCENT
    assert list(tiers) == TIERS
    found = [
        (o["endpoint"], o["start_unix"], o["end_unix"], o["caused_by"]) for o in report["outages"]
    ]
    expected = [
        (point, history.start + first * STEP, history.start + last * STEP)
        for point, spans in DOWN.items()
        for first, last in spans
    ]
    assert len(found) == len(expected) == 7
    for point, start, end in expected:
        match = [f for f in found if f[0] == point and abs(f[1] - start) <= STEP]
        assert len(match) == 1, (point, start, found)
        _, _, got_end, caused_by = match[0]
        assert abs(got_end - end) <= STEP
        assert caused_by == ("huyen-a" if point in ("xa-a1", "xa-a2") else None)
    durations = {(o["endpoint"], round(o["duration_seconds"])) for o in report["outages"]}
    assert ("xa-a1", 22 * 60 + STEP) in durations and ("huyen-a", 20 * 60) in durations
    assert ("xa-b1", 5 * 60) in durations and ("xa-b2", 60) in durations
    assert report["mttr_seconds"] == pytest.approx(MTTR_SECONDS, abs=STEP)
    assert report["delegates_affected"] == DELEGATES_AFFECTED
    assert points["tinh"]["quality"]["loss_ratio"] == pytest.approx(TINH_LOSS, abs=1e-6)
    assert points["tinh"]["quality"]["rtt_seconds"] == pytest.approx(0.02, abs=1e-6)
    assert points["hall"]["quality"]["loss_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert report["worst_points"][0] == "xa-b1"
    assert report["start"] == dt.datetime.fromtimestamp(history.start, ZONE).isoformat()


def test_from_to_without_inventory_reads_the_tree_from_prometheus(history: History) -> None:
    start = dt.datetime.fromtimestamp(history.start, ZONE)
    result = history.report(
        f"--from={start:%d/%m/%Y %H:%M}",
        f"--to={(start + dt.timedelta(hours=2)).isoformat()}",
        "--format=json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [t["tier"] for t in report["tiers"]] == TIERS
    upstream = {o["endpoint"]: o["caused_by"] for o in report["outages"]}
    assert upstream["xa-a1"] == "huyen-a" and upstream["xa-b1"] is None
    assert report["delegates_affected"] == DELEGATES_AFFECTED
    assert report["mttr_seconds"] == pytest.approx(MTTR_SECONDS, abs=STEP)


@pytest.mark.parametrize("lang", ["en", "vi"])
def test_markdown_tables(history: History, lang: str) -> None:
    text = history.session_report("md", lang)
    outage_start = history.start + 30 * MINUTE * STEP
    if lang == "vi":
        assert "# Báo cáo độ tin cậy phiên họp: Hội nghị toàn quốc" in text
        assert f"| huyen-a | Điểm cầu huyen-a | {local('vi', outage_start)} |" in text
        assert "| do cấp trên: huyen-a |" in text and "| tại chỗ |" in text
        assert f"| Thời gian khắc phục trung bình (sự cố gốc) | {MTTR_TEXT} |" in text
        assert f"| Số đại biểu bị ảnh hưởng | {DELEGATES_AFFECTED} |" in text
    else:
        assert "# Session reliability report: Hội nghị toàn quốc" in text
        assert f"| huyen-a | Điểm cầu huyen-a | {local('en', outage_start)} |" in text
        assert "| upstream: huyen-a |" in text and "| own |" in text
        assert f"| Mean time to recover (root causes) | {MTTR_TEXT} |" in text
    for tier, percent in TIER_PERCENT.items():
        assert f"| {tier} | " in text and f" | {percent} | " in text
    assert "| xa-a1 | Điểm cầu xa-a1 | commune | huyen-a | 81.46 | 1 | 0:22:15 | 100 |" in text


@pytest.mark.parametrize("lang", ["en", "vi"])
def test_csv_sections_parse(history: History, lang: str) -> None:
    sections = history.session_report("csv", lang).split("\n\n")
    assert len(sections) == 5
    tables = [list(csv.reader(io.StringIO(s))) for s in sections]
    tiers = {row[0]: row[2] for row in tables[1][2:]}
    assert tiers == TIER_PERCENT
    outages = tables[2][2:]
    assert len(outages) == 7
    by_point = {row[0]: row[4] for row in tables[3][2:]}
    assert by_point == AVAILABILITY_PERCENT
    flap = [row for row in outages if row[0] == "xa-b2"]
    assert [row[4] for row in flap] == ["0:01:00"] * 3
    assert tables[0][0] == (["Tổng hợp"] if lang == "vi" else ["Summary"])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return need_tool("chromium")


@pytest.mark.parametrize("lang", ["en", "vi"])
def test_html_is_one_file_and_renders_in_chromium(history: History, lang: str) -> None:
    path = history.workdir / f"report-{lang}.html"
    result = history.report(
        "--session=hoi-nghi",
        f"--config.file={history.config}",
        f"--lang={lang}",
        f"--output={path}",
    )
    assert result.returncode == 0 and result.stdout == "", result.stderr
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html.replace(history.prometheus.url, "")
    assert "https://" not in html and html.count("<svg") == 4
    assert ("Tỷ lệ sẵn sàng theo cấp" if lang == "vi" else "Availability per tier") in html
    shot = history.workdir / f"report-{lang}.png"
    browser = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=1",
        f"--user-data-dir={history.workdir / f'chromium-{lang}'}",
        "--window-size=1000,1600",
        f"--screenshot={shot}",
        path.as_uri(),
    ]
    # In a network namespace of its own: the browser can reach nothing at all.
    isolate = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-rn"]
    run = subprocess.run([*isolate, *browser], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-3000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "error" in line.lower()], console
    counts = colours(shot)
    total = sum(counts.values())
    background = max(counts.values())
    assert len(counts) > 20, "the screenshot has almost no colours: blank?"
    assert background / total < 0.97, "the screenshot is nearly one colour: blank?"
    red = sum(n for c, n in counts.items() if c[0] > 180 and c[1] < 80 and c[2] < 80)
    assert red > 50, "no outage bars (red) in the screenshot"


def test_bad_times_and_missing_session_are_explained(history: History) -> None:
    bad = history.report("--from=yesterday", "--to=2030-01-01 10:00")
    assert bad.returncode == 2 and "'yesterday' is not a date and time" in bad.stderr
    backwards = history.report("--from=2030-01-01 10:00", "--to=2030-01-01 09:00")
    assert backwards.returncode == 2 and "must be after" in backwards.stderr
    unknown = history.report("--session=nope", f"--config.file={history.config}")
    assert unknown.returncode == 2 and "no session 'nope'" in unknown.stderr
    assert str(history.config) in unknown.stderr
    zone = history.report(
        "--session=hoi-nghi", f"--config.file={history.config}", "--timezone=Nope/Zone"
    )
    assert zone.returncode == 2 and "--timezone 'Nope/Zone': not an IANA zone" in zone.stderr
    assert "Traceback" not in zone.stderr


# --- time parsing: anything a user can type ------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1)))
def test_every_written_form_of_a_moment_parses_to_it(moment: dt.datetime) -> None:
    from bridge_exporter.report.timeparse import parse_time

    moment = moment.replace(microsecond=0)
    expected = moment.replace(tzinfo=ZONE).timestamp()
    for written in (
        f"{moment:%Y-%m-%d %H:%M:%S}",
        moment.isoformat(),
        f"{moment:%d/%m/%Y %H:%M:%S}",
        moment.replace(tzinfo=ZONE).astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        f"{int(expected)}",
    ):
        assert parse_time(written, ZONE) == expected, written


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_is_explained(value: str) -> None:
    from bridge_exporter.report.timeparse import TimeParseError, parse_time

    try:
        parse_time(value, ZONE)
    except TimeParseError as exc:
        assert "write e.g." in str(exc)


def test_progress_shown_only_on_a_terminal(history: History) -> None:
    code, output = run_in_pty(
        [
            *exporter_command(),
            "report",
            f"--prometheus.url={history.prometheus.url}",
            "--session=hoi-nghi",
            f"--config.file={history.config}",
            "--format=json",
        ]
    )
    assert code == 0
    assert b"\rquerying Prometheus [" in output
