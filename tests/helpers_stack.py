"""The monitoring stack as real local processes, for the tests: the shipped prometheus/
configs copied with only addresses and intervals changed, a real Prometheus and
Alertmanager, and one loopback receiver that records webhook and Telegram Bot API posts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO, free_port
from helpers_exporter import http_request, wait_until

PROM_DIR = REPO / "prometheus"


def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


# --- configs: the shipped files with addresses changed ------------------------------------


def rewrite_prometheus_config(
    directory: Path,
    *,
    exporter: str,
    prometheus: str,
    alertmanager: str,
    interval: str | None = None,
    scrape_interval: str | None = None,
) -> Path:
    """prometheus.yml and rules/ copied into `directory`, scraping the given host:port
    targets (and, if given, every `interval`: scrapes and rule evaluation; scrapes every
    `scrape_interval` instead if that is given too).

    A scrape may take until the next one is due (scrape_timeout = the scrape interval, the
    most Prometheus allows). One that takes longer fails, and Prometheus then marks every
    series of the target stale: rules see none of them until the next scrape, so every
    alert on them resolves at once, and instant queries find nothing."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {"bridge": exporter, "prometheus": prometheus, "alertmanager": alertmanager}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    scrape = scrape_interval or interval
    if scrape:
        config["global"].update(scrape_interval=scrape, scrape_timeout=scrape)
    if interval:
        config["global"]["evaluation_interval"] = interval
    shutil.copytree(PROM_DIR / "rules", directory / "rules", dirs_exist_ok=True)
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


def rewrite_alertmanager_config(
    directory: Path,
    *,
    webhook_url: str,
    telegram_api_url: str,
    smtp_smarthost: str,
    secrets: Path,
    group_wait: str | None = None,
    group_interval: str | None = None,
) -> Path:
    """alertmanager.yml and templates/ copied into `directory` with the receivers' addresses
    replaced, secrets read from files in `secrets` (telegram_bot_token, smtp_password),
    and, if given, every route's group_wait and group_interval. The Telegram token stays a
    placeholder: render the result with alertmanager-secrets.sh."""
    config = yaml.safe_load((PROM_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    config["global"]["smtp_smarthost"] = smtp_smarthost
    config["global"]["smtp_auth_password_file"] = str(secrets / "smtp_password")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
        for telegram in receiver.get("telegram_configs", []):
            telegram["api_url"] = telegram_api_url
            telegram["bot_token"] = f"@file:{secrets / 'telegram_bot_token'}@"
    for route in _routes(config["route"]):
        if group_wait and "group_wait" in route:
            route["group_wait"] = group_wait
        if group_interval and "group_interval" in route:
            route["group_interval"] = group_interval
    shutil.copytree(PROM_DIR / "templates", directory / "templates", dirs_exist_ok=True)
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), "utf-8")
    return path


def render_secrets(source: Path, destination: Path) -> Path:
    """alertmanager-secrets.sh SOURCE DESTINATION, as the compose service runs it."""
    done = run("sh", str(PROM_DIR / "alertmanager-secrets.sh"), str(source), str(destination))
    assert done.returncode == 0, done.stderr
    return destination


# --- processes -------------------------------------------------------------------------


class Receiver:
    """Records every POST: the webhook receiver and a fake Telegram Bot API in one."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        posts, lock = self.posts, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    posts.append((self.path, json.loads(body)))
                answer = json.dumps(
                    {"ok": True, "result": {"message_id": 1, "date": 0, "chat": {"id": 1}}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, path_prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for path, body in self.posts if path.startswith(path_prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server:
    """A real server process on a free loopback port, its output in WORKDIR/NAME.log, ready
    once its /-/ready answers 200."""

    def __init__(self, name: str, args: list[str], workdir: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(
            lambda: http_request(self.url + "/-/ready")[0] == 200,
            30,
            f"{name} to be ready (log: {self.log_path})",
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Alertmanager(_Server):
    def __init__(self, binary: str, config: Path, workdir: Path):
        port = free_port()
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        super().__init__("alertmanager", args, workdir, port)

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Post alerts starting now, so group_wait holds the first flush: Alertmanager
        flushes a new group at once for an alert that started more than group_wait ago,
        which can beat its inhibitor to an inhibiting alert of the same batch."""
        start = datetime.now(UTC)
        stamped = [
            {
                **alert,
                "startsAt": start.isoformat(),
                "endsAt": (start + timedelta(hours=1)).isoformat(),
            }
            for alert in alerts
        ]
        request = urllib.request.Request(
            self.url + "/api/v2/alerts",
            data=json.dumps(stamped).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def alerts(self) -> list[dict[str, Any]]:
        status, body = http_request(self.url + "/api/v2/alerts")
        assert status == 200, body
        return json.loads(body)


class Prometheus(_Server):
    """A real Prometheus on a free loopback port, with the given config file."""

    def __init__(self, binary: str, config: Path, workdir: Path, port: int | None = None):
        port = port or free_port()
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        super().__init__("prometheus", args, workdir, port)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query, now or at the Unix time `at`."""
        params = {"query": promql} | ({} if at is None else {"time": f"{at:.3f}"})
        status, body = http_request(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def clean_instant(self, job: str, interval: float, timeout: float = 60) -> float:
        """A moment one `interval` (scrape and evaluation) ago, so that every scrape and
        rule evaluation that started before it has written its samples, after three
        intervals in which every scrape of `job` succeeded: an instant query there sees
        every series of the target and every rule recorded from them. Waits for one if a
        scrape failed lately (see rewrite_prometheus_config)."""

        def found() -> float | None:
            at = time.time() - interval
            scrapes = self.query(f'min_over_time(up{{job="{job}"}}[{3 * interval:g}s])', at)
            return at if scrapes and all(float(s["value"][1]) == 1 for s in scrapes) else None

        return wait_until(found, timeout, f"{3 * interval:g} s of successful {job} scrapes")

    def failed_scrapes(self, job: str) -> int:
        """How many scrapes of `job` failed in the last hour (the tests' Prometheus is
        younger: all of them)."""
        window = f'up{{job="{job}"}}[1h]'
        result = self.query(f"sum(count_over_time({window}) - sum_over_time({window}))")
        return round(float(result[0]["value"][1])) if result else 0

    def by_label(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql)}


def scale_durations(text: str, factor: float) -> str:
    """Every `for:` of a rules file divided by `factor` (e.g. 15 for a 1 s probe interval
    where the shipped rules assume 15 s), whole seconds, at least 1 s."""
    units = {"s": 1, "m": 60, "h": 3600}

    def scaled(match: re.Match[str]) -> str:
        seconds = int(match.group(2)) * units[match.group(3)]
        return f"{match.group(1)}{max(1, round(seconds / factor))}s"

    return re.sub(r"(\bfor: )(\d+)([smh])\b", scaled, text)
