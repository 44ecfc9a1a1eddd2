"""Which pending records a miner may mine: the creator first, then one in-turn line per height (node.carry)."""

from __future__ import annotations

from consensus.blocktree import BlockTree
from consensus.builders import compute_block_meta
from consensus.signers import compute_turn_rank
from node.carry import CARRY_DELAY_S, LIVE_WINDOW_S, CarrySchedule, get_carry_rank, get_turn_line
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
    due, wait = schedule.get_due([relayed, own], lambda r: 2, b"tip-1")
    assert due == [] and wait is not None and abs(wait - 2 * CARRY_DELAY_S) < 1e-9
    now[0] += 2 * CARRY_DELAY_S
    due, wait = schedule.get_due([relayed, own, unseen], lambda r: 2, b"tip-1")  # unseen: its wait starts now
    assert [r.record_id for r in due] == [relayed.record_id, own.record_id]
    assert wait is not None and abs(wait - 2 * CARRY_DELAY_S) < 1e-9
    now[0] += CARRY_DELAY_S
    # A new tip: the line starts again, so records that waited on the old tip are not due at once.
    due, wait = schedule.get_due([relayed, own], lambda r: 1, b"tip-2")
    assert due == [] and wait is not None and abs(wait - CARRY_DELAY_S) < 1e-9
    now[0] += CARRY_DELAY_S
    assert len(schedule.get_due([relayed, own], lambda r: 1, b"tip-2")[0]) == 2


def test_the_member_in_turn_takes_every_record_at_once() -> None:
    schedule = CarrySchedule(clock=lambda: 5.0)
    records = [make_record(A), make_record(B)]
    schedule.on_arrival(records, source=b"peer")
    due, wait = schedule.get_due(records, lambda r: 0, b"tip")
    assert due == records and wait is None


def test_the_line_is_the_same_as_the_consensus_turn_rank_and_skips_members_that_do_not_mine() -> None:
    view = view_after(A, C, B)
    recent = view.get_recent_miners(view.tip, 2)
    line = get_turn_line(recent, IDS, view.height + 1)
    assert [line.index(m) if m in line else None for m in IDS] == [compute_turn_rank(m, recent, IDS, view.height + 1)
                                                                   for m in IDS]
    assert get_turn_line([], IDS, 1) == [B.member_id, C.member_id, D.member_id, A.member_id]
    # B said in its hello that it does not mine: nobody waits for it, C is in turn.
    assert get_turn_line([], IDS, 1, non_mining={B.member_id}) == [C.member_id, D.member_id, A.member_id]


def test_the_creator_mines_its_record_first_when_it_may_sign() -> None:
    line = get_turn_line([], IDS, 1)  # B, C, D, A
    ranks = {m: get_carry_rank(m, A.member_id, line) for m in IDS}
    assert ranks == {A.member_id: 0, B.member_id: 1, C.member_id: 2, D.member_id: 3}
    # A signed the parent (out of the line): the member in turn carries A's record at once.
    line = get_turn_line([A.member_id, B.member_id], IDS, 3)  # D, then C (A and B in the window)
    assert line == [D.member_id, C.member_id]
    assert [get_carry_rank(m, A.member_id, line) for m in IDS] == [None, None, 1, 0]
    # A creator that gives up its first place (another creator uploads too) waits in the line.
    line = get_turn_line([], IDS, 1)
    assert get_carry_rank(A.member_id, A.member_id, line, creator_first=False) == 3


def test_live_signers_are_the_members_whose_blocks_arrived_lately() -> None:
    now = [10.0]
    schedule = CarrySchedule(clock=lambda: now[0])
    schedule.on_block(A.member_id)
    schedule.on_block(B.member_id)
    assert schedule.count_live_signers(exclude=A.member_id) == 1
    now[0] += LIVE_WINDOW_S / 2
    schedule.on_block(C.member_id)
    assert schedule.count_live_signers(exclude=D.member_id) == 3
    now[0] += LIVE_WINDOW_S * 0.75  # A's and B's blocks are now too old to say they are still signing
    assert schedule.count_live_signers(exclude=D.member_id) == 1
