"""`bridge-exporter reflector`: the STAMP reflector a site runs next to its endpoint."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import threading

from bridge_exporter.probes.base import Target
from bridge_exporter.probes.stamp import StampProber, StampSettings
from conftest import free_port


class StderrWatcher:
    """Collects a process's stderr on a thread and tells when a line containing `marker`
    has appeared."""

    def __init__(self, process: subprocess.Popen, marker: str) -> None:
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._process = process
        self._marker = marker
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.lines.append(line)
            if self._marker in line:
                self.seen.set()

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "".join(self.lines)


async def test_reflector_command_answers_a_stamp_train_and_stops_on_sigterm():
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge_exporter.cli", "reflector", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = StderrWatcher(process, f"listening on 127.0.0.1 port {port}")
    try:
        # Probe once it listens: no race with its start-up, so one train must be whole.
        ready = await asyncio.to_thread(stderr.seen.wait, 10)
        assert ready, f"the reflector did not say it was listening: {stderr.text()}"
        prober = StampProber()
        settings = StampSettings(port=port, count=20, interval=0.005, wait=0.3)
        target = Target("site", "127.0.0.1")
        result = await prober.probe(target, settings, 2.0, logging.getLogger("test"))
        assert result.success, result.debug
        assert (result.packets_sent, result.packets_received) == (20, 20)
        assert result.packet_loss_ratio == 0
        assert 0 <= result.values["stamp_reflector_residence_seconds"] < 0.1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
    assert process.returncode == 0, stderr.text()


def test_reflector_rejects_a_bad_listen_address():
    done = subprocess.run(
        [sys.executable, "-m", "bridge_exporter.cli", "reflector", "--listen", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 2
    assert "the port must be 1-65535" in done.stderr
