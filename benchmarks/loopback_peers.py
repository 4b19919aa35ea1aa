"""Lean loopback peers for the engine benchmark: every 127.x address answers SIP OPTIONS
over UDP and accepts TCP connections, from two sockets in all.

`bridge-exporter simulate` opens sockets per endpoint (three each) and cannot serve 10,000
endpoints under this machine's 20,000 descriptor limit. Here one UDP socket bound to
0.0.0.0 answers for every loopback address, replying from the address the request was
sent to (IP_PKTINFO), as the probe's connected socket requires; one TCP listener on
0.0.0.0 accepts and closes. ICMP on loopback is answered by the kernel.

    .venv/bin/python benchmarks/loopback_peers.py --sip-port 25060 --tcp-port 21720
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import struct

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
HEADERS = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:", b"cseq:")


def sip_answer(request: bytes) -> bytes | None:
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head or not head[0].startswith(b"OPTIONS "):
        return None
    kept = [line for line in head[1:] if line.lower().startswith(HEADERS)]
    lines = [b"SIP/2.0 200 OK", *kept, b"Content-Length: 0", b"", b""]
    return b"\r\n".join(lines)


def serve(sip_port: int, tcp_port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    udp.bind(("0.0.0.0", sip_port))
    udp.setblocking(False)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", tcp_port))
    tcp.listen(4096)
    tcp.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(udp, selectors.EVENT_READ, "udp")
    selector.register(tcp, selectors.EVENT_READ, "tcp")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "udp":
                for _ in range(256):
                    try:
                        data, ancillary, _flags, source = udp.recvmsg(65535, 64)
                    except BlockingIOError:
                        break
                    answer = sip_answer(data)
                    if answer is None:
                        continue
                    for level, kind, value in ancillary:
                        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                            # struct in_pktinfo { int ifindex; in_addr spec_dst, addr; }
                            _index, _spec, local = struct.unpack("=I4s4s", value[:12])
                            info = struct.pack("=I4s4s", 0, local, b"\0\0\0\0")
                            udp.sendmsg(
                                [answer], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, source
                            )
                            break
            else:
                for _ in range(256):
                    try:
                        conn, _ = tcp.accept()
                    except BlockingIOError:
                        break
                    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sip-port", type=int, default=25060)
    parser.add_argument("--tcp-port", type=int, default=21720)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.sip_port, args.tcp_port)


if __name__ == "__main__":
    main()
