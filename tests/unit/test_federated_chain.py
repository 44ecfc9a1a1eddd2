"""node.federated_chain: adoption read from the best chain's governance entries, the same on every node.

Built from real signed entries (tests/support/builders.py); no node, no clock: the
chain's entries in chain order are the only input.
"""

from __future__ import annotations

from consensus.entries import GovernanceEntry
from node.federated_chain import ADOPTION_WINDOW_MS, ChainEntry, compute_chain_governance
from tests.support.builders import GENESIS_TIME_MS, make_member, make_metrics, make_round, make_round_result

A, B, C = make_member("A", 21), make_member("B", 22), make_member("C", 23)
SITES = sorted(k.member_id for k in (A, B, C))
BUILTIN = b"\x05" * 32  # make_round's default head digest: rounds train from the built-in head
MODEL = b"\x04" * 32  # make_round's base model id
FIRST = b"\x06" * 32  # make_round_result's default aggregate digest
BLOCK_MS = 1000


def chain(*blocks: list[object]) -> list[ChainEntry]:
    """Entries of consecutive blocks from height 1, one second apart."""
    return [(height, GENESIS_TIME_MS + height * BLOCK_MS, bytes([height]) * 32, GovernanceEntry.of(body))  # type: ignore[arg-type]
            for height, bodies in enumerate(blocks, start=1) for body in bodies]


def decide(entries: list[ChainEntry]):  # type: ignore[no-untyped-def]
    return compute_chain_governance(entries, "xray", MODEL, BUILTIN)


def test_adopted_once_every_contributor_reported_and_the_rule_holds() -> None:
    proposal = make_round(A, SITES, quorum=2)
    result = make_round_result(B, proposal)
    metrics = [make_metrics(k, proposal, 700_000, 705_000) for k in (A, B, C)]
    entries = chain([proposal], [result, metrics[0]], [metrics[1]])
    state = decide(entries)
    chain_round = state.rounds[proposal.round_id]
    assert chain_round.verdict is None and state.head_digest == BUILTIN  # C, a contributor, has not reported yet
    state = decide(entries + chain([], [], [], [metrics[2]]))
    chain_round = state.rounds[proposal.round_id]
    assert chain_round.verdict == "adopted" and chain_round.decided_height == 4
    assert state.head_digest == FIRST and state.adopted_round == proposal.round_id
    assert chain_round.to_json()["metrics_heights"] == {A.member_id.hex(): 2, B.member_id.hex(): 3,
                                                         C.member_id.hex(): 4}
    assert chain_round.proposal_height == 1 and chain_round.result_height == 2


def test_an_auc_drop_beyond_the_margin_is_never_adopted() -> None:
    proposal = make_round(A, SITES, quorum=2, max_auc_drop_micro=20_000)
    state = decide(chain([proposal, make_round_result(A, proposal)],
                         [make_metrics(A, proposal, 700_000, 720_000), make_metrics(B, proposal, 700_000, 650_000),
                          make_metrics(C, proposal, 700_000, 700_000)]))
    verdict = state.rounds[proposal.round_id].verdict
    assert verdict is not None and verdict.startswith("auc-drop: ") and state.head_digest == BUILTIN


def test_the_first_result_on_chain_counts_and_reports_on_another_digest_do_not() -> None:
    proposal = make_round(A, SITES, quorum=3)
    first = make_round_result(A, proposal)
    other = make_round_result(B, proposal, head_digest=b"\x09" * 32)
    on_other = [make_metrics(k, proposal, 1, 1, head_digest=b"\x09" * 32) for k in (A, B, C)]
    state = decide(chain([proposal, first, other], on_other))
    chain_round = state.rounds[proposal.round_id]
    assert chain_round.result == first and chain_round.verdict is None  # no report on the counted aggregate
    assert chain_round.to_json()["other_results"] == {B.member_id.hex(): {"height": 1, "head_digest": "09" * 32}}


def test_after_the_window_a_round_is_decided_on_the_reports_it_has() -> None:
    proposal = make_round(A, SITES, quorum=3)
    entries = chain([proposal, make_round_result(A, proposal), make_metrics(A, proposal, 1, 1),
                     make_metrics(B, proposal, 1, 1)])
    assert decide(entries).rounds[proposal.round_id].verdict is None
    late = proposal.deadline_ms + ADOPTION_WINDOW_MS + 1
    later_round = make_round(B, SITES, number=2)
    state = decide([*entries, (9, late, b"\x09" * 32, GovernanceEntry.of(later_round))])
    assert state.rounds[proposal.round_id].verdict == "no-quorum: 2 of 3 sites reported"
    assert state.rounds[proposal.round_id].decided_height == 9


def test_rounds_chain_heads_and_a_stale_base_is_refused() -> None:
    first = make_round(A, SITES, quorum=1)
    second = make_round(B, SITES, number=2, quorum=1, head_digest=FIRST)  # trains from the first round's head
    stale = make_round(C, SITES, number=3, quorum=1)  # trains from the built-in head, already replaced
    def adopt(proposal, digest):  # type: ignore[no-untyped-def]
        return [proposal, make_round_result(A, proposal, head_digest=digest),
                *[make_metrics(k, proposal, 1, 1, head_digest=digest) for k in (A, B, C)]]
    state = decide(chain(adopt(first, FIRST), adopt(second, b"\x07" * 32), adopt(stale, b"\x08" * 32)))
    assert [state.rounds[p.round_id].verdict[:11] for p in (first, second, stale)] == ["adopted", "adopted",  # type: ignore[index]
                                                                                       "stale-base:"]
    assert state.head_digest == b"\x07" * 32 and state.adopted_round == second.round_id
    # a reorg that drops the second round's blocks: the head is the first round's again
    state = decide(chain(adopt(first, FIRST)))
    assert state.head_digest == FIRST


def test_rounds_of_another_model_do_not_move_this_head() -> None:
    proposal = make_round(A, SITES, quorum=1)
    entries = chain([proposal, make_round_result(A, proposal), *[make_metrics(k, proposal, 1, 1) for k in (A, B, C)]])
    state = compute_chain_governance(entries, "xray", b"\x0a" * 32, BUILTIN)
    assert state.rounds[proposal.round_id].verdict == "adopted" and state.head_digest == BUILTIN
