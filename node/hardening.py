"""HTTP hardening: connection timeouts, security headers, per-token diagnosis limit, cached chain
verification, private data directory.

Registered by ``create_app`` with :func:`setup_hardening` (and :data:`HANDLER_ARGS`
for the connection handler); nothing here imports the rest of ``node``.

- Timeouts: aiohttp arms its keep-alive timer when a connection opens and
  received bytes do not extend it, so ``keepalive_timeout`` is both the idle
  timeout and the deadline for a request's headers (a half-open or slowloris
  connection is closed after :data:`HTTP_IDLE_TIMEOUT_S`).
- Every response carries the page's Content-Security-Policy, ``nosniff``,
  frame and referrer denial; API responses are not cached by browsers.
- One API token may hold at most :data:`MAX_DIAGNOSES_PER_TOKEN` uploads in
  progress; more are answered 429 at once (before the body is read).
- ``GET /api/v1/chain/verify`` re-validates the whole chain: its answer is
  kept per tip, so repeating it costs nothing until a new block arrives.
- The data directory is 0700 and the files in it 0600 (the SQLite file is
  created 0600 before SQLite opens it, so its WAL and SHM files are too).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger("lungledger.hardening")

HTTP_IDLE_TIMEOUT_S = 15.0
HANDLER_ARGS: dict[str, Any] = {"keepalive_timeout": HTTP_IDLE_TIMEOUT_S}
# Half of the node's 16 diagnosis slots: one token (one user, or a stolen token) cannot take them all,
# and a hospital sharing one token can still send a batch of 8 at once.
MAX_DIAGNOSES_PER_TOKEN = 8
DIAGNOSES_PATH = "/api/v1/diagnoses"
CHAIN_VERIFY_PATH = "/api/v1/chain/verify"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TipSource = Callable[[], bytes]


@dataclass
class VerifyCache:
    """The last /chain/verify answer and the tip it was computed for."""

    tip: bytes | None = None
    body: bytes = b""
    content_type: str = "application/json"


DIAGNOSES_IN_PROGRESS = web.AppKey("diagnoses_in_progress", dict)
VERIFY_CACHE = web.AppKey("verify_cache", VerifyCache)
TIP_SOURCE: web.AppKey[TipSource] = web.AppKey("tip_source")


def setup_hardening(app: web.Application, data_dir: Path, tip_source: TipSource) -> None:
    """Secure the data directory and register the headers, the per-token limit and the verify cache."""
    secure_data_dir(data_dir)
    app[DIAGNOSES_IN_PROGRESS] = {}
    app[VERIFY_CACHE] = VerifyCache()
    app[TIP_SOURCE] = tip_source
    app.on_response_prepare.append(add_security_headers)
    app.middlewares.append(per_token_diagnosis_limit)
    app.middlewares.append(cached_chain_verification)


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


# ---------------------------------------------------------------- headers
async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


# ---------------------------------------------------------------- per-token limit
def token_key(request: web.Request) -> bytes:
    """A digest of the presented credential (the token itself is never kept)."""
    return hashlib.sha256(request.headers.get("Authorization", "").strip().encode()).digest()


@web.middleware
async def per_token_diagnosis_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "POST" or request.path != DIAGNOSES_PATH:
        return await handler(request)
    in_progress: dict[bytes, int] = request.app[DIAGNOSES_IN_PROGRESS]
    key = token_key(request)
    if in_progress.get(key, 0) >= MAX_DIAGNOSES_PER_TOKEN:
        return json_error(429, "too-many-diagnoses",
                          f"this API token already has {MAX_DIAGNOSES_PER_TOKEN} diagnoses in progress; "
                          "wait for one to finish", {"Retry-After": "1"})
    in_progress[key] = in_progress.get(key, 0) + 1
    try:
        return await handler(request)
    finally:
        in_progress[key] -= 1
        if not in_progress[key]:
            del in_progress[key]


# ---------------------------------------------------------------- /chain/verify
@web.middleware
async def cached_chain_verification(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "GET" or request.path != CHAIN_VERIFY_PATH:
        return await handler(request)
    cache, tip = request.app[VERIFY_CACHE], request.app[TIP_SOURCE]()
    if cache.tip != tip:
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status != 200 or not isinstance(response.body, bytes):
            return response
        cache.tip, cache.body, cache.content_type = tip, response.body, response.content_type
    return web.Response(body=cache.body, content_type=cache.content_type, headers={"X-Verified-Tip": tip.hex()})


# ---------------------------------------------------------------- data directory
# Every SQLite file a node opens (chain, people's accounts and audit log, hospital integration): each is
# created 0600 before SQLite opens it, so its -wal and -shm files (which SQLite gives the database's mode) are too.
NODE_DATABASES = ("chain.sqlite3", "accounts.sqlite3", "hospital.sqlite3")


def secure_data_dir(data_dir: Path, databases: tuple[str, ...] = NODE_DATABASES) -> None:
    """Data directory 0700, its files 0600; the database files are created 0600 if they do not exist yet."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, PRIVATE_DIR_MODE)
    for database_name in databases:
        database = data_dir / database_name
        if not database.exists():
            os.close(os.open(database, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))
    for path in data_dir.iterdir():
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
            os.chmod(path, PRIVATE_FILE_MODE)
            log.info("made %s private (0600)", path.name)
