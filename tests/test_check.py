"""`bridge-exporter check` through the real CLI against the real simulator: a district
down with its communes behind it, a lone commune down and a slow commune (degraded).
Expected tables, exit codes and JSON are written here by hand."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from helpers_exporter import exporter_command, http_request, run_exporter_once, wait_until
from helpers_pty import run_in_pty

NETWORK = """\
tiers:
  - {name: central, modules: [sip, stamp]}
  - {name: province, modules: [sip, stamp]}
  - {name: district, modules: [sip, stamp]}
  - {name: commune, modules: [sip, stamp]}
modules:
  sip: {prober: sip, timeout: 800ms, sip: {transport: udp, t1: 100ms, t2: 200ms}}
  stamp:
    prober: stamp
    timeout: 3s
    required: false
    stamp: {count: 10, interval: 10ms, wait: 1s}
endpoints:
  - {id: hall, name: Hội trường, tier: central, address: 127.79.0.1, delegates: 300}
  - {id: tinh, name: Tỉnh, tier: province, parent: hall, address: 127.79.0.2}
  - {id: huyen-a, name: Huyện A, tier: district, parent: tinh, address: 127.79.0.3}
  - {id: xa-a1, name: Xã A1, tier: commune, parent: huyen-a, address: 127.79.0.4}
  - {id: xa-a2, name: Xã A2, tier: commune, parent: huyen-a, address: 127.79.0.5}
  - {id: huyen-b, name: Huyện B, tier: district, parent: tinh, address: 127.79.0.6}
  - {id: xa-b1, name: Xã B1, tier: commune, parent: huyen-b, address: 127.79.0.7}
  - {id: xa-b2, name: Xã B2, tier: commune, parent: huyen-b, address: 127.79.0.8}
sessions:
  - {name: all, title: Toàn mạng, start: 2030-01-01 08:00, end: 2030-01-01 11:00}
  - {name: slow, start: 2030-01-01 08:00, end: 2030-01-01 11:00, endpoints: [xa-b1]}
  - {name: ready, start: 2030-01-01 08:00, end: 2030-01-01 11:00, endpoints: [huyen-b]}
"""
FAULTS = {
    "huyen-a": {"down": True, "subtree": True},
    "xa-b2": {"down": True},
    "xa-b1": {"delay_seconds": 0.45},  # RTT ~450 ms: over the 300 ms warning, under 800 ms
}


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("check")
    config = workdir / "net.yml"
    config.write_text(NETWORK, encoding="utf-8")
    control = f"127.0.0.1:{free_port()}"
    with (workdir / "simulator.log").open("wb") as log:
        simulator = subprocess.Popen(
            [*exporter_command(), "simulate", f"--config.file={config}",
             f"--control.listen-address={control}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: http_request(f"http://{control}/faults")[0] == 200, 20, "simulator")
        for endpoint, fault in FAULTS.items():
            body = json.dumps(fault).encode()
            request = urllib.request.Request(
                f"http://{control}/faults/{endpoint}", data=body, method="PUT"
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200
        yield config
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def check(config: Path, *args: str) -> subprocess.CompletedProcess:
    return run_exporter_once(["check", f"--config.file={config}", *args], timeout=60)


def test_table_lists_root_causes_first_and_exit_code_says_down(network: Path) -> None:
    result = check(network)
    assert result.returncode == 4, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    tiers = {line.split()[0]: line.split()[1:] for line in lines if line[:1].islower()}
    # tier: OK/Total, Down, Good, Degraded, Poor, No figures
    assert tiers["central"][:2] == ["1/1", "0"]
    assert tiers["province"][:2] == ["1/1", "0"]
    assert tiers["district"][:2] == ["1/2", "1"]
    assert tiers["commune"][:4] == ["0/4", "3", "0", "1"]
    problems = lines[lines.index("Problems (root causes first):") + 1 :]
    assert (
        problems[0].startswith("DOWN")
        and "huyen-a (Huyện A, district): sip: timeout" in problems[0]
    )
    assert "parent tinh: OK" in problems[0]
    behind = [line for line in problems if "behind huyen-a" in line]
    assert [line.split()[1] for line in behind] == ["xa-a1", "xa-a2"]
    assert all(line.startswith("    DOWN") for line in behind)  # listed under their cause
    assert problems[1:3] == behind
    assert (
        problems[3].startswith("DOWN") and "xa-b2" in problems[3] and "sip: timeout" in problems[3]
    )
    assert "parent huyen-b: OK" in problems[3]
    assert problems[4].startswith("DEGRADED") and "xa-b1" in problems[4]
    assert "quality degraded" in problems[4] and "RTT 4" in problems[4]
    assert "Result: NOT READY, 4 point(s) down, 1 degraded (exit 4)" in result.stdout
    assert result.stderr == ""  # piped: no progress bar


def test_json_parses_and_matches_the_table(network: Path) -> None:
    result = check(network, "--format=json")
    assert result.returncode == 4
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 4 and summary["down"] == 4 and summary["degraded"] == 1
    by_tier = {t["tier"]: (t["ok"], t["total"], t["down"]) for t in summary["tiers"]}
    assert by_tier == {
        "central": (1, 1, 0),
        "province": (1, 1, 0),
        "district": (1, 2, 1),
        "commune": (0, 4, 3),
    }
    problems = {p["endpoint"]: p for p in summary["problems"]}
    assert list(problems) == ["huyen-a", "xa-a1", "xa-a2", "xa-b2", "xa-b1"]
    assert problems["huyen-a"]["reasons"] == ["sip: timeout"]
    assert problems["huyen-a"]["caused_by"] is None
    assert problems["xa-a1"]["caused_by"] == "huyen-a"
    assert problems["xa-a1"]["parent_status"] == "down"
    assert problems["xa-b2"]["caused_by"] is None
    assert problems["xa-b1"]["status"] == "degraded"
    assert 0.3 < problems["xa-b1"]["figures"]["rtt_seconds"] < 0.8


def test_session_with_a_degraded_point_exits_3_in_vietnamese(network: Path) -> None:
    result = check(network, "--session=slow", "--lang=vi", "--rounds=2")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Kiểm tra sẵn sàng: 4 điểm cầu, 2 lượt đo" in result.stdout
    assert "Cấp       Đạt/Tổng  Mất kết nối" in result.stdout
    assert "SUY GIẢM     xa-b1 (Xã B1, commune): chất lượng suy giảm" in result.stdout
    assert "cấp trên huyen-b: ĐẠT" in result.stdout
    assert "(mã 3)" in result.stdout


def test_ready_session_exits_0(network: Path) -> None:
    result = check(network, "--session=ready")
    assert result.returncode == 0, result.stdout
    assert "No problems: every point passed." in result.stdout
    assert "Result: READY, every point passed (exit 0)" in result.stdout


def test_config_errors_exit_1_like_validate(tmp_path: Path, network: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("tiers: [a, b]\nendpoints:\n  - {id: x, tier: nowhere}\n", encoding="utf-8")
    result = check(bad)
    assert result.returncode == 1
    assert f"{bad}: INVALID" in result.stderr and f"{bad}:3" in result.stderr
    unknown = check(network, "--session=nope")
    assert unknown.returncode == 1
    assert "no session 'nope'" in unknown.stderr and "all, slow, ready" in unknown.stderr


def test_progress_bar_only_on_a_terminal(network: Path) -> None:
    code, output = run_in_pty(
        [*exporter_command(), "check", f"--config.file={network}", "--session=ready"]
    )
    assert code == 0
    assert b"\rprobing [" in output and b"] 3/3" in output
    piped = check(network, "--session=ready")
    assert "probing" not in piped.stderr + piped.stdout and "[#" not in piped.stderr


def test_points_this_host_could_not_probe_are_not_ready_nor_down(network: Path) -> None:
    """Out of descriptors (a limit of 7 leaves none for most probes), the healthy points
    are neither passed nor called down: exit 5, "NOT CHECKED", the local reason."""
    import resource

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (7, 7))

    result = subprocess.run(
        [*exporter_command(), "check", f"--config.file={network}", "--session=ready"],
        preexec_fn=few_descriptors,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5, result.stdout + result.stderr
    assert "NOT CHECKED" in result.stdout
    assert "local_resource_exhausted" in result.stdout
    assert " DOWN " not in result.stdout
    assert "Result: NOT READY" in result.stdout and "(exit 5)" in result.stdout
