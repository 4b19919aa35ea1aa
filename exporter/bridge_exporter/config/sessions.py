"""Sessions in the inventory: when a conference runs and which points it needs.

    sessions:
      - name: hoi-nghi-2021-03-26          # id, used as the `session` label value
        title: Hội nghị toàn quốc ...      # any text
        start: 2021-03-26 07:30            # local time in `timezone`, or with an offset
        end: 2021-03-26 11:30
        timezone: Asia/Ho_Chi_Minh         # the default
        prepare: 2h                        # readiness window before the start (default)
        endpoints:                         # default: every point
          - tb-thai-binh                   # that point
          - subtree: tb-hung-ha            # that point and everything below it

A point a session needs brings its ancestors with it: their links carry its picture.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

from .model import Endpoint, Session
from .values import text_problem
from .yamlnodes import LinedList, LinedMap

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
DEFAULT_PREPARE_SECONDS = 2 * 3600.0
MAX_TITLE_LENGTH = 300
SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SESSION_KEYS = {"name", "title", "start", "end", "timezone", "prepare", "endpoints"}
_EXAMPLE_TIME = "2021-03-26 07:30"
_HAS_TIME = re.compile(r"\d[T ]\d")  # a date followed by a time


def parse_sessions(
    check: Any, root: LinedMap, endpoints: dict[str, Endpoint]
) -> tuple[Session, ...]:
    """The `sessions:` list, checked; problems go to `check` (the loader's Checker)."""
    raw = root.get("sessions")
    if raw is None:
        return ()
    if not isinstance(raw, LinedList):
        check.add(root.line_of("sessions"), "sessions must be a list of sessions (- name: ...)")
        return ()
    sessions: list[Session] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(raw):
        spec = check.mapping(item, raw.line_of(index), "a session")
        if spec is None:
            continue
        session = _session(check, spec, endpoints)
        if session is None:
            continue
        if session.name in first_line:
            check.add(
                spec.line_of("name"),
                f"session {session.name!r} is listed twice (first at line "
                f"{first_line[session.name]}); rename one",
            )
            continue
        first_line[session.name] = spec.line_of("name")
        sessions.append(session)
    return tuple(sessions)


def _session(check: Any, spec: LinedMap, endpoints: dict[str, Endpoint]) -> Session | None:
    check.unknown_keys(spec, SESSION_KEYS, "a session")
    name = spec.get("name")
    if not isinstance(name, str) or not SESSION_NAME.match(name):
        check.add(
            spec.line_of("name"),
            f"session name {_short(name)} must be 1-128 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, e.g. hoi-nghi-2021-03-26 (the title can say "
            "anything)",
        )
        return None
    what = f"session {name!r}"
    title = spec.get("title", name)
    if not isinstance(title, str) or not title.strip():
        check.add(spec.line_of("title"), f"{what}: title must be text, e.g. title: 'Hội nghị'")
        title = name
    elif problem := text_problem(title, MAX_TITLE_LENGTH):
        check.add(spec.line_of("title"), f"{what}: title {problem}")
        title = name
    zone = _zone(check, spec, what)
    start = _moment(check, spec, "start", zone, what)
    end = _moment(check, spec, "end", zone, what)
    prepare = check.duration(spec, "prepare", DEFAULT_PREPARE_SECONDS)
    if start is not None and end is not None and end <= start:
        check.add(
            spec.line_of("end"),
            f"{what}: end ({_local(end, zone)}) must be after start ({_local(start, zone)})",
        )
        return None
    needed = _needed_endpoints(check, spec, endpoints, what)
    if start is None or end is None or needed is None:
        return None
    return Session(
        name=name,
        title=title,
        start=start.timestamp(),
        end=end.timestamp(),
        prepare_seconds=prepare,
        timezone=zone.key if isinstance(zone, zoneinfo.ZoneInfo) else DEFAULT_TIMEZONE,
        endpoints=needed,
        line=spec.line,
    )


def _zone(check: Any, spec: LinedMap, what: str) -> zoneinfo.ZoneInfo:
    text = spec.get("timezone", DEFAULT_TIMEZONE)
    try:
        if not isinstance(text, str) or not text:
            raise ValueError
        return zoneinfo.ZoneInfo(text)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        check.add(
            spec.line_of("timezone"),
            f"{what}: unknown time zone {_short(text)}; use an IANA name such as "
            f"{DEFAULT_TIMEZONE} or UTC",
        )
        return zoneinfo.ZoneInfo(DEFAULT_TIMEZONE)


def _moment(
    check: Any, spec: LinedMap, key: str, zone: zoneinfo.ZoneInfo, what: str
) -> dt.datetime | None:
    """A date and time; without an offset it is local time in the session's zone."""
    if key not in spec:
        check.add(spec.line, f"{what}: `{key}` is missing; write e.g. {key}: {_EXAMPLE_TIME}")
        return None
    value = spec[key]
    moment: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and _HAS_TIME.search(value):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        dateish = isinstance(value, dt.date) or (
            isinstance(value, str) and _date_only(value.strip())
        )
        shown = "a date without a time" if dateish else _short(value)
        check.add(
            spec.line_of(key),
            f"{what}: {key} is {shown}; write a date and time, e.g. {key}: {_EXAMPLE_TIME} "
            "(in the session's time zone) or 2021-03-26T07:30:00+07:00",
        )
        return None
    if moment.tzinfo is not None:
        return moment
    local = moment.replace(tzinfo=zone)
    if local.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != moment:
        check.add(
            spec.line_of(key),
            f"{what}: {key} {moment:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks "
            "jump forward then); pick another time or write it with an offset",
        )
        return None
    if local.utcoffset() != moment.replace(tzinfo=zone, fold=1).utcoffset():
        check.add(
            spec.line_of(key),
            f"{what}: {key} {moment:%Y-%m-%d %H:%M} happens twice in {zone.key} (the clocks "
            "go back then); write it with its offset, e.g. 2021-10-31T02:30:00+01:00",
        )
        return None
    return local


def _date_only(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _needed_endpoints(
    check: Any, spec: LinedMap, endpoints: dict[str, Endpoint], what: str
) -> frozenset[str] | None:
    raw = spec.get("endpoints")
    if raw is None:
        return frozenset(endpoints)
    if not isinstance(raw, LinedList) or not raw:
        check.add(
            spec.line_of("endpoints"),
            f"{what}: endpoints must be a non-empty list of endpoint ids or `subtree: ID` "
            "items; leave it out to mean every point",
        )
        return None
    needed: set[str] = set()
    ok = True
    for index, item in enumerate(raw):
        line = raw.line_of(index)
        whole_subtree = False
        if isinstance(item, LinedMap):
            if set(item) != {"subtree"}:
                check.add(line, f"{what}: write an endpoint id or `subtree: ID`, not {item!r}")
                ok = False
                continue
            item, whole_subtree = item["subtree"], True
        if not isinstance(item, str) or item not in endpoints:
            check.add(
                line,
                f"{what}: {_short(item)} is not an endpoint id in this file; fix the id",
            )
            ok = False
            continue
        needed.add(item)
        needed.update(endpoints[item].ancestors)
        if whole_subtree:
            needed.update(e.id for e in endpoints.values() if item in e.ancestors)
    return frozenset(needed) if ok else None


def _local(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"
