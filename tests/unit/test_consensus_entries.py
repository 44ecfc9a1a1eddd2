"""Governance entries in blocks: one test per rule, each block built to break exactly that rule.

The rules run in the order a block meets them (docs/CONSENSUS.md): ``bad-entry`` (signature,
member, shape), ``orphan-entry`` (a result or metrics whose round is not on the branch before
it), ``duplicate-entry`` (the same key twice on a branch: one proposal per round, one result and
one metrics entry per member and round). Plus the body rules entries change: Merkle root over
records then entries, a block may hold only entries, the entry count limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from consensus.builders import compute_block_meta, sign_block
from consensus.entries import MAX_ENTRY_BYTES, MAX_PARTICIPANTS, GovernanceEntry, ModelRound, RoundResult
from consensus.errors import ValidationError
from consensus.governance import BranchEntries
from consensus.merkle import compute_merkle_root
from consensus.types import MAX_BLOCK_ENTRIES, Block
from consensus.validation import validate_block
from tests.support.builders import (GENESIS_TIME_MS, make_chain, make_member, make_metrics, make_record, make_round,
                                    make_round_result, mine_block, resign)

A, B, C = make_member("A", 11), make_member("B", 12), make_member("C", 13)
OUTSIDER = make_member("Outsider", 14)
PARAMS, GENESIS = make_chain([A, B, C], difficulty=1)
GENESIS_META = compute_block_meta(GENESIS, 0)
NOW = GENESIS_TIME_MS + 10_000_000
SITES = sorted([A.member_id, B.member_id, C.member_id])
ROUND = make_round(A, SITES)
RESULT = make_round_result(B, ROUND)
METRICS = make_metrics(C, ROUND, 700_000, 710_000)


def entries(*bodies: object) -> tuple[GovernanceEntry, ...]:
    return tuple(GovernanceEntry.of(body) for body in bodies)  # type: ignore[arg-type]


def check(block: Block, branch: Sequence[GovernanceEntry] = ()) -> None:
    context = BranchEntries()
    context.add(branch)
    validate_block(block, PARAMS, GENESIS_META, GENESIS_TIME_MS, NOW, lambda record_id: False, (), context)


def expect(code: str, block: Block, branch: Sequence[GovernanceEntry] = ()) -> None:
    with pytest.raises(ValidationError) as raised:
        check(block, branch)
    assert raised.value.code == code, raised.value


def block_of(*bodies: object, miner=A, records=()) -> Block:  # type: ignore[no-untyped-def]
    return mine_block(GENESIS_META, miner, list(records), entries=entries(*bodies))


def test_a_block_may_hold_only_entries_and_round_result_metrics_in_one_block() -> None:
    block = block_of(ROUND, RESULT, METRICS)
    assert not block.records
    check(block)
    assert Block.decode(block.encoded) == block


def test_entries_after_their_round_on_the_branch_are_valid() -> None:
    check(block_of(RESULT, METRICS, records=[make_record(A)]), branch=entries(ROUND))


def test_merkle_root_covers_records_then_entries() -> None:
    record = make_record(A)
    block = block_of(ROUND, records=[record])
    assert block.header.merkle_root == compute_merkle_root([record.record_hash, block.entries[0].entry_hash])
    swapped = resign(block, A, merkle_root=compute_merkle_root([block.entries[0].entry_hash, record.record_hash]))
    expect("bad-merkle", swapped)
    # the same header with the entry dropped: the root no longer matches
    expect("bad-merkle", sign_block(block.header, block.records, A.key))


def test_an_empty_block_is_still_refused() -> None:
    expect("empty-block", mine_block(GENESIS_META, A, [], entries=()))


def test_too_many_entries() -> None:
    many = tuple(GovernanceEntry.of(make_metrics(C, ROUND, 1, 1)) for _ in range(MAX_BLOCK_ENTRIES + 1))
    expect("block-too-large", mine_block(GENESIS_META, A, [], entries=many))


@pytest.mark.parametrize("build", [
    lambda: replace(ROUND, number=2),  # signature no longer covers the fields
    lambda: make_round(OUTSIDER, SITES),  # proposer not a member
    lambda: make_round(A, [*SITES, OUTSIDER.member_id]),  # a participant not a member
    lambda: replace(make_round(A, SITES), participants=tuple(reversed(SITES))),  # unsorted (and resigned below)
    lambda: make_round(A, SITES, quorum=4),  # quorum above the participants
    lambda: make_round(A, []),  # nobody takes part
], ids=["bad-signature", "non-member-proposer", "non-member-participant", "unsorted", "quorum", "no-participants"])
def test_bad_round_entries(build) -> None:  # type: ignore[no-untyped-def]
    proposal = build()
    if proposal.participants == tuple(reversed(SITES)):
        from consensus.crypto import sign
        from consensus.entries import ROUND_DOMAIN
        proposal = replace(proposal, signature=sign(A.key, ROUND_DOMAIN, proposal.signed_bytes()))
    expect("bad-entry", block_of(proposal))


def test_bad_result_and_metrics_entries() -> None:
    branch = entries(ROUND)
    expect("bad-entry", block_of(replace(RESULT, head_digest=b"\x01" * 32)), branch)  # signature
    expect("bad-entry", block_of(make_round_result(OUTSIDER, ROUND)), branch)  # creator not a member
    wrong = make_round_result(B, make_round(A, SITES[:2]))  # accounts for another set of participants
    expect("bad-entry", block_of(_resign_result(wrong, ROUND.round_id)), branch)
    expect("bad-entry", block_of(replace(METRICS, candidate_auc_micro=1)), branch)  # signature
    outsider_round = make_round(A, SITES[:2])
    not_participant = next(keys for keys in (A, B, C) if keys.member_id not in outsider_round.participants)
    expect("bad-entry", block_of(outsider_round, make_metrics(not_participant, outsider_round, 1, 1)))


def _resign_result(result, round_id: bytes):  # type: ignore[no-untyped-def]
    from consensus.crypto import sign
    from consensus.entries import RESULT_DOMAIN
    moved = replace(result, round_id=round_id)
    return replace(moved, signature=sign(B.key, RESULT_DOMAIN, moved.signed_bytes()))


def test_oversized_entry_is_bad() -> None:
    members = [make_member(f"m{i}", 100 + i) for i in range(MAX_PARTICIPANTS)]
    ids = sorted(m.member_id for m in members)
    largest_round = make_round(members[0], ids)
    assert len(GovernanceEntry.of(largest_round).encoded) < MAX_ENTRY_BYTES  # every valid round fits
    padded = RoundResult(ROUND.round_id, B.member_id, b"\x06" * 32, tuple((m, b"\x01" * 32) for m in ids),
                         tuple((m, "equivocation") for m in ids))
    assert len(GovernanceEntry.of(padded).encoded) > MAX_ENTRY_BYTES
    expect("bad-entry", block_of(padded), branch=entries(ROUND))


def test_orphan_entries() -> None:
    expect("orphan-entry", block_of(RESULT))  # no round on the branch
    expect("orphan-entry", block_of(METRICS))
    expect("orphan-entry", block_of(RESULT, ROUND))  # the round comes after it in the block
    other = make_round(A, SITES, number=9)
    expect("orphan-entry", block_of(METRICS), branch=entries(other))


def test_duplicate_entries() -> None:
    expect("duplicate-entry", block_of(ROUND, ROUND))  # twice in one block
    expect("duplicate-entry", block_of(ROUND), branch=entries(ROUND))  # already on the branch
    expect("duplicate-entry", block_of(RESULT, RESULT), branch=entries(ROUND))
    # a second, different result of the same member for the same round
    second = make_round_result(B, ROUND, head_digest=b"\x09" * 32)
    expect("duplicate-entry", block_of(second), branch=entries(ROUND, RESULT))
    # a second, different metrics entry of the same site for the same round
    again = make_metrics(C, ROUND, 1, 2)
    expect("duplicate-entry", block_of(again), branch=entries(ROUND, METRICS))
    # other members' results and metrics for the same round are fine
    check(block_of(make_round_result(C, ROUND), make_metrics(B, ROUND, 1, 1)), branch=entries(ROUND, RESULT, METRICS))


def test_rules_run_in_order_bad_before_orphan_before_duplicate() -> None:
    bad_orphan = replace(METRICS, candidate_auc_micro=3)  # bad signature and no round
    expect("bad-entry", block_of(bad_orphan))
    expect("orphan-entry", block_of(METRICS, METRICS))  # orphan and duplicate: orphan first


def test_genesis_may_not_hold_entries() -> None:
    from consensus.validation import validate_genesis
    forged = replace(GENESIS, entries=entries(ROUND))
    with pytest.raises(ValidationError) as raised:
        validate_genesis(forged, PARAMS)
    assert raised.value.code == "bad-genesis"


def test_round_is_a_model_round() -> None:
    assert isinstance(GovernanceEntry.of(ROUND).body, ModelRound)
    assert GovernanceEntry.of(RESULT).kind == "result" and GovernanceEntry.of(METRICS).kind == "metrics"
