"""`bridge-exporter check`: probe every point (of a session) now, N rounds, and say whether
the network is ready, as a table per tier and a list of problems, root causes first.

It uses the exporter's own engine (Probers, run_probe, State.record and finish_round), so a
point fails here exactly when the running exporter would report it down, with the same
reasons and deadlines.

Exit codes (fit for cron): 0 every point passed; 1 the config file has problems (as
`validate`); 2 bad command line (argparse); 3 some points degraded, none down; 4 some down;
5 some points could not be checked (this host ran out of descriptors, buffers or memory
while probing them: they were not measured, so they cannot count as ready), none down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from .config import ConfigError, load_inventory
from .config.model import Endpoint, Inventory, Session
from .i18n import format_time, text, zone
from .probes.reasons import LOCAL_RESOURCE_EXHAUSTED
from .quality import Grade
from .resources import raise_fd_limit
from .scheduler import Probers, run_probe
from .state import State

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_DEGRADED = 3
EXIT_DOWN = 4
EXIT_UNCHECKED = 5

UP, DEGRADED, DOWN, UNCHECKED = "up", "degraded", "down", "unchecked"


@dataclass
class PointResult:
    """What the rounds found for one point: down if any round was down, degraded if any
    round graded its quality below good; figures and reasons from its worst round."""

    endpoint: Endpoint
    rounds_down: int = 0
    rounds_unmeasured: int = 0  # rounds that failed only for this host's lack of resources
    grade: Grade | None = None  # worst grade seen; None when no train measured
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float] | None = None
    worst: tuple[bool, Grade] | None = None  # (down, grade) of the worst round so far

    @property
    def status(self) -> str:
        if self.rounds_down:
            return DOWN
        if self.rounds_unmeasured:
            return UNCHECKED
        if self.grade is not None and self.grade > Grade.GOOD:
            return DEGRADED
        return UP


class Progress:
    """A one-line bar on stderr, redrawn in place; nothing at all when stderr is no tty."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr):
        self.total = max(total, 1)
        self.done = 0
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()

    def step(self, count: int = 1) -> None:
        self.done += count
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (len(self.label) + 50) + "\r")
            self.stream.flush()


async def probe_rounds(
    inventory: Inventory, points: list[Endpoint], rounds: int, progress: Progress
) -> dict[str, PointResult]:
    probers = Probers()
    state = State(inventory)
    results = {e.id: PointResult(e) for e in points}
    semaphore = asyncio.Semaphore(inventory.concurrency)
    await probers.start_for(inventory)

    async def probe(endpoint: Endpoint, module) -> None:
        prober = await probers.get(module.prober)
        async with semaphore:
            result = await run_probe(prober, endpoint, module, log)
        state.record(endpoint, module, result)

    async def one_round(endpoint: Endpoint) -> None:
        started = time.monotonic()
        modules = inventory.modules_of(endpoint)
        await asyncio.gather(*(probe(endpoint, m) for m in modules))
        state.finish_round(endpoint, time.monotonic() - started)
        _note_round(results[endpoint.id], state, inventory)
        progress.step()

    try:
        for _ in range(rounds):
            await asyncio.gather(*(one_round(e) for e in points))
    finally:
        await probers.close()
    return results


def _note_round(point: PointResult, state: State, inventory: Inventory) -> None:
    """Fold one round into the point's result; figures and reasons from its worst round."""
    endpoint_state = state.endpoints[point.endpoint.id]
    quality = state.quality(point.endpoint)
    modules = inventory.modules_of(point.endpoint)
    checked = {m.name for m in modules if m.required} or {m.name for m in modules}
    failed = [
        record.result.reason
        for name, record in endpoint_state.records.items()
        if name in checked and not record.result.success
    ]
    if failed and all(reason == LOCAL_RESOURCE_EXHAUSTED for reason in failed):
        # The exporter's engine leaves up/down as it was after such a round: it measured
        # nothing, so the point is neither ready nor down.
        point.rounds_unmeasured += 1
        point.reasons = point.reasons or [f"{name}: {LOCAL_RESOURCE_EXHAUSTED}" for name in checked]
        return
    down = endpoint_state.up is False
    severity = (down, quality.grade if quality else Grade.GOOD)
    if down:
        point.rounds_down += 1
    if quality is not None and (point.grade is None or quality.grade > point.grade):
        point.grade = quality.grade
    if point.worst is not None and severity < point.worst:
        return
    point.worst = severity
    point.figures = None
    if quality is not None:
        point.figures = {
            "rtt_seconds": quality.figures.rtt_seconds,
            "jitter_seconds": quality.figures.jitter_seconds,
            "loss_ratio": quality.figures.loss_ratio,
            "mos": quality.mos,
        }
    point.reasons = [
        f"{name}: {record.result.reason or 'failed'}"
        for name, record in sorted(endpoint_state.records.items())
        if name in checked and not record.result.success
    ]


def root_cause(point: PointResult, results: dict[str, PointResult]) -> str | None:
    """The topmost checked ancestor that is down, when this point is down too."""
    if point.status != DOWN:
        return None
    return next(
        (a for a in point.endpoint.ancestors if a in results and results[a].status == DOWN),
        None,
    )


def summarize(
    inventory: Inventory,
    session: Session | None,
    rounds: int,
    results: dict[str, PointResult],
    started: float,
) -> dict:
    tiers = []
    for tier in inventory.tiers:
        points = [r for r in results.values() if r.endpoint.tier == tier.name]
        tiers.append(
            {
                "tier": tier.name,
                "total": len(points),
                "ok": sum(1 for r in points if r.status == UP),
                "down": sum(1 for r in points if r.status == DOWN),
                "good": sum(1 for r in points if r.grade == Grade.GOOD),
                "degraded": sum(1 for r in points if r.grade == Grade.DEGRADED),
                "poor": sum(1 for r in points if r.grade == Grade.POOR),
                "unmeasured": sum(1 for r in points if r.grade is None),
            }
        )
    problems = []
    ordered = sorted(
        (r for r in results.values() if r.status != UP),
        key=lambda r: (r.status != DOWN, len(r.endpoint.ancestors)),
    )
    for point in ordered:
        parent = point.endpoint.parent
        parent_result = results.get(parent) if parent else None
        problems.append(
            {
                "endpoint": point.endpoint.id,
                "name": point.endpoint.name,
                "tier": point.endpoint.tier,
                "status": point.status,
                "rounds_down": point.rounds_down,
                "grade": point.grade.name.lower() if point.grade is not None else None,
                "reasons": point.reasons,
                "figures": point.figures,
                "parent": parent,
                "parent_status": parent_result.status if parent_result else None,
                "caused_by": root_cause(point, results),
                "delegates": point.endpoint.delegates,
            }
        )
    down = sum(1 for r in results.values() if r.status == DOWN)
    degraded = sum(1 for r in results.values() if r.status == DEGRADED)
    unchecked = sum(1 for r in results.values() if r.status == UNCHECKED)
    code = (
        EXIT_DOWN
        if down
        else EXIT_UNCHECKED
        if unchecked
        else EXIT_DEGRADED
        if degraded
        else EXIT_OK
    )
    return {
        "session": {"name": session.name, "title": session.title} if session else None,
        "checked_at": started,
        "timezone": session.timezone if session else "Asia/Ho_Chi_Minh",
        "rounds": rounds,
        "points": len(results),
        "down": down,
        "degraded": degraded,
        "unchecked": unchecked,
        "exit_code": code,
        "tiers": tiers,
        "problems": problems,
    }


def _figures_text(lang: str, figures: dict[str, float] | None) -> str:
    if not figures:
        return text(lang, "check.no_figures")
    if figures["loss_ratio"] >= 1:  # nothing answered: no RTT or jitter to show
        return text(lang, "check.no_reply")
    return text(
        lang,
        "check.figures",
        rtt=f"{figures['rtt_seconds'] * 1000:.0f}",
        jitter=f"{figures['jitter_seconds'] * 1000:.1f}",
        loss=f"{figures['loss_ratio'] * 100:.1f}",
        mos=f"{figures['mos']:.2f}",
    )


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def render_table(summary: dict, lang: str) -> str:
    tz = zone(summary["timezone"])
    lines = [
        f"{text(lang, 'check.title')}: "
        + text(
            lang,
            "check.scope",
            points=summary["points"],
            rounds=summary["rounds"],
            when=format_time(lang, summary["checked_at"], tz),
        )
    ]
    if summary["session"]:
        lines.append(text(lang, "check.session", **summary["session"]))
    lines.append("")
    header = [
        text(lang, k) for k in ("col.tier", "col.ok_total", "col.down", "col.good", "col.degraded")
    ] + [text(lang, "col.poor"), text(lang, "col.unmeasured")]
    rows = [header]
    for tier in summary["tiers"]:
        rows.append(
            [
                tier["tier"],
                f"{tier['ok']}/{tier['total']}",
                *(str(tier[k]) for k in ("down", "good", "degraded", "poor", "unmeasured")),
            ]
        )
    lines += _table(rows)
    lines.append("")
    problems = summary["problems"]
    if not problems:
        lines.append(text(lang, "check.no_problems"))
    else:
        lines.append(text(lang, "check.problems") + ":")
        by_cause: dict[str, list[dict]] = {}
        for problem in problems:
            if problem["caused_by"]:
                by_cause.setdefault(problem["caused_by"], []).append(problem)
        for problem in problems:
            if problem["caused_by"]:
                continue
            lines.append(_problem_line(problem, lang, indent=""))
            for follower in by_cause.get(problem["endpoint"], []):
                lines.append(_problem_line(follower, lang, indent="    "))
    lines.append("")
    code = summary["exit_code"]
    lines.append(
        text(
            lang,
            f"check.result.{code}",
            down=summary["down"],
            degraded=summary["degraded"],
            unchecked=summary["unchecked"],
        )
    )
    return "\n".join(lines) + "\n"


def _problem_line(problem: dict, lang: str, indent: str) -> str:
    status = text(lang, f"status.{problem['status']}")
    if problem["caused_by"]:
        why = text(lang, "check.behind", cause=problem["caused_by"])
    elif problem["status"] in (DOWN, UNCHECKED):
        why = ", ".join(problem["reasons"]) or "-"
    else:
        grade = {"degraded": 1, "poor": 2}.get(problem["grade"] or "", 1)
        why = text(lang, "check.quality_reason", grade=text(lang, f"grade.{grade}"))
    if problem["parent"]:
        parent_status = problem["parent_status"] or "unknown"
        parent = text(
            lang,
            "check.parent",
            parent=problem["parent"],
            state=text(lang, f"status.{parent_status}"),
        )
    else:
        parent = text(lang, "check.no_parent")
    return (
        f"{indent}{status:<12} {problem['endpoint']} ({problem['name']}, {problem['tier']}): "
        f"{why}; {_figures_text(lang, problem['figures'])}; {parent}"
    )


def select_points(inventory: Inventory, session: Session | None) -> list[Endpoint]:
    if session is None:
        return list(inventory.endpoints.values())
    return [e for e in inventory.endpoints.values() if e.id in session.endpoints]


def run_check(
    config_file: str, session_name: str | None, rounds: int, output: str, lang: str
) -> int:
    try:
        inventory = load_inventory(config_file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        count = len(exc.problems)
        print(
            f"{config_file}: INVALID ({count} problem{'s' if count != 1 else ''})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    session = None
    if session_name is not None:
        session = next((s for s in inventory.sessions if s.name == session_name), None)
        if session is None:
            known = ", ".join(s.name for s in inventory.sessions) or "-"
            print(
                text(
                    lang,
                    "check.unknown_session",
                    file=config_file,
                    name=session_name,
                    known=known,
                ),
                file=sys.stderr,
            )
            return EXIT_CONFIG
    points = select_points(inventory, session)
    raise_fd_limit()  # as the exporter does: probes beyond the limit measure nothing
    started = time.time()
    progress = Progress(len(points) * rounds, text(lang, "check.progress"))
    try:
        results = asyncio.run(probe_rounds(inventory, points, rounds, progress))
    finally:
        progress.close()
    summary = summarize(inventory, session, rounds, results, started)
    if output == "json":
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(summary, lang))
    return summary["exit_code"]


def _rounds(value: str) -> int:
    import argparse

    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise argparse.ArgumentTypeError(f"{value!r}: --rounds must be a whole number 1-100")
    return int(value)


def add_arguments(parser) -> None:
    parser.add_argument("--config.file", dest="config_file", required=True, help="inventory")
    parser.add_argument("--session", help="check only the points this session needs")
    parser.add_argument("--rounds", type=_rounds, default=1, help="probe rounds (default 1)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--lang", choices=["en", "vi"], default="en")
