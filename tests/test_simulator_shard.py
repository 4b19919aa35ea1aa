"""The simulator against the open-file limit: a clear one-line refusal instead of a crash,
and `simulate --shard I/N` serving more endpoints over several processes than one
process's limit allows. The limit is lowered in the child (preexec_fn), as a machine with
a 20,000 hard limit meets it at 10,000 endpoints of sip + tcp."""

from __future__ import annotations

import resource
import socket
import subprocess
from pathlib import Path

from conftest import free_port
from helpers_exporter import exporter_command, wait_until, write_inventory

PROVINCES = 20
COMMUNES = 10  # per province: 1 + 20 + 200 = 221 endpoints, 3 listening sockets each
TCP_PORT = 1720
# Below the 221 x 3 sockets one process needs, above the share of either shard.
FILE_LIMIT = 560


def _inventory(path: Path) -> tuple[Path, list[str]]:
    endpoints = [{"id": "hall", "name": "hall", "tier": "central", "address": "127.62.0.1"}]
    for p in range(1, PROVINCES + 1):
        endpoints.append(
            {
                "id": f"p{p}",
                "name": f"p{p}",
                "tier": "province",
                "parent": "hall",
                "address": f"127.62.{p}.1",
            }
        )
        endpoints += [
            {
                "id": f"p{p}-c{c}",
                "name": f"p{p}-c{c}",
                "tier": "commune",
                "parent": f"p{p}",
                "address": f"127.62.{p}.{c + 10}",
            }
            for c in range(1, COMMUNES + 1)
        ]
    spec = {
        "tiers": [
            {"name": t, "modules": ["sip", "tcp"]} for t in ("central", "province", "commune")
        ],
        "modules": {
            "sip": {"prober": "sip", "timeout": "1s", "sip": {"transport": "udp", "port": 5060}},
            "tcp": {"prober": "tcp", "timeout": "1s", "tcp": {"port": TCP_PORT}},
        },
        "endpoints": endpoints,
    }
    return write_inventory(path, spec), [e["address"] for e in endpoints]


def _limit_files(limit: int):
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return lower


def _simulate(config: Path, limit: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *exporter_command(),
            "simulate",
            f"--config.file={config}",
            f"--control.listen-address=127.0.0.1:{free_port()}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_limit_files(limit),
    )


def test_too_many_endpoints_for_the_file_limit_is_one_clear_line(tmp_path):
    config, _ = _inventory(tmp_path / "bridge.yml")
    process = _simulate(config, FILE_LIMIT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    errors = [line for line in output.splitlines() if "level=error" in line]
    assert len(errors) == 1, output
    assert (
        f"{config}: 221 endpoints need 663 listening sockets (3.0 each) but the open-file "
        "limit (560, hard limit 560) leaves" in errors[0]
    )
    assert "`simulate --shard I/N`" in errors[0] and "ulimit -Hn" in errors[0]
    assert "IndexError" not in output and "Traceback" not in output
    assert "Too many open files" not in output, "it must refuse before binding anything"


def test_shards_serve_more_endpoints_than_one_process_may(tmp_path):
    config, addresses = _inventory(tmp_path / "bridge.yml")
    shards = [_simulate(config, FILE_LIMIT, f"--shard={i}/2") for i in (1, 2)]

    def every_endpoint_listens() -> bool:
        if any(process.poll() is not None for process in shards):
            raise RuntimeError("a shard exited")
        for address in addresses:
            with socket.create_connection((address, TCP_PORT), timeout=1):
                pass
        return True

    try:
        wait_until(every_endpoint_listens, 30, f"all {len(addresses)} endpoints to listen")
        listening = True
    except (AssertionError, RuntimeError):
        listening = False
    for process in shards:
        process.terminate()
    outputs = [process.communicate(timeout=10)[0] for process in shards]
    assert listening, "\n".join(outputs)
    served = []
    for output in outputs:
        assert "level=error" not in output and "Too many open files" not in output, output
        served += [line for line in output.splitlines() if "simulating" in line]
    assert len(served) == 2, outputs
