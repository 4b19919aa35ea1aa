"""The HTTP surface: thin handlers over the running Exporter."""

from __future__ import annotations

import asyncio
import html
import io
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.payload import AsyncIterablePayload

from . import __version__
from .config import Endpoint
from .config.limits import MAX_TEXT_CHARS, printable, shorten
from .exposition import label_text, render
from .logs import BurstLog
from .metrics import ProbeFamilies
from .metrics_page import PageStream, in_scrape_worker
from .resources import LOCAL_RESOURCE_ERRNOS, RAISE_HINT, current_fd_limit
from .runtime import Exporter
from .webconfig import WebConfigWatcher, web_config_middleware

log = logging.getLogger(__name__)
EXPORTER_KEY = web.AppKey("exporter", Exporter)
LIFECYCLE_KEY = web.AppKey("enable_lifecycle", bool)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Every HTTP connection holds a descriptor, which probes need too. A client must send a
# whole request head within this many seconds of connecting (FirstRequestDeadline) or of
# the previous answer on a kept-alive connection (aiohttp's keep-alive timer, which request
# bytes do not push back), however it trickles it in. A scrape's head is one small
# packet, so 15 s is ample on any link and a slow client holds a descriptor no longer.
# It is also how long an idle kept-alive connection stays open: Prometheus scraping every
# 15 s or less keeps its connection, a slower scraper reconnects.
HTTP_REQUEST_TIMEOUT_SECONDS = 15.0
# How often connections are checked against the deadline: a slow client is cut between
# HTTP_REQUEST_TIMEOUT_SECONDS and one check later.
_DEADLINE_CHECK_SECONDS = 1.0
# No handler reads a request body: after the answer, aiohttp reads and drops what is left
# of one for at most this long (so the answer is not reset away), then closes.
HTTP_BODY_LINGER_SECONDS = 5.0
# How long the landing page keeps warning after the exporter last ran out of resources.
RECENT_RESOURCE_ERRORS_SECONDS = 600.0
# What asyncio's accept loop reports on EMFILE & co: once per failed attempt, with a
# traceback, and it goes on trying the rest of its backlog (a hundred lines a second).
_ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


class FirstRequestDeadline:
    """Closes a connection that has not delivered a whole first request within `limit`
    seconds of being accepted. aiohttp bounds the wait for every later request on a
    connection with its keep-alive timer, but before aiohttp 3.14.4 it waits for the first
    one for ever: a client trickling a header byte a second holds its descriptor as long
    as it likes."""

    def __init__(self, limit: float) -> None:
        self._limit = limit
        # By transport: aiohttp's RequestHandler cannot be weakly referenced.
        self._served: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._first_seen: weakref.WeakKeyDictionary[asyncio.BaseTransport, float] = (
            weakref.WeakKeyDictionary()
        )

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def note_request(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.transport is not None:
                self._served.add(request.transport)
            return await handler(request)

        return note_request

    def checking(self, runner: web.BaseRunner) -> Callable[[web.Application], AsyncIterator[None]]:
        """An aiohttp cleanup context that checks the runner's connections meanwhile."""

        async def context(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.get_running_loop().create_task(self._check_forever(runner))
            yield
            task.cancel()

        return context

    async def _check_forever(self, runner: web.BaseRunner) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_DEADLINE_CHECK_SECONDS)
            server = runner.server
            if server is None:
                continue
            now = loop.time()
            for handler in server.connections:
                transport = handler.transport
                if transport is None or transport in self._served:
                    continue
                if now - self._first_seen.setdefault(transport, now) >= self._limit:
                    transport.close()


def make_runner(
    exporter: Exporter, web_config: WebConfigWatcher | None = None, enable_lifecycle: bool = False
) -> web.AppRunner:
    """The HTTP server of the exporter, with the slow-client limits above, and the web
    config's basic auth and headers when there is one."""
    deadline = FirstRequestDeadline(HTTP_REQUEST_TIMEOUT_SECONDS)
    app = make_app(exporter, enable_lifecycle)
    app.middlewares.append(deadline.middleware())
    if web_config is not None:  # inside the deadline's: a refused request still counts
        app.middlewares.append(web_config_middleware(web_config))
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=HTTP_REQUEST_TIMEOUT_SECONDS,
        lingering_time=HTTP_BODY_LINGER_SECONDS,
    )
    app.cleanup_ctx.append(deadline.checking(runner))
    return runner


def watch_accept_errors(
    loop: asyncio.AbstractEventLoop, on_error: Callable[[], None] | None = None
) -> None:
    """Log asyncio's failed accepts for lack of descriptors once per burst, not once per
    retry with a traceback each; `on_error` counts every one."""
    burst = BurstLog(log, "accept errors")
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if (
            context.get("message") == _ACCEPT_OUT_OF_RESOURCES
            and isinstance(exc, OSError)
            and exc.errno in LOCAL_RESOURCE_ERRNOS
        ):
            if on_error is not None:
                on_error()
            burst.event(
                "cannot accept connections: %s. They wait in the kernel's queue and accepting "
                "is retried every second; raise the fd limit (%s) or lower `concurrency`. "
                "Further accept errors are summarised here",
                exc, RAISE_HINT,
            )  # fmt: skip
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def make_app(exporter: Exporter, enable_lifecycle: bool = False) -> web.Application:
    """The routes. /-/reload reloads only with `enable_lifecycle` (--web.enable-lifecycle),
    as in Prometheus: anyone who can reach the port could otherwise make the exporter
    re-read its files at will."""
    app = web.Application()
    app[EXPORTER_KEY] = exporter
    app[LIFECYCLE_KEY] = enable_lifecycle
    app.router.add_get("/", landing_page)
    app.router.add_get("/metrics", metrics)
    # HEAD would run the probes only to drop their answer: 405.
    app.router.add_get("/probe", probe, allow_head=False)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    lifecycle = reload if enable_lifecycle else lifecycle_disabled
    app.router.add_post("/-/reload", lifecycle)
    app.router.add_put("/-/reload", lifecycle)
    return app


class _PagePayload(AsyncIterablePayload):
    """A plain /metrics page of known length, sent piece by piece as a worker makes them;
    closing it (the answer is sent, or the client went away) stops the worker."""

    def __init__(self, stream: PageStream, size: int) -> None:
        super().__init__(stream, content_type=CONTENT_TYPE)
        self._stream = stream
        self._size = size

    async def close(self) -> None:
        self._stream.close()
        await super().close()


async def metrics(request: web.Request) -> web.Response:
    """The page from a snapshot taken now, joined in a worker thread: gzipped there at
    level 1 when asked (10,000 endpoints are tens of MB, and zlib's default level costs
    several times the CPU for a few percent fewer bytes), else streamed as it is joined.
    Both with a Content-Length, as before."""
    page = await request.app[EXPORTER_KEY].metrics_page()
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = await in_scrape_worker(page.gzipped)
        return web.Response(
            body=body, headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"}
        )
    payload = _PagePayload(page.stream(), await in_scrape_worker(page.size))
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[EXPORTER_KEY].ready:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def lifecycle_disabled(request: web.Request) -> web.Response:
    return web.Response(
        status=403,
        text="Lifecycle APIs are not enabled: start the exporter with --web.enable-lifecycle, "
        "or send it SIGHUP to reload.\n",
    )


async def reload(request: web.Request) -> web.Response:
    ok, error = await request.app[EXPORTER_KEY].reload()
    if ok:
        return web.Response(text="Config reloaded.\n")
    return web.Response(
        status=500, text=f"Config not reloaded; the old one keeps running:\n{error}\n"
    )


class _ListHandler(logging.Handler):
    """Keeps a /probe request's log lines; passes on to the process log only what
    --log.level lets through (debug lines asked for by debug=true are not for the log)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")
        root = logging.getLogger()
        if record.levelno >= root.getEffectiveLevel():
            root.handle(record)


def _probe_modules(
    exporter: Exporter, endpoint: Endpoint, given: list[str]
) -> tuple[list[str], str]:
    """The modules a /probe request runs, or why it is refused. One module per request
    unless several are listed explicitly, each in its own `module=` parameter: without
    one, only an endpoint with a single module is probed. So one request never fans out
    further than its URL says, and never more than once per module."""
    names = [m for m in given if m]
    if not names:
        own = list(endpoint.modules)
        if len(own) == 1:
            return own, ""
        choices = "&".join(f"module={m}" for m in own)
        return [], (
            f"Endpoint {endpoint.id!r} has {len(own)} modules: name the one to probe "
            f"(module=NAME), or list each you want ({choices}).\n"
        )
    unknown = [m for m in names if m not in exporter.inventory.modules]
    if unknown:
        known = ", ".join(exporter.inventory.modules)
        return [], f"Unknown module {unknown[0]!r}; modules: {known}\n"
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        return [], f"Module {repeated[0]!r} is listed more than once; list each module once.\n"
    return names, ""


async def probe(request: web.Request) -> web.Response:
    """Blackbox-style ad-hoc probe of an inventory endpoint: ?target=ID|ADDRESS[&module=M]."""
    exporter = request.app[EXPORTER_KEY]
    target = request.query.get("target", "")
    if not target:
        return web.Response(status=400, text="Missing `target` (an endpoint id or address).\n")
    endpoint = exporter.find_endpoint(target)
    if endpoint is None:
        return web.Response(
            status=400,
            text=f"Unknown target {target!r}: /probe only probes endpoints of the inventory "
            "(give an endpoint id or its address).\n",
        )
    module_names, refusal = _probe_modules(exporter, endpoint, request.query.getall("module", []))
    if refusal:
        return web.Response(status=400, text=refusal)
    debug = request.query.get("debug", "").lower() in ("true", "1", "yes")

    # A logger of this request alone (outside the logging tree, so nothing propagates and
    # nothing is kept): concurrent /probe calls neither mix lines nor reset each other's level.
    level = logging.DEBUG if debug else logging.getLogger().getEffectiveLevel()
    logger = logging.Logger(f"bridge_exporter.probe.{endpoint.id}", level)
    capture = _ListHandler()
    logger.addHandler(capture)
    results = await exporter.probe_once(endpoint, module_names, logger)

    families = ProbeFamilies()
    for module_name, kind, result in results:
        families.add(label_text({"endpoint": endpoint.id, "probe": module_name}), kind, result)
    text = render(families.families())
    if not debug:
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
    out = io.StringIO()
    out.write(f"Probe of {endpoint.id} ({endpoint.name}) at {endpoint.address}\n\nLogs:\n")
    out.writelines(f"  {line}\n" for line in capture.lines)
    for module_name, kind, result in results:
        status = "succeeded" if result.success else f"FAILED ({result.reason})"
        out.write(f"\nModule {module_name} ({kind}) {status} in {result.duration_seconds:.3f}s\n")
        out.writelines(f"  {line}\n" for line in result.debug)
    out.write(f"\nMetrics that would be returned:\n{text}")
    return web.Response(text=out.getvalue(), content_type="text/plain", charset="utf-8")


# The landing page lists sessions whose readiness window opens within this time.
SESSION_LOOKAHEAD_SECONDS = 24 * 3600


def _age(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    seconds = int(time.time() - timestamp)
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _sessions_section(exporter: Exporter, e: Callable[[object], str]) -> str:
    """Sessions active now (readiness window or running) and those opening within a day,
    with how many of the points each needs are down."""
    now = time.time()
    state = exporter.state
    rows = []
    for session in exporter.inventory.sessions:
        if session.end <= now or session.window_start > now + SESSION_LOOKAHEAD_SECONDS:
            continue
        if now >= session.start:
            when = f"<span class=bad>running</span>, ends in {_span(session.end - now)}"
        elif now >= session.window_start:
            starts = _span(session.start - now)
            when = f"<span class=bad>readiness window open</span>, starts in {starts}"
        else:
            when = f"readiness window opens in {_span(session.window_start - now)}"
        down = sum(
            1
            for endpoint_id in session.endpoints
            if (endpoint_state := state.endpoints.get(endpoint_id)) and endpoint_state.up is False
        )
        rows.append(
            f"<tr><td>{e(session.name)}</td><td>{e(session.title)}</td><td>{when}</td>"
            f"<td>{len(session.endpoints)}</td><td class={'bad' if down else 'ok'}>{down}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>Sessions</h2><table><tr><th>session</th><th>title</th><th>when</th>"
        "<th>points needed</th><th>down now</th></tr>" + "".join(rows) + "</table>"
    )


def _resource_warning(exporter: Exporter) -> str:
    """A warning while the exporter has recently run out of local resources."""
    errors = exporter.resource_errors
    if not errors.seen_within(RECENT_RESOURCE_ERRORS_SECONDS):
        return ""
    return (
        "<p class=bad>The exporter ran out of local resources (file descriptors, socket "
        f"buffers or memory), last {_age(errors.last_timestamp)}: since it started, "
        f"{errors.counts.get('probe', 0)} probes could not run (their endpoints kept their "
        f"last state) and {errors.counts.get('accept', 0)} HTTP connections could not be "
        f"accepted at once. The fd limit is {current_fd_limit().soft}: raise it "
        f"({RAISE_HINT}) or lower <code>concurrency</code>.</p>"
    )


# The failed reload's problems the landing page lists; `validate` shows them all.
LANDING_PAGE_PROBLEMS = 20


async def landing_page(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    state = exporter.state
    inventory = state.inventory

    def e(value: object, limit: int = MAX_TEXT_CHARS) -> str:
        """Shown as one bounded line of text: invisible characters as escapes."""
        return html.escape(shorten(printable(str(value)), limit))

    rows = []
    for tier in inventory.tiers:
        members = [x for x in inventory.endpoints.values() if x.tier == tier.name]
        up = sum(1 for x in members if state.endpoints[x.id].up is True)
        down = sum(1 for x in members if state.endpoints[x.id].up is False)
        pending = len(members) - up - down
        rows.append(
            f"<tr><td>{e(tier.name)}</td><td>{len(members)}</td><td class=ok>{up}</td>"
            f"<td class={'bad' if down else 'ok'}>{down}</td><td>{pending}</td></tr>"
        )
    down_rows = []
    for endpoint in inventory.endpoints.values():
        endpoint_state = state.endpoints[endpoint.id]
        if endpoint_state.up is not False:
            continue
        failed = [
            f"{name}: {record.result.reason or 'failed'}"
            for name, record in endpoint_state.records.items()
            if not record.result.success
        ]
        cause = state.first_down_ancestor(endpoint)
        down_rows.append(
            f"<tr><td>{e(endpoint.id)}</td><td>{e(endpoint.name)}</td><td>{e(endpoint.tier)}</td>"
            f"<td>{e(endpoint.address)}</td><td>{_age(endpoint_state.down_since)}</td>"
            f"<td>{e('; '.join(failed), 4 * MAX_TEXT_CHARS)}</td>"
            f"<td>{e(f'upstream {cause} is down') if cause else ''}</td></tr>"
        )
    degraded_rows = []
    for endpoint in inventory.endpoints.values():
        quality = state.quality(endpoint)
        if quality is None or quality.grade == 0 or state.endpoints[endpoint.id].up is False:
            continue
        figures = quality.figures
        degraded_rows.append(
            f"<tr><td>{e(endpoint.id)}</td><td>{e(endpoint.name)}</td>"
            f"<td>{quality.grade.name.lower()}</td><td>{figures.rtt_seconds * 1000:.0f} ms</td>"
            f"<td>{figures.jitter_seconds * 1000:.1f} ms</td><td>{figures.loss_ratio:.1%}</td>"
            f"<td>{quality.mos:.2f}</td><td>{e(quality.source)}</td></tr>"
        )
    problems = "".join(
        f"<p class=bad>Prober {e(kind)}: {e(text)}</p>"
        for kind, text in exporter.probers.startup_problems().items()
    )
    probers = ", ".join(
        f"{kind} ({mode()} socket)" if (mode := getattr(prober, "socket_mode", None)) else kind
        for kind, prober in sorted(exporter.probers.instances().items())
    )
    reload_note = ""
    if not exporter.reload_status.successful:
        error_lines = exporter.reload_status.last_error.splitlines()
        listed = [e(line, 8 * MAX_TEXT_CHARS) for line in error_lines[:LANDING_PAGE_PROBLEMS]]
        if len(error_lines) > LANDING_PAGE_PROBLEMS:
            listed.append(
                f"… and {len(error_lines) - LANDING_PAGE_PROBLEMS:,} more: run bridge-exporter "
                "validate on the file to see them all"
            )
        reload_note = (
            "<p class=bad>Last config reload FAILED; the previous config keeps running:</p>"
            "<pre>" + "\n".join(listed) + "</pre>"
        )
    down_table = (
        "<table><tr><th>id</th><th>name</th><th>tier</th><th>address</th><th>down since</th>"
        "<th>failed probes</th><th>likely cause</th></tr>" + "".join(down_rows) + "</table>"
        if down_rows
        else "<p class=ok>Every probed endpoint is up.</p>"
    )
    degraded_table = (
        "<table><tr><th>id</th><th>name</th><th>grade</th><th>RTT</th><th>jitter</th>"
        "<th>loss</th><th>MOS</th><th>from</th></tr>" + "".join(degraded_rows) + "</table>"
        if degraded_rows
        else "<p class=ok>No endpoint is degraded.</p>"
    )
    stats = exporter.scheduler.stats
    first = next(iter(inventory.endpoints.values()))
    first_module = f"&amp;module={e(first.modules[0])}" if first.modules else ""
    reload_link = (
        "<code>POST /-/reload</code>"
        if request.app[LIFECYCLE_KEY]
        else "reload: <code>SIGHUP</code> (<code>POST /-/reload</code> needs "
        "<code>--web.enable-lifecycle</code>)"
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Bridge Exporter</title>
<meta http-equiv="refresh" content="10">
<style>
body{{font-family:sans-serif;margin:2em;max-width:70em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}} .ok{{color:#197a1b}}
.bad{{color:#b00020;font-weight:bold}} th{{background:#f3f3f3}}
</style></head><body>
<h1>Bridge Exporter</h1>
<p>Version {e(__version__)} &middot; config <code>{e(exporter.config_path)}</code>
 &middot; {len(inventory.endpoints)} endpoints, probed every {inventory.interval:g}s
 &middot; {stats.rounds} rounds, {stats.overruns} overruns, {stats.in_flight} probes in flight
 &middot; up since {_age(exporter.started)}</p>
<p>Probers: {e(probers)}</p>
{problems}{reload_note}{_resource_warning(exporter)}
{_sessions_section(exporter, e)}
<h2>Tiers</h2>
<table><tr><th>tier</th><th>endpoints</th><th>up</th><th>down</th><th>not yet probed</th></tr>
{"".join(rows)}</table>
<h2>Down now ({len(down_rows)})</h2>
{down_table}
<h2>Degraded quality ({len(degraded_rows)})</h2>
{degraded_table}
<h2>Links</h2>
<ul><li><a href="/metrics">/metrics</a></li>
<li><a href="/probe?target={e(first.id)}{first_module}&amp;debug=true">/probe</a>
 (ad-hoc: <code>?target=ID&amp;module=NAME&amp;debug=true</code>)</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a>,
 {reload_link}</li></ul>
</body></html>
"""
    # "replace": whatever a value held, the page is served, not an encoding error.
    return web.Response(
        body=page.encode("utf-8", "replace"), content_type="text/html", charset="utf-8"
    )
