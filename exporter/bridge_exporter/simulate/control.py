"""The simulator's control API: set and clear faults while it runs (aiohttp)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config.values import ValueProblem
from .book import FaultEntry
from .faults import FIELD_NAMES, fault_from_mapping
from .limits import CONTROL_BODY_MAX_BYTES, LIMITS, check

if TYPE_CHECKING:
    from .network import Simulator

DEFAULT_CONTROL_LISTEN = ("127.0.0.1", 9199)
SIMULATOR_KEY: web.AppKey[Simulator] = web.AppKey("simulator")


def _field_ranges() -> str:
    width = max(len(name) for name in FIELD_NAMES)
    return "\n".join(f"  {name:<{width}}  {LIMITS[name].allowed()}" for name in FIELD_NAMES)


HELP = f"""bridge-exporter simulator control API

GET    /faults                 faults currently set (JSON)
PUT    /faults/{{endpoint_id}}   set a fault; JSON body: fault fields and "subtree"
DELETE /faults/{{endpoint_id}}   clear the fault set on that endpoint
DELETE /faults                 clear every fault
GET    /endpoints              served endpoints: address, ports, down now, fault applied

Fault fields and their allowed values (anything else is refused with 400):
{_field_ranges()}
Durations are seconds or strings like "200ms"; loss_ratio is 0..1 or "3%".
"subtree": true applies the fault to every endpoint below too.
Bodies over {CONTROL_BODY_MAX_BYTES} bytes are refused with 413.

Example:
  curl -X PUT localhost:9199/faults/tb-hung-ha -d '{{"down": true, "subtree": true}}'
"""


def entry_json(entry: FaultEntry, now: float) -> dict[str, Any]:
    return {
        "endpoint": entry.endpoint,
        "subtree": entry.subtree,
        "endpoints_affected": entry.affected,
        "fault": entry.fault.changed_fields(),
        "description": entry.fault.describe(),
        "set_seconds_ago": round(now - entry.since, 3),
    }


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _not_found(endpoint_id: str) -> web.Response:
    return web.json_response(
        {"error": f"no endpoint {endpoint_id!r} in the inventory; GET /endpoints lists them"},
        status=404,
    )


async def index(request: web.Request) -> web.Response:
    return web.Response(text=HELP)


async def list_faults(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR_KEY]
    now = time.monotonic()
    return web.json_response({"faults": [entry_json(e, now) for e in sim.book.entries()]})


async def put_fault(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR_KEY]
    endpoint_id = request.match_info["endpoint_id"]
    if endpoint_id not in sim.inventory.endpoints:
        return _not_found(endpoint_id)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            {"error": f"the body is over {CONTROL_BODY_MAX_BYTES} bytes; a fault is a few fields"},
            status=413,
        )
    body, problem = _parse_body(raw)
    if problem:
        return _bad_request(f'{problem}; send a JSON object such as {{"down": true}}')
    problems = []
    subtree = False
    try:
        subtree = check("subtree", body.pop("subtree", False))
    except ValueProblem as exc:
        problems.append(str(exc))
    fault, fault_problems = fault_from_mapping(body)
    problems += [message for _, message in fault_problems]
    if problems:
        return _bad_request("; ".join(problems))
    try:
        sim.set_fault(endpoint_id, fault, subtree=subtree)
    except ValueProblem as exc:  # the book's own check; the parsing above should match it
        return _bad_request(str(exc))
    entry = sim.book.set_on(endpoint_id)
    assert entry is not None
    return web.json_response(entry_json(entry, time.monotonic()))


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _parse_body(raw: bytes) -> tuple[dict[str, Any], str]:
    """The body as a JSON object (an empty body is `{}`), or ({}, what is wrong)."""
    try:
        text = raw.decode("utf-8")  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError as exc:
        return {}, f"the body is not UTF-8 (byte {exc.start} is 0x{raw[exc.start]:02x})"
    try:
        body = json.loads(text or "{}", parse_constant=_refuse_constant)
    except (json.JSONDecodeError, _NotJsonNumber) as exc:
        return {}, f"the body is not JSON ({exc})"
    except ValueError:  # Python refuses integers over 4300 digits
        return {}, "the body has a number with thousands of digits"
    except RecursionError:
        return {}, "the body nests too deeply"
    if not isinstance(body, dict):
        return {}, f"the body must be a JSON object, not {_json_kind(body)}"
    return body, ""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


async def delete_fault(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR_KEY]
    endpoint_id = request.match_info["endpoint_id"]
    if endpoint_id not in sim.inventory.endpoints:
        return _not_found(endpoint_id)
    return web.json_response({"endpoint": endpoint_id, "cleared": sim.clear_fault(endpoint_id)})


async def delete_all(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR_KEY]
    return web.json_response({"cleared": sim.clear_all()})


async def list_endpoints(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR_KEY]
    served = []
    for endpoint_id, servers in sim.servers.items():
        entry = sim.book.entry_for(endpoint_id)
        served.append(
            {
                "id": endpoint_id,
                "address": servers.address,
                "ports": servers.ports,
                "down": servers.is_down(),
                "fault_from": entry.endpoint if entry else None,
                "fault": entry.fault.describe() if entry else "no fault",
                "problems": servers.problems,
            }
        )
    skipped = [{"id": k, "reason": v} for k, v in sim.skipped.items()]
    return web.json_response({"served": served, "skipped": skipped})


def build_control_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=CONTROL_BODY_MAX_BYTES)
    app[SIMULATOR_KEY] = sim
    app.router.add_get("/", index)
    app.router.add_get("/faults", list_faults)
    app.router.add_put("/faults/{endpoint_id}", put_fault)
    app.router.add_delete("/faults/{endpoint_id}", delete_fault)
    app.router.add_delete("/faults", delete_all)
    app.router.add_get("/endpoints", list_endpoints)
    return app
