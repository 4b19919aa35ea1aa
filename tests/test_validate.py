"""`bridge-exporter validate` and the inventory loader: every kind of mistake is reported
with the line to fix and what to do, all of them in one run.

Each mistake is a one-spot edit of a small valid inventory. It is checked through the
Python API (ConfigError.problems) and, in one batch, through the command line
(`FILE:LINE: message` on stderr, exit code 1).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from bridge_exporter.config import ConfigError, Problem, load_inventory, parse_inventory
from bridge_exporter.config import loader as loader_module
from bridge_exporter.probes import KINDS, Seconds
from bridge_exporter.probes.tcp import TcpSettings
from conftest import EXAMPLES, REPO, missing

CLI = [str(Path(sys.executable).with_name("bridge-exporter")), "validate"]

# Three tiers; tcp, h323 and http modules only. Names are Vietnamese with diacritics.
BASE = """\
interval: 20s
concurrency: 64
thresholds:
  rtt_warning: 250ms
  rtt_critical: 700ms
  loss_warning: 0.02
tiers:
  - name: central
    modules: [sip_tcp]
  - name: province
    modules: [sip_tcp, h323]
  - name: commune
    modules: [sip_tcp]
    thresholds:
      rtt_warning: 400ms
modules:
  sip_tcp:
    prober: tcp
    timeout: 3s
    tcp: {port: 5060}
  h323:
    prober: h323
    timeout: 2s
    required: false
  mgmt:
    prober: http
    timeout: 2500ms
    http:
      url: "http://{address}:8080/status"
      valid_status_codes: [200, 204]
endpoints:
  - id: dien-hong
    name: Phòng họp Diên Hồng, Nhà Quốc hội
    tier: central
    address: 127.0.0.1
    labels: {site: nha-quoc-hoi}
  - id: tb-tinh-uy
    name: Hội trường Tỉnh ủy Thái Bình
    tier: province
    parent: dien-hong
    address: "::1"
    delegates: 250
  - id: tb-ubnd
    name: Trung tâm Hội nghị tỉnh Thái Bình
    tier: province
    parent: dien-hong
    address: bridge-01.example
    modules: [sip_tcp, mgmt]
  - id: xa-vu-thu
    name: Điểm cầu xã Vũ Thư
    tier: commune
    parent: tb-tinh-uy
    address: 127.0.0.3
    delegates: 85
    overrides:
      sip_tcp: {port: 5061}
  - id: xa-dong-hung
    name: Điểm cầu xã Đông Hưng
    tier: commune
    parent: tb-tinh-uy
    address: fe80::1
"""
BASE_OK_LINE = "OK: 5 endpoints (1 central, 2 province, 2 commune)"


def edit(*changes: tuple[str, str]) -> str:
    """BASE with each `old` replaced by `new`; `old` must occur exactly once."""
    text = BASE
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in BASE"
        text = text.replace(old, new)
    return text


def line_of(text: str, marker: str) -> int:
    """The 1-based line holding `marker`, which must be on exactly one line."""
    lines = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(lines) == 1, f"{marker!r} is on lines {lines}"
    return lines[0]


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_inventory(text, "bridge.yml")
    problems = caught.value.problems
    assert all(p.file == "bridge.yml" for p in problems)
    assert str(caught.value) == "\n".join(str(p) for p in problems)
    return problems


@dataclass(frozen=True)
class Mistake:
    id: str
    text: str
    marker: str  # the problem's line is the one holding this
    words: tuple[str, ...]  # what is wrong and what to do, each verbatim in the message


def mistake(id: str, changes: list[tuple[str, str]], marker: str, *words: str) -> Mistake:
    return Mistake(id, edit(*changes), marker, words)


def _tier_renamed(id: str, name: str, *words: str) -> Mistake:
    text = BASE.replace("- name: commune", f"- name: {name}").replace(
        "tier: commune", f"tier: {name}"
    )
    return Mistake(id, text, f"- name: {name}", words)


_TCP_KNOWN = ", ".join(sorted(f.name for f in dataclasses.fields(TcpSettings)))
_VU_THU_ADDRESS = "address: 127.0.0.3"

# Mistakes that are the only problem in their file.
SINGLE_MISTAKES = [
    mistake(
        "unknown-parent",
        [
            (
                "parent: tb-tinh-uy\n    address: 127.0.0.3",
                "parent: tb-tinh-uyy\n    address: 127.0.0.3",
            )
        ],
        "parent: tb-tinh-uyy",
        "endpoint 'xa-vu-thu': parent 'tb-tinh-uyy' is not an endpoint id in this file",
        "fix the id or add that endpoint",
    ),
    mistake(
        "missing-parent",
        [('    parent: dien-hong\n    address: "::1"', '    address: "::1"')],
        "- id: tb-tinh-uy",
        "endpoint 'tb-tinh-uy' has no parent",
        "add `parent:` with the id of the endpoint above it",
    ),
    mistake(
        "parent-on-top-tier",
        [("    tier: central\n", "    tier: central\n    parent: tb-ubnd\n")],
        "parent: tb-ubnd",
        "endpoint 'dien-hong' is in the top tier 'central' and cannot have a parent",
        "remove `parent:` or change its tier",
    ),
    mistake(
        "child-in-same-tier-as-parent",
        [
            (
                "parent: dien-hong\n    address: bridge-01",
                "parent: tb-tinh-uy  # same tier\n    address: bridge-01",
            )
        ],
        "# same tier",
        "endpoint 'tb-ubnd' (tier province) cannot sit below 'tb-tinh-uy' (tier province)",
        "a parent must be in a higher tier",
    ),
    mistake(
        "child-in-higher-tier-than-parent",
        [
            (
                "parent: dien-hong\n    address: bridge-01",
                "parent: xa-vu-thu\n    address: bridge-01",
            )
        ],
        "parent: xa-vu-thu",
        "endpoint 'tb-ubnd' (tier province) cannot sit below 'xa-vu-thu' (tier commune)",
        "a parent must be in a higher tier",
    ),
    mistake(
        "duplicate-id",
        [("- id: xa-dong-hung", "- id: xa-vu-thu  # again")],
        "# again",
        f"duplicate endpoint id 'xa-vu-thu' (first at line {line_of(BASE, '- id: xa-vu-thu')})",
        "ids must be unique",
    ),
    *(
        mistake(
            f"bad-address-{n}",
            [(_VU_THU_ADDRESS, f"address: {written}")],
            f"address: {written}",
            f"endpoint 'xa-vu-thu': {shown!r} is not a valid {what}",
            fix,
        )
        for n, (written, shown, what, fix) in enumerate(
            [
                ("999.1.1.1", "999.1.1.1", "IP address", "fix the numbers"),
                ('"not a host!"', "not a host!", "host name", "letters, digits and hyphens"),
                ("'1.2.3'", "1.2.3", "IP address", "fix the numbers"),
                ('":::1::"', ":::1::", "IP address", "fix the numbers"),
            ]
        )
    ),
    mistake(
        "unknown-module-on-endpoint",
        [("modules: [sip_tcp, mgmt]", "modules:\n      - sip_tcp\n      - mgmtt")],
        "- mgmtt",
        "endpoint 'tb-ubnd': unknown module 'mgmtt'",
        "defined modules: sip_tcp, h323, mgmt",
    ),
    mistake(
        "unknown-module-on-tier",
        [("modules: [sip_tcp, h323]", "modules:\n      - sip_tcp\n      - h232")],
        "- h232",
        "tier province: unknown module 'h232'",
        "defined modules: sip_tcp, h323, mgmt",
    ),
    mistake(
        "unknown-top-level-key",
        [("concurrency: 64\n", "concurrency: 64\nintervall: 10s\n")],
        "intervall:",
        "unknown key 'intervall' in the inventory",
        "allowed: concurrency, endpoints, interval, modules, sessions, thresholds, tiers",
    ),
    mistake(
        "unknown-tier-key",
        [("  - name: province\n", "  - name: province\n    colour: blue\n")],
        "colour: blue",
        "unknown key 'colour' in a tier",
        "allowed: availability_target, modules, name, rtt_histogram, thresholds",
    ),
    mistake(
        "unknown-module-key",
        [("    required: false\n", "    required: false\n    retries: 3\n")],
        "retries: 3",
        "unknown key 'retries' in module 'h323'",
        "allowed: h323, prober, required, timeout",
    ),
    mistake(
        "unknown-endpoint-key",
        [("    delegates: 85\n", "    delegates: 85\n    adress: 127.0.0.9\n")],
        "adress:",
        "unknown key 'adress' in an endpoint",
        "allowed: address, delegates, id, labels, latitude, longitude, modules, name, "
        "overrides, parent, tier",
    ),
    mistake(
        "unknown-threshold-key",
        [("  loss_warning: 0.02\n", "  loss_warning: 0.02\n  mos_warn: 3.5\n")],
        "mos_warn",
        "unknown key 'mos_warn' in thresholds",
        "allowed: jitter_critical, jitter_warning, loss_critical, loss_warning, mos_critical, "
        "mos_warning, rtt_critical, rtt_warning",
    ),
    mistake(
        "unknown-prober-setting",
        [("tcp: {port: 5060}", "tcp:\n      port: 5060\n      prot: 5061")],
        "prot: 5061",
        "module 'sip_tcp': unknown setting 'prot'",
        f"known settings: {_TCP_KNOWN}",
    ),
    mistake(
        "unknown-setting-in-override",
        [("sip_tcp: {port: 5061}", "sip_tcp: {port: 5061, tsl: true}")],
        "tsl: true",
        "endpoint 'xa-vu-thu': sip_tcp: unknown setting 'tsl'",
        f"known settings: {_TCP_KNOWN}",
    ),
    mistake(
        "override-of-a-module-not-used",
        [("sip_tcp: {port: 5061}", "mgmt: {method: HEAD}")],
        "mgmt: {method: HEAD}",
        "endpoint 'xa-vu-thu': override for 'mgmt', which is not one of its modules",
        "add it to `modules:` or remove the override",
    ),
    mistake(
        # One problem: the tiers and endpoints that use the module are not blamed again.
        "unknown-prober-kind",
        [("prober: tcp\n", "prober: tcpp\n")],
        "prober: tcpp",
        f"module 'sip_tcp': prober must be one of {', '.join(KINDS)}, not 'tcpp'",
    ),
    *(
        mistake(
            f"bad-{key}-{n}",
            [(f"{old}\n", f"{key}: {written}\n")],
            f"{key}: {written}",
            f"{key}: {shown} is ",
            what,
        )
        for key, old in (("interval", "interval: 20s"), ("timeout", "timeout: 2500ms"))
        for n, (written, shown, what) in enumerate(
            [
                ("5 seconds", "'5 seconds'", "not a duration; write e.g. 200ms, 5s"),
                ("-1s", "'-1s'", "negative; durations must be >= 0"),
                ("abc", "'abc'", "not a duration; write e.g. 200ms, 5s"),
                ("true", "True", "not a duration; write e.g. 200ms, 5s"),
            ]
        )
    ),
    *(
        _tier_renamed(
            f"illegal-tier-name-{name}",
            name,
            f"tier name {name!r} is not a legal Prometheus label name",
            "use letters, digits and _ (not starting with a digit or __)",
        )
        for name in ("1st", "dis-trict", "__x")
    ),
    *(
        _tier_renamed(
            f"reserved-tier-name-{name}",
            name,
            f"tier name {name!r} is reserved by the exporter",
            "rename it",
        )
        for name in ("endpoint", "tier")
    ),
    Mistake(
        "one-tier",
        "tiers:\n  - name: central\n    modules: [sip_tcp]\n"
        "modules:\n  sip_tcp: {prober: tcp, tcp: {port: 5060}}\n"
        "endpoints:\n  - {id: a, name: A, tier: central, address: 127.0.0.1}\n",
        "tiers:",
        ("there must be 2 to 6 tiers, not 1",),
    ),
    mistake(
        "seven-tiers",
        [
            (
                "  - name: commune\n",
                "".join(f"  - name: level{n}\n" for n in range(4, 8)) + "  - name: commune\n",
            )
        ],
        "tiers:",
        "there must be 2 to 6 tiers, not 7",
    ),
    mistake(
        "duplicate-yaml-key",
        [("    delegates: 85\n", "    delegates: 85\n    address: 127.0.0.9  # again\n")],
        "# again",
        f"duplicate key 'address' (first at line {line_of(BASE, _VU_THU_ADDRESS)})",
        "keep only one",
    ),
    mistake(
        "yaml-syntax-error",
        [("name: Điểm cầu xã Vũ Thư", "name: Điểm cầu: xã Vũ Thư")],
        "Điểm cầu: xã",
        "YAML syntax error: mapping values are not allowed here",
        "fix the syntax",
    ),
    mistake(
        "yaml-tab-indent",
        [("    name: Điểm cầu xã Vũ Thư", "\tname: Điểm cầu xã Vũ Thư")],
        "\tname:",
        "YAML syntax error",
        "indent and separate with spaces, not tabs",
    ),
    mistake(
        "yaml-unclosed-quote",
        [("name: Điểm cầu xã Vũ Thư", 'name: "Điểm cầu xã Vũ Thư')],
        'name: "Điểm',
        "YAML syntax error",
        f"quoted scalar at line {line_of(BASE, 'Điểm cầu xã Vũ Thư')}",
    ),
    mistake(
        "rtt-warning-above-inherited-critical",
        [("      rtt_warning: 400ms", "      rtt_warning: 900ms")],
        "rtt_warning: 900ms",
        "rtt_warning (0.9) must not be above rtt_critical (0.7)",
        "lower rtt_warning or raise rtt_critical",
    ),
    mistake(
        "jitter-warning-above-default-critical",
        [("  loss_warning: 0.02\n", "  loss_warning: 0.02\n  jitter_warning: 60ms\n")],
        "jitter_warning: 60ms",
        "jitter_warning (0.06) must not be above jitter_critical (0.05)",
        "lower jitter_warning or raise jitter_critical",
    ),
    mistake(
        "loss-warning-above-critical",
        [("  loss_warning: 0.02\n", "  loss_warning: 0.2\n")],
        "loss_warning: 0.2",
        "loss_warning (0.2) must not be above loss_critical (0.05)",
        "lower loss_warning or raise loss_critical",
    ),
    mistake(
        "loss-above-one",
        [("      rtt_warning: 400ms", "      rtt_warning: 400ms\n      loss_critical: 5")],
        "loss_critical: 5",
        "loss_critical must be a ratio from 0 to 1 (0.01 = 1 %)",
    ),
    *(
        mistake(
            f"label-named-{label}",
            [("labels: {site: nha-quoc-hoi}", f"labels: {{site: nha-quoc-hoi, {label}: x}}")],
            "labels:",
            f"endpoint 'dien-hong': label {label!r} collides with the {label!r} label that "
            f"{owner} puts on every series",
            "rename it",
        )
        for label, owner in (
            ("province", "a tier"),
            ("commune", "a tier"),
            ("endpoint", "the exporter"),
            ("tier", "the exporter"),
            ("job", "the exporter"),
        )
    ),
    mistake(
        "label-illegal-name",
        [("labels: {site: nha-quoc-hoi}", "labels:\n      site: nha-quoc-hoi\n      phòng: A1")],
        "phòng: A1",
        "endpoint 'dien-hong': label 'phòng' is not a legal label name",
        "use letters, digits and _",
    ),
    mistake(
        "numeric-id",
        [("- id: xa-dong-hung", "- id: 12345")],
        "id: 12345",
        "endpoint 12345: `id` must be text; quote it: id: '12345'",
    ),
    mistake(
        "tier-as-a-list",
        [
            (
                "    tier: commune\n    parent: tb-tinh-uy\n    address: fe80",
                "    tier: [commune]\n    parent: tb-tinh-uy\n    address: fe80",
            )
        ],
        "tier: [commune]",
        "endpoint 'xa-dong-hung': `tier` must be a single value, not a list",
    ),
    mistake(
        "parent-as-a-list",
        [("parent: tb-tinh-uy\n    address: fe80", "parent: [tb-tinh-uy]\n    address: fe80")],
        "parent: [tb-tinh-uy]",
        "endpoint 'xa-dong-hung': `parent` must be a single value, not a list",
    ),
    mistake(
        "list-as-a-yaml-key",
        [("concurrency: 64\n", "concurrency: 64\n[interval, timeout]: 5s\n")],
        "[interval, timeout]",
        "a key must be a plain word, not a list or map",
    ),
    # --- text: what validate accepts must render (see also test_inventory_fuzz.py) -----
    _tier_renamed(  # `$` in a pattern also matches before a final line break
        "tier-name-with-a-final-line-break",
        '"commune\\n"',
        "tier name 'commune\\n' is not a legal Prometheus label name",
    ),
    mistake(
        "endpoint-id-with-a-final-line-break",
        [("- id: xa-dong-hung", '- id: "xa-dong-hung\\n"')],
        '- id: "xa-dong-hung',
        "endpoint id 'xa-dong-hung\\n' may use only letters, digits",
    ),
    mistake(
        "address-with-a-final-line-break",
        [("address: bridge-01.example", 'address: "bridge-01.example\\n"')],
        'address: "bridge-01',
        "'bridge-01.example\\n' is not a valid host name",
    ),
    mistake(
        "address-with-a-junk-zone",
        [("address: fe80::1", 'address: "fe80::1%<b>"')],
        "fe80::1%",
        "'fe80::1%<b>': the zone after % must be an interface name or number",
    ),
    *(
        mistake(
            f"name-with-{what}",
            [("name: Điểm cầu xã Vũ Thư", f'name: "Điểm cầu{escape}xã Vũ Thư"')],
            "Vũ Thư",
            f"endpoint 'xa-vu-thu': name holds {words} at character 9",
            "write it as one line of plain text",
        )
        for what, escape, words in [
            ("a-line-break", "\\n", "a line break (U+000A)"),
            ("a-carriage-return", "\\r", "a carriage return (U+000D)"),
            ("a-nel", "\\N", "a NEL line break (U+0085)"),
            ("a-line-separator", "\\L", "a Unicode line separator (U+2028)"),
            ("a-tab", "\\t", "a tab (U+0009)"),
            ("an-escape-character", "\\e", "a control character (U+001B)"),
        ]
    ),
    mistake(
        "name-too-long",
        [("name: Điểm cầu xã Vũ Thư", f"name: {'Đ' * 300}")],
        "name: ĐĐĐ",
        "endpoint 'xa-vu-thu': name is 300 characters long; shorten it to at most 256",
    ),
    mistake(
        "name-blank",
        [("name: Điểm cầu xã Vũ Thư", "name: '   '")],
        "name: '   '",
        "endpoint 'xa-vu-thu': name is blank",
    ),
    *(
        mistake(
            f"label-value-{what}",
            [("labels: {site: nha-quoc-hoi}", f"labels: {{site: {written}}}")],
            "labels:",
            f"endpoint 'dien-hong': label {words}",
        )
        for what, written, words in [
            ("a-number", "3", "`site` must be text; quote it: site: '3'"),
            ("a-boolean", "no", "`site` must be text, but YAML reads this value as true or false"),
            ("two-lines", '"a\\nb"', "'site' holds a line break (U+000A) at character 2"),
            ("too-long", f"'{'x' * 257}'", "'site' is 257 characters long; shorten it to at most"),
        ]
    ),
    mistake(
        "module-name-not-plain",
        [("  mgmt:\n", "  h 323: {prober: h323}\n  mgmt:\n")],
        "h 323:",
        "module name 'h 323' may use only letters, digits, '-', '_' and '.'",
        "rename it",
    ),
    mistake(
        "module-name-a-number",
        [("  mgmt:\n", "  5060: {prober: h323}\n  mgmt:\n")],
        "5060:",
        "module name 5060 may use only letters, digits",
    ),
    mistake(
        "delegates-beyond-any-hall",
        [("delegates: 250", "delegates: 1000000000000000000000000000000")],
        "delegates: 1000",
        "endpoint 'tb-tinh-uy': delegates must be a whole number from 0 to 1,000,000",
    ),
    mistake(
        "not-a-date",
        [("name: Điểm cầu xã Vũ Thư", "name: 2021-13-45")],
        "2021-13-45",
        "YAML reads '2021-13-45' as a date, but it is not a valid one",
        "put it in quotes if it is text",
    ),
    mistake(
        "tagged-not-a-number",
        [("parent: tb-tinh-uy\n    address: 127", "parent: !!int tb-tinh-uy\n    address: 127")],
        "!!int tb-tinh-uy",
        "YAML reads 'tb-tinh-uy' as a whole number, but it is not a valid one",
    ),
    mistake(
        "unknown-tag",
        [("name: Điểm cầu xã Vũ Thư", "name: !vault Điểm cầu xã Vũ Thư")],
        "!vault",
        "the tag '!vault' cannot be used here",
        "remove it",
    ),
    mistake(
        "merge-key-as-a-value",
        [("name: Điểm cầu xã Vũ Thư", "name: <<")],
        "name: <<",
        "'<<' is YAML syntax, not a value; put it in quotes if it is text",
    ),
    mistake(
        "lone-surrogate-escape",
        [("name: Điểm cầu xã Vũ Thư", 'name: "Vũ Thư \\ud83d"')],
        "Vũ Thư",
        "holds a lone UTF-16 surrogate (U+D83D), which no text may hold",
        "write the character itself",
    ),
    mistake(
        "nul-escape",
        [("name: Điểm cầu xã Vũ Thư", 'name: "Vũ Thư\\0"')],
        "Vũ Thư",
        "holds a NUL character (U+0000), which no text may hold; remove it",
    ),
    *(
        mistake(
            f"raw-{what}",
            [("name: Điểm cầu xã Vũ Thư", f"name: Vũ Thư{char}xã")],
            "name: Vũ Thư",
            f"column 17 holds {words}",
            fix,
        )
        for what, char, words, fix in [
            ("escape-character", "\x1b", "a control character (U+001B)", "remove it"),
            ("byte-order-mark", "\ufeff", "a byte order mark (U+FEFF)", "remove it"),
            ("line-separator", "\u2028", "a Unicode line separator (U+2028)", "line numbers"),
            ("nel", "\x85", "a NEL line break (U+0085)", "replace it with a normal line end"),
            ("carriage-return", "\r", "a carriage return (U+000D)", "line numbers"),
        ]
    ),
    mistake(
        "long-unknown-key-is-not-echoed-whole",
        [("    delegates: 85\n", f"    delegates: 85\n    {'k' * 1000}: 1\n")],
        "kkkk",
        f"unknown key '{'k' * 80}'…(920 more characters) in an endpoint",
        "allowed: address, delegates",
    ),
]


@pytest.mark.parametrize("case", SINGLE_MISTAKES, ids=lambda c: c.id)
def test_each_mistake_is_one_problem_on_its_line(case: Mistake) -> None:
    problems = problems_of(case.text)
    assert [p.line for p in problems] == [line_of(case.text, case.marker)], problems
    for word in case.words:
        assert word in problems[0].message


CYCLE_IN_ONE_TIER = edit(
    ("parent: tb-tinh-uy\n    address: 127.0.0.3", "parent: xa-dong-hung\n    address: 127.0.0.3"),
    ("parent: tb-tinh-uy\n    address: fe80::1", "parent: xa-vu-thu\n    address: fe80::1"),
)
CYCLE_ACROSS_TIERS = edit(
    ('parent: dien-hong\n    address: "::1"', 'parent: xa-vu-thu\n    address: "::1"')
)


def test_a_parent_cycle_in_one_tier_is_reported_as_a_cycle_with_its_chain() -> None:
    text = CYCLE_IN_ONE_TIER
    problems = problems_of(text)
    cycles = [p for p in problems if "cycle" in p.message]
    assert len(cycles) == 1, problems
    assert cycles[0].line == line_of(text, "parent: xa-dong-hung")
    assert "parent cycle: xa-vu-thu -> xa-dong-hung -> xa-vu-thu" in cycles[0].message
    assert "every chain must end at a top-tier endpoint" in cycles[0].message
    # Each link is also in the wrong tier order; that is reported too, on its own line.
    order = sorted((p.line, p.message) for p in problems if p is not cycles[0])
    assert [line for line, _ in order] == [
        line_of(text, "parent: xa-dong-hung"),
        line_of(text, "parent: xa-vu-thu"),
    ]
    assert all("a parent must be in a higher tier" in message for _, message in order)


def test_a_cycle_across_tiers_names_every_link_once() -> None:
    problems = problems_of(CYCLE_ACROSS_TIERS)
    cycles = [p for p in problems if "cycle" in p.message]
    assert len(cycles) == 1, problems
    assert cycles[0].line == line_of(CYCLE_ACROSS_TIERS, "parent: xa-vu-thu")
    assert "parent cycle: tb-tinh-uy -> xa-vu-thu -> tb-tinh-uy" in cycles[0].message
    # The only other problem: tb-tinh-uy (province) is placed below a commune.
    (order,) = (p for p in problems if p is not cycles[0])
    assert "'tb-tinh-uy' (tier province) cannot sit below 'xa-vu-thu'" in order.message


@pytest.mark.parametrize("tiers", [2, 6])
def test_two_and_six_tiers_are_accepted(tiers: int) -> None:
    names = ["central", "region", "province", "district", "ward", "commune"][:tiers]
    lines = ["tiers:", *(f"  - {{name: {n}, modules: [sip_tcp]}}" for n in names)]
    lines += ["modules:", "  sip_tcp: {prober: tcp, tcp: {port: 5060}}", "endpoints:"]
    parent = ""
    for n in names:
        lines.append(f"  - {{id: {n}-1, name: {n}, tier: {n}, address: 127.0.0.1{parent}}}")
        parent = f", parent: {n}-1"
    inventory = parse_inventory("\n".join(lines) + "\n")
    assert inventory.tier_names == tuple(names)
    bottom = inventory.endpoints[f"{names[-1]}-1"]
    assert bottom.ancestors == tuple(f"{n}-1" for n in names[:-1])
    assert inventory.tier_labels(bottom) == {n: f"{n}-1" for n in names}


def test_the_valid_base_loads_with_every_field() -> None:
    inventory = parse_inventory(BASE)
    assert inventory.tier_names == ("central", "province", "commune")
    assert inventory.interval == 20.0 and inventory.concurrency == 64
    assert list(inventory.endpoints) == [
        "dien-hong", "tb-tinh-uy", "tb-ubnd", "xa-vu-thu", "xa-dong-hung",
    ]  # fmt: skip
    assert [e.address for e in inventory.endpoints.values()] == [
        "127.0.0.1", "::1", "bridge-01.example", "127.0.0.3", "fe80::1",
    ]  # fmt: skip
    vu_thu = inventory.endpoints["xa-vu-thu"]
    assert vu_thu.ancestors == ("dien-hong", "tb-tinh-uy")
    assert vu_thu.modules == ("sip_tcp",)  # from its tier
    assert inventory.endpoints["tb-ubnd"].modules == ("sip_tcp", "mgmt")  # its own list
    assert inventory.endpoints["dien-hong"].labels == {"site": "nha-quoc-hoi"}
    h323 = inventory.modules["h323"]
    assert (h323.prober, h323.timeout, h323.required, h323.settings.port) == (
        "h323", 2.0, False, 1720,
    )  # fmt: skip
    mgmt = inventory.modules["mgmt"]
    assert mgmt.timeout == 2.5 and mgmt.settings.valid_status_codes == [200, 204]


def test_vietnamese_names_load_intact_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yml"
    path.write_bytes(BASE.encode("utf-8"))
    names = {e.id: e.name for e in load_inventory(path).endpoints.values()}
    assert names["dien-hong"] == "Phòng họp Diên Hồng, Nhà Quốc hội"
    assert names["tb-tinh-uy"] == "Hội trường Tỉnh ủy Thái Bình"
    assert names["xa-dong-hung"] == "Điểm cầu xã Đông Hưng"
    # Windows Notepad's UTF-8 starts with a byte order mark: still the same inventory.
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_inventory(path).endpoints["xa-vu-thu"].name == "Điểm cầu xã Vũ Thư"


def test_an_override_changes_only_that_endpoints_module() -> None:
    inventory = parse_inventory(BASE)
    vu_thu, dong_hung = inventory.endpoints["xa-vu-thu"], inventory.endpoints["xa-dong-hung"]
    (overridden,) = inventory.modules_of(vu_thu)
    (shared,) = inventory.modules_of(dong_hung)
    assert overridden.settings.port == 5061
    assert shared.settings.port == 5060
    assert inventory.modules["sip_tcp"].settings.port == 5060  # the module itself unchanged
    # Everything else is the module's: prober, timeout, required, other settings.
    assert (overridden.name, overridden.prober, overridden.timeout, overridden.required) == (
        "sip_tcp", "tcp", 3.0, True,
    )  # fmt: skip
    assert dataclasses.replace(overridden.settings, port=5060) == shared.settings


def test_thresholds_inherit_from_the_top_level_per_tier() -> None:
    inventory = parse_inventory(BASE)
    central, commune = inventory.tier("central").thresholds, inventory.tier("commune").thresholds
    assert (central.rtt_warning_seconds, central.rtt_critical_seconds) == (0.25, 0.7)
    assert (central.loss_warning_ratio, central.loss_critical_ratio) == (0.02, 0.05)
    assert (central.jitter_warning_seconds, central.jitter_critical_seconds) == (0.03, 0.05)
    assert commune.rtt_warning_seconds == 0.4  # its own
    assert dataclasses.replace(commune, rtt_warning_seconds=0.25) == central  # the rest


def test_yaml_merge_keys_are_templates_not_syntax_errors() -> None:
    text = edit(
        ("  - id: xa-dong-hung\n", "  - id: xa-dong-hung\n    <<: *commune\n"),
        ("    tier: commune\n    parent: tb-tinh-uy\n    address: 127.0.0.3", "    <<: &commune\n"
         "      tier: commune\n      parent: tb-tinh-uy\n    address: 127.0.0.3"),
        ("    tier: commune\n    parent: tb-tinh-uy\n    address: fe80::1", "    tier: commune\n"
         "    address: fe80::1"),
    )  # fmt: skip
    inventory = parse_inventory(text)
    assert inventory.endpoints["xa-dong-hung"].ancestors == ("dien-hong", "tb-tinh-uy")
    # The mapping's own key wins over the template's; a problem in it points at its line.
    text = text.replace("    tier: commune\n    address: fe80::1", "    parent: nowhere\n"
                        "    address: fe80::1")  # fmt: skip
    (problem,) = problems_of(text)
    assert problem.line == line_of(text, "parent: nowhere")


# --- a Seconds-typed prober setting (no tcp/h323/http setting is one) ------------------


_DEFAULT_GAP = Seconds(0.2)


@dataclass
class _TimerSettings:
    gap: Seconds = _DEFAULT_GAP


class _TimerProber:
    kind = "timer"
    Settings = _TimerSettings


@pytest.fixture
def timer_prober(monkeypatch: pytest.MonkeyPatch) -> None:
    real = loader_module.prober_class
    monkeypatch.setitem(KINDS, "timer", "unused:_TimerProber")
    monkeypatch.setattr(
        loader_module, "prober_class", lambda kind: _TimerProber if kind == "timer" else real(kind)
    )


def _with_timer(gap: str) -> str:
    return edit(
        ("  mgmt:\n", f"  pacer:\n    prober: timer\n    timer:\n      gap: {gap}\n  mgmt:\n")
    )


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("5 seconds", "gap: '5 seconds' is not a duration; write e.g. 200ms, 5s"),
        ("-1s", "gap: '-1s' is negative; durations must be >= 0"),
        ("abc", "gap: 'abc' is not a duration; write e.g. 200ms, 5s"),
        ("true", "gap: True is not a duration; write e.g. 200ms, 5s"),
        (".inf", "gap: inf is not a finite duration; write e.g. 200ms, 5s"),
    ],
)
def test_bad_duration_in_a_seconds_setting(timer_prober: None, written: str, words: str) -> None:
    text = _with_timer(written)
    (problem,) = problems_of(text)
    assert problem.line == line_of(text, f"gap: {written}")
    assert f"module 'pacer': {words}" in problem.message


def test_a_seconds_setting_accepts_durations(timer_prober: None) -> None:
    gap = parse_inventory(_with_timer("1m30s")).modules["pacer"].settings.gap
    assert gap == 90.0 and isinstance(gap, Seconds)


# --- files -----------------------------------------------------------------------------


def test_a_non_utf8_file_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    name = "Hội trường Tỉnh ủy Thái Bình"
    path.write_bytes(BASE.encode("utf-8").replace(b"Th\xc3\xa1i B", b"Th\xe1i B", 1))
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(path), line_of(BASE, name))
    assert "the file is not UTF-8 (byte 0xe1 on this line)" in problem.message
    assert "save it as UTF-8" in problem.message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yml"
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    (problem,) = caught.value.problems
    assert problem.line == 0
    assert str(problem) == (
        f"{path}: cannot read the file: No such file or directory; check the path"
    )


# Eight mistakes of different kinds in one file: all reported, sorted by line.
MANY = edit(
    ("concurrency: 64\n", "concurrency: 64\nconcurency: 32\n"),  # unknown key
    ("interval: 20s\n", "interval: 20 s\n"),  # bad duration
    ("- name: central", "- name: endpoint"),  # reserved tier name
    ("tier: central", "tier: endpoint"),
    ("tcp: {port: 5060}", "tcp: {port: 5060, prot: 1}"),  # unknown setting
    ("address: bridge-01.example", "address: 999.1.1.1"),  # bad address
    ("    delegates: 85\n", "    delegates: 85\n    name: again\n"),  # duplicate key
    ("parent: tb-tinh-uy\n    address: fe80", "parent: tb-tinh-uyy\n    address: fe80"),
    ("labels: {site: nha-quoc-hoi}", "labels: {site: nha-quoc-hoi, commune: x}"),
)
MANY_MARKERS = [
    "concurency:", "interval: 20 s", "- name: endpoint", "prot: 1", "999.1.1.1", "name: again",
    "tb-tinh-uyy", "commune: x",
]  # fmt: skip


def test_every_mistake_in_a_file_is_reported_in_one_run() -> None:
    problems = problems_of(MANY)
    assert len(problems) == 8, "\n".join(map(str, problems))
    assert [p.line for p in problems] == sorted(line_of(MANY, m) for m in MANY_MARKERS)
    # The YAML-level problem is merged in, not reported alone.
    message = {p.line: p.message for p in problems}[line_of(MANY, "name: again")]
    assert message.startswith("duplicate key 'name'")


# --- the command line ------------------------------------------------------------------


def run_validate(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, paths)], capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str]]]:
    """Every single-mistake file validated in one CLI run: id -> (path, its stderr lines)."""
    directory = tmp_path_factory.mktemp("mistakes")
    paths = {}
    for case in SINGLE_MISTAKES:
        paths[case.id] = directory / f"{case.id}.yml"
        paths[case.id].write_text(case.text, encoding="utf-8")
    result = run_validate(*paths.values())
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    return {
        case_id: (path, [line for line in lines if line.startswith(f"{path}:")])
        for case_id, path in paths.items()
    }


@pytest.mark.parametrize("case", SINGLE_MISTAKES, ids=lambda c: c.id)
def test_cli_prints_file_line_and_message(batch: dict, case: Mistake) -> None:
    path, lines = batch[case.id]
    problem, summary = lines
    assert problem.startswith(f"{path}:{line_of(case.text, case.marker)}: ")
    for word in case.words:
        assert word in problem
    assert summary == f"{path}: INVALID (1 problem)"


def test_cli_accepts_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yml"
    path.write_text(BASE, encoding="utf-8")
    result = run_validate(path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: {BASE_OK_LINE}\n"


def test_cli_lists_every_problem_of_every_file_and_fails(tmp_path: Path) -> None:
    texts = {"many": MANY, "cycle1": CYCLE_IN_ONE_TIER, "cycle2": CYCLE_ACROSS_TIERS}
    paths = {name: tmp_path / f"{name}.yml" for name in texts}
    for name, path in paths.items():
        path.write_text(texts[name], encoding="utf-8")
    result = run_validate(*paths.values())
    assert result.returncode == 1
    expected = []
    for name, path in paths.items():
        problems = problems_of(texts[name])
        expected += [str(p).replace("bridge.yml", str(path), 1) for p in problems]
        expected.append(f"{path}: INVALID ({len(problems)} problems)")
    assert result.stderr.splitlines() == expected
    assert f"{paths['many']}: INVALID (8 problems)" in expected


def test_cli_whole_file_problems(tmp_path: Path) -> None:
    missing_path = tmp_path / "nowhere.yml"
    latin1 = tmp_path / "latin1.yml"
    latin1.write_bytes(BASE.encode("utf-8").replace(b"Th\xc3\xa1i B", b"Th\xe1i B", 1))
    result = run_validate(missing_path, latin1)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{missing_path}: cannot read the file: No such file or directory; check the path",
        f"{missing_path}: INVALID (1 problem)",
        f"{latin1}:{line_of(BASE, 'Tỉnh ủy Thái Bình')}: the file is not UTF-8 (byte 0xe1 on this "
        "line); save it as UTF-8",
        f"{latin1}: INVALID (1 problem)",
    ]


# --- the shipped example ---------------------------------------------------------------

THAI_BINH = EXAMPLES / "thai-binh.yml"
PROBES_DIR = REPO / "exporter" / "bridge_exporter" / "probes"


def test_the_thai_binh_example_validates() -> None:
    absent = [
        kind for kind, where in KINDS.items()
        if not (PROBES_DIR / f"{where.split(':')[0]}.py").exists()
    ]  # fmt: skip
    if absent:
        missing(f"thai-binh.yml uses probers not written yet: {', '.join(absent)}")
    inventory = load_inventory(THAI_BINH)
    tiers = Counter(e.tier for e in inventory.endpoints.values())
    assert len(inventory.endpoints) == 104
    assert [tiers[t] for t in inventory.tier_names] == [1, 2, 12, 89]
    thai_binh = [e for e in inventory.endpoints.values() if e.tier != "central"]
    assert len(thai_binh) == 103
    assert sum(e.delegates or 0 for e in thai_binh) == 11_938
    result = run_validate("examples/thai-binh.yml")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "examples/thai-binh.yml: OK: 104 endpoints (1 central, 2 province, 12 district, "
        "89 commune), 2 sessions\n"
    )


def test_a_self_referencing_alias_is_a_problem_not_a_crash():
    with pytest.raises(ConfigError) as caught:
        parse_inventory("tiers: [a, b]\nx: &a [*a]\n", "loop.yml")
    (problem,) = caught.value.problems
    assert problem.line == 2
    assert "alias *a is used inside its own anchor &a" in problem.message


@pytest.mark.parametrize(
    ("module", "words"),
    [
        ("{prober: tcp}", "port must be set to 1-65535"),
        ("{prober: http, http: {body_regex: '(['}}", "body_regex '(['"),
        ("{prober: http, http: {url: 'ftp://{address}/'}}", "must be http:// or https://"),
        ("{prober: stats, stats: {preset: cisco_xpi}}", "preset 'cisco_xpi' is not one of"),
        ("{prober: stats, stats: {preset: poly_rest, auth: digest}}", "needs a username"),
        ("{prober: sip, sip: {transport: sctp}}", 'transport must be "udp", "tcp" or "tls"'),
    ],
)
def test_settings_that_would_fail_every_probe_are_reported_by_validate(module, words):
    text = (
        "tiers: [a, b]\n"
        "modules:\n"
        f"  m: {module}\n"
        "endpoints:\n"
        "  - {id: e, name: E, tier: a, address: 127.0.0.1, modules: [m]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_inventory(text, "settings.yml")
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert words in problem.message


@pytest.mark.parametrize("bad_id", ["a b", "x/y", "-lead", "điểm"])
def test_endpoint_ids_must_be_plain(bad_id):
    text = (
        "tiers: [a, b]\n"
        "modules: {m: {prober: h323}}\n"
        "endpoints:\n"
        f"  - {{id: '{bad_id}', name: E, tier: a, address: 127.0.0.1, modules: [m]}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_inventory(text, "ids.yml")
    (problem,) = caught.value.problems
    assert problem.line == 4
    assert "may use only letters, digits" in problem.message
