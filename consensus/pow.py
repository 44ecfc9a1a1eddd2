"""SHA-256 proof-of-work: difficulty = leading zero hex digits of the block hash."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from consensus.encoding import pack
from consensus.types import MAX_NONCE, BlockHeader


def is_pow_valid(block_hash: bytes, difficulty: int) -> bool:
    return block_hash.hex().startswith("0" * difficulty)


def mine_header(header: BlockHeader, start_nonce: int, attempts: int) -> BlockHeader | None:
    """Try ``attempts`` nonces from ``start_nonce``; return the solved header or None.

    The nonce is the last header field, so the encoding of everything before it
    is hashed once and only the nonce's bytes are hashed per attempt.
    """
    prefix_fields = header.to_fields()[:-1]
    # pack([a, b, ..., nonce]) = array marker + pack(a) + ... + pack(nonce)
    prefix = pack([*prefix_fields, 0])[: -len(pack(0))]
    base = hashlib.sha256(prefix)
    zeros = "0" * header.difficulty
    end = min(start_nonce + attempts, MAX_NONCE + 1)
    for nonce in range(start_nonce, end):
        candidate = base.copy()
        candidate.update(pack(nonce))
        if candidate.hexdigest().startswith(zeros):
            return replace(header, nonce=nonce)
    return None
