"""One vocabulary of failure reasons: the README's table is the code's table, every reason a
prober names is in it, the same failure gets the same reason from every prober (through
the scheduler), and whatever bytes a device answers a SIP OPTIONS with, the sip prober
returns a failure with a reason of the table, never an exception."""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from bridge_exporter.probes import ProbeResult, Target, reasons
from bridge_exporter.probes.sip import SipProber, SipSettings
from bridge_exporter.sipmsg import parse_message
from conftest import REPO, missing, need_tool
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from netlab import isolated_netns, netlab_problem

PROBES = REPO / "exporter" / "bridge_exporter" / "probes"
TESTS = Path(__file__).resolve().parent

# --- the table, the README and the code agree -------------------------------------------------


def readme_reasons() -> dict[str, str]:
    """The README's "Failure reasons" table: reason -> probers column."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Failure reasons\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    return rows


def test_the_readme_lists_exactly_the_reasons_of_the_code_table():
    documented = readme_reasons()
    coded = {row.name: row.probers for row in reasons.TABLE.values()}
    assert sorted(documented) == sorted(coded)
    assert documented == coded, "the probers column differs"
    # The ones every alert rule and dashboard leans on are there under these names.
    for name in ("timeout", "refused", "unreachable", "reset", "no_reply", "status_<code>"):
        assert name in documented
    for retired in ("network_unreachable", "host_unreachable", "connection_reset"):
        assert retired not in documented
    assert "socket_error" not in documented


def _called_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _reason_expressions(tree: ast.AST) -> list[ast.expr]:
    """Expressions that become a failure reason: ProbeFailed(<reason>, ...), the helpers
    finish(<reason>) and failure(<reason>), reason=<reason>, and x.reason = <reason>."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _called_name(node.func) in ("ProbeFailed", "finish", "failure") and node.args:
                found.append(node.args[0])
            found += [k.value for k in node.keywords if k.arg == "reason"]
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "reason" for t in node.targets
        ):
            found.append(node.value)
    return found


def _literal_text(node: ast.expr, module) -> str | None:
    """A string literal's text; an f-string's with names filled in from the module and
    anything else as "*"; None for what is not a literal (a name, a call)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value.value, ast.Name) and isinstance(
            getattr(module, value.value.id, None), str
        ):
            parts.append(getattr(module, value.value.id))
        else:
            parts.append("*")
    return "".join(parts)


def test_every_reason_a_prober_names_is_in_the_table():
    families = [re.sub(r"<\w+>", "*", name) for name in reasons.TABLE if "<" in name]
    checked = 0
    problems = []
    for path in sorted(PROBES.rglob("*.py")):
        relative = path.relative_to(PROBES.parent.parent)
        module = importlib.import_module(".".join(relative.with_suffix("").parts))
        for node in _reason_expressions(ast.parse(path.read_text(encoding="utf-8"))):
            text = _literal_text(node, module)
            if text is None or text == "":  # a constant of reasons.py, or success
                continue
            checked += 1
            if not (reasons.is_known(text) or text in families):
                problems.append(f"{path.name}:{node.lineno}: {text!r}")
    assert not problems, f"reasons missing from probes/reasons.py: {problems}"
    assert checked > 0  # the literals that other files still use were found and checked


# --- the same failure, the same reason, whichever prober sees it --------------------------------

PROBERS_ON_THE_SAME_FAILURE = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from scheduler_round import one_round

MODULES = {
    "tcp": "{prober: tcp, timeout: 2s, tcp: {port: 5061}}",
    "h323": "{prober: h323, timeout: 2s}",
    "http": "{prober: http, timeout: 2s, http: {url: 'http://{address}:8080/'}}",
    "sip_tcp": "{prober: sip, timeout: 2s, sip: {transport: tcp}}",
    "sip_udp": "{prober: sip, timeout: 2s, sip: {transport: udp}}",
    "stamp": "{prober: stamp, timeout: 2s, stamp: {count: 3, interval: 10ms}}",
    "icmp": "{prober: icmp, timeout: 2s, icmp: {count: 2, interval: 10ms}}",
}


def inventory(address, modules):
    return (
        "interval: 10s\ntiers: [site, point]\nmodules:\n"
        + "".join(f"  {name}: {MODULES[name]}\n" for name in modules)
        + f"endpoints:\n  - {{id: site, name: Site, tier: site, address: '{address}', "
        + f"modules: [{', '.join(modules)}]}}\n"
    )


async def main():
    report = {}
    for address in sys.argv[2:]:
        # Loopback answers pings: icmp has no "refused".
        modules = [m for m in MODULES if address != "127.0.0.1" or m != "icmp"]
        done = await one_round(inventory(address, modules))
        report[address] = {name: result.reason for name, result in done.results.items()}
        report[address + " prober errors"] = done.stats.probe_errors
    print(json.dumps(report))

asyncio.run(main())
"""


def test_the_same_failure_gets_the_same_reason_from_every_prober():
    problem = netlab_problem()
    if problem:
        missing(f"network namespace tests: {problem}")
    need_tool("ip")
    with isolated_netns("reasons") as namespace:
        # Inside this namespace nothing listens on 127.0.0.1, and 198.18.0.0/30 is routed
        # nowhere: the kernel refuses connections, and says the other is unreachable.
        namespace.run(["ip", "route", "add", "unreachable", "198.18.0.0/30"])
        unreachable = "198.18.0.1"  # exists in this namespace only; nothing is sent
        run = namespace.run(
            [sys.executable, "-c", PROBERS_ON_THE_SAME_FAILURE, str(TESTS), "127.0.0.1",
             unreachable],
            check=False, timeout=60,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["127.0.0.1"] == {
        "tcp": "refused",
        "h323": "refused",
        "http": "refused",
        "sip_tcp": "refused",
        "sip_udp": "refused",
        "stamp": "refused",
    }
    assert report[unreachable] == {
        "tcp": "unreachable",
        "h323": "unreachable",
        "http": "unreachable",
        "sip_tcp": "unreachable",
        "sip_udp": "unreachable",
        "stamp": "unreachable",
        "icmp": "unreachable",
    }
    assert report["127.0.0.1 prober errors"] == report[f"{unreachable} prober errors"] == 0


PROBERS_OUT_OF_DESCRIPTORS = r"""
import asyncio, json, os, resource, sys
from bridge_exporter.config import parse_inventory
from bridge_exporter.scheduler import Probers, Scheduler
from bridge_exporter.state import State

INVENTORY = '''
interval: 10s
tiers: [site, point]
modules:
  tcp: {prober: tcp, timeout: 2s, tcp: {port: 9}}
  h323: {prober: h323, timeout: 2s}
  http: {prober: http, timeout: 2s, http: {url: 'http://{address}:9/'}}
  sip_tcp: {prober: sip, timeout: 2s, sip: {transport: tcp, port: 9}}
  sip_udp: {prober: sip, timeout: 2s, sip: {transport: udp, port: 9}}
  stamp: {prober: stamp, timeout: 2s, stamp: {count: 3, interval: 10ms, port: 9}}
endpoints:
  - {id: site, name: Site, tier: site, address: 127.0.0.1,
     modules: [tcp, h323, http, sip_tcp, sip_udp, stamp]}
'''


async def main():
    inventory = parse_inventory(INVENTORY, "fds.yml")
    state, probers = State(inventory), Probers()
    await probers.start_for(inventory)
    scheduler = Scheduler(inventory, state, probers)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor
    await scheduler.run_round(inventory.endpoints["site"])
    records = state.endpoints["site"].records
    print(json.dumps({
        "reasons": {name: record.result.reason for name, record in records.items()},
        "prober_errors": scheduler.stats.probe_errors,
    }))

asyncio.run(main())
"""


def test_running_out_of_descriptors_is_one_reason_from_every_prober():
    # The exporter's own trouble (EMFILE here; ENFILE, ENOBUFS, ENOMEM alike) is one
    # reason whichever prober meets it, and never a prober_error.
    run = subprocess.run(
        [sys.executable, "-c", PROBERS_OUT_OF_DESCRIPTORS],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["reasons"] == dict.fromkeys(
        ["tcp", "h323", "http", "sip_tcp", "sip_udp", "stamp"], "local_resource_exhausted"
    )
    assert report["prober_errors"] == 0


# --- whatever a device answers a SIP OPTIONS with ------------------------------------------------

TRANSACTION_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")


def _text_bytes(text: str) -> bytes:
    return text.encode("utf-8")


status_lines = st.one_of(
    st.integers(100, 699).map(lambda code: f"SIP/2.0 {code} Whatever".encode()),
    st.text(max_size=20).map(lambda rest: _text_bytes("SIP/2.0 " + rest)),
    st.binary(max_size=30),
)
header_lines = st.one_of(
    st.sampled_from(TRANSACTION_HEADERS),  # copied from the request, so the answer matches
    st.tuples(st.text(max_size=10), st.text(max_size=30)).map(
        lambda pair: _text_bytes(f"{pair[0]}: {pair[1]}")
    ),
    st.text(alphabet="0123456789²³٣ -x", max_size=6).map(
        lambda value: _text_bytes(f"Content-Length: {value}")
    ),
    st.binary(max_size=40),
)
answers = st.tuples(
    status_lines,
    st.lists(header_lines, max_size=8),
    st.sampled_from([b"\r\n", b"\n"]),
    st.binary(max_size=60),
)


def _render(answer, request: bytes) -> bytes:
    status, headers, newline, body = answer
    message = parse_message(request)
    assert message is not None
    lines = [status]
    for header in headers:
        if isinstance(header, str):
            lines.append(_text_bytes(f"{header}: {message.header(header)}"))
        else:
            lines.append(header)
    return newline.join(lines) + newline + newline + body


class _Answering(asyncio.DatagramProtocol):
    def __init__(self, answer) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        assert self.transport is not None
        self.transport.sendto(_render(self.answer, data), addr)


async def _probe_answered_with(answer) -> ProbeResult:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Answering(answer), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        return await SipProber().probe(
            Target("fuzz", "127.0.0.1"),
            SipSettings(port=port, t1=0.04, t2=0.08),
            0.12,
            logging.getLogger("test.reasons"),
        )
    finally:
        transport.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers)
@example((b"SIP/2.0 200 OK", [*TRANSACTION_HEADERS, b"Content-Length: \xc2\xb2"], b"\r\n", b""))
@example((b"SIP/2.0 200 OK", [*TRANSACTION_HEADERS, b"Server: \xff\xfe"], b"\r\n", b""))
@example((b"SIP/2.0 100 Trying", list(TRANSACTION_HEADERS), b"\r\n", b""))
@example((b"SIP/2.0 200 OK", [*TRANSACTION_HEADERS, b"Content-Length: 0"], b"\n", b""))
def test_any_answer_is_a_result_with_a_reason_from_the_table(answer):
    result = asyncio.run(_probe_answered_with(answer))
    if result.success:
        assert result.reason == "" and 200 <= (result.status_code or 0) <= 699
    else:
        assert reasons.is_known(result.reason), result.reason
        assert result.reason != reasons.PROBER_ERROR
