"""An endpoint's HTTP management interface: status and media statistics documents.

The documents imitate a Cisco-like codec (xAPI XML status) and a Poly-like one (REST
JSON conferences and media streams) for the `stats` prober; their figures follow the
endpoint's current fault (loss, jitter). Delay and jitter faults also delay the answers.
A down endpoint's listener is closed (see listeners.py); with the `garbage` fault every
page is 200 with random bytes in place of the document.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

from aiohttp import web

from ..config.model import Endpoint
from . import media
from .faults import Fault

Render = Callable[[], tuple[str, str]]  # -> (text, content type)


def build_app(
    endpoint: Endpoint, fault: Callable[[], Fault], rng: random.Random
) -> web.Application:
    async def answer(render: Render) -> web.Response:
        current = fault()
        delay = current.network_delay(rng)
        if delay > 0:
            await asyncio.sleep(delay)
        text, content_type = render()
        if current.garbage:
            body = b"\x00" + rng.randbytes(rng.randint(16, 400))
            return web.Response(body=body, content_type=content_type)
        return web.Response(text=text, content_type=content_type)

    def poly(path: str) -> Render:
        def render() -> tuple[str, str]:
            documents = media.poly_media_json(media.sample_for(fault(), rng))
            return json.dumps(documents[path]), media.POLY_CONTENT_TYPE

        return render

    def cisco_status() -> tuple[str, str]:
        return media.cisco_status_xml(media.sample_for(fault(), rng)), media.CISCO_CONTENT_TYPE

    def status() -> tuple[str, str]:
        document = {"id": endpoint.id, "name": endpoint.name, "in_call": True}
        return json.dumps(document), "application/json"

    def index() -> tuple[str, str]:
        return f"simulated bridge endpoint {endpoint.id} ({endpoint.name})\n", "text/plain"

    pages: dict[str, Render] = {
        "/": index,
        "/api/status": status,
        media.CISCO_STATUS_PATH: cisco_status,
        media.POLY_MEDIASTATS_PATH: poly(media.POLY_MEDIASTATS_PATH),
        media.POLY_CONFERENCES_PATH: poly(media.POLY_CONFERENCES_PATH),
    }
    app = web.Application()
    for path, render in pages.items():

        async def handler(request: web.Request, render: Render = render) -> web.Response:
            return await answer(render)

        app.router.add_get(path, handler)
    return app
