"""node.governance_pool on a real SQLite store: admission, one entry per key, mining choice, reorgs, re-validation."""

from __future__ import annotations

from pathlib import Path

from consensus.builders import compute_block_meta
from consensus.entries import GovernanceEntry
from node.store import ChainStore
from node.verify import verify_best_chain
from tests.support.builders import (GENESIS_TIME_MS, make_chain, make_member, make_metrics, make_record, make_round,
                                    make_round_result, mine_block)

A, B, C = (make_member(name, seed) for seed, name in enumerate("ABC", start=41))
OUTSIDER = make_member("Outsider", 49)
SITES = sorted(k.member_id for k in (A, B, C))
ROUND = make_round(A, SITES)
RESULT = GovernanceEntry.of(make_round_result(B, ROUND))
METRICS = [GovernanceEntry.of(make_metrics(k, ROUND, 700_000, 700_000)) for k in (A, B, C)]
PROPOSAL = GovernanceEntry.of(ROUND)
NOW = GENESIS_TIME_MS + 10**10


def open_store(path: Path) -> ChainStore:
    params, genesis = make_chain([A, B, C], difficulty=1)
    return ChainStore(path, params, genesis)


def admit(store: ChainStore, entries: list[GovernanceEntry], own: bool = False):  # type: ignore[no-untyped-def]
    return store.governance.admit(entries, store.params, store.tree, own)


def mineable(store: ChainStore) -> list[GovernanceEntry]:
    return store.governance.get_mineable(store.tree, store.tip, store.params, 100)


def test_admission_dedupes_by_key_and_refuses_bad_entries(tmp_path: Path) -> None:
    store = open_store(tmp_path / "chain.db")
    result = admit(store, [METRICS[0], PROPOSAL, PROPOSAL])
    assert result.accepted == [METRICS[0], PROPOSAL] and result.ignored == 1
    again = GovernanceEntry.of(make_metrics(A, ROUND, 1, 2))  # same key as METRICS[0]: one per member and round
    assert admit(store, [again]).ignored == 1
    bad = admit(store, [GovernanceEntry.of(make_round(OUTSIDER, SITES, number=5))])
    assert bad.error is not None and bad.error.code == "bad-entry" and not bad.accepted
    assert store.governance.pool.count() == 2


def test_peer_entries_stop_at_the_limit_own_ones_do_not(tmp_path: Path) -> None:
    store = open_store(tmp_path / "chain.db")
    store.governance.pool.max_entries = 1
    assert len(admit(store, [PROPOSAL]).accepted) == 1
    assert admit(store, [METRICS[0]]).refused == 1
    assert len(admit(store, [METRICS[0]], own=True).accepted) == 1


def test_the_miner_gets_rounds_first_and_nothing_orphaned_or_on_chain(tmp_path: Path) -> None:
    store = open_store(tmp_path / "chain.db")
    other_round = make_round(B, SITES, number=2)
    orphan = GovernanceEntry.of(make_metrics(C, other_round, 1, 1))  # its round is nowhere
    admit(store, [*METRICS, orphan, RESULT, PROPOSAL])
    assert mineable(store) == [PROPOSAL, RESULT, *METRICS]
    block = mine_block(compute_block_meta(store.genesis, 0), A, [], entries=mineable(store))
    store.add_block(block, NOW)
    assert mineable(store) == [] and store.governance.pool.count() == 1  # only the orphan waits
    assert [entry for _, _, _, entry in store.governance.get_best_entries()] == [PROPOSAL, RESULT, *METRICS]
    assert verify_best_chain(store, NOW).valid


def test_a_reorg_returns_entries_to_the_pool_and_they_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    store = open_store(path)
    genesis = compute_block_meta(store.genesis, 0)
    first = mine_block(genesis, A, [], entries=[PROPOSAL])
    store.add_block(first, NOW)
    meta1 = store.tip
    second = mine_block(meta1, B, [], entries=[RESULT, *METRICS])
    store.add_block(second, NOW)
    assert store.governance.pool.count() == 0
    fork2 = mine_block(meta1, C, [make_record(C)])
    store.add_block(fork2, NOW)
    fork3 = mine_block(compute_block_meta(fork2, meta1.chain_work), A, [make_record(A)])
    store.add_block(fork3, NOW)
    assert store.tip.block_hash == fork3.block_hash
    assert sorted(e.entry_hash for e in store.governance.pool.get_entries(10)) == sorted(
        e.entry_hash for e in [RESULT, *METRICS])
    assert [entry for _, _, _, entry in store.governance.get_best_entries()] == [PROPOSAL]
    store.close()
    reopened = open_store(path)
    assert reopened.governance.pool.count() == 4
    assert mineable(reopened) == [RESULT, *METRICS]  # valid again on the new tip: its round is still there
    reopened.close()
