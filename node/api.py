"""The web page at /, the OpenAPI document at /api/v1/openapi.json and the Prometheus scrape at /metrics.

The JSON API itself lives in route modules that register their own routes:
``node/api_chain.py`` (public chain queries) and ``node/api_diagnoses.py``
(diagnoses); what they share is in ``node/http.py``, ``node/views.py`` and
``node/keys.py``. The routes and shapes are documented in ``docs/API.md``.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from node.http import API_PREFIX, VERSION, json_reply
from node.keys import METRICS
from node.openapi import build_openapi

STATIC_DIR = Path(__file__).resolve().parent / "static"


async def get_index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                   "base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


async def get_openapi(request: web.Request) -> web.Response:
    return json_reply(build_openapi(VERSION))


async def get_metrics_text(request: web.Request) -> web.Response:
    """Prometheus text format of this node's own registry."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_page_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", get_metrics_text)
    app.router.add_get(f"{API_PREFIX}/openapi.json", get_openapi)
    app.router.add_get("/", get_index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
