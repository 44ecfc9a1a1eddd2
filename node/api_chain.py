"""Public chain queries: status, blocks, records with Merkle proofs, verification, peers.

Every handler reads the chain through one ``ChainView`` (the best chain as of
the last commit) and the chain service's typed queries; nothing here reaches
the store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from consensus.blocktree import ChainView
from node.chain import ChainService
from node.http import API_PREFIX, MAX_HEIGHT_DIGITS, VERSION, ApiError, json_reply, parse_hex, parse_int
from node.keys import CHAIN, CHAIN_VERIFY_TASK, CONFIG, GENESIS, IDENTITY, PLUGIN
from node.p2p import get_peer_summaries
from node.records import verify_record
from node.views import block_json, chain_status_json, record_json

BLOCKS_DEFAULT_LIMIT = 20
BLOCKS_MAX_LIMIT = 100


async def read_blocks_json(chain: ChainService, view: ChainView, hashes: list[bytes]) -> list[dict[str, Any]]:
    blocks = await chain.get_blocks(hashes)
    return [block_json(chain.params, view, block, view.metas[block.block_hash]) for block in blocks]


def resolve_block_ref(view: ChainView, ref: str) -> bytes | None:
    """A height on the best chain or a block hash (hex)."""
    if ref.isascii() and ref.isdigit() and len(ref) <= MAX_HEIGHT_DIGITS:
        return view.get_best_hash(int(ref))
    block_hash = parse_hex(ref, 32, "block-ref")
    return block_hash if view.has_block(block_hash) else None


# ---------------------------------------------------------------- chain routes
async def get_status(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    view = chain.view
    identity, plugin = request.app[IDENTITY], request.app.get(PLUGIN)
    tip = view.tip
    peers = get_peer_summaries(request.app)
    return json_reply({
        "node_id": identity.member_id.hex(),
        "name": identity.name,
        "chain_id": request.app[GENESIS].chain_id.hex(),
        "chain_name": chain.params.name,
        "height": tip.height,
        "tip_hash": tip.block_hash.hex(),
        "tip_time_ms": tip.timestamp_ms,
        "difficulty": chain.params.difficulty,
        "peer_count": len(peers),
        "pending_records": view.pending_count,
        "equivocations": len(view.evidence),
        "members": [{"member_id": m.member_id.hex(), "name": m.name} for m in chain.params.members],
        "diagnostics": plugin.info() if plugin is not None else None,
        "version": VERSION,
    })


async def get_blocks(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    limit = parse_int(request, "limit", BLOCKS_DEFAULT_LIMIT, 1, BLOCKS_MAX_LIMIT) or BLOCKS_DEFAULT_LIMIT
    start = parse_int(request, "start", None, 0, 10**MAX_HEIGHT_DIGITS - 1)
    view = chain.view
    height = view.height
    if start is None:
        start = max(0, height - limit + 1)
    blocks = await read_blocks_json(chain, view, list(view.best[start : start + limit]))
    return json_reply({"height": height, "start": start, "limit": limit, "blocks": blocks})


async def get_block(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    ref = request.match_info["ref"]
    view = chain.view
    block_hash = resolve_block_ref(view, ref)
    blocks = await read_blocks_json(chain, view, [block_hash]) if block_hash else []
    if not blocks:
        raise ApiError(404, "block-not-found", f"no block {ref} on this node (heights go from 0 to {view.height})")
    return json_reply(blocks[0])


async def get_record(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    lookup = await chain.get_record_evidence(record_id)
    evidence, meta = lookup.evidence, lookup.meta
    if evidence.record is None:
        raise ApiError(404, "record-not-found", f"no record {record_id.hex()} on the best chain or pending here")
    body: dict[str, Any] = {"record": record_json(chain.params, evidence.record),
                            **chain_status_json(lookup.view, evidence, meta)}
    if meta is not None:
        body["position"] = lookup.position
        body["merkle_root"] = (evidence.merkle_root or b"").hex()
        body["merkle_proof"] = [{"side": side, "hash": sibling.hex()} for side, sibling in evidence.merkle_proof or []]
    return json_reply(body)


async def get_record_verification(request: web.Request) -> web.Response:
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    lookup = await request.app[CHAIN].get_record_evidence(record_id)
    meta = lookup.meta
    verification = verify_record(lookup.evidence, record_id)
    return json_reply({"record_id": record_id.hex(), **verification.to_dict(),
                       "block_height": meta.height if meta else None,
                       "block_hash": meta.block_hash.hex() if meta else None})


async def get_chain_verification(request: web.Request) -> web.Response:
    """Re-validate the best chain; concurrent requests share one run."""
    chain = request.app[CHAIN]
    state = request.app[CHAIN_VERIFY_TASK]
    task = state.get("task")
    if task is None or task.done():
        started = time.perf_counter()

        async def run() -> dict[str, Any]:
            # Its own thread and connection, not the chain thread: a long re-validation must not
            # hold up new blocks and records. It reads the published best chain block by block.
            report = await chain.verify_best_chain()
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


async def get_chain_evidence(request: web.Request) -> web.Response:
    """Equivocation evidence (``consensus.locks``): pairs of conflicting blocks signed by one member.

    Each block comes with its header bytes and its signature, so anyone holding
    the genesis member list can check that the member signed both.
    """
    chain = request.app[CHAIN]
    view = chain.view
    names = {member.member_id: member.name for member in chain.params.members}
    hashes = [meta.block_hash for item in view.evidence for meta in (item.first, item.second)]
    blocks = {block.block_hash: block for block in await chain.get_blocks(hashes)}
    items = []
    for item in view.evidence:
        pair = []
        for meta in (item.first, item.second):
            block = blocks[meta.block_hash]
            pair.append({"hash": meta.block_hash.hex(), "height": meta.height, "prev_hash": meta.prev_hash.hex(),
                         "timestamp_ms": meta.timestamp_ms, "on_best_chain": view.is_on_best_chain(meta.block_hash),
                         "header_hex": block.header.encoded.hex(), "signature": block.signature.hex()})
        items.append({"member_id": item.member_id.hex(), "member_name": names.get(item.member_id), "blocks": pair})
    return json_reply({"count": len(items), "evidence": items})


def setup_chain_routes(app: web.Application) -> None:
    app[CHAIN_VERIFY_TASK] = {}
    app.router.add_get(f"{API_PREFIX}/status", get_status)
    app.router.add_get(f"{API_PREFIX}/blocks", get_blocks)
    app.router.add_get(f"{API_PREFIX}/blocks/{{ref}}", get_block)
    app.router.add_get(f"{API_PREFIX}/records/{{record_id}}", get_record)
    app.router.add_get(f"{API_PREFIX}/records/{{record_id}}/verify", get_record_verification)
    app.router.add_get(f"{API_PREFIX}/chain/verify", get_chain_verification)
    app.router.add_get(f"{API_PREFIX}/chain/evidence", get_chain_evidence)
    app.router.add_get(f"{API_PREFIX}/peers", get_peers)
