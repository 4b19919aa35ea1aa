"""The simulated bridge network: every loopback endpoint of an inventory, served at once.

    async with Simulator(inventory, scenario) as sim:
        sim.set_fault("tb-hung-ha", Fault(down=True), subtree=True)

`serve()` is what `bridge-exporter simulate` runs: the same, plus the control API, until
cancelled. Only loopback addresses are served; any other endpoint is skipped with a
warning, so the simulator never binds or sends anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
from collections.abc import Collection

from aiohttp import web

from ..config.model import Inventory
from ..resources import SPARE_FDS, fds_in_use
from .book import FaultBook
from .control import DEFAULT_CONTROL_LISTEN, build_control_app
from .faults import Fault
from .limits import FLAP_CHECK_SECONDS
from .scenario import Scenario, Step, run_scenario
from .servers import EndpointServers, loopback_problem, plan_ports

log = logging.getLogger("bridge_exporter.simulate")


# Descriptors kept free for the control API and the connections probes open.
CONNECTION_HEADROOM = 64


class SimulatorLimit(RuntimeError):
    """This process cannot serve the endpoints it was asked to: says which limit and how
    to get past it."""


class Simulator:
    def __init__(
        self,
        inventory: Inventory,
        scenario: Scenario | None = None,
        control_listen: tuple[str, int] | None = None,
        seed: int | None = None,
        only: Collection[str] | None = None,
    ):
        self.inventory = inventory
        self.only = None if only is None else frozenset(only)  # ids to serve; None: all
        self.scenario = scenario
        self.control_listen = control_listen
        self.rng = random.Random(seed)
        self.book = FaultBook(inventory, on_change=self._apply_down_states)
        self.servers: dict[str, EndpointServers] = {}
        self.skipped: dict[str, str] = {}  # endpoint id -> why it is not served
        self.control_port: int | None = None
        self._control_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Simulator:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        _raise_open_file_limit()
        served = [
            e for e in self.inventory.endpoints.values() if self.only is None or e.id in self.only
        ]
        self._check_socket_budget(served)
        for endpoint in served:
            problem = loopback_problem(endpoint.address)
            if problem is not None:
                self.skipped[endpoint.id] = problem
                log.warning("not simulating %s: %s", endpoint.id, problem)
                continue
            servers = EndpointServers(self.inventory, endpoint, self.book, self.rng)
            self.servers[endpoint.id] = servers
            for warning in servers.problems:
                log.warning("endpoint %s: %s", endpoint.id, warning)
            await servers.start()
        if self.control_listen is not None:
            await self._start_control()
        self._tasks.append(asyncio.create_task(self._watch_flapping()))
        if self.scenario is not None:
            self._tasks.append(asyncio.create_task(self._run_scenario(self.scenario)))
        log.info(
            "simulating %d endpoints on loopback (%d skipped)%s",
            len(self.servers),
            len(self.skipped),
            f"; control API on http://{self.control_listen[0]}:{self.control_port}/"
            if self.control_listen
            else "",
        )

    def _check_socket_budget(self, served: list) -> None:
        """Refuse to start, in one clear line, when the listeners alone cannot fit under
        the open-file limit: half a network that fails every probe past its first few
        thousand points misleads more than no simulator."""
        wanted = 0
        for endpoint in served:
            if loopback_problem(endpoint.address) is None:
                plan = plan_ports(self.inventory, endpoint)
                wanted += 2 * len(plan.sip) + len(plan.plain_tcp) + len(plan.stamp)
                wanted += len(plan.http)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        free = soft - fds_in_use() - SPARE_FDS - CONNECTION_HEADROOM
        if wanted <= free:
            return
        per_endpoint = wanted / len(served)
        processes = -(-wanted // max(1, free))
        raise SimulatorLimit(
            f"{self.inventory.source}: {len(served)} endpoints need {wanted} listening "
            f"sockets ({per_endpoint:.1f} each) but the open-file limit ({soft}, hard "
            f"limit {hard}) leaves {max(0, free)}; split the network over processes with "
            f"`simulate --shard I/N` (e.g. N={processes + 1}, one process per shard, each "
            f"with its own --control.listen-address), or raise the hard limit "
            f"(ulimit -Hn as root, LimitNOFILE= in systemd, --ulimit nofile= in docker)"
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None
        for servers in self.servers.values():
            await servers.close()

    # Faults. Synchronous on purpose: when set_fault returns, a down endpoint already
    # refuses connections and a cleared one already listens again.

    def set_fault(self, endpoint_id: str, fault: Fault, subtree: bool = False) -> None:
        """Raises KeyError for an id that is not in the inventory and ValueProblem (a
        ValueError) for a value outside limits.LIMITS; nothing changes then."""
        self.book.set(endpoint_id, fault, subtree)

    def clear_fault(self, endpoint_id: str) -> bool:
        return self.book.clear(endpoint_id)

    def clear_all(self) -> int:
        return self.book.clear_all()

    def _apply_down_states(self, endpoint_ids: list[str] | None = None) -> None:
        ids = self.servers.keys() if endpoint_ids is None else endpoint_ids
        for endpoint_id in ids:
            servers = self.servers.get(endpoint_id)
            if servers is not None:
                servers.set_down(self.book.is_down(endpoint_id))

    async def _watch_flapping(self) -> None:
        last_error = ""
        while True:
            await asyncio.sleep(FLAP_CHECK_SECONDS)
            try:
                self._apply_down_states(self.book.flapping())
            except Exception as exc:  # a bug here must not stop flapping for every endpoint
                if repr(exc) != last_error:
                    log.exception("applying flapping states failed; still checking")
                last_error = repr(exc)
            else:
                last_error = ""

    async def _run_scenario(self, scenario: Scenario) -> None:
        def apply(step: Step) -> None:
            if step.fault is None:
                self.clear_fault(step.endpoint)
            else:
                self.set_fault(step.endpoint, step.fault, step.subtree)

        log.info(
            "scenario %s: %d steps%s",
            scenario.source,
            len(scenario.steps),
            f", repeating every {scenario.repeat_every:g}s" if scenario.repeat_every else "",
        )
        await run_scenario(scenario, apply)

    async def _start_control(self) -> None:
        assert self.control_listen is not None
        host, port = self.control_listen
        if loopback_problem(host) is not None:
            log.warning(
                "control API on %s: no authentication, anyone reaching it sets faults", host
            )
        runner = web.AppRunner(build_control_app(self), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._control_runner = runner
        self.control_port = runner.addresses[0][1]  # the bound port when 0 was asked for


async def serve(
    inventory: Inventory,
    scenario: Scenario | None,
    control_listen: tuple[str, int] = DEFAULT_CONTROL_LISTEN,
    only: Collection[str] | None = None,
) -> None:
    """Run the simulator and its control API until cancelled (`only`: the ids to serve)."""
    async with Simulator(inventory, scenario, control_listen, only=only):
        await asyncio.Event().wait()


def _raise_open_file_limit() -> None:
    # Each endpoint holds several sockets; a 1024 soft limit stops at ~150 endpoints.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
