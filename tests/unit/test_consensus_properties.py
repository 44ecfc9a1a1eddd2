"""Property tests: canonical round trip, tamper detection, order-independent fork choice."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.builders import compute_block_meta
from consensus.errors import ValidationError
from consensus.types import Block, DiagnosisRecord
from consensus.validation import BlockMeta, validate_block
from node.results import MissingParent
from node.store import ChainStore
from tests.support.builders import GENESIS_TIME_MS, make_chain, make_member, make_record, mine_block

A = make_member("A", 11)
B = make_member("B", 12)
C = make_member("C", 13)
PARAMS, GENESIS = make_chain([A, B, C], difficulty=1)
GENESIS_META = compute_block_meta(GENESIS, 0)
NOW = GENESIS_TIME_MS + 10**9
VALID_BLOCK = mine_block(GENESIS_META, A, [make_record(A), make_record(A, modalities=("ct", "xray"))])

record_ids = st.binary(min_size=16, max_size=16)
digests = st.binary(min_size=32, max_size=32)


@st.composite
def records(draw: st.DrawFn) -> DiagnosisRecord:
    modalities = tuple(sorted(draw(st.sets(st.sampled_from(["ct", "xray"]), min_size=1))))
    count = len(modalities)
    return DiagnosisRecord(
        record_id=draw(record_ids),
        member_id=draw(st.binary(min_size=16, max_size=16)),
        created_ms=draw(st.integers(0, 2**63 - 1)),
        modalities=modalities,
        image_digests=tuple(draw(digests) for _ in range(count)),
        model_ids=tuple(draw(digests) for _ in range(count)),
        probabilities_ppm=tuple(draw(st.integers(0, 1_000_000)) for _ in range(count)),
        fused_ppm=draw(st.integers(0, 1_000_000)),
        label=draw(st.sampled_from(["affected", "normal"])),
        risk_level=draw(st.sampled_from(["High", "Moderate", "Low"])),
        details_digest=draw(digests),
        signature=draw(st.binary(min_size=64, max_size=64)),
    )


@given(st.lists(records(), max_size=5), st.integers(0, 2**64 - 1), st.integers(1, 10**6), st.binary(min_size=64, max_size=64))
def test_block_encode_decode_round_trip(block_records: list[DiagnosisRecord], nonce: int, height: int, signature: bytes) -> None:
    from dataclasses import replace

    block = Block(replace(VALID_BLOCK.header, nonce=nonce, height=height), signature, tuple(block_records))
    decoded = Block.decode(block.encoded)
    assert decoded == block
    assert decoded.encoded == block.encoded
    assert Block.decode(decoded.encoded).block_hash == block.block_hash


@settings(max_examples=300)
@given(st.data())
def test_any_single_byte_change_is_rejected(data: st.DataObject) -> None:
    raw = bytearray(VALID_BLOCK.encoded)
    position = data.draw(st.integers(0, len(raw) - 1))
    delta = data.draw(st.integers(1, 255))
    raw[position] = (raw[position] + delta) % 256
    try:
        block = Block.decode(bytes(raw))
        validate_block(block, PARAMS, GENESIS_META, GENESIS_TIME_MS, NOW, lambda record_id: False, ())
    except ValidationError:
        return
    raise AssertionError(f"a change at byte {position} was accepted")


def build_tree(seed: int, size: int) -> list[Block]:
    """A random tree of valid blocks rooted at genesis, with forks.

    Each block is by a member the signer limit allows (3 members: never twice in a row) that never signed on
    a conflicting branch (majority finality assumes it: ``test_equivocator_and_race_can_finalize_either_sibling``;
    honest members obey the lock rule, ``consensus.locks``).
    """
    rng = random.Random(seed)
    metas = [GENESIS_META]
    index = {GENESIS_META.block_hash: GENESIS_META}
    last_own: dict[bytes, BlockMeta] = {}
    blocks: list[Block] = []
    for _ in range(size * 20):  # bounded: members loyal to different branches can all be stuck
        if len(blocks) == size:
            break
        parent = rng.choice(metas)
        eligible = [m for m in (A, B, C) if m.member_id != parent.miner_id
                    and (m.member_id not in last_own or is_ancestor(index, last_own[m.member_id], parent))]
        if not eligible:
            continue
        miner = rng.choice(eligible)
        block = mine_block(parent, miner, [make_record(miner)], timestamp_ms=parent.timestamp_ms + rng.randint(1, 5000))
        blocks.append(block)
        meta = compute_block_meta(block, parent.chain_work)
        metas.append(meta)
        index[meta.block_hash] = meta
        last_own[miner.member_id] = meta
    return blocks


def is_ancestor(index: dict[bytes, BlockMeta], ancestor: BlockMeta, meta: BlockMeta) -> bool:
    node = meta
    while node.height > ancestor.height:
        node = index[node.prev_hash]
    return node.block_hash == ancestor.block_hash


def add_in_order(blocks: list[Block], directory: Path) -> bytes:
    store = ChainStore(directory / "chain.sqlite3", PARAMS, GENESIS)
    waiting = list(blocks)
    while waiting:
        progressed = []
        for block in waiting:
            try:
                store.add_block(block, NOW)
                progressed.append(block)
            except MissingParent:
                continue
        assert progressed, "no block could be connected"
        waiting = [b for b in waiting if b not in progressed]
    tip = store.tip.block_hash
    store.close()
    return tip


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.randoms(use_true_random=False))
def test_head_is_independent_of_arrival_order(seed: int, rng: random.Random) -> None:
    blocks = build_tree(seed, 12)
    shuffled = list(blocks)
    rng.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        assert add_in_order(blocks, Path(first)) == add_in_order(shuffled, Path(second))
