"""Chain store: persistence, atomic reorgs, no record lost, signer limit, finality.

Four members (signer limit 3: a member signs at most one of any 3 consecutive blocks; a block mined on by 3
distinct members is final), so honest branches rotate their miners.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.builders import compute_block_meta, make_header_template, sign_block
from consensus.errors import ValidationError
from consensus.pow import mine_header
from consensus.types import Block
from node.results import DuplicateBlock, MissingParent
from node.store import ChainStore, StoreCorrupt
from node.verify import verify_best_chain
from tests.support.builders import GENESIS_TIME_MS, MemberKeys, make_chain, make_member, make_record, mine_block, resign

A, B, C, D = (make_member(name, seed) for seed, name in enumerate("ABCD", start=21))
NOW = GENESIS_TIME_MS + 10**10


def open_store(path: Path, member: MemberKeys | None = None, depth: int = 100) -> ChainStore:
    params, genesis = make_chain([A, B, C, D], difficulty=1, max_reorg_depth=depth)
    return ChainStore(path, params, genesis, member.member_id if member else None)


def extend(store: ChainStore, members: MemberKeys | Sequence[MemberKeys], count: int,
           parent_hash: bytes | None = None) -> list[Block]:
    """Mine ``count`` blocks of fresh records on ``parent_hash`` (default: tip), the members taking turns."""
    rotation = [members] if isinstance(members, MemberKeys) else list(members)
    meta = store.tree.index[parent_hash] if parent_hash else store.tip
    blocks = []
    for i in range(count):
        member = rotation[i % len(rotation)]
        block = mine_block(meta, member, [make_record(member)])
        blocks.append(block)
        meta = compute_block_meta(block, meta.chain_work)
    return blocks


def mine_pending(store: ChainStore, member: MemberKeys) -> Block | None:
    """What the miner does: one block of pending records on the tip."""
    records = store.pending.get_records(200)
    if not records:
        return None
    parent = store.tip
    header = make_header_template(parent, records, max(parent.timestamp_ms + 1, store.tree.get_median_time_past(parent) + 1),
                                  1, member.member_id)
    block = sign_block(mine_header(header, 0, 10**7), records, member.key)
    store.add_block(block, NOW)
    return block


def best_record_ids(store: ChainStore) -> set[bytes]:
    return {r.record_id for h in store.tree.best[1:] for r in store.get_block(h).records}


def test_reopen_keeps_chain_and_pending(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db", A)
    store.add_blocks(extend(store, (A, B, C), 5), NOW)
    record = make_record(A)
    store.add_pending_record(record, b'{"x": 1}')
    tip = store.tip
    store.close()
    reopened = open_store(tmp_path / "c.db", A)
    assert reopened.tip == tip and reopened.height == 5
    assert [r.record_id for r in reopened.pending.get_records(10)] == [record.record_id]
    assert reopened.details.get(record.record_id) == b'{"x": 1}'
    assert verify_best_chain(reopened, NOW).valid


def test_store_refuses_other_chain(tmp_path: Path) -> None:
    open_store(tmp_path / "c.db").close()
    other_params, other_genesis = make_chain([A], difficulty=1)
    with pytest.raises(StoreCorrupt):
        ChainStore(tmp_path / "c.db", other_params, other_genesis)


def test_invalid_block_leaves_store_untouched(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db", A)
    good = extend(store, (A, B), 2)
    bad = resign(extend(store, C, 1)[0], C, height=7)
    store.add_blocks(good, NOW)
    with pytest.raises(ValidationError) as raised:
        store.add_block(bad, NOW)
    assert raised.value.code == "bad-height"
    assert store.height == 2
    assert not store.view.has_block(bad.block_hash)
    with pytest.raises(DuplicateBlock):
        store.add_block(good[0], NOW)


def test_batch_commits_good_blocks_before_the_bad_one(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db")
    blocks = extend(store, (A, B, C), 3)
    broken = Block(blocks[2].header, blocks[2].signature[:-1] + bytes([blocks[2].signature[-1] ^ 1]), blocks[2].records)
    result = store.add_blocks([blocks[0], blocks[1], broken], NOW)
    assert result.failure == "invalid" and result.error is not None and result.error.code == "bad-signature"
    assert result.failed == broken
    assert [r.meta.block_hash for r in result.accepted] == [blocks[0].block_hash, blocks[1].block_hash]
    assert store.height == 2


def test_orphan_reports_missing_parent(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db")
    blocks = extend(store, (A, B), 2)
    with pytest.raises(MissingParent):
        store.add_block(blocks[1], NOW)
    store.add_blocks(blocks, NOW)
    assert store.height == 2


def test_reorg_returns_own_records_and_they_are_mined_again(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db", A)
    own = extend(store, (A, B), 2)  # two distinct miners: not final yet
    store.add_blocks(own, NOW)
    own_ids = {r.record_id for b in own for r in b.records}  # any member's records come back (relay)
    rival = extend(store, (C, D, B), 3, parent_hash=store.genesis.block_hash)
    results = store.add_blocks(rival, NOW).accepted
    reorgs = [r.reorg for r in results if r.reorg]
    assert len(reorgs) == 1 and reorgs[0].depth == 2
    assert store.tree.best[1:] == [b.block_hash for b in rival]
    assert {r.record_id for r in store.pending.get_records(100)} == own_ids
    mine_pending(store, A)
    assert own_ids <= best_record_ids(store)
    assert store.pending.count() == 0
    assert verify_best_chain(store, NOW).valid


def test_records_in_both_branches_are_not_duplicated_in_pending(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db", A)
    record = make_record(A)
    first = mine_block(store.tip, A, [record])
    store.add_block(first, NOW)
    rival = extend(store, B, 1, parent_hash=store.genesis.block_hash)[0]
    rival_meta = compute_block_meta(rival, store.tree.index[store.genesis.block_hash].chain_work)
    second = mine_block(rival_meta, A, [record])  # the record re-mined on the rival branch
    store.add_blocks([rival, second], NOW)
    assert store.tip.block_hash == second.block_hash
    assert store.pending.count() == 0


def test_single_member_private_fork_stops_at_its_second_block(tmp_path: Path) -> None:
    """One member's private branch, however much work it would carry: its 2nd block breaks the signer limit."""
    store = open_store(tmp_path / "net.db", B)
    store.add_blocks(extend(store, (B, C, D), 3), NOW)
    fork, honest_tip = store.tree.best[1], store.tip.block_hash
    attack = extend(store, A, 160, parent_hash=fork)
    result = store.add_blocks(attack, NOW)
    assert [r.meta.block_hash for r in result.accepted] == [attack[0].block_hash]
    assert result.failed == attack[1] and result.error is not None and result.error.code == "signer-limit"
    assert store.tip.block_hash == honest_tip and not store.view.has_block(attack[1].block_hash)


def test_final_block_is_never_reorged_by_more_work(tmp_path: Path) -> None:
    """B, C, D make block 1 final; a valid branch of the same three from genesis with more work is refused."""
    store = open_store(tmp_path / "net.db", B)
    honest = extend(store, (B, C, D), 3)
    store.add_blocks(honest, NOW)
    assert store.view.final_height == 1 and store.view.is_final(store.tree.index[honest[0].block_hash])
    rival = extend(store, (C, D, B), 10, parent_hash=store.genesis.block_hash)
    results = store.add_blocks(rival, NOW).accepted
    assert len(results) == 10 and all(r.refused_final and not r.tip_changed for r in results)
    assert store.tree.index[rival[-1].block_hash].chain_work > store.tip.chain_work
    assert store.tip.block_hash == honest[-1].block_hash
    store.close()
    reopened = open_store(tmp_path / "net.db", B)  # finality is rebuilt from the stored best chain
    assert reopened.view.final_height == 1 and reopened.tip.block_hash == honest[-1].block_hash
    assert reopened.add_blocks(extend(reopened, D, 1, parent_hash=rival[-1].block_hash), NOW).accepted[0].refused_final


def test_isolated_site_rejoins_and_all_its_records_reach_the_network_chain(tmp_path: Path) -> None:
    network = open_store(tmp_path / "net.db", B)
    site = open_store(tmp_path / "site.db", A)
    common = extend(network, (B, C, D), 3)
    network.add_blocks(common, NOW)
    site.add_blocks(common, NOW)
    site_records = []
    for _ in range(150):  # the site works offline: its records queue up
        record = make_record(A)
        site.add_pending_record(record)
        site_records.append(record.record_id)
    mine_pending(site, A)  # alone, it may sign one block ...
    site.add_pending_record(late := make_record(A))
    site_records.append(late.record_id)
    with pytest.raises(ValidationError) as raised:  # ... but not a second one
        mine_pending(site, A)
    assert raised.value.code == "signer-limit"
    network_blocks = extend(network, (B, C, D), 150)
    network.add_blocks(network_blocks, NOW)
    # Reconnect: each side receives the other's branch.
    site_branch = [site.get_block(h) for h in site.tree.best[4:]]
    refused = network.add_blocks(site_branch, NOW).accepted
    assert all(r.refused_final for r in refused)
    assert network.tip.block_hash == network_blocks[-1].block_hash
    switched = site.add_blocks(network_blocks, NOW).accepted
    assert any(r.reorg for r in switched)
    assert site.tip.block_hash == network.tip.block_hash
    assert site.pending.count() == 151
    rejoin = mine_pending(site, A)
    assert rejoin is not None
    network.add_block(rejoin, NOW)
    assert set(site_records) <= best_record_ids(network)
    assert verify_best_chain(network, NOW).valid


def test_outcome_does_not_depend_on_arrival_order(tmp_path: Path) -> None:
    """Honest 50 blocks by three members vs one member's private branch from genesis (D = 100).

    The private branch is one valid block long (its 2nd breaks the signer limit); delivered before,
    after or between the honest blocks, the honest chain wins and the attacker's 2nd block is refused.
    """
    builder = open_store(tmp_path / "builder.db")
    honest = extend(builder, (B, C, D), 50)
    attack = extend(builder, A, 150, parent_hash=builder.genesis.block_hash)
    orders = {
        "honest first": honest + attack,
        "attack first": attack + honest,
        "interleaved": [b for pair in zip(attack, honest + [None] * 100, strict=False) for b in pair if b is not None],
    }
    tips = {}
    for name, blocks in orders.items():
        store = open_store(tmp_path / f"{name}.db", B)
        refused = set()
        for block in blocks:
            try:
                store.add_block(block, NOW)
            except MissingParent:
                refused.add(block.block_hash)
            except ValidationError as error:
                assert error.code == "signer-limit"
                refused.add(block.block_hash)
        tips[name] = store.tip.block_hash
        assert attack[1].block_hash in refused and not store.view.has_block(attack[1].block_hash)
        assert verify_best_chain(store, NOW).valid
        store.close()
    assert set(tips.values()) == {honest[-1].block_hash}, tips


# ------------------------------------------------------------------ relayed records (issue 12: liveness)
def test_peer_records_enter_the_pool_once_and_survive_a_restart(tmp_path: Path) -> None:
    """A's node admits B's and C's signed records; duplicates and records on the best chain are ignored."""
    store = open_store(tmp_path / "a.db", A)
    mined = make_record(B)
    store.add_block(mine_block(store.tip, B, [mined]), NOW)
    fresh = [make_record(B), make_record(C)]
    result = store.add_peer_records([mined, *fresh])
    assert [r.record_id for r in result.accepted] == [r.record_id for r in fresh]
    assert (result.ignored, result.refused, result.error) == (1, 0, None)
    again = store.add_peer_records(fresh)
    assert (again.accepted, again.ignored) == ([], 2)
    assert store.view.pending_count == 2
    store.close()
    reopened = open_store(tmp_path / "a.db", A)
    assert [r.record_id for r in reopened.pending.get_records(10)] == [r.record_id for r in fresh]


def test_a_forged_peer_record_stops_the_batch_and_never_enters(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db", A)
    good, forged, after = make_record(B), replace(make_record(C), fused_ppm=1), make_record(D)
    result = store.add_peer_records([good, forged, after])
    assert result.error is not None and result.error.code == "bad-signature"
    assert [r.record_id for r in result.accepted] == [good.record_id]
    assert not store.pending.contains(forged.record_id) and not store.pending.contains(after.record_id)
    outsider = make_member("Outsider", 99)
    refused = store.add_peer_records([make_record(outsider)])
    assert refused.error is not None and refused.error.code == "unknown-member"
    assert store.pending.count() == 1


def test_a_full_pool_refuses_peer_records_but_never_our_own(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db", A)
    store.pending.max_records = 2
    result = store.add_peer_records([make_record(B), make_record(C), make_record(D)])
    assert (len(result.accepted), result.refused, result.error) == (2, 1, None)
    assert result.refused_by == {"pending-full": 1}
    store.add_pending_record(make_record(A))  # acknowledged to a user: always queued
    assert store.pending.count() == 3


def test_one_member_fills_only_its_share_of_the_pool(tmp_path: Path) -> None:
    """Four members: B's relayed records take at most a quarter of the pool; C's still enter; no error (no ban)."""
    store = open_store(tmp_path / "a.db", A)
    store.pending.max_records = 8  # share: 2 records per member
    flood = [make_record(B) for _ in range(5)]
    result = store.add_peer_records(flood)
    assert (len(result.accepted), result.refused, result.error) == (2, 3, None)
    assert result.refused_by == {"pending-share-full": 3}
    result = store.add_peer_records([make_record(C), make_record(C), make_record(B)])
    assert (len(result.accepted), result.refused_by) == (2, {"pending-share-full": 1})
    for _ in range(3):
        store.add_pending_record(make_record(A))  # our own: always queued, whatever our share
    assert store.pending.count() == 7
    assert store.pending.get_member_usage(B.member_id)[0] == 2
    store.close()


def test_a_pool_written_before_the_shares_gets_its_creator_column(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db", A)
    records = [make_record(B), make_record(C)]
    store.add_peer_records(records)
    store.db.executescript("DROP INDEX pending_by_member; ALTER TABLE pending DROP COLUMN member_id;")
    store.close()
    store = open_store(tmp_path / "a.db", A)
    assert store.pending.get_member_usage(B.member_id)[0] == 1
    assert store.pending.get_member_usage(C.member_id)[0] == 1
    assert [r.record_id for r in store.pending.get_records(10)] == [r.record_id for r in records]
    store.close()


def test_a_block_of_carried_records_empties_the_pool_and_a_reorg_brings_them_back(tmp_path: Path) -> None:
    """B mines C's relayed records; a longer rival branch drops B's block: C's records (not ours) return."""
    store = open_store(tmp_path / "a.db", A)
    carried = [make_record(C), make_record(C)]
    store.add_peer_records(carried)
    block = mine_pending(store, B)
    assert block is not None and block.header.miner_id == B.member_id
    assert store.pending.count() == 0
    rival = extend(store, (D, C), 2, parent_hash=store.genesis.block_hash)
    store.add_blocks(rival, NOW)
    assert store.tip.block_hash == rival[-1].block_hash
    assert {r.record_id for r in store.pending.get_records(10)} == {r.record_id for r in carried}
    mine_pending(store, A)
    assert {r.record_id for r in carried} <= best_record_ids(store)
    assert verify_best_chain(store, NOW).valid
