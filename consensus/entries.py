"""Governance entries: the second list of a block body (issue 15), a tagged union of three signed kinds.

- ``round``: a member's signed round proposal (:class:`ModelRound`, the ``model_round``
  message's bytes as they are);
- ``result``: the model-update record (:class:`RoundResult`): a round's aggregate head
  digest, each contributor's update digest, each excluded participant's reason;
- ``metrics``: a site's signed held-out AUC of the current and the candidate head
  (:class:`ModelMetrics`, the ``model_metrics`` message's bytes).

On the wire an entry is ``[tag, body]``; an unknown tag is ``bad-encoding``. The
entry hash (SHA-256 of that encoding) goes into the block's Merkle root after the
records'. Which entries a block may hold is ``consensus.governance.validate_block_entries``.
Numbers that are fractions travel as integers in millionths: the encoding has no floats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Self

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import Bin, Canonical, Field, Int, ListOf, SignedCanonical, Str, TupleOf, expect_list, \
    expect_str, pack
from consensus.errors import ValidationError

ROUND_DOMAIN = b"lungledger/model-round/v1\x00"
UPDATE_DOMAIN = b"lungledger/model-update/v1\x00"
METRICS_DOMAIN = b"lungledger/model-metrics/v1\x00"
RESULT_DOMAIN = b"lungledger/round-result/v1\x00"
MAX_PARTICIPANTS = 64
MICRO = 1_000_000
MAX_MICRO = 10**15
MAX_EPOCHS = 1000
MAX_ENTRY_BYTES = 4096  # a round with 64 participants is about 1.6 KiB
FEDERATED_MODALITIES = frozenset({"ct", "xray"})
EXCLUSION_REASONS = frozenset({"equivocation", "non-finite", "bad-shape", "bad-sample-count", "norm-outlier",
                               "no-update"})

HASH = Bin(32)
MEMBER_ID = Bin(MEMBER_ID_BYTES)
SIGNATURE = Bin(SIGNATURE_BYTES)


def compute_round_id(signed_bytes: bytes) -> bytes:
    return hashlib.sha256(ROUND_DOMAIN + signed_bytes).digest()


@dataclass(frozen=True)
class ModelRound(SignedCanonical):
    """A proposed round: what to train from (model, head digest), how, by whom, until when."""

    TYPE: ClassVar[str] = "model_round"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("proposer", MEMBER_ID),
        Field("number", Int(0, 2**32 - 1)),
        Field("modality", Str(8, FEDERATED_MODALITIES)),
        Field("base_model_id", HASH),
        Field("head_digest", HASH),
        Field("epochs", Int(1, MAX_EPOCHS)),
        Field("learning_rate_micro", Int(1, MAX_MICRO)),
        Field("l2_micro", Int(0, MAX_MICRO)),
        Field("deadline_ms", Int(0)),
        Field("participants", ListOf(MEMBER_ID, MAX_PARTICIPANTS)),
        Field("quorum", Int(1, MAX_PARTICIPANTS)),
        Field("max_auc_drop_micro", Int(0, MICRO)),
        Field("signature", SIGNATURE),
    )
    proposer: bytes
    number: int
    modality: str
    base_model_id: bytes
    head_digest: bytes
    epochs: int
    learning_rate_micro: int
    l2_micro: int
    deadline_ms: int
    participants: tuple[bytes, ...]
    quorum: int
    max_auc_drop_micro: int
    signature: bytes = b""

    @property
    def round_id(self) -> bytes:
        return compute_round_id(self.signed_bytes())


@dataclass(frozen=True)
class ModelMetrics(SignedCanonical):
    """One site's held-out AUC of the current head and of a round's aggregate (millionths; -1: undefined)."""

    TYPE: ClassVar[str] = "model_metrics"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("round_id", HASH),
        Field("member_id", MEMBER_ID),
        Field("head_digest", HASH),
        Field("current_auc_micro", Int(-1, MICRO)),
        Field("candidate_auc_micro", Int(-1, MICRO)),
        Field("signature", SIGNATURE),
    )
    round_id: bytes
    member_id: bytes
    head_digest: bytes
    current_auc_micro: int
    candidate_auc_micro: int
    signature: bytes = b""

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(METRICS_DOMAIN + self.signed_bytes()).digest()


@dataclass(frozen=True)
class RoundResult(SignedCanonical):
    """The outcome of one round as one member computed it (the model-update record)."""

    WIRE_NAME: ClassVar[str] = "round_result"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("round_id", HASH),
        Field("creator", MEMBER_ID),
        Field("head_digest", HASH),
        Field("contributors", ListOf(TupleOf((Field("member_id", MEMBER_ID),
                                              Field("update_digest", HASH))), MAX_PARTICIPANTS)),
        Field("excluded", ListOf(TupleOf((Field("member_id", MEMBER_ID),
                                          Field("reason", Str(32, EXCLUSION_REASONS)))), MAX_PARTICIPANTS)),
        Field("signature", SIGNATURE),
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


EntryBody = ModelRound | RoundResult | ModelMetrics
ENTRY_KINDS: dict[str, type[ModelRound] | type[RoundResult] | type[ModelMetrics]] = {
    "round": ModelRound, "result": RoundResult, "metrics": ModelMetrics}
KIND_ORDER = {"round": 0, "result": 1, "metrics": 2}  # a result or metrics needs its round first


@dataclass(frozen=True)
class GovernanceEntry(Canonical):
    """One governance entry of a block: ``[tag, body]``, tag one of :data:`ENTRY_KINDS`."""

    WIRE_NAME: ClassVar[str] = "entry"
    FIELDS: ClassVar[tuple[Field, ...]] = ()  # a union: encoded by hand below
    kind: str
    body: EntryBody

    @classmethod
    def of(cls, body: EntryBody) -> GovernanceEntry:
        kind = "round" if isinstance(body, ModelRound) else "result" if isinstance(body, RoundResult) else "metrics"
        return cls(kind, body)

    def to_fields(self) -> list[Any]:
        return [self.kind, self.body.to_fields()]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        tag, body = expect_list(value, 2, "entry")
        kind = expect_str(tag, "entry.tag", 16)
        body_type = ENTRY_KINDS.get(kind)
        if body_type is None:
            raise ValidationError("bad-encoding", f"entry.tag: unknown governance entry kind {kind!r}")
        return cls(kind, body_type.from_fields(body))

    @cached_property
    def encoded(self) -> bytes:
        return pack(self.to_fields())

    @cached_property
    def entry_hash(self) -> bytes:
        return hashlib.sha256(self.encoded).digest()

    @property
    def round_id(self) -> bytes:
        body = self.body
        return body.round_id

    @property
    def member_id(self) -> bytes:
        """Who signed it: the proposer, the result's creator or the reporting site."""
        body = self.body
        if isinstance(body, ModelRound):
            return body.proposer
        if isinstance(body, RoundResult):
            return body.creator
        return body.member_id

    @property
    def key(self) -> tuple[str, bytes, bytes]:
        """At most one entry per key on a branch: one proposal per round, one result and one metrics per member."""
        return self.kind, self.round_id, self.member_id
