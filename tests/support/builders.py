"""Small builders for tests: members, genesis, signed records, mined blocks."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus.builders import compute_block_meta, make_genesis, make_header_template, sign_block, sign_record
from consensus.crypto import sign
from consensus.entries import (METRICS_DOMAIN, RESULT_DOMAIN, ROUND_DOMAIN, GovernanceEntry, ModelMetrics, ModelRound,
                               RoundResult)
from consensus.pow import mine_header
from consensus.types import MAX_NONCE, Block, BlockHeader, ChainParams, DiagnosisRecord, Member
from consensus.validation import BlockMeta

GENESIS_TIME_MS = 1_760_000_000_000
_counter = itertools.count()


@dataclass(frozen=True)
class MemberKeys:
    key: Ed25519PrivateKey
    member: Member

    @property
    def member_id(self) -> bytes:
        return self.member.member_id


def make_member(name: str, seed: int | None = None) -> MemberKeys:
    if seed is None:
        key = Ed25519PrivateKey.generate()
    else:
        key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"member-{seed}".encode()).digest())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return MemberKeys(key, Member(public, name))


def make_params(members: Sequence[MemberKeys], difficulty: int = 1, max_reorg_depth: int = 100) -> ChainParams:
    return ChainParams("test-chain", GENESIS_TIME_MS, difficulty, max_reorg_depth, tuple(m.member for m in members))


def make_chain(members: Sequence[MemberKeys], difficulty: int = 1, max_reorg_depth: int = 100) -> tuple[ChainParams, Block]:
    params = make_params(members, difficulty, max_reorg_depth)
    return params, make_genesis(params)


def make_record(member: MemberKeys, created_ms: int = GENESIS_TIME_MS + 1, record_id: bytes | None = None,
                modalities: tuple[str, ...] = ("ct",)) -> DiagnosisRecord:
    number = next(_counter)
    record_id = record_id or hashlib.sha256(f"record-{number}".encode()).digest()[:16]
    count = len(modalities)
    record = DiagnosisRecord(
        record_id=record_id,
        member_id=member.member_id,
        created_ms=created_ms,
        modalities=modalities,
        image_digests=tuple(hashlib.sha256(f"img-{number}-{m}".encode()).digest() for m in modalities),
        model_ids=tuple(hashlib.sha256(f"model-{m}".encode()).digest() for m in modalities),
        probabilities_ppm=tuple(500_000 for _ in range(count)),
        fused_ppm=500_000,
        label="affected",
        risk_level="Moderate",
        details_digest=hashlib.sha256(f"details-{number}".encode()).digest(),
    )
    return sign_record(record, member.key)


def genesis_meta(genesis: Block) -> BlockMeta:
    return compute_block_meta(genesis, 0)


def mine_block(parent: BlockMeta | Block, member: MemberKeys, records: Sequence[DiagnosisRecord] | None = None,
               timestamp_ms: int | None = None, difficulty: int = 1, parent_work: int = 0,
               entries: Sequence[GovernanceEntry] = ()) -> Block:
    """A valid block on ``parent`` (a BlockMeta, or a Block with parent_work given).

    ``records`` None: one fresh record of ``member`` (none when ``entries`` are given).
    """
    if isinstance(parent, Block):
        parent = compute_block_meta(parent, parent_work)
    if records is None:
        records = [] if entries else [make_record(member)]
    timestamp = timestamp_ms if timestamp_ms is not None else parent.timestamp_ms + 1000
    header = make_header_template(parent, records, timestamp, difficulty, member.member_id, entries)
    return sign_block(solve(header), records, member.key, entries)


def make_round(proposer: MemberKeys, participants: Sequence[bytes], number: int = 1, quorum: int = 2,
               head_digest: bytes = b"\x05" * 32, max_auc_drop_micro: int = 20_000) -> ModelRound:
    unsigned = ModelRound(proposer.member_id, number, "xray", b"\x04" * 32, head_digest, 20, 1_000_000, 30_000,
                          GENESIS_TIME_MS + 60_000, tuple(sorted(participants)), quorum, max_auc_drop_micro)
    return replace(unsigned, signature=sign(proposer.key, ROUND_DOMAIN, unsigned.signed_bytes()))


def make_round_result(creator: MemberKeys, proposal: ModelRound, head_digest: bytes = b"\x06" * 32,
                      excluded: Sequence[tuple[bytes, str]] = ()) -> RoundResult:
    out = {member for member, _ in excluded}
    contributors = tuple((member, hashlib.sha256(member).digest()) for member in proposal.participants
                         if member not in out)
    unsigned = RoundResult(proposal.round_id, creator.member_id, head_digest, contributors, tuple(sorted(excluded)))
    return replace(unsigned, signature=sign(creator.key, RESULT_DOMAIN, unsigned.signed_bytes()))


def make_metrics(site: MemberKeys, proposal: ModelRound, current: int, candidate: int,
                 head_digest: bytes = b"\x06" * 32) -> ModelMetrics:
    unsigned = ModelMetrics(proposal.round_id, site.member_id, head_digest, current, candidate)
    return replace(unsigned, signature=sign(site.key, METRICS_DOMAIN, unsigned.signed_bytes()))


def solve(header: BlockHeader) -> BlockHeader:
    solved = mine_header(header, 0, MAX_NONCE)
    assert solved is not None
    return solved


def resign(block: Block, member: MemberKeys, **header_changes: object) -> Block:
    """Change header fields, re-mine and re-sign (to break exactly one other rule)."""
    header = solve(replace(block.header, nonce=0, **header_changes))
    return sign_block(header, block.records, member.key, block.entries)


def build_branch(parent: Block, parent_work: int, members: MemberKeys | Sequence[MemberKeys], count: int,
                 difficulty: int = 1, start_ms: int | None = None) -> list[Block]:
    """``count`` blocks on ``parent``, each with one fresh record of its miner; the members take turns.

    Under the signer limit a member signs at most one of any ``N // 2 + 1`` consecutive blocks, so pass at
    least that many members (one member is enough only on a one-member chain).
    """
    rotation = [members] if isinstance(members, MemberKeys) else list(members)
    blocks, meta = [], compute_block_meta(parent, parent_work)
    for i in range(count):
        member = rotation[i % len(rotation)]
        timestamp = (start_ms if start_ms is not None else meta.timestamp_ms + 1000) + i * 1000 if start_ms else None
        block = mine_block(meta, member, difficulty=difficulty, timestamp_ms=timestamp)
        blocks.append(block)
        meta = compute_block_meta(block, meta.chain_work)
    return blocks
