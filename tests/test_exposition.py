"""The fast text exposition must be read back exactly by Prometheus' own parser."""

from __future__ import annotations

import math

from bridge_exporter.exposition import Family, label_text, render
from prometheus_client.parser import text_string_to_metric_families


def _parse(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_awkward_label_values_round_trip_through_the_prometheus_parser():
    names = ['Điểm cầu "Hưng Hà"', "back\\slash", "two\nlines", "Xã Tân Lễ"]
    family = Family("bridge_endpoint_info", "gauge", "Facts.\nSecond line.")
    for index, name in enumerate(names):
        family.add(label_text({"endpoint": f"e{index}", "name": name, "empty": ""}), 1)
    parsed = _parse(render([family]))["bridge_endpoint_info"]
    assert [s.labels["name"] for s in parsed.samples] == names
    assert all("empty" not in s.labels for s in parsed.samples)
    assert parsed.documentation == "Facts.\nSecond line."


def test_values_counters_and_histograms():
    gauge = Family("bridge_x_seconds", "gauge", "x")
    for value in (0, 1, 0.25, 1.7e-05, 1795692094.5, math.inf, -math.inf):
        gauge.add(label_text({"v": repr(value)}), value)
    counter = Family("bridge_y_total", "counter", "y")
    counter.add("", 42)
    histogram = Family("bridge_z_seconds", "histogram", "z")
    histogram.add_histogram(label_text({"probe": "icmp"}), [("0.1", 3), ("+Inf", 5)], 1.5, 5)
    text = render([gauge, counter, histogram])
    assert "bridge_y_total 42.0\n" in text
    parsed = _parse(text)
    values = {s.labels["v"]: s.value for s in parsed["bridge_x_seconds"].samples}
    assert values == {
        "0": 0, "1": 1, "0.25": 0.25, "1.7e-05": 1.7e-05, "1795692094.5": 1795692094.5,
        "inf": math.inf, "-inf": -math.inf,
    }  # fmt: skip
    assert parsed["bridge_y"].type == "counter"
    assert parsed["bridge_y"].samples[0].value == 42
    z = parsed["bridge_z_seconds"]
    assert z.type == "histogram"
    by_name = {(s.name, s.labels.get("le")): s.value for s in z.samples}
    assert by_name == {
        ("bridge_z_seconds_bucket", "0.1"): 3,
        ("bridge_z_seconds_bucket", "+Inf"): 5,
        ("bridge_z_seconds_sum", None): 1.5,
        ("bridge_z_seconds_count", None): 5,
    }


def test_a_lone_surrogate_cannot_fail_a_scrape():
    """The inventory loader refuses lone surrogates; a device's answer in a failure
    reason could still carry one, and one unencodable character would fail /metrics."""
    family = Family("bridge_probe_failure_info", "gauge", "Why the probe failed.\ud800")
    family.add(label_text({"endpoint": "e1", "reason": "answer \udcff from the device"}), 1)
    body = render([family]).encode("utf-8")
    parsed = _parse(body.decode("utf-8"))["bridge_probe_failure_info"]
    assert parsed.samples[0].labels["reason"] == "answer \ufffd from the device"
    assert parsed.documentation == "Why the probe failed.\ufffd"
