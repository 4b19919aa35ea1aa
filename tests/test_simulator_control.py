"""The simulator's control API and scenario files refuse out-of-range values, and no bad
value ever breaks the simulator: a real `bridge-exporter simulate` process, driven over
HTTP as a user would with curl, observed on the simulated endpoints' TCP ports.

The allowed ranges below are written out by hand (they are the README's table), not read
from the code under test.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from helpers_exporter import exporter_command, run_exporter_once, wait_until, write_inventory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# p (127.62.0.1) ── a (127.62.1.1), b (127.62.1.2), c (127.62.1.3); each serves one TCP port.
ADDRESS = {"p": "127.62.0.1", "a": "127.62.1.1", "b": "127.62.1.2", "c": "127.62.1.3"}

FAULT_FIELDS = (
    "down",
    "flap_period_seconds",
    "delay_seconds",
    "jitter_seconds",
    "loss_ratio",
    "sip_status",
    "sip_delay_seconds",
    "garbage",
)


def _between(low: float, high: float):
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high


# What an accepted fault may hold, as the README states it.
IN_RANGE = {
    "down": lambda v: isinstance(v, bool),
    "flap_period_seconds": lambda v: v == 0 or _between(0.2, 86400)(v),
    "delay_seconds": _between(0, 60),
    "jitter_seconds": _between(0, 1),
    "loss_ratio": _between(0, 1),
    "sip_status": lambda v: type(v) is int and 200 <= v <= 699,
    "sip_delay_seconds": _between(0, 60),
    "garbage": lambda v: isinstance(v, bool),
}


def inventory(tcp_port: int) -> dict[str, Any]:
    return {
        "tiers": [
            {"name": "province", "modules": ["h323"]},
            {"name": "commune", "modules": ["h323"]},
        ],
        "modules": {"h323": {"prober": "h323", "timeout": "2s", "h323": {"port": tcp_port}}},
        "endpoints": [
            {"id": "p", "name": "P", "tier": "province", "address": ADDRESS["p"]},
            *(
                {"id": e, "name": e.upper(), "tier": "commune", "parent": "p", "address": a}
                for e, a in ADDRESS.items()
                if e != "p"
            ),
        ],
    }


@dataclass
class Response:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class SimulatorProcess:
    process: subprocess.Popen[bytes]
    control_port: int
    tcp_port: int
    log_path: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return Response(answer.status, answer.read().decode("utf-8"))
        finally:
            connection.close()

    def put(self, endpoint: str, body: bytes | dict) -> Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("PUT", f"/faults/{endpoint}", data)

    def tcp_state(self, endpoint: str) -> str:
        try:
            with socket.create_connection((ADDRESS[endpoint], self.tcp_port), timeout=2):
                return "open"
        except ConnectionRefusedError:
            return "refused"

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> Iterator[SimulatorProcess]:
    folder = tmp_path_factory.mktemp("simulator")
    tcp_port = free_port(ADDRESS["p"])
    config = write_inventory(folder / "inventory.yml", inventory(tcp_port))
    control_port = free_port()
    log_path = folder / "simulate.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *exporter_command(),
                "simulate",
                f"--config.file={config}",
                f"--control.listen-address=127.0.0.1:{control_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sim = SimulatorProcess(process, control_port, tcp_port, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"simulate exited with {process.returncode}:\n{sim.log}")
        return sim.request("GET", "/").status == 200

    try:
        wait_until(ready, 15, "the simulator's control API")
        yield sim
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0, sim.log
        # No request, however bad, may reach aiohttp's 500 handler or kill a task.
        assert "Traceback" not in sim.log, sim.log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def flapping_states(sim: SimulatorProcess, endpoint: str, count: int = 4) -> list[str]:
    """The endpoint's first `count` TCP states (sampled every 50 ms, repeats dropped), or
    fewer when it stops changing: a 400 ms flap shows 4 within 1.6 s, 8 s is slack for a
    loaded machine."""
    seen: list[str] = []
    deadline = time.monotonic() + 8
    while len(seen) < count and time.monotonic() < deadline:
        state = sim.tcp_state(endpoint)
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.05)
    return seen


BIG = 10**400  # more than a float holds
HUGE_DIGITS = b"1" + b"0" * 5000  # more digits than Python's int() reads by default

# (body, status, what the error message must say); a JSON body is written with
# json.dumps, which writes NaN and Infinity as bare words, as some JSON libraries do.
BAD_BODIES: list[tuple[Any, int, str]] = [
    (
        {"flap_period_seconds": 1e-320},
        400,
        "flap_period_seconds must be 0 (no flapping) or from 200ms to 1d, not 1e-320: "
        "flapping is checked every 100ms",
    ),
    ({"flap_period_seconds": 0.000001}, 400, "from 200ms to 1d, not 1e-06"),
    ({"flap_period_seconds": "199ms"}, 400, "from 200ms to 1d, not '199ms'"),
    ({"flap_period_seconds": "3650d"}, 400, "from 200ms to 1d, not '3650d'"),
    ({"delay_seconds": -1}, 400, "delay_seconds must be from 0 to 60s, not -1"),
    ({"delay_seconds": "-1s"}, 400, "delay_seconds must be from 0 to 60s, not '-1s'"),
    ({"delay_seconds": float("nan")}, 400, "the body is not JSON (NaN is not a JSON number)"),
    ({"delay_seconds": float("inf")}, 400, "(Infinity is not a JSON number)"),
    ({"delay_seconds": "NaN"}, 400, "delay_seconds must be from 0 to 60s (a number of seconds"),
    (b'{"delay_seconds": 1e999}', 400, "delay_seconds must be from 0 to 60s, not inf"),
    ({"delay_seconds": 31_536_000}, 400, "delay_seconds must be from 0 to 60s, not 31536000"),
    ({"delay_seconds": BIG}, 400, "from 0 to 60s, not a number of about 400 digits"),
    (
        b'{"sip_status": ' + HUGE_DIGITS + b"}",
        400,
        "the body has a number with thousands of digits",
    ),
    ({"sip_delay_seconds": "2m"}, 400, "sip_delay_seconds must be from 0 to 60s, not '2m'"),
    ({"jitter_seconds": 5}, 400, "jitter_seconds must be from 0 to 1s, not 5"),
    ({"loss_ratio": 3}, 400, "loss_ratio must be from 0 to 1 (or 0% to 100%), not 3"),
    ({"loss_ratio": "150%"}, 400, "loss_ratio must be from 0 to 1 (or 0% to 100%), not '150%'"),
    ({"loss_ratio": "nan%"}, 400, "not 'nan%'"),
    ({"loss_ratio": -0.1}, 400, "not -0.1"),
    ({"sip_status": 180}, 400, "sip_status must be a whole number from 200 to 699, not 180"),
    ({"sip_status": 503.0}, 400, "sip_status must be a whole number from 200 to 699, not 503.0"),
    ({"sip_status": "503"}, 400, "not '503'"),
    ({"down": 1}, 400, "down must be true or false, not 1"),
    ({"down": "true"}, 400, "down must be true or false, not 'true'"),
    ({"garbage": {"on": [True]}}, 400, "garbage must be true or false, not {'on': [True]}"),
    ({"delay_seconds": True}, 400, "delay_seconds must be from 0 to 60s"),
    ({"subtree": "yes", "down": True}, 400, "subtree must be true or false, not 'yes'"),
    ({"dwon": True}, 400, "unknown fault field 'dwon'; known fields: down, flap_period_seconds"),
    ({"x" * 5000: 1}, 400, "unknown fault field 'xxxxxxxxxx"),
    ([{"down": True}], 400, "the body must be a JSON object, not an array"),
    (None, 400, "the body must be a JSON object, not null"),
    (b"{down: yes", 400, "the body is not JSON"),
    (b"\xff\xfe{}", 400, "the body is not UTF-8 (byte 0 is 0xff)"),
    (b"[" * 10_000, 400, "the body nests too deeply"),
    (b" " * 100_000, 413, "the body is over 16384 bytes"),
]


@pytest.mark.parametrize(
    ("body", "status", "message"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))]
)
def test_a_bad_value_gets_a_client_error_saying_what_is_allowed_and_sets_nothing(
    simulator: SimulatorProcess, body: Any, status: int, message: str
):
    assert simulator.request("DELETE", "/faults").status == 200
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = simulator.put("a", data)
    assert answer.status == status, answer.text
    error = answer.json()["error"]
    assert message in error
    assert len(error) < 400  # a bad value is quoted short, however long it was
    assert simulator.request("GET", "/faults").json() == {"faults": []}
    assert simulator.tcp_state("a") == "open"


def test_after_a_refused_flap_period_flapping_and_down_still_apply(simulator: SimulatorProcess):
    """A 1e-320 s period used to be stored, then overflowed in the flap task (killing it)
    and in every later PUT, so no fault applied any more."""
    simulator.request("DELETE", "/faults")
    assert simulator.put("a", {"flap_period_seconds": 1e-320}).status == 400
    assert simulator.put("a", {"flap_period_seconds": BIG}).status == 400
    time.sleep(0.3)  # several flap checks with the refused value around, had it been kept

    flap = simulator.put("b", {"flap_period_seconds": "400ms"})
    assert flap.status == 200, flap.text
    assert flap.json()["description"] == "flapping every 400ms"
    assert flapping_states(simulator, "b") == ["open", "refused", "open", "refused"]

    assert simulator.put("c", {"down": True}).status == 200
    assert simulator.tcp_state("c") == "refused"
    assert simulator.tcp_state("a") == "open"
    simulator.request("DELETE", "/faults")
    assert simulator.tcp_state("c") == "open"


def test_the_help_page_lists_the_allowed_ranges(simulator: SimulatorProcess):
    text = simulator.request("GET", "/").text
    assert "flap_period_seconds  0 (no flapping) or from 200ms to 1d\n" in text
    assert "loss_ratio           from 0 to 1 (or 0% to 100%)\n" in text
    assert "sip_status           a whole number from 200 to 699\n" in text


# --- property: any body at all ------------------------------------------------------------

LIMIT_EDGES = [0, -0.0, -1, 1e-320, 5e-324, 0.1999, 0.2, 1, 1.0001, 59.9, 60, 60.001, 199, 200]
LIMIT_EDGES += [699, 700, 86400, 86401, 2**63, BIG, -BIG, 1e308]
DURATION_TEXTS = ["NaN", "nan%", "inf", "-1s", "1e-320", "0ms", "199ms", "200ms", "60s", "61s"]
DURATION_TEXTS += ["1m", "1m1s", "1d", "3650d", "3%", "150%", "-3%", "100%", "true", ""]

numbers = st.one_of(
    st.sampled_from(LIMIT_EDGES),
    st.integers(),
    st.floats(),  # NaN and ±inf included: json.dumps writes them as NaN, Infinity
)
texts = st.one_of(st.text(max_size=12), st.sampled_from(DURATION_TEXTS))
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
field_values = st.one_of(numbers, texts, st.booleans(), json_values)  # mostly flat
known_fields = st.fixed_dictionaries(
    {}, optional={name: field_values for name in [*FAULT_FIELDS, "subtree"]}
)
one_field = st.builds(lambda name, value: {name: value}, st.sampled_from(FAULT_FIELDS), numbers)
json_objects = st.one_of(
    one_field,
    known_fields,
    st.builds(
        lambda known, other: {**other, **known},
        known_fields,
        st.dictionaries(st.text(), json_values, max_size=2),
    ),
)
bodies = st.one_of(
    json_objects.map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
)


def test_any_body_gets_a_4xx_or_an_in_range_fault_and_what_follows_still_works(
    simulator: SimulatorProcess,
):
    simulator.request("DELETE", "/faults")

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies)
    def any_body(body: bytes) -> None:
        answer = simulator.put("a", body)
        assert answer.status in (200, 400), (body, answer.status, answer.text)
        if answer.status == 400:
            assert answer.json()["error"]
        else:
            sent = json.loads(body or b"{}")  # an empty body is an empty fault
            assert set(sent) <= {*FAULT_FIELDS, "subtree"}, (sent, answer.text)
            fault = answer.json()["fault"]
            assert all(IN_RANGE[name](value) for name, value in fault.items()), fault
        # The next good request still works and still acts on a real port.
        assert simulator.put("b", {"down": True}).status == 200
        assert simulator.tcp_state("b") == "refused"
        assert simulator.request("DELETE", "/faults/b").status == 200
        assert simulator.tcp_state("b") == "open"

    any_body()
    # ... and the flap task survived every one of them.
    simulator.request("DELETE", "/faults")
    assert simulator.put("c", {"flap_period_seconds": 0.4}).status == 200
    assert flapping_states(simulator, "c") == ["open", "refused", "open", "refused"]
    simulator.request("DELETE", "/faults")


# --- scenario files: the same limits, with file:line --------------------------------------

BAD_SCENARIO = """\
repeat_every: 1ms
steps:
  - at: 0s
    endpoint: a
    fault: {flap_period_seconds: 0.000001}
  - at: 0s
    endpoint: b
    fault:
      delay_seconds: 10d
      jitter_seconds: 5s
      sip_status: 180
      loss_ratio: .nan
  - at: 3650d
    endpoint: c
    subtree: 1
    fault: {down: true}
"""


def test_scenario_values_out_of_range_are_reported_with_file_and_line(tmp_path: Path):
    config = write_inventory(tmp_path / "inventory.yml", inventory(free_port(ADDRESS["p"])))
    scenario = tmp_path / "faults.yml"
    scenario.write_text(BAD_SCENARIO)
    run = run_exporter_once(
        [
            "simulate",
            f"--config.file={config}",
            f"--scenario={scenario}",
            f"--control.listen-address=127.0.0.1:{free_port()}",
        ]
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    for line, message in [
        (1, "repeat_every must be from 200ms to 7d, not '1ms'"),
        (5, "flap_period_seconds must be 0 (no flapping) or from 200ms to 1d, not 1e-06"),
        (9, "delay_seconds must be from 0 to 60s, not '10d'"),
        (10, "jitter_seconds must be from 0 to 1s, not '5s'"),
        (11, "sip_status must be a whole number from 200 to 699, not 180"),
        (12, "loss_ratio must be from 0 to 1 (or 0% to 100%), not nan"),
        (13, "at must be from 0 to 7d, not '3650d'"),
        (15, "subtree must be true or false, not 1"),
    ]:
        assert f"{scenario}:{line}: {message}" in output, (line, output)
