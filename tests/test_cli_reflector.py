"""`bridge-exporter reflector`: the STAMP reflector a site runs next to its endpoint."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time

from bridge_exporter.probes.base import Target
from bridge_exporter.probes.stamp import StampProber, StampSettings
from conftest import free_port


async def test_reflector_command_answers_a_stamp_train_and_stops_on_sigterm():
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge_exporter.cli", "reflector", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        prober = StampProber()
        settings = StampSettings(port=port, count=20, interval=0.005, wait=0.3)
        target = Target("site", "127.0.0.1")
        deadline = time.monotonic() + 10
        while True:
            result = await prober.probe(target, settings, 2.0, logging.getLogger("test"))
            if result.success or time.monotonic() > deadline:
                break
        assert result.success, result.debug
        assert (result.packets_sent, result.packets_received) == (20, 20)
        assert result.packet_loss_ratio == 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0, stderr


def test_reflector_rejects_a_bad_listen_address():
    done = subprocess.run(
        [sys.executable, "-m", "bridge_exporter.cli", "reflector", "--listen", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 2
    assert "the port must be 1-65535" in done.stderr
