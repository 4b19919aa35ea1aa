"""`--shard I/N`: every endpoint exported by exactly one shard, whole subtrees together,
tier totals that add up across shards, and the way there a user takes: two exporter
shards, two agent-mode Prometheus remote-writing to a central one."""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from bridge_exporter.config import load_inventory
from bridge_exporter.sharding import Shard, assignment, exported_ids, probed_inventory
from conftest import free_port, need_tool
from helpers_exporter import (
    ExporterProcess,
    LoopbackServers,
    http_request,
    run_exporter_once,
    wait_until,
    write_inventory,
)
from helpers_stack import Prometheus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
TIER_NAMES = ("central", "province", "district", "commune", "hamlet")


# --- the split, over generated trees ------------------------------------------------------


@st.composite
def trees(draw) -> dict:
    """An inventory: 2-5 tiers, 1-2 roots, children in any lower tier (tiers may be
    skipped on the way down), up to ~60 endpoints."""
    tiers = list(TIER_NAMES[: draw(st.integers(2, 5))])
    endpoints: list[dict] = []
    levels: dict[str, int] = {}
    for root in range(draw(st.integers(1, 2))):
        endpoints.append({"id": f"r{root}", "name": f"r{root}", "tier": tiers[0]})
        levels[f"r{root}"] = 0
    for index in range(draw(st.integers(0, 60))):
        parent = draw(st.sampled_from([e["id"] for e in endpoints]))
        if levels[parent] == len(tiers) - 1:
            continue
        level = draw(st.integers(levels[parent] + 1, len(tiers) - 1))
        endpoint_id = f"e{index}"
        levels[endpoint_id] = level
        endpoints.append(
            {"id": endpoint_id, "name": endpoint_id, "tier": tiers[level], "parent": parent}
        )
    for number, endpoint in enumerate(endpoints):
        endpoint["address"] = f"127.66.{number // 250}.{number % 250 + 1}"
        endpoint["delegates"] = number % 7
    return {
        "tiers": [{"name": t, "modules": ["tcp"]} for t in tiers],
        "modules": {"tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": 1720}}},
        "endpoints": endpoints,
    }


def _load(spec: dict):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", encoding="utf-8") as file:
        yaml.safe_dump(spec, file)
        file.flush()
        return load_inventory(file.name)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=trees(), count=st.integers(1, 6), data=st.data())
def test_every_endpoint_in_exactly_one_shard_with_its_subtree(spec, count, data):
    inventory = _load(spec)
    tier = data.draw(st.sampled_from([None, *inventory.tier_names]))
    level = 1 if tier is None else inventory.tier_names.index(tier)
    level = min(level, len(inventory.tiers) - 1)
    shards = [Shard(i, count, tier) for i in range(1, count + 1)]

    exported = Counter(e for s in shards for e in exported_ids(inventory, s))
    assert exported == Counter(inventory.endpoints.keys()), "each endpoint exactly once"

    owner = assignment(inventory, shards[0])
    for endpoint in inventory.endpoints.values():
        own_level = inventory.tier(endpoint.tier).level
        parent = inventory.endpoints.get(endpoint.parent or "")
        if own_level < level:
            assert owner[endpoint.id] == 1, f"{endpoint.id} is above the split: shard 1's"
        elif parent is not None and inventory.tier(parent.tier).level >= level:
            assert owner[endpoint.id] == owner[parent.id], f"{endpoint.id} left its subtree"

    for shard in shards:
        probed = probed_inventory(inventory, shard)
        for endpoint_id in exported_ids(inventory, shard):
            missing = set(inventory.endpoints[endpoint_id].ancestors) - set(probed.endpoints)
            assert not missing, f"shard {shard} exports {endpoint_id} without probing {missing}"


def test_split_is_stable_and_spreads_provinces():
    """The same file gives the same split in another process (no per-process hash seed),
    and 63 provinces land on all four shards."""
    spec = {
        "tiers": [{"name": "central"}, {"name": "province"}],
        "modules": {"tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": 1720}}},
        "endpoints": [
            {
                "id": "hall",
                "name": "hall",
                "tier": "central",
                "address": "127.66.0.1",
                "modules": ["tcp"],
            },
            *(
                {
                    "id": f"tinh-{n}",
                    "name": f"tinh {n}",
                    "tier": "province",
                    "parent": "hall",
                    "address": f"127.66.1.{n}",
                    "modules": ["tcp"],
                }
                for n in range(1, 64)
            ),
        ],
    }
    inventory = _load(spec)
    here = assignment(inventory, Shard(1, 4))
    with tempfile.NamedTemporaryFile("w", suffix=".yml", encoding="utf-8") as file:
        yaml.safe_dump(spec, file)
        file.flush()
        code = (
            "import json, sys; from bridge_exporter.config import load_inventory; "
            "from bridge_exporter.sharding import Shard, assignment; "
            f"print(json.dumps(assignment(load_inventory({file.name!r}), Shard(1, 4))))"
        )
        there = subprocess.run(
            [str(REPO / ".venv/bin/python"), "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": "12345"},
        )
    assert yaml.safe_load(there.stdout) == here
    sizes = Counter(here[f"tinh-{n}"] for n in range(1, 64))
    assert set(sizes) == {1, 2, 3, 4} and min(sizes.values()) >= 8, sizes


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3/2", "shards are numbered 1 to 2"),
        ("0/2", "shards are numbered 1 to 2"),
        ("1/0", "the number of shards must be 1 to 1000"),
        ("two", "write I/N"),
        ("1/2/3", "write I/N"),
    ],
)
def test_bad_shard_is_refused_with_a_clear_message(value, message):
    result = run_exporter_once([f"--shard={value}", "--config.file=examples/thai-binh.yml"])
    assert result.returncode == 2
    assert f"argument --shard: {value!r}: {message}" in result.stderr


def test_unknown_split_tier_names_the_file_and_the_tiers(tmp_path):
    result = run_exporter_once(
        [
            "--config.file=examples/thai-binh.yml",
            "--shard=1/2",
            "--shard.tier=hamlet",
            f"--web.listen-address=127.0.0.1:{free_port()}",
        ]
    )
    assert result.returncode == 1
    assert (
        "examples/thai-binh.yml: --shard.tier 'hamlet' is not a tier of this inventory; "
        "write one of: central, province, district, commune" in result.stderr
    )
    no_shard = run_exporter_once(["--config.file=examples/thai-binh.yml", "--shard.tier=district"])
    assert no_shard.returncode == 2 and "--shard.tier needs --shard I/N" in no_shard.stderr


# --- end to end: two shards, two agents, one central Prometheus ---------------------------

PROVINCES = 6
DOWN_COMMUNE = "p3-d1-c1"


def _network(port: int) -> tuple[dict, list[str]]:
    """A hall, 6 provinces x 2 districts x 2 communes; addresses on 127.77.0.0/16."""
    endpoints = [
        {
            "id": "hall",
            "name": "Hội trường",
            "tier": "central",
            "address": "127.77.0.1",
            "delegates": 100,
        }
    ]
    for p in range(1, PROVINCES + 1):
        endpoints.append(
            {
                "id": f"p{p}",
                "name": f"Tỉnh {p}",
                "tier": "province",
                "parent": "hall",
                "address": f"127.77.{p}.1",
                "delegates": 20,
            }
        )
        for d in (1, 2):
            endpoints.append(
                {
                    "id": f"p{p}-d{d}",
                    "name": f"Huyện {p}.{d}",
                    "tier": "district",
                    "parent": f"p{p}",
                    "address": f"127.77.{p}.{10 * d}",
                    "delegates": 5,
                }
            )
            for c in (1, 2):
                endpoints.append(
                    {
                        "id": f"p{p}-d{d}-c{c}",
                        "name": f"Xã {p}.{d}.{c}",
                        "tier": "commune",
                        "parent": f"p{p}-d{d}",
                        "address": f"127.77.{p}.{10 * d + c}",
                        "delegates": 10,
                    }
                )
    spec = {
        "interval": "1s",
        "tiers": [{"name": t, "modules": ["tcp"]} for t in TIER_NAMES[:4]],
        "modules": {"tcp": {"prober": "tcp", "timeout": "500ms", "tcp": {"port": port}}},
        "endpoints": endpoints,
    }
    # The hall and one commune have no listener: down.
    listening = [e["address"] for e in endpoints if e["id"] not in ("hall", DOWN_COMMUNE)]
    return spec, listening


def _agent_config(path: Path, exporter_port: int, central_port: int, shard: int) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "external_labels": {"agent": f"shard-{shard}"}},
        "scrape_configs": [
            {
                "job_name": "bridge",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
        "remote_write": [
            {
                "url": f"http://127.0.0.1:{central_port}/api/v1/write",
                "queue_config": {"batch_send_deadline": "1s"},
            }
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _agent(binary: str, config: Path, workdir: Path) -> subprocess.Popen:
    port = free_port()
    log = (workdir / "agent.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            "--enable-feature=agent",
            f"--config.file={config}",
            f"--storage.agent.path={workdir / 'wal'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until(
        lambda: http_request(f"http://127.0.0.1:{port}/-/ready")[0] == 200,
        30,
        f"the agent to be ready (log: {workdir / 'agent.log'})",
    )
    return process


class _CentralPrometheus(Prometheus):
    """helpers_stack.Prometheus with the remote-write receiver on (Prometheus 2.33+)."""

    def __init__(self, binary: str, workdir: Path):
        config = workdir / "central.yml"
        config.write_text("global:\n  external_labels: {monitor: central}\n", encoding="utf-8")
        wrapper = workdir / "prometheus-with-receiver"
        wrapper.write_text(
            f'#!/bin/sh\nexec {binary} --web.enable-remote-write-receiver "$@"\n',
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
        super().__init__(str(wrapper), config, workdir)


def test_two_shards_remote_written_to_a_central_prometheus(tmp_path):
    prometheus = need_tool("prometheus")
    servers = LoopbackServers()
    port = free_port()
    spec, listening = _network(port)
    for address in listening:
        servers.tcp(address, port)
    config = write_inventory(tmp_path / "bridge.yml", spec)
    ids = [e["id"] for e in spec["endpoints"]]

    (tmp_path / "central").mkdir()
    central = _CentralPrometheus(prometheus, tmp_path / "central")
    started: list = []
    try:
        for shard in (1, 2):
            workdir = tmp_path / f"shard-{shard}"
            workdir.mkdir()
            exporter = ExporterProcess(config, workdir, f"--shard={shard}/2").start()
            started.append(exporter)
            exporter.wait_ready()
            agent_config = _agent_config(workdir / "agent.yml", exporter.port, central.port, shard)
            started.append(_agent(prometheus, agent_config, workdir))

        def complete() -> dict[str, float]:
            counts = central.by_label("count by (endpoint) (bridge_up)", "endpoint")
            return counts if len(counts) == len(ids) else {}

        counts = wait_until(complete, 60, "every endpoint's bridge_up at the central Prometheus")
        assert counts == dict.fromkeys(ids, 1.0), "each endpoint exactly once"
        info = central.by_label("count by (endpoint) (bridge_endpoint_info)", "endpoint")
        assert info == dict.fromkeys(ids, 1.0)

        # Both shards carry a share, and a province's whole subtree is in one shard.
        per_shard = central.by_label("count by (agent) (bridge_endpoint_info)", "agent")
        assert set(per_shard) == {"shard-1", "shard-2"}, per_shard
        agents = central.query("count by (province, agent) (bridge_endpoint_info{province!=''})")
        provinces = Counter(r["metric"]["province"] for r in agents)
        assert provinces == Counter({f"p{p}": 1 for p in range(1, PROVINCES + 1)}), agents

        # Tier totals summed over the shards are the inventory's.
        totals = {
            "central": (1, 0, 100),
            "province": (PROVINCES, PROVINCES, 20 * PROVINCES),
            "district": (2 * PROVINCES, 2 * PROVINCES, 5 * 2 * PROVINCES),
            "commune": (4 * PROVINCES, 4 * PROVINCES - 1, 10 * 4 * PROVINCES),
        }

        def tier_sums() -> dict:
            got = {
                name: central.by_label(f"sum by (tier) ({name})", "tier")
                for name in (
                    "bridge_tier_endpoints",
                    "bridge_tier_endpoints_up",
                    "bridge_tier_delegates",
                )
            }
            return {tier: tuple(int(got[name].get(tier, -1)) for name in got) for tier in totals}

        wait_until(lambda: tier_sums() == totals, 30, f"tier totals {totals}")

        # The hall is down and exported by shard 1 only, yet every point of both shards
        # knows it: bridge_upstream_up is 0 below it, so only the hall is a root cause.
        upstream = central.by_label("bridge_upstream_up", "endpoint")
        assert upstream == {i: (1.0 if i == "hall" else 0.0) for i in ids}, upstream
        # The hall's BridgeSubtreeLost counts every point below it, whichever shard
        # exports them (shard 1 exports the hall but probes only its own subtrees).
        below = central.by_label("bridge_endpoint_descendants", "endpoint")
        assert below["hall"] == len(ids) - 1
        below_delegates = central.by_label("bridge_endpoint_descendant_delegates", "endpoint")
        assert below_delegates["hall"] == sum(d for _, _, d in totals.values()) - 100
        shard_info = central.query("bridge_exporter_shard_info")
        assert sorted(
            (r["metric"]["shard"], r["metric"]["shards"], r["metric"]["tier"]) for r in shard_info
        ) == [("1", "2", "province"), ("2", "2", "province")]
    finally:
        for process in reversed(started):
            if isinstance(process, ExporterProcess):
                process.stop()
            else:
                process.terminate()
                process.wait(timeout=10)
        central.stop()
        servers.close()


# --- the shipped examples -----------------------------------------------------------------


def test_federation_and_remote_write_examples_are_valid_configs(tmp_path):
    promtool = need_tool("promtool")
    federation = subprocess.run(
        [promtool, "check", "config", str(REPO / "prometheus/federation.yml")],
        capture_output=True,
        text=True,
    )
    assert federation.returncode == 0, federation.stdout + federation.stderr
    # The agent example with every commented-out alternative (Mimir, VictoriaMetrics, a
    # plain Prometheus) switched on too: each must be valid when a user picks it.
    text = (REPO / "prometheus/remote-write/agent.yml").read_text(encoding="utf-8")
    lines, in_block = [], False
    for line in text.splitlines():
        in_block = line.startswith("  # - url:") or (in_block and line.startswith("  #   "))
        lines.append("  " + line[4:] if in_block else line)
    alternatives = "\n".join(lines)
    assert alternatives.count("- url:") == 4, alternatives
    every = tmp_path / "agent-all.yml"
    every.write_text(alternatives, encoding="utf-8")
    for path in (REPO / "prometheus/remote-write/agent.yml", every):
        result = subprocess.run(
            [promtool, "check", "config", "--agent", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
