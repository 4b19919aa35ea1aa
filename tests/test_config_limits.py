"""Bounded resources for any inventory: `bridge-exporter validate` refuses alias bombs,
huge files, deep nesting and huge values with the file, the line and what to do, in
bounded memory, and never repeats a huge value back.

Each file is validated by the real command line in a process limited to 1 GiB of address
space (a regression then fails here instead of eating the machine), with libyaml and,
where that is quick, with the pure-Python parser (the fallback when libyaml is missing).
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from bridge_exporter.runtime import Exporter
from bridge_exporter.web import make_app

CLI = [str(Path(sys.executable).with_name("bridge-exporter")), "validate"]
# The same command with the pure-Python YAML parser.
PURE_CLI = [
    sys.executable,
    "-c",
    "import sys; from bridge_exporter.config import yamlnodes; yamlnodes._FAST_LOADER = None; "
    "from bridge_exporter.cli import main; sys.exit(main(['validate', *sys.argv[1:]]))",
]
MEMORY_LIMIT_BYTES = 1 << 30
BOTH_PARSERS = pytest.mark.parametrize("parser", ["libyaml", "pure"])
HEAD = "tiers: [central, province]\nmodules: {h323: {prober: h323}}\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def validate(path: Path | str, parser: str = "libyaml") -> tuple[str, str]:
    """Run validate on one file; it must fail cleanly with one problem. Returns
    (the problem's location `FILE:LINE`, its message)."""
    command = CLI if parser == "libyaml" else PURE_CLI
    result = subprocess.run(
        [*command, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout == ""
    # Nothing huge is echoed: a bounded message, and no traceback.
    assert len(result.stderr) < 2000, result.stderr[:2000]
    problem, summary = result.stderr.splitlines()
    assert summary == f"{path}: INVALID (1 problem)"
    location, _, message = problem.partition(": ")
    return location, message


def line_of(text: str, marker: str) -> int:
    (line,) = [n for n, line in enumerate(text.split("\n"), 1) if marker in line]
    return line


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yml"
    path.write_text(text, encoding="utf-8")
    return path


@BOTH_PARSERS
def test_billion_laughs_is_refused_at_the_alias_that_passes_a_million_values(
    tmp_path: Path, parser: str
) -> None:
    # a0 is 11 values; each level is ten of the one before: a9 would be 11 billion.
    lines = [HEAD.rstrip("\n"), "a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10)]
    text = "\n".join(lines) + "\n"
    path = write(tmp_path, text)
    location, message = validate(path, parser)
    # a4 stands for 111,111 values: ten of them in a5 pass 1,000,000.
    assert location == f"{path}:{line_of(text, 'a5:')}"
    assert "with alias *a4 (which stands for 111,111 values)" in message
    assert "expands to more than 1,000,000 values" in message
    assert "write the values out or use fewer aliases" in message


@BOTH_PARSERS
def test_merge_keys_multiplying_are_refused_too(tmp_path: Path, parser: str) -> None:
    lines = [HEAD.rstrip("\n"), "m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
    lines += [
        f"m{n}: &m{n} {{<<: *m{n - 1}, x: *m{n - 1}, y: *m{n - 1}, z: *m{n - 1}}}"
        for n in range(1, 16)
    ]
    text = "\n".join(lines) + "\n"
    path = write(tmp_path, text)
    location, message = validate(path, parser)
    assert location.startswith(f"{path}:")
    assert int(location.rpartition(":")[2]) > line_of(text, "m0:")
    assert "expands to more than 1,000,000 values" in message


@BOTH_PARSERS
def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path, parser: str) -> None:
    path = write(tmp_path, HEAD + "x: &loop\n  - a\n  - *loop\n")
    location, message = validate(path, parser)
    assert location == f"{path}:5"
    assert message == (
        "alias *loop is used inside its own anchor &loop, which makes an endless structure; "
        "remove the alias or point it elsewhere"
    )


@BOTH_PARSERS
@pytest.mark.parametrize("shape", ["flow", "block"])
def test_deep_nesting_is_refused_where_it_passes_32_levels(
    tmp_path: Path, parser: str, shape: str
) -> None:
    if shape == "flow":  # one line: [[[[...]]]]
        text = HEAD + "x: " + "[" * 100_000 + "]" * 100_000 + "\n"
        expected_line = 3
    else:  # the mapping on line 1 is level 1, the list opened on line n is level n
        text = "tiers:\n" + "".join("  " * depth + "-\n" for depth in range(1, 200))
        expected_line = 33
    path = write(tmp_path, text)
    location, message = validate(path, parser)
    assert location == f"{path}:{expected_line}"
    assert message == (
        "lists and mappings are nested more than 32 deep here (an inventory needs about 6 "
        "levels); flatten the structure"
    )


def test_too_many_values_are_refused_where_they_pass_a_million(tmp_path: Path) -> None:
    # The root mapping, the key `tiers` and its list are 3 values; the item on line n is
    # value n + 2, so line 999,999 holds the 1,000,001st.
    path = tmp_path / "bridge.yml"
    path.write_text("tiers:\n" + "  - a\n" * 1_100_000, encoding="utf-8")
    location, message = validate(path)
    assert location == f"{path}:999999"
    assert message.startswith("the file passes 1,000,000 values (keys, values, lists and")
    assert message.endswith("split it")


@BOTH_PARSERS
def test_a_file_over_16_mib_is_refused_at_the_line_where_it_passes(
    tmp_path: Path, parser: str
) -> None:
    comment = "# " + "x" * 97 + "\n"  # 100 bytes
    path = tmp_path / "bridge.yml"
    with path.open("w", encoding="utf-8") as file:
        file.write(HEAD)
        for _ in range(17 * 1024 * 1024 // len(comment)):
            file.write(comment)
    lines_in_16_mib = path.read_bytes()[: 16 * 1024 * 1024].count(b"\n")
    location, message = validate(path, parser)
    assert location == f"{path}:{lines_in_16_mib + 1}"
    assert message.startswith("the file is larger than 16 MiB (it passes that size on this line)")
    assert "check that this is the right file, or split it" in message


def test_a_device_that_never_ends_is_read_no_further_than_the_limit() -> None:
    location, message = validate("/dev/zero")
    assert location == "/dev/zero:1"
    assert message.startswith("the file is larger than 16 MiB")


@pytest.mark.parametrize(
    ("parser", "text", "line", "length"),
    [
        ("libyaml", HEAD + "? " + "k" * 10_000_000 + "\n: 1\n", 3, "10,000,000"),  # a key
        *(
            (parser, HEAD + "endpoints:\n  - name: " + "Đ" * 2_000_000 + "\n", 4, "2,000,000")
            for parser in ("libyaml", "pure")
        ),
        *(
            (parser, HEAD + 'endpoints:\n  - {name: "' + "x" * 2_000_000 + '"}\n', 4, "2,000,000")
            for parser in ("libyaml", "pure")
        ),
    ],
)
def test_a_value_of_millions_of_characters_is_refused_not_repeated(
    tmp_path: Path, parser: str, text: str, line: int, length: str
) -> None:
    path = write(tmp_path, text)
    location, message = validate(path, parser)
    assert location == f"{path}:{line}"
    assert message == (
        f"a value of {length} characters starts here; values are limited to 4,096 "
        "characters: shorten it"
    )


def test_a_long_unknown_key_is_repeated_only_in_part(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "? " + "k" * 4000 + "\n: 1\nendpoints: []\n")
    result = subprocess.run(
        [*CLI, str(path)], capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{path}:3: unknown key '{'k' * 80}'…(3,920 more characters) in the inventory" in (
        "\n".join(lines)
    )
    assert max(len(line) for line in lines) < 400


def test_a_thousand_problems_are_listed_then_how_many_more(tmp_path: Path) -> None:
    endpoints = "".join(
        f"  - {{id: e{n}, name: E, tier: central, address: 999.0.0.{n}, modules: [h323]}}\n"
        for n in range(1500)
    )
    path = write(tmp_path, HEAD + "endpoints:\n" + endpoints)
    result = subprocess.run(
        [*CLI, str(path)], capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1002  # 1,000 problems, how many more, the summary
    assert lines[999].startswith(f"{path}:1003: endpoint 'e999': '999.0.0.999' is not a valid")
    assert lines[1000] == (
        f"{path}:1004: …and 500 more problems from this line on; fix the ones above and "
        "validate again"
    )


async def test_the_landing_page_lists_a_failed_reloads_first_problems_shortened(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        HEAD + "endpoints:\n  - {id: e, name: E, tier: central, address: 127.0.0.1, "
        "modules: [h323]}\n",
    )
    exporter = await Exporter.create(path)
    # 500 unknown keys of 1,000 characters each: 500 problems, 500 KB if echoed whole.
    keys = "".join(f"? {n:03d}{'k' * 997}\n: 1\n" for n in range(500))
    path.write_text(path.read_text(encoding="utf-8") + keys, encoding="utf-8")
    async with TestClient(TestServer(make_app(exporter, enable_lifecycle=True))) as client:
        reload = await client.post("/-/reload")
        assert reload.status == 500
        page = await (await client.get("/")).text()
    assert "Last config reload FAILED" in page
    assert f"{path}:5: unknown key &#x27;000{'k' * 77}&#x27;…(920 more characters)" in page
    assert f"{path}:43: unknown key &#x27;019{'k' * 77}" in page  # the 20th
    assert f"{path}:45: unknown key" not in page
    assert "… and 480 more: run bridge-exporter validate on the file to see them all" in page
    assert len(page) < 50_000
