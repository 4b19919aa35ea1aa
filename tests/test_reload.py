"""A reload that changes nothing keeps the running inventory: scrapes and caches built on
it are not restarted (a config tool may send SIGHUP every minute)."""

from __future__ import annotations

import signal

from helpers_exporter import ExporterProcess, wait_until

INVENTORY = """\
interval: 1s
tiers: [central, commune]
modules:
  tcp: {prober: tcp, timeout: 500ms, tcp: {port: 9}}
endpoints:
  - {id: hall, name: Hội trường, tier: central, address: 127.0.0.1, modules: [tcp]}
"""


def test_an_unchanged_file_is_reloaded_without_replacing_the_running_inventory(tmp_path):
    config = tmp_path / "bridge.yml"
    config.write_text(INVENTORY, encoding="utf-8")
    exporter = ExporterProcess(config, tmp_path).start()
    try:
        exporter.wait_ready()
        exporter.signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded: unchanged" in exporter.log, 10, "the reload")
        config.write_text(INVENTORY.replace("Hội trường", "Hội trường lớn"), encoding="utf-8")
        exporter.signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded: 1 endpoints" in exporter.log, 10, "a real reload")
        scrape = exporter.scrape()
    finally:
        exporter.stop()
    assert scrape.value("bridge_exporter_config_last_reload_successful") == 1
    assert scrape.labels_of("bridge_endpoint_info", "hall")["name"] == "Hội trường lớn"
