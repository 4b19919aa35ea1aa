"""The prober's own reason, status code and debug lines reach the user through the real
exporter process: on /metrics (background rounds) and on /probe (ad hoc), alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bridge_exporter.sipmsg import build_response, parse_message
from helpers_exporter import ExporterProcess, Scrape, write_inventory
from thread_peers import ThreadUdpPeer

SIP_TIMEOUT = "1s"


class OnlyTrying(ThreadUdpPeer):
    """A SIP device that answers every OPTIONS with "100 Trying" and never a final code."""

    def answer(self, data: bytes, peer: tuple) -> bytes | None:
        request = parse_message(data)
        if request is None:
            return None
        return build_response(request, 100, "Trying", received=peer[:2])


@pytest.fixture(scope="module")
def exporter(tmp_path_factory) -> Iterator[ExporterProcess]:
    trying = OnlyTrying()
    workdir = tmp_path_factory.mktemp("reasons")
    config = write_inventory(
        workdir / "bridge.yml",
        {
            "interval": "2s",
            "tiers": [{"name": "province"}, {"name": "commune"}],
            "modules": {
                "sip": {
                    "prober": "sip",
                    "timeout": SIP_TIMEOUT,
                    "sip": {"port": trying.port, "t1": "100ms", "t2": "300ms"},
                },
            },
            "endpoints": [
                {
                    "id": "tinh",
                    "name": "Tỉnh",
                    "tier": "province",
                    "address": "127.0.0.1",
                    "modules": ["sip"],
                },
            ],
        },
    )
    process = ExporterProcess(config, workdir).start()
    try:
        process.wait_ready()
        yield process
        process.stop()
    finally:
        process.kill()
        trying.close()


def test_metrics_show_the_sip_probers_own_reason_and_provisional_code(exporter):
    scrape = exporter.wait_for(
        lambda s: s.samples("bridge_probe_success", endpoint="tinh"), 10, "a first SIP round"
    )
    labels = {"endpoint": "tinh", "probe": "sip"}
    assert scrape.value("bridge_probe_success", **labels) == 0
    reasons = [s.labels["reason"] for s in scrape.samples("bridge_probe_failure_info", **labels)]
    assert reasons == ["timeout_after_provisional"]
    assert scrape.value("bridge_sip_response_code", **labels) == 100
    assert scrape.value("bridge_probe_status_code", **labels) == 100
    assert scrape.value("bridge_exporter_prober_errors_total") == 0


def test_probe_shows_the_same_reason_and_the_probers_debug_lines(exporter):
    status, text = exporter.get("/probe?target=tinh&module=sip")
    assert status == 200, text
    result = Scrape(text)
    failure = result.samples("bridge_probe_failure_info", endpoint="tinh", probe="sip")
    assert [s.labels["reason"] for s in failure] == ["timeout_after_provisional"]
    assert result.value("bridge_sip_response_code", endpoint="tinh", probe="sip") == 100

    status, text = exporter.get("/probe?target=tinh&module=sip&debug=true")
    assert status == 200, text
    module_section = text.split("Module sip (sip) ", 1)[1].split("Metrics that would", 1)[0]
    assert module_section.startswith("FAILED (timeout_after_provisional)"), module_section
    # The result's own lines (not only the log): the request and the 100 that came back.
    assert "< SIP/2.0 100 Trying" in module_section
    assert "sent OPTIONS to 127.0.0.1:" in module_section
