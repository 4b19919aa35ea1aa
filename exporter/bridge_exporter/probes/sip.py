"""SIP OPTIONS ping (RFC 3261 section 11) over UDP, TCP or TLS.

Any final response, even 401/403/404, proves the endpoint's SIP stack is up, unless the
module narrows the accepted codes with `valid_status_codes`. Only responses whose top Via
branch, Call-ID and CSeq match the request count; anything else is logged and ignored.

Over UDP the request is retransmitted as RFC 3261 section 17.1.2.2 says for a non-INVITE
client transaction (timer E): first after T1, then at doubling intervals capped at T2
(`t1` 500 ms and `t2` 4 s by default). A provisional response (1xx) does not stop it: in
the Proceeding state the request goes on being retransmitted every T2 until a final
response arrives or the probe's timeout (timer F) ends the transaction.

Every SIP-over-UDP probe of the prober goes through one shared, unconnected UDP socket per
address family (see udp_shared.py): a reply counts for a transaction only if it comes from
the address and port the request went to and carries the transaction's Call-ID (then its
Via branch and CSeq are checked too). ICMP port unreachable reaches the transaction it is
about through the socket's error queue, as `refused`, as a connected socket would have.

The round-trip time runs from the first send to the final response. Over UDP the
response's arrival is the kernel's receive timestamp (SO_TIMESTAMPNS), so a busy event
loop that reads it late does not lengthen the figure; over TCP and TLS it is the time the
response was read. The probe's duration covers the whole probe: resolution, connection
and TLS handshake included.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import ipaddress
import logging
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..sipmsg import SipMessage, is_number, parse_message, stream_frame_length
from ..ticks import timers_of
from . import reasons
from .base import (
    DeadlineScope,
    ProbeFailed,
    Prober,
    ProbeResult,
    Seconds,
    Target,
    wants_debug_text,
)
from .netutil import (
    Arrival,
    Instant,
    ResolveError,
    classify_os_error,
    resolve,
    tls_context,
)
from .udp_shared import LocalAddresses, SharedUdpSocket

DEFAULT_T1 = Seconds(0.5)  # RFC 3261 T1, the round-trip time estimate
DEFAULT_T2 = Seconds(4.0)  # RFC 3261 T2, the longest interval between retransmissions
MIN_T1_SECONDS = 0.01
CLOSE_WAIT = 0.25  # seconds to wait for a TCP/TLS connection to close after the answer
MAX_STREAM_BUFFER = 65536  # a header section larger than this is not a SIP response
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
# The Call-ID line as build_request writes it: what finds the owner of a returned request.
_SENT_CALL_ID = re.compile(rb"\r\nCall-ID: ([0-9a-f]{32})\r\n")


class _RandomPool:
    """Unpredictable bytes, drawn from the kernel a few kilobytes at a time: each probe
    needs 32 (Via branch, Call-ID, From tag), and a getrandom() system call per probe
    was a measurable part of SIP's cost at thousands of probes a second."""

    _REFILL = 4096

    def __init__(self) -> None:
        self._bytes = b""
        self._used = 0
        os.register_at_fork(after_in_child=self.clear)  # a child must not repeat ours

    def take(self, count: int) -> bytes:
        start = self._used
        if start + count > len(self._bytes):
            self._bytes, start = os.urandom(max(self._REFILL, count)), 0
        self._used = start + count
        return self._bytes[start : start + count]

    def clear(self) -> None:
        self._bytes, self._used = b"", 0


_RANDOMNESS = _RandomPool()


@dataclass
class SipSettings:
    transport: str = "udp"  # "udp", "tcp" or "tls"
    port: int = 0  # 0: 5060, or 5061 for tls
    user: str = ""  # user part of the Request-URI; empty pings the device itself
    from_user: str = "bridge-exporter"
    t1: Seconds = DEFAULT_T1  # first UDP retransmission interval (RFC 3261 T1)
    t2: Seconds = DEFAULT_T2  # longest UDP retransmission interval, and the one after a 1xx
    valid_status_codes: list[int] = field(default_factory=list)  # empty: any final code
    tls_server_name: str | None = None  # default: the endpoint's address
    tls_insecure_skip_verify: bool = False
    tls_ca_file: str | None = None  # default: the system trust store

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it)."""
        found = []
        if self.transport not in DEFAULT_PORTS:
            found.append(f'transport must be "udp", "tcp" or "tls", not {self.transport!r}')
        if not 0 <= self.port <= 65535:
            found.append(f"port must be 1-65535 (or 0 for the default), not {self.port}")
        if self.t1 < MIN_T1_SECONDS:
            found.append(f"t1 must be at least {MIN_T1_SECONDS * 1000:g}ms")
        if self.t2 < self.t1:
            found.append("t2 (the longest retransmission interval) must be at least t1")
        if any(not 100 <= code <= 699 for code in self.valid_status_codes):
            found.append("valid_status_codes must be SIP codes from 100 to 699")
        return found


class _Exchange:
    """One OPTIONS transaction: the request's identifiers, what came back, the debug log."""

    def __init__(
        self,
        target: Target,
        settings: SipSettings,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.loop = loop
        self.started_at = self.loop.time()
        self.first_sent: Instant | None = None
        self.target = target
        self.settings = settings
        self.log = log
        self.debug: list[str] = []
        self.verbose = wants_debug_text(log)  # the messages themselves, line by line
        randomness = _RANDOMNESS.take(32).hex()
        self.branch = "z9hG4bK" + randomness[:20]
        self.call_id = randomness[20:52]
        self.from_tag = randomness[52:]
        self.provisional_code: int | None = None
        self.final_code: int | None = None
        self.final_rtt: float | None = None  # seconds from the first send
        self.invalid_count = 0
        self.unmatched_count = 0

    def note(self, line: str) -> None:
        self.debug.append(line)
        self.log.debug("sip %s: %s", self.target.endpoint_id, line)

    def note_message(self, prefix: str, data: bytes) -> None:
        if not self.verbose:
            return
        text = data.decode("utf-8", errors="replace").rstrip("\r\n")
        for line in text.split("\n"):
            self.note(f"{prefix} {line.rstrip(chr(13))}")

    def build_request(
        self, transport: str, uri_host: str, port: int, local: tuple[str, int]
    ) -> bytes:
        settings = self.settings
        template = _request_template(
            transport, uri_host, port, local[0], settings.user, settings.from_user
        )
        slots = {"local_port": local[1], "branch": self.branch, "tag": self.from_tag,
                 "call_id": self.call_id}  # fmt: skip
        return (template % slots).encode()

    def mark_sending(self, data: bytes, attempt: int, destination: str) -> None:
        """Call just before the request goes out: the first call starts the clock."""
        if self.first_sent is None:
            self.first_sent = Instant.now()
            if self.verbose:
                self.note(f"sent OPTIONS to {destination}:")
                self.note_message(">", data)
        else:
            self.note(f"retransmitted OPTIONS (#{attempt}) {self.elapsed():.3f}s after the first")

    def elapsed(self, arrival: Arrival | None = None) -> float:
        """Seconds since the first send (or the start) until `arrival`, or until now."""
        if self.first_sent is None:
            return self.loop.time() - self.started_at
        if arrival is None:
            return time.monotonic() - self.first_sent.monotonic
        return arrival.since(self.first_sent)

    def consider(self, data: bytes, arrival: Arrival | None = None) -> bool:
        """Take one received message (that arrived at `arrival`, if known; else now);
        True once a matching final response has arrived."""
        return self.consider_parsed(data, parse_message(data), arrival)

    def consider_parsed(
        self, data: bytes, message: SipMessage | None, arrival: Arrival | None = None
    ) -> bool:
        """consider() of a message already parsed (None: not a SIP message)."""
        elapsed = self.elapsed(arrival)
        if message is None or not message.is_response or not _has_transaction_headers(message):
            self.invalid_count += 1
            preview = data[:200].decode("utf-8", errors="backslashreplace")
            self.note(
                f"ignored {len(data)} bytes after {elapsed:.3f}s that are not a SIP "
                f"response: {preview!r}"
            )
            return False
        if self.verbose:
            self.note(f"received after {elapsed:.3f}s:")
            self.note_message("<", data)
        mismatch = self._mismatch(message)
        if mismatch:
            self.unmatched_count += 1
            self.note(f"ignored: not the answer to our request ({mismatch})")
            return False
        code = message.status_code
        assert code is not None
        if code < 200:
            self.provisional_code = code
            return False
        self.final_code = code
        self.final_rtt = elapsed
        return True

    def _mismatch(self, message: SipMessage) -> str:
        if message.via_branch() != self.branch:
            return f"Via branch {message.via_branch()!r}"
        if message.header("call-id") != self.call_id:
            return f"Call-ID {message.header('call-id')!r}"
        if message.cseq() != (1, "OPTIONS"):
            return f"CSeq {message.header('cseq')!r}"
        return ""

    def duration(self) -> float:
        """Seconds since the probe started: resolution, connection and TLS included."""
        return self.loop.time() - self.started_at

    def result(self) -> ProbeResult:
        """The result after the final response."""
        code = self.final_code
        rtt = self.final_rtt
        assert code is not None and rtt is not None
        valid = self.settings.valid_status_codes
        success = not valid or code in valid
        reason = "" if success else reasons.status(code)
        if self.verbose or not success:
            self.note(f"final response {code} after {rtt:.3f}s: {reason or 'success'}")
        return ProbeResult(
            success=success,
            duration_seconds=self.duration(),
            reason=reason,
            rtt_seconds=rtt,
            status_code=code,
            debug=self.debug,
        )

    def failure(self, reason: str) -> ProbeResult:
        self.note(f"failed after {self.elapsed():.3f}s: {reason}")
        return ProbeResult(
            success=False,
            duration_seconds=self.duration(),
            reason=reason,
            status_code=self.provisional_code,
            debug=self.debug,
        )

    def timeout_reason(self) -> str:
        if self.provisional_code is not None:
            return reasons.TIMEOUT_AFTER_PROVISIONAL
        if self.invalid_count:
            return reasons.INVALID_RESPONSE
        return reasons.TIMEOUT


class SipProber(Prober):
    kind = "sip"
    Settings = SipSettings

    def __init__(self) -> None:
        self._udp = _SharedUdp()

    async def close(self) -> None:
        self._udp.close()

    def udp_ports(self) -> dict[str, int]:
        """The shared UDP sockets' local ports by family ("ipv4", "ipv6"), once opened."""
        return self._udp.ports()

    async def probe_until(
        self, target: Target, settings: Any, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        exchange = _Exchange(target, settings, log, self.running_loop())
        transport = str(settings.transport).lower()
        if transport not in DEFAULT_PORTS:
            exchange.note(f"unknown transport {settings.transport!r}: use udp, tcp or tls")
            return exchange.failure(reasons.BAD_SETTINGS)
        try:
            async with DeadlineScope(exchange.loop, deadline):
                host, port = _split_address(target.address, settings.port, transport)
                if transport == "udp":
                    await self._exchange_udp(exchange, host, port, deadline)
                else:
                    await self._exchange_stream(exchange, host, port, transport, deadline)
            return exchange.result()
        except TimeoutError:
            return exchange.failure(exchange.timeout_reason())
        except ProbeFailed as failure:
            exchange.note(str(failure))
            return exchange.failure(failure.reason)
        except OSError as exc:  # ssl.SSLError is one: tls_error
            reason = classify_os_error(exc)
            exchange.note(f"{reason}: {type(exc).__name__}: {exc}")
            return exchange.failure(reason)

    async def _exchange_udp(
        self, exchange: _Exchange, host: str, port: int, deadline: float
    ) -> None:
        loop = exchange.loop
        family, address = await _resolve(exchange, host, port)
        shared = self._udp
        udp = shared.socket_for(family, loop)
        local = (shared.local_addresses.for_destination(family, address), udp.port)
        inbox = _Inbox(loop)
        waiting = _Waiting(exchange.call_id, (address[0], address[1]), local, inbox, udp)
        shared.register(waiting)
        try:
            if not udp.kernel_timestamps:
                exchange.note("no kernel receive timestamps: the RTT includes event-loop delays")
            request = exchange.build_request("udp", _uri_host(host), port, local)
            destination = f"{_uri_host(address[0])}:{port} over UDP"
            t2 = max(float(exchange.settings.t2), float(exchange.settings.t1))
            interval = min(max(float(exchange.settings.t1), MIN_T1_SECONDS), t2)
            attempt = 1
            exchange.mark_sending(request, attempt, destination)
            udp.send_to(request, address)
            next_send = loop.time() + interval
            while True:
                if loop.time() >= deadline:
                    raise TimeoutError
                item = await inbox.next_item(min(deadline, next_send) - loop.time())
                if item is None:
                    if loop.time() >= next_send:
                        attempt += 1
                        exchange.mark_sending(request, attempt, destination)
                        udp.send_to(request, address)
                        # Timer E: doubling while Trying; T2 once Proceeding (after a 1xx).
                        proceeding = exchange.provisional_code is not None
                        interval = t2 if proceeding else min(interval * 2, t2)
                        next_send = loop.time() + interval
                    continue
                if isinstance(item, Exception):
                    raise item
                if exchange.consider_parsed(*item):
                    return
        finally:
            shared.unregister(waiting)

    async def _exchange_stream(
        self, exchange: _Exchange, host: str, port: int, transport: str, deadline: float
    ) -> None:
        settings = exchange.settings
        family, address = await _resolve(exchange, host, port)
        tls_context = None
        server_name = None
        if transport == "tls":
            tls_context = self._tls_context(settings)
            server_name = settings.tls_server_name or host
        reader, writer = await asyncio.open_connection(
            address[0], port, family=family, ssl=tls_context, server_hostname=server_name
        )
        try:
            exchange.note(f"connected to {_uri_host(address[0])}:{port} over {transport.upper()}")
            request = exchange.build_request(
                transport, _uri_host(host), port, writer.get_extra_info("sockname")
            )
            exchange.mark_sending(request, 1, f"{_uri_host(address[0])}:{port}")
            writer.write(request)
            await writer.drain()
            await _read_stream(exchange, reader)
        finally:
            writer.close()
            try:  # a TLS peer may never answer close_notify: wait only briefly
                async with asyncio.timeout_at(min(deadline, exchange.loop.time() + CLOSE_WAIT)):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass

    def _tls_context(self, settings: SipSettings) -> ssl.SSLContext:
        try:
            return tls_context(bool(settings.tls_insecure_skip_verify), settings.tls_ca_file)
        except OSError as exc:  # ssl.SSLError is one
            raise ProbeFailed(reasons.BAD_SETTINGS, f"cannot load tls_ca_file: {exc}") from exc


_Datagram = tuple[bytes, SipMessage | None, Arrival]  # as received, parsed, when it arrived


class _Inbox:
    """Queues received datagrams (parsed, with their arrival) and socket errors (ICMP
    unreachable arrives as one) for the transaction to take in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[_Datagram | OSError] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def _put(self, item: _Datagram | OSError) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def put_datagram(self, data: bytes, message: SipMessage | None, arrival: Arrival) -> None:
        self._put((data, message, arrival))

    def put_error(self, exc: OSError) -> None:
        self._put(exc)

    async def next_item(self, wait: float) -> _Datagram | OSError | None:
        """The next datagram or error, or None if nothing came within `wait` seconds.
        (A future and a timer: an asyncio.Queue and asyncio.timeout cost three
        get_running_loop() lookups, each a getpid() system call on 3.11.)"""
        if not self._items:
            if wait <= 0:
                return None
            waiter = self._waiter = self._loop.create_future()
            # A coarse timer (ticks.py): retransmissions may go up to a tick late.
            handle = timers_of(self._loop).call_at(self._loop.time() + wait, _wake, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None
            if not self._items:
                return None
        return self._items.popleft()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Waiting:
    """One UDP transaction waiting on a shared socket: whose answers are whose."""

    __slots__ = ("call_id", "inbox", "local", "peer", "udp")

    def __init__(
        self,
        call_id: str,
        peer: tuple[str, int],
        local: tuple[str, int],
        inbox: _Inbox,
        udp: SharedUdpSocket,
    ) -> None:
        self.call_id = call_id
        self.peer = peer  # where the request goes; answers must come from there
        self.local = local  # where it comes from: our own request, if it comes back
        self.inbox = inbox
        self.udp = udp


class _SharedUdp:
    """The prober's shared UDP sockets (one per address family, opened on first use) and
    the transactions waiting on them. Each datagram goes to the transaction whose Call-ID
    it carries if it comes from that transaction's peer; one whose Call-ID is nobody's goes
    to every transaction with that peer (which each log it as not theirs, as a connected
    socket's transaction did); anything else is dropped, counted in `strays`."""

    def __init__(self) -> None:
        self._sockets: dict[int, SharedUdpSocket] = {}
        self._by_call_id: dict[str, _Waiting] = {}
        self._by_peer: dict[tuple[str, int], dict[str, _Waiting]] = {}
        self.local_addresses = LocalAddresses()
        self.strays = 0

    def socket_for(self, family: int, loop: asyncio.AbstractEventLoop) -> SharedUdpSocket:
        """The open shared socket of `family` on `loop`: opened now if there is none yet,
        the last one broke, or it belongs to another (a test's earlier) event loop.
        Raises the OSError of socket() or bind() (EMFILE: local_resource_exhausted)."""
        udp = self._sockets.get(family)
        if udp is not None and not udp.closed and udp.loop is loop:
            return udp
        if udp is not None:
            udp.close()
        udp = SharedUdpSocket(family, loop, self._on_datagram, self._on_error, self._on_broken)
        self._sockets[family] = udp
        return udp

    def ports(self) -> dict[str, int]:
        names = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
        return {names[f]: udp.port for f, udp in self._sockets.items() if not udp.closed}

    def register(self, waiting: _Waiting) -> None:
        self._by_call_id[waiting.call_id] = waiting
        self._by_peer.setdefault(waiting.peer, {})[waiting.call_id] = waiting

    def unregister(self, waiting: _Waiting) -> None:
        if self._by_call_id.get(waiting.call_id) is waiting:
            del self._by_call_id[waiting.call_id]
        same_peer = self._by_peer.get(waiting.peer)
        if same_peer is not None and same_peer.get(waiting.call_id) is waiting:
            del same_peer[waiting.call_id]
            if not same_peer:
                del self._by_peer[waiting.peer]

    def _on_datagram(self, data: bytes, arrival: Arrival, source: tuple[Any, ...]) -> None:
        peer = (source[0], source[1])
        message = parse_message(data)
        call_id = message.header("call-id") if message is not None else None
        waiting = self._by_call_id.get(call_id) if call_id else None
        if waiting is not None:
            assert message is not None
            if not message.is_response and peer == waiting.local:
                waiting.inbox.put_error(
                    OSError(
                        errno.ECONNREFUSED,
                        "our own OPTIONS came back: the destination is this exporter's own "
                        "SIP socket, and nothing else listens there",
                    )
                )
            elif peer == waiting.peer:
                waiting.inbox.put_datagram(data, message, arrival)
            else:
                self.strays += 1  # another source (or a late answer) must not count
            return
        same_peer = self._by_peer.get(peer)
        if not same_peer:
            self.strays += 1
            return
        for each in list(same_peer.values()):
            each.inbox.put_datagram(data, message, arrival)

    def _on_error(self, sent: bytes, destination: tuple[Any, ...], exc: OSError) -> None:
        """An ICMP error about a request we sent to `destination` (`sent` is its start)."""
        peer = (destination[0], destination[1])
        found = _SENT_CALL_ID.search(sent)
        if found is not None:
            waiting = self._by_call_id.get(found.group(1).decode("ascii"))
            if waiting is not None and waiting.peer == peer:
                waiting.inbox.put_error(exc)
            return
        # Cut before its Call-ID: the error is about the destination, so for all waiting on it.
        for each in list(self._by_peer.get(peer, {}).values()):
            each.inbox.put_error(exc)

    def _on_broken(self, exc: OSError) -> None:
        """A shared socket failed for good: its transactions fail with its error; the next
        probe opens a new one."""
        for waiting in list(self._by_call_id.values()):
            if waiting.udp.closed:
                waiting.inbox.put_error(exc)

    def close(self) -> None:
        for udp in self._sockets.values():
            udp.close()
        self._sockets.clear()
        closed = OSError(errno.ECANCELED, "the SIP prober was closed (the exporter is stopping)")
        for waiting in list(self._by_call_id.values()):
            waiting.inbox.put_error(closed)
        self.local_addresses.clear()


async def _read_stream(exchange: _Exchange, reader: asyncio.StreamReader) -> None:
    """Read framed messages (Content-Length) until a matching final response."""
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            if buffer.strip() and exchange.consider(buffer):
                return
            if exchange.invalid_count and exchange.provisional_code is None:
                raise ProbeFailed(reasons.INVALID_RESPONSE, "connection closed by the peer")
            raise ProbeFailed(reasons.CONNECTION_CLOSED, "connection closed by the peer")
        buffer += chunk
        while buffer:
            buffer = _drop_leading_garbage(exchange, buffer)
            length = stream_frame_length(buffer)
            if length is None:
                if len(buffer) > MAX_STREAM_BUFFER:
                    exchange.consider(buffer)
                    buffer = b""
                break
            frame, buffer = buffer[:length], buffer[length:]
            if exchange.consider(frame):
                return


def _drop_leading_garbage(exchange: _Exchange, buffer: bytes) -> bytes:
    """A stream has no datagram edges: skip bytes up to the next `SIP/2.0 ` start line."""
    start = buffer.lstrip(b"\r\n")
    if len(start) < 8 or start[:8].upper() == b"SIP/2.0 ":
        return buffer
    found = start.upper().find(b"\nSIP/2.0 ")
    if found >= 0:
        exchange.consider(start[: found + 1])
        return start[found + 1 :]
    # Keep a tail that may be the beginning of a start line split across reads.
    exchange.consider(start[:-7])
    return start[-7:]


def _has_transaction_headers(message: SipMessage) -> bool:
    return all(message.header(name) for name in ("via", "call-id", "cseq", "from", "to"))


def _split_address(address: str, port: int, transport: str) -> tuple[str, int]:
    """Host and port from an endpoint address: `host`, `192.0.2.1`, `::1`, `[::1]`,
    optionally with `:port` (IPv6 then in brackets) overriding the module's port."""
    default_port = port or DEFAULT_PORTS[transport]
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        if not rest:
            return host, default_port
        if not rest.startswith(":") or not is_number(rest[1:]):
            raise ProbeFailed(reasons.RESOLVE_FAILED, f"bad port in address {address!r}")
        return host, int(rest[1:])
    if address.count(":") == 1:
        host, _, port_text = address.partition(":")
        if not is_number(port_text):
            raise ProbeFailed(reasons.RESOLVE_FAILED, f"bad port in address {address!r}")
        return host, int(port_text)
    return address, default_port


async def _resolve(exchange: _Exchange, host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    # netutil.resolve keeps IP literals off the resolver's thread pool, which slow DNS
    # for host-named endpoints could otherwise hold up.
    try:
        family, address = await resolve(host, port)
    except ResolveError as exc:
        raise ProbeFailed(reasons.RESOLVE_FAILED, str(exc)) from exc
    if address[0] != host:
        exchange.note(f"resolved {host} to {address[0]}")
    return family, address


@functools.lru_cache(maxsize=65536)  # one per endpoint (and local address)
def _request_template(
    transport: str, uri_host: str, port: int, local_address: str, user: str, from_user: str
) -> str:
    """The OPTIONS request with %(name)s slots for what changes from probe to probe: the
    local port (a stream's is new each time), the Via branch, the From tag, the Call-ID."""
    # What the inventory or a scoped IPv6 address (fe80::1%eth0) brings may hold a "%".
    local_host = _uri_host(local_address).replace("%", "%%")
    user_part = f"{user}@".replace("%", "%%") if user else ""
    sender = from_user.replace("%", "%%")
    uri_params = "" if transport == "udp" else f";transport={transport}"
    request_uri = f"sip:{user_part}{uri_host.replace('%', '%%')}:{port}{uri_params}"
    contact = f"{sender}@{local_host}:%(local_port)s{uri_params}"
    lines = [
        f"OPTIONS {request_uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {local_host}:%(local_port)s;branch=%(branch)s;rport",
        "Max-Forwards: 70",
        f"From: <sip:{sender}@{local_host}>;tag=%(tag)s",
        f"To: <{request_uri}>",
        "Call-ID: %(call_id)s",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:{contact}>",
        "Accept: application/sdp",
        f"User-Agent: bridge-exporter/{__version__}",
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


@functools.lru_cache(maxsize=65536)  # three per probe, and ipaddress parsing is slow
def _uri_host(host: str) -> str:
    """An address as written in a SIP URI or Via: IPv6 in brackets, zone index dropped."""
    host = host.split("%", 1)[0]
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]" if is_v6 else host
