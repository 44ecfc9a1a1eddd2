"""Adoption of federated heads from the best chain (issue 15): every node derives the same decision from the same chain.

:func:`compute_chain_governance` reads the governance entries of the best chain
in chain order (block by block) and decides each round the same way on every
node, with nothing but the chain as input:

- a round's **result** is the first ``result`` entry for it on the chain (later
  ones from other members are kept and shown, so a disagreement is visible, but
  do not count): the chain settles which set of updates counts;
- its **reports** are the ``metrics`` entries naming that result's head digest
  (one per site, by the block rules);
- it is **decided** at the first block after which every contributor of the
  result has reported, or else at the first block holding governance entries
  whose timestamp is more than :data:`ADOPTION_WINDOW_MS` past the round's
  deadline; the verdict is ``consensus.governance.compute_adoption`` over the
  reports on the chain up to that block, with the round's quorum and margin;
- an adopted round **moves the head** of its modality and base model only if it
  trained from the head the chain had adopted then (``stale-base`` otherwise):
  the head in use is the last adopted one, or the built-in head.

The node (``node.federated``) recomputes this after every tip change and serves
exactly the head it names; a reorg that removes an adoption therefore reverts
the served head to the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.entries import GovernanceEntry, ModelMetrics, ModelRound, RoundResult
from consensus.governance import compute_adoption

ADOPTION_WINDOW_MS = 60_000  # after a round's deadline: how long the chain waits for the sites' metrics
ChainEntry = tuple[int, int, bytes, GovernanceEntry]  # (height, block timestamp ms, block hash, entry)


@dataclass
class ChainRound:
    """What the best chain holds about one round."""

    proposal: ModelRound
    proposal_height: int
    result: RoundResult | None = None
    result_height: int | None = None
    other_results: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # creator -> (height, head digest)
    metrics: dict[bytes, tuple[int, ModelMetrics]] = field(default_factory=dict)  # site -> (height, its entry)
    verdict: str | None = None  # None: undecided; "adopted" or why not
    decided_height: int | None = None

    @property
    def adopted(self) -> bool:
        return self.verdict == "adopted"

    def reports(self) -> list[tuple[bytes, int, int]]:
        if self.result is None:
            return []
        digest = self.result.head_digest
        return [(member, m.current_auc_micro, m.candidate_auc_micro)
                for member, (_, m) in sorted(self.metrics.items()) if m.head_digest == digest]

    def has_every_report(self) -> bool:
        if self.result is None:
            return False
        reported = {member for member, _, _ in self.reports()}
        return {member for member, _ in self.result.contributors} <= reported

    def to_json(self) -> dict[str, Any]:
        return {
            "round_id": self.proposal.round_id.hex(), "proposal_height": self.proposal_height,
            "result_height": self.result_height,
            "result_creator": None if self.result is None else self.result.creator.hex(),
            "head_digest": None if self.result is None else self.result.head_digest.hex(),
            "other_results": {member.hex(): {"height": height, "head_digest": digest.hex()}
                              for member, (height, digest) in sorted(self.other_results.items())},
            "metrics_heights": {member.hex(): height for member, (height, _) in sorted(self.metrics.items())},
            "verdict": self.verdict, "decided_height": self.decided_height,
        }


@dataclass
class ChainGovernance:
    """Every round on the best chain, and the head the chain has adopted for this node's modality and model."""

    rounds: dict[bytes, ChainRound]
    head_digest: bytes  # the built-in head's digest when no round was adopted
    adopted_round: bytes | None  # the round whose aggregate it is (None: the built-in head)


def compute_chain_governance(entries: Sequence[ChainEntry], modality: str, base_model_id: bytes,
                             builtin_digest: bytes) -> ChainGovernance:
    """Replay the best chain's entries (chain order) into rounds, verdicts and the adopted head."""
    rounds: dict[bytes, ChainRound] = {}
    state = ChainGovernance(rounds, builtin_digest, None)
    index = 0
    while index < len(entries):
        height, timestamp_ms = entries[index][0], entries[index][1]
        for chain_round in _undecided(rounds):
            if timestamp_ms > chain_round.proposal.deadline_ms + ADOPTION_WINDOW_MS and chain_round.result is not None:
                _decide(state, chain_round, height, modality, base_model_id)
        while index < len(entries) and entries[index][0] == height:
            _apply(rounds, height, entries[index][3])
            index += 1
        for chain_round in _undecided(rounds):
            if chain_round.has_every_report():
                _decide(state, chain_round, height, modality, base_model_id)
    return state


def _undecided(rounds: dict[bytes, ChainRound]) -> list[ChainRound]:
    return [r for r in rounds.values() if r.verdict is None]  # proposal order (dicts keep insertion order)


def _apply(rounds: dict[bytes, ChainRound], height: int, entry: GovernanceEntry) -> None:
    body = entry.body
    if isinstance(body, ModelRound):
        rounds[body.round_id] = ChainRound(body, height)
        return
    chain_round = rounds.get(body.round_id)
    if chain_round is None:
        return  # the block rules keep orphans off the chain
    if isinstance(body, RoundResult):
        if chain_round.result is None:
            chain_round.result, chain_round.result_height = body, height
        else:
            chain_round.other_results[body.creator] = (height, body.head_digest)
    else:
        chain_round.metrics[body.member_id] = (height, body)


def _decide(state: ChainGovernance, chain_round: ChainRound, height: int, modality: str, base_model_id: bytes) -> None:
    proposal, result = chain_round.proposal, chain_round.result
    if result is None:
        return
    adopted, reason = compute_adoption(proposal.quorum, proposal.max_auc_drop_micro, chain_round.reports())
    chain_round.decided_height = height
    if not adopted:
        chain_round.verdict = reason
        return
    if proposal.modality == modality and proposal.base_model_id == base_model_id:
        if proposal.head_digest != state.head_digest:
            chain_round.verdict = (f"stale-base: trained from {proposal.head_digest.hex()[:16]}, the chain's head was "
                                   f"{state.head_digest.hex()[:16]}")
            return
        state.head_digest, state.adopted_round = result.head_digest, proposal.round_id
    chain_round.verdict = "adopted"
