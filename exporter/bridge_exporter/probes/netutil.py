"""Helpers shared by the probers: resolving, error classification, URL brackets, TLS.

Endpoint addresses in an inventory are IPv4 or IPv6 literals (optionally with an IPv6
zone, `fe80::1%eth0`, or in brackets) or host names. Literals never touch the resolver.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import ssl

FAMILY_PREFERENCES = ("auto", "ip4", "ip6")


class ResolveError(Exception):
    """The address could not be turned into a socket address (reason `resolve_failed`)."""


def strip_brackets(address: str) -> str:
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        return address[1:-1]
    return address


def bracket(address: str) -> str:
    """The address as the host part of a URL: IPv6 in brackets, its zone escaped (RFC 6874)."""
    host = strip_brackets(address)
    if ":" not in host:
        return host
    if "%" in host and "%25" not in host:
        host = host.replace("%", "%25", 1)
    return f"[{host}]"


def _family_filter(family_pref: str) -> int:
    if family_pref == "ip4":
        return socket.AF_INET
    if family_pref == "ip6":
        return socket.AF_INET6
    if family_pref == "auto":
        return socket.AF_UNSPEC
    raise ValueError(f"family preference must be one of {FAMILY_PREFERENCES}, not {family_pref!r}")


def _numeric(host: str, port: int, family: int) -> list[tuple] | None:
    """getaddrinfo for a literal address (no resolver involved), or None for a host name."""
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None


async def resolve(address: str, port: int, family_pref: str = "auto") -> tuple[int, tuple]:
    """Resolve an endpoint address to (family, sockaddr) for `port`.

    `family_pref` is "auto" (the system's order, RFC 6724), "ip4" or "ip6" (only that
    family). Raises ResolveError when there is no usable address.
    """
    host = strip_brackets(address)
    family = _family_filter(family_pref)
    if not host:
        raise ResolveError("empty address")
    infos = _numeric(host, port, socket.AF_UNSPEC)
    if infos is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ResolveError(f"cannot resolve {host!r}: {exc}") from exc
    for info_family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_UNSPEC, info_family):
            return int(info_family), sockaddr
    wanted = "IPv4" if family == socket.AF_INET else "IPv6"
    raise ResolveError(f"{host!r} has no {wanted} address")


_UNREACHABLE = {
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EADDRNOTAVAIL,
    errno.EAFNOSUPPORT,
}
_RESET = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}


def classify_os_error(exc: OSError) -> str:
    """The failure reason for a socket error: refused, timeout, unreachable,
    resolve_failed, tls_error, reset, or network_error for anything else."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls_error"
    if isinstance(exc, socket.gaierror):
        return "resolve_failed"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "timeout"
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in _UNREACHABLE:
        return "unreachable"
    if exc.errno in _RESET:
        return "reset"
    return "network_error"


def tls_context(insecure: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context that trusts `ca_file` (a PEM bundle) or else the system store;
    `insecure` turns certificate and name checks off. Raises OSError (ssl.SSLError is one)
    when the CA file cannot be read or loaded."""
    ca_stamp = os.stat(ca_file).st_mtime_ns if ca_file else None
    return _tls_context(insecure, ca_file, ca_stamp)


# Building a verifying context loads the CA store (milliseconds): share one per setup, and
# build a new one when the CA file changes.
@functools.lru_cache(maxsize=64)
def _tls_context(insecure: bool, ca_file: str | None, ca_stamp: int | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
