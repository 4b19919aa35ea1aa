"""Run a command under a pseudo-terminal (as a user at a terminal would) and collect what
it writes there: how the tests see progress bars that only a terminal gets."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time


def run_in_pty(args: list[str], timeout: float = 60.0) -> tuple[int, bytes]:
    """(exit code, everything written to the terminal: stdout and stderr)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(args, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        os.close(controller)
    return process.wait(timeout=10), output
