"""Run part of a test inside a network namespace the test created (tests/netlab.py).

`inside(namespace)` moves the calling thread into the namespace and back: sockets opened
meanwhile (a prober's, an injector's) live there, so the test can send crafted packets
and change sysctls that no other program on this machine sees. Only the calling thread
moves; pytest runs tests on the main thread, and nothing else in the process opens
sockets from it while the block runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from netlab import Namespace

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def inside(namespace: Namespace) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace.ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
