"""Shared test helpers.

Tools the tests need (prometheus, promtool, sipp, fping, ip netns) are installed by
`make test`. When one is missing a test is skipped on a developer machine but FAILS in
CI (CI=true): CI must never go green by skipping what it was meant to prove.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

sys.path.insert(0, str(Path(__file__).resolve().parent))


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} (CI must not skip: `make test` installs it)")
    pytest.skip(what)


def need_tool(name: str) -> str:
    path = shutil.which(name) or next(
        (
            p
            for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}")
            if os.path.exists(p)
        ),
        None,
    )
    if not path:
        missing(f"{name} is not installed")
    return path


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def tool():
    return need_tool
