"""Diagnoses: POST /diagnoses (upload, diagnose, record durably, optionally wait until mined) and GET /diagnoses/{id}."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from consensus.types import DiagnosisRecord
from diagnostics.errors import DiagnosisError, get_http_status
from diagnostics.plugin import DiagnosticPlugin
from diagnostics.result import DiagnosisResult
from diagnostics.risk import RiskFactors
from node.chain import ChainService
from node.auth import get_principal
from node.http import API_PREFIX, ApiError, json_reply, parse_hex, parse_int, require_token
from node.keys import CHAIN, DIAGNOSIS_SLOTS, IDENTITY, METRICS, MINER, PLUGIN, RECORD_KEYS
from node.records import RecordError, build_record, derive_record_keys, normalise_patient_ref, parse_details
from node.views import chain_status_json, record_json

# Request limits (explicit; aiohttp's client_max_size does not cover streamed multipart).
MAX_UPLOAD_BYTES = 40 * 1024 * 1024  # whole multipart body
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # one image part
MAX_FIELD_BYTES = 1024  # one text field
MAX_PARTS = 8
MAX_CONCURRENT_DIAGNOSES = 16
WAIT_DEFAULT_S = 30.0
WAIT_MAX_S = 120.0
IMAGE_FIELDS = ("xray", "ct")
TEXT_FIELDS = ("age", "smoking", "family_history", "patient_ref")



# ------------------------------------------------------------- diagnosis routes
async def read_part(part: BodyPartReader, limit: int, what: str, budget: list[int]) -> bytes:
    """Read one multipart part, refusing it once it passes its own limit or the body's."""
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        budget[0] -= len(chunk)
        if size > limit:
            raise ApiError(413, "file-too-large" if limit == MAX_IMAGE_BYTES else "field-too-large",
                           f"{what} is larger than the limit of {limit} bytes")
        if budget[0] < 0:
            raise ApiError(413, "body-too-large", f"the upload is larger than the limit of {MAX_UPLOAD_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_diagnosis_form(request: web.Request) -> tuple[dict[str, bytes], dict[str, str]]:
    """Parse the multipart upload: image files ``xray``/``ct`` and the text fields."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(415, "not-multipart", "send the images as multipart/form-data (fields xray and/or ct)")
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
        raise ApiError(413, "body-too-large", f"the upload is larger than the limit of {MAX_UPLOAD_BYTES} bytes")
    images: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    budget = [MAX_UPLOAD_BYTES]
    try:
        reader = await request.multipart()
        for _ in range(MAX_PARTS + 1):
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "bad-form", "nested multipart bodies are not accepted")
            await read_form_part(part, images, fields, budget)
        else:
            raise ApiError(400, "bad-form", f"at most {MAX_PARTS} form fields are accepted")
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as error:  # malformed multipart
        raise ApiError(400, "bad-form", f"the multipart body cannot be parsed: {error}") from error
    if not images:
        raise ApiError(400, "no-image", "attach at least one image: a file field named xray and/or ct")
    return images, fields


async def read_form_part(part: BodyPartReader, images: dict[str, bytes], fields: dict[str, str],
                         budget: list[int]) -> None:
    name = part.name or ""
    if name in images or name in fields:
        raise ApiError(400, "bad-form", f"field {name!r} is given twice")
    if name in IMAGE_FIELDS:
        images[name] = await read_part(part, MAX_IMAGE_BYTES, f"the {name} image", budget)
    elif name in TEXT_FIELDS:
        raw = await read_part(part, MAX_FIELD_BYTES, f"field {name}", budget)
        try:
            fields[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "bad-form", f"field {name} must be UTF-8 text") from None
    else:
        raise ApiError(400, "unknown-field", f"unknown form field {name!r}; expected {IMAGE_FIELDS + TEXT_FIELDS}")


def diagnosis_error(error: DiagnosisError | RecordError) -> ApiError:
    return ApiError(get_http_status(error.code), error.code, error.message)


def require_plugin(request: web.Request) -> DiagnosticPlugin:
    plugin = request.app[PLUGIN]
    if plugin is None:
        raise ApiError(503, "relay-only", "this node runs without a diagnostic plug-in (relay only); "
                                          "send diagnoses to a node started with a plug-in")
    return plugin


async def run_diagnosis(request: web.Request) -> tuple[DiagnosisResult, dict[str, bytes], str | None]:
    """Parse the upload and run the plug-in; refusals become 4xx errors."""
    plugin = require_plugin(request)
    images, fields = await read_diagnosis_form(request)
    patient_ref = fields.pop("patient_ref", None)
    try:
        normalise_patient_ref(patient_ref)
        risk = RiskFactors.from_mapping(fields)
        result = await plugin.diagnose_async(images, risk)
    except (DiagnosisError, RecordError) as error:
        raise diagnosis_error(error) from None
    return result, images, patient_ref


def check_diagnosis_request(request: web.Request) -> tuple[str, float]:
    """Token, plug-in present, query parameters; returns (wait, timeout in seconds)."""
    require_token(request)
    require_plugin(request)
    wait = request.query.get("wait", "")
    if wait not in ("", "mined"):
        raise ApiError(400, "bad-parameter", "wait must be 'mined' (or left out)")
    timeout = parse_int(request, "timeout", int(WAIT_DEFAULT_S), 1, int(WAIT_MAX_S)) or WAIT_DEFAULT_S
    return wait, float(timeout)


async def store_diagnosis(request: web.Request, result: DiagnosisResult, images: dict[str, bytes],
                          patient_ref: str | None) -> DiagnosisRecord:
    """Build and sign the record, commit it with its details, wake the miner (acknowledge only after this)."""
    chain, identity = request.app[CHAIN], request.app[IDENTITY]
    try:
        # Off the event loop: keyed digests over images of up to 20 MiB, JSON of the result, signing.
        principal = get_principal(request)
        new = await asyncio.to_thread(functools.partial(
            build_record, result, images, patient_ref, identity.private_key, identity.member_id,
            request.app[RECORD_KEYS], chain.clock_ms(), operator=principal.username if principal else None))
    except RecordError as error:
        raise diagnosis_error(error) from None
    await chain.add_pending_record(new.record, new.details_bytes)
    request.app[MINER].wake()
    return new.record


async def post_diagnosis(request: web.Request) -> web.Response:
    wait, timeout = check_diagnosis_request(request)
    slots, metrics = request.app[DIAGNOSIS_SLOTS], request.app.get(METRICS)
    if slots.locked():
        raise ApiError(429, "busy", "too many diagnoses in progress; retry shortly", {"Retry-After": "1"})
    started = time.perf_counter()
    async with slots:
        try:
            result, images, patient_ref = await run_diagnosis(request)
        except ApiError:
            if metrics is not None:
                metrics.diagnoses.labels(outcome="refused").inc()
            raise
    record = await store_diagnosis(request, result, images, patient_ref)
    if metrics is not None:
        metrics.diagnosis_seconds.observe(time.perf_counter() - started)
        metrics.diagnoses.labels(outcome="recorded").inc()
    chain = request.app[CHAIN]
    if wait == "mined":
        await wait_until_mined(chain, record.record_id, timeout)
    body = await read_diagnosis(chain, record.record_id)
    body["wait"] = {"requested": wait or None, "timed_out": bool(wait) and body["status"] != "mined"}
    return json_reply(body, status=202)


async def wait_until_mined(chain: ChainService, record_id: bytes, timeout: float) -> bool:
    """Bounded wait until the record is on the best chain (checked on the chain thread after each tip change)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        tip = chain.view.tip_hash
        if await chain.is_record_on_best_chain(record_id):
            return True
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        await chain.wait_for(functools.partial(is_tip_moved, chain, tip), remaining)


def is_tip_moved(chain: ChainService, tip: bytes) -> bool:
    return chain.view.tip_hash != tip


async def read_diagnosis(chain: ChainService, record_id: bytes) -> dict[str, Any]:
    """Stored result + chain status for one of our records."""
    lookup = await chain.get_record_evidence(record_id)
    evidence = lookup.evidence
    if evidence.details is None:
        raise ApiError(404, "diagnosis-not-found", f"this node holds no diagnosis {record_id.hex()}")
    try:
        details = parse_details(evidence.details)
    except RecordError as error:
        raise ApiError(500, error.code, error.message) from None
    return {
        "record_id": record_id.hex(),
        "created_ms": details.get("created_ms"),
        **chain_status_json(lookup.view, evidence, lookup.meta),
        "result": details.get("result"),
        "images": details.get("images"),
        "patient_pseudonym": details["commitment"].get("patient_pseudonym"),
        "operator": details["commitment"].get("operator"),
        "record": record_json(chain.params, evidence.record) if evidence.record else None,
    }


async def get_diagnosis(request: web.Request) -> web.Response:
    require_token(request)
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    return json_reply(await read_diagnosis(request.app[CHAIN], record_id))


def setup_diagnosis_routes(app: web.Application) -> None:
    app[DIAGNOSIS_SLOTS] = asyncio.Semaphore(MAX_CONCURRENT_DIAGNOSES)
    app[RECORD_KEYS] = derive_record_keys(app[IDENTITY].private_key)
    app.router.add_post(f"{API_PREFIX}/diagnoses", post_diagnosis)
    app.router.add_get(f"{API_PREFIX}/diagnoses/{{record_id}}", get_diagnosis)
