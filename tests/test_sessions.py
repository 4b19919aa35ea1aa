"""Sessions in the inventory: `validate` reports each mistake with its line, and the
exporter's /metrics says which session is active, across the readiness window and the
time zone, and which points each session needs.

Expected timestamps are written out by hand (checked with `date -u -d ... +%s`), never
computed by the code under test.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest
from bridge_exporter.config import ConfigError, load_inventory, parse_inventory
from conftest import EXAMPLES
from helpers_exporter import ExporterProcess

CLI = [str(Path(sys.executable).with_name("bridge-exporter")), "validate"]

BASE = """\
interval: 30s
tiers: [central, district, commune]
modules:
  tcp: {prober: tcp, timeout: 1s, tcp: {port: 9}}
endpoints:
  - {id: hall, name: Hội trường, tier: central, address: 127.0.0.1, modules: [tcp]}
  - {id: d1, name: Huyện 1, tier: district, parent: hall, address: 127.0.0.1, modules: [tcp]}
  - {id: c1, name: Xã 1, tier: commune, parent: d1, address: 127.0.0.1, modules: [tcp]}
  - {id: c2, name: Xã 2, tier: commune, parent: d1, address: 127.0.0.1, modules: [tcp]}
  - {id: d2, name: Huyện 2, tier: district, parent: hall, address: 127.0.0.1, modules: [tcp]}
  - {id: c3, name: Xã 3, tier: commune, parent: d2, address: 127.0.0.1, modules: [tcp]}
sessions:
"""
GOOD_SESSION = """\
  - name: hn-2021
    title: Hội nghị toàn quốc
    start: 2021-03-27 07:30
    end: 2021-03-27 11:30
"""


def with_sessions(text: str) -> str:
    return BASE + text


def test_a_session_without_a_zone_is_hanoi_time_and_needs_every_point():
    inventory = parse_inventory(with_sessions(GOOD_SESSION), "bridge.yml")
    (session,) = inventory.sessions
    assert session.title == "Hội nghị toàn quốc"
    assert session.start == 1616805000  # 2021-03-27 00:30 UTC
    assert session.end == 1616819400  # 2021-03-27 04:30 UTC
    assert session.prepare_seconds == 7200
    assert session.endpoints == {"hall", "d1", "c1", "c2", "d2", "c3"}


def test_offsets_zones_prepare_and_subtrees():
    text = with_sessions(
        """\
  - name: utc-written
    start: 2021-03-27T00:30:00+00:00
    end: "2021-03-27 04:30"
    timezone: UTC
    prepare: 30m
    endpoints: [c1, {subtree: d2}]
"""
    )
    (session,) = parse_inventory(text, "bridge.yml").sessions
    assert (session.start, session.end) == (1616805000, 1616819400)
    assert session.prepare_seconds == 1800
    # c1 brings its ancestors; the d2 subtree is d2, c3 and the hall above them.
    assert session.endpoints == {"c1", "d1", "hall", "d2", "c3"}


MISTAKES = [
    # (id, session text, marker of the line, words in the message)
    (
        "end-before-start",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: 2021-03-27 07:00  # early\n",
        "# early",
        "end (2021-03-27 07:00) must be after start (2021-03-27 07:30)",
    ),
    (
        "unknown-endpoint",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n"
        "    endpoints: [c1, c9]\n",
        "endpoints: [c1, c9]",
        "'c9' is not an endpoint id in this file",
    ),
    (
        "unknown-subtree",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n"
        "    endpoints:\n      - subtree: d9\n",
        "subtree: d9",
        "'d9' is not an endpoint id in this file",
    ),
    (
        "bad-zone",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n"
        "    timezone: Asia/Hanoi_City\n",
        "timezone: Asia/Hanoi_City",
        "unknown time zone 'Asia/Hanoi_City'; use an IANA name such as Asia/Ho_Chi_Minh",
    ),
    (
        "date-without-time",
        "  - name: s\n    start: 2021-03-27\n    end: 2021-03-27 09:00\n",
        "start: 2021-03-27",
        "start is a date without a time; write a date and time",
    ),
    (
        "quoted-date-without-time",
        '  - name: s\n    start: "2021-03-27"\n    end: 2021-03-27 09:00\n',
        'start: "2021-03-27"',
        "start is a date without a time; write a date and time",
    ),
    (
        "time-in-a-dst-gap",
        "  - name: s\n    start: 2026-03-29 02:30\n    end: 2026-03-29 09:00\n"
        "    timezone: Europe/Berlin\n",
        "start: 2026-03-29 02:30",
        "start 2026-03-29 02:30 does not exist in Europe/Berlin",
    ),
    (
        "time-that-happens-twice",
        "  - name: s\n    start: 2026-10-25 02:30\n    end: 2026-10-25 09:00\n"
        "    timezone: Europe/Berlin\n",
        "start: 2026-10-25 02:30",
        "start 2026-10-25 02:30 happens twice in Europe/Berlin",
    ),
    (
        "not-a-time",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: half past eleven\n",
        "end: half past eleven",
        "end is 'half past eleven'; write a date and time",
    ),
    (
        "missing-start",
        "  - name: s  # here\n    end: 2021-03-27 09:00\n",
        "# here",
        "`start` is missing",
    ),
    (
        "bad-name",
        "  - name: hội nghị\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n",
        "name: hội nghị",
        "session name 'hội nghị' must be 1-128 letters, digits",
    ),
    (
        "duplicate-name",
        GOOD_SESSION + GOOD_SESSION.replace("name: hn-2021", "name: hn-2021  # again"),
        "# again",
        "session 'hn-2021' is listed twice",
    ),
    (
        "title-with-a-line-end",
        '  - name: s\n    title: "a\\nb"\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n',
        'title: "a',
        "title holds a line break",
    ),
    (
        "bad-prepare",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n"
        "    prepare: two hours\n",
        "prepare: two hours",
        "'two hours' is not a duration",
    ),
    (
        "unknown-key",
        "  - name: s\n    start: 2021-03-27 07:30\n    end: 2021-03-27 09:00\n    room: A1\n",
        "room: A1",
        "unknown key 'room' in a session",
    ),
    (
        "not-a-list",
        "  name: s\n",
        "sessions:",
        "sessions must be a list",
    ),
]


def _line(text: str, marker: str) -> int:
    (line,) = [n for n, row in enumerate(text.splitlines(), 1) if marker in row]
    return line


@pytest.mark.parametrize(("case", "sessions", "marker", "words"), MISTAKES)
def test_each_session_mistake_names_its_line(case, sessions, marker, words):
    text = with_sessions(sessions)
    with pytest.raises(ConfigError) as caught:
        parse_inventory(text, "bridge.yml")
    (problem,) = caught.value.problems
    assert problem.line == _line(text, marker), problem
    assert words in problem.message


def test_validate_cli_lists_every_session_mistake(tmp_path):
    files = []
    for case, sessions, marker, words in MISTAKES:
        path = tmp_path / f"{case}.yml"
        path.write_text(with_sessions(sessions), encoding="utf-8")
        files.append((path, _line(with_sessions(sessions), marker), words))
    done = subprocess.run(
        [*CLI, *(str(p) for p, _, _ in files)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    for path, line, words in files:
        assert f"{path}:{line}: " in done.stderr
        assert words in done.stderr
        assert f"{path}: INVALID (1 problem)" in done.stderr


def test_the_example_network_has_the_seed_session():
    inventory = load_inventory(EXAMPLES / "thai-binh.yml")
    seed = next(s for s in inventory.sessions if s.name == "nq-dai-hoi-xiii-2021-03-27")
    assert (seed.start, seed.end) == (1616805000, 1616819400)
    assert len(seed.endpoints) == 104
    briefing = next(s for s in inventory.sessions if s.name == "giao-ban-huyen-2027-01-05")
    # Hưng Hà's 11 communes and Vũ Thư's 11, the two districts, the province point above
    # them (tỉnh ủy) and the hall.
    assert len(briefing.endpoints) == 11 + 11 + 2 + 1 + 1
    assert {"dien-hong", "tb-tinh-uy", "tb-hung-ha", "tb-vu-thu"} <= briefing.endpoints


def _wall(moment: dt.datetime, zone: str) -> str:
    return moment.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def test_metrics_say_which_sessions_are_active(tmp_path):
    """Four sessions around now: inside its readiness window, running, over, and one whose
    local wall-clock times would be active in Hà Nội but are written in UTC (7 hours later:
    not yet in its window)."""
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    sessions = f"""\
  - name: preparing
    title: "Sắp họp"
    start: {_wall(now + hour, "Asia/Ho_Chi_Minh")}
    end: {_wall(now + 3 * hour, "Asia/Ho_Chi_Minh")}
    endpoints: [c1]
  - name: running
    start: {_wall(now - hour, "Asia/Ho_Chi_Minh")}
    end: {_wall(now + hour, "Asia/Ho_Chi_Minh")}
    prepare: 0s
  - name: over
    start: {_wall(now - 3 * hour, "Asia/Ho_Chi_Minh")}
    end: {_wall(now - 2 * hour, "Asia/Ho_Chi_Minh")}
  - name: later-in-utc
    start: {_wall(now + hour, "Asia/Ho_Chi_Minh")}
    end: {_wall(now + 3 * hour, "Asia/Ho_Chi_Minh")}
    timezone: UTC
"""
    config = tmp_path / "bridge.yml"
    config.write_text(with_sessions(sessions), encoding="utf-8")
    exporter = ExporterProcess(config, tmp_path).start()
    try:
        scrape = exporter.wait_ready().scrape()
    finally:
        exporter.stop()
    active = {s.labels["session"]: s.value for s in scrape.samples("bridge_session_active")}
    assert active == {"preparing": 1, "running": 1, "over": 0, "later-in-utc": 0}
    assert scrape.value("bridge_session_info", session="preparing", title="Sắp họp") == 1
    start = scrape.value("bridge_session_start_timestamp_seconds", session="later-in-utc")
    assert start - now.timestamp() == pytest.approx(8 * 3600, abs=61)
    assert scrape.value("bridge_session_prepare_seconds", session="preparing") == 7200
    needed = {
        s.labels["endpoint"]: s.labels
        for s in scrape.samples("bridge_endpoint_in_session", session="preparing")
    }
    assert set(needed) == {"c1", "d1", "hall"}
    # Per-endpoint labels, so rules can join on endpoint and match ancestors.
    assert needed["c1"]["district"] == "d1" and needed["c1"]["tier"] == "commune"
    running = scrape.samples("bridge_endpoint_in_session", session="running")
    assert len(running) == 6


def test_metrics_describe_the_tree_modules_and_targets(tmp_path):
    config = tmp_path / "bridge.yml"
    text = BASE.replace("sessions:\n", "").replace(
        "  - {id: c1, name: Xã 1,", "  - {id: c1, delegates: 40, name: Xã 1,"
    )
    text = text.replace(
        "  - {id: c2, name: Xã 2,", "  - {id: c2, delegates: 2, name: Xã 2,"
    ).replace(
        "tiers: [central, district, commune]",
        "tiers:\n  - central\n  - name: district\n    availability_target: 0.9\n"
        "    thresholds: {mos_warning: 3.8}\n  - commune",
    )
    config.write_text(text, encoding="utf-8")
    exporter = ExporterProcess(config, tmp_path).start()
    try:
        scrape = exporter.wait_ready().scrape()
    finally:
        exporter.stop()
    assert scrape.by_endpoint("bridge_endpoint_descendants") == {
        "hall": 5, "d1": 2, "c1": 0, "c2": 0, "d2": 1, "c3": 0,
    }  # fmt: skip
    assert scrape.value("bridge_endpoint_descendant_delegates", endpoint="d1") == 42
    assert scrape.value("bridge_endpoint_descendant_delegates", endpoint="hall") == 42
    assert scrape.value("bridge_module_info", probe="tcp", prober="tcp", required="true") == 1
    targets = {
        s.labels["tier"]: s.value for s in scrape.samples("bridge_tier_availability_target_ratio")
    }
    assert targets == {"central": 0.99, "district": 0.9, "commune": 0.99}
    assert scrape.value("bridge_tier_mos_threshold", tier="district", level="warning") == 3.8
    assert scrape.value("bridge_tier_mos_threshold", tier="commune", level="critical") == 3.1
    assert scrape.samples("bridge_session_active") == []


def test_landing_page_shows_the_sessions_on_now_and_their_points_down(tmp_path):
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    sessions = f"""\
  - name: preparing
    title: "Giao ban <huyện>"
    start: {_wall(now + hour / 2, "Asia/Ho_Chi_Minh")}
    end: {_wall(now + 2 * hour, "Asia/Ho_Chi_Minh")}
    endpoints: [{{subtree: d1}}]
  - name: next-week
    start: {_wall(now + 24 * 7 * hour, "Asia/Ho_Chi_Minh")}
    end: {_wall(now + 24 * 7 * hour + hour, "Asia/Ho_Chi_Minh")}
"""
    config = tmp_path / "bridge.yml"
    text = with_sessions(sessions).replace("interval: 30s", "interval: 2s")
    config.write_text(text, encoding="utf-8")
    exporter = ExporterProcess(config, tmp_path).start()
    try:
        exporter.wait_ready()
        # Every point probes tcp port 9 on 127.0.0.1, which nothing serves: all go down.
        exporter.wait_for(
            lambda s: list(s.by_endpoint("bridge_up").values()) == [0] * 6,
            20,
            "every point down",
        )
        status, page = exporter.get("/")
    finally:
        exporter.stop()
    assert status == 200
    section = page.split("<h2>Sessions</h2>")[1].split("</table>")[0]
    assert "Giao ban &lt;huyện&gt;" in section
    assert "readiness window open</span>, starts in 2" in section  # 29 or 30 minutes
    # d1, its two communes and the hall above them: four points, all down.
    assert "<td>4</td><td class=bad>4</td>" in section
    assert "next-week" not in section


def test_validate_counts_the_sessions(tmp_path):
    path = tmp_path / "bridge.yml"
    path.write_text(with_sessions(GOOD_SESSION), encoding="utf-8")
    done = subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout == (
        f"{path}: OK: 6 endpoints (1 central, 2 district, 3 commune), 1 session\n"
    )
