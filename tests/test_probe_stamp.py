"""STAMP (RFC 8762) packets, reflector and prober, over loopback only."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable

import pytest
from bridge_exporter.probes.base import ProbeResult, Seconds, Target
from bridge_exporter.probes.netutil import SO_TIMESTAMPNS, Arrival, Instant, kernel_receive_time
from bridge_exporter.probes.stamp import StampProber, StampSettings, rfc3550_jitter
from bridge_exporter.reflector import Impairment, run_reflector, start_reflector
from bridge_exporter.stamp_packet import (
    BASE_SIZE,
    NTP_UNIX_OFFSET,
    PacketError,
    ReflectorPacket,
    SenderPacket,
    encode_error_estimate,
    error_estimate_seconds,
    error_estimate_synchronized,
    ntp_from_unix,
    ntp_now,
    unix_from_ntp,
)
from conftest import free_port, missing, rfc3550_jitter_of
from scheduler_round import ENDPOINT, one_round, single_module_inventory
from thread_peers import ThreadUdpPeer, block_loop_once

LOG = logging.getLogger("test.stamp")


def target(address: str = "127.0.0.1") -> Target:
    return Target(endpoint_id="hall", address=address)


async def probe(address: str, timeout: float = 5.0, **settings) -> ProbeResult:
    return await StampProber().probe(target(address), StampSettings(**settings), timeout, LOG)


def udp_port() -> int:
    return free_port("127.0.0.1", socket.SOCK_DGRAM)


# --- packets ---------------------------------------------------------------------------


def test_sender_packet_has_the_rfc_8762_layout():
    packet = SenderPacket(sequence=0x01020304, timestamp=0x1122334455667788, error_estimate=0xABCD)
    data = packet.encode()
    assert len(data) == BASE_SIZE == 44
    assert data[0:4] == bytes.fromhex("01020304")  # Sequence Number
    assert data[4:12] == bytes.fromhex("1122334455667788")  # Timestamp
    assert data[12:14] == bytes.fromhex("abcd")  # Error Estimate
    assert data[14:44] == bytes(30)  # MBZ, 30 octets
    assert SenderPacket.decode(data) == packet

    padded = packet.encode(160)
    assert len(padded) == 160 and padded[:44] == data and padded[44:] == bytes(116)
    assert SenderPacket.decode(padded) == SenderPacket(
        0x01020304, 0x1122334455667788, 0xABCD, bytes(116)
    )


def test_reflector_packet_has_the_rfc_8762_layout():
    packet = ReflectorPacket(
        sequence=0x0A0B0C0D,
        timestamp=0x1111111122222222,
        error_estimate=0x8001,
        receive_timestamp=0x3333333344444444,
        sender_sequence=0x05060708,
        sender_timestamp=0x5555555566666666,
        sender_error_estimate=0x0102,
        sender_ttl=0xFE,
        padding=b"voice",
    )
    data = packet.encode(50)
    assert len(data) == 50
    assert data[0:4] == bytes.fromhex("0a0b0c0d")  # Sequence Number
    assert data[4:12] == bytes.fromhex("1111111122222222")  # Timestamp
    assert data[12:14] == bytes.fromhex("8001")  # Error Estimate
    assert data[14:16] == bytes(2)  # MBZ
    assert data[16:24] == bytes.fromhex("3333333344444444")  # Receive Timestamp
    assert data[24:28] == bytes.fromhex("05060708")  # Session-Sender Sequence Number
    assert data[28:36] == bytes.fromhex("5555555566666666")  # Session-Sender Timestamp
    assert data[36:38] == bytes.fromhex("0102")  # Session-Sender Error Estimate
    assert data[38:40] == bytes(2)  # MBZ
    assert data[40] == 0xFE  # Session-Sender TTL
    assert data[41:44] == bytes(3)  # MBZ
    assert data[44:] == b"voice\x00"  # padding
    decoded = ReflectorPacket.decode(data)
    assert decoded == ReflectorPacket(**{**packet.__dict__, "padding": b"voice\x00"})


def test_short_datagrams_are_not_stamp_packets():
    with pytest.raises(PacketError, match="43 octets"):
        SenderPacket.decode(bytes(43))
    with pytest.raises(PacketError):
        ReflectorPacket.decode(b"")


def test_ntp_timestamps():
    assert ntp_from_unix(0.0) == NTP_UNIX_OFFSET << 32
    assert ntp_from_unix(0.5) == (NTP_UNIX_OFFSET << 32) | 0x8000_0000
    now = time.time()
    assert unix_from_ntp(ntp_from_unix(now)) == pytest.approx(now, abs=1e-6)
    residence = ReflectorPacket(0, ntp_from_unix(now + 0.25), 0, ntp_from_unix(now), 0, 0, 0, 0)
    assert residence.residence_seconds == pytest.approx(0.25, abs=1e-9)


def test_error_estimate():
    one_ms = encode_error_estimate(0.001)
    assert 0.001 <= error_estimate_seconds(one_ms) <= 0.001 * 1.01
    assert not error_estimate_synchronized(one_ms)
    assert error_estimate_synchronized(encode_error_estimate(0.001, synchronized=True))
    assert encode_error_estimate(0.0) & 0xFF == 1  # the multiplier is never zero


# --- reflector -------------------------------------------------------------------------


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
async def test_reflector_answers_with_the_rfc_fields(family, host):
    try:
        reflector = await start_reflector(host, 0)
    except OSError as error:
        missing(f"cannot listen on {host}: {error}")
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        # A distinctive TTL / Hop Limit proves the reflector copies what arrived.
        if family == socket.AF_INET:
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 37)
        else:
            sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 37)
        sender.setblocking(False)
        await loop.sock_connect(sender, (host, reflector.port))
        before = time.time()
        request = SenderPacket(sequence=7, timestamp=ntp_from_unix(before), error_estimate=0x0102)
        await loop.sock_sendall(sender, b"too short")
        await loop.sock_sendall(sender, request.encode(160)[:-3] + b"end")
        data = await asyncio.wait_for(loop.sock_recv(sender, 2000), 2)
        after = time.time()
    reflector.close()

    assert len(data) == 160  # symmetric size
    reply = ReflectorPacket.decode(data)
    assert reply.sequence == 7  # stateless: the sender's number
    assert reply.sender_sequence == 7
    assert reply.sender_timestamp == request.timestamp
    assert reply.sender_error_estimate == 0x0102
    assert reply.sender_ttl == 37
    assert reply.padding.endswith(b"end")  # padding comes back unchanged
    assert before - 0.01 <= unix_from_ntp(reply.receive_timestamp) <= after
    assert reply.receive_timestamp <= reply.timestamp
    assert unix_from_ntp(reply.timestamp) <= after + 0.01
    assert (reflector.received, reflector.reflected, reflector.ignored) == (1, 1, 1)


async def test_run_reflector_serves_until_cancelled():
    port = udp_port()
    server = asyncio.create_task(run_reflector([("127.0.0.1", port)]))
    await asyncio.sleep(0.05)
    served = await probe("127.0.0.1", port=port, count=3, interval=Seconds(0.01))
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    after = await probe("127.0.0.1", port=port, count=3, interval=Seconds(0.01))
    assert served.success and served.packets_received == 3
    assert not after.success and after.reason == "refused"  # the socket was closed


# --- prober ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost"])
async def test_clean_path_has_no_loss_and_small_rtt_and_jitter(address, worst_loop_stall):
    # Listen where the prober will go: "localhost" may resolve to ::1 or 127.0.0.1.
    listen = socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM)[0][4][0]
    try:
        reflector = await start_reflector(listen, 0)
    except OSError as error:
        missing(f"cannot listen on {listen}: {error}")
    result = await probe(address, port=reflector.port, count=20, interval=Seconds(0.005))
    reflector.close()

    assert result.success, result.debug
    assert result.reason == ""
    assert (result.packets_sent, result.packets_received) == (20, 20)
    assert result.packet_loss_ratio == 0.0
    assert len(result.rtt_samples) == 20
    # Loopback answers in well under a millisecond; the bounds leave room for a busy box,
    # and grow by any stall of the loop the reflector shares with this test.
    stall = worst_loop_stall()
    assert 0 < result.rtt_min_seconds <= result.rtt_seconds <= result.rtt_max_seconds < 0.05 + stall
    assert 0 <= result.jitter_seconds < 0.01 + stall
    assert 0 <= result.values["stamp_reflector_residence_seconds"] < 0.01 + stall
    assert (reflector.received, reflector.reflected) == (20, 20)
    assert any("20 of 20 answered" in line for line in result.debug)


def jitter_model(delay, jitter, loss, count, interval, trials=400, seed=1):
    """Monte Carlo of the test below: i.i.d. uniform hold, Bernoulli loss. Returns
    (mean, sd) of the RFC 3550 jitter (arrival order) and of the mean successive RTT
    difference (sequence order)."""
    rng = random.Random(seed)
    rfc, mad = [], []
    for _ in range(trials):
        kept = []
        for k in range(count):
            if rng.random() < loss:
                continue
            rtt = max(0.0, delay + rng.uniform(-jitter, jitter))
            kept.append((k * interval + rtt, rtt))
        in_sequence = [rtt for _, rtt in kept]
        in_arrival = [rtt for _, rtt in sorted(kept)]
        rfc.append(rfc3550_jitter(in_arrival))
        mad.append(statistics.fmean(abs(b - a) for a, b in itertools.pairwise(in_sequence)))
    return (statistics.fmean(rfc), statistics.stdev(rfc)), (
        statistics.fmean(mad),
        statistics.stdev(mad),
    )


async def test_imposed_delay_jitter_and_loss_are_measured_faithfully(answer_ages):
    d, j, p, count, interval, seed = 0.040, 0.010, 0.2, 200, 0.005, 8762
    imposed = Impairment(delay_seconds=d, jitter_seconds=j, loss_ratio=p, rng=random.Random(seed))
    reflector = await start_reflector("127.0.0.1", 0, lambda: imposed)
    result = await probe(
        "127.0.0.1", port=reflector.port, count=count, interval=Seconds(interval), wait=Seconds(0.2)
    )
    reflector.close()
    # The same seed replays the holds the reflector drew, one per packet in arrival order
    # (loopback keeps the sender's order).
    replay = Impairment(delay_seconds=d, jitter_seconds=j, loss_ratio=p, rng=random.Random(seed))
    holds = [replay.hold_seconds() for _ in range(count)]
    kept_holds = sorted(h for h in holds if h is not None)
    # What the wire really saw: the reflector shares this event loop, and a stall of it
    # (a collection, a busy CI host) holds answers past their drawn time.
    ages = [age for _, age in answer_ages]

    n = result.packets_received
    mean_rtt = result.rtt_seconds
    loss = result.packet_loss_ratio
    mad = result.values["stamp_jitter_mad_seconds"]
    print(
        f"imposed d={d * 1e3} ms j=±{j * 1e3} ms p={p}; measured mean RTT "
        f"{mean_rtt * 1e3:.3f} ms, loss {loss:.3f}, RFC 3550 jitter "
        f"{result.jitter_seconds * 1e3:.3f} ms, mean |ΔRTT| {mad * 1e3:.3f} ms"
    )
    assert result.success and result.packets_sent == count

    # Loss: the reflector's drops are the only loss on loopback, so it equals the replay
    # exactly; and it is within a 5-sigma binomial bound of p (sigma = sqrt(p(1-p)/N)).
    assert result.packets_sent - n == holds.count(None) == reflector.dropped == count - len(ages)
    assert abs(loss - p) <= 5 * math.sqrt(p * (1 - p) / count)  # ±0.141

    # Mean RTT: the mean of uniform[-j, j] is 0, so E[hold] = d; the sample mean's
    # standard error is j / sqrt(3n) (≈ 0.46 ms at n = 160). A late timer only makes an
    # RTT longer, so the lower bound is the model's; the upper one is the answers' real
    # mean age plus loopback.
    standard_error = j / math.sqrt(3 * n)
    assert d - 5 * standard_error <= mean_rtt <= statistics.fmean(ages) + 0.002

    # Packet by packet. Comparing sorted lists needs no knowledge of the arrival order: if
    # each rtt = x + e with 0 <= e <= E, the k-th smallest values obey the same bound.
    # Against the drawn holds: never early (e >= 0).
    overheads = [
        rtt - hold for rtt, hold in zip(sorted(result.rtt_samples), kept_holds, strict=True)
    ]
    assert min(overheads) >= 0
    # Against the real ages: the return leg on loopback and the prober's kernel timestamp
    # add well under a millisecond (5 ms leaves room for a preempted reflector between
    # its clock and its send); a prober that read its clock late would add a loop stall.
    returns = [rtt - age for rtt, age in zip(sorted(result.rtt_samples), sorted(ages), strict=True)]
    print(
        f"per-packet overhead over the drawn hold: mean {statistics.fmean(overheads) * 1e3:.3f}"
        f" ms; over the real age: max {max(returns) * 1e3:.3f} ms"
    )
    assert min(returns) >= -0.0005 and max(returns) <= 0.005

    # Jitter. For i.i.d. uniform holds of half-width j, D = X - Y is triangular on
    # [-2j, 2j], E|D| = 2j/3 = 6.67 ms; the Monte Carlo model agrees. Both figures must show
    # that spread, and equal what the real ages give: the mean successive difference in
    # sequence order, and RFC 3550's J (gain 1/16) in arrival order.
    _, (mad_mean, _) = jitter_model(d, j, p, count, interval)
    assert mad_mean == pytest.approx(2 * j / 3, rel=0.03)
    in_sequence = [age for _, age in sorted(answer_ages)]
    real_mad = statistics.fmean(abs(b - a) for a, b in itertools.pairwise(in_sequence))
    assert mad >= j / 3 and result.jitter_seconds >= j / 3
    assert abs(mad - real_mad) <= 0.001
    assert abs(result.jitter_seconds - rfc3550_jitter_of(ages)) <= 0.001


async def test_reflector_down_means_no_reply_within_the_timeout(worst_loop_stall):
    reflector = await start_reflector("127.0.0.1", 0, lambda: Impairment(down=True))
    began = time.monotonic()
    result = await probe(
        "127.0.0.1",
        timeout=1.0,
        port=reflector.port,
        count=10,
        interval=Seconds(0.01),
        wait=Seconds(30),
    )
    elapsed = time.monotonic() - began
    reflector.close()

    assert not result.success and result.reason == "no_reply"
    assert (result.packets_sent, result.packets_received) == (10, 0)
    assert result.packet_loss_ratio == 1.0
    assert result.rtt_seconds is None and result.jitter_seconds is None
    assert reflector.dropped == 10
    # It listened for stragglers until the deadline (wait=30 s is capped), and no longer.
    assert 0.9 <= result.duration_seconds <= 1.0 + 0.1 + worst_loop_stall()
    assert elapsed <= 1.0 + 0.5 + worst_loop_stall()


async def test_closed_port_is_refused_and_stops_early():
    # Linux answers a datagram to a closed loopback port with ICMP port unreachable,
    # which the connected socket reports as ECONNREFUSED: "refused", not "no_reply"
    # (that one is for a reflector that stays silent, or ICMP filtered on the path).
    result = await probe(
        "127.0.0.1", timeout=3.0, port=udp_port(), count=50, interval=Seconds(0.02)
    )
    assert not result.success and result.reason == "refused"
    assert 1 <= result.packets_sent < 50  # stopped sending once refused
    assert result.duration_seconds < 1.0
    assert any("port unreachable" in line for line in result.debug)


async def test_a_train_longer_than_the_timeout_is_cut_to_fit(worst_loop_stall):
    reflector = await start_reflector("127.0.0.1", 0)
    began = time.monotonic()
    result = await probe(
        "127.0.0.1", timeout=1.0, port=reflector.port, count=1000, interval=Seconds(0.01)
    )
    elapsed = time.monotonic() - began
    reflector.close()

    assert result.success
    stall = worst_loop_stall()
    assert elapsed <= 1.0 + 0.5 + stall and result.duration_seconds <= 1.0 + stall
    # 1000 packets 10 ms apart take 10 s: only what fits in ~0.95 s (less a listening
    # reserve) is sent, all of it is answered, and the debug output says so.
    assert 50 <= result.packets_sent < 100
    # A stall of the shared loop at the very end can leave the last answer unsent.
    assert result.packets_received >= result.packets_sent - (stall > 0.05)
    assert any("do not fit in the timeout" in line for line in result.debug)


async def test_packets_smaller_than_stamp_are_bad_settings():
    reflector = await start_reflector("127.0.0.1", 0)
    result = await probe("127.0.0.1", port=reflector.port, size=43)
    reflector.close()
    assert not result.success and result.reason == "bad_settings"
    assert result.packets_sent == 0 and reflector.received == 0
    assert any("44" in line for line in result.debug)


class MessyReflector(asyncio.DatagramProtocol):
    """Answers each packet with noise, a reply for a sequence never sent, and the right
    reply twice."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        request = SenderPacket.decode(data)

        def reply(sequence):
            return ReflectorPacket(sequence, 0, 0, 0, sequence, request.timestamp, 0, 64).encode()

        self.transport.sendto(b"\x00" * 10, addr)
        self.transport.sendto(reply(request.sequence + 100_000), addr)
        self.transport.sendto(reply(request.sequence), addr)
        self.transport.sendto(reply(request.sequence), addr)


async def test_stray_duplicate_and_short_replies_are_ignored():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(MessyReflector, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    result = await probe("127.0.0.1", port=port, count=5, interval=Seconds(0.01))
    transport.close()

    assert result.success
    assert (result.packets_sent, result.packets_received) == (5, 5)
    assert result.packet_loss_ratio == 0.0 and len(result.rtt_samples) == 5
    text = "\n".join(result.debug)
    assert "ignored a datagram: 10 octets" in text
    assert "which was not sent" in text
    assert "duplicate reply for sequence" in text
    assert "15 stray datagrams ignored in all" in text


class UdpEcho(asyncio.DatagramProtocol):
    """An echo service (not a STAMP reflector): sends every datagram back unchanged."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def test_our_own_packets_echoed_back_are_not_replies():
    # A Session-Sender packet read as a reflector packet has Session-Sender Sequence 0 and
    # Timestamp 0 (its MBZ octets): only an echoed timestamp that matches what was sent
    # for that sequence makes a reply, so neither an echo service nor a socket that
    # reads its own packets counts as a reflector.
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    result = await probe(
        "127.0.0.1", timeout=2.0, port=port, count=5, interval=Seconds(0.01), wait=Seconds(0.2)
    )
    transport.close()

    assert not result.success and result.reason == "no_reply"
    assert (result.packets_sent, result.packets_received) == (5, 0)
    assert result.rtt_seconds is None
    text = "\n".join(result.debug)
    assert text.count("does not echo the timestamp sent") == 5


def force_self_connect(monkeypatch, port: int) -> list[tuple]:
    """Make the first UDP socket that connects to 127.0.0.1:`port` bind that very address
    first, as the kernel may do when it picks the ephemeral port, so it talks to itself.
    Returns the list of (local, remote) pairs of the sockets it forced."""
    forced: list[tuple] = []
    original = socket.socket.connect

    def connect(sock, address):
        if sock.type == socket.SOCK_DGRAM and address == ("127.0.0.1", port) and not forced:
            sock.bind(address)
            forced.append((sock.getsockname(), address))
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return forced


async def test_a_socket_connected_to_itself_is_replaced(monkeypatch):
    # Nothing listens on the port: the only honest outcome is "refused" (or no reply),
    # never a success built from our own packets coming back to us.
    port = udp_port()
    forced = force_self_connect(monkeypatch, port)
    result = await probe(
        "127.0.0.1", timeout=2.0, port=port, count=20, interval=Seconds(0.005), wait=Seconds(0.2)
    )
    assert forced == [(("127.0.0.1", port), ("127.0.0.1", port))], "the test did not bite"
    assert not result.success, result.debug
    assert result.reason == "refused"
    assert result.packets_received == 0
    assert any("connected to itself" in line for line in result.debug)


class ThreadReflector(ThreadUdpPeer):
    """A STAMP reflector on its own thread; `before_answering()` runs before each answer."""

    def __init__(self, before_answering: Callable[[], None] | None = None) -> None:
        self.before_answering = before_answering
        self.reflected = 0
        super().__init__()

    def answer(self, data: bytes, peer: tuple) -> bytes | None:
        received = ntp_now()
        request = SenderPacket.decode(data)
        if self.before_answering:
            self.before_answering()
        reply = ReflectorPacket(
            request.sequence, ntp_now(), 0, received, request.sequence,
            request.timestamp, request.error_estimate, 64, request.padding,
        )  # fmt: skip
        self.reflected += 1
        return reply.encode(len(data))


async def test_a_busy_event_loop_does_not_inflate_the_round_trip():
    # The reply is read 0.5 s late; its kernel receive timestamp (SO_TIMESTAMPNS) still
    # says when it arrived, so the RTT is the network's, not the event loop's.
    hook, blocked = block_loop_once(asyncio.get_running_loop(), 0.5)
    reflector = ThreadReflector(hook)
    try:
        result = await probe(
            "127.0.0.1", timeout=3.0, port=reflector.port, count=5, interval=Seconds(0.01)
        )
    finally:
        reflector.close()
    print(
        f"loop blocked 0.5 s: STAMP RTT mean {result.rtt_seconds * 1e3:.3f} ms, "
        f"max {result.rtt_max_seconds * 1e3:.3f} ms"
    )
    assert blocked.is_set() and result.duration_seconds >= 0.5
    assert result.success and (result.packets_sent, result.packets_received) == (5, 5)
    # Half the block: an RTT that counted it would read >= 0.5 s.
    assert result.rtt_seconds < 0.25
    assert result.rtt_max_seconds < 0.25


def test_round_trip_uses_the_kernel_time_unless_the_wall_clock_was_stepped():
    sent = Instant(wall=1000.0, monotonic=50.0)
    # Read 0.5 s late by a busy loop; the kernel stamped it 2 ms after sending.
    assert Arrival(kernel_wall=1000.002, read_monotonic=50.5).since(sent) == pytest.approx(0.002)
    # No kernel timestamp: the time we read it is all there is.
    assert Arrival(kernel_wall=None, read_monotonic=50.5).since(sent) == pytest.approx(0.5)
    # The wall clock stepped back, or forward past when we read it: not to be trusted.
    assert Arrival(kernel_wall=999.0, read_monotonic=50.5).since(sent) == pytest.approx(0.5)
    assert Arrival(kernel_wall=1003.0, read_monotonic=50.5).since(sent) == pytest.approx(0.5)


def test_kernel_receive_time_is_read_from_the_ancillary_data():
    stamp = struct.pack("=qq", 1_700_000_000, 250_000_000)
    other = (socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", 64))
    assert kernel_receive_time([other, (socket.SOL_SOCKET, SO_TIMESTAMPNS, stamp)]) == (
        pytest.approx(1_700_000_000.25)
    )
    assert kernel_receive_time([other]) is None


def test_rfc3550_jitter_formula():
    # Transits 10, 20, 10 ms: |D| = 10, 10 -> J = 10/16, then J += (10 - J)/16.
    first = 0.010 / 16
    assert rfc3550_jitter([0.010, 0.020, 0.010]) == pytest.approx(first + (0.010 - first) / 16)
    assert rfc3550_jitter([0.05] * 10) == 0.0


def test_settings_defaults_are_voice_like():
    settings = StampSettings()
    assert (settings.port, settings.count, settings.size) == (862, 50, 160)
    assert isinstance(settings.interval, Seconds) and settings.interval == 0.02
    assert settings.wait == 1.0
    assert StampProber.kind == "stamp" and StampProber.Settings is StampSettings


# --- an ICMP error in the middle of a train -------------------------------------------------


class RestartingReflector:
    """A STAMP reflector on its own thread that closes its port after answering
    `answer_first` packets and opens it again as soon as the kernel has refused the next
    one (seen as the ICMP port unreachable it sends back), so that exactly one packet of
    the train is refused mid-way, as when a reflector restarts. Needs a raw ICMP socket to
    see that message (root or CAP_NET_RAW)."""

    def __init__(self, answer_first: int) -> None:
        try:
            self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except PermissionError:
            missing("a raw ICMP socket (root or CAP_NET_RAW) to see the port unreachable")
        self.icmp.settimeout(0.05)
        self.sock = self._bind(0)
        self.port = self.sock.getsockname()[1]
        self.answer_first = answer_first
        self.refused: list[int] = []  # sequence numbers the kernel refused
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.settimeout(0.05)
        return sock

    def _serve(self) -> None:
        self._reflect(until=lambda answered: answered >= self.answer_first)
        self.sock.close()
        while not self._stop.is_set() and not self.refused:
            self._watch_for_port_unreachable()
        self.sock = self._bind(self.port)
        self._reflect(until=lambda answered: False)

    def _reflect(self, until: Callable[[int], bool]) -> None:
        answered = 0
        while not self._stop.is_set() and not until(answered):
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            sent = SenderPacket.decode(data)
            now = ntp_now()
            reply = ReflectorPacket(
                sent.sequence, now, 0, now, sent.sequence, sent.timestamp, sent.error_estimate, 64
            )
            self.sock.sendto(reply.encode(len(data)), peer)
            answered += 1

    def _watch_for_port_unreachable(self) -> None:
        try:
            data = self.icmp.recv(65535)
        except TimeoutError:
            return
        start = (data[0] & 0x0F) * 4
        if data[start : start + 2] != bytes([3, 3]):  # not a port unreachable
            return
        quoted = data[start + 8 :]  # the IP header and start of the refused datagram
        udp = (quoted[0] & 0x0F) * 4
        if len(quoted) < udp + 12:
            return
        (port,) = struct.unpack_from("!H", quoted, udp + 2)
        if port == self.port:
            self.refused.append(struct.unpack_from("!I", quoted, udp + 8)[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        self.icmp.close()


async def test_a_train_with_replies_and_one_refused_packet_reports_its_figures():
    reflector = RestartingReflector(answer_first=2)
    try:
        done = await one_round(
            single_module_inventory(
                "stamp",
                f"{{port: {reflector.port}, count: 6, interval: 200ms, wait: 500ms}}",
                "3s",
                "127.0.0.1",
            )
        )
    finally:
        reflector.close()
    result = done.result
    assert reflector.refused == [2], "exactly packet 2 must have met the closed port"
    assert any("ICMP port unreachable" in line for line in result.debug), result.debug
    assert (result.success, result.reason) == (True, "")
    assert (result.packets_sent, result.packets_received) == (6, 5)
    assert result.packet_loss_ratio == pytest.approx(1 / 6)
    assert result.rtt_seconds is not None and 0 < result.rtt_seconds < 0.1
    assert result.jitter_seconds is not None
    # The quality figures (MOS, grade) come from this train, not from a fallback.
    quality = done.state.quality(done.state.inventory.endpoints[ENDPOINT])
    assert quality is not None and quality.source == "stamp"
    assert quality.figures.loss_ratio == pytest.approx(1 / 6)


async def test_a_train_refused_before_any_reply_stops_early_through_the_scheduler():
    done = await one_round(
        single_module_inventory(
            "stamp", f"{{port: {udp_port()}, count: 50, interval: 20ms}}", "3s", "127.0.0.1"
        )
    )
    result = done.result
    assert (result.success, result.reason) == (False, "refused")
    assert 1 <= result.packets_sent < 50
    assert result.duration_seconds < 1.0
    # Nothing was measured: the packet counters (loss over a window in PromQL and in the
    # report) must not count that train as sent and lost.
    assert done.state.endpoints[ENDPOINT].counters == {}
