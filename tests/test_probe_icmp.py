"""The icmp prober against real sockets: loopback, and hosts in network namespaces that the
tests build (silent, or answered by tests/icmp_responder.py with a known delay and loss).
No packet leaves this machine: targets are 127.0.0.0/8, ::1, or namespace addresses."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridge_exporter.probes.base import Seconds, Target
from bridge_exporter.probes.icmp import IcmpProber, IcmpSettings, icmp_checksum
from conftest import eventually, missing, need_tool
from netlab import isolated_netns, netlab_problem, netns_host

TESTS = Path(__file__).resolve().parent
LOG = logging.getLogger("test.icmp")


@pytest.fixture
async def prober():
    instance = IcmpProber()
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture
def netlab():
    problem = netlab_problem()
    if problem:
        missing(f"network namespace tests: {problem}")
    need_tool("ip")


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_loopback_answers_every_request(prober, address):
    if address == "::1" and not ipv6_loopback_available():
        missing("IPv6 loopback (::1) is not configured")
    result = await prober.probe(Target("hall", address), IcmpSettings(interval=0.05), 3.0, LOG)

    assert result.success, result.debug
    assert result.reason == ""
    assert (result.packets_sent, result.packets_received) == (5, 5)
    assert result.packet_loss_ratio == 0.0
    assert len(result.rtt_samples) == 5
    assert all(0 < rtt < 0.1 for rtt in result.rtt_samples)
    assert result.rtt_min_seconds <= result.rtt_seconds <= result.rtt_max_seconds
    assert result.rtt_seconds == pytest.approx(sum(result.rtt_samples) / 5)
    assert 0 <= result.jitter_seconds <= result.rtt_max_seconds - result.rtt_min_seconds
    assert sum("reply in" in line for line in result.debug) == 5


def test_jitter_is_mean_absolute_difference_of_successive_answered_rtts():
    result = IcmpProber.summarize([0.010, None, 0.030, 0.020, None])

    assert (result.packets_sent, result.packets_received) == (5, 3)
    assert result.packet_loss_ratio == pytest.approx(0.4)
    assert result.rtt_seconds == pytest.approx(0.020)
    # |30 - 10| and |20 - 30| ms, averaged; lost packets are skipped, not counted as 0.
    assert result.jitter_seconds == pytest.approx(0.015)
    assert IcmpProber.summarize([0.010]).jitter_seconds == 0.0
    assert IcmpProber.summarize([None, None]).jitter_seconds is None


async def test_silent_host_costs_its_timeout_and_does_not_delay_others(prober, netlab):
    with netns_host("icmp-silent", ignore_echo=True) as silent:
        began = time.monotonic()

        async def timed(address: str, settings: IcmpSettings, timeout: float):
            result = await prober.probe(Target(address, address), settings, timeout, LOG)
            return result, time.monotonic() - began

        (quiet, quiet_elapsed), (healthy, healthy_elapsed) = await asyncio.gather(
            timed(silent.address, IcmpSettings(count=3, interval=0.2), 1.5),
            timed("127.0.0.1", IcmpSettings(count=3, interval=0.05), 1.5),
        )

    assert not quiet.success
    assert quiet.reason == "no_reply"
    assert quiet.packet_loss_ratio == 1.0
    assert (quiet.packets_sent, quiet.packets_received) == (3, 0)
    assert quiet.rtt_seconds is None
    assert 1.0 <= quiet_elapsed <= 1.5 + 0.5  # waited for its replies, not beyond timeout
    assert healthy.success and healthy.packets_received == 3
    assert healthy_elapsed < 0.8  # finished on its own schedule (~0.1 s), not the silent's


def fping_per_packet(address: str, count: int) -> list[float | None]:
    """RTTs (seconds, None when lost) from `fping -C`, which prints one figure per packet:
    `198.18.0.2 : 50.31 50.42 - 50.28 ...`."""
    fping = need_tool("fping")
    run = subprocess.run(
        [fping, "-C", str(count), "-p", "10", "-t", "500", "-q", address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    line = next(line for line in run.stderr.splitlines() if line.startswith(address))
    figures = line.split(":", 1)[1].split()
    assert len(figures) == count, run.stderr
    return [None if figure == "-" else float(figure) / 1000 for figure in figures]


def start_responder(host, delay: float, loss: float, seed: int) -> subprocess.Popen:
    responder = host.popen(
        [
            sys.executable,
            str(TESTS / "icmp_responder.py"),
            *("--delay", str(delay), "--loss", str(loss), "--seed", str(seed)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert responder.stdout.readline().strip() == "ready"
    return responder


def stop_responder(responder: subprocess.Popen) -> dict[str, float]:
    responder.terminate()
    output, _ = responder.communicate(timeout=5)
    return json.loads(output.strip().splitlines()[-1])


async def test_loss_and_rtt_match_an_imposed_delay_and_loss_and_agree_with_fping(prober, netlab):
    delay, loss, count = 0.050, 0.20, 200
    # Loss: the responder drops each request with probability 0.2, so the lost count is
    # binomial; 5 standard deviations of the ratio is a bound a correct prober never
    # crosses by chance. RTT: the imposed delay plus the veth round trip (well under
    # 1 ms) plus the responder's scheduling slack (its timer and Python), 10 ms at most
    # on a busy machine; a reply can never come back sooner than the delay.
    loss_tolerance = 5 * math.sqrt(loss * (1 - loss) / count)
    rtt_low, rtt_high = delay, delay + 0.001 + 0.010
    with netns_host("icmp-fid", ignore_echo=True) as host:
        responder = start_responder(host, delay, loss, seed=2024)
        settings = IcmpSettings(count=count, interval=0.01, packet_timeout=0.5)
        ours = await prober.probe(Target("commune", host.address), settings, 5.0, LOG)
        ours_responder = stop_responder(responder)

        # The same seed drops the same request positions for fping.
        responder = start_responder(host, delay, loss, seed=2024)
        fping_rtts = await asyncio.to_thread(fping_per_packet, host.address, count)
        fping_responder = stop_responder(responder)

    print(f"imposed: loss {loss:.3f}, delay {delay * 1000:.1f} ms")
    print(
        f"ours:  loss {ours.packet_loss_ratio:.3f}, mean rtt {ours.rtt_seconds * 1000:.2f} ms "
        f"(min {ours.rtt_min_seconds * 1000:.2f}, max {ours.rtt_max_seconds * 1000:.2f}, "
        f"jitter {ours.jitter_seconds * 1000:.3f} ms), responder {ours_responder}"
    )
    fping_answered = [rtt for rtt in fping_rtts if rtt is not None]
    fping_loss = 1 - len(fping_answered) / count
    fping_mean = sum(fping_answered) / len(fping_answered)
    print(f"fping: loss {fping_loss:.3f}, mean rtt {fping_mean * 1000:.2f} ms, {fping_responder}")

    # Every request reached the responder, and what it dropped is exactly what we lost.
    assert ours.packets_sent == ours_responder["received"] == count
    assert ours.packets_sent - ours.packets_received == ours_responder["dropped"]
    assert abs(ours.packet_loss_ratio - loss) <= loss_tolerance
    # A busy host runs the responder's timers late; what it measured it adds to the bound.
    assert rtt_low <= ours.rtt_min_seconds
    assert rtt_low <= ours.rtt_seconds <= rtt_high + ours_responder["late_mean_seconds"]
    assert ours.success

    assert count - len(fping_answered) == fping_responder["dropped"]
    assert abs(fping_loss - loss) <= loss_tolerance
    assert rtt_low <= fping_mean <= rtt_high + fping_responder["late_mean_seconds"]
    assert abs(ours.packet_loss_ratio - fping_loss) <= loss_tolerance
    late = max(ours_responder["late_mean_seconds"], fping_responder["late_mean_seconds"])
    assert abs(ours.rtt_seconds - fping_mean) <= rtt_high - rtt_low + late


# Runs inside a namespace, without CAP_NET_RAW: reports what a user of the prober sees.
UNPRIVILEGED_PROBER = """
import asyncio, json, logging, sys
from bridge_exporter.probes.base import Target
from bridge_exporter.probes.icmp import IcmpProber, IcmpSettings, icmp_checksum

async def main():
    prober = IcmpProber()
    await prober.start()
    report = {"mode": prober.socket_mode(), "problem": prober.startup_problem(),
              "sockets": len(prober.sockets()), "results": {}}
    settings = IcmpSettings(count=2, interval=0.05)
    for address in sys.argv[1:]:
        result = await prober.probe(Target(address, address), settings, 2.0, logging.getLogger())
        report["results"][address] = {
            "success": result.success, "reason": result.reason,
            "received": result.packets_received, "duration": result.duration_seconds}
    await prober.close()
    capabilities = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
    report["net_raw"] = bool(int(capabilities, 16) & (1 << 13))
    print(json.dumps(report))

asyncio.run(main())
"""


def run_without_net_raw(namespace, *addresses: str) -> dict:
    setpriv = need_tool("setpriv")
    drop_net_raw = [setpriv, "--inh-caps=-net_raw", "--bounding-set=-net_raw"]
    run = namespace.run(
        [*drop_net_raw, sys.executable, "-c", UNPRIVILEGED_PROBER, *addresses], check=False
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_without_raw_or_ping_sockets_probes_fail_plainly_then_ping_sockets_work(netlab):
    with isolated_netns("icmp-perm") as namespace:
        namespace.sysctl("net.ipv4.ping_group_range", "1 0")  # nobody may open ping sockets
        denied = run_without_net_raw(namespace, "127.0.0.1", "::1")

        namespace.sysctl("net.ipv4.ping_group_range", "0 2147483647")
        namespace.run(["ip", "route", "add", "unreachable", "198.18.0.0/30"])
        unreachable = "198.18.0.1"  # routed nowhere, inside this namespace only
        # Name lookups cannot leave this namespace: it has no interface but loopback.
        allowed = run_without_net_raw(
            namespace, "127.0.0.1", "localhost", unreachable, "no-such-host.invalid"
        )

    assert denied["net_raw"] is False and allowed["net_raw"] is False
    assert denied["mode"] == "none"
    assert "ping_group_range" in denied["problem"] and "CAP_NET_RAW" in denied["problem"]
    for result in denied["results"].values():
        assert result == {**result, "success": False, "reason": "icmp_not_permitted"}
        assert result["duration"] < 0.1

    assert allowed["mode"] == "dgram"
    assert allowed["problem"] is None
    results = allowed["results"]
    assert results["127.0.0.1"]["success"] and results["127.0.0.1"]["received"] == 2
    assert results["localhost"]["success"], results["localhost"]
    assert results[unreachable]["reason"] == "unreachable"  # as every prober says it
    assert results["no-such-host.invalid"]["reason"] == "resolve_failed"


async def test_a_thousand_targets_share_one_socket(prober):
    def open_descriptors() -> int:
        """Sockets this process holds (pipes of other tests' finished child processes may
        close meanwhile, so count sockets only)."""
        sockets = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # e.g. listdir's own descriptor
                sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        return sockets

    targets = [Target(f"c{i}", f"127.0.{i // 250}.{i % 250 + 1}") for i in range(1000)]
    settings = IcmpSettings(count=2, interval=0.1)
    gc.collect()  # other tests' garbage (a loop's self-pipe) must not close sockets meanwhile
    before = open_descriptors()
    probes = asyncio.gather(*(prober.probe(target, settings, 5.0, LOG) for target in targets))
    await asyncio.sleep(0.05)  # between the first and second request of every target
    during = open_descriptors()
    results = await probes

    assert [r.reason for r in results if not r.success] == []
    assert sum(r.packets_received for r in results) == 2000
    assert during == before
    assert len(prober.sockets()) <= 2  # one per address family, IPv4 the only one used


async def test_a_request_due_just_before_the_deadline_is_sent(prober, worst_loop_stall):
    """Sends run on 5 ms ticks (ticks.py), up to a tick late: the last request of a train
    whose timeout leaves it 4 ms must still go out on time, not be dropped as too late.
    A stall of this test's loop longer than those 4 ms really makes it too late, so an
    attempt that saw one is tried again; one without a stall must send everything."""
    settings = IcmpSettings(count=5, interval=Seconds(0.1))

    async def probe_after(index: int):
        await asyncio.sleep(index * 0.00025)  # trains at every phase of the 5 ms ticks
        return await prober.probe(Target(f"p{index}", f"127.0.1.{index + 1}"), settings, 0.404, LOG)

    for _attempt in range(10):  # the last attempt is judged whatever the loop did
        worst_loop_stall.reset()
        results = await asyncio.gather(*(probe_after(index) for index in range(20)))
        if worst_loop_stall() < 0.003:
            break
    assert [r.packets_sent for r in results] == [5] * 20
    assert [r.packets_received for r in results] == [5] * 20
    assert not [line for r in results for line in r.debug if "not sent" in line]


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_replies_to_another_pinger_never_reach_this_probers_socket(prober, address):
    """A raw socket hears every echo reply the host receives: with shards of the exporter
    (or any pinger) on one host, each would pay for reading all the others' replies. The
    kernel keeps them out; without the socket filter, the other's ten replies queue here."""
    if prober.socket_mode() != "raw":
        pytest.skip("ping sockets are demultiplexed by the kernel anyway")
    family = "ipv4" if "." in address else "ipv6"
    ours = prober.sockets()[family]
    asyncio.get_running_loop().remove_reader(ours.fileno())  # leave what arrives queued
    other = IcmpProber()
    await other.start()
    try:
        result = await other.probe(
            Target("x", address), IcmpSettings(count=10, interval=0.01), 2.0, LOG
        )
    finally:
        await other.close()
    assert result.packets_received == 10
    with pytest.raises(BlockingIOError):
        ours.recv(4096)
    # Its own replies still come through.
    asyncio.get_running_loop().add_reader(ours.fileno(), prober.channel(ours.family).on_readable)
    mine = await prober.probe(Target("y", address), IcmpSettings(count=3, interval=0.01), 2, LOG)
    assert mine.packets_received == 3


def test_sequence_numbers_wrap_and_skip_those_in_flight(prober):
    channel = prober.channel(socket.AF_INET)
    channel.next_sequence = 65535
    channel.in_flight[0] = object()
    try:
        assert [channel.take_sequence() for _ in range(2)] == [65535, 1]
    finally:
        channel.in_flight.clear()


async def test_a_reply_without_the_request_cookie_is_not_credited(prober, netlab):
    """A late reply to an earlier request that used the same sequence number carries
    another cookie: it must not count as this request's answer."""

    def echo_reply(sequence: int, payload: bytes) -> bytes:
        header = struct.pack("!BBHHH", 0, 0, 0, channel.identifier, sequence)
        checksum = icmp_checksum(header + payload)
        return header[:2] + struct.pack("!H", checksum) + header[4:] + payload

    channel = prober.channel(socket.AF_INET)
    if channel.mode != "raw":
        missing("forging replies needs a raw socket (CAP_NET_RAW)")
    settings = IcmpSettings(count=2, interval=0.2, packet_timeout=0.6)
    with netns_host("icmp-stray", ignore_echo=True) as silent:
        probe = asyncio.create_task(prober.probe(Target("x", silent.address), settings, 1.0, LOG))

        async def in_flight(count: int) -> list:
            # Polled: a busy host may send late.
            await eventually(
                lambda: len(channel.in_flight) >= count, "requests in flight", 5, 0.001
            )
            return list(channel.in_flight.items())

        (first_sequence, first), *_ = await in_flight(1)
        second_sequence, second = next(
            (sequence, request) for sequence, request in await in_flight(2) if request is not first
        )
        stray_before = channel.stray_replies
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as forger:
            # Right sequence, foreign cookie: rejected.
            forger.sendto(echo_reply(first_sequence, b"\xee" * 16 + b"\0" * 40), ("127.0.0.1", 0))
            # Right sequence and cookie (what the silent host would have sent): credited.
            forger.sendto(echo_reply(second_sequence, second.token + b"\0" * 40), ("127.0.0.1", 0))
        result = await probe

    assert channel.stray_replies == stray_before + 1
    assert (result.packets_sent, result.packets_received) == (2, 1)
    assert result.success
