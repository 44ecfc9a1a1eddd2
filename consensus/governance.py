"""Governance of federated rounds (issue 15): the rules its on-chain entries obey, and the adoption rule.

Pure, like the rest of consensus/: no clock, no randomness, no I/O. The entries
themselves (round proposal, round result, site metrics) are declared in
``consensus.entries`` and re-exported here.

- A round proposal and a site's metrics are signed over the canonical encoding of
  their fields under :data:`ROUND_DOMAIN` / :data:`METRICS_DOMAIN`; updates under
  :data:`UPDATE_DOMAIN`. The round id is SHA-256(ROUND_DOMAIN + signed bytes).
- :class:`RoundResult` is the model-update record: the aggregate head digest, each
  contributor's update digest and each excluded participant's reason code, signed by
  the member that computed it. :func:`validate_round_result` checks it against the
  round's participants.
- :func:`validate_entry` (``bad-entry``) and :func:`validate_block_entries` (plus
  ``orphan-entry``, ``duplicate-entry``) are the block rules for governance entries
  (docs/CONSENSUS.md); the node's pool and miner apply the same functions.
- :func:`compute_adoption` is the adoption rule in integer millionths (no floats on
  chain): a quorum of distinct sites, none losing more than the margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from consensus.crypto import is_signature_valid
from consensus.entries import (ENTRY_KINDS, KIND_ORDER, EXCLUSION_REASONS, MAX_ENTRY_BYTES, MAX_PARTICIPANTS, METRICS_DOMAIN,
                               RESULT_DOMAIN, ROUND_DOMAIN, UPDATE_DOMAIN, GovernanceEntry, ModelMetrics, ModelRound,
                               RoundResult, compute_round_id)
from consensus.errors import ValidationError
from consensus.types import ChainParams, Member

__all__ = [
    "ENTRY_KINDS",
    "EXCLUSION_REASONS",
    "MAX_ENTRY_BYTES",
    "MAX_PARTICIPANTS",
    "METRICS_DOMAIN",
    "RESULT_DOMAIN",
    "ROUND_DOMAIN",
    "UNDEFINED_AUC",
    "UPDATE_DOMAIN",
    "BranchEntries",
    "GovernanceContext",
    "GovernanceEntry",
    "ModelMetrics",
    "ModelRound",
    "RoundResult",
    "compute_adoption",
    "compute_round_id",
    "select_valid_entries",
    "validate_block_entries",
    "validate_entry",
    "validate_entry_in_context",
    "validate_round_result",
]
UNDEFINED_AUC = -1  # a site whose held-out split cannot give an AUC


def validate_round_result(result: RoundResult, participants: Sequence[bytes], members: Mapping[bytes, Member]) -> None:
    """Raise unless a member signed it and it accounts for every participant exactly once, in order."""
    member = members.get(result.creator)
    if member is None:
        raise ValidationError("unknown-member", "round result by a non-member")
    if not is_signature_valid(member.public_key, result.signature, RESULT_DOMAIN, result.signed_bytes()):
        raise ValidationError("bad-signature", "round result signature does not verify")
    contributed = [member_id for member_id, _ in result.contributors]
    excluded = [member_id for member_id, _ in result.excluded]
    if contributed != sorted(set(contributed)) or excluded != sorted(set(excluded)):
        raise ValidationError("bad-round-result", "contributors and exclusions must be sorted and unique")
    if set(contributed) & set(excluded) or set(contributed) | set(excluded) != set(participants):
        raise ValidationError("bad-round-result", "every participant must be either a contributor or excluded")
    if not contributed:
        raise ValidationError("bad-round-result", "a result needs at least one contributor")


def compute_adoption(quorum: int, max_auc_drop_micro: int,
                     reports: Sequence[tuple[bytes, int, int]]) -> tuple[bool, str]:
    """(adopted, reason) from (member id, current AUC, candidate AUC) reports in millionths; first report per member."""
    by_member: dict[bytes, tuple[int, int]] = {}
    for member_id, current, candidate in reports:
        by_member.setdefault(member_id, (current, candidate))
    if len(by_member) < quorum:
        return False, f"no-quorum: {len(by_member)} of {quorum} sites reported"
    for member_id in sorted(by_member):
        current, candidate = by_member[member_id]
        if current == UNDEFINED_AUC or candidate == UNDEFINED_AUC:
            return False, f"bad-metrics: {member_id.hex()} reported an undefined AUC"
        if current - candidate > max_auc_drop_micro:
            return False, f"auc-drop: {member_id.hex()} {current / 1e6:.3f} -> {candidate / 1e6:.3f}"
    return True, "adopted"


class GovernanceContext(Protocol):
    """What the entry rules read of the branch a block extends (its parent and the parent's ancestors)."""

    def get_round(self, round_id: bytes) -> ModelRound | None:
        """The round proposal with this id on the branch, or None."""
        ...

    def has_entry(self, key: tuple[str, bytes, bytes]) -> bool:
        """An entry with this :attr:`GovernanceEntry.key` is on the branch."""
        ...


def validate_entry(entry: GovernanceEntry, params: ChainParams) -> None:
    """``bad-entry`` unless the entry is small enough, signed by a member and well formed on its own.

    The same check admits an entry into a node's pending pool.
    """
    if len(entry.encoded) > MAX_ENTRY_BYTES:
        raise ValidationError("bad-entry", f"{entry.kind} entry of {len(entry.encoded)} bytes (at most {MAX_ENTRY_BYTES})")
    body = entry.body
    member = params.members_by_id.get(entry.member_id)
    if member is None:
        raise ValidationError("bad-entry", f"{entry.kind} entry signed by a non-member {entry.member_id.hex()}")
    domain = ROUND_DOMAIN if isinstance(body, ModelRound) else RESULT_DOMAIN if isinstance(body, RoundResult) \
        else METRICS_DOMAIN
    if not is_signature_valid(member.public_key, body.signature, domain, body.signed_bytes()):
        raise ValidationError("bad-entry", f"{entry.kind} entry signature does not verify")
    if isinstance(body, ModelRound):
        participants = list(body.participants)
        if not participants or participants != sorted(set(participants)):
            raise ValidationError("bad-entry", "round participants must be sorted, distinct and not empty")
        if any(p not in params.members_by_id for p in participants):
            raise ValidationError("bad-entry", "round lists a participant that is not a member")
        if body.quorum > len(participants):
            raise ValidationError("bad-entry", f"round quorum {body.quorum} above its {len(participants)} participants")


def validate_block_entries(entries: Sequence[GovernanceEntry], params: ChainParams, context: GovernanceContext) -> None:
    """Every entry of a block, in order: ``bad-entry``, then ``orphan-entry``, then ``duplicate-entry``.

    A result or metrics entry needs its round on the branch before it (an earlier
    block, or earlier in this block); a result must account for exactly the round's
    participants and a metrics entry must come from one of them (``bad-entry``).
    """
    earlier = BranchEntries()
    for entry in entries:
        validate_entry_in_context(entry, params, context, earlier)
        earlier.add([entry])


def validate_entry_in_context(entry: GovernanceEntry, params: ChainParams, context: GovernanceContext,
                              earlier: BranchEntries) -> None:
    """One entry after ``earlier`` (the block's entries before it) on the branch ``context``."""
    validate_entry(entry, params)
    body = entry.body
    if not isinstance(body, ModelRound):
        proposal = earlier.get_round(body.round_id) or context.get_round(body.round_id)
        if proposal is None:
            raise ValidationError("orphan-entry", f"{entry.kind} entry for round {body.round_id.hex()} "
                                                  "that is not on this branch before it")
        if isinstance(body, RoundResult):
            try:
                validate_round_result(body, proposal.participants, params.members_by_id)
            except ValidationError as error:
                raise ValidationError("bad-entry", f"round result: {error}") from error
        elif body.member_id not in proposal.participants:
            raise ValidationError("bad-entry", "metrics from a member that is not a participant of the round")
    if earlier.has_entry(entry.key) or context.has_entry(entry.key):
        raise ValidationError("duplicate-entry", f"a {entry.kind} entry of {entry.member_id.hex()} for round "
                                                 f"{entry.round_id.hex()} is already on this branch")


def select_valid_entries(candidates: Sequence[GovernanceEntry], params: ChainParams, context: GovernanceContext,
                         limit: int) -> list[GovernanceEntry]:
    """The candidates a block on ``context`` may hold, rounds first, at most ``limit`` (the miner's choice).

    Each kept entry passes :func:`validate_entry_in_context` after the ones kept before it, so the
    list is a valid ``entries`` body for that branch; the others wait (their round is not mined yet)
    or are never valid there.
    """
    chosen = BranchEntries()
    kept: list[GovernanceEntry] = []
    for entry in sorted(candidates, key=lambda e: KIND_ORDER[e.kind]):  # stable: arrival order within a kind
        if len(kept) >= limit:
            break
        try:
            validate_entry_in_context(entry, params, context, chosen)
        except ValidationError:
            continue
        chosen.add([entry])
        kept.append(entry)
    return kept


class BranchEntries:
    """The governance entries of one branch, in memory (a :class:`GovernanceContext`): fed block by block."""

    def __init__(self) -> None:
        self.rounds: dict[bytes, ModelRound] = {}
        self.keys: set[tuple[str, bytes, bytes]] = set()

    def add(self, entries: Sequence[GovernanceEntry]) -> None:
        for entry in entries:
            self.keys.add(entry.key)
            if isinstance(entry.body, ModelRound):
                self.rounds[entry.round_id] = entry.body

    def get_round(self, round_id: bytes) -> ModelRound | None:
        return self.rounds.get(round_id)

    def has_entry(self, key: tuple[str, bytes, bytes]) -> bool:
        return key in self.keys
