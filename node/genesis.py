"""Genesis file: the consortium's chain parameters as reviewable JSON.

The genesis block is derived deterministically from this file, so every node
built from the same file has the same chain id (the genesis block hash).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.builders import make_genesis, make_genesis_block
from consensus.errors import ValidationError
from consensus.types import Block, ChainParams, Member
from consensus.validation import validate_genesis

DEFAULT_DIFFICULTY = 3
DEFAULT_MAX_REORG_DEPTH = 100


@dataclass(frozen=True)
class Genesis:
    params: ChainParams
    block: Block

    @property
    def chain_id(self) -> bytes:
        return self.block.block_hash


def build_genesis(name: str, members: list[Member], timestamp_ms: int, difficulty: int = DEFAULT_DIFFICULTY,
                  max_reorg_depth: int = DEFAULT_MAX_REORG_DEPTH) -> Genesis:
    params = ChainParams(name, timestamp_ms, difficulty, max_reorg_depth, tuple(members))
    ChainParams.from_fields(params.to_fields())  # same schema checks as a decoded genesis
    return Genesis(params, make_genesis(params))


def genesis_to_json(genesis: Genesis) -> dict[str, Any]:
    params = genesis.params
    return {
        "chain_name": params.name,
        "timestamp_ms": params.timestamp_ms,
        "difficulty": params.difficulty,
        "max_reorg_depth": params.max_reorg_depth,
        "members": [{"name": m.name, "public_key": m.public_key.hex(), "member_id": m.member_id.hex()} for m in params.members],
        "nonce": genesis.block.header.nonce,
        "chain_id": genesis.chain_id.hex(),
    }


def genesis_from_json(data: dict[str, Any]) -> Genesis:
    try:
        members = tuple(Member(bytes.fromhex(m["public_key"]), str(m["name"])) for m in data["members"])
        params = ChainParams.from_fields(
            [str(data["chain_name"]), int(data["timestamp_ms"]), int(data["difficulty"]), int(data["max_reorg_depth"]),
             [m.to_fields() for m in members]]
        )
        nonce = int(data["nonce"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValidationError("bad-genesis", f"malformed genesis file: {error}") from error
    block = make_genesis_block(params, nonce)
    validate_genesis(block, params)
    if "chain_id" in data and data["chain_id"] != block.block_hash.hex():
        raise ValidationError("bad-genesis", "chain_id in the file does not match the genesis block")
    return Genesis(params, block)


def write_genesis(path: Path, genesis: Genesis) -> None:
    path.write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")


def load_genesis(path: Path) -> Genesis:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValidationError("bad-genesis", f"cannot read genesis file {path}: {error}") from error
    return genesis_from_json(data)
