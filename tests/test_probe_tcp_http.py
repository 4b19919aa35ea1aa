"""The tcp, h323 and http probers against real servers on loopback (IPv4 and ::1).

TLS uses a throw-away certificate made with the openssl command line for each test run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import gc
import logging
import os
import socket
import ssl
import subprocess
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from bridge_exporter.probes import ProbeResult, Target, prober_class
from bridge_exporter.probes.connects import connects_of
from bridge_exporter.probes.h323 import H323Prober, H323Settings
from bridge_exporter.probes.http import MAX_BODY_BYTES, HttpProber, HttpSettings
from bridge_exporter.probes.netutil import ResolveError, bracket, classify_os_error, resolve
from bridge_exporter.probes.tcp import TcpProber, TcpSettings, cert_not_after
from conftest import free_port, need_tool

LOG = logging.getLogger("test.probe")
CERT_NAME = "bridge.test"  # a name only the test's own CA file vouches for
AUTH_USER, AUTH_PASSWORD = "operator", "điểm cầu s3cret"


# --- certificates ---------------------------------------------------------------------


class Cert:
    def __init__(self, directory: Path, days: int) -> None:
        openssl = need_tool("openssl")
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-nodes", "-days", str(days)),
                *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
                *("-keyout", str(self.key), "-out", str(self.cert)),
                *("-subj", f"/CN={CERT_NAME}", "-addext", f"subjectAltName=DNS:{CERT_NAME}"),
            ],
            check=True,
            capture_output=True,
        )
        end = subprocess.run(
            [openssl, "x509", "-in", str(self.cert), "-noout", "-enddate"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.not_after = float(ssl.cert_time_to_seconds(end.strip().removeprefix("notAfter=")))
        self.der = ssl.PEM_cert_to_DER_cert(self.cert.read_text())

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> Cert:
    return Cert(tmp_path_factory.mktemp("tls"), days=30)


# --- servers ----------------------------------------------------------------------------


async def _serve(handler, host: str = "127.0.0.1", **kwargs) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, host, 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, reads whatever comes, says nothing until the client gives up."""
    await reader.read()
    writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    server, port = await _serve(_close_at_once)
    yield port
    server.close()


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from the bridge point")


async def _missing(request: web.Request) -> web.Response:
    return web.Response(status=404, text="no such page")


async def _secret(request: web.Request) -> web.Response:
    credentials = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    expected = f"Basic {credentials}"
    if request.headers.get("Authorization") != expected:
        return web.Response(status=401, text="who are you")
    return web.Response(text="welcome operator")


async def _moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/")


async def _big(request: web.Request) -> web.Response:
    # The marker sits past the first MiB: the probe must not read that far.
    return web.Response(body=b"x" * (2 * MAX_BODY_BYTES) + b"MARKER")


async def _charset(request: web.Request) -> web.Response:
    # The charset a device claims, whatever Python makes of it; the body itself is ASCII
    # with one backslash escape that unicode_escape turns into a lone surrogate.
    charset = request.query["charset"]
    body = b"bridge point ready \\ud800"
    return web.Response(body=body, headers={"Content-Type": f"text/plain; charset={charset}"})


async def _start_site(host: str, ssl_context: ssl.SSLContext | None = None):
    app = web.Application()
    app.router.add_get("/charset", _charset)
    app.router.add_get("/", _hello)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/secret", _secret)
    app.router.add_get("/moved", _moved)
    app.router.add_get("/big", _big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def web_port() -> AsyncIterator[int]:
    runner, port = await _start_site("127.0.0.1")
    yield port
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpProber]:
    prober = HttpProber()
    await prober.start()
    yield prober
    await prober.close()


async def run(prober, address: str, settings, timeout: float = 3.0) -> ProbeResult:
    return await prober.probe(Target("ep1", address), settings, timeout, LOG)


# --- shared helpers -------------------------------------------------------------------


def test_registry_maps_kinds_to_these_probers() -> None:
    assert prober_class("tcp") is TcpProber
    assert prober_class("h323") is H323Prober
    assert prober_class("http") is HttpProber


def test_bracket_wraps_only_ipv6() -> None:
    assert bracket("127.0.0.1") == "127.0.0.1"
    assert bracket("::1") == "[::1]"
    assert bracket("[::1]") == "[::1]"
    assert bracket("fe80::1%eth0") == "[fe80::1%25eth0]"
    assert bracket("mcu.local") == "mcu.local"


async def test_resolve_literals_hostnames_and_family_preference() -> None:
    assert await resolve("127.0.0.1", 80) == (socket.AF_INET, ("127.0.0.1", 80))
    family, sockaddr = await resolve("[::1]", 80)
    assert (family, sockaddr[:2]) == (socket.AF_INET6, ("::1", 80))
    family, sockaddr = await resolve("localhost", 80, "ip4")
    assert (family, sockaddr) == (socket.AF_INET, ("127.0.0.1", 80))
    with pytest.raises(ResolveError, match="no IPv6"):
        await resolve("127.0.0.1", 80, "ip6")
    with pytest.raises(ResolveError):
        await resolve("", 80)


def test_classify_os_error() -> None:
    cases = {
        errno.ECONNREFUSED: "refused",
        errno.ETIMEDOUT: "timeout",
        errno.ENETUNREACH: "unreachable",
        errno.EHOSTUNREACH: "unreachable",
        errno.ECONNRESET: "reset",
        errno.EPIPE: "reset",
        errno.EACCES: "blocked_locally",
        errno.EPERM: "blocked_locally",
        errno.EMFILE: "local_resource_exhausted",
        errno.ENFILE: "local_resource_exhausted",
        errno.ENOBUFS: "local_resource_exhausted",
        errno.ENOMEM: "local_resource_exhausted",
        errno.EAGAIN: "local_resource_exhausted",  # connect: no local port left
        errno.EPROTO: "network_error",
    }
    for code, reason in cases.items():
        assert classify_os_error(OSError(code, "x")) == reason
    assert classify_os_error(socket.gaierror(socket.EAI_NONAME, "x")) == "resolve_failed"
    assert classify_os_error(ssl.SSLError(1, "x")) == "tls_error"
    assert classify_os_error(TimeoutError()) == "timeout"
    assert classify_os_error(ConnectionResetError("no errno, as aiohttp raises it")) == "reset"


def test_cert_not_after_reads_utc_and_generalized_time(cert: Cert, tmp_path: Path) -> None:
    assert cert_not_after(cert.der) == cert.not_after  # UTCTime (before 2050)
    far = Cert(tmp_path, days=13000)  # past 2050: GeneralizedTime
    assert far.not_after > 2524608000  # 2050-01-01
    assert cert_not_after(far.der) == far.not_after
    assert cert_not_after(b"\x30\x03garbage") is None
    assert cert_not_after(b"") is None


# --- tcp ------------------------------------------------------------------------------


async def test_tcp_connect_succeeds_and_reports_connect_time(listener: int) -> None:
    result = await run(TcpProber(), "127.0.0.1", TcpSettings(port=listener))
    assert result.success, result.debug
    assert result.reason == ""
    assert result.rtt_seconds is not None and result.rtt_seconds > 0
    assert list(result.values) == ["tcp_connect_seconds"]
    assert result.duration_seconds >= result.values["tcp_connect_seconds"] >= result.rtt_seconds
    assert any("connected in" in line for line in result.debug)


async def test_a_busy_exporter_does_not_inflate_the_tcp_round_trip(listener: int) -> None:
    """The RTT is the kernel's measure of the handshake: an event loop held up while the
    connect completes (a burst of round starts, a render) lengthens the connect time the
    exporter saw, not the round trip it reports."""
    stall = 0.08
    asyncio.get_running_loop().call_soon(time.sleep, stall)  # runs once the SYN is out
    result = await run(TcpProber(), "127.0.0.1", TcpSettings(port=listener))
    assert result.success, result.debug
    assert result.values["tcp_connect_seconds"] >= stall
    assert result.rtt_seconds is not None and 0 < result.rtt_seconds < stall / 4


@pytest.mark.parametrize("address", ["::1", "[::1]"])
async def test_tcp_over_ipv6(address: str) -> None:
    server, port = await _serve(_close_at_once, "::1")
    try:
        result = await run(TcpProber(), address, TcpSettings(port=port))
    finally:
        server.close()
    assert result.success, result.debug
    assert result.values["tcp_connect_seconds"] > 0


async def test_tcp_hostname(listener: int) -> None:
    result = await run(TcpProber(), "localhost", TcpSettings(port=listener))
    assert result.success, result.debug


async def test_tcp_refused_port_fails_fast() -> None:
    port = free_port()
    result = await run(TcpProber(), "127.0.0.1", TcpSettings(port=port), timeout=5.0)
    assert not result.success
    assert result.reason == "refused"
    assert result.debug[-1].endswith(f"Connection refused (127.0.0.1 port {port})")
    assert result.duration_seconds < 2.5  # refused at once, not waiting for the timeout
    assert result.values == {}


async def test_tcp_port_must_be_set() -> None:
    result = await run(TcpProber(), "127.0.0.1", TcpSettings())
    assert (result.success, result.reason) == (False, "bad_settings")
    assert "port" in result.debug[-1]


@contextlib.contextmanager
def _stalled_listener() -> Iterator[int]:
    """The port of a listener that never accepts, its queue full: SYNs go unanswered."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(0)
    port = listening.getsockname()[1]
    queued = []
    try:
        for _ in range(16):  # fill the accept queue until a connect stalls
            client = socket.socket()
            client.settimeout(0.3)
            queued.append(client)
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("the accept queue never filled")
        yield port
    finally:
        for client in queued:
            client.close()
        listening.close()


async def test_tcp_connect_timeout_on_full_backlog(worst_loop_stall) -> None:
    with _stalled_listener() as port:
        result = await run(TcpProber(), "127.0.0.1", TcpSettings(port=port), timeout=1.0)
    assert (result.success, result.reason) == (False, "timeout")
    assert 1.0 <= result.duration_seconds <= 1.3 + worst_loop_stall()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _descriptors_settle_at(count: int) -> int:
    """The process's open descriptors once the peers' side of closed connections is gone."""
    for _ in range(50):
        if _open_descriptors() <= count:
            break
        await asyncio.sleep(0.02)
    return _open_descriptors()


async def test_hundreds_of_connects_in_flight_each_get_their_own_outcome(listener: int) -> None:
    """Connects in flight share one epoll (probes/connects.py): each is settled with its
    own outcome, and none leaves a descriptor behind."""
    prober, refused_port = TcpProber(), free_port()
    await run(prober, "127.0.0.1", TcpSettings(port=listener))  # the shared epoll exists now
    before = _open_descriptors()
    ports = [refused_port if index % 3 == 0 else listener for index in range(300)]
    results = await asyncio.gather(
        *(run(prober, "127.0.0.1", TcpSettings(port=port)) for port in ports)
    )
    outcomes = [(result.success, result.reason) for result in results]
    assert outcomes == [(False, "refused") if p == refused_port else (True, "") for p in ports]
    assert await _descriptors_settle_at(before) <= before


async def test_a_connect_cut_by_its_deadline_leaves_nothing_behind(listener: int) -> None:
    """A connect abandoned at its deadline closes its socket, which takes it out of the
    shared epoll: the next connect on the same descriptor number works, again and again."""
    prober = TcpProber()
    with _stalled_listener() as stalled_port:
        await run(prober, "127.0.0.1", TcpSettings(port=listener))
        before = _open_descriptors()
        outcomes = []
        for _ in range(5):
            stalled = await run(prober, "127.0.0.1", TcpSettings(port=stalled_port), timeout=0.2)
            answered = await run(prober, "127.0.0.1", TcpSettings(port=listener))
            outcomes.append((stalled.reason, answered.success))
    assert outcomes == [("timeout", True)] * 5
    assert await _descriptors_settle_at(before) <= before


async def test_a_cancelled_connect_whose_socket_lives_on_settles_no_later_connect() -> None:
    """A connect given up while another descriptor still refers to its socket (a dup,
    a forked child's) must not be watched any longer: its late completion would settle
    whichever connect next gets the same descriptor number."""
    connects = connects_of(asyncio.get_running_loop())
    with _stalled_listener() as second_port, contextlib.ExitStack() as first:
        first_port = first.enter_context(_stalled_listener())
        given_up = socket.socket(type=socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        attempt = asyncio.create_task(connects.connect(given_up, ("127.0.0.1", first_port)))
        await asyncio.sleep(0.1)
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        kept_alive = os.dup(given_up.fileno())
        descriptor = given_up.fileno()
        given_up.close()
        reused = socket.socket(type=socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            assert reused.fileno() == descriptor
            waiting = asyncio.create_task(connects.connect(reused, ("127.0.0.1", second_port)))
            await asyncio.sleep(0.1)
            # The first listener goes: the kept-alive socket's retried SYN is refused, an
            # event on that socket. The second listener's queue stays full.
            first.close()
            done, _ = await asyncio.wait({waiting}, timeout=2.5)
            waiting.cancel()
        finally:
            reused.close()
            os.close(kept_alive)
    assert not done, "a connect to a full queue was settled by another socket's event"


def test_a_closed_event_loop_is_freed_with_its_shared_epoll_and_timers() -> None:
    """The per-loop connect watcher and coarse timers live as long as their loop, no
    longer: a process that runs probes on short-lived loops (tests, `check`) keeps no
    loops or epoll descriptors."""
    gc.collect()  # what earlier tests left for the collector is not this test's to count
    before = _event_polls()
    loop = asyncio.new_event_loop()
    settings = TcpSettings(port=free_port())
    result = loop.run_until_complete(run(TcpProber(), "127.0.0.1", settings))
    loop.close()
    freed = weakref.ref(loop)
    del loop
    gc.collect()
    assert result.reason == "refused"
    assert freed() is None
    assert _event_polls() <= before


def _event_polls() -> int:
    """Open epoll descriptors of this process (each event loop has one, and so does its
    connect watcher)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]"
    return count


async def test_tls_insecure_reports_handshake_and_expiry(cert: Cert) -> None:
    server, port = await _serve(_close_at_once, ssl=cert.server_context())
    try:
        settings = TcpSettings(port=port, tls=True, tls_insecure_skip_verify=True)
        result = await run(TcpProber(), "127.0.0.1", settings)
    finally:
        server.close()
    assert result.success, result.debug
    assert result.values["tcp_connect_seconds"] > 0
    assert result.values["tls_handshake_seconds"] > 0
    assert result.values["tls_cert_not_after_timestamp_seconds"] == cert.not_after
    assert any("TLS handshake in" in line for line in result.debug)


async def test_tls_verification(cert: Cert) -> None:
    server, port = await _serve(_close_at_once, ssl=cert.server_context())
    prober = TcpProber()
    try:
        untrusted = await run(prober, "127.0.0.1", TcpSettings(port=port, tls=True))
        trusted = TcpSettings(
            port=port, tls=True, tls_ca_file=str(cert.cert), tls_server_name=CERT_NAME
        )
        good = await run(prober, "127.0.0.1", trusted)
        trusted.tls_server_name = "other.test"
        wrong_name = await run(prober, "127.0.0.1", trusted)
        trusted.tls_server_name = None  # the address 127.0.0.1 is not in the certificate
        by_address = await run(prober, "127.0.0.1", trusted)
    finally:
        server.close()
    assert (untrusted.success, untrusted.reason) == (False, "tls_error")
    assert "certificate verify failed" in untrusted.debug[-1]
    assert untrusted.values["tcp_connect_seconds"] > 0  # TCP itself was fine
    assert good.success, good.debug
    assert good.values["tls_cert_not_after_timestamp_seconds"] == cert.not_after
    assert (wrong_name.success, wrong_name.reason) == (False, "tls_error")
    assert "other.test" in wrong_name.debug[-1]
    assert (by_address.success, by_address.reason) == (False, "tls_error")


async def test_tls_hung_handshake_times_out(worst_loop_stall) -> None:
    server, port = await _serve(_never_answer)
    try:
        settings = TcpSettings(port=port, tls=True, tls_insecure_skip_verify=True)
        result = await run(TcpProber(), "127.0.0.1", settings, timeout=0.8)
    finally:
        server.close()
    assert (result.success, result.reason) == (False, "timeout")
    assert 0.8 <= result.duration_seconds <= 1.1 + worst_loop_stall()
    assert result.values["tcp_connect_seconds"] > 0


async def test_tls_missing_ca_file_is_a_settings_problem(tmp_path: Path) -> None:
    settings = TcpSettings(port=1, tls=True, tls_ca_file=str(tmp_path / "absent.pem"))
    result = await run(TcpProber(), "127.0.0.1", settings)
    assert (result.success, result.reason) == (False, "bad_settings")
    assert "absent.pem" in result.debug[-1]


# --- h323 -----------------------------------------------------------------------------


async def test_h323_defaults_to_call_signalling_port_and_connects(listener: int) -> None:
    assert H323Settings().port == 1720
    assert H323Prober.kind == "h323" and H323Prober.Settings is H323Settings
    prober = H323Prober()
    assert (await run(prober, "127.0.0.1", H323Settings(port=listener))).success
    refused = await run(prober, "127.0.0.1", H323Settings(port=free_port()))
    assert (refused.success, refused.reason) == (False, "refused")


# --- http -----------------------------------------------------------------------------


def url(port: int, path: str = "/") -> str:
    return f"http://{{address}}:{port}{path}"


async def test_http_ok(http: HttpProber, web_port: int) -> None:
    result = await run(http, "127.0.0.1", HttpSettings(url=url(web_port)))
    assert result.success, result.debug
    assert (result.status_code, result.reason) == (200, "")
    assert result.values["http_content_length_bytes"] == len("hello from the bridge point")
    assert result.duration_seconds > 0
    assert f"GET http://127.0.0.1:{web_port}/" in result.debug[0]


async def test_http_over_ipv6() -> None:
    runner, port = await _start_site("::1")
    prober = HttpProber()  # not started: the session is made on first use
    try:
        result = await run(prober, "::1", HttpSettings(url=url(port)))
    finally:
        await prober.close()
        await runner.cleanup()
    assert result.success, result.debug
    assert f"http://[::1]:{port}/" in result.debug[0]


async def test_http_status_codes(http: HttpProber, web_port: int) -> None:
    missing = await run(http, "127.0.0.1", HttpSettings(url=url(web_port, "/missing")))
    assert (missing.success, missing.reason, missing.status_code) == (False, "status_404", 404)
    assert "expected status 2xx" in missing.debug[-1]
    wanted = HttpSettings(url=url(web_port, "/missing"), valid_status_codes=[404])
    assert (await run(http, "127.0.0.1", wanted)).success
    narrowed = HttpSettings(url=url(web_port), valid_status_codes=[204])
    result = await run(http, "127.0.0.1", narrowed)
    assert (result.success, result.reason) == (False, "status_200")


async def test_http_redirects(http: HttpProber, web_port: int) -> None:
    followed = await run(http, "127.0.0.1", HttpSettings(url=url(web_port, "/moved")))
    assert (followed.success, followed.status_code) == (True, 200)
    assert any(line.startswith("redirected: 302") for line in followed.debug)
    kept = HttpSettings(url=url(web_port, "/moved"), follow_redirects=False)
    result = await run(http, "127.0.0.1", kept)
    assert (result.success, result.reason) == (False, "status_302")


async def test_http_body_regex(http: HttpProber, web_port: int) -> None:
    match = HttpSettings(url=url(web_port), body_regex=r"bridge\s+point")
    assert (await run(http, "127.0.0.1", match)).success
    mismatch = HttpSettings(url=url(web_port), body_regex=r"^maintenance")
    result = await run(http, "127.0.0.1", mismatch)
    assert (result.success, result.reason) == (False, "body_mismatch")
    assert "^maintenance" in result.debug[-1]
    broken = HttpSettings(url=url(web_port), body_regex=r"(unclosed")
    assert (await run(http, "127.0.0.1", broken)).reason == "bad_settings"


@pytest.mark.parametrize(
    "charset", ["idna", "punycode", "rot13", "no-such-charset", "unicode_escape", "utf-16"]
)
async def test_http_body_regex_survives_any_charset_a_device_names(
    http: HttpProber, web_port: int, charset: str
) -> None:
    """A charset Python cannot use for this body falls back to UTF-8 with replacement;
    one it can use (even to odd text) is used. Never bad_settings, never an exception."""
    settings = HttpSettings(url=url(web_port, f"/charset?charset={charset}"), body_regex=".")
    result = await run(http, "127.0.0.1", settings)
    assert (result.success, result.reason) == (True, ""), result.debug
    ready = HttpSettings(url=url(web_port, f"/charset?charset={charset}"), body_regex="ready")
    result = await run(http, "127.0.0.1", ready)
    # UTF-16 and punycode are codecs that read this body as other text: nothing to match.
    expected = (False, "body_mismatch") if charset in ("utf-16", "punycode") else (True, "")
    assert (result.success, result.reason) == expected, result.debug


async def test_http_reads_at_most_one_mebibyte(http: HttpProber, web_port: int) -> None:
    settings = HttpSettings(url=url(web_port, "/big"), body_regex="MARKER")
    result = await run(http, "127.0.0.1", settings)
    assert (result.success, result.reason) == (False, "body_mismatch")
    assert result.values["http_content_length_bytes"] == 2 * MAX_BODY_BYTES + len("MARKER")
    assert "first 1048576 bytes" in result.debug[-1]


async def test_http_basic_auth_password_from_file(
    http: HttpProber, web_port: int, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(AUTH_PASSWORD + "\n", encoding="utf-8")  # editors add the newline
    wrong = tmp_path / "wrong"
    wrong.write_text("guess", encoding="utf-8")
    for path in (secret, wrong):
        path.chmod(0o600)  # a password file others may read is refused

    def settings(password_file: Path | None) -> HttpSettings:
        return HttpSettings(
            url=url(web_port, "/secret"),
            basic_auth_user=AUTH_USER,
            basic_auth_password_file=str(password_file) if password_file else None,
            body_regex="welcome",
        )

    assert (await run(http, "127.0.0.1", settings(secret))).success
    assert (await run(http, "127.0.0.1", settings(wrong))).reason == "status_401"
    assert (await run(http, "127.0.0.1", HttpSettings(url=url(web_port, "/secret")))).reason == (
        "status_401"
    )
    absent = await run(http, "127.0.0.1", settings(tmp_path / "absent"))
    assert (absent.reason, absent.status_code) == ("bad_settings", None)
    assert "absent" in absent.debug[-1]


async def test_http_hung_server_costs_only_its_timeout(
    http: HttpProber, web_port: int, worst_loop_stall
) -> None:
    server, hung_port = await _serve(_never_answer)
    timeout = 1.5
    try:
        hung, healthy = await asyncio.gather(
            run(http, "127.0.0.1", HttpSettings(url=url(hung_port)), timeout=timeout),
            run(http, "127.0.0.1", HttpSettings(url=url(web_port)), timeout=timeout),
        )
    finally:
        server.close()
    assert (hung.success, hung.reason, hung.status_code) == (False, "timeout", None)
    assert timeout <= hung.duration_seconds <= timeout + 0.3 + worst_loop_stall()
    assert healthy.success, healthy.debug
    # Not held up by the hung neighbour (the web_port server shares the test's loop).
    assert healthy.duration_seconds < timeout / 2 + worst_loop_stall()


async def test_http_refused(http: HttpProber) -> None:
    result = await run(http, "127.0.0.1", HttpSettings(url=url(free_port())))
    assert (result.success, result.reason) == (False, "refused")


async def test_http_bad_url(http: HttpProber) -> None:
    result = await run(http, "127.0.0.1", HttpSettings(url="ftp://{address}/"))
    assert (result.success, result.reason) == (False, "bad_settings")


async def test_https_verification(http: HttpProber, cert: Cert) -> None:
    runner, port = await _start_site("127.0.0.1", cert.server_context())
    try:
        https = f"https://{{address}}:{port}/"
        insecure = await run(
            http, "127.0.0.1", HttpSettings(url=https, tls_insecure_skip_verify=True)
        )
        verified = await run(http, "127.0.0.1", HttpSettings(url=https))
    finally:
        await runner.cleanup()
    assert insecure.success, insecure.debug
    assert insecure.status_code == 200
    assert (verified.success, verified.reason) == (False, "tls_error")


async def test_http_debug_hides_a_password_in_the_url(http: HttpProber, web_port: int) -> None:
    settings = HttpSettings(url=f"http://probe:hunter2@{{address}}:{web_port}/")
    result = await run(http, "127.0.0.1", settings)
    assert result.success, result.debug
    assert "hunter2" not in "\n".join(result.debug)
    assert "probe:xxxxx@127.0.0.1" in result.debug[0]
