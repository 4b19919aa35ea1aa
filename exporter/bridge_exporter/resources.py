"""The exporter's own resources: the open-file (descriptor) limit and what it carries, and
local resource exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM) counted as the exporter's
trouble, never as the network's.

Every tcp, h323, http, stamp, stats and SIP-over-TCP/TLS probe holds about one socket
while it runs; icmp and SIP-over-UDP probes share one socket per address family. So the
descriptors left after the exporter's own (listeners, shared sockets, log, event loop) and
a spare for HTTP clients bound the probes in flight, and `concurrency` should not exceed
them.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from dataclasses import dataclass, field

from .config.model import Inventory, Module
from .probes.reasons import LOCAL_RESOURCE_EXHAUSTED

log = logging.getLogger(__name__)

# What the kernel says when the process or the system runs out of descriptors, socket
# buffers or memory: asyncio stops accepting for a second on exactly these.
LOCAL_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Descriptors kept free for what is not a probe: scrapes and /probe calls (one each),
# the resolver's sockets in its worker threads, reading /proc. A Prometheus or two and an
# operator's browser need a handful; 16 leaves room for a burst of them.
SPARE_FDS = 16
# Probers that share one socket per address family, whatever the probes in flight (sip
# over UDP too: see shares_a_socket).
SHARED_SOCKET_PROBERS = frozenset({"icmp"})
# Probers whose HTTP client keeps an idle keep-alive connection per target between probes.
KEEP_ALIVE_PROBERS = frozenset({"stats"})
# Without a /proc to count them: a Python process with its listeners and ICMP sockets.
ASSUMED_FDS_IN_USE = 32
# The soft limit set when the hard limit is "unlimited", which Linux refuses for files.
UNLIMITED_FALLBACK = 1 << 20
RAISE_HINT = "ulimit -n / LimitNOFILE="


@dataclass(frozen=True)
class FdLimit:
    """The soft and hard RLIMIT_NOFILE after start-up, and the soft limit before it."""

    soft: int
    hard: int
    before: int
    problem: str = ""  # why it could not be raised, if it could not

    @property
    def raised(self) -> bool:
        return self.soft > self.before

    def describe(self) -> str:
        """`fd limit 4096 (raised from 1024)`, `fd limit 64 (the hard limit)`."""
        if self.raised:
            return f"fd limit {self.soft} (raised from {self.before})"
        if self.problem:
            return f"fd limit {self.soft} (could not be raised to {self.hard}: {self.problem})"
        if self.soft >= self.hard:
            return f"fd limit {self.soft} (the hard limit)"
        return f"fd limit {self.soft} (hard limit {self.hard})"


def _finite(value: int) -> int:
    return UNLIMITED_FALLBACK if value == resource.RLIM_INFINITY else value


def raise_fd_limit() -> FdLimit:
    """Raise the soft open-file limit to the hard limit, as far as the kernel allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _finite(hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            return FdLimit(soft, target, soft, problem=str(exc))
    now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FdLimit(_finite(now_soft), _finite(now_hard), _finite(soft))


def current_fd_limit() -> FdLimit:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FdLimit(_finite(soft), _finite(hard), _finite(soft))


def fds_in_use() -> int:
    """Descriptors open now (Linux: /proc/self/fd, minus the one listing it)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory)) - 1
        except OSError:
            continue
    return ASSUMED_FDS_IN_USE


@dataclass(frozen=True)
class FdBudget:
    """What the descriptor limit carries against what the inventory can ask for."""

    limit: FdLimit
    in_use: int
    concurrency: int
    socket_probes: int  # probes of one round of every endpoint that each hold a socket
    kept_alive: int  # idle keep-alive connections the HTTP clients may hold between probes

    @property
    def carried(self) -> int:
        """Probes in flight the limit carries after what is already open and the spare."""
        return max(0, self.limit.soft - self.in_use - SPARE_FDS - self.kept_alive)

    @property
    def wanted(self) -> int:
        """Probes that may be in flight at once: all of them, up to `concurrency`."""
        return min(self.concurrency, self.socket_probes)

    @property
    def enough(self) -> bool:
        return self.wanted <= self.carried

    def message(self) -> str:
        text = f"{self.limit.describe()} carries {self.carried} probes in flight"
        if self.kept_alive:
            text += f" besides {self.kept_alive} idle keep-alive connections of stats probes"
        count = self.socket_probes
        probes = f"{count} probe that holds" if count == 1 else f"{count} probes that hold"
        text += (
            f"; concurrency is {self.concurrency} and a round of every endpoint has "
            f"{probes} a socket"
        )
        if self.enough:
            return text
        if self.carried >= 1:
            advice = f"lower `concurrency` to {self.carried} or raise the limit"
        else:
            advice = "raise the limit"
        return (
            f"{text}: probes beyond it fail as {LOCAL_RESOURCE_EXHAUSTED} (endpoint states "
            f"are kept); {advice} ({RAISE_HINT})"
        )


def shares_a_socket(module: Module) -> bool:
    """Whether the module's probes go through a socket shared by all of them."""
    if module.prober == "sip":
        return str(getattr(module.settings, "transport", "")).lower() == "udp"
    return module.prober in SHARED_SOCKET_PROBERS


def fd_budget(inventory: Inventory, limit: FdLimit | None = None) -> FdBudget:
    socket_probes = kept_alive = 0
    for endpoint in inventory.endpoints.values():
        for module in inventory.modules_of(endpoint):
            if not shares_a_socket(module):
                socket_probes += 1
            if module.prober in KEEP_ALIVE_PROBERS:
                kept_alive += 1
    return FdBudget(
        limit=limit or current_fd_limit(),
        in_use=fds_in_use(),
        concurrency=inventory.concurrency,
        socket_probes=socket_probes,
        kept_alive=kept_alive,
    )


def log_fd_budget(budget: FdBudget) -> None:
    """Info when the limit carries what the inventory asks for, else a warning with the fix."""
    log.log(logging.INFO if budget.enough else logging.WARNING, "%s", budget.message())


@dataclass
class ResourceErrors:
    """Operations that failed because the exporter itself ran out of descriptors, buffers
    or memory, by operation (`probe`: a probe could not run, its endpoint kept its state;
    `accept`: an HTTP connection waited in the kernel's queue)."""

    counts: dict[str, int] = field(default_factory=lambda: {"accept": 0, "probe": 0})
    last_timestamp: float | None = None  # wall clock of the latest one

    def add(self, operation: str) -> None:
        self.counts[operation] = self.counts.get(operation, 0) + 1
        self.last_timestamp = time.time()

    def seen_within(self, seconds: float) -> bool:
        return self.last_timestamp is not None and time.time() - self.last_timestamp <= seconds


def log_simulator_fd_budget(inventory: Inventory, limit: FdLimit) -> None:
    """How many simulated endpoints the limit carries: each holds a socket per port it
    serves (SIP two: UDP and TCP) and one per connection a probe has open to it."""
    from .simulate.servers import loopback_problem, plan_ports

    listening = 0
    simulated = [e for e in inventory.endpoints.values() if loopback_problem(e.address) is None]
    for endpoint in simulated:
        plan = plan_ports(inventory, endpoint)
        listening += 2 * len(plan.sip) + len(plan.plain_tcp) + len(plan.stamp) + len(plan.http)
    per_endpoint = listening / len(simulated) if simulated else 0.0
    free = max(0, limit.soft - fds_in_use() - SPARE_FDS)
    carried = int(free / per_endpoint) if per_endpoint else free
    text = (
        f"{limit.describe()} carries about {carried} simulated endpoints ({per_endpoint:.1f} "
        f"listening sockets each, and one per open connection); the inventory has "
        f"{len(simulated)}"
    )
    if listening <= free:
        log.info("%s", text)
    else:
        log.warning(
            "%s: too few for the endpoints' listeners; raise the limit (%s) or simulate "
            "fewer endpoints",
            text, RAISE_HINT,
        )  # fmt: skip
