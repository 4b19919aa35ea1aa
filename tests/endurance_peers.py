"""Peers for the endurance runs (benchmarks/endurance.py), run inside the run's namespace.

One TCP listener on 0.0.0.0:PORT answers a SIP OPTIONS over TCP with 200 OK for every
local address, except the addresses listed in the hung file: those are accepted and then
left in silence (the probe must time out). SIGHUP re-reads the file; connections held for
an address no longer listed are closed. ICMP is answered by the namespace's kernel.

    python tests/endurance_peers.py PORT HUNG_FILE
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import sys
from pathlib import Path

KEPT_HEADERS = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")


def sip_ok(request: bytes) -> bytes:
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    kept = [line for line in head[1:] if line.lower().startswith(KEPT_HEADERS)]
    return b"\r\n".join([b"SIP/2.0 200 OK", *kept, b"Content-Length: 0", b"", b""])


class Peers:
    def __init__(self, hung_file: Path) -> None:
        self.hung_file = hung_file
        self.hung: set[str] = set()
        self.held: dict[asyncio.StreamWriter, str] = {}
        self.reload()

    def reload(self) -> None:
        self.hung = set(self.hung_file.read_text().split()) if self.hung_file.exists() else set()
        for writer, address in list(self.held.items()):
            if address not in self.hung:
                writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("sockname")[0]
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if address in self.hung:
                self.held[writer] = address
                try:
                    while await reader.read(4096):
                        pass
                finally:
                    self.held.pop(writer, None)
            else:
                writer.write(sip_ok(await reader.readuntil(b"\r\n\r\n")))
                await writer.drain()
        writer.close()


async def main(port: int, hung_file: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    peers = Peers(hung_file)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, peers.reload)
    server = await asyncio.start_server(peers.serve, "0.0.0.0", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
