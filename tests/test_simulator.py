"""The simulated bridge network: real sockets on 127.61.0.0/16, faults, control API,
scenario files."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import aiohttp
import pytest
from bridge_exporter.config import ConfigError
from bridge_exporter.config.model import Endpoint, Inventory, Module, Thresholds, Tier
from bridge_exporter.probes.base import Target
from bridge_exporter.probes.h323 import H323Settings
from bridge_exporter.probes.sip import SipProber, SipSettings
from bridge_exporter.probes.stamp import StampSettings
from bridge_exporter.probes.stats import StatsProber, StatsSettings
from bridge_exporter.simulate import Fault, Simulator, parse_scenario
from bridge_exporter.stamp_packet import SenderPacket, ntp_now
from conftest import EXAMPLES, free_port

LOG = logging.getLogger("test_simulator")


@dataclass(frozen=True)
class Ports:
    sip: int
    h323: int
    stamp: int
    http: int


@pytest.fixture
def ports() -> Ports:
    return Ports(
        sip=free_port("127.61.0.1"),
        h323=free_port("127.61.0.1"),
        stamp=free_port("127.61.0.1", socket.SOCK_DGRAM),
        http=free_port("127.61.0.1"),
    )


# The test network:   c (127.61.0.1)
#                     ├── d1 (127.61.1.1) ── d1-a (127.61.2.1), d1-b (127.61.2.2)
#                     └── d2 (127.61.1.2) ── d2-a (127.61.3.1)
TREE = [
    ("c", "central", None, "127.61.0.1"),
    ("d1", "district", "c", "127.61.1.1"),
    ("d1-a", "commune", "d1", "127.61.2.1"),
    ("d1-b", "commune", "d1", "127.61.2.2"),
    ("d2", "district", "c", "127.61.1.2"),
    ("d2-a", "commune", "d2", "127.61.3.1"),
]


def make_inventory(ports: Ports, extra: list[tuple[str, str, str, str]] = ()) -> Inventory:
    modules = {
        "sip": Module("sip", "sip", 2.0, True, SipSettings(transport="udp", port=ports.sip)),
        "sip_tcp": Module(
            "sip_tcp", "sip", 2.0, True, SipSettings(transport="tcp", port=ports.sip)
        ),
        "h323": Module("h323", "h323", 2.0, False, H323Settings(port=ports.h323)),
        "stamp": Module("stamp", "stamp", 2.0, False, StampSettings(port=ports.stamp)),
        "media": Module(
            "media",
            "stats",
            2.0,
            False,
            StatsSettings(url=f"http://{{address}}:{ports.http}/getxml?location=/Status"),
        ),
    }
    tiers = tuple(
        Tier(name, level, tuple(modules), Thresholds())
        for level, name in enumerate(("central", "district", "commune"))
    )
    endpoints: dict[str, Endpoint] = {}
    for endpoint_id, tier, parent, address in [*TREE, *extra]:
        ancestors = (*endpoints[parent].ancestors, parent) if parent else ()
        endpoints[endpoint_id] = Endpoint(
            endpoint_id, f"Point {endpoint_id}", tier, parent, address, tuple(modules), ancestors
        )
    return Inventory("test-inventory.yml", tiers, modules, endpoints)


ADDRESS = {endpoint_id: address for endpoint_id, _, _, address in TREE}


async def sip_probe(endpoint_id: str, ports: Ports, transport: str = "udp", timeout=1.0):
    settings = SipSettings(transport=transport, port=ports.sip, t1=0.1)
    target = Target(endpoint_id, ADDRESS[endpoint_id])
    return await SipProber().probe(target, settings, timeout, LOG)


async def tcp_state(host: str, port: int) -> str:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except ConnectionRefusedError:
        return "refused"
    writer.close()
    return "open"


async def udp_exchange(
    host: str, port: int, payload: bytes, wait: float, first_only: bool = False
) -> list[bytes]:
    """Send one datagram; what comes back within `wait` seconds (or the first answer)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        await loop.sock_sendall(sock, payload)
        answers: list[bytes] = []
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0 and not (first_only and answers):
            try:
                answers.append(await asyncio.wait_for(loop.sock_recv(sock, 65535), left))
            except TimeoutError:
                break
        return answers


def options_request(method: str = "OPTIONS") -> bytes:
    return (
        f"{method} sip:127.61.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKtest1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:test@127.0.0.1>;tag=abc\r\n"
        "To: <sip:127.61.0.1>\r\n"
        "Call-ID: test-call-1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_sip_options_answered_200_over_udp_and_tcp(ports: Ports):
    async with Simulator(make_inventory(ports)):
        udp = await sip_probe("c", ports, "udp")
        tcp = await sip_probe("d1-a", ports, "tcp")
        assert (udp.success, udp.status_code) == (True, 200), udp.debug
        assert (tcp.success, tcp.status_code) == (True, 200), tcp.debug

        (answer,) = await udp_exchange("127.61.0.1", ports.sip, options_request(), 0.5)
        text = answer.decode()
        assert text.startswith("SIP/2.0 200 OK\r\n")
        for header in ("Allow: ", "Accept: application/sdp", "Supported: ", "Contact: <sip:"):
            assert f"\r\n{header}" in text, header
        assert "received=127.0.0.1" in text  # the top Via says where the request came from

        (refused,) = await udp_exchange("127.61.0.1", ports.sip, options_request("INVITE"), 0.5)
        assert refused.startswith(b"SIP/2.0 501 Not Implemented\r\n")
        assert await udp_exchange("127.61.0.1", ports.sip, b"\x16\x03 not sip\r\n\r\n", 0.3) == []


async def test_sip_503_and_slow_answer_preceded_by_trying(ports: Ports):
    async with Simulator(make_inventory(ports)) as sim:
        sim.set_fault("d2", Fault(sip_status=503))
        result = await sip_probe("d2", ports)
        # Any final answer proves the SIP stack is up; the code tells the story.
        assert (result.success, result.status_code) == (True, 503)

        sim.set_fault("d2", Fault(sip_delay_seconds=0.5))
        started = time.monotonic()
        answers = await udp_exchange("127.61.1.2", ports.sip, options_request(), 1.0)
        assert [a.split(b"\r\n")[0] for a in answers] == [b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"]
        assert time.monotonic() - started >= 0.5


async def test_down_refuses_tcp_silences_udp_and_recovers(ports: Ports):
    host = ADDRESS["d2"]
    async with Simulator(make_inventory(ports)) as sim, aiohttp.ClientSession() as http:
        _, h323_connection = await asyncio.open_connection(host, ports.h323)
        status_url = f"http://{host}:{ports.http}/api/status"
        async with http.get(status_url) as response:  # leaves a keep-alive connection
            assert response.status == 200
        sim.set_fault("d2", Fault(down=True))

        assert await tcp_state(host, ports.sip) == "refused"
        assert await tcp_state(host, ports.h323) == "refused"
        assert await tcp_state(host, ports.http) == "refused"
        assert (await sip_probe("d2", ports, "tcp")).reason == "refused"
        udp = await sip_probe("d2", ports, "udp", timeout=0.8)
        assert (udp.success, udp.reason) == (False, "timeout")
        # Connections made before the fault are cut too.
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(status_url) as response:
                await response.read()
        with pytest.raises(ConnectionResetError):
            h323_connection.write(b"x")
            await h323_connection.drain()
            await asyncio.sleep(0.05)
            h323_connection.write(b"x")
            await h323_connection.drain()

        assert sim.clear_fault("d2") is True
        assert await tcp_state(host, ports.h323) == "open"
        assert (await sip_probe("d2", ports, "udp")).status_code == 200
        assert (await sip_probe("d2", ports, "tcp")).status_code == 200
        async with http.get(status_url) as response:
            assert response.status == 200


async def test_subtree_fault_reaches_children_not_siblings(ports: Ports, caplog):
    caplog.set_level(logging.INFO, "bridge_exporter.simulate")
    async with Simulator(make_inventory(ports)) as sim:
        sim.set_fault("d1", Fault(down=True), subtree=True)
        assert "fault set on d1 (subtree, 3 endpoints): down" in caplog.messages

        states = {e: await tcp_state(ADDRESS[e], ports.sip) for e in ADDRESS}
        assert states == {
            "c": "open", "d1": "refused", "d1-a": "refused", "d1-b": "refused",
            "d2": "open", "d2-a": "open",
        }  # fmt: skip

        # The endpoint's own fault wins over the one it would inherit.
        sim.set_fault("d1-a", Fault(sip_status=503))
        assert (await sip_probe("d1-a", ports)).status_code == 503
        assert (await sip_probe("d1-b", ports, timeout=0.5)).reason == "timeout"

        sim.clear_fault("d1")
        assert (await sip_probe("d1-b", ports)).status_code == 200
        assert (await sip_probe("d1-a", ports)).status_code == 503


async def stamp_rtts(host: str, port: int, count: int) -> list[float]:
    rtts = []
    for sequence in range(count):
        packet = SenderPacket(sequence, ntp_now()).encode()
        started = time.monotonic()
        if await udp_exchange(host, port, packet, 0.6, first_only=True):
            rtts.append(time.monotonic() - started)
    return rtts


async def test_stamp_delay_fault_shows_in_rtt_and_down_is_silent(ports: Ports):
    async with Simulator(make_inventory(ports)) as sim:
        host = ADDRESS["d1-b"]
        healthy = await stamp_rtts(host, ports.stamp, 3)
        assert len(healthy) == 3 and max(healthy) < 0.6

        sim.set_fault("d1-b", Fault(delay_seconds=0.15))
        delayed = await stamp_rtts(host, ports.stamp, 3)
        assert len(delayed) == 3 and min(delayed) >= 0.15

        sim.set_fault("d1-b", Fault(down=True))
        assert await stamp_rtts(host, ports.stamp, 2) == []


async def test_http_media_documents_served_and_reflect_loss(ports: Ports):
    async with Simulator(make_inventory(ports), seed=7) as sim, aiohttp.ClientSession() as http:
        base = f"http://{ADDRESS['d2-a']}:{ports.http}"
        async with http.get(f"{base}/api/status") as response:
            assert await response.json() == {"id": "d2-a", "name": "Point d2-a", "in_call": True}

        sim.set_fault("d2-a", Fault(loss_ratio=0.08))
        async with http.get(f"{base}/api/rest/mediastats") as response:
            streams = await response.json()
        received = [s for s in streams if s["mediaDirection"] == "RX"]
        assert received and all(6 <= s["percentPacketLoss"] <= 10 for s in received)

        async with http.get(f"{base}/getxml", params={"location": "/Status"}) as response:
            status = ET.fromstring(await response.text())
        incoming = [c for c in status.iter("Channel") if c.findtext("Direction") == "Incoming"]
        lost = sum(int(c.findtext("Netstat/LastIntervalLost")) for c in incoming)
        got = sum(int(c.findtext("Netstat/LastIntervalReceived")) for c in incoming)
        assert 0.06 <= lost / (lost + got) <= 0.10

        # What the exporter's `stats` prober reads from both document styles.
        prober = StatsProber()
        try:
            for preset in ("cisco_xapi", "poly_rest"):
                settings = StatsSettings(preset=preset, port=ports.http)
                result = await prober.probe(Target("d2-a", ADDRESS["d2-a"]), settings, 2.0, LOG)
                assert result.success, (preset, result.reason, result.debug)
                assert result.values["media_in_call"] == 1
                assert 0.06 <= result.values["media_packet_loss_ratio"] <= 0.10, preset
        finally:
            await prober.close()

        sim.set_fault("d2-a", Fault(garbage=True))
        async with http.get(f"{base}/api/rest/mediastats") as response:
            assert response.status == 200
            with pytest.raises(ValueError):
                json.loads(await response.read())


async def test_control_api_sets_and_clears_faults(ports: Ports):
    control = ("127.61.0.1", free_port("127.61.0.1"))
    async with (
        Simulator(make_inventory(ports), control_listen=control),
        aiohttp.ClientSession(f"http://{control[0]}:{control[1]}") as api,
    ):
        async with api.get("/") as response:
            assert "PUT    /faults/{endpoint_id}" in await response.text()

        async with api.put("/faults/d1", json={"down": True, "subtree": True}) as response:
            assert response.status == 200
            assert (await response.json())["endpoints_affected"] == 3
        async with api.put("/faults/d2-a", json={"sip_status": 503, "delay_seconds": "50ms"}):
            pass
        async with api.get("/faults") as response:
            faults = {f["endpoint"]: f for f in (await response.json())["faults"]}
        assert faults["d1"]["fault"] == {"down": True} and faults["d1"]["subtree"] is True
        assert faults["d2-a"]["fault"] == {"sip_status": 503, "delay_seconds": 0.05}
        assert await tcp_state(ADDRESS["d1-a"], ports.sip) == "refused"
        assert (await sip_probe("d2-a", ports)).status_code == 503

        async with api.put("/faults/d2", data=b"{down: yes") as response:
            assert response.status == 400
            assert "not JSON" in (await response.json())["error"]
        async with api.put("/faults/d2", json={"dwon": True}) as response:
            assert response.status == 400
            assert "unknown fault field 'dwon'" in (await response.json())["error"]
        async with api.put("/faults/d2", json={"loss_ratio": 3}) as response:
            assert response.status == 400
        async with api.put("/faults/nowhere", json={"down": True}) as response:
            assert response.status == 404

        async with api.delete("/faults/d1") as response:
            assert await response.json() == {"endpoint": "d1", "cleared": True}
        assert await tcp_state(ADDRESS["d1-a"], ports.sip) == "open"
        async with api.delete("/faults") as response:
            assert await response.json() == {"cleared": 1}
        assert (await sip_probe("d2-a", ports)).status_code == 200


async def test_flapping_endpoint_alternates(ports: Ports):
    async with Simulator(make_inventory(ports)) as sim:
        sim.set_fault("d2-a", Fault(flap_period_seconds=0.4))
        seen = []
        for at in (0.15, 0.55, 0.95):
            await asyncio.sleep(at - (time.monotonic() - sim.book.set_on("d2-a").since))
            seen.append(await tcp_state(ADDRESS["d2-a"], ports.h323))
        assert seen == ["open", "refused", "open"]


async def test_an_out_of_range_fault_set_in_python_is_refused_and_flapping_goes_on(ports: Ports):
    """A 1e-320 s flap period used to overflow in the flap task, which then died: no
    endpoint flapped any more, and every later set_fault raised as well."""
    async with Simulator(make_inventory(ports)) as sim:
        with pytest.raises(ValueError, match=r"flap_period_seconds must be 0 \(no flapping\)"):
            sim.set_fault("d1-a", Fault(flap_period_seconds=1e-320))
        with pytest.raises(ValueError, match="delay_seconds must be from 0 to 60s, not inf"):
            sim.set_fault("d1", Fault(delay_seconds=float("inf")), subtree=True)
        assert sim.book.entries() == []
        await asyncio.sleep(0.25)  # flap checks run with nothing bad in the book

        sim.set_fault("d2-a", Fault(flap_period_seconds=0.4))
        seen = []
        for at in (0.15, 0.55, 0.95):
            await asyncio.sleep(at - (time.monotonic() - sim.book.set_on("d2-a").since))
            seen.append(await tcp_state(ADDRESS["d2-a"], ports.h323))
        assert seen == ["open", "refused", "open"]


BAD_SCENARIO = """\
repeat_every: 1m
steps:
  - at: 30s
    endpoint: d1-c
    fault: {down: true}
  - at: 2x
    endpoint: d1
    fault:
      down: true
      delay: 80ms
  - at: 90s
    endpoint: d2
    clear: true
    colour: red
"""


def test_scenario_errors_name_their_lines(ports: Ports):
    with pytest.raises(ConfigError) as raised:
        parse_scenario(BAD_SCENARIO, "bad.yml", make_inventory(ports))
    message = str(raised.value)
    assert re.search(r"bad.yml:4: unknown endpoint 'd1-c'.*did you mean 'd1-[ab]'", message)
    assert "bad.yml:6: at must be from 0 to 7d (a number of seconds or text like" in message
    assert "not '2x'" in message
    assert "bad.yml:10: unknown fault field 'delay'" in message
    assert "bad.yml:11: at 90s is not before repeat_every" in message
    assert "bad.yml:14: unknown key 'colour' in a step" in message
    assert len(raised.value.problems) == 5


async def test_scenario_steps_applied_at_their_times(ports: Ports):
    text = """
steps:
  - {at: 300ms, endpoint: d1, subtree: true, fault: {down: true}}
  - {at: 900ms, endpoint: d1, clear: true}
"""
    inventory = make_inventory(ports)
    scenario = parse_scenario(text, "timed.yml", inventory)
    async with Simulator(inventory, scenario) as sim:
        started = time.monotonic()
        seen = []
        for at in (0.1, 0.6, 1.3):
            await asyncio.sleep(at - (time.monotonic() - started))
            seen.append(await tcp_state(ADDRESS["d1-b"], ports.sip))
        assert seen == ["open", "refused", "open"]
        assert sim.book.entries() == []


def test_non_loopback_endpoints_are_not_served(ports: Ports):
    inventory = make_inventory(ports, [("far", "commune", "d2", "bridge.invalid")])

    async def run():
        async with Simulator(inventory) as sim:
            return sim.skipped, set(sim.servers)

    skipped, served = asyncio.run(run())
    assert "not a loopback IP address" in skipped["far"]
    assert served == set(ADDRESS)


@pytest.mark.parametrize(
    "name", ["healthy.yml", "district-link-lost.yml", "degraded-commune.yml", "demo.yml"]
)
def test_example_scenarios_match_the_seed_inventory(name: str):
    from bridge_exporter.config import load_inventory
    from bridge_exporter.simulate import load_scenario

    inventory = load_inventory(EXAMPLES / "thai-binh.yml")
    scenario = load_scenario(EXAMPLES / "scenarios" / name, inventory)
    if name != "healthy.yml":
        assert scenario.steps


async def test_a_non_utf8_scenario_file_is_a_config_error_naming_it(tmp_path, caplog):
    from bridge_exporter.cli import simulate
    from bridge_exporter.config import load_inventory
    from bridge_exporter.simulate import load_scenario

    path = tmp_path / "latin1.yml"
    path.write_bytes("steps: []\ndescription: Thái Bình link lost\n".encode("latin-1"))
    inventory_path = EXAMPLES / "thai-binh.yml"
    with pytest.raises(ConfigError) as raised:
        load_scenario(path, load_inventory(inventory_path))
    (problem,) = raised.value.problems
    assert str(problem) == (
        f"{path}:2: the file is not UTF-8 (byte 0xe1 on this line); save it as UTF-8"
    )
    # `bridge-exporter simulate --scenario` says so and exits 1 instead of crashing.
    assert await simulate(str(inventory_path), str(path), ("127.0.0.1", 0)) == 1
    assert f"cannot simulate: {path}:2: the file is not UTF-8" in caplog.text


async def test_scenario_repeats_every_cycle(ports: Ports):
    text = """
repeat_every: 600ms
steps:
  - {at: 0s, endpoint: d2-a, fault: {sip_status: 503}}
  - {at: 300ms, endpoint: d2-a, clear: true}
"""
    inventory = make_inventory(ports)
    async with Simulator(inventory, parse_scenario(text, "cycle.yml", inventory)):
        started = time.monotonic()
        codes = []
        for at in (0.15, 0.45, 0.75, 1.05):
            await asyncio.sleep(at - (time.monotonic() - started))
            codes.append((await sip_probe("d2-a", ports)).status_code)
        assert codes == [503, 200, 503, 200]
