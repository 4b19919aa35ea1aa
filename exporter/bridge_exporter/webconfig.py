"""`--web.config.file`: TLS, basic auth and response headers in the format of the
Prometheus exporter-toolkit (github.com/prometheus/exporter-toolkit,
docs/web-configuration.md).

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12             # TLS10..TLS13; default TLS12
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # Go names; TLS <= 1.2 only
      prefer_server_cipher_suites: true
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...          # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')

Like the toolkit, the file is re-read when it changes: every request and every new TLS
connection stats it and the certificate, key and CA files it names (a few microseconds),
and loads it again when one's inode, size or modification time changed. A bad new file is
logged and the last good one keeps serving; switching TLS on or off takes a restart.
Authentication applies to every path but `/-/healthy`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import ssl
import time
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
from aiohttp import web

from .config.errors import ConfigError, Problem
from .config.limits import MAX_FILE_BYTES, shown
from .config.yamlnodes import LinedMap, load_lined_yaml

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go can ask for a client certificate without verifying it; OpenSSL through Python cannot.
UNSUPPORTED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert")
# Go's names of the TLS 1.2 (and older) suites -> OpenSSL's.
GO_CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites cannot be chosen, in Go or here: always on when TLS 1.3 is.
TLS13_CIPHER_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
# The response headers the toolkit lets a web config set, and the values it allows.
HEADER_VALUES: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy"})
# A TLS handshake must be done within this, like a request head (web.py).
TLS_HANDSHAKE_SECONDS = 15.0


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the certificate, key and CA files it names


class _Reader:
    """Walks the YAML, collecting every problem with its line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base = Path(path).parent
        self.problems: list[Problem] = []
        self.files: list[str] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    def section(self, data: LinedMap, key: str) -> LinedMap | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, LinedMap):
            self.problem(data.line_of(key), f"{key} must be a mapping")
            return None
        return value

    def keys(self, data: LinedMap, known: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in known:
                self.problem(
                    data.line_of(key),
                    f"unknown key {shown(key)} in {where}; known: {', '.join(known)}",
                )

    def text(self, data: LinedMap, key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problem(data.line_of(key), f"{key} must be a non-empty string")
            return None
        return value

    def flag(self, data: LinedMap, key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.problem(data.line_of(key), f"{key} must be true or false")
            return default
        return value

    def file(self, data: LinedMap, key: str) -> str | None:
        name = self.text(data, key)
        if name is None:
            return None
        path = str(self.base / name)
        if not os.path.isfile(path):
            self.problem(data.line_of(key), f"{key} {shown(name)}: no such file ({path})")
            return None
        self.files.append(path)
        return path


def load_web_config(path: str) -> WebConfig:
    """The web config at `path`; ConfigError listing every problem with its line."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise ConfigError([Problem(path, 0, "too big for a web config file")])
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        message = f"cannot read the web config file: {problem}"
        raise ConfigError([Problem(path, 0, message)]) from None
    data, problems = load_lined_yaml(text, path)
    if problems:
        raise ConfigError(problems)
    reader = _Reader(path)
    if data is None:
        return WebConfig(path)
    if not isinstance(data, LinedMap):
        raise ConfigError([Problem(path, 1, "a web config file is a mapping (see --help)")])
    reader.keys(data, ("tls_server_config", "http_server_config", "basic_auth_users"), "the file")
    tls = _tls_context(reader, reader.section(data, "tls_server_config"))
    headers = _headers(reader, reader.section(data, "http_server_config"))
    users = _users(reader, data)
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=lambda p: p.line))
    return WebConfig(path, tls, users, headers, tuple(reader.files))


TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)


def _tls_context(reader: _Reader, tls: LinedMap | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    for inline in ("cert", "key", "client_ca"):
        if inline in tls:
            reader.problem(
                tls.line_of(inline),
                f"{inline}: certificates and keys are read from files only; "
                f"write it to a file and name it in {inline}_file",
            )
    reader.keys(tls, (*TLS_KEYS, "cert", "key", "client_ca"), "tls_server_config")
    cert, key = reader.file(tls, "cert_file"), reader.file(tls, "key_file")
    if "cert_file" not in tls or "key_file" not in tls:
        reader.problem(tls.line, "tls_server_config needs both cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert and key:
        try:
            context.load_cert_chain(cert, key, password=_no_passphrase)
        except (ssl.SSLError, OSError, ValueError) as exc:
            reader.problem(
                tls.line_of("key_file"),
                f"cannot use cert_file with key_file: {_ssl_reason(exc)}; they must be a "
                "PEM certificate and its unencrypted PEM private key",
            )
    _client_auth(reader, tls, context)
    versions = (("min_version", "minimum_version"), ("max_version", "maximum_version"))
    for key_name, attribute in versions:
        name = tls.get(key_name, "TLS12" if key_name == "min_version" else None)
        if name is None:
            continue
        if name not in TLS_VERSIONS:
            reader.problem(
                tls.line_of(key_name),
                f"{key_name} {shown(name)} is not one of {', '.join(TLS_VERSIONS)}",
            )
            continue
        setattr(context, attribute, TLS_VERSIONS[name])
    _ciphers(reader, tls, context)
    if reader.flag(tls, "prefer_server_cipher_suites", True):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def _no_passphrase() -> bytes:
    raise ValueError("the key is encrypted; decrypt it (openssl pkey -in KEY -out KEY.plain)")


def _ssl_reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _client_auth(reader: _Reader, tls: LinedMap, context: ssl.SSLContext) -> None:
    auth_type = tls.get("client_auth_type", "NoClientCert")
    line = tls.line_of("client_auth_type")
    if auth_type in UNSUPPORTED_CLIENT_AUTH_TYPES:
        reader.problem(
            line,
            f"client_auth_type {auth_type} (a client certificate without verification) is "
            "not supported here; use VerifyClientCertIfGiven or RequireAndVerifyClientCert "
            "with a client_ca_file",
        )
        return
    if auth_type not in CLIENT_AUTH_TYPES:
        reader.problem(
            line,
            f"client_auth_type {shown(auth_type)} is not one of "
            f"{', '.join((*CLIENT_AUTH_TYPES, *UNSUPPORTED_CLIENT_AUTH_TYPES))}",
        )
        return
    ca_file = reader.file(tls, "client_ca_file")
    if auth_type != "NoClientCert" and "client_ca_file" not in tls:
        reader.problem(line, f"client_auth_type {auth_type} needs a client_ca_file")
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            reader.problem(
                tls.line_of("client_ca_file"),
                f"client_ca_file: {_ssl_reason(exc)}; it must hold PEM certificates",
            )
    context.verify_mode = CLIENT_AUTH_TYPES[auth_type]


def _ciphers(reader: _Reader, tls: LinedMap, context: ssl.SSLContext) -> None:
    names = tls.get("cipher_suites")
    if names is None:
        return
    line = tls.line_of("cipher_suites")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        reader.problem(line, "cipher_suites must be a list of Go cipher suite names")
        return
    unknown = [n for n in names if n not in GO_CIPHER_SUITES and n not in TLS13_CIPHER_SUITES]
    if unknown:
        reader.problem(
            line,
            f"cipher_suites: {', '.join(shown(n) for n in unknown)} cannot be used here "
            f"(insecure or unknown to OpenSSL); choose from {', '.join(GO_CIPHER_SUITES)}",
        )
        return
    openssl_names = [GO_CIPHER_SUITES[n] for n in names if n in GO_CIPHER_SUITES]
    if not openssl_names:
        return
    try:
        context.set_ciphers(":".join(openssl_names))
    except ssl.SSLError:
        reader.problem(line, "cipher_suites: this OpenSSL offers none of them; choose others")


def _headers(reader: _Reader, http: LinedMap | None) -> dict[str, str]:
    if http is None:
        return {}
    reader.keys(http, ("headers", "http2"), "http_server_config")
    reader.flag(http, "http2", True)  # accepted as the toolkit does; aiohttp speaks HTTP/1.1
    headers = reader.section(http, "headers")
    if headers is None:
        return {}
    allowed = {name.lower(): name for name in HEADER_VALUES}
    result = {}
    for name, value in headers.items():
        line = headers.line_of(name)
        canonical = allowed.get(str(name).lower())
        if canonical is None:
            reader.problem(
                line, f"header {shown(name)} cannot be set; allowed: {', '.join(HEADER_VALUES)}"
            )
            continue
        if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
            reader.problem(line, f"header {canonical} needs a one-line text value")
            continue
        choices = HEADER_VALUES[canonical]
        if choices is not None and value.lower() not in choices:
            reader.problem(line, f"header {canonical} must be one of {', '.join(choices)}")
            continue
        result[canonical] = value
    return result


def _users(reader: _Reader, data: LinedMap) -> dict[str, bytes]:
    users = reader.section(data, "basic_auth_users")
    if users is None:
        return {}
    result = {}
    for user, hashed in users.items():
        line = users.line_of(user)
        if not isinstance(user, str) or not user or ":" in user:
            reader.problem(line, "a basic_auth_users name must be non-empty text without ':'")
            continue
        # The hash is never echoed: it is a secret's fingerprint, open to offline guessing.
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            reader.problem(
                line,
                f"basic_auth_users {shown(user)}: the value is not a bcrypt hash; make one "
                "with `htpasswd -nBC 12 \"\" | tr -d ':\\n'` and paste it in",
            )
            continue
        result[user] = hashed.encode("ascii")
    return result


# --- reloading ---------------------------------------------------------------------------


def _signature(paths: tuple[str, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    def one(path: str) -> tuple[int, int, int] | None:
        try:
            status = os.stat(path)
        except OSError:
            return None
        return status.st_ino, status.st_size, status.st_mtime_ns

    return tuple(one(path) for path in paths)


class WebConfigWatcher:
    """The web config in force: the file loaded at start, then again whenever it or a
    file it names changes, as long as the new one is good."""

    def __init__(self, path: str) -> None:
        self.current = load_web_config(path)  # ConfigError at start: nothing to keep
        self._signature = self._now()
        self._refused: tuple | None = None  # the signature of the last bad file, logged once

    def _now(self) -> tuple:
        return _signature((self.current.path, *self.current.files))

    def refresh(self) -> WebConfig:
        signature = self._now()
        if signature == self._signature or signature == self._refused:
            return self.current
        try:
            new = load_web_config(self.current.path)
            if (new.tls is None) != (self.current.tls is None):
                turned = "on" if new.tls is not None else "off"
                raise ConfigError(
                    [Problem(new.path, 0, f"TLS cannot be turned {turned} by a reload; restart")]
                )
        except ConfigError as exc:
            self._refused = signature
            log.error("web config reload failed, keeping the last good one:\n%s", exc)
            return self.current
        self.current, self._refused = new, None
        self._signature = self._now()
        log.info("web config reloaded from %s", new.path)
        return self.current

    def tls_context(self) -> ssl.SSLContext:
        context = self.refresh().tls
        assert context is not None
        return context


# --- basic auth --------------------------------------------------------------------------

# bcrypt costs tens of milliseconds by design. A scraper that got in is let in again
# without it for this long: the cache holds a SHA-256 of user, hash and password (never
# the password), so a changed hash or password misses it.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_ENTRIES = 256
# One bcrypt check at a time, in a thread: a flood of wrong passwords costs one core at
# most and never the event loop. Cached scrapers do not wait for it.
_BCRYPT_CHECKS_AT_ONCE = 1


class BasicAuth:
    def __init__(self) -> None:
        self._verified: dict[bytes, float] = {}  # cache key -> expiry (monotonic)
        self._checks = asyncio.Semaphore(_BCRYPT_CHECKS_AT_ONCE)
        self._unknown_user_hash: bytes | None = None

    async def allows(self, users: dict[str, bytes], authorization: str | None) -> bool:
        credentials = _credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password))).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        if self._unknown_user_hash is None:
            self._unknown_user_hash = bcrypt.hashpw(b"", bcrypt.gensalt(10))
        # An unknown user costs a bcrypt check too, so timing does not tell users apart.
        async with self._checks:
            ok = await asyncio.to_thread(_checkpw, password, hashed or self._unknown_user_hash)
        if not (ok and hashed is not None):
            return False
        if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
            self._verified = {k: t for k, t in self._verified.items() if t > now}
            if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
                self._verified.pop(next(iter(self._verified)))
        self._verified[key] = now + VERIFIED_CACHE_SECONDS
        return True


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # longer than bcrypt's 72 bytes: never a valid password
        return False


def _credentials(authorization: str | None) -> tuple[str, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, sep, password = decoded.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def web_config_middleware(
    watcher: WebConfigWatcher,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Basic auth on every path but UNAUTHENTICATED_PATHS, and the configured headers."""
    auth = BasicAuth()

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        config = watcher.refresh()
        if (
            config.users
            and request.path not in UNAUTHENTICATED_PATHS
            and not await auth.allows(config.users, request.headers.get("Authorization"))
        ):
            raise web.HTTPUnauthorized(
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="bridge-exporter"', **config.headers},
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(config.headers)
            raise
        response.headers.update(config.headers)
        return response

    return guard


# --- serving TLS with the context of the moment ------------------------------------------


class _TlsAccept(asyncio.Protocol):
    """Wraps each accepted connection in TLS with the web config's context of the moment
    (what asyncio does with a fixed context), then serves it with aiohttp's protocol."""

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], watcher: WebConfigWatcher):
        self._make_protocol = make_protocol
        self._watcher = watcher

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        tls = sslproto.SSLProtocol(
            loop,
            self._make_protocol(),
            self._watcher.tls_context(),
            None,
            server_side=True,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS,
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)


class ReloadingTlsSite(web.TCPSite):
    """A TCPSite whose TLS certificate and settings follow the web config file."""

    def __init__(
        self, runner: web.BaseRunner, host: str | None, port: int, watcher: WebConfigWatcher
    ):
        super().__init__(runner, host, port, ssl_context=watcher.current.tls)
        self._watcher = watcher

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        watcher = self._watcher
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _TlsAccept(server, watcher), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
