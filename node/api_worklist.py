"""Worklist and audit routes: ``GET /api/v1/worklist`` and ``GET /api/v1/audit``.

The worklist is the signed-in user's diagnoses, newest first, with paging
(``offset``, ``limit``) and filters: ``patient_ref`` (matched through the
node's keyed pseudonym, so the clear reference is never stored or logged),
``date`` (``YYYY-MM-DD``, UTC) and ``risk_level``. ``scope=all`` lists every
user's and is for administrators (and the machine token) only. Each item
carries its place on the chain (mined / pending, block height and hash).

``GET /api/v1/audit`` pages through the append-only audit log, newest first,
with whether its hash chain is intact; administrators only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from node.chain import ChainService
from node.keys import CHAIN, IDENTITY
from node.auth import ACCOUNTS, Principal, get_principal
from node.records import (
    RecordError,
    RecordKeys,
    compute_patient_pseudonym,
    derive_record_keys,
)
from node.users import MAX_PAGE

API = "/api/v1"
DEFAULT_PAGE = 20
MAX_OFFSET = 10**9
RISK_LEVELS = ("High", "Moderate", "Low")
SCOPES = ("mine", "all")
DAY_MS = 24 * 60 * 60 * 1000
WORKLIST_KEYS = web.AppKey("worklist_record_keys", RecordKeys)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class QueryError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def parse_page(request: web.Request) -> tuple[int, int]:
    values = []
    for name, default, high in (("offset", 0, MAX_OFFSET), ("limit", DEFAULT_PAGE, MAX_PAGE)):
        text = request.query.get(name, "")
        if text == "":
            values.append(default)
        elif text.isascii() and text.isdigit() and len(text) <= 10 and (name == "offset" or int(text) >= 1) \
                and int(text) <= high:
            values.append(int(text))
        else:
            raise QueryError("bad-parameter", f"{name} must be a whole number from {0 if name == 'offset' else 1} "
                                              f"to {high}")
    return values[0], values[1]


def parse_filters(request: web.Request) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    risk = request.query.get("risk_level", "")
    if risk:
        if risk not in RISK_LEVELS:
            raise QueryError("bad-parameter", f"risk_level must be one of {RISK_LEVELS}")
        filters["risk_level"] = risk
    day = request.query.get("date", "")
    if day:
        try:
            start = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            raise QueryError("bad-parameter", "date must be YYYY-MM-DD (a day in UTC)") from None
        filters["since_ms"] = int(start.timestamp() * 1000)
        filters["until_ms"] = filters["since_ms"] + DAY_MS
    patient_ref = request.query.get("patient_ref", "")
    if patient_ref.strip():
        try:
            filters["pseudonym"] = compute_patient_pseudonym(request.app[WORKLIST_KEYS], patient_ref)
        except RecordError as failure:
            raise QueryError(failure.code, failure.message) from None
    return filters


async def add_chain_positions(chain: ChainService, items: list[dict[str, Any]]) -> None:
    """Where each record is now (one read on the chain thread)."""
    locations = await chain.get_record_locations([bytes.fromhex(item["record_id"]) for item in items])
    for item, location in zip(items, locations, strict=True):
        if location is None:
            item.update(status="pending", block_height=None, block_hash=None)
        else:
            meta, _ = location
            item.update(status="mined", block_height=meta.height, block_hash=meta.block_hash.hex())


def require_person(request: web.Request) -> Principal:
    principal = get_principal(request)
    if principal is None:  # the middleware already refused; kept so the handler stands on its own
        raise web.HTTPUnauthorized()
    return principal


async def get_worklist(request: web.Request) -> web.Response:
    principal = require_person(request)
    scope = request.query.get("scope", "mine")
    if scope not in SCOPES:
        return error(400, "bad-parameter", f"scope must be one of {SCOPES}")
    if scope == "all" and not principal.sees_everything:
        return error(403, "admin-only", "only administrators can list every user's diagnoses")
    try:
        offset, limit = parse_page(request)
        filters = parse_filters(request)
    except QueryError as failure:
        return error(400, failure.code, failure.message)
    username = None if scope == "all" else principal.username
    total, items = await asyncio.to_thread(request.app[ACCOUNTS].list_diagnoses, username, filters, offset, limit)
    await add_chain_positions(request.app[CHAIN], items)
    return web.json_response({"scope": scope, "username": principal.username, "total": total, "offset": offset,
                              "limit": limit, "items": items})


async def get_audit(request: web.Request) -> web.Response:
    principal = require_person(request)
    if not principal.sees_everything:
        return error(403, "admin-only", "the audit log is for administrators")
    try:
        offset, limit = parse_page(request)
    except QueryError as failure:
        return error(400, failure.code, failure.message)
    accounts = request.app[ACCOUNTS]
    username = request.query.get("username") or None
    total, entries = await asyncio.to_thread(accounts.list_audit, offset, limit, username)
    intact, first_bad = await asyncio.to_thread(accounts.verify_audit)
    return web.json_response({"total": total, "offset": offset, "limit": limit, "entries": entries,
                              "chain_intact": intact, "first_bad_seq": first_bad})


def setup_worklist(app: web.Application) -> None:
    app[WORKLIST_KEYS] = derive_record_keys(app[IDENTITY].private_key)
    app.router.add_get(f"{API}/worklist", get_worklist)
    app.router.add_get(f"{API}/audit", get_audit)
