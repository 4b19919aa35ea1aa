"""What `bridge-exporter validate` accepts, the exporter serves.

Inventories are generated as YAML text (hypothesis): tiers, modules, an endpoint tree,
free labels and sessions, each value either plainly valid, valid but awkward (quotes,
backslashes, HTML, emoji, right-to-left marks, 256 characters) or nasty (control
characters, line ends, NUL, lone surrogates, 20,000 characters, numbers, dates, booleans,
null, tags, YAML syntax where text belongs). For each one:

- the libyaml and the pure-Python loaders give the same verdict and the same problems;
- refused: every problem names the file and a line in it, on one printable bounded line,
  and `bridge-exporter validate` prints exactly those (exit 1);
- accepted: `validate` says OK, and an exporter that reloads it (POST /-/reload) serves a
  /metrics that promtool accepts, with every name and label read back as written, a
  landing page and /probe; refused, the same exporter keeps the old inventory, serves all
  three as validly and shows the failed reload.

The exporters run in-process without their probe loops (the point is rendering; nothing
is probed but /probe's one loopback endpoint); promtool and the CLI run once per batch.
The last test takes the same path through a real exporter process over HTTP.
"""

from __future__ import annotations

import asyncio
import html
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from bridge_exporter.config import ConfigError, Inventory, Problem, load_inventory, yamlnodes
from bridge_exporter.probes.base import ProbeResult
from bridge_exporter.runtime import Exporter
from bridge_exporter.scheduler import Scheduler
from bridge_exporter.web import make_app
from conftest import need_tool
from helpers_exporter import ExporterProcess, Scrape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLI = [str(Path(sys.executable).with_name("bridge-exporter")), "validate"]
FUZZ_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# --- text -----------------------------------------------------------------------------

# Pieces that broke, or could break, a parser, an escaper, an encoder or a page.
NASTY_PIECES = (
    "\\", '"', "'", "\n", "\r", "\r\n", "\t", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f",
    "\u2028", "\u2029", "\ufeff", "\ufffe", "\ud800", "\udfff", "\ud83d\ude00", "#", ": ",
    "- ", "{", "}", "[", "]", ",", "&a", "*a", "!", "|", ">", "%", "@", "`", "?", "<<", "=",
)  # fmt: skip
# Printable, so valid in a name or label value, and awkward everywhere they are shown.
AWKWARD_PIECES = (
    "\\", '"', "'", "\\n", "#", ": ", "{", "}", "[", "]", ",", "&", "*", "!", "|", ">", "%",
    "<script>", "</td>", "&amp;", "Điểm cầu", "Thái Bình", "ệ", "😀", "\u202e", "\u200b",
    "\xa0", "\ufeff", "\ufffe", "\U0010fffd", " ",
)  # fmt: skip
OTHER_YAML_VALUES = (
    "123", "-1", "0", "1e3", "0x1F", "0o17", "010", "1_000", "12:30", "true", "yes", "NO",
    "off", "~", "null", "''", ".nan", ".inf", "-.inf", "2021-03-26", "2021-13-45",
    "2021-03-26 07:30:00", "!!binary aGVsbG8=", "!!int abc", "!!str 5", "!foo bar", "<<",
    "=", "*undefined", "[a, b]", "{a: 1}", "[]", "{}", "9" * 400, "1" * 5000,
)  # fmt: skip
# What the YAML reader refuses raw, or counts as a line end where editors do not.
_RAW_REFUSED = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} - {"\t", "\n", "\r"}
_RAW_REFUSED |= {"\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff"}
_YAML_ESCAPES = {"\0": "\\0", "\x07": "\\a", "\x1b": "\\e", "\x85": "\\N", "\u2028": "\\L"}


def _surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


def double_quoted(text: str, escape: str) -> str:
    """A YAML double-quoted scalar. escape "all": every character the reader refuses raw
    (or a surrogate, which no UTF-8 file can hold) as an escape, so the value is exactly
    `text`; "raw": only surrogates escaped."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif _surrogate(char) or (escape == "all" and (char in _RAW_REFUSED or char in "\n\r")):
            out.append(_YAML_ESCAPES.get(char) or f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def as_yaml(text: str, style: str) -> str:
    if style == "plain":
        return "".join("?" if _surrogate(c) else c for c in text)
    if style == "single":
        return "'" + "".join("?" if _surrogate(c) else c for c in text).replace("'", "''") + "'"
    return double_quoted(text, "raw" if style == "double-raw" else "all")


def _joined(pieces: st.SearchStrategy[str], max_pieces: int) -> st.SearchStrategy[str]:
    return st.lists(pieces, min_size=1, max_size=max_pieces).map("".join)


nasty_text = st.one_of(
    _joined(st.one_of(st.sampled_from(NASTY_PIECES), st.text(max_size=6)), 8),
    st.builds(
        lambda piece, count: piece * count,
        st.sampled_from(["x", "Đ", "\\", "😀"]),
        st.sampled_from([257, 4097, 20_000]),
    ),
)
awkward_text = st.one_of(
    _joined(
        st.one_of(
            st.sampled_from(AWKWARD_PIECES),
            st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=6),
        ),
        8,
    ),
    st.builds(lambda piece: piece * 256, st.sampled_from(["x", "Đ", "😀"])),
).filter(lambda t: t.strip() and len(t) <= 256)
nasty_scalar = st.one_of(
    st.builds(as_yaml, nasty_text, st.sampled_from(["plain", "single", "double", "double-raw"])),
    st.sampled_from(OTHER_YAML_VALUES),
)
awkward_scalar = awkward_text.map(lambda t: double_quoted(t, "all"))
# Session titles follow the rule of names (config/sessions.py: values.text_problem).
awkward_title = awkward_text.map(lambda t: double_quoted(t, "all"))


# --- inventories ----------------------------------------------------------------------

TIER_NAMES = ("central", "province", "district", "commune", "ward", "hamlet")
MODULE_NAMES = ("h323", "sip_tcp", "mgmt-1.v2")
LABEL_NAMES = ("site", "room", "floor_2", "owner")
ADDRESSES = ("127.0.0.1", "127.3.2.1", "::1", "fe80::1%lo", "bridge-1.example", "a-b.example.")
ROOT_ADDRESS = "127.0.0.1"  # /probe probes the root: loopback only, never a name to resolve
NASTY_ADDRESSES = ("999.1.1.1", "1.2.3", "fe80::1%<b>", "a..b", "-a.example", "x" * 300)


@dataclass
class Generated:
    text: str
    nasty_fields: int  # 0: everything is meant to be valid


@st.composite
def inventories(draw: st.DrawFn, max_nasty: int = 3, ip_only: bool = False) -> Generated:
    """Inventory YAML: every field valid (awkward), except up to `max_nasty` nasty ones."""
    nasty_budget = draw(st.integers(0, max_nasty))
    spent = 0

    def pick(valid: st.SearchStrategy[str], nasty: st.SearchStrategy[str]) -> str:
        nonlocal spent
        if spent < nasty_budget and draw(st.integers(0, 7)) == 0:
            spent += 1
            return draw(nasty)
        return draw(valid)

    tier_count = draw(st.integers(2, 6))
    tiers = [pick(st.just(TIER_NAMES[i]), nasty_scalar) for i in range(tier_count)]
    module = pick(st.sampled_from(MODULE_NAMES), nasty_scalar)
    lines = ["interval: 30s", "tiers:"]
    lines += [f"  - name: {tier}\n    modules: [{module}]" for tier in tiers]
    prober = draw(st.sampled_from(["{prober: h323, timeout: 1s}", "{prober: tcp, tcp: {port: 9}}"]))
    lines += ["modules:", f"  {module}: {prober}", "endpoints:"]
    ids: list[str] = []
    levels: list[int] = []
    valid_addresses = st.sampled_from(ADDRESSES[:3] if ip_only else ADDRESSES).map(
        lambda address: double_quoted(address, "all")
    )
    nasty_addresses = st.one_of(
        st.sampled_from(NASTY_ADDRESSES).map(lambda address: double_quoted(address, "all")),
        nasty_scalar,
    )
    for index in range(draw(st.integers(1, 6))):
        level = 0 if index == 0 else draw(st.integers(1, tier_count - 1))
        endpoint_id = pick(st.just(f"e{index}"), nasty_scalar)
        ids.append(endpoint_id)
        levels.append(level)
        lines += [
            f"  - id: {endpoint_id}",
            f"    name: {pick(awkward_scalar, nasty_scalar)}",
            f"    tier: {tiers[level]}",
        ]
        if level:
            parents = [i for i in range(index) if levels[i] < level]
            lines.append(f"    parent: {ids[draw(st.sampled_from(parents))]}")
        address = ROOT_ADDRESS if index == 0 else pick(valid_addresses, nasty_addresses)
        lines.append(f"    address: {address}")
        labels = draw(st.lists(st.sampled_from(LABEL_NAMES), max_size=2, unique=True))
        if labels:
            lines.append("    labels:")
            for label in labels:
                key = pick(st.just(label), st.one_of(nasty_scalar, st.sampled_from(tiers)))
                lines.append(f"      {key}: {pick(awkward_scalar, nasty_scalar)}")
        if draw(st.booleans()):
            lines.append(f"    delegates: {pick(st.integers(0, 5000).map(str), nasty_scalar)}")
        for key, limit in (("latitude", 90), ("longitude", 180)):
            if draw(st.booleans()):
                degrees = st.floats(-limit, limit).map(lambda x: f"{x:.6f}")  # 1e-05 is text
                lines.append(f"    {key}: {pick(degrees, nasty_scalar)}")
    if draw(st.booleans()):
        name = pick(st.just("hoi-nghi-1"), nasty_scalar)
        lines += [
            "sessions:",
            f"  - name: {name}",
            f"    title: {pick(awkward_title, nasty_scalar)}",
            "    start: 2021-03-26 07:30",
            "    end: 2021-03-26 11:30",
            f"    endpoints: [{ids[-1]}]",
        ]
    return Generated("\n".join(lines) + "\n", spent)


# --- checking one inventory -----------------------------------------------------------

BASE = """\
tiers: [central, province]
modules: {h323: {prober: h323, timeout: 1s}}
endpoints:
  - {id: base-root, name: Trung ương, tier: central, address: 127.0.0.1, modules: [h323]}
  - {id: base-leaf, name: Tỉnh, tier: province, parent: base-root, address: 127.0.0.2,
     modules: [h323]}
"""


def verdict(path: Path) -> tuple[Inventory | None, list[Problem]]:
    try:
        return load_inventory(path), []
    except ConfigError as exc:
        return None, exc.problems


def verdicts_of_both_loaders(path: Path) -> tuple[Inventory | None, list[Problem]]:
    fast = yamlnodes._FAST_LOADER
    assert fast is not None, "libyaml (yaml.CSafeLoader) is missing"
    inventory, problems = verdict(path)
    try:
        yamlnodes._FAST_LOADER = None
        pure_inventory, pure_problems = verdict(path)
    finally:
        yamlnodes._FAST_LOADER = fast
    assert (inventory is None, problems) == (pure_inventory is None, pure_problems)
    return inventory, problems


def check_problems(path: Path, text: str, problems: list[Problem]) -> None:
    line_count = text.count("\n") + 1
    for problem in problems:
        assert problem.file == str(path)
        assert 1 <= problem.line <= line_count, problem
        assert problem.message.isprintable(), problem
        assert len(problem.message) <= 1000, problem


def fill_state(exporter: Exporter) -> None:
    """Every other endpoint down (so the landing page lists it), the others up."""
    inventory = exporter.inventory
    for index, endpoint in enumerate(inventory.endpoints.values()):
        for module in inventory.modules_of(endpoint):
            result = (
                ProbeResult(False, 1.0, reason="timeout")
                if index % 2
                else ProbeResult(True, 0.01, status_code=200)
            )
            exporter.state.record(endpoint, module, result)
        exporter.state.finish_round(endpoint, 0.5)


@dataclass
class Served:
    metrics: str
    probe: str


async def serve_after_reload(path: Path, text: str, accepted: bool) -> Served:
    """An exporter started on BASE, reloaded with `text`: what it serves then."""
    path.write_text(BASE, encoding="utf-8")
    exporter = await Exporter.create(path)
    await exporter.start()
    try:
        async with TestClient(TestServer(make_app(exporter, enable_lifecycle=True))) as client:
            path.write_text(text, encoding="utf-8")
            reload = await client.post("/-/reload")
            assert reload.status == (200 if accepted else 500), await reload.text()
            fill_state(exporter)
            inventory = exporter.inventory
            metrics = await client.get("/metrics")
            assert metrics.status == 200
            metrics_text = (await metrics.read()).decode("utf-8")
            check_names_read_back(Scrape(metrics_text), inventory)
            reload_ok = "bridge_exporter_config_last_reload_successful 1.0\n"
            assert (reload_ok in metrics_text) == accepted
            landing = await client.get("/")
            assert landing.status == 200
            page = (await landing.read()).decode("utf-8")
            assert ("Last config reload FAILED" in page) == (not accepted)
            for index, endpoint in enumerate(inventory.endpoints.values()):
                if index % 2:  # down: listed with its name, escaped
                    assert f"<td>{html.escape(endpoint.name)}</td>" in page
            root = next(iter(inventory.endpoints.values()))
            probe = await client.get("/probe", params={"target": root.id})
            assert probe.status == 200, await probe.text()
            probe_text = (await probe.read()).decode("utf-8")
    finally:
        await exporter.stop()
    return Served(metrics_text, probe_text)


def check_names_read_back(scrape: Scrape, inventory: Inventory) -> None:
    """Every name, address and label value comes back exactly as validated, and no series
    is there twice."""
    for endpoint in inventory.endpoints.values():
        labels = scrape.labels_of("bridge_endpoint_info", endpoint.id)
        assert labels["name"] == endpoint.name
        assert labels["address"] == endpoint.address
        for key, value in endpoint.labels.items():
            assert labels.get(key, "") == value
    series = Counter(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in scrape.families.values()
        for sample in family.samples
    )
    assert [key for key, count in series.items() if count > 1] == []


# --- batches --------------------------------------------------------------------------


@dataclass
class Example:
    path: Path
    text: str
    problems: list[Problem]
    served: Served


def promtool_problems(promtool: str, exposition: str) -> str:
    """promtool's complaint about a /metrics body; "" when it parses (lint findings, exit
    code 3, are style advice and fine here)."""
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition.encode(), capture_output=True
    )
    parse_failed = result.returncode not in (0, 3) or b"error while linting" in result.stderr
    return result.stderr.decode(errors="replace") if parse_failed else ""


def renamed(exposition: str, prefix: str) -> str:
    """Every metric name prefixed, so that many bodies can be checked as one."""
    lines = []
    for line in exposition.split("\n"):
        if line.startswith(("# HELP ", "# TYPE ")):
            line = line[:7] + prefix + line[7:]
        elif line and not line.startswith("#"):
            line = prefix + line
        lines.append(line)
    return "\n".join(lines)


def check_with_promtool(promtool: str, bodies: dict[str, str]) -> None:
    """All bodies in one promtool run; on failure, each alone to name the culprit."""
    joined = "".join(renamed(body, f"x{n}_") for n, body in enumerate(bodies.values()))
    if not promtool_problems(promtool, joined):
        return
    failures = {what: promtool_problems(promtool, body) for what, body in bodies.items()}
    failures = {what: problem for what, problem in failures.items() if problem}
    assert failures, "promtool refused the batch but accepted every body alone"
    raise AssertionError(f"promtool refused: {failures}")


def check_cli_agrees(examples: list[Example]) -> None:
    result = subprocess.run(
        [*CLI, *(str(e.path) for e in examples)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == (1 if any(e.problems for e in examples) else 0)
    stdout, stderr = result.stdout.splitlines(), result.stderr.splitlines()
    for example in examples:
        path = str(example.path)
        if example.problems:
            count = len(example.problems)
            expected = [str(p) for p in example.problems]
            expected.append(f"{path}: INVALID ({count} problem{'s' if count != 1 else ''})")
            assert [line for line in stderr if line.startswith(f"{path}:")] == expected
        else:
            (line,) = (line for line in stdout if line.startswith(f"{path}:"))
            assert line.startswith(f"{path}: OK: ")


# --- the tests ------------------------------------------------------------------------


def run_generated(tmp_path: Path, strategy: st.SearchStrategy[Generated]) -> list[Example]:
    examples: list[Example] = []

    @FUZZ_SETTINGS
    @given(strategy)
    def one(generated: Generated) -> None:
        path = tmp_path / f"inventory-{len(examples)}.yml"
        path.write_text(generated.text, encoding="utf-8")
        inventory, problems = verdicts_of_both_loaders(path)
        check_problems(path, generated.text, problems)
        if generated.nasty_fields == 0:  # awkward text is a name, not a mistake
            assert problems == []
        served = asyncio.run(serve_after_reload(path, generated.text, inventory is not None))
        examples.append(Example(path, generated.text, problems, served))

    one()
    return examples


@pytest.fixture
def no_probe_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process exporters render; they do not probe in the background."""
    monkeypatch.setattr(Scheduler, "_start_loop", lambda self, endpoint: None)


def test_whatever_validate_accepts_is_served_and_the_rest_is_refused_with_its_line(
    tmp_path: Path, no_probe_loops: None
) -> None:
    promtool = need_tool("promtool")
    examples = run_generated(tmp_path, inventories())
    verdicts = Counter("refused" if e.problems else "accepted" for e in examples)
    # Both outcomes must really be exercised, or the property proves little.
    assert verdicts["refused"] >= 10 and verdicts["accepted"] >= 10, verdicts
    check_cli_agrees(examples)
    bodies = {f"{e.path} /metrics": e.served.metrics for e in examples}
    bodies.update({f"{e.path} /probe": e.served.probe for e in examples})
    check_with_promtool(promtool, bodies)


# --- through a real exporter process -------------------------------------------------

REFUSED_ON_RELOAD = BASE.replace("name: Tỉnh", 'name: "Tỉnh\\u2028<b>\\ud800"') + (
    f"{'k' * 1000}: 1\n"
)


@settings(max_examples=3, deadline=None, database=None, derandomize=True)
@given(first=inventories(max_nasty=0, ip_only=True), second=inventories(max_nasty=0, ip_only=True))
def test_a_real_exporter_serves_awkward_inventories_and_survives_a_nasty_reload(
    tmp_path_factory: pytest.TempPathFactory, first: Generated, second: Generated
) -> None:
    promtool = need_tool("promtool")
    directory = tmp_path_factory.mktemp("real")
    config = directory / "bridge.yml"
    config.write_text(first.text, encoding="utf-8")
    exporter = ExporterProcess(config, directory, "--web.enable-lifecycle").start()
    try:
        exporter.wait_ready()

        def served_validly(inventory: Inventory) -> str:
            status, body = exporter.get("/metrics")
            assert status == 200
            assert promtool_problems(promtool, body) == ""
            check_names_read_back(Scrape(body), inventory)
            status, page = exporter.get("/")
            assert status == 200
            root = next(iter(inventory.endpoints))
            status, probe = exporter.get(f"/probe?target={root}")
            assert status == 200
            assert promtool_problems(promtool, probe) == ""
            return page

        first_inventory = load_inventory(config)
        served_validly(first_inventory)

        config.write_text(REFUSED_ON_RELOAD, encoding="utf-8")
        status, answer = exporter.get("/-/reload", method="POST")
        assert status == 500
        assert f"{config}:5: the value 'Tỉnh\\u2028<b>\\ud800' holds" in answer
        page = served_validly(first_inventory)
        assert "Last config reload FAILED" in page
        assert "Tỉnh\\u2028&lt;b&gt;\\ud800" in page  # escaped, not a tag, not a line break
        assert f"unknown key &#x27;{'k' * 80}&#x27;…(920 more characters)" in page

        config.write_text(second.text, encoding="utf-8")
        status, answer = exporter.get("/-/reload", method="POST")
        assert status == 200, answer
        assert "Last config reload FAILED" not in served_validly(load_inventory(config))
    finally:
        exporter.kill()
