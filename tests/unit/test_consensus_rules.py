"""One test per reason code: each block is built to break exactly that rule."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from consensus.builders import compute_block_meta, sign_block, sign_record
from consensus.errors import ValidationError
from consensus.forkchoice import ForkSide, on_candidate_tip
from consensus.merkle import compute_merkle_root
from consensus.types import MAX_BLOCK_BYTES, Block, DiagnosisRecord
from consensus.validation import MAX_FUTURE_MS, compute_median_time_past, validate_block, validate_record
from tests.support.builders import GENESIS_TIME_MS, make_chain, make_member, make_record, mine_block, resign

A = make_member("A", 1)
B = make_member("B", 2)
OUTSIDER = make_member("Outsider", 3)
PARAMS, GENESIS = make_chain([A, B], difficulty=2)
GENESIS_META = compute_block_meta(GENESIS, 0)
NOW = GENESIS_TIME_MS + 10_000_000


def check(block: Block, parent=GENESIS_META, mtp: int = GENESIS_TIME_MS, now: int = NOW, ancestry=frozenset(),
          recent_miners: tuple[bytes, ...] = ()) -> None:
    validate_block(block, PARAMS, parent, mtp, now, lambda record_id: record_id in ancestry, recent_miners)


def expect(code: str, block: Block, **kwargs: object) -> None:
    with pytest.raises(ValidationError) as raised:
        check(block, **kwargs)
    assert raised.value.code == code, raised.value


def good_block(member=A, records=None) -> Block:
    return mine_block(GENESIS_META, member, records, difficulty=2)


def test_valid_block_passes() -> None:
    check(good_block())


def test_bad_encoding_trailing_bytes() -> None:
    with pytest.raises(ValidationError) as raised:
        Block.decode(good_block().encoded + b"\x00")
    assert raised.value.code == "bad-encoding"


def test_bad_encoding_non_canonical_integer() -> None:
    data = good_block().encoded
    # The header's version 1 is encoded as fixint 0x01; re-encode it as uint8 (0xcc 0x01).
    header_start = data.index(b"\x98\x01")  # fixarray(8) then version
    forged = data[: header_start + 1] + b"\xcc\x01" + data[header_start + 2 :]
    with pytest.raises(ValidationError) as raised:
        Block.decode(forged)
    assert raised.value.code == "bad-encoding"


def test_bad_encoding_wrong_type_and_extra_field() -> None:
    from consensus.encoding import pack

    block = good_block()
    fields = block.to_fields()
    fields[0][1] = "1"  # height as a string
    with pytest.raises(ValidationError, match="bad-encoding"):
        Block.decode(pack(fields))
    extra = [*block.to_fields(), b"extra"]
    with pytest.raises(ValidationError, match="bad-encoding"):
        Block.decode(pack(extra))


def test_bad_pow() -> None:
    block = good_block()
    nonce = block.header.nonce + 1
    while replace(block.header, nonce=nonce).block_hash.hex().startswith("00"):
        nonce += 1
    unsolved = sign_block(replace(block.header, nonce=nonce), block.records, A.key)
    expect("bad-pow", unsolved)


def test_bad_difficulty() -> None:
    expect("bad-difficulty", resign(good_block(), A, difficulty=1))


def test_bad_prev() -> None:
    expect("bad-prev", resign(good_block(), A, prev_hash=b"\x11" * 32))


def test_bad_height() -> None:
    expect("bad-height", resign(good_block(), A, height=2))


def test_bad_merkle() -> None:
    block = good_block()
    other = make_record(A)
    expect("bad-merkle", sign_block(block.header, (other,), A.key))


def test_bad_signature_on_block() -> None:
    block = good_block()
    expect("bad-signature", Block(block.header, B.key.sign(b"wrong"), block.records))


def test_bad_signature_on_record() -> None:
    record = replace(make_record(A), fused_ppm=1)  # changed after signing
    expect("bad-signature", good_block(records=[record]))


def test_unknown_member_miner() -> None:
    expect("unknown-member", mine_block(GENESIS_META, OUTSIDER, [make_record(OUTSIDER)], difficulty=2))


def test_unknown_member_record_creator() -> None:
    record = make_record(OUTSIDER)
    expect("unknown-member", good_block(records=[record]))


def test_block_may_carry_other_members_records() -> None:
    """A's block carrying B's record (signed by B) is valid: any member may carry any member's records."""
    check(good_block(records=[make_record(B), make_record(A)]))


def test_carried_record_still_needs_its_creators_signature() -> None:
    """The miner carrying a record cannot sign it in the creator's place: a record B 'created' but A signed fails."""
    forged = sign_record(replace(make_record(B), signature=b""), A.key)
    expect("bad-signature", good_block(records=[forged]))


def test_carried_record_of_a_non_member_is_refused() -> None:
    expect("unknown-member", good_block(records=[make_record(A), make_record(OUTSIDER)]))


def test_validate_record_alone() -> None:
    """The rule a relayed record passes to enter a pending pool is the block's record rule."""
    validate_record(make_record(B), PARAMS)
    with pytest.raises(ValidationError) as raised:
        validate_record(replace(make_record(B), fused_ppm=7), PARAMS)
    assert raised.value.code == "bad-signature"


def test_signer_limit() -> None:
    """Two members (limit 2): a member may not sign two blocks in a row; the other may."""
    first = good_block(A)
    parent = compute_block_meta(first, GENESIS_META.chain_work)
    mtp = first.header.timestamp_ms - 1
    expect("signer-limit", mine_block(parent, A, difficulty=2), parent=parent, mtp=mtp, recent_miners=(A.member_id,))
    check(mine_block(parent, B, difficulty=2), parent=parent, mtp=mtp, recent_miners=(A.member_id,))
    # Only the window counts: A signed two blocks back, B signed the parent.
    check(mine_block(parent, A, difficulty=2), parent=parent, mtp=mtp, recent_miners=(B.member_id, A.member_id))


def test_duplicate_record_in_block() -> None:
    record = make_record(A)
    expect("duplicate-record", good_block(records=[record, record]))


def test_duplicate_record_in_ancestry() -> None:
    record = make_record(A)
    expect("duplicate-record", good_block(records=[record]), ancestry=frozenset({record.record_id}))


def test_time_too_old() -> None:
    block = good_block()
    expect("time-too-old", block, mtp=block.header.timestamp_ms)


def test_time_too_new() -> None:
    block = resign(good_block(), A, timestamp_ms=NOW + MAX_FUTURE_MS + 1)
    expect("time-too-new", block)
    check(resign(good_block(), A, timestamp_ms=NOW + MAX_FUTURE_MS))


def test_block_too_large() -> None:
    records = [make_record(A) for _ in range(401)]
    expect("block-too-large", good_block(records=records))
    assert len(good_block(records=records[:400]).encoded) < MAX_BLOCK_BYTES


def test_empty_block() -> None:
    expect("empty-block", good_block(records=[]))


def test_reorg_too_deep_is_a_fork_choice_refusal() -> None:
    fork = compute_block_meta(GENESIS, 0)
    honest = ForkSide(replace(fork, height=150, chain_work=150, block_hash=b"\x01" * 32), 150, 3)
    attacker = ForkSide(replace(fork, height=160, chain_work=160, block_hash=b"\x00" * 32), 160, 1)
    decision = on_candidate_tip(honest, attacker, max_reorg_depth=100)
    assert decision.deep and not decision.switch
    # Beyond the depth a tie of distinct signers keeps the current branch, whatever the candidate's work.
    tie = ForkSide(replace(fork, height=400, chain_work=400, block_hash=b"\x00" * 32), 400, 3)
    assert not on_candidate_tip(honest, tie, max_reorg_depth=100).switch
    assert on_candidate_tip(honest, replace(tie, distinct_miners=4), max_reorg_depth=100).switch
    shallow_current = ForkSide(replace(fork, height=5, chain_work=5, block_hash=b"\x01" * 32), 5, 3)
    shallow_candidate = ForkSide(replace(fork, height=6, chain_work=6, block_hash=b"\x02" * 32), 6, 1)
    assert on_candidate_tip(shallow_current, shallow_candidate, 100).switch


def test_reason_codes_all_covered() -> None:
    from consensus.errors import REASON_CODES

    required = {"bad-encoding", "bad-pow", "bad-prev", "bad-height", "bad-merkle", "bad-signature", "unknown-member",
                "duplicate-record", "time-too-old", "time-too-new", "block-too-large", "reorg-too-deep",
                "signer-limit", "below-final"}
    assert required <= REASON_CODES
    with pytest.raises(ValueError):
        ValidationError("not-a-code")


def test_median_time_past() -> None:
    assert compute_median_time_past([5, 1, 3]) == 3
    assert compute_median_time_past(list(range(100))) == 94  # last 11: 89..99


def test_record_roundtrip_and_merkle() -> None:
    record = make_record(A, modalities=("ct", "xray"))
    from consensus.encoding import unpack

    assert DiagnosisRecord.from_fields(unpack(record.encoded, 2048)) == record
    assert compute_merkle_root([record.record_hash]) != compute_merkle_root([])
    unsorted = dataclasses.replace(record, modalities=("xray", "ct"))
    from consensus.encoding import pack

    with pytest.raises(ValidationError, match="bad-encoding"):
        DiagnosisRecord.from_fields(unpack(pack(sign_record(unsorted, A.key).to_fields()), 2048))


def test_bad_genesis() -> None:
    from consensus.validation import validate_genesis

    validate_genesis(GENESIS, PARAMS)
    other_params = replace(PARAMS, difficulty=PARAMS.difficulty + 1)
    with pytest.raises(ValidationError) as raised:
        validate_genesis(GENESIS, other_params)  # the header does not commit to these parameters
    assert raised.value.code == "bad-genesis"
    with pytest.raises(ValidationError) as raised:
        validate_genesis(Block(GENESIS.header, b"\x01" * 64, ()), PARAMS)  # a genesis carries no signature
    assert raised.value.code == "bad-genesis"
