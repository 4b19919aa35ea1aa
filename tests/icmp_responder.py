"""A user-space ICMP echo responder with a known delay and loss, for fidelity tests.

    python tests/icmp_responder.py --delay 0.05 --loss 0.2 --seed 7

Run it inside a test network namespace whose kernel ignores echo requests
(net.ipv4.icmp_echo_ignore_all=1), so that every reply comes from here. Each request is
dropped with probability --loss, decided by a random generator seeded with --seed in
arrival order (the same seed drops the same request positions, run after run); the others
are answered --delay seconds later. Replies are scheduled on an event loop, never slept
on, so requests keep flowing while earlier replies wait.

Prints "ready" once listening; on SIGTERM or SIGINT prints one JSON line
{"received": ..., "dropped": ..., "answered": ..., "late_mean_seconds": ...} and exits.
late_mean_seconds is how much later than planned, on average, the replies left (a busy
host runs this process's timers late): tests add it to their RTT bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0
SOL_RAW, ICMP_FILTER = 255, 1


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF or (0xFFFF if number else 0)
    return ~total & 0xFFFF


def echo_reply(request: bytes) -> bytes:
    reply = bytearray(request)
    reply[0], reply[1], reply[2:4] = ECHO_REPLY, 0, b"\0\0"
    reply[2:4] = struct.pack("!H", checksum(bytes(reply)))
    return bytes(reply)


class Responder:
    def __init__(self, delay: float, loss: float, seed: int) -> None:
        self.delay = delay
        self.loss = loss
        self.decide = random.Random(seed)
        self.counts = {"received": 0, "dropped": 0, "answered": 0}
        self.late_seconds = 0.0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        blocked = ~(1 << ECHO_REQUEST) & 0xFFFFFFFF  # let the kernel pass requests only
        self.sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", blocked))

    def on_readable(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet, (source, _port) = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            icmp = packet[(packet[0] & 0x0F) * 4 :]  # skip the IPv4 header
            if len(icmp) < 8 or icmp[0] != ECHO_REQUEST:
                continue
            self.counts["received"] += 1
            if self.decide.random() < self.loss:
                self.counts["dropped"] += 1
                continue
            due = time.monotonic() + self.delay
            loop.call_later(self.delay, self.send, echo_reply(icmp), source, due)

    def send(self, reply: bytes, destination: str, due: float) -> None:
        try:
            self.sock.sendto(reply, (destination, 0))
            self.late_seconds += max(0.0, time.monotonic() - due)
            self.counts["answered"] += 1
        except OSError as exc:
            print(f"send to {destination} failed: {exc}", file=sys.stderr, flush=True)


async def serve(responder: Responder) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
    loop.add_reader(responder.sock.fileno(), responder.on_readable)
    print("ready", flush=True)
    await stop
    answered = responder.counts["answered"]
    late_mean = responder.late_seconds / answered if answered else 0.0
    print(json.dumps({**responder.counts, "late_mean_seconds": late_mean}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to each reply")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of requests dropped")
    parser.add_argument("--seed", type=int, default=1, help="seed of the drop decisions")
    args = parser.parse_args()
    asyncio.run(serve(Responder(args.delay, args.loss, args.seed)))


if __name__ == "__main__":
    main()
