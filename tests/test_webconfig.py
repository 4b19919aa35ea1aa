"""--web.config.file (exporter-toolkit format) through the real exporter process: TLS and
bcrypt basic auth seen by curl and by a real Prometheus, the file re-read on change, and
bad files refused with file:line at start and kept out at reload."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
from conftest import need_tool
from helpers_exporter import ExporterProcess, run_exporter_once, wait_until
from helpers_stack import Prometheus

INVENTORY = """\
tiers: [central, province]
modules: {tcp: {prober: tcp, tcp: {port: 9}, timeout: 1s}}
endpoints:
  - {id: hall, name: Hall, tier: central, address: 127.0.0.1, modules: [tcp]}
  - {id: tinh, name: Tinh, tier: province, parent: hall, address: 127.0.0.2, modules: [tcp]}
"""
USER, PASSWORD = "prometheus", "s3cret-Passw0rd"


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [need_tool("openssl"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made here."""
    d = tmp_path_factory.mktemp("certs")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf",
                "-out", f"{name}.crt", cwd=d)  # fmt: skip
    return d


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def curl(url: str, *args: str) -> tuple[int, dict[str, str], str]:
    """(status or 0 when no HTTP answer, headers in lower case, body)."""
    done = subprocess.run(
        [need_tool("curl"), "-sS", "-i", "--max-time", "10", *args, url],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    if done.returncode != 0:
        return 0, {}, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def web_config(certs: Path, password_hash: str, extra_tls: str = "") -> str:
    return f"""\
tls_server_config:
  cert_file: {certs}/server.crt
  key_file: {certs}/server.key
{extra_tls}http_server_config:
  headers:
    X-Content-Type-Options: nosniff
basic_auth_users:
  {USER}: {password_hash}
"""


def start(tmp_path: Path, config_text: str) -> tuple[ExporterProcess, Path]:
    inventory = tmp_path / "bridge.yml"
    inventory.write_text(INVENTORY, encoding="utf-8")
    web = tmp_path / "web.yml"
    web.write_text(config_text, encoding="utf-8")
    exporter = ExporterProcess(inventory, tmp_path, f"--web.config.file={web}").start()
    exporter.url = exporter.url.replace("http://", "https://")
    return exporter, web


def wait_https_ready(exporter: ExporterProcess, certs: Path) -> None:
    def ready() -> bool:
        assert exporter.process is not None and exporter.process.poll() is None, exporter.log
        return curl(f"{exporter.url}/-/healthy", "--cacert", str(certs / "ca.crt"))[0] == 200

    wait_until(ready, 15, "the exporter to answer over https")


def test_tls_and_basic_auth_with_curl(tmp_path, certs):
    exporter, _ = start(tmp_path, web_config(certs, bcrypt_hash(PASSWORD)))
    ca = ("--cacert", str(certs / "ca.crt"))
    try:
        wait_https_ready(exporter, certs)
        status, headers, body = curl(f"{exporter.url}/metrics", *ca, "-u", f"{USER}:{PASSWORD}")
        assert status == 200 and "bridge_up" in body
        assert headers["x-content-type-options"] == "nosniff"
        for credentials in ([], ["-u", f"{USER}:wrong"], ["-u", f"nobody:{PASSWORD}"]):
            status, headers, _ = curl(f"{exporter.url}/metrics", *ca, *credentials)
            assert status == 401, credentials
            assert headers["www-authenticate"].startswith("Basic")
        for path in ("/", "/probe?target=hall", "/-/ready"):
            assert curl(f"{exporter.url}{path}", *ca)[0] == 401, path
        assert curl(f"{exporter.url}/-/healthy", *ca)[0] == 200  # for load balancers
        # Plain HTTP gets no answer; an unknown CA is refused by the client.
        plain = exporter.url.replace("https://", "http://")
        assert curl(f"{plain}/-/healthy")[0] != 200
        assert curl(f"{exporter.url}/-/healthy")[0] == 0
        assert PASSWORD not in exporter.log
        exporter.stop()
    finally:
        exporter.kill()


def test_client_certificates_required(tmp_path, certs):
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs}/ca.crt\n"
    exporter, _ = start(tmp_path, web_config(certs, bcrypt_hash(PASSWORD), extra))
    ca = ("--cacert", str(certs / "ca.crt"))
    client = ("--cert", str(certs / "client.crt"), "--key", str(certs / "client.key"))
    try:
        wait_until(lambda: curl(f"{exporter.url}/-/healthy", *ca, *client)[0] == 200, 15, "https")
        assert curl(f"{exporter.url}/-/healthy", *ca)[0] == 0  # no certificate: no TLS
        auth = ("-u", f"{USER}:{PASSWORD}")
        assert curl(f"{exporter.url}/metrics", *ca, *client, *auth)[0] == 200
    finally:
        exporter.kill()


def test_the_file_is_reread_on_change_and_a_bad_one_keeps_the_last_good(tmp_path, certs):
    exporter, web = start(tmp_path, web_config(certs, bcrypt_hash(PASSWORD)))
    ca = ("--cacert", str(certs / "ca.crt"))
    try:
        wait_https_ready(exporter, certs)
        assert curl(f"{exporter.url}/metrics", *ca, "-u", f"{USER}:{PASSWORD}")[0] == 200
        web.write_text(web_config(certs, bcrypt_hash("new-one")), encoding="utf-8")
        assert curl(f"{exporter.url}/metrics", *ca, "-u", f"{USER}:new-one")[0] == 200
        assert curl(f"{exporter.url}/metrics", *ca, "-u", f"{USER}:{PASSWORD}")[0] == 401

        bad = web_config(certs, "not-a-hash").replace("X-Content", "X-Powered-By: x\n    X-Content")
        web.write_text(bad, encoding="utf-8")
        assert curl(f"{exporter.url}/metrics", *ca, "-u", f"{USER}:new-one")[0] == 200
        log = wait_until(lambda: "web config reload failed" in exporter.log and exporter.log, 5,
                         "the refused reload in the log")  # fmt: skip
        assert f"{web}:6: header 'X-Powered-By' cannot be set" in log
        assert f"{web}:9: basic_auth_users 'prometheus': the value is not a bcrypt hash" in log
        assert "not-a-hash" not in log  # a hash (or whatever was there) is never echoed
    finally:
        exporter.kill()


def test_a_bad_web_config_stops_the_start_with_file_and_line(tmp_path, certs):
    inventory = tmp_path / "bridge.yml"
    inventory.write_text(INVENTORY, encoding="utf-8")
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs}/server.crt\n  key_file: {certs}/ca.key\n"
        "  min_version: TLS9\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"
        "  key: inline-secret\nbasic_auth_users:\n  a:b: $2b$04$abc\n",
        encoding="utf-8",
    )
    done = run_exporter_once([f"--config.file={inventory}", f"--web.config.file={web}"])
    assert done.returncode == 1
    err = done.stderr
    assert f"{web}:3: cannot use cert_file with key_file" in err
    assert f"{web}:4: min_version 'TLS9' is not one of TLS10, TLS11, TLS12, TLS13" in err
    assert f"{web}:5: cipher_suites: 'TLS_RSA_WITH_RC4_128_SHA' cannot be used here" in err
    assert f"{web}:6: key: certificates and keys are read from files only" in err
    assert f"{web}:8: a basic_auth_users name must be non-empty text without ':'" in err
    assert "inline-secret" not in err


def test_a_real_prometheus_scrapes_over_tls_with_basic_auth(tmp_path, certs):
    binary = need_tool("prometheus")
    exporter, _ = start(tmp_path, web_config(certs, bcrypt_hash(PASSWORD)))
    password_file = tmp_path / "scrape-password"
    password_file.write_text(PASSWORD, encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: bridge
    scheme: https
    tls_config: {{ca_file: {certs}/ca.crt}}
    basic_auth: {{username: {USER}, password_file: {password_file}}}
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
""",
        encoding="utf-8",
    )
    prometheus = None
    try:
        wait_https_ready(exporter, certs)
        prometheus = Prometheus(binary, config, tmp_path)

        def scraped() -> bool:
            return prometheus.by_label('up{job="bridge"}', "job").get("bridge") == 1 and bool(
                prometheus.query('bridge_endpoint_info{endpoint="hall"}')
            )

        wait_until(scraped, 30, "Prometheus to scrape the exporter over TLS")
        started = time.monotonic()
        exporter.stop()
        assert time.monotonic() - started < 10
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.kill()
