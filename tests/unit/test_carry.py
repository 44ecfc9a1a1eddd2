"""Which pending records a miner may mine: one in-turn line per height (consensus.signers.compute_turn_rank)."""

from __future__ import annotations

from consensus.blocktree import BlockTree
from consensus.builders import compute_block_meta
from consensus.signers import compute_turn_rank
from node.carry import CARRY_DELAY_S, CarrySchedule
from tests.support.builders import make_chain, make_member, make_record, mine_block

A, B, C, D = (make_member(name, seed) for seed, name in enumerate("ABCD", start=41))
IDS = [m.member_id for m in (A, B, C, D)]
PARAMS, GENESIS = make_chain([A, B, C, D], difficulty=1)


def view_after(*miners):  # type: ignore[no-untyped-def]
    """A chain view whose blocks (oldest first) were mined by ``miners``."""
    meta = compute_block_meta(GENESIS, 0)
    tree = BlockTree(meta, 100, len(IDS))
    for member in miners:
        block = mine_block(meta, member, [make_record(member)], difficulty=1)
        meta = compute_block_meta(block, meta.chain_work)
        tree.apply_head_change(tree.on_block(meta))
    return tree.get_view()


def test_the_line_starts_at_the_member_in_turn_and_skips_those_the_signer_limit_stops() -> None:
    assert [compute_turn_rank(m, [], IDS, 1) for m in IDS] == [3, 0, 1, 2]  # height 1: B in turn
    view = view_after(A, C, B)  # 4 members, window 2: B and C signed the last two blocks
    recent = view.get_recent_miners(view.tip, 2)
    assert recent == [B.member_id, C.member_id]
    ranks = {m: compute_turn_rank(m, recent, IDS, view.height + 1) for m in IDS}
    assert ranks == {A.member_id: 0, D.member_id: 1, B.member_id: None, C.member_id: None}


def test_records_wait_their_rank_from_arrival_or_the_tip_whichever_is_later() -> None:
    now = [100.0]
    schedule = CarrySchedule(clock=lambda: now[0])
    relayed, own, unseen = make_record(A), make_record(C), make_record(A)
    schedule.on_arrival([relayed], source=b"peer")
    schedule.on_arrival([own], source=None)  # own records take their place in the line as well
    due, wait = schedule.get_due([relayed, own], 2, b"tip-1")
    assert due == [] and wait is not None and abs(wait - 2 * CARRY_DELAY_S) < 1e-9
    now[0] += 2 * CARRY_DELAY_S
    due, wait = schedule.get_due([relayed, own, unseen], 2, b"tip-1")  # unseen: its wait starts now
    assert [r.record_id for r in due] == [relayed.record_id, own.record_id]
    assert wait is not None and abs(wait - 2 * CARRY_DELAY_S) < 1e-9
    now[0] += CARRY_DELAY_S
    # A new tip: the line starts again, so records that waited on the old tip are not due at once.
    due, wait = schedule.get_due([relayed, own], 1, b"tip-2")
    assert due == [] and wait is not None and abs(wait - CARRY_DELAY_S) < 1e-9
    now[0] += CARRY_DELAY_S
    assert len(schedule.get_due([relayed, own], 1, b"tip-2")[0]) == 2


def test_the_member_in_turn_takes_every_record_at_once() -> None:
    schedule = CarrySchedule(clock=lambda: 5.0)
    records = [make_record(A), make_record(B)]
    schedule.on_arrival(records, source=b"peer")
    due, wait = schedule.get_due(records, 0, b"tip")
    assert due == records and wait is None
