"""Merkle tree over record hashes, with proofs.

Leaves and inner nodes are hashed with distinct prefixes (0x00 / 0x01, as in
RFC 6962) and an odd node is promoted unchanged, so no two different lists of
leaves share a root (no Bitcoin CVE-2012-2459 style duplication).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def compute_leaf_hash(item_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + item_hash).digest()


def compute_node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    pairs = [compute_node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        pairs.append(level[-1])
    return pairs


def compute_merkle_root(item_hashes: Sequence[bytes]) -> bytes:
    if not item_hashes:
        return EMPTY_ROOT
    level = [compute_leaf_hash(h) for h in item_hashes]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def compute_merkle_proof(item_hashes: Sequence[bytes], index: int) -> list[tuple[str, bytes]]:
    """Sibling hashes from leaf to root, each tagged 'left' or 'right' (the sibling's side)."""
    if not 0 <= index < len(item_hashes):
        raise IndexError("leaf index out of range")
    level = [compute_leaf_hash(h) for h in item_hashes]
    proof: list[tuple[str, bytes]] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(("left" if sibling < index else "right", level[sibling]))
        level = _next_level(level)
        index //= 2
    return proof


def is_merkle_proof_valid(item_hash: bytes, proof: Sequence[tuple[str, bytes]], root: bytes) -> bool:
    node = compute_leaf_hash(item_hash)
    for side, sibling in proof:
        node = compute_node_hash(sibling, node) if side == "left" else compute_node_hash(node, sibling)
    return node == root
