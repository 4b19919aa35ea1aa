"""The HTTP surface: thin handlers over the running Exporter."""

from __future__ import annotations

import html
import io
import logging
import time

from aiohttp import web

from . import __version__
from .exposition import label_text, render
from .metrics import ProbeFamilies
from .runtime import Exporter

EXPORTER_KEY = web.AppKey("exporter", Exporter)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_app(exporter: Exporter) -> web.Application:
    app = web.Application()
    app[EXPORTER_KEY] = exporter
    app.router.add_get("/", landing_page)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    return app


async def metrics(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    response = web.Response(
        body=await exporter.render_metrics(), headers={"Content-Type": CONTENT_TYPE}
    )
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression()
    return response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[EXPORTER_KEY].ready:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


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
    module_names = [m for m in request.query.getall("module", []) if m]
    unknown = [m for m in module_names if m not in exporter.inventory.modules]
    if unknown:
        known = ", ".join(exporter.inventory.modules)
        return web.Response(status=400, text=f"Unknown module {unknown[0]!r}; modules: {known}\n")
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


def _age(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    seconds = int(time.time() - timestamp)
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


async def landing_page(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    state = exporter.state
    inventory = state.inventory
    e = html.escape
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
            f"<td>{e('; '.join(failed))}</td>"
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
    reload_note = (
        ""
        if exporter.reload_status.successful
        else f"<p class=bad>Last config reload FAILED; the previous config keeps running:</p>"
        f"<pre>{e(exporter.reload_status.last_error)}</pre>"
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
{problems}{reload_note}
<h2>Tiers</h2>
<table><tr><th>tier</th><th>endpoints</th><th>up</th><th>down</th><th>not yet probed</th></tr>
{"".join(rows)}</table>
<h2>Down now ({len(down_rows)})</h2>
{down_table}
<h2>Degraded quality ({len(degraded_rows)})</h2>
{degraded_table}
<h2>Links</h2>
<ul><li><a href="/metrics">/metrics</a></li>
<li><a href="/probe?target={e(next(iter(inventory.endpoints)))}&amp;debug=true">/probe</a>
 (ad-hoc: <code>?target=ID&amp;module=NAME&amp;debug=true</code>)</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a>,
 <code>POST /-/reload</code></li></ul>
</body></html>
"""
    return web.Response(text=page, content_type="text/html", charset="utf-8")
