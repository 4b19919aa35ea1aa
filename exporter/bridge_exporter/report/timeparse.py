"""--from / --to: a moment a user types, in the report's time zone unless it has an offset."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

_UNIX = re.compile(r"[0-9]{9,11}(\.[0-9]+)?")
_VIETNAMESE = re.compile(
    r"(?P<d>[0-9]{1,2})/(?P<m>[0-9]{1,2})/(?P<y>[0-9]{4})"
    r"(?:[ T](?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2}))?)?"
)
EXAMPLES = "2021-03-27 07:30, 2021-03-27T07:30:00+07:00, 27/03/2021 07:30 or 1616805000"


class TimeParseError(ValueError):
    pass


def parse_time(value: str, tz: zoneinfo.ZoneInfo) -> float:
    """Unix seconds; ISO 8601 (`2021-03-27 07:30`, with or without seconds and offset, `Z`);
    or Vietnamese `27/03/2021 07:30`. A time without an offset is local time in `tz`; a
    date alone is its midnight."""
    text = value.strip()
    if _UNIX.fullmatch(text):
        return float(text)
    moment: dt.datetime | None = None
    match = _VIETNAMESE.fullmatch(text)
    try:
        if match:
            moment = dt.datetime(
                int(match["y"]),
                int(match["m"]),
                int(match["d"]),
                int(match["H"] or 0),
                int(match["M"] or 0),
                int(match["S"] or 0),
            )
        elif text and text[0].isdigit():
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None:
        raise TimeParseError(f"{value!r} is not a date and time; write e.g. {EXAMPLES}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()
