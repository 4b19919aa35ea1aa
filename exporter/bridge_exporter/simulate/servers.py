"""Everything one simulated endpoint serves on its own loopback address.

Which ports: from the probe modules the endpoint uses. sip -> UDP and TCP on the
module's port (0 means 5060, or 5061 for tls; TLS itself is not simulated, so a `tls`
module sees plain TCP and fails its handshake); h323 and tcp -> a TCP listener that
accepts and reads; stamp -> a STAMP reflector; http and stats -> the management HTTP
interface on the port of the module's url (default 80). icmp needs nothing: the kernel
answers pings on lo, so ICMP faults cannot be simulated and a `down` endpoint still
answers ping.

`down` closes the TCP listeners (connections are refused, open ones are reset) and makes
UDP services (SIP, STAMP) silent. A real dead link is silent for TCP too; refusing is
the closest a loopback simulator gets without packet filters, and probers report it as
`refused` rather than `timeout`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from ..config.model import Endpoint, Inventory
from ..probes.http import HttpSettings
from ..probes.netutil import bracket
from ..probes.sip import DEFAULT_PORTS as SIP_DEFAULT_PORTS
from ..probes.stats import PRESETS, StatsSettings
from ..reflector import STAMP_PORT, Impairment, StampReflector, start_reflector
from .book import FaultBook
from .listeners import TcpListener
from .sip_uas import IdleTcpProtocol, SipTcpProtocol, SipUdpProtocol, UasContext

log = logging.getLogger("bridge_exporter.simulate")

HTTP_PORT = 80


@dataclass
class PortPlan:
    sip: set[int] = field(default_factory=set)  # UDP and TCP
    plain_tcp: set[int] = field(default_factory=set)  # h323, tcp
    stamp: set[int] = field(default_factory=set)
    http: set[int] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def loopback_problem(address: str) -> str | None:
    """Why the simulator must not serve this address, or None when it may."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address {address!r} is a host name, not a loopback IP address"
    if not ip.is_loopback:
        return f"address {address} is not a loopback address (127.0.0.0/8 or ::1)"
    return None


def plan_ports(inventory: Inventory, endpoint: Endpoint) -> PortPlan:
    plan = PortPlan()
    for module_name in endpoint.modules:
        module = inventory.modules.get(module_name)
        if module is None:
            continue
        settings = module.settings
        kind = module.prober
        if kind == "sip":
            plan.sip.add(settings.port or SIP_DEFAULT_PORTS[settings.transport])
            if settings.transport == "tls":
                plan.warnings.append(f"module {module_name}: SIP over TLS is served as plain TCP")
        elif kind in ("h323", "tcp"):
            plan.plain_tcp.add(settings.port)
        elif kind == "stamp":
            # The loader lets a stamp port 0 through (the prober rejects it per probe).
            plan.stamp.add(settings.port or STAMP_PORT)
        elif kind in ("http", "stats"):
            override = settings.port if kind == "stats" else 0
            for url in _module_urls(settings):
                port = _url_port(endpoint, module_name, url, override, plan.warnings)
                if port is not None:
                    plan.http.add(port)
    # One TCP listener per port: SIP wins, then HTTP, then the plain acceptor.
    plan.http -= plan.sip
    plan.plain_tcp -= plan.sip | plan.http
    return plan


def _module_urls(settings: HttpSettings | StatsSettings) -> list[str]:
    """Every URL an http or stats module may read (a stats preset brings its own).

    Not the stats prober's plan: that lists only the documents its mapping reads, and a
    document named in `documents:` but not (yet) read should still be served.
    """
    if isinstance(settings, HttpSettings):
        return [settings.url]
    preset = PRESETS.get(settings.preset) if settings.preset else None
    main = settings.url or (preset.url if preset else "")
    documents = {**(preset.documents if preset else {}), **settings.documents}
    return [url for url in (main, *documents.values()) if url]


def _url_port(
    endpoint: Endpoint, module_name: str, url: str, override: int, warnings: list[str]
) -> int | None:
    parts = urlsplit(url.replace("{address}", bracket(endpoint.address)))
    if parts.scheme != "http":
        warnings.append(f"module {module_name}: only plain http:// is simulated, not {url}")
        return None
    if parts.hostname != endpoint.address:
        warnings.append(f"module {module_name}: url {url} does not point at the endpoint")
        return None
    try:
        return override or parts.port or HTTP_PORT
    except ValueError:
        warnings.append(f"module {module_name}: url {url} has a bad port")
        return None


class EndpointServers:
    """The SIP, H.323/TCP, STAMP and HTTP servers of one endpoint."""

    def __init__(
        self, inventory: Inventory, endpoint: Endpoint, book: FaultBook, rng: random.Random
    ):
        self.endpoint = endpoint
        self.address = endpoint.address
        self.plan = plan_ports(inventory, endpoint)
        self.book = book
        self.rng = rng
        self.problems: list[str] = list(self.plan.warnings)
        self.listeners: list[TcpListener] = []
        self.udp_transports: list[asyncio.DatagramTransport] = []
        self.reflectors: list[StampReflector] = []
        self.http_runner: web.AppRunner | None = None
        self.down = False

    def fault(self):
        return self.book.fault_for(self.endpoint.id)

    def is_down(self) -> bool:
        return self.book.is_down(self.endpoint.id)

    def impairment(self) -> Impairment:
        fault = self.fault()
        return Impairment(
            delay_seconds=fault.delay_seconds,
            jitter_seconds=fault.jitter_seconds,
            loss_ratio=fault.loss_ratio,
            down=self.is_down(),
            rng=self.rng,
        )

    @property
    def ports(self) -> dict[str, list[int]]:
        return {
            "sip": sorted(self.plan.sip),
            "tcp": sorted(self.plan.plain_tcp),
            "stamp": sorted(self.plan.stamp),
            "http": sorted(self.plan.http),
        }

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for port in sorted(self.plan.sip):
            context = UasContext(self.address, port, self.fault, self.is_down, self.rng)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda context=context: SipUdpProtocol(context), local_addr=(self.address, port)
                )
            except OSError as exc:
                self._problem(f"SIP UDP port {port}: {exc}")
            else:
                self.udp_transports.append(transport)  # type: ignore[arg-type]
            factory = lambda c=context: SipTcpProtocol(c)  # noqa: E731
            self.listeners.append(TcpListener(self.address, port, factory))
        for port in sorted(self.plan.plain_tcp):
            self.listeners.append(TcpListener(self.address, port, IdleTcpProtocol))
        if self.plan.http:
            from .mgmt_http import build_app  # aiohttp app only where a module needs it

            app = build_app(self.endpoint, self.fault, self.rng)
            self.http_runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self.http_runner.setup()
            server = self.http_runner.server
            for port in sorted(self.plan.http):
                self.listeners.append(TcpListener(self.address, port, server))
        for port in sorted(self.plan.stamp):
            try:
                self.reflectors.append(await start_reflector(self.address, port, self.impairment))
            except OSError as exc:
                self._problem(f"STAMP port {port}: {exc}")
        self.down = self.is_down()
        if not self.down:
            self._open_listeners()

    def set_down(self, down: bool) -> None:
        """Close (down) or re-open (up) the TCP listeners; UDP services check per packet."""
        if down == self.down:
            return
        self.down = down
        fault = self.fault()
        if fault.flap_period_seconds > 0 and not fault.down:
            log.info("%s flaps %s", self.endpoint.id, "down" if down else "up")
        if down:
            for listener in self.listeners:
                listener.close()
        else:
            self._open_listeners()

    def _open_listeners(self) -> None:
        for listener in self.listeners:
            try:
                listener.open()
            except OSError as exc:
                self._problem(f"TCP port {listener.port}: {exc}")

    async def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for transport in self.udp_transports:
            transport.close()
        for reflector in self.reflectors:
            reflector.close()
        if self.http_runner is not None:
            await self.http_runner.cleanup()

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)
            log.warning("endpoint %s (%s): %s", self.endpoint.id, self.address, message)
