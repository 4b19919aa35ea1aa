"""Test hosts built from Linux network namespaces (needs root and `ip` from iproute2).

`netns_host("icmp")` gives a namespace joined to the root namespace by a veth pair, so a
test can probe a "remote" host whose behaviour it controls (silent, lossy, slow) without
sending a single packet beyond this machine. `isolated_netns("icmp")` gives a namespace
with only its own loopback: a fresh copy of every per-namespace sysctl
(net.ipv4.ping_group_range, ...) to change without touching the host's.

Addresses come from 198.18.0.0/15, the RFC 2544 benchmarking range: it is reserved for
lab tests, never routed on the Internet and, unlike 10/8, 172.16/12 and 192.168/16, not
used by office, container or VPN networks that this machine might also be attached to,
so a test address can never shadow or reach a real host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

TEST_NETWORK = ipaddress.ip_network("198.18.0.0/15")


def ip_command() -> str | None:
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.path.exists(p)), None
    )


def netlab_problem() -> str | None:
    """Why namespaces cannot be built here (to skip or fail with), or None."""
    if not ip_command():
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ip_command() or "ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Namespace:
    """A network namespace created by the tests; commands run inside it."""

    ns: str
    _children: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def command(self, cmd: Sequence[str]) -> list[str]:
        return [ip_command() or "ip", "netns", "exec", self.ns, *cmd]

    def run(
        self, cmd: Sequence[str], check: bool = True, timeout: float = 30, **kwargs
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        return subprocess.run(self.command(cmd), check=check, text=True, timeout=timeout, **kwargs)

    def popen(self, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a process inside the namespace; it is stopped when the namespace goes."""
        process = subprocess.Popen(self.command(cmd), **kwargs)
        self._children.append(process)
        return process

    def sysctl(self, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        # /proc/sys/net shows the namespace of the process that opens it.
        self.run(["sh", "-c", f'echo "$1" > {path}', "sh", value])

    def read_sysctl(self, key: str) -> str:
        return self.run(["cat", "/proc/sys/" + key.replace(".", "/")]).stdout.strip()

    def stop_children(self) -> None:
        for process in self._children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@dataclass
class Host(Namespace):
    """A namespace reachable from the root namespace over a veth pair."""

    address: str = ""  # the host's address, inside the namespace
    peer_address: str = ""  # the root namespace's end of the link
    veth: str = ""  # the root namespace's interface name


def _unique_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{random.getrandbits(24):06x}"


@contextlib.contextmanager
def isolated_netns(name_prefix: str) -> Iterator[Namespace]:
    """A namespace with only its loopback interface (up)."""
    namespace = Namespace(_unique_name(name_prefix))
    _ip("netns", "add", namespace.ns)
    try:
        namespace.run(["ip", "link", "set", "lo", "up"])
        yield namespace
    finally:
        namespace.stop_children()
        subprocess.run([ip_command() or "ip", "netns", "del", namespace.ns], capture_output=True)


def _addresses_in_use() -> set[ipaddress.IPv4Address]:
    out = _ip("-o", "-4", "addr", "show").stdout
    found = set()
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            found.add(ipaddress.ip_interface(words[words.index("inet") + 1]).ip)
    return found


def _free_link_subnet() -> ipaddress.IPv4Network:
    """A /30 of the test range that no interface of the root namespace uses (other test
    runs may hold some at the same time)."""
    in_use = _addresses_in_use()
    subnets = 1 << (30 - TEST_NETWORK.prefixlen)
    while True:
        index = random.randrange(subnets)
        subnet = ipaddress.ip_network((int(TEST_NETWORK.network_address) + index * 4, 30))
        if not any(address in subnet for address in in_use):
            return subnet


@contextlib.contextmanager
def netns_host(name_prefix: str, *, ignore_echo: bool = False) -> Iterator[Host]:
    """A namespace joined to the root namespace by a veth pair with a /30 from
    198.18.0.0/15. With ignore_echo the host's kernel never answers ICMP echo requests
    (net.ipv4.icmp_echo_ignore_all=1), as a silent host or a user-space responder needs.
    Everything is removed on exit, even after a failure."""
    name = _unique_name(name_prefix)
    veth = "nl" + name.rsplit("-", 1)[1]  # interface names have at most 15 characters
    subnet = _free_link_subnet()
    peer_address, address = (str(a) for a in list(subnet.hosts())[:2])
    host = Host(name, address=address, peer_address=peer_address, veth=veth)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{peer_address}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        host.run(["ip", "link", "set", "lo", "up"])
        host.run(["ip", "addr", "add", f"{address}/30", "dev", "eth0"])
        host.run(["ip", "link", "set", "eth0", "up"])
        if ignore_echo:
            host.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        yield host
    finally:
        host.stop_children()
        subprocess.run([ip_command() or "ip", "link", "del", veth], capture_output=True)
        subprocess.run([ip_command() or "ip", "netns", "del", name], capture_output=True)
