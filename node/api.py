"""HTTP API under /api/v1 (JSON), the web page at /, the error middleware and auth.

Chain queries are public; writes (POST /diagnoses) and off-chain details
(GET /diagnoses/{id}) need ``Authorization: Bearer <api token>``. Every error
is JSON ``{"error": code, "message": text}``. Every store call runs on the
chain's DB thread (``chain.run``); diagnoses run in the plug-in's executor.
The routes and shapes are documented in ``docs/API.md`` and served as
OpenAPI 3 at /api/v1/openapi.json.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from consensus.merkle import compute_merkle_proof
from consensus.types import Block, DiagnosisRecord
from consensus.validation import BlockMeta
from diagnostics.errors import DiagnosisError
from diagnostics.risk import RiskFactors
from node.records import (
    RecordError,
    RecordEvidence,
    RecordKeys,
    build_record,
    derive_record_keys,
    normalise_patient_ref,
    parse_details,
    verify_record,
)
from node.store import ChainStore

log = logging.getLogger("lungledger.api")
VERSION = "0.1.0"
STATIC_DIR = Path(__file__).resolve().parent / "static"

# Request limits (explicit; aiohttp's client_max_size does not cover streamed multipart).
MAX_UPLOAD_BYTES = 40 * 1024 * 1024  # whole multipart body
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # one image part
MAX_FIELD_BYTES = 1024  # one text field
MAX_PARTS = 8
MAX_CONCURRENT_DIAGNOSES = 16
BLOCKS_DEFAULT_LIMIT = 20
BLOCKS_MAX_LIMIT = 100
WAIT_DEFAULT_S = 30.0
WAIT_MAX_S = 120.0
MAX_HEIGHT_DIGITS = 12
IMAGE_FIELDS = ("xray", "ct")
TEXT_FIELDS = ("age", "smoking", "family_history", "patient_ref")

# Plug-in reason codes -> HTTP status; any other DiagnosisError is 422.
DIAGNOSIS_STATUS = {
    "bad-risk-factor": 400, "no-image": 400, "bad-modality": 400, "bad-patient-ref": 400,
    "file-too-large": 413, "too-many-pixels": 413, "unsupported-format": 415,
    "bad-config": 503, "bad-model-card": 503, "model-mismatch": 503,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
json_dumps = functools.partial(json.dumps, default=lambda value: value.item() if hasattr(value, "item") else str(value))
DIAGNOSIS_SLOTS = web.AppKey("diagnosis_slots", asyncio.Semaphore)
CHAIN_VERIFY_TASK = web.AppKey("chain_verify_task", dict)
RECORD_KEYS = web.AppKey("record_keys", RecordKeys)


class ApiError(web.HTTPException):
    """An error with a stable code, rendered as {"error": code, "message": text}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=message)
        self.code = code
        self.message = message
        self.extra_headers = headers or {}


def json_error(status: int, code: str, message: str, headers: Any = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def json_reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=json_dumps)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return json_error(error.status_code, error.code, error.message, error.extra_headers)
    except web.HTTPException as error:
        if error.status_code < 400 or not request.path.startswith("/api/"):
            raise
        code = error.reason.lower().replace(" ", "-")
        return json_error(error.status_code, code, error.text or error.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        if not request.path.startswith("/api/"):
            raise
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal-error", "the node failed to handle this request; see its log")


# --------------------------------------------------------------------- helpers
def _app_keys() -> Any:
    import node.app as keys  # imported late: node.app imports this module

    return keys


def get_metrics(app: web.Application) -> Any:
    """The node's Prometheus metrics, where the app has them."""
    key = getattr(_app_keys(), "METRICS", None)
    return app.get(key) if key is not None else None


def get_chain_store(request: web.Request) -> tuple[Any, ChainStore]:
    chain = request.app[_app_keys().CHAIN]
    return chain, chain.store


def require_token(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="lungledger"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing-token", "this needs the node's API token: send 'Authorization: Bearer <token>' "
                                             "(the token is in the node's data directory, file api_token)", challenge)
    expected = request.app[_app_keys().IDENTITY].api_token
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "bad-token", "the API token is wrong for this node", challenge)


def parse_hex(text: str, length: int, what: str) -> bytes:
    if len(text) != 2 * length:
        raise ApiError(400, f"bad-{what}", f"{what.replace('-', ' ')} must be {2 * length} hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"bad-{what}", f"{what.replace('-', ' ')} must be hexadecimal") from None


def parse_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or len(text) > MAX_HEIGHT_DIGITS or not low <= int(text) <= high:
        raise ApiError(400, "bad-parameter", f"{name} must be a whole number from {low} to {high}")
    return int(text)


def member_name(store: ChainStore, member_id: bytes) -> str | None:
    member = store.params.members_by_id.get(member_id)
    return member.name if member else None


def record_json(store: ChainStore, record: DiagnosisRecord) -> dict[str, Any]:
    return {
        "record_id": record.record_id.hex(),
        "member_id": record.member_id.hex(),
        "member_name": member_name(store, record.member_id),
        "created_ms": record.created_ms,
        "modalities": list(record.modalities),
        "image_digests": [d.hex() for d in record.image_digests],
        "model_ids": [m.hex() for m in record.model_ids],
        "probabilities_ppm": list(record.probabilities_ppm),
        "fused_ppm": record.fused_ppm,
        "label": record.label,
        "risk_level": record.risk_level,
        "details_digest": record.details_digest.hex(),
        "signature": record.signature.hex(),
        "record_hash": record.record_hash.hex(),
        "encoded_hex": record.encoded.hex(),
    }


def block_json(store: ChainStore, block: Block, meta: BlockMeta) -> dict[str, Any]:
    header = block.header
    on_best = store.is_on_best_chain(meta.block_hash)
    next_hash = store.get_best_hash(meta.height + 1) if on_best else None
    return {
        "height": header.height,
        "hash": header.block_hash.hex(),
        "prev_hash": header.prev_hash.hex(),
        "next_hash": next_hash.hex() if next_hash else None,
        "merkle_root": header.merkle_root.hex(),
        "timestamp_ms": header.timestamp_ms,
        "difficulty": header.difficulty,
        "miner_id": header.miner_id.hex(),
        "miner_name": member_name(store, header.miner_id),
        "nonce": header.nonce,
        "version": header.version,
        "chain_work": str(meta.chain_work),
        "on_best_chain": on_best,
        "confirmations": store.height - meta.height + 1 if on_best else 0,
        "signature": block.signature.hex(),
        "size_bytes": len(block.encoded),
        "record_count": len(block.records),
        "record_ids": [r.record_id.hex() for r in block.records],
        "header_hex": header.encoded.hex(),
    }


def read_block_json(store: ChainStore, block_hash: bytes) -> dict[str, Any] | None:
    meta = store.get_meta(block_hash)
    if meta is None:
        return None
    return block_json(store, store.get_block(block_hash), meta)


def read_blocks_json(store: ChainStore, start: int, limit: int) -> list[dict[str, Any]]:
    hashes = [store.get_best_hash(h) for h in range(start, min(start + limit, store.height + 1))]
    return [read_block_json(store, h) for h in hashes if h is not None]  # type: ignore[misc]


def read_block_ref(store: ChainStore, ref: str) -> dict[str, Any] | None:
    if ref.isascii() and ref.isdigit() and len(ref) <= MAX_HEIGHT_DIGITS:
        block_hash = store.get_best_hash(int(ref))
        return read_block_json(store, block_hash) if block_hash else None
    return read_block_json(store, parse_hex(ref, 32, "block-ref"))


def gather_evidence(store: ChainStore, record_id: bytes) -> tuple[RecordEvidence, BlockMeta | None, int | None]:
    """On the chain thread: the record (best chain or pending), its proof and the local details."""
    location = store.get_record_location(record_id)
    details = store.get_details(record_id)
    if location is None:
        record = store.get_pending_record(record_id)
        creator = store.params.members_by_id.get(record.member_id) if record else None
        return RecordEvidence(record, False, details=details, creator=creator), None, None
    meta, position = location
    block = store.get_block(meta.block_hash)
    record = block.records[position]
    proof = compute_merkle_proof([r.record_hash for r in block.records], position)
    evidence = RecordEvidence(record, True, proof, block.header.merkle_root, details,
                              store.params.members_by_id.get(record.member_id))
    return evidence, meta, position


def chain_status_json(store: ChainStore, evidence: RecordEvidence, meta: BlockMeta | None) -> dict[str, Any]:
    if meta is not None:
        return {"status": "mined", "block_height": meta.height, "block_hash": meta.block_hash.hex(),
                "confirmations": store.height - meta.height + 1}
    status = "pending" if evidence.record is not None else "not-on-chain"
    return {"status": status, "block_height": None, "block_hash": None, "confirmations": 0}


# ---------------------------------------------------------------- chain routes
async def get_status(request: web.Request) -> web.Response:
    keys = _app_keys()
    chain, store = get_chain_store(request)
    identity, plugin = request.app[keys.IDENTITY], request.app.get(keys.PLUGIN)
    tip = store.tip
    peers = await get_peer_summaries(request.app)
    return json_reply({
        "node_id": identity.member_id.hex(),
        "name": identity.name,
        "chain_id": request.app[keys.GENESIS].chain_id.hex(),
        "chain_name": store.params.name,
        "height": tip.height,
        "tip_hash": tip.block_hash.hex(),
        "tip_time_ms": tip.timestamp_ms,
        "difficulty": store.params.difficulty,
        "peer_count": len(peers),
        "pending_records": await chain.run(store.pending_count),
        "members": [{"member_id": m.member_id.hex(), "name": m.name} for m in store.params.members],
        "diagnostics": plugin.info() if plugin is not None else None,
        "version": VERSION,
    })


async def get_blocks(request: web.Request) -> web.Response:
    chain, store = get_chain_store(request)
    limit = parse_int(request, "limit", BLOCKS_DEFAULT_LIMIT, 1, BLOCKS_MAX_LIMIT) or BLOCKS_DEFAULT_LIMIT
    start = parse_int(request, "start", None, 0, 10**MAX_HEIGHT_DIGITS - 1)
    height = store.height
    if start is None:
        start = max(0, height - limit + 1)
    blocks = await chain.run(read_blocks_json, store, start, limit)
    return json_reply({"height": height, "start": start, "limit": limit, "blocks": blocks})


async def get_block(request: web.Request) -> web.Response:
    chain, store = get_chain_store(request)
    ref = request.match_info["ref"]
    block = await chain.run(read_block_ref, store, ref)
    if block is None:
        raise ApiError(404, "block-not-found", f"no block {ref} on this node (heights go from 0 to {store.height})")
    return json_reply(block)


async def get_record(request: web.Request) -> web.Response:
    chain, store = get_chain_store(request)
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    evidence, meta, position = await chain.run(gather_evidence, store, record_id)
    if evidence.record is None:
        raise ApiError(404, "record-not-found", f"no record {record_id.hex()} on the best chain or pending here")
    body: dict[str, Any] = {"record": record_json(store, evidence.record), **chain_status_json(store, evidence, meta)}
    if meta is not None:
        body["position"] = position
        body["merkle_root"] = (evidence.merkle_root or b"").hex()
        body["merkle_proof"] = [{"side": side, "hash": sibling.hex()} for side, sibling in evidence.merkle_proof or []]
    return json_reply(body)


async def get_record_verification(request: web.Request) -> web.Response:
    chain, store = get_chain_store(request)
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    evidence, meta, _ = await chain.run(gather_evidence, store, record_id)
    verification = verify_record(evidence, record_id)
    return json_reply({"record_id": record_id.hex(), **verification.to_dict(),
                       "block_height": meta.height if meta else None,
                       "block_hash": meta.block_hash.hex() if meta else None})


async def get_chain_verification(request: web.Request) -> web.Response:
    """Re-validate the best chain; concurrent requests share one run."""
    from node.verify import verify_best_chain

    chain, store = get_chain_store(request)
    state = request.app[CHAIN_VERIFY_TASK]
    task = state.get("task")
    if task is None or task.done():
        started = time.perf_counter()

        async def run() -> dict[str, Any]:
            # Its own thread, not the chain thread: a long re-validation must not hold up
            # new blocks and records. It reads a snapshot of the best chain block by block.
            report = await asyncio.to_thread(verify_best_chain, store, chain.clock_ms())
            return {"status": "valid" if report.valid else "invalid", "height": report.height,
                    "blocks_checked": report.blocks_checked, "records_checked": report.records_checked,
                    "first_bad_block": None if report.valid else {
                        "height": report.first_bad_height, "hash": report.first_bad_hash,
                        "error": report.reason, "message": report.message},
                    "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}

        task = state["task"] = asyncio.ensure_future(run())
    return json_reply(await asyncio.shield(task))


async def get_peer_summaries(app: web.Application) -> list[dict[str, Any]]:
    """Connected peers from node.p2p when the network provides them; none otherwise."""
    import node.p2p as p2p

    getter = getattr(p2p, "get_peer_summaries", None)
    if getter is None:
        return []
    peers = getter(app)
    if asyncio.iscoroutine(peers):
        peers = await peers
    return [dict(peer) if not isinstance(peer, dict) else peer for peer in peers]


async def get_peers(request: web.Request) -> web.Response:
    peers = await get_peer_summaries(request.app)
    config = request.app[_app_keys().CONFIG]
    return json_reply({"count": len(peers), "peers": peers, "bootstrap": list(config.peers)})


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
    return ApiError(DIAGNOSIS_STATUS.get(error.code, 422), error.code, error.message)


async def run_diagnosis(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes], str | None]:
    """Parse the upload and run the plug-in; refusals become 4xx errors."""
    plugin = request.app[_app_keys().PLUGIN]
    images, fields = await read_diagnosis_form(request)
    patient_ref = fields.pop("patient_ref", None)
    try:
        normalise_patient_ref(patient_ref)
        risk = RiskFactors.from_mapping(fields)
        result = await plugin.diagnose_async(images, risk)
    except (DiagnosisError, RecordError) as error:
        raise diagnosis_error(error) from None
    return result.to_dict(), images, patient_ref


def check_diagnosis_request(request: web.Request) -> tuple[str, float]:
    """Token, plug-in present, query parameters; returns (wait, timeout in seconds)."""
    require_token(request)
    if request.app[_app_keys().PLUGIN] is None:
        raise ApiError(503, "relay-only", "this node runs without a diagnostic plug-in (relay only); "
                                          "send diagnoses to a node started with a plug-in")
    wait = request.query.get("wait", "")
    if wait not in ("", "mined"):
        raise ApiError(400, "bad-parameter", "wait must be 'mined' (or left out)")
    timeout = parse_int(request, "timeout", int(WAIT_DEFAULT_S), 1, int(WAIT_MAX_S)) or WAIT_DEFAULT_S
    return wait, float(timeout)


async def store_diagnosis(request: web.Request, result: dict[str, Any], images: dict[str, bytes],
                          patient_ref: str | None) -> DiagnosisRecord:
    """Build and sign the record, commit it with its details, wake the miner (acknowledge only after this)."""
    keys = _app_keys()
    chain, identity = request.app[keys.CHAIN], request.app[keys.IDENTITY]
    try:
        new = build_record(result, images, patient_ref, identity.private_key, identity.member_id,
                           request.app[RECORD_KEYS], chain.clock_ms())
    except RecordError as error:
        raise diagnosis_error(error) from None
    await chain.add_pending_record(new.record, new.details_bytes)
    request.app[keys.MINER].wake()
    return new.record


async def post_diagnosis(request: web.Request) -> web.Response:
    wait, timeout = check_diagnosis_request(request)
    slots, metrics = request.app[DIAGNOSIS_SLOTS], get_metrics(request.app)
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
    chain, store = get_chain_store(request)
    if wait == "mined":
        await wait_until_mined(chain, store, record.record_id, timeout)
    body = await chain.run(read_diagnosis, store, record.record_id)
    body["wait"] = {"requested": wait or None, "timed_out": bool(wait) and body["status"] != "mined"}
    return json_reply(body, status=202)


async def wait_until_mined(chain: Any, store: ChainStore, record_id: bytes, timeout: float) -> bool:
    """Bounded wait until the record is on the best chain (checked on the DB thread after each tip change)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        tip = store.tip.block_hash
        if await chain.run(store.get_record_location, record_id) is not None:
            return True
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        await chain.wait_for(lambda: store.tip.block_hash != tip, remaining)


def read_diagnosis(store: ChainStore, record_id: bytes) -> dict[str, Any]:
    """On the chain thread: stored result + chain status for one of our records."""
    data = store.get_details(record_id)
    if data is None:
        raise ApiError(404, "diagnosis-not-found", f"this node holds no diagnosis {record_id.hex()}")
    try:
        details = parse_details(data)
    except RecordError as error:
        raise ApiError(500, error.code, error.message) from None
    evidence, meta, _ = gather_evidence(store, record_id)
    return {
        "record_id": record_id.hex(),
        "created_ms": details.get("created_ms"),
        **chain_status_json(store, evidence, meta),
        "result": details.get("result"),
        "images": details.get("images"),
        "patient_pseudonym": details["commitment"].get("patient_pseudonym"),
        "record": record_json(store, evidence.record) if evidence.record else None,
    }


async def get_diagnosis(request: web.Request) -> web.Response:
    require_token(request)
    chain, store = get_chain_store(request)
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    return json_reply(await chain.run(read_diagnosis, store, record_id))


# ------------------------------------------------------------------ page, setup
async def get_index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                   "base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


async def get_openapi(request: web.Request) -> web.Response:
    from node.openapi import build_openapi

    return json_reply(build_openapi(VERSION))


def setup_api(app: web.Application) -> None:
    app[DIAGNOSIS_SLOTS] = asyncio.Semaphore(MAX_CONCURRENT_DIAGNOSES)
    app[CHAIN_VERIFY_TASK] = {}
    app[RECORD_KEYS] = derive_record_keys(app[_app_keys().IDENTITY].private_key)
    api = "/api/v1"
    app.router.add_get(f"{api}/status", get_status)
    app.router.add_get(f"{api}/openapi.json", get_openapi)
    app.router.add_get(f"{api}/blocks", get_blocks)
    app.router.add_get(f"{api}/blocks/{{ref}}", get_block)
    app.router.add_get(f"{api}/records/{{record_id}}", get_record)
    app.router.add_get(f"{api}/records/{{record_id}}/verify", get_record_verification)
    app.router.add_get(f"{api}/chain/verify", get_chain_verification)
    app.router.add_get(f"{api}/peers", get_peers)
    app.router.add_post(f"{api}/diagnoses", post_diagnosis)
    app.router.add_get(f"{api}/diagnoses/{{record_id}}", get_diagnosis)
    app.router.add_get("/", get_index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
