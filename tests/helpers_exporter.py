"""Run the real `bridge-exporter` as a subprocess against real loopback servers.

Shared by the end-to-end tests: loopback peers (listening, refusing, hung and healthy
HTTP) served from one background asyncio thread, an exporter process on a free
127.0.0.1 port, and /metrics parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

T = TypeVar("T")
CONSOLE_SCRIPT = Path(sys.executable).with_name("bridge-exporter")
STOP_SECONDS = 5.0


def exporter_command() -> list[str]:
    """The installed console script, or the module when the venv has no script."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT)]
    return [sys.executable, "-m", "bridge_exporter.cli"]


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, OSError, KeyError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(every)


def http_request(url: str, method: str = "GET", timeout: float = 10.0) -> tuple[int, str]:
    """(status, body text) without raising for 4xx/5xx."""
    request = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def write_inventory(path: Path, inventory: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(inventory, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return path


# --- /metrics -----------------------------------------------------------------------------


class Scrape:
    """One /metrics body, parsed; look samples up by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples_by_name: dict[str, list[Sample]] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples_by_name.setdefault(sample.name, []).append(sample)

    def samples(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples_by_name.get(name, [])
            if all(s.labels.get(k, "") == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample that matches; fails when none or several do."""
        found = self.samples(name, **labels)
        assert len(found) == 1, f"{name}{labels}: expected one sample, found {found}"
        return found[0].value

    def by_endpoint(self, name: str, **labels: str) -> dict[str, float]:
        return {s.labels["endpoint"]: s.value for s in self.samples(name, **labels)}

    def labels_of(self, name: str, endpoint: str, **labels: str) -> dict[str, str]:
        found = self.samples(name, endpoint=endpoint, **labels)
        assert len(found) == 1, f"{name}{{endpoint={endpoint}}}: found {found}"
        return found[0].labels


# --- the exporter process -----------------------------------------------------------------


class ExporterProcess:
    """`bridge-exporter --config.file CONFIG` on a free 127.0.0.1 port, logs in a file."""

    def __init__(self, config: Path, log_dir: Path, *extra_args: str):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"exporter-{self.port}.log"
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ExporterProcess:
        args = [
            *exporter_command(),
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        return self

    @contextlib.contextmanager
    def running(self) -> Iterator[ExporterProcess]:
        """Started and ready for the block, killed after it."""
        self.start()
        try:
            yield self.wait_ready()
        finally:
            self.kill()

    def wait_ready(self, timeout: float = 15.0) -> ExporterProcess:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.process.returncode}:\n{self.log}")
            return self.get("/-/ready")[0] == 200

        wait_until(ready, timeout, "the exporter's /-/ready")
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        return http_request(self.url + path, method)

    def scrape(self) -> Scrape:
        status, text = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}: {text}"
        return Scrape(text)

    def wait_for(self, check: Callable[[Scrape], object], timeout: float, what: str) -> Scrape:
        """Scrape until `check(scrape)` is truthy; return that scrape."""

        def attempt() -> Scrape | None:
            scrape = self.scrape()
            return scrape if check(scrape) else None

        return wait_until(attempt, timeout, what, every=0.25)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> float:
        """SIGTERM; assert exit code 0 within STOP_SECONDS. Returns the seconds it took."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"exporter had already exited ({self.process.returncode})")
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"exporter still running {STOP_SECONDS}s after SIGTERM") from None
        assert code == 0, f"exporter exited with {code} after SIGTERM:\n{self.log}"
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_exporter_once(args: list[str], timeout: float = 15.0) -> subprocess.CompletedProcess:
    """Run the exporter command line to completion (e.g. a start that must fail)."""
    return subprocess.run(
        [*exporter_command(), *args], capture_output=True, text=True, timeout=timeout
    )


# --- loopback peers -----------------------------------------------------------------------


@dataclass
class HungServer:
    """Accepts connections and never answers; counts them and the most open at once."""

    host: str
    port: int = 0
    accepted: int = 0
    open_now: int = 0
    most_open: int = 0
    starts: list[float] = field(default_factory=list)  # time.monotonic() of each accept


class LoopbackServers:
    """Peers for the exporter to probe, all on one asyncio loop in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._held: set[asyncio.StreamWriter] = set()  # connections hung servers hold open
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self, handler, host: str, port: int = 0) -> int:
        server = await asyncio.start_server(handler, host, port, backlog=128)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def tcp(self, host: str, port: int = 0) -> int:
        """A listening port (any free one when 0) that accepts and closes: a reachable
        TCP or H.323 service."""

        async def accept_and_close(reader, writer) -> None:
            writer.close()

        return self._run(self._listen(accept_and_close, host, port))

    def http_ok(self, host: str, body: bytes = b"ok\n") -> int:
        """A healthy HTTP server: 200 with `body` to every request."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
            writer.close()

        return self._run(self._listen(answer, host))

    def hung(self, host: str) -> HungServer:
        """Accepts, reads the request, never answers: the probe must time out."""
        state = HungServer(host)

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.accepted += 1
            state.starts.append(time.monotonic())
            state.open_now += 1
            self._held.add(writer)
            state.most_open = max(state.most_open, state.open_now)
            try:
                while await reader.read(4096):
                    pass
            except OSError:
                pass
            finally:
                state.open_now -= 1
                self._held.discard(writer)
                writer.close()

        state.port = self._run(self._listen(hold, host))
        return state

    @staticmethod
    def refused(host: str) -> int:
        """A port with nothing listening: connects are refused (RST)."""
        return free_port(host)

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._held):
                writer.close()

        self._run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
