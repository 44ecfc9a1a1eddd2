"""The carrier order of relayed records: creator first, then members after it, skipping those the signer limit stops."""

from __future__ import annotations

from consensus.blocktree import BlockTree
from consensus.builders import compute_block_meta
from node.carry import CARRY_DELAY_S, CarrySchedule, compute_carry_rank, get_recent_miners
from tests.support.builders import make_chain, make_member, make_record, mine_block

A, B, C, D = (make_member(name, seed) for seed, name in enumerate("ABCD", start=41))
IDS = [m.member_id for m in (A, B, C, D)]
PARAMS, GENESIS = make_chain([A, B, C, D], difficulty=1)


def view_after(*miners):  # type: ignore[no-untyped-def]
    """A chain view whose blocks (oldest first) were mined by ``miners``."""
    meta = compute_block_meta(GENESIS, 0)
    tree = BlockTree(meta, 100)
    for member in miners:
        block = mine_block(meta, member, [make_record(member)], difficulty=1)
        meta = compute_block_meta(block, meta.chain_work)
        tree.apply_head_change(tree.on_block(meta))
    return tree.get_view()


def test_creator_first_then_the_members_after_it() -> None:
    assert [compute_carry_rank(m, B.member_id, IDS, []) for m in IDS] == [3, 0, 1, 2]


def test_members_the_signer_limit_stops_are_skipped() -> None:
    """4 members: window 3, so the miners of the last 2 blocks may not sign; B (creator) and C signed them."""
    recent = get_recent_miners(view_after(A, C, B), 2)
    assert recent == [B.member_id, C.member_id]
    ranks = {m: compute_carry_rank(m, B.member_id, IDS, recent) for m in IDS}
    assert ranks == {D.member_id: 0, A.member_id: 1, B.member_id: 4, C.member_id: 4}


def test_a_relayed_record_waits_its_rank_and_own_records_do_not() -> None:
    now = [100.0]
    schedule = CarrySchedule(C.member_id, IDS, clock=lambda: now[0])  # C is third after A: rank 2
    relayed, unseen, own = make_record(A), make_record(A), make_record(C)
    schedule.on_arrival([relayed], source=b"peer")
    schedule.on_arrival([own], source=None)
    view = view_after()
    due, wait = schedule.get_due([relayed, own], view)
    assert [r.record_id for r in due] == [own.record_id]
    assert wait is not None and abs(wait - 2 * CARRY_DELAY_S) < 1e-9
    now[0] += CARRY_DELAY_S
    # a record the node did not see arrive (restart, reorg) waits its rank from now, like a relayed one
    due, wait = schedule.get_due([relayed, unseen], view)
    assert due == [] and wait is not None and abs(wait - CARRY_DELAY_S) < 1e-9
    now[0] += CARRY_DELAY_S + 1e-6
    due, wait = schedule.get_due([relayed, unseen], view)
    assert [r.record_id for r in due] == [relayed.record_id]
    assert wait is not None and abs(wait - CARRY_DELAY_S) < 1e-5
    now[0] += CARRY_DELAY_S
    assert [r.record_id for r in schedule.get_due([unseen], view)[0]] == [unseen.record_id]


def test_the_first_carrier_takes_a_record_at_once() -> None:
    schedule = CarrySchedule(B.member_id, IDS, clock=lambda: 5.0, signer_limit_enforced=True)  # B right after A
    record = make_record(A)
    schedule.on_arrival([record], source=b"peer")
    due, wait = schedule.get_due([record], view_after(A))  # A signed the tip: it may not sign the next block
    assert [r.record_id for r in due] == [record.record_id] and wait is None


def test_before_the_signer_limit_is_enforced_the_creator_stays_first() -> None:
    """A may still sign after its own block, so B waits its rank instead of racing A."""
    schedule = CarrySchedule(B.member_id, IDS, clock=lambda: 5.0, signer_limit_enforced=False)
    record = make_record(A)
    schedule.on_arrival([record], source=b"peer")
    due, wait = schedule.get_due([record], view_after(A))
    assert due == [] and wait is not None and abs(wait - CARRY_DELAY_S) < 1e-9
