"""Federated-round peer messages (issue 15): ``model_round``, ``model_update`` and ``model_metrics``.

Wire containers only, each declared once as a ``FIELDS`` table
(consensus/encoding.py) with strict schemas and size limits like every other
message (docs/PROTOCOL.md); the signed bytes are the table without its final
``signature`` field. Both are signed by a member key over their fields
without the signature (domains below); the node (``node/federated.py``) checks
the signature against the chain's member list, and decodes the head bytes.
Numbers that are fractions (learning rate, penalty, AUC margins and metrics)
travel as integers in millionths: the canonical encoding has no floats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import Bin, SignedCanonical, Field, Int, ListOf, Str, TupleOf
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


HASH = Bin(HASH_BYTES)
MEMBER_ID = Bin(MEMBER_ID_BYTES)
SIGNATURE = Bin(SIGNATURE_BYTES)


@dataclass(frozen=True)
class ModelRound(SignedCanonical):
    """A proposed round: what to train from (model, head digest), how, by whom, until when."""

    TYPE: ClassVar[str] = "model_round"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("proposer", MEMBER_ID),
        Field("number", Int(0, 2**32 - 1)),
        Field("modality", Str(8, MODALITIES)),
        Field("base_model_id", HASH),
        Field("head_digest", HASH),
        Field("epochs", Int(1, MAX_EPOCHS)),
        Field("learning_rate_micro", Int(1, MAX_MICRO)),
        Field("l2_micro", Int(0, MAX_MICRO)),
        Field("deadline_ms", Int(0)),
        Field("participants", ListOf(MEMBER_ID, MAX_ROUND_PARTICIPANTS)),
        Field("quorum", Int(1, MAX_ROUND_PARTICIPANTS)),
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
class ModelUpdate(SignedCanonical):
    """One site's trained head for one round, its sample count and metrics (name, millionths)."""

    TYPE: ClassVar[str] = "model_update"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("round_id", HASH),
        Field("member_id", MEMBER_ID),
        Field("head", Bin(max_length=MAX_HEAD_BYTES)),
        Field("sample_count", Int(0, MAX_SAMPLE_COUNT)),
        Field("metrics", ListOf(TupleOf((Field("name", Str(MAX_MODEL_METRIC_CHARS)),
                                         Field("value", Int(-MAX_MICRO, MAX_MICRO)))), MAX_MODEL_METRICS)),
        Field("signature", SIGNATURE),
    )
    round_id: bytes
    member_id: bytes
    head: bytes
    sample_count: int
    metrics: tuple[tuple[str, int], ...]
    signature: bytes = b""

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(UPDATE_DOMAIN + self.signed_bytes()).digest()


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
