"""Logging in Prometheus' styles: logfmt (default) or JSON, one line per event."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\n'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _fields(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, str]:
    fields = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        fields["err"] = formatter.formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(self, record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(self, record), ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())


class MalformedRequestFilter(logging.Filter):
    """aiohttp answers a request its parser refuses (a request line over 8190 bytes, a
    control character) with 400, and logs it as an error with a traceback: anyone who can
    reach the port could fill the log. Such a request is the client's mistake: one debug
    line, no traceback. Errors in the exporter's own handlers still log as errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not 400 <= (exc.code or 0) < 500:
            return True
        logging.getLogger("bridge_exporter.web").debug(
            "refused a malformed request (%d): %s", exc.code, exc.message
        )
        return False


class BurstLog:
    """Logs the first event of a burst at once and only counts the next ones; once no
    event has come for `quiet` seconds it logs how many more there were. A burst that goes
    on is summarised every `every` seconds, so a lasting problem stays visible without a
    line per event (asyncio retries a failing accept every second, probes fail by the
    hundred)."""

    def __init__(
        self, logger: logging.Logger, what: str, quiet: float = 5.0, every: float = 300.0
    ) -> None:
        self._logger = logger
        self._what = what  # plural noun phrase for the summary: "accept errors"
        self._quiet = quiet
        self._every = every
        self._in_burst = False
        self._more = 0
        self._last = self._summarised = 0.0

    def event(self, message: str, *args: object) -> None:
        """One event: `message` is logged (as a warning) only if it starts a burst."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._last = now
        if self._in_burst:
            self._more += 1
            return
        self._logger.warning(message, *args)
        self._in_burst, self._more, self._summarised = True, 0, now
        loop.call_at(now + self._quiet, self._check)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last >= self._quiet:
            if self._more:
                self._logger.warning(
                    "%d more %s in the last %.0fs; none for %.0fs now",
                    self._more, self._what, now - self._summarised, self._quiet,
                )  # fmt: skip
            self._in_burst = False
            return
        if now - self._summarised >= self._every:
            self._logger.warning(
                "%d more %s in the last %.0fs, and still happening",
                self._more, self._what, now - self._summarised,
            )  # fmt: skip
            self._more, self._summarised = 0, now
        loop.call_at(min(self._last + self._quiet, self._summarised + self._every), self._check)
