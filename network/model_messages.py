"""Federated-round peer messages (issue 15): ``model_round``, ``model_update`` and ``model_metrics``.

Wire containers only, with strict schemas and size limits like every other
message (docs/PROTOCOL.md). Both are signed by a member key over their fields
without the signature (domains below); the node (``node/federated.py``) checks
the signature against the chain's member list, and decodes the head bytes.
Numbers that are fractions (learning rate, penalty, AUC margins and metrics)
travel as integers in millionths: the canonical encoding has no floats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import expect_array, expect_bytes, expect_int, expect_list, expect_str, pack
from consensus.governance import METRICS_DOMAIN, ROUND_DOMAIN, UPDATE_DOMAIN, compute_round_id
from consensus.types import HASH_BYTES
from network.constants import (
    MAX_HEAD_BYTES,
    MAX_MODEL_METRIC_CHARS,
    MAX_MODEL_METRICS,
    MAX_ROUND_PARTICIPANTS,
)

__all__ = ["METRICS_DOMAIN", "MICRO", "ROUND_DOMAIN", "UPDATE_DOMAIN", "ModelMetrics", "ModelRound", "ModelUpdate"]
MODALITIES = frozenset({"ct", "xray"})
MICRO = 1_000_000
MAX_MICRO = 10**15
MAX_SAMPLE_COUNT = 10**7
MAX_EPOCHS = 1000


@dataclass(frozen=True)
class ModelRound:
    """A proposed round: what to train from (model, head digest), how, by whom, until when."""

    TYPE: ClassVar[str] = "model_round"
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

    def unsigned_fields(self) -> list[Any]:
        return [self.proposer, self.number, self.modality, self.base_model_id, self.head_digest, self.epochs,
                self.learning_rate_micro, self.l2_micro, self.deadline_ms, list(self.participants), self.quorum,
                self.max_auc_drop_micro]

    def signed_bytes(self) -> bytes:
        return pack(self.unsigned_fields())

    @property
    def round_id(self) -> bytes:
        return compute_round_id(self.signed_bytes())

    def to_fields(self) -> list[Any]:
        return [*self.unsigned_fields(), self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> ModelRound:
        f = expect_list(value, 13, "model_round")
        participants = expect_array(f[9], "model_round.participants", MAX_ROUND_PARTICIPANTS)
        return cls(
            expect_bytes(f[0], "model_round.proposer", MEMBER_ID_BYTES),
            expect_int(f[1], "model_round.number", 0, 2**32 - 1),
            expect_str(f[2], "model_round.modality", 8, MODALITIES),
            expect_bytes(f[3], "model_round.base_model_id", HASH_BYTES),
            expect_bytes(f[4], "model_round.head_digest", HASH_BYTES),
            expect_int(f[5], "model_round.epochs", 1, MAX_EPOCHS),
            expect_int(f[6], "model_round.learning_rate_micro", 1, MAX_MICRO),
            expect_int(f[7], "model_round.l2_micro", 0, MAX_MICRO),
            expect_int(f[8], "model_round.deadline_ms", 0),
            tuple(expect_bytes(p, "model_round.participant", MEMBER_ID_BYTES) for p in participants),
            expect_int(f[10], "model_round.quorum", 1, MAX_ROUND_PARTICIPANTS),
            expect_int(f[11], "model_round.max_auc_drop_micro", 0, MICRO),
            expect_bytes(f[12], "model_round.signature", SIGNATURE_BYTES),
        )


@dataclass(frozen=True)
class ModelUpdate:
    """One site's trained head for one round, its sample count and metrics (name, millionths)."""

    TYPE: ClassVar[str] = "model_update"
    round_id: bytes
    member_id: bytes
    head: bytes
    sample_count: int
    metrics: tuple[tuple[str, int], ...]
    signature: bytes = b""

    def unsigned_fields(self) -> list[Any]:
        return [self.round_id, self.member_id, self.head, self.sample_count, [list(m) for m in self.metrics]]

    def signed_bytes(self) -> bytes:
        return pack(self.unsigned_fields())

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(UPDATE_DOMAIN + self.signed_bytes()).digest()

    def to_fields(self) -> list[Any]:
        return [*self.unsigned_fields(), self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> ModelUpdate:
        f = expect_list(value, 6, "model_update")
        metrics = []
        for item in expect_array(f[4], "model_update.metrics", MAX_MODEL_METRICS):
            name, amount = expect_list(item, 2, "model_update.metric")
            metrics.append((expect_str(name, "model_update.metric.name", MAX_MODEL_METRIC_CHARS),
                            expect_int(amount, "model_update.metric.value", -MAX_MICRO, MAX_MICRO)))
        return cls(
            expect_bytes(f[0], "model_update.round_id", HASH_BYTES),
            expect_bytes(f[1], "model_update.member_id", MEMBER_ID_BYTES),
            expect_bytes(f[2], "model_update.head", max_length=MAX_HEAD_BYTES),
            expect_int(f[3], "model_update.sample_count", 0, MAX_SAMPLE_COUNT),
            tuple(metrics),
            expect_bytes(f[5], "model_update.signature", SIGNATURE_BYTES),
        )


@dataclass(frozen=True)
class ModelMetrics:
    """One site's held-out AUC of the current head and of a round's aggregate (millionths; -1: undefined)."""

    TYPE: ClassVar[str] = "model_metrics"
    round_id: bytes
    member_id: bytes
    head_digest: bytes
    current_auc_micro: int
    candidate_auc_micro: int
    signature: bytes = b""

    def unsigned_fields(self) -> list[Any]:
        return [self.round_id, self.member_id, self.head_digest, self.current_auc_micro, self.candidate_auc_micro]

    def signed_bytes(self) -> bytes:
        return pack(self.unsigned_fields())

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(METRICS_DOMAIN + self.signed_bytes()).digest()

    def to_fields(self) -> list[Any]:
        return [*self.unsigned_fields(), self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> ModelMetrics:
        f = expect_list(value, 6, "model_metrics")
        return cls(
            expect_bytes(f[0], "model_metrics.round_id", HASH_BYTES),
            expect_bytes(f[1], "model_metrics.member_id", MEMBER_ID_BYTES),
            expect_bytes(f[2], "model_metrics.head_digest", HASH_BYTES),
            expect_int(f[3], "model_metrics.current_auc_micro", -1, MICRO),
            expect_int(f[4], "model_metrics.candidate_auc_micro", -1, MICRO),
            expect_bytes(f[5], "model_metrics.signature", SIGNATURE_BYTES),
        )
