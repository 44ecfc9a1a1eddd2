"""Governance of federated rounds (issue 15): what a round's outcome record says and the rules it must obey.

Pure, like the rest of consensus/: no clock, no randomness, no I/O. Carried over
the peer network today (network/model_messages.py uses these domains and the
adoption rule); carrying the records in blocks is not built yet (docs/FEDERATED.md).

- A round proposal and a site's metrics are signed over the canonical encoding of
  their fields under :data:`ROUND_DOMAIN` / :data:`METRICS_DOMAIN`; updates under
  :data:`UPDATE_DOMAIN`. The round id is SHA-256(ROUND_DOMAIN + signed bytes).
- :class:`RoundResult` is the model-update record: the aggregate head digest, each
  contributor's update digest and each excluded participant's reason code, signed by
  the member that computed it. :func:`validate_round_result` checks it against the
  round's participants.
- :func:`compute_adoption` is the adoption rule in integer millionths (no floats on
  chain): a quorum of distinct sites, none losing more than the margin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES, is_signature_valid
from consensus.encoding import Bin, SignedCanonical, Field, ListOf, Str, TupleOf, pack
from consensus.errors import ValidationError
from consensus.types import HASH_BYTES, Member

ROUND_DOMAIN = b"lungledger/model-round/v1\x00"
UPDATE_DOMAIN = b"lungledger/model-update/v1\x00"
METRICS_DOMAIN = b"lungledger/model-metrics/v1\x00"
RESULT_DOMAIN = b"lungledger/round-result/v1\x00"
MAX_PARTICIPANTS = 64
EXCLUSION_REASONS = frozenset({"equivocation", "non-finite", "bad-shape", "bad-sample-count", "norm-outlier",
                               "no-update"})
UNDEFINED_AUC = -1  # a site whose held-out split cannot give an AUC


def compute_round_id(signed_bytes: bytes) -> bytes:
    return hashlib.sha256(ROUND_DOMAIN + signed_bytes).digest()


@dataclass(frozen=True)
class RoundResult(SignedCanonical):
    """The outcome of one round as one member computed it (the model-update record)."""

    WIRE_NAME: ClassVar[str] = "round_result"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("round_id", Bin(HASH_BYTES)),
        Field("creator", Bin(MEMBER_ID_BYTES)),
        Field("head_digest", Bin(HASH_BYTES)),
        Field("contributors", ListOf(TupleOf((Field("member_id", Bin(MEMBER_ID_BYTES)),
                                              Field("update_digest", Bin(HASH_BYTES)))), MAX_PARTICIPANTS)),
        Field("excluded", ListOf(TupleOf((Field("member_id", Bin(MEMBER_ID_BYTES)),
                                          Field("reason", Str(32, EXCLUSION_REASONS)))), MAX_PARTICIPANTS)),
        Field("signature", Bin(SIGNATURE_BYTES)),
    )
    round_id: bytes
    creator: bytes
    head_digest: bytes
    contributors: tuple[tuple[bytes, bytes], ...]  # (member id, update digest), sorted by member id
    excluded: tuple[tuple[bytes, str], ...]  # (member id, reason code), sorted by member id
    signature: bytes = b""

    @property
    def record_hash(self) -> bytes:
        return hashlib.sha256(pack(self.to_fields())).digest()


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
