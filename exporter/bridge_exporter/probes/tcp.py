"""TCP connect probe, optionally followed by a TLS handshake.

Reports the handshake's round trip as the kernel measured it (a TCP handshake is one
round trip) and the time the connect took, and with TLS the handshake time and the leaf
certificate's expiry.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import socket
import ssl
import time
from dataclasses import dataclass

from . import reasons
from .base import ProbeFailed, Prober, ProbeResult, Target, debug_note, guarded, wants_debug_text
from .connects import connects_of, handshake_rtt
from .netutil import ResolveError, classify_os_error, resolve, strip_brackets, tls_context

# A failed TLS connection should not linger half-closed for asyncio's default 30 s.
_TLS_SHUTDOWN_SECONDS = 2.0


@dataclass
class TcpSettings:
    port: int = 0  # 0 means "not set": a tcp module must name its port
    tls: bool = False
    tls_server_name: str | None = None  # SNI and the name checked; default: the address
    tls_insecure_skip_verify: bool = False
    tls_ca_file: str | None = None  # PEM bundle to trust instead of the system store

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words (the config loader reports it)."""
        if not 0 < self.port < 65536:
            return [f"port must be set to 1-65535 (got {self.port}), e.g. port: 443"]
        return []


class TcpProber(Prober):
    kind = "tcp"
    Settings = TcpSettings

    async def probe_until(
        self, target: Target, settings: TcpSettings, deadline: float, log: logging.Logger
    ) -> ProbeResult:
        result = ProbeResult(success=False)
        note = debug_note(result, log, self.kind, target.endpoint_id)
        loop = self.running_loop()
        verbose = wants_debug_text(log)
        return await guarded(
            lambda: self._run(target, settings, result, note, loop, verbose),
            result,
            note,
            deadline,
            "no answer",
            # Any other socket error (e.g. EMFILE from socket() or the resolver).
            expected=(OSError,),
            reason_for=classify_os_error,
            loop=loop,
        )

    async def _run(
        self,
        target: Target,
        settings: TcpSettings,
        result: ProbeResult,
        note,
        loop: asyncio.AbstractEventLoop,
        verbose: bool,
    ) -> None:
        """Connect (and with TLS shake hands). `verbose` notes the steps that went well
        too; failures are always noted."""
        port = settings.port
        if not 0 < port < 65536:
            raise ProbeFailed(reasons.BAD_SETTINGS, f"port must be 1..65535, got {port}")
        context = self._tls_context(settings) if settings.tls else None
        try:
            family, sockaddr = await resolve(target.address, port)
        except ResolveError as exc:
            raise ProbeFailed(reasons.RESOLVE_FAILED, str(exc)) from exc
        if verbose:
            note(f"connecting to {sockaddr[0]} port {port}")

        # Non-blocking from birth: one system call fewer than setblocking(False).
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        transport: asyncio.BaseTransport | None = None
        try:
            connect_started = time.perf_counter()
            try:
                await connects_of(loop).connect(sock, sockaddr)
            except OSError as exc:
                raise ProbeFailed(classify_os_error(exc), f"connect: {exc}") from exc
            connect_seconds = time.perf_counter() - connect_started
            rtt = handshake_rtt(sock)
            result.rtt_seconds = connect_seconds if rtt is None else rtt
            result.values["tcp_connect_seconds"] = connect_seconds
            if verbose:
                note(
                    f"connected in {connect_seconds * 1000:.3f} ms"
                    f" (handshake round trip {result.rtt_seconds * 1000:.3f} ms)"
                )
            if context is None:
                return

            server_name = settings.tls_server_name or strip_brackets(target.address)
            handshake_started = time.perf_counter()
            try:
                transport, _ = await loop.create_connection(
                    asyncio.Protocol,
                    sock=sock,
                    ssl=context,
                    server_hostname=server_name,
                    ssl_shutdown_timeout=_TLS_SHUTDOWN_SECONDS,
                )
            except TimeoutError:
                raise
            except (OSError, ssl.SSLError, ValueError) as exc:
                # Whatever breaks once TCP is up (alert, reset, bad name) is a TLS failure.
                raise ProbeFailed(
                    reasons.TLS_ERROR, f"TLS handshake with {server_name!r}: {exc}"
                ) from exc
            handshake_seconds = time.perf_counter() - handshake_started
            result.values["tls_handshake_seconds"] = handshake_seconds
            ssl_object = transport.get_extra_info("ssl_object")
            note(
                f"TLS handshake in {handshake_seconds * 1000:.3f} ms"
                f" ({ssl_object.version()}, {ssl_object.cipher()[0]})"
            )
            not_after = cert_not_after(ssl_object.getpeercert(binary_form=True) or b"")
            if not_after is not None:
                result.values["tls_cert_not_after_timestamp_seconds"] = not_after
                note(f"certificate valid until {utc_text(not_after)}")
        finally:
            if transport is not None:
                transport.close()
            else:
                sock.close()

    def _tls_context(self, settings: TcpSettings) -> ssl.SSLContext:
        ca_file = settings.tls_ca_file
        try:
            return tls_context(settings.tls_insecure_skip_verify, ca_file)
        except OSError as exc:  # ssl.SSLError is one
            raise ProbeFailed(
                reasons.BAD_SETTINGS, f"tls_ca_file {ca_file!r}: {exc.strerror or exc}"
            ) from exc


def utc_text(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def cert_not_after(der: bytes) -> float | None:
    """The notAfter time (Unix seconds) of a DER X.509 certificate, or None if unreadable.

    The peer's certificate is available as DER even when it was not verified, and the
    standard library parses it into fields only after verification, hence this walk:
    Certificate > tbsCertificate > [version] serial signature issuer validity > notAfter.
    """
    try:
        _, tbs_start, _ = _der_item(der, _der_item(der, 0)[1])
        pos = tbs_start
        tag, _, end = _der_item(der, pos)
        if tag == 0xA0:  # explicit version
            pos = end
        for _ in range(3):  # serial number, signature algorithm, issuer
            pos = _der_item(der, pos)[2]
        _, validity_start, _ = _der_item(der, pos)
        not_before_end = _der_item(der, validity_start)[2]
        tag, start, end = _der_item(der, not_before_end)
        text = der[start:end].decode("ascii").rstrip("Z")
        if tag == 0x17:  # UTCTime, YYMMDDHHMMSS: years 50..99 are 19xx (RFC 5280)
            year = int(text[:2])
            text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
        elif tag != 0x18:  # GeneralizedTime, YYYYMMDDHHMMSS
            return None
        parsed = time.strptime(text[:14], "%Y%m%d%H%M%S")
        return float(calendar.timegm(parsed))
    except (IndexError, ValueError):
        return None
