"""What the exporter lets a caller do and what it gives away, through the real process:
/-/reload only with --web.enable-lifecycle, /probe's module rules and concurrency,
redirects to other hosts and inline headers, and secrets from files only."""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port, need_tool
from helpers_exporter import (
    ExporterProcess,
    LoopbackServers,
    exporter_command,
    http_request,
    wait_until,
)

PASSWORD = "pa55-Word-for-the-codec"


class Recorder(ThreadingHTTPServer):
    """Answers every request (a redirect or 200) and keeps each request's headers."""

    def __init__(self, host: str, redirect_to: str | None = None):
        self.requests: list[dict[str, str]] = []
        self.redirect_to = redirect_to
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append({k.lower(): v for k, v in self.headers.items()})
                if server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            def log_message(self, *args) -> None:
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


@pytest.fixture
def servers() -> Iterator[LoopbackServers]:
    peers = LoopbackServers()
    yield peers
    peers.close()


def inventory(tmp_path: Path, modules: str, endpoint_modules: str, concurrency: int = 10) -> Path:
    path = tmp_path / "bridge.yml"
    path.write_text(
        f"""\
interval: 30s
concurrency: {concurrency}
tiers: [central, province]
modules:
{modules}
endpoints:
  - {{id: hall, name: Hall, tier: central, address: 127.0.0.1, modules: {endpoint_modules}}}
  - {{id: tinh, name: Tinh, tier: province, parent: hall, address: 127.0.0.2, modules: [tcp]}}
""",
        encoding="utf-8",
    )
    return path


TCP = "  tcp: {prober: tcp, tcp: {port: 9}, timeout: 1s}"


def running(tmp_path: Path, config: Path, *args: str) -> ExporterProcess:
    return ExporterProcess(config, tmp_path, *args).start().wait_ready()


# --- lifecycle ----------------------------------------------------------------------------


def test_reload_over_http_needs_the_lifecycle_flag_and_sighup_always_works(tmp_path):
    config = inventory(tmp_path, TCP, "[tcp]")
    exporter = running(tmp_path, config)
    try:
        for method in ("POST", "PUT"):
            status, text = exporter.get("/-/reload", method=method)
            assert status == 403 and "--web.enable-lifecycle" in text
        config.write_text(config.read_text().replace("id: tinh", "id: tinh-2"), encoding="utf-8")
        exporter.signal(signal.SIGHUP)
        exporter.wait_for(lambda s: "tinh-2" in s.by_endpoint("bridge_endpoint_info"), 10, "HUP")
        status, page = exporter.get("/")
        assert "needs <code>--web.enable-lifecycle</code>" in page
    finally:
        exporter.kill()
    exporter = running(tmp_path, config, "--web.enable-lifecycle")
    try:
        assert exporter.get("/-/reload", method="POST")[0] == 200
    finally:
        exporter.kill()


# --- /probe -------------------------------------------------------------------------------


def test_probe_runs_one_module_unless_listed_and_refuses_repeats(tmp_path, servers):
    port = servers.tcp("127.0.0.1")
    modules = f"{TCP}\n  tcp_b: {{prober: tcp, tcp: {{port: {port}}}, timeout: 1s}}"
    exporter = running(tmp_path, inventory(tmp_path, modules, "[tcp, tcp_b]"))
    try:
        status, text = exporter.get("/probe?target=hall")
        assert status == 400 and "module=tcp&module=tcp_b" in text
        status, text = exporter.get("/probe?target=hall&module=tcp_b&module=tcp_b")
        assert status == 400 and "'tcp_b' is listed more than once" in text
        status, text = exporter.get("/probe?target=hall&module=tcp_b")
        assert status == 200 and 'probe="tcp_b"' in text and 'probe="tcp"' not in text
        status, text = exporter.get("/probe?target=hall&module=tcp_b&module=tcp")
        assert status == 200 and 'probe="tcp_b"' in text and 'probe="tcp"' in text
        assert exporter.get("/probe?target=tinh")[0] == 200  # its only module
    finally:
        exporter.kill()


def test_head_does_not_probe_and_probes_share_the_concurrency(tmp_path, servers):
    hung = servers.hung("127.0.0.1")
    modules = (
        f"{TCP}\n  web: {{prober: http, timeout: 1s, http: {{url: 'http://{{address}}:"
        f"{hung.port}/'}}}}"
    )
    exporter = running(tmp_path, inventory(tmp_path, modules, "[web]", concurrency=1))
    try:
        wait_until(lambda: hung.accepted >= 1, 10, "the background probe")
        wait_until(lambda: hung.open_now == 0, 5, "the background probe to end")
        before = hung.accepted
        request = subprocess.run(
            [need_tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-I",
             f"{exporter.url}/probe?target=hall"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert request.stdout == "405"
        threads = [
            threading.Thread(target=exporter.get, args=("/probe?target=hall",)) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        # Only the three GETs connected (HEAD probed nothing), one at a time: each waited
        # for the single slot, which the previous one held for its whole 1 s timeout.
        starts = sorted(hung.starts[before:])
        assert len(starts) == 3
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) > 0.8, gaps
    finally:
        exporter.kill()


# --- redirects and inline headers ---------------------------------------------------------


@pytest.mark.parametrize("other_hosts", [False, True])
def test_redirects_to_other_hosts_and_headers(tmp_path, other_hosts):
    elsewhere = Recorder("127.0.0.2")
    device = Recorder("127.0.0.1", redirect_to=f"http://127.0.0.2:{elsewhere.port}/")
    secret = tmp_path / "codec-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    settings = (
        f"url: 'http://{{address}}:{device.port}/', headers: {{X-Api-Key: k-123}}, "
        f"basic_auth_user: admin, basic_auth_password_file: {secret}, "
        f"follow_redirects_to_other_hosts: {str(other_hosts).lower()}"
    )
    stats = (
        f"auth: basic, username: admin, password_file: {secret}, "
        f"url: 'http://{{address}}:{device.port}/', format: json, "
        f"mapping: {{media_in_call: 'count($.calls)'}}, "
        f"follow_redirects_to_other_hosts: {str(other_hosts).lower()}"
    )
    modules = (
        f"{TCP}\n  web: {{prober: http, timeout: 2s, http: {{{settings}}}}}"
        f"\n  codec: {{prober: stats, timeout: 2s, stats: {{{stats}}}}}"
    )
    exporter = running(tmp_path, inventory(tmp_path, modules, "[web, codec]"))
    try:
        status, text = exporter.get("/probe?target=hall&module=web&module=codec&debug=true")
        assert status == 200, text
        assert device.requests and all(r.get("x-api-key") == "k-123" for r in device.requests[:1])
        assert device.requests[0]["authorization"].startswith("Basic ")
        if other_hosts:
            assert len(elsewhere.requests) >= 2, text  # both probers followed
            for headers in elsewhere.requests:
                assert "x-api-key" not in headers and "authorization" not in headers
        else:
            assert elsewhere.requests == []
            assert "FAILED (status_302)" in text
            assert "follow_redirects_to_other_hosts: true allows it" in text
        assert PASSWORD not in text and PASSWORD not in exporter.log
    finally:
        exporter.kill()
        device.shutdown()
        elsewhere.shutdown()


# --- secrets ------------------------------------------------------------------------------


def validate(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*exporter_command(), "validate", str(config)], capture_output=True, text=True, timeout=30
    )


def test_password_files_readable_by_others_and_inline_secrets_are_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD, encoding="utf-8")
    secret.chmod(0o644)
    web = (
        f"  web: {{prober: http, http: {{url: 'http://{{address}}:{free_port()}/', "
        f"basic_auth_user: admin, basic_auth_password_file: {secret}}}}}"
    )
    inline = (
        "  inline: {prober: http, http: {url: 'http://admin:hunter2@{address}/', "
        "headers: {Authorization: Bearer tok-1}}}"
    )
    config = inventory(tmp_path, f"{TCP}\n{web}\n{inline}", "[web]")
    done = validate(config)
    assert done.returncode == 1
    assert f"run `chmod 600 {secret}`" in done.stderr
    assert "headers: Authorization must not be written inline" in done.stderr
    assert "holds a password" in done.stderr
    assert "hunter2" not in done.stderr and "tok-1" not in done.stderr
    assert PASSWORD not in done.stderr

    # Made safe for validate, then opened up again before the probe: refused at probe time.
    config.write_text(config.read_text().replace(f"\n{inline}", ""), encoding="utf-8")
    secret.chmod(0o600)
    assert validate(config).returncode == 0
    exporter = running(tmp_path, config)
    try:
        secret.chmod(0o604)
        status, text = exporter.get("/probe?target=hall&module=web&debug=true")
        assert status == 200
        assert "FAILED (bad_settings)" in text and f"chmod 600 {secret}" in text
        assert PASSWORD not in text
    finally:
        exporter.kill()


def test_url_passwords_are_masked_in_debug_output(tmp_path):
    # Nothing inline is accepted, so a password can only reach a URL through a redirect.
    target = Recorder("127.0.0.1")
    device = Recorder("127.0.0.1", redirect_to=f"http://u:{PASSWORD}@127.0.0.1:{target.port}/")
    modules = f"{TCP}\n  web: {{prober: http, timeout: 2s, http: {{url: 'http://{{address}}:{device.port}/'}}}}"
    exporter = running(tmp_path, inventory(tmp_path, modules, "[web]"))
    try:
        status, text = exporter.get("/probe?target=hall&module=web&debug=true")
        assert status == 200 and "redirected: 302 to http://u:xxxxx@127.0.0.1" in text
        assert PASSWORD not in text
        assert http_request(f"{exporter.url}/")[0] == 200
    finally:
        exporter.kill()
        device.shutdown()
        target.shutdown()
