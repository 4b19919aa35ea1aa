"""docker-compose.yml: Debian's docker-compose accepts it (with and without the demo
profile), it refuses to run without a Grafana admin password, and every file it mounts or
builds from exists in the repository (Docker itself cannot run here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from conftest import REPO, need_tool

USER_SUPPLIED = {REPO / "secrets"}  # Alertmanager's secrets: made at the site, git-ignored


def compose_config(*args: str, password: str | None = "not-a-real-password"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "BRIDGE_"))}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    return subprocess.run(
        [
            need_tool("docker-compose"),
            "--project-directory",
            str(REPO),
            "-f",
            str(REPO / "docker-compose.yml"),
            *args,
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def resolved(*args: str) -> dict:
    done = compose_config(*args)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_docker_compose_accepts_the_file_with_and_without_the_demo_profile():
    services = resolved()["services"]
    always = {name for name, service in services.items() if not service.get("profiles")}
    assert always == {"exporter", "prometheus", "alertmanager", "grafana", "webhook"}
    demo = resolved("--profile", "demo")["services"]
    assert demo["simulator"]["profiles"] == ["demo"]
    # the simulator's 127.10.x.y endpoints live on the exporter's own loopback
    assert demo["simulator"]["network_mode"] == "service:exporter"


def test_there_is_no_default_grafana_password():
    done = compose_config(password=None)
    assert done.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in done.stderr


def test_every_file_it_mounts_or_builds_from_exists_in_the_repository():
    config = resolved("--profile", "demo")
    sources: list[Path] = []
    for name, service in config["services"].items():
        if "build" in service:
            context = Path(service["build"]["context"])
            sources += [context, context / service["build"].get("dockerfile", "Dockerfile")]
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if volume_type(volume) == "bind":
                sources.append(Path(source))
        assert service.get("healthcheck"), f"{name} has no healthcheck"
    assert len(sources) >= 10
    for source in sources:
        assert source.resolve().is_relative_to(REPO), source
        assert source.exists(), f"{source} is mounted or built from but missing"
    for secret in config["secrets"].values():
        assert Path(secret["file"]).parent in USER_SUPPLIED
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert "/secrets/" in ignored and ".env" in ignored


def volume_type(volume) -> str:
    if isinstance(volume, dict):
        return volume["type"]
    return "bind" if volume.startswith(("/", ".")) else "volume"


def test_images_are_pinned_and_only_net_raw_is_added():
    services = resolved("--profile", "demo")["services"]
    for name, service in services.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
    assert services["exporter"]["cap_drop"] == ["ALL"]
    assert services["exporter"]["cap_add"] == ["NET_RAW"]
    dockerfile = (REPO / "exporter/Dockerfile").read_text(encoding="utf-8")
    assert "USER bridge" in dockerfile and "-slim" in dockerfile
    command = " ".join(services["prometheus"]["command"])
    assert "--storage.tsdb.retention.time=400d" in command
    assert "alertmanager-secrets.sh" in " ".join(services["alertmanager"]["command"])
