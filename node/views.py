"""JSON views of blocks, records and their place on the chain (pure: a ChainView and the parameters in, dicts out)."""

from __future__ import annotations

from typing import Any

from consensus.blocktree import ChainView
from consensus.types import Block, ChainParams, DiagnosisRecord
from consensus.validation import BlockMeta
from node.records import RecordEvidence


def member_name(params: ChainParams, member_id: bytes) -> str | None:
    member = params.members_by_id.get(member_id)
    return member.name if member else None


def record_json(params: ChainParams, record: DiagnosisRecord) -> dict[str, Any]:
    return {
        "record_id": record.record_id.hex(),
        "member_id": record.member_id.hex(),
        "member_name": member_name(params, record.member_id),
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


def finality_json(view: ChainView, meta: BlockMeta) -> dict[str, Any]:
    """Final or not, and by how many distinct members (the block's miner and its best-chain descendants')."""
    return {"final": view.is_final(meta), "distinct_members": view.get_distinct_confirmers(meta),
            "needed": view.needed_confirmers}


def block_json(params: ChainParams, view: ChainView, block: Block, meta: BlockMeta) -> dict[str, Any]:
    header = block.header
    on_best = view.is_on_best_chain(meta.block_hash)
    next_hash = view.get_best_hash(meta.height + 1) if on_best else None
    return {
        "height": header.height,
        "hash": header.block_hash.hex(),
        "prev_hash": header.prev_hash.hex(),
        "next_hash": next_hash.hex() if next_hash else None,
        "merkle_root": header.merkle_root.hex(),
        "timestamp_ms": header.timestamp_ms,
        "difficulty": header.difficulty,
        "miner_id": header.miner_id.hex(),
        "miner_name": member_name(params, header.miner_id),
        "nonce": header.nonce,
        "version": header.version,
        "chain_work": str(meta.chain_work),
        "on_best_chain": on_best,
        "confirmations": view.get_confirmations(meta),
        "finality": finality_json(view, meta),
        "signature": block.signature.hex(),
        "size_bytes": len(block.encoded),
        "record_count": len(block.records),
        "record_ids": [r.record_id.hex() for r in block.records],
        "entries": [{"kind": e.kind, "round_id": e.round_id.hex(), "member_id": e.member_id.hex(),
                     "entry_hash": e.entry_hash.hex()} for e in block.entries],
        "header_hex": header.encoded.hex(),
    }


def chain_status_json(view: ChainView, evidence: RecordEvidence, meta: BlockMeta | None) -> dict[str, Any]:
    """Where a record stands: mined (block, confirmations), pending, or not on chain."""
    if meta is not None:
        return {"status": "mined", "block_height": meta.height, "block_hash": meta.block_hash.hex(),
                "confirmations": view.get_confirmations(meta), "finality": finality_json(view, meta)}
    status = "pending" if evidence.record is not None else "not-on-chain"
    return {"status": status, "block_height": None, "block_hash": None, "confirmations": 0,
            "finality": {"final": False, "distinct_members": 0, "needed": view.needed_confirmers}}
