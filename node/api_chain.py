"""Public chain queries: status, blocks, records with Merkle proofs, verification, peers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from consensus.merkle import compute_merkle_proof
from consensus.types import Block, DiagnosisRecord
from consensus.validation import BlockMeta
from node.api import (
    CHAIN_VERIFY_TASK,
    MAX_HEIGHT_DIGITS,
    VERSION,
    ApiError,
    get_chain_store,
    json_reply,
    parse_hex,
    parse_int,
)
from node.app import CONFIG, GENESIS, IDENTITY, PLUGIN
from node.p2p import get_peer_summaries
from node.records import (
    RecordEvidence,
    verify_record,
)
from node.store import ChainStore

BLOCKS_DEFAULT_LIMIT = 20
BLOCKS_MAX_LIMIT = 100


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
    chain, store = get_chain_store(request)
    identity, plugin = request.app[IDENTITY], request.app.get(PLUGIN)
    tip = store.tip
    peers = get_peer_summaries(request.app)
    return json_reply({
        "node_id": identity.member_id.hex(),
        "name": identity.name,
        "chain_id": request.app[GENESIS].chain_id.hex(),
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


async def get_peers(request: web.Request) -> web.Response:
    peers = get_peer_summaries(request.app)
    config = request.app[CONFIG]
    return json_reply({"count": len(peers), "peers": peers, "bootstrap": list(config.peers)})

